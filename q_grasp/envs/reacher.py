"""Reacher: a goal-conditioned gymnasium task in which the arm moves its tool centre point to a
goal by discrete joint (or Cartesian) steps.

The env drives ``q_grasp.tasks.reach.ReachTask`` (the code the policy node runs on a real arm)
on a ``KinematicArm``: no physics, joints are set directly and the end effector comes from
q_grasp's own forward kinematics, which keeps a step in the tens of microseconds. pybullet is
only started, lazily, by ``render()``. Suggested discount for learning: gamma = 0.98.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np

from q_grasp.envs._config import check_render_mode, resolve_env_config
from q_grasp.robot_config import RobotConfig
from q_grasp.tasks.reach import (  # noqa: F401 - re-exported: the task's names
    ACTION_MODES,
    DIRECTION_SCALE_M,
    DISTANCE_REWARD_SCALE_M,
    GOAL_IK_RESTARTS,
    JOINT_DIRECTION_SCALE_RAD,
    OBSERVATIONS,
    REWARD_TYPES,
    KinematicArm,
    ReachEpisode,
    ReachTask,
    reacher_observation,
    reacher_reward,
)


@dataclass
class ReacherConfig:
    """Parameters of the Reacher task. Suggested discount factor for DQN: gamma = 0.98."""

    dtheta_rad: float = 0.035
    """Joint step (rad) of one action in "joint" mode; must be in (0, 0.5]."""
    episode_length: int = 50
    """Steps after which an episode is truncated (time limit, not a terminal state); >= 1."""
    goal_tolerance_m: float = 0.01
    """Success when the end effector is within this Euclidean distance (m) of the goal;
    in (0, 0.1]."""
    reward: str = "sparse"
    """"sparse": +1 on reaching the goal, else 0. "dense": +1 on reaching the goal, else
    tolerance / distance - 1, an inverse-distance term in (-1, 0) that rises towards 0 near the
    goal. It stays negative so that hovering next to the goal never pays more than reaching it
    (a positive per-step reward would make ending the episode at the goal a loss).
    "distance": +1 on reaching the goal, else -distance / 0.1 m (-1 per 10 cm): linear in the
    distance, so one step closer is worth as much far from the goal as near it (the inverse
    "dense" term is almost flat beyond a few centimetres), and the gain of a good step carries
    into every later step instead of telescoping away like a potential-based shaping term."""
    observation: str = "joints_goal"
    """"joints_goal": the reach joint angles (rad) then the goal (x, y, z; m). "joints_goal_ee":
    the same, then the end-effector position (x, y, z; m, by forward kinematics of the joints)
    and the goal minus the end effector (m): a policy sees where the goal is relative to the
    tool without having to learn the arm's forward kinematics first. "joints_goal_ee_dir":
    that, then (goal - ee) / max(|goal - ee|, 0.05 m), a direction of length <= 1 that keeps
    its resolution near the goal. A real arm computes the extra entries from its measured
    joints (see ``reacher_observation``). "joints_goal_ee_ik": "joints_goal_ee_dir", then the goal
    expressed in joint space: goal joints - joints (rad) and that / 0.1 rad clipped to [-1, 1]
    (the way each joint must turn), where the goal joints are the IK
    solution for the goal nearest the episode's start pose (computed once per goal, see
    ``ReacherEnv.goal_joint_positions``). The reward and success stay Cartesian; the policy is
    told which way each joint has to go, so it does not have to learn the arm's inverse
    kinematics from a few hundred episodes."""
    fixed_goal: tuple[float, float, float] | None = None
    """A fixed goal (x, y, z) in the world frame (m), or None to sample a new goal in the
    reachable workspace on every reset. Must be reachable and above the table."""
    action_mode: str = "joint"
    """"joint": 8 actions, a = 2 j + (0 for +dtheta, 1 for -dtheta) on reach joint j.
    "cartesian": 6 actions, a = 2 k + (0 for +, 1 for -) cartesian_step_m along world axis
    k (x, y, z), turned into joint positions by inverse kinematics; an unreachable step leaves
    the arm where it is (info["ik_success"] is False)."""
    cartesian_step_m: float = 0.01
    """Length (m) of one Cartesian action; in (0, 0.05]."""
    goal_min_height_m: float = 0.02
    """Sampled goals are at least this high (m) above the table (z = 0); >= 0."""
    max_goal_steps: int | None = None
    """None: goals anywhere in the reachable workspace. An integer k: the goal is where the
    end effector gets after m <= k random joint steps (m uniform in [1, k]) from the start pose,
    so every episode can be solved in k steps. With random starts over the full joint ranges
    and the defaults (dtheta 0.035 rad, 50 steps) only about 15% of free goals can be reached
    within an episode; k <= episode_length removes that ceiling (a curriculum knob); >= 1."""
    workspace_samples: int = 20000
    """Random joint configurations whose end-effector positions form the pool of reachable
    goals; >= 100. More gives a finer covering of the workspace, at start-up cost."""
    seed: int | None = None
    """Seed for the first reset() called without one; None draws fresh entropy. Later resets
    without a seed continue the same random stream, as gymnasium specifies."""
    render_width: int = 320
    """Width (pixels) of render() frames; in [16, 2048]."""
    render_height: int = 240
    """Height (pixels) of render() frames; in [16, 2048]."""
    robot: RobotConfig = field(default_factory=RobotConfig)
    """The arm (URDF, joint names, base pose). The Reacher moves robot.reach_joint_names; the
    other arm joints stay at their home positions."""

    def __post_init__(self) -> None:
        if isinstance(self.robot, dict):
            self.robot = RobotConfig.from_dict(self.robot)
        if not isinstance(self.robot, RobotConfig):
            raise ValueError(f"robot: must be a RobotConfig or a dict, got {type(self.robot)}")
        _check_range("dtheta_rad", self.dtheta_rad, 0.0, 0.5, "rad", low_open=True)
        _check_int("episode_length", self.episode_length, 1)
        _check_range("goal_tolerance_m", self.goal_tolerance_m, 0.0, 0.1, "m", low_open=True)
        if self.reward not in REWARD_TYPES:
            raise ValueError(f"reward: must be one of {REWARD_TYPES}, got {self.reward!r}")
        if self.observation not in OBSERVATIONS:
            raise ValueError(f"observation: must be one of {OBSERVATIONS}, "
                             f"got {self.observation!r}")
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode: must be one of {ACTION_MODES}, "
                             f"got {self.action_mode!r}")
        _check_range("cartesian_step_m", self.cartesian_step_m, 0.0, 0.05, "m", low_open=True)
        _check_range("goal_min_height_m", self.goal_min_height_m, 0.0, 1.0, "m")
        if self.max_goal_steps is not None:
            _check_int("max_goal_steps", self.max_goal_steps, 1)
        _check_int("workspace_samples", self.workspace_samples, 100)
        if self.seed is not None:
            _check_int("seed", self.seed, 0)
        _check_int("render_width", self.render_width, 16, 2048)
        _check_int("render_height", self.render_height, 16, 2048)
        if self.fixed_goal is not None:
            try:
                goal = tuple(float(v) for v in self.fixed_goal)
            except (TypeError, ValueError):
                goal = ()
            if len(goal) != 3 or not all(math.isfinite(v) for v in goal):
                raise ValueError(f"fixed_goal: must be None or 3 finite numbers (x, y, z) in "
                                 f"metres, got {self.fixed_goal!r}")
            self.fixed_goal = goal


def _check_range(name: str, value: Any, low: float, high: float, unit: str,
                 low_open: bool = False) -> None:
    bracket = "(" if low_open else "["
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and value <= high and (value > low if low_open
                                                             else value >= low)
    if not ok:
        raise ValueError(f"{name}: must be in {bracket}{low}, {high}] {unit}, got {value!r}")


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low
    ok = ok and (high is None or value <= high)
    if not ok:
        where = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}: must be an integer {where}, got {value!r}")


class ReacherEnv(gymnasium.Env):
    """Move the NURO arm's tool centre point to a goal, one joint step at a time.

    Observation: Box float32 (7,) = the four reach joint angles (base, shoulder, elbow, wrist;
    rad) followed by the goal position (x, y, z; m, world frame); with
    observation="joints_goal_ee" Box (13,) = those, the end-effector position (m) and goal minus
    end effector (m); "joints_goal_ee_dir" (16,) adds the goal direction; "joints_goal_ee_ik"
    (24,) adds goal joints - joints (rad) and that / 0.1 rad clipped to [-1, 1] (see
    ReacherConfig.observation; config/reacher.yaml trains with it).
    Action: Discrete(8) in "joint" mode, a = 2 j + (0: +dtheta, 1: -dtheta) on reach joint j,
    clamped to the joint limits; Discrete(6) in "cartesian" mode (see ReacherConfig).
    Reward: see ReacherConfig.reward. Episodes terminate when the end effector is within
    goal_tolerance_m of the goal and are truncated after episode_length steps.
    info: {"distance_m": float, "is_success": bool} (+ "ik_success" in cartesian mode, and
    "goal_joint_distance_rad", sum of |goal joints - joints|, with "joints_goal_ee_ik").
    Suggested discount factor: gamma = 0.98.

    Construct with a ReacherConfig, keyword overrides of its fields, or both:
    ``ReacherEnv(ReacherConfig(reward="dense"))``, ``ReacherEnv(reward="dense")``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, config: ReacherConfig | None = None, render_mode: str | None = None,
                 **overrides: Any) -> None:
        config = resolve_env_config(ReacherConfig, config, overrides, "ReacherEnv")
        check_render_mode(render_mode, self.metadata)
        self.config = config
        self.render_mode = render_mode

        self.task = ReachTask(config)
        self.task.check_workspace()
        self.chain = self.task.chain
        self.reach_joint_names = self.task.reach_joint_names
        self._reach_idx = self.task.reach_index
        self.observation_space = self.task.observation_space
        self.action_space = self.task.action_space
        self.arm = KinematicArm(self.task.arm_joint_names, self.task.home_q)
        self._episode: ReachEpisode | None = None
        self._ee = self.chain.fk(self.task.home_q)[:3, 3]
        self._seeded = False
        self._needs_reset = True
        self._sim = None
        self._robot = None
        self._camera = None
        self._goal_marker = -1

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """A goal drawn uniformly over the reachable workspace cells (2 cm), above the table."""
        return self.task.sample_goal(rng)

    def goal_joint_positions(self, goal: np.ndarray, start_q: np.ndarray) -> np.ndarray:
        """Reach joint angles (rad) at ``goal`` nearest the arm joints ``start_q`` (see
        ReachTask.goal_joint_positions)."""
        return self.task.goal_joint_positions(goal, start_q)

    # ------------------------------------------------------------------------- gym API
    @property
    def goal(self) -> np.ndarray:
        """Current goal position (3,), world frame (m)."""
        return np.zeros(3) if self._episode is None else self._episode.goal.copy()

    @property
    def joint_positions(self) -> np.ndarray:
        """All arm joint positions (rad) in robot.arm_joint_names order."""
        return self.arm.read_arm_joints()

    @property
    def ee_position(self) -> np.ndarray:
        """End-effector (tool centre point) position (3,), world frame (m)."""
        return self._ee.copy()

    @property
    def goal_q(self) -> np.ndarray | None:
        """Reach joint angles at the goal (rad) for the "joints_goal_ee_ik" observation, set on
        reset; None with the other observations."""
        goal_q = None if self._episode is None else self._episode.goal_q
        return None if goal_q is None else goal_q.copy()

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """New goal (unless fixed) and random reach joints within limits, arm above the table,
        end effector farther than goal_tolerance_m from the goal.

        ``options`` may set the episode's start and goal explicitly (tests, demos, a real arm's
        current pose): {"reach_joint_positions": 4 angles within limits (rad),
        "goal": (x, y, z) reachable, above the table (m)}; either key may be left out.
        """
        options = dict(options or {})
        unknown = sorted(set(options) - {"reach_joint_positions", "goal"})
        if unknown:
            raise ValueError(f"options: unknown keys {unknown}; known keys: "
                             "['goal', 'reach_joint_positions']")
        if seed is None and not self._seeded:
            seed = self.config.seed
        self._seeded = True
        super().reset(seed=seed)
        self._episode = self.task.new_episode(
            self.np_random, reach_q=options.get("reach_joint_positions"),
            goal=options.get("goal"))
        self.arm.move_arm(self._episode.start_q)
        state = self.task.measure(self._episode.start_q, self._episode)
        self._ee = state.ee
        self._needs_reset = False
        return state.observation, state.info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = self.task.check_action(action)
        if self._needs_reset:
            raise RuntimeError("step: call reset() before step() (and after an episode ends)")
        state, reward, terminated, truncated = self.task.step(self.arm, self._episode, a)
        self._ee = state.ee
        self._needs_reset = terminated or truncated
        return state.observation, reward, terminated, truncated, state.info

    # ------------------------------------------------------------------------- rendering
    def render(self) -> np.ndarray | None:
        """RGB frame (H, W, 3) uint8 of the arm and the goal (a green sphere), in
        "rgb_array" mode; pybullet is started on the first call."""
        if self.render_mode is None:
            gymnasium.logger.warn("render(): no render_mode was given at construction "
                                  "(use render_mode='rgb_array'); nothing is rendered.")
            return None
        if self._sim is None:
            self._start_renderer()
        self._robot.teleport_arm(self.arm.read_arm_joints())
        self._sim.client.resetBasePositionAndOrientation(
            self._goal_marker, self.goal.tolist(), [0.0, 0.0, 0.0, 1.0])
        rgb, _ = self._camera.render(self._sim)
        return rgb

    def _start_renderer(self) -> None:
        from q_grasp.sim import BulletSim, CameraConfig, PinholeCamera, SimRobot
        from q_grasp.sim.quiet import pybullet

        cfg = self.config
        self._sim = BulletSim(seed=0)
        self._robot = SimRobot(self._sim, cfg.robot)
        client = self._sim.client
        visual = client.createVisualShape(pybullet.GEOM_SPHERE,
                                          radius=max(cfg.goal_tolerance_m, 0.005),
                                          rgbaColor=[0.1, 0.8, 0.2, 0.8])
        self._goal_marker = client.createMultiBody(baseMass=0.0, baseVisualShapeIndex=visual,
                                                   basePosition=self.goal.tolist())
        base = np.asarray(cfg.robot.base_position, dtype=float)
        # An oblique view from the front-left so that all three coordinates of the goal show.
        self._camera = PinholeCamera(CameraConfig(
            width=cfg.render_width, height=cfg.render_height, fov_y_deg=50.0,
            position=tuple(base + [0.45, 0.35, 0.35]), target=tuple(base + [0.05, 0.0, 0.1]),
            up_vector=(0.0, 0.0, 1.0), near_m=0.02, far_m=3.0))

    def close(self) -> None:
        if self._sim is not None:
            self._sim.close()
            self._sim = self._robot = self._camera = None
        super().close()
