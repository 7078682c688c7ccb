"""The reach task: move the tool centre point to a goal by discrete joint (or Cartesian) steps.

``ReachTask`` owns everything that defines the task - observation, action space and decoding,
reward, termination, start poses and goals - and acts through an ``ArmInterface``: the
gymnasium ReacherEnv drives a ``KinematicArm`` (joints set directly, no physics), the policy
node drives the ROS arm. Both call ``ReachTask.step``.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium import spaces

from q_grasp.kinematics import KinematicChain
from q_grasp.skills.arm_interface import ArmInterface

if TYPE_CHECKING:
    from q_grasp.envs.reacher import ReacherConfig

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


def reacher_observation(reach_q: np.ndarray, goal: np.ndarray, ee: np.ndarray | None = None,
                        observation: str = "joints_goal",
                        goal_q: np.ndarray | None = None) -> np.ndarray:
    """The Reacher's observation (float32) from reach joint angles (rad), the goal (m) and, for
    the "joints_goal_ee*" layouts, the end-effector position (m) from forward kinematics of the
    same joints; "joints_goal_ee_ik" also needs ``goal_q``, the reach joint angles at the goal
    (rad, ``ReachTask.goal_joint_positions``)."""
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
    goal (see ReacherConfig.reward)."""
    if distance_m <= tolerance_m:
        return 1.0
    if reward_type == "sparse":
        return 0.0
    if reward_type == "distance":
        return -distance_m / DISTANCE_REWARD_SCALE_M
    if reward_type == "dense":
        return tolerance_m / distance_m - 1.0
    raise ValueError(f"reward: must be one of {REWARD_TYPES}, got {reward_type!r}")


class KinematicArm:
    """An ArmInterface without physics: joints go exactly where they are commanded. The
    Reacher needs nothing else, which keeps a step in the tens of microseconds."""

    def __init__(self, arm_joint_names: Sequence[str], joints: np.ndarray) -> None:
        self.arm_joint_names = list(arm_joint_names)
        self._q = np.asarray(joints, float).copy()

    def read_arm_joints(self) -> np.ndarray:
        return self._q.copy()

    def move_arm(self, joint_targets: np.ndarray, *, teleport: bool = False) -> bool:
        self._q = np.asarray(joint_targets, float).copy()
        return True

    def move_arm_through(self, waypoints: Sequence[np.ndarray]) -> bool:
        for q in waypoints:
            self.move_arm(q)
        return True

    def set_gripper(self, closed: bool) -> float:
        return 0.0

    def gripper_aperture(self) -> float:
        return 0.0


@dataclass
class ReachEpisode:
    """One episode's goal and progress."""

    goal: np.ndarray
    """Goal (x, y, z; m, world frame)."""
    start_q: np.ndarray
    """Arm joints (rad) the episode starts from."""
    goal_q: np.ndarray | None
    """Reach joint angles at the goal ("joints_goal_ee_ik"), else None."""
    max_steps: int
    """Steps after which the episode is truncated."""
    target: np.ndarray | None = None
    """Arm joint targets last commanded (steps add to them, not to the measured joints, so
    that tracking errors do not accumulate)."""
    steps: int = 0
    """Steps taken."""


@dataclass
class ReachState:
    """What the arm's measured joints say about the episode."""

    observation: np.ndarray
    ee: np.ndarray
    """End-effector position (m) by forward kinematics of the measured joints."""
    distance_m: float
    success: bool
    info: dict[str, Any]
    """distance_m, is_success and, with goal joints, goal_joint_distance_rad."""


class ReachTask:
    """The Reacher task for one arm and ReacherConfig (see ReacherEnv for its spaces)."""

    def __init__(self, config: ReacherConfig, chain: KinematicChain | None = None) -> None:
        self.config = config
        robot = config.robot
        self.chain = chain if chain is not None else KinematicChain.from_robot_config(robot)
        self.arm_joint_names = list(robot.arm_joint_names)
        if list(self.chain.joint_names) != self.arm_joint_names:
            raise ValueError(f"robot arm_joint_names {self.arm_joint_names} must be the "
                             f"kinematic chain's joints {list(self.chain.joint_names)} in order")
        self.reach_joint_names = list(robot.reach_joint_names)
        self.reach_index = np.array([self.chain.joint_names.index(n)
                                     for n in self.reach_joint_names])
        self.lower = self.chain.lower[self.reach_index]
        self.upper = self.chain.upper[self.reach_index]
        if not (np.all(np.isfinite(self.lower)) and np.all(np.isfinite(self.upper))):
            raise ValueError("robot reach_joint_names: the Reacher needs joints with finite "
                             "limits (no continuous joints)")
        self.home_q = self.chain.clip(self.chain.default_q)
        self._clearance_links = [n for n in _CLEARANCE_LINKS if n in self.chain.link_names]
        self._pool: np.ndarray | None = None
        self._ik_starts: np.ndarray | None = None

        reach = self.chain.max_reach_m
        base = np.asarray(robot.base_position, dtype=float)
        goal_low = np.array([base[0] - reach, base[1] - reach, 0.0])
        goal_high = np.array([base[0] + reach, base[1] + reach, base[2] + reach + 0.1])
        self._goal_box = spaces.Box(
            low=np.concatenate([self.lower, goal_low]).astype(np.float32),
            high=np.concatenate([self.upper, goal_high]).astype(np.float32),
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
            span = (self.upper - self.lower).astype(np.float32)
            ones = np.ones(len(span), np.float32)
            low = np.concatenate([low, -span, -ones]).astype(np.float32)
            high = np.concatenate([high, span, ones]).astype(np.float32)
        self.observation_space = spaces.Box(low=low, high=high, dtype=np.float32)
        n_actions = 2 * len(self.reach_joint_names) if config.action_mode == "joint" else 6
        self.action_space = spaces.Discrete(n_actions)

    # ------------------------------------------------------------------------- workspace
    def _allowed(self, Q: np.ndarray, min_ee_height: float) -> tuple[np.ndarray, np.ndarray]:
        """End-effector positions of Q and whether each pose keeps the arm above the table."""
        poses = self.chain.link_poses_batch(Q, [self.chain.ee_link, *self._clearance_links])
        ee = poses[:, 0, :3, 3]
        ok = (ee[:, 2] >= min_ee_height) & np.all(poses[:, 1:, 2, 3] >= 0.0, axis=1)
        return ee, ok

    def _random_reach_q(self, rng: np.random.Generator, n: int) -> np.ndarray:
        Q = np.tile(self.home_q, (n, 1))
        Q[:, self.reach_index] = rng.uniform(self.lower, self.upper, size=(n, len(self.lower)))
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

    def check_workspace(self) -> None:
        """Build the goal pool and check a fixed goal (ValueError naming the field at fault);
        done on the first episode otherwise."""
        if self._pool is None:
            self._build_goal_pool()
            if self.config.fixed_goal is not None:
                self.check_goal(np.array(self.config.fixed_goal), "fixed_goal")

    def check_goal(self, goal: np.ndarray, name: str) -> None:
        """ValueError naming ``name`` unless ``goal`` is above the table and reachable."""
        where = tuple(round(float(v), 4) for v in goal)
        if goal[2] < 0.0:
            raise ValueError(f"{name}: {where} is below the table (z must be >= 0 m)")
        if not self._goal_box.contains(np.concatenate([self.lower, goal]).astype(np.float32)):
            raise ValueError(f"{name}: {where} is outside the reachable workspace "
                             f"(more than {self.chain.max_reach_m:.3f} m from the arm)")
        result = self.chain.ik(goal, q0=self.home_q, active_joints=self.reach_joint_names,
                               pos_tol_m=0.2 * self.config.goal_tolerance_m, restarts=20)
        if not result.success:
            raise ValueError(f"{name}: {where} is outside the reachable workspace of the "
                             f"reach joints ({result.message})")

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """A goal drawn uniformly over the reachable workspace cells (2 cm), above the table."""
        self.check_workspace()
        cell = int(rng.integers(len(self._cell_count)))
        i = self._cell_start[cell] + int(rng.integers(self._cell_count[cell]))
        return self._pool[i].copy()

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
        moves = np.abs(Q[:, self.reach_index] - start_q[self.reach_index]).sum(axis=1)
        # Lexicographic: converged, then above the table, then nearest.
        key = np.array(errors) * 1e6 + (~clear) * 1e3 + moves
        return Q[int(np.argmin(key)), self.reach_index].copy()

    # ------------------------------------------------------------------------- episodes
    def new_episode(self, rng: np.random.Generator, *, reach_q: np.ndarray | None = None,
                    goal: np.ndarray | None = None, max_steps: int | None = None
                    ) -> ReachEpisode:
        """Start pose and goal of a new episode: random reach joints within limits with the arm
        above the table and the end effector farther than goal_tolerance_m from the goal (or
        ``reach_q``, e.g. where a real arm stands), and a goal drawn over the workspace (or
        ``goal``, or the config's fixed_goal, or one max_goal_steps steps from the start)."""
        self.check_workspace()
        cfg = self.config
        goal_given = goal is not None or cfg.fixed_goal is not None
        goal_near_start = cfg.max_goal_steps is not None and not goal_given
        if goal is not None:
            raw, goal = goal, np.asarray(goal, dtype=float)
            if goal.shape != (3,) or not np.all(np.isfinite(goal)):
                raise ValueError(f"options['goal']: expected 3 finite numbers (m), got {raw!r}")
            self.check_goal(goal, "options['goal']")
        elif cfg.fixed_goal is not None:
            goal = np.array(cfg.fixed_goal, dtype=float)
        elif not goal_near_start:
            goal = self.sample_goal(rng)
        tol = cfg.goal_tolerance_m
        if reach_q is not None:
            q_reach = np.asarray(reach_q, dtype=float)
            if (q_reach.shape != self.lower.shape or not np.all(np.isfinite(q_reach))
                    or np.any(q_reach < self.lower) or np.any(q_reach > self.upper)):
                raise ValueError(f"options['reach_joint_positions']: expected "
                                 f"{len(self.lower)} angles within [{self.lower.tolist()}, "
                                 f"{self.upper.tolist()}] rad, got {reach_q!r}")
            q = self.home_q.copy()
            q[self.reach_index] = q_reach
            ee = self.chain.fk(q)[:3, 3]
        else:
            for _ in range(1000):
                Q = self._random_reach_q(rng, 16)
                ees, ok = self._allowed(Q, 0.0)
                if not goal_near_start:
                    ok &= np.linalg.norm(ees - goal, axis=1) > tol
                if ok.any():
                    i = int(np.argmax(ok))
                    q, ee = Q[i], ees[i]
                    break
            else:  # pragma: no cover - every pose under the table: a broken robot description
                raise RuntimeError("reset: found no start pose with the arm above the table")
        if goal_near_start:
            goal = self._sample_goal_near_start(rng, q, ee)
        goal_q = (self.goal_joint_positions(goal, q)
                  if cfg.observation == "joints_goal_ee_ik" else None)
        return ReachEpisode(goal=goal, start_q=q, goal_q=goal_q,
                            max_steps=cfg.episode_length if max_steps is None else max_steps)

    def _sample_goal_near_start(self, rng: np.random.Generator, q: np.ndarray,
                                ee: np.ndarray) -> np.ndarray:
        """End-effector position after m <= max_goal_steps random joint steps from the start
        (above the table, farther than the tolerance); any workspace goal if none is found."""
        k, n_joints, batch = self.config.max_goal_steps, len(self.reach_index), 32
        for _ in range(50):
            m = rng.integers(1, k + 1, size=batch)
            counts = np.array([rng.multinomial(mi, np.full(n_joints, 1.0 / n_joints))
                               for mi in m])
            signs = rng.choice([-1.0, 1.0], size=(batch, n_joints))
            Q = np.tile(q, (batch, 1))
            Q[:, self.reach_index] = np.clip(
                q[self.reach_index] + signs * counts * self.config.dtheta_rad,
                self.lower, self.upper)
            ees, ok = self._allowed(Q, self.config.goal_min_height_m)
            ok &= np.linalg.norm(ees - ee, axis=1) > self.config.goal_tolerance_m
            if ok.any():
                return ees[int(np.argmax(ok))].copy()
        return self.sample_goal(rng)

    # ------------------------------------------------------------------------- stepping
    def ee_position(self, arm_q: np.ndarray) -> np.ndarray:
        """Tool centre point (m, world) by forward kinematics of arm joints."""
        return self.chain.fk(np.asarray(arm_q, float))[:3, 3]

    def measure(self, arm_q: np.ndarray, episode: ReachEpisode) -> ReachState:
        """Observation, distance, success and info at arm joints ``arm_q``."""
        q = np.asarray(arm_q, float)
        ee = self.ee_position(q)
        distance = float(np.linalg.norm(ee - episode.goal))
        success = distance <= self.config.goal_tolerance_m
        obs = reacher_observation(q[self.reach_index], episode.goal, ee,
                                  self.config.observation, episode.goal_q)
        info: dict[str, Any] = {"distance_m": distance, "is_success": success}
        if episode.goal_q is not None:
            info["goal_joint_distance_rad"] = float(
                np.abs(episode.goal_q - q[self.reach_index]).sum())
        return ReachState(obs, ee, distance, success, info)

    def check_action(self, action: Any) -> int:
        """``action`` as an int, or ValueError when it is not one of the task's actions."""
        n = int(self.action_space.n)
        try:
            a = operator.index(action)
        except TypeError:
            a = None
        if a is None or isinstance(action, bool) or not 0 <= a < n:
            raise ValueError(f"action: must be an integer in [0, {n - 1}], got {action!r}")
        return a

    def joint_target(self, previous_target: np.ndarray, action: int) -> tuple[np.ndarray, bool]:
        """Arm joint targets after ``action`` applied to the previous targets. Returns
        (targets, ik_success); a Cartesian step that IK cannot make keeps the targets."""
        cfg = self.config
        target = np.asarray(previous_target, float).copy()
        sign = 1.0 if action % 2 == 0 else -1.0
        if cfg.action_mode == "joint":
            j = action // 2
            i = self.reach_index[j]
            target[i] = min(max(target[i] + sign * cfg.dtheta_rad, self.lower[j]),
                            self.upper[j])
            return target, True
        point = self.ee_position(target)
        point[action // 2] += sign * cfg.cartesian_step_m
        # Restart-free IK from the current pose: the arm moves continuously or not at all.
        result = self.chain.ik(point, q0=target, active_joints=self.reach_joint_names,
                               restarts=0, max_iterations=30)
        return (result.q, True) if result.success else (target, False)

    def step(self, arm: ArmInterface, episode: ReachEpisode, action: Any
             ) -> tuple[ReachState, float, bool, bool]:
        """Apply ``action`` on ``arm`` and judge the result from its measured joints:
        (state, reward, terminated, truncated); state.info has ik_success in Cartesian mode."""
        a = self.check_action(action)
        if episode.target is None:
            episode.target = arm.read_arm_joints()
        episode.target, ik_success = self.joint_target(episode.target, a)
        arm.move_arm(episode.target)
        episode.steps += 1
        state = self.measure(arm.read_arm_joints(), episode)
        if self.config.action_mode == "cartesian":
            state.info = {"ik_success": ik_success, **state.info}
        reward = reacher_reward(state.distance_m, self.config.goal_tolerance_m,
                                self.config.reward)
        terminated = state.success
        truncated = (not terminated) and episode.steps >= episode.max_steps
        return state, reward, terminated, truncated
