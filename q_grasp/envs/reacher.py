"""Reacher: a goal-conditioned gymnasium task in which the arm moves its tool centre point to a
goal by discrete joint (or Cartesian) steps.

The task needs no physics: joints are set directly (teleported) and the end effector comes
from q_grasp's own forward kinematics, which keeps a step in the tens of microseconds. pybullet
is only started, lazily, by ``render()``. Suggested discount for learning: gamma = 0.98.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from q_grasp.envs._config import check_render_mode, resolve_env_config
from q_grasp.kinematics import KinematicChain
from q_grasp.robot_config import RobotConfig

REWARD_TYPES = ("sparse", "dense", "distance")
DISTANCE_REWARD_SCALE_M = 0.1
"""reward "distance": the per-step penalty is distance / this (m), -1 per 10 cm."""
OBSERVATIONS = ("joints_goal", "joints_goal_ee", "joints_goal_ee_dir", "joints_goal_ee_ik")
"""Observation layouts: "joints_goal" (n reach joints + goal xyz, the default),
"joints_goal_ee" (that, then the end-effector xyz and goal - end effector),
"joints_goal_ee_dir" (that, then (goal - ee) / max(|goal - ee|, DIRECTION_SCALE_M)) and
"joints_goal_ee_ik" ("joints_goal_ee_dir", then goal joints - joints: the reach joint angles that
put the tool centre point on the goal, by the project's IK, minus the current ones, and that
difference / JOINT_DIRECTION_SCALE_RAD clipped to [-1, 1])."""
JOINT_DIRECTION_SCALE_RAD = 0.1
""""joints_goal_ee_ik" also gives each joint's error / this, clipped to [-1, 1]: which way a
joint must turn, sharp near zero, where error / joint range is ~0.01 and a network's inputs
barely change sign (a supervised check: greedy joint progress in 99% -> 100% of states)."""
_EE_OBSERVATIONS = ("joints_goal_ee", "joints_goal_ee_dir", "joints_goal_ee_ik")
_DIR_OBSERVATIONS = ("joints_goal_ee_dir", "joints_goal_ee_ik")
GOAL_IK_RESTARTS = 8
"""goal_joint_positions: IK runs from the start pose and from this many fixed random poses;
the solution nearest the start pose (sum of |angle differences|) is kept."""
DIRECTION_SCALE_M = 0.05
"""Below this distance (m) the "dir" entries are (goal - ee) / this, above it a unit vector:
order-1 inputs near the goal, where (goal - ee) scaled by the workspace is ~0.01."""
ACTION_MODES = ("joint", "cartesian")
_WORKSPACE_SEED = 20240611
"""Fixed seed of the goal pool: the reachable workspace is a property of the robot, not of an
episode, so every env instance (and every seed) draws goals from the same pool."""
_VOXEL_M = 0.02
"""Goal pool cell size: goals are drawn uniformly over occupied 2 cm cells, so the density of
goals is even over the reachable volume rather than bunched where joint sampling is dense."""
_CLEARANCE_LINKS = ("forearm_link", "wrist_link", "hand_link")
"""Links (besides the end effector) that must be above the table in start and goal poses, when
the robot has them; a pose with the elbow through the table is not a pose a real arm can take."""


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


def reacher_observation(reach_q: np.ndarray, goal: np.ndarray, ee: np.ndarray | None = None,
                        observation: str = "joints_goal",
                        goal_q: np.ndarray | None = None) -> np.ndarray:
    """The Reacher's observation (float32) from reach joint angles (rad), the goal (m) and, for
    the "joints_goal_ee*" layouts, the end-effector position (m) from forward kinematics of the
    same joints; "joints_goal_ee_ik" also needs ``goal_q``, the reach joint angles at the goal
    (rad, ``ReacherEnv.goal_joint_positions``). One function for the env and for nodes that
    build observations from measured joints."""
    parts = [np.asarray(reach_q, np.float64).reshape(-1), np.asarray(goal, np.float64).reshape(3)]
    if observation in _EE_OBSERVATIONS:
        if ee is None:
            raise ValueError(f"ee: the {observation!r} observation needs the end-effector "
                             "position (3 numbers, m)")
        ee = np.asarray(ee, np.float64).reshape(3)
        parts += [ee, parts[1] - ee]
        if observation in _DIR_OBSERVATIONS:
            error = parts[-1]
            parts.append(error / max(float(np.linalg.norm(error)), DIRECTION_SCALE_M))
        if observation == "joints_goal_ee_ik":
            if goal_q is None:
                raise ValueError("goal_q: the 'joints_goal_ee_ik' observation needs the reach "
                                 "joint angles at the goal (rad)")
            goal_q = np.asarray(goal_q, np.float64).reshape(-1)
            if goal_q.shape != parts[0].shape:
                raise ValueError(f"goal_q: expected {parts[0].size} angles, got {goal_q.size}")
            error = goal_q - parts[0]
            parts += [error, np.clip(error / JOINT_DIRECTION_SCALE_RAD, -1.0, 1.0)]
    elif observation != "joints_goal":
        raise ValueError(f"observation: must be one of {OBSERVATIONS}, got {observation!r}")
    return np.concatenate(parts).astype(np.float32)


def reacher_reward(distance_m: float, tolerance_m: float, reward_type: str) -> float:
    """The Reacher's reward after a step that leaves the end effector ``distance_m`` from the
    goal (see ReacherConfig.reward); shared with nodes that run the task on a real arm."""
    if distance_m <= tolerance_m:
        return 1.0
    if reward_type == "sparse":
        return 0.0
    if reward_type == "distance":
        return -distance_m / DISTANCE_REWARD_SCALE_M
    if reward_type == "dense":
        return tolerance_m / distance_m - 1.0
    raise ValueError(f"reward: must be one of {REWARD_TYPES}, got {reward_type!r}")


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

        robot = config.robot
        self.chain = KinematicChain.from_robot_config(robot)
        self.reach_joint_names = list(robot.reach_joint_names)
        self._reach_idx = np.array([self.chain.joint_names.index(n)
                                    for n in self.reach_joint_names])
        self._lower = self.chain.lower[self._reach_idx]
        self._upper = self.chain.upper[self._reach_idx]
        if not (np.all(np.isfinite(self._lower)) and np.all(np.isfinite(self._upper))):
            raise ValueError("robot reach_joint_names: the Reacher needs joints with finite "
                             "limits (no continuous joints)")
        self._home_q = self.chain.clip(self.chain.default_q)
        self._clearance_links = [n for n in _CLEARANCE_LINKS if n in self.chain.link_names]

        reach = self.chain.max_reach_m
        base = np.asarray(robot.base_position, dtype=float)
        goal_low = np.array([base[0] - reach, base[1] - reach, 0.0])
        goal_high = np.array([base[0] + reach, base[1] + reach, base[2] + reach + 0.1])
        self._goal_box = spaces.Box(
            low=np.concatenate([self._lower, goal_low]).astype(np.float32),
            high=np.concatenate([self._upper, goal_high]).astype(np.float32),
            dtype=np.float32,
        )
        low, high = self._goal_box.low, self._goal_box.high
        if config.observation != "joints_goal":
            # The end effector shares the goal's bounds (it is where goals come from); the
            # difference of two points in that box lies within +-(its extent).
            extent = goal_high - goal_low
            low = np.concatenate([low, goal_low, -extent]).astype(np.float32)
            high = np.concatenate([high, goal_high, extent]).astype(np.float32)
        if config.observation in _DIR_OBSERVATIONS:
            low = np.concatenate([low, -np.ones(3)]).astype(np.float32)
            high = np.concatenate([high, np.ones(3)]).astype(np.float32)
        if config.observation == "joints_goal_ee_ik":
            span = (self._upper - self._lower).astype(np.float32)
            ones = np.ones(len(span), np.float32)
            low = np.concatenate([low, -span, -ones]).astype(np.float32)
            high = np.concatenate([high, span, ones]).astype(np.float32)
        self.observation_space = spaces.Box(low=low, high=high, dtype=np.float32)
        n_actions = 2 * len(self.reach_joint_names) if config.action_mode == "joint" else 6
        self.action_space = spaces.Discrete(n_actions)

        self._build_goal_pool()
        if config.fixed_goal is not None:
            self._check_goal(np.array(config.fixed_goal), "fixed_goal")

        self._q = self._home_q.copy()
        self._goal = np.zeros(3)
        self._goal_q: np.ndarray | None = None
        self._ik_starts: np.ndarray | None = None
        self._ee = self.chain.fk(self._q)[:3, 3]
        self._t = 0
        self._seeded = False
        self._needs_reset = True
        self._sim = None
        self._robot = None
        self._camera = None
        self._goal_marker = -1

    # ------------------------------------------------------------------------- workspace
    def _allowed(self, Q: np.ndarray, min_ee_height: float) -> tuple[np.ndarray, np.ndarray]:
        """End-effector positions of Q and whether each pose keeps the arm above the table."""
        poses = self.chain.link_poses_batch(Q, [self.chain.ee_link, *self._clearance_links])
        ee = poses[:, 0, :3, 3]
        ok = (ee[:, 2] >= min_ee_height) & np.all(poses[:, 1:, 2, 3] >= 0.0, axis=1)
        return ee, ok

    def _random_reach_q(self, rng: np.random.Generator, n: int) -> np.ndarray:
        Q = np.tile(self._home_q, (n, 1))
        Q[:, self._reach_idx] = rng.uniform(self._lower, self._upper, size=(n, len(self._lower)))
        return Q

    def _build_goal_pool(self) -> None:
        rng = np.random.default_rng(_WORKSPACE_SEED)
        Q = self._random_reach_q(rng, self.config.workspace_samples)
        ee, ok = self._allowed(Q, self.config.goal_min_height_m)
        points = ee[ok]
        if len(points) == 0:
            raise ValueError(f"goal_min_height_m: no reachable goal is "
                             f"{self.config.goal_min_height_m} m above the table")
        cells = np.floor(points / _VOXEL_M).astype(np.int64)
        cells -= cells.min(axis=0)
        span = cells.max(axis=0) + 1
        keys = (cells[:, 0] * span[1] + cells[:, 1]) * span[2] + cells[:, 2]
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        order = np.argsort(inverse, kind="stable")
        self._pool = points[order]
        self._cell_count = counts
        self._cell_start = np.concatenate([[0], np.cumsum(counts)[:-1]])

    def _check_goal(self, goal: np.ndarray, name: str) -> None:
        """ValueError naming ``name`` unless ``goal`` is above the table and reachable."""
        where = tuple(round(float(v), 4) for v in goal)
        if goal[2] < 0.0:
            raise ValueError(f"{name}: {where} is below the table (z must be >= 0 m)")
        if not self._goal_box.contains(np.concatenate([self._lower, goal]).astype(np.float32)):
            raise ValueError(f"{name}: {where} is outside the reachable workspace "
                             f"(more than {self.chain.max_reach_m:.3f} m from the arm)")
        result = self.chain.ik(goal, q0=self._home_q, active_joints=self.reach_joint_names,
                               pos_tol_m=0.2 * self.config.goal_tolerance_m, restarts=20)
        if not result.success:
            raise ValueError(f"{name}: {where} is outside the reachable workspace of the "
                             f"reach joints ({result.message})")

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """A goal drawn uniformly over the reachable workspace cells (2 cm), above the table."""
        cell = int(rng.integers(len(self._cell_count)))
        i = self._cell_start[cell] + int(rng.integers(self._cell_count[cell]))
        return self._pool[i].copy()

    # ------------------------------------------------------------------------- gym API
    @property
    def goal(self) -> np.ndarray:
        """Current goal position (3,), world frame (m)."""
        return self._goal.copy()

    @property
    def joint_positions(self) -> np.ndarray:
        """All arm joint positions (rad) in robot.arm_joint_names order."""
        return self._q.copy()

    @property
    def ee_position(self) -> np.ndarray:
        """End-effector (tool centre point) position (3,), world frame (m)."""
        return self._ee.copy()

    def goal_joint_positions(self, goal: np.ndarray, start_q: np.ndarray) -> np.ndarray:
        """Reach joint angles (rad) that put the tool centre point on ``goal`` (m): of the IK
        solutions found from the arm joints ``start_q`` and from GOAL_IK_RESTARTS fixed random
        poses, the one nearest ``start_q`` (sum of |differences|), preferring poses that keep
        the forearm, wrist and hand above the table. Deterministic; the closest pose found if
        no run converges (goals come from reachable poses, so that is rare)."""
        goal = np.asarray(goal, float).reshape(3)
        start_q = np.asarray(start_q, float).reshape(-1)
        if self._ik_starts is None:  # fixed poses: the same goal joints for the same start
            self._ik_starts = self._random_reach_q(np.random.default_rng(_WORKSPACE_SEED),
                                                   GOAL_IK_RESTARTS)
        starts = [start_q, *self._ik_starts]
        candidates, errors = [], []
        for q0 in starts:
            result = self.chain.ik(goal, q0=q0, active_joints=self.reach_joint_names,
                                   pos_tol_m=0.1 * self.config.goal_tolerance_m, restarts=0)
            candidates.append(result.q)
            errors.append(0.0 if result.success else result.pos_error_m)
        Q = np.array(candidates)
        _, clear = self._allowed(Q, -np.inf)
        moves = np.abs(Q[:, self._reach_idx] - start_q[self._reach_idx]).sum(axis=1)
        # Lexicographic: converged, then above the table, then nearest.
        key = np.array(errors) * 1e6 + (~clear) * 1e3 + moves
        return Q[int(np.argmin(key)), self._reach_idx].copy()

    @property
    def goal_q(self) -> np.ndarray | None:
        """Reach joint angles at the goal (rad) for the "joints_goal_ee_ik" observation, set on
        reset; None with the other observations."""
        return None if self._goal_q is None else self._goal_q.copy()

    def _obs(self) -> np.ndarray:
        return reacher_observation(self._q[self._reach_idx], self._goal, self._ee,
                                   self.config.observation, self._goal_q)

    def _distance(self) -> float:
        return float(np.linalg.norm(self._ee - self._goal))

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
        rng = self.np_random
        cfg = self.config
        goal_given = "goal" in options or cfg.fixed_goal is not None
        goal_near_start = cfg.max_goal_steps is not None and not goal_given
        if "goal" in options:
            goal = np.asarray(options["goal"], dtype=float)
            if goal.shape != (3,) or not np.all(np.isfinite(goal)):
                raise ValueError(f"options['goal']: expected 3 finite numbers (m), "
                                 f"got {options['goal']!r}")
            self._check_goal(goal, "options['goal']")
            self._goal = goal
        elif cfg.fixed_goal is not None:
            self._goal = np.array(cfg.fixed_goal, dtype=float)
        elif not goal_near_start:
            self._goal = self.sample_goal(rng)
        tol = cfg.goal_tolerance_m
        if "reach_joint_positions" in options:
            q_reach = np.asarray(options["reach_joint_positions"], dtype=float)
            if (q_reach.shape != self._lower.shape or not np.all(np.isfinite(q_reach))
                    or np.any(q_reach < self._lower) or np.any(q_reach > self._upper)):
                raise ValueError(f"options['reach_joint_positions']: expected "
                                 f"{len(self._lower)} angles within [{self._lower.tolist()}, "
                                 f"{self._upper.tolist()}] rad, got "
                                 f"{options['reach_joint_positions']!r}")
            self._q = self._home_q.copy()
            self._q[self._reach_idx] = q_reach
            self._ee = self.chain.fk(self._q)[:3, 3]
        else:
            for _ in range(1000):
                Q = self._random_reach_q(rng, 16)
                ee, ok = self._allowed(Q, 0.0)
                if not goal_near_start:
                    ok &= np.linalg.norm(ee - self._goal, axis=1) > tol
                if ok.any():
                    i = int(np.argmax(ok))
                    self._q, self._ee = Q[i], ee[i]
                    break
            else:  # pragma: no cover - every pose under the table: a broken robot description
                raise RuntimeError("reset: found no start pose with the arm above the table")
        if goal_near_start:
            self._goal = self._sample_goal_near_start(rng)
        return self._start_episode()

    def _sample_goal_near_start(self, rng: np.random.Generator) -> np.ndarray:
        """End-effector position after m <= max_goal_steps random joint steps from the start
        (above the table, farther than the tolerance); any workspace goal if none is found."""
        k, n_joints, batch = self.config.max_goal_steps, len(self._reach_idx), 32
        for _ in range(50):
            m = rng.integers(1, k + 1, size=batch)
            counts = np.array([rng.multinomial(mi, np.full(n_joints, 1.0 / n_joints))
                               for mi in m])
            signs = rng.choice([-1.0, 1.0], size=(batch, n_joints))
            Q = np.tile(self._q, (batch, 1))
            Q[:, self._reach_idx] = np.clip(
                self._q[self._reach_idx] + signs * counts * self.config.dtheta_rad,
                self._lower, self._upper)
            ee, ok = self._allowed(Q, self.config.goal_min_height_m)
            ok &= np.linalg.norm(ee - self._ee, axis=1) > self.config.goal_tolerance_m
            if ok.any():
                return ee[int(np.argmax(ok))].copy()
        return self.sample_goal(rng)

    def _start_episode(self) -> tuple[np.ndarray, dict[str, Any]]:
        if self.config.observation == "joints_goal_ee_ik":
            self._goal_q = self.goal_joint_positions(self._goal, self._q)
        self._t = 0
        self._needs_reset = False
        distance = self._distance()
        return self._obs(), self._info({"distance_m": distance,
                                        "is_success": distance <= self.config.goal_tolerance_m})

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        if self._goal_q is not None:
            info["goal_joint_distance_rad"] = float(
                np.abs(self._goal_q - self._q[self._reach_idx]).sum())
        return info

    def _check_action(self, action: Any) -> int:
        try:
            a = operator.index(action)
        except TypeError:
            a = None
        if a is None or isinstance(action, bool) or not 0 <= a < self.action_space.n:
            raise ValueError(f"action: must be an integer in [0, {self.action_space.n - 1}], "
                             f"got {action!r}")
        return a

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = self._check_action(action)
        if self._needs_reset:
            raise RuntimeError("step: call reset() before step() (and after an episode ends)")
        cfg = self.config
        info: dict[str, Any] = {}
        sign = 1.0 if a % 2 == 0 else -1.0
        if cfg.action_mode == "joint":
            j = a // 2
            i = self._reach_idx[j]
            self._q[i] = min(max(self._q[i] + sign * cfg.dtheta_rad, self._lower[j]),
                             self._upper[j])
            self._ee = self.chain.fk(self._q)[:3, 3]
        else:
            target = self._ee.copy()
            target[a // 2] += sign * cfg.cartesian_step_m
            # Restart-free IK from the current pose: the arm moves continuously or not at all.
            result = self.chain.ik(target, q0=self._q, active_joints=self.reach_joint_names,
                                   restarts=0, max_iterations=30)
            info["ik_success"] = result.success
            if result.success:
                self._q = result.q
                self._ee = self.chain.fk(self._q)[:3, 3]
        self._t += 1
        distance = self._distance()
        success = distance <= cfg.goal_tolerance_m
        reward = reacher_reward(distance, cfg.goal_tolerance_m, cfg.reward)
        terminated = success
        truncated = (not terminated) and self._t >= cfg.episode_length
        self._needs_reset = terminated or truncated
        info["distance_m"] = distance
        info["is_success"] = success
        return self._obs(), reward, terminated, truncated, self._info(info)

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
        self._robot.teleport_arm(self._q)
        self._sim.client.resetBasePositionAndOrientation(
            self._goal_marker, self._goal.tolist(), [0.0, 0.0, 0.0, 1.0])
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
                                                   basePosition=self._goal.tolist())
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
