"""The policy node's logic without ROS: task set-up (network, spaces, env config), observations,
rewards, exploration and episode bookkeeping, so that it can be tested without DDS and so that
the node's observations and rewards match the single-process gymnasium envs exactly.

Observations follow the envs: the Reacher's (7,) = reach-joint angles + goal, and the grasp
task's (C, H, W) = r, g, b in [0, 1] and/or height above the table (m). Rewards come from what
the robot itself senses (forward kinematics of measured joints, gripper aperture), never from a
simulator's ground truth.
"""

from __future__ import annotations

import math
import secrets
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from q_grasp.envs.reacher import reacher_observation
from q_grasp.learning.agent import random_allowed_action
from q_grasp.learning.checkpoint import Checkpoint, load_checkpoint
from q_grasp.learning.config import ExperimentConfig, ExplorationConfig
from q_grasp.learning.networks import (
    QNetwork,
    UNetQMap,
    build_network,
    check_network_matches_env,
    network_spec_for_env,
)
from q_grasp.learning.tasks import default_config, resolve_task
from q_grasp.wire import TransitionBatch

TASKS = ("grasp", "reacher")
"""Tasks the policy node runs."""


# --------------------------------------------------------------------------------- set-up


class TaskSpaces(gym.Env):
    """Observation/action spaces (and image channel names) of a task, without its simulator.

    ``network_spec_for_env`` and ``check_network_matches_env`` need only these, so the policy
    node builds exactly the network the single-process CLI and the trainer build, without
    starting pybullet.
    """

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Discrete,
                 image_channels: tuple[str, ...] | None = None) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        if image_channels is not None:
            self.image_channels = tuple(image_channels)

    def step(self, action: Any):  # pragma: no cover - never stepped
        raise NotImplementedError("TaskSpaces only describes spaces")

    def reset(self, *, seed: int | None = None, options: dict | None = None):  # pragma: no cover
        raise NotImplementedError("TaskSpaces only describes spaces")


def grasp_spaces(cfg: Any) -> TaskSpaces:
    """The spaces TopDownGraspEnv(cfg) has (kept equal by test_policy_core.py)."""
    from q_grasp.envs.grasp import OBSERVATION_CHANNELS

    channels = OBSERVATION_CHANNELS[cfg.observation]
    h, w = cfg.image_size
    low = np.zeros((len(channels), h, w), dtype=np.float32)
    high = np.ones((len(channels), h, w), dtype=np.float32)
    if "height" in channels:
        high[channels.index("height")] = cfg.camera_height_m
    return TaskSpaces(spaces.Box(low=low, high=high, dtype=np.float32),
                      spaces.Discrete(int(cfg.num_rotations) * h * w), channels)


@dataclass
class TaskSetup:
    """Everything the policy needs to act on one task, built from files, not from a simulator."""

    task: str
    """"grasp" or "reacher"."""
    env_id: str
    """Gymnasium id of the matching single-process env."""
    env_config: Any
    """ReacherConfig or GraspConfig (the task's geometry, rewards, episode length)."""
    spaces: TaskSpaces
    """Observation and action spaces."""
    q_net: QNetwork | UNetQMap
    """The Q-network (checkpoint weights, or a fresh seeded initialisation)."""
    experiment: ExperimentConfig
    """The experiment config (from the checkpoint or the experiment YAML)."""
    max_episode_steps: int
    """Steps (reacher) or grasp attempts (grasp) after which an episode is truncated."""
    counters: dict[str, int] = field(default_factory=dict)
    """The checkpoint's counters (env_steps, episodes, updates); empty without a checkpoint."""
    source: str = ""
    """Where the weights came from (checkpoint path or "fresh")."""


def _env_config(task: str, kwargs: dict[str, Any]) -> Any:
    if task == "reacher":
        from q_grasp.envs.reacher import ReacherConfig

        cls = ReacherConfig
    else:
        from q_grasp.envs.grasp import GraspConfig

        cls = GraspConfig
    known = {f for f in cls.__dataclass_fields__}
    unknown = sorted(set(kwargs) - known - {"render_mode", "max_episode_steps"})
    if unknown:
        raise ValueError(f"env kwargs: {unknown} are not fields of {cls.__name__}")
    return cls(**{k: v for k, v in kwargs.items() if k in known})


def task_spaces(task: str, env_config: Any) -> TaskSpaces:
    """Spaces of ``task`` with ``env_config`` (the Reacher's come from the env itself: cheap)."""
    if task == "reacher":
        from q_grasp.envs.reacher import ReacherEnv

        env = ReacherEnv(env_config)
        return TaskSpaces(env.observation_space, env.action_space)
    return grasp_spaces(env_config)


def load_task(task: str, *, experiment_config: str = "", checkpoint: str = "",
              seed: int = 0) -> TaskSetup:
    """Build the task's config, spaces and Q-network.

    With a checkpoint, the network (architecture and weights) and the env kwargs come from it,
    so a checkpoint written by ``q-grasp train`` acts in the node exactly as in its env. Without
    one, the experiment YAML (``experiment_config``, or the packaged default for the task)
    gives the env kwargs and the architecture, and the weights are a seeded initialisation.
    Raises ValueError naming the parameter at fault.
    """
    if task not in TASKS:
        raise ValueError(f"task: must be one of {list(TASKS)}, got {task!r}")
    env_id = resolve_task(task)
    ckpt: Checkpoint | None = None
    if checkpoint:
        try:
            ckpt = load_checkpoint(checkpoint)
        except ValueError as exc:
            raise ValueError(f"checkpoint: {exc}") from None
        stored_id = (ckpt.env or {}).get("id") or (ckpt.config.env.id if ckpt.config else "")
        if stored_id and stored_id != env_id:
            raise ValueError(f"checkpoint: {checkpoint!r} was trained on {stored_id!r}, but "
                             f"task is {task!r} ({env_id})")
    if ckpt is not None and ckpt.config is not None and not experiment_config:
        experiment = ckpt.config
    elif experiment_config:
        path = Path(experiment_config).expanduser()
        try:
            experiment = ExperimentConfig.from_yaml(path)
        except ValueError as exc:
            raise ValueError(f"experiment_config: {exc}") from None
    else:
        experiment = default_config(env_id)
    if experiment.env.id != env_id:
        raise ValueError(f"experiment_config: is for env {experiment.env.id!r}, but task is "
                         f"{task!r} ({env_id})")
    kwargs = dict(experiment.env.kwargs)
    if ckpt is not None and isinstance((ckpt.env or {}).get("kwargs"), dict):
        kwargs = dict(ckpt.env["kwargs"])
    try:
        env_config = _env_config(task, kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"experiment_config: env.kwargs: {exc}") from None
    task_space = task_spaces(task, env_config)
    if ckpt is not None:
        q_net = ckpt.build_network()
        try:
            check_network_matches_env(q_net, task_space)
        except ValueError as exc:
            raise ValueError(f"checkpoint: {exc}") from None
        source = str(checkpoint)
    else:
        kind, net_config = network_spec_for_env(task_space, experiment.network)
        torch.manual_seed(seed)
        q_net = build_network(kind, net_config)
        source = "fresh"
    q_net.eval()
    own_limit = (env_config.episode_length if task == "reacher"
                 else env_config.max_attempts)
    limit = experiment.env.max_episode_steps
    max_steps = min(own_limit, limit) if limit is not None else own_limit
    return TaskSetup(task=task, env_id=env_id, env_config=env_config, spaces=task_space,
                     q_net=q_net, experiment=experiment, max_episode_steps=int(max_steps),
                     counters=dict(ckpt.counters) if ckpt is not None else {}, source=source)


def exploration_config(schedule: str, start: float, end: float, eval_epsilon: float,
                       decay_steps: int, retry_exclusion_px: int = -1,
                       use_action_mask: bool = True) -> tuple[ExplorationConfig, int]:
    """The learning core's ExplorationConfig for the node's epsilon parameters (and the
    experiment's failed-grasp exclusion and reachability mask), and the ``total_steps`` that
    makes a linear schedule reach ``end`` after ``decay_steps``."""
    cfg = ExplorationConfig(strategy="epsilon_greedy", schedule=schedule, start=start, end=end,
                            fraction=1.0, decay_steps=float(max(decay_steps, 1)),
                            eval_epsilon=eval_epsilon, retry_exclusion_px=retry_exclusion_px,
                            use_action_mask=bool(use_action_mask))
    cfg.validate()
    return cfg, max(int(decay_steps), 1)


def choose_action(q_values: np.ndarray, epsilon: float, rng: np.random.Generator,
                  skip: np.ndarray | None = None, allowed: np.ndarray | None = None,
                  ) -> tuple[int, bool]:
    """Epsilon-greedy over flat Q-values (n_actions,): (action, whether it was random). Random
    choices are drawn among ``allowed`` (flat bool, None: all actions); the greedy choice
    leaves out the actions in ``skip`` (e.g. the episode's failed grasps and those outside
    ``allowed``, see Actor.skip_mask)."""
    q = np.asarray(q_values).reshape(-1)
    if skip is not None:
        q = np.where(skip.reshape(-1), -np.inf, q)
    greedy = int(q.argmax())
    if rng.random() < epsilon:
        action = random_allowed_action(rng, q.size, allowed)
        return action, action != greedy
    return greedy, False


# --------------------------------------------------------------------------------- reacher
# Observation and reward are the env's own functions (q_grasp.envs.reacher), so checkpoints
# trained in a single process see exactly the same inputs and rewards over ROS.


def shaped_reward(reward: float, distance_m: float, next_distance_m: float, terminated: bool,
                  coefficient: float, gamma: float) -> float:
    """Potential-based shaping as the CLI's DistanceShaping wrapper applies it in training:
    r + gamma * phi(s') - phi(s) with phi = -k * distance and phi = 0 after termination."""
    if coefficient <= 0.0:
        return float(reward)
    next_potential = 0.0 if terminated else -coefficient * next_distance_m
    return float(reward) + gamma * next_potential + coefficient * distance_m


class ReacherEpisodes:
    """Start poses and goals drawn exactly as ReacherEnv.reset draws them (same code, same
    config), plus the env's action semantics turned into joint targets for a real arm."""

    def __init__(self, config: Any, seed: int | None = None) -> None:
        from q_grasp.envs.reacher import ReacherEnv

        self.config = config
        self.env = ReacherEnv(config)
        self.chain = self.env.chain
        robot = config.robot
        self.arm_joint_names = list(robot.arm_joint_names)
        self.reach_joint_names = list(robot.reach_joint_names)
        chain_names = self.chain.joint_names
        if list(chain_names) != self.arm_joint_names:
            raise ValueError(f"robot arm_joint_names {self.arm_joint_names} must be the "
                             f"kinematic chain's joints {list(chain_names)} in order")
        self.reach_index = np.array([self.arm_joint_names.index(n)
                                     for n in self.reach_joint_names])
        self.lower, self.upper = self.chain.lower.copy(), self.chain.upper.copy()
        self._seed = seed
        self._goal_q_cache: tuple[bytes | None, np.ndarray | None] = (None, None)
        self.n_actions = int(self.env.action_space.n)

    def new_episode(self, current_arm_joints: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """(start arm joint targets, goal). ``current_arm_joints`` given: start where the arm
        is (no repositioning move) and draw only the goal."""
        options = None
        if current_arm_joints is not None:
            q = np.clip(np.asarray(current_arm_joints, float), self.lower, self.upper)
            options = {"reach_joint_positions": q[self.reach_index]}
        seed, self._seed = self._seed, None  # seed only the first episode (gymnasium rule)
        self.env.reset(seed=seed, options=options)
        return self.env.joint_positions, self.env.goal

    def ee_position(self, arm_joints: np.ndarray) -> np.ndarray:
        """Tool centre point (m, world) by forward kinematics of measured arm joints."""
        return self.chain.fk(np.asarray(arm_joints, float))[:3, 3]

    def distance(self, arm_joints: np.ndarray, goal: np.ndarray) -> float:
        """End effector to goal distance (m)."""
        return float(np.linalg.norm(self.ee_position(arm_joints) - np.asarray(goal)))

    def goal_joints(self, goal: np.ndarray, arm_joints: np.ndarray) -> np.ndarray | None:
        """Reach joint angles at ``goal`` for the "joints_goal_ee_ik" observation (None with
        the others): the env's, computed at new_episode from the start pose, for the episode's
        goal; for another goal, the env's same IK from ``arm_joints``, kept for that goal."""
        if self.config.observation != "joints_goal_ee_ik":
            return None
        goal = np.asarray(goal, float).reshape(3)
        if self.env.goal_q is not None and np.array_equal(goal, self.env.goal):
            return self.env.goal_q
        key = goal.tobytes()
        if self._goal_q_cache[0] != key:
            self._goal_q_cache = (key, self.env.goal_joint_positions(
                goal, np.asarray(arm_joints, float)))
        return self._goal_q_cache[1]

    def goal_joint_distance(self, arm_joints: np.ndarray, goal: np.ndarray) -> float:
        """Sum of |goal joints - reach joints| (rad), as the env's
        info['goal_joint_distance_rad']; 0 when the observation has no goal joints."""
        goal_q = self.goal_joints(goal, arm_joints)
        if goal_q is None:
            return 0.0
        q = np.asarray(arm_joints, float)
        return float(np.abs(goal_q - q[self.reach_index]).sum())

    def observation(self, arm_joints: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """The env's observation from measured arm joints."""
        q = np.asarray(arm_joints, float)
        return reacher_observation(q[self.reach_index], goal, self.ee_position(q),
                                   self.config.observation, self.goal_joints(goal, q))

    def joint_target(self, previous_target: np.ndarray, action: int) -> tuple[np.ndarray, bool]:
        """Arm joint targets after ``action`` applied to the previous targets (the env's step
        on commanded positions, so that tracking errors do not accumulate). Returns (targets,
        ik_success); a Cartesian step that IK cannot make keeps the targets."""
        if not 0 <= int(action) < self.n_actions:
            raise ValueError(f"action: must be in [0, {self.n_actions - 1}], got {action}")
        cfg = self.config
        target = np.asarray(previous_target, float).copy()
        sign = 1.0 if action % 2 == 0 else -1.0
        if cfg.action_mode == "joint":
            i = self.reach_index[action // 2]
            target[i] = min(max(target[i] + sign * cfg.dtheta_rad, self.lower[i]), self.upper[i])
            return target, True
        point = self.ee_position(target)
        point[action // 2] += sign * cfg.cartesian_step_m
        result = self.chain.ik(point, q0=target, active_joints=self.reach_joint_names,
                               restarts=0, max_iterations=30)
        return (result.q, True) if result.success else (target, False)


# --------------------------------------------------------------------------------- grasp


class CameraModel:
    """Pixel <-> world for a camera whose intrinsics come from a CameraInfo (K) and whose pose
    is a parameter (position, target, up vector in the world frame), with the conventions of
    q_grasp.sim.camera: pixel (u, v) = (column, row), depth along the optical axis."""

    def __init__(self, K: np.ndarray, width: int, height: int, position: Sequence[float],
                 target: Sequence[float], up_vector: Sequence[float]) -> None:
        from q_grasp.sim.camera import CameraConfig, PinholeCamera

        self.K = np.asarray(K, np.float64).reshape(3, 3)
        if not (np.isfinite(self.K).all() and self.K[0, 0] > 0 and self.K[1, 1] > 0):
            raise ValueError("camera K: not a valid intrinsic matrix")
        self.width, self.height = int(width), int(height)
        # The pose convention (optical z forward, x right, y down) is PinholeCamera's; only its
        # extrinsics are used, the intrinsics are the CameraInfo's.
        pose = PinholeCamera(CameraConfig(width=self.width, height=self.height,
                                          position=tuple(position), target=tuple(target),
                                          up_vector=tuple(up_vector)))
        self.position, self.rotation = pose.world_pose()
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        u, v = np.meshgrid(np.arange(self.width), np.arange(self.height))
        rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u, float)], axis=-1)
        self._z_per_depth = (rays @ self.rotation.T)[..., 2]

    def pixel_to_world(self, u: np.ndarray | float, v: np.ndarray | float,
                       depth_m: np.ndarray | float) -> np.ndarray:
        """World point(s) seen at pixel (u=col, v=row) at ``depth_m`` along the optical axis:
        (3,) for scalars, (..., 3) for arrays (broadcast together)."""
        K = self.K
        u, v, d = np.broadcast_arrays(np.asarray(u, np.float64), np.asarray(v, np.float64),
                                      np.asarray(depth_m, np.float64))
        pc = np.stack([(u - K[0, 2]) / K[0, 0] * d, (v - K[1, 2]) / K[1, 1] * d, d], axis=-1)
        return pc @ self.rotation.T + self.position

    def surface_points(self, depth: np.ndarray) -> np.ndarray:
        """World points (H, W, 3) (m) of the surface seen at every pixel of a depth image."""
        v, u = np.mgrid[0:self.height, 0:self.width]
        return self.pixel_to_world(u, v, depth)

    def heightmap(self, depth: np.ndarray) -> np.ndarray:
        """Height above the table (world z, m) of the surface seen at every pixel."""
        depth = np.asarray(depth, np.float64)
        if depth.shape != (self.height, self.width):
            raise ValueError(f"depth: expected shape {(self.height, self.width)}, got "
                             f"{depth.shape}")
        return (self.position[2] + depth * self._z_per_depth).astype(np.float32)


def grasp_observation(rgb: np.ndarray, heightmap: np.ndarray, channels: Sequence[str],
                      max_height_m: float) -> np.ndarray:
    """TopDownGraspEnv's observation (C, H, W) float32: r, g, b = uint8 / 255 and/or height
    above the table clipped to [0, max_height_m]. Pixels without a depth reading (NaN) read as
    the table (height 0), the least attractive place to grasp."""
    out = []
    if "r" in channels:
        out.extend(np.moveaxis(np.asarray(rgb), -1, 0).astype(np.float32) / 255.0)
    if "height" in channels:
        heights = np.nan_to_num(np.asarray(heightmap, np.float32), nan=0.0, posinf=max_height_m,
                                neginf=0.0)
        out.append(np.clip(heights, 0.0, max_height_m))
    return np.stack(out).astype(np.float32)


def decode_grasp_action(action: int, n_rotations: int, height: int, width: int
                        ) -> tuple[int, int, int]:
    """Action index -> (rotation, row, col), C order of the (R, H, W) Q-map."""
    if not 0 <= int(action) < n_rotations * height * width:
        raise ValueError(f"action: must be in [0, {n_rotations * height * width - 1}], "
                         f"got {action}")
    rot, rest = divmod(int(action), height * width)
    row, col = divmod(rest, width)
    return rot, row, col


def table_looks_empty(heightmap: np.ndarray, min_object_height_m: float,
                      min_pixels: int = 2) -> bool:
    """True when fewer than ``min_pixels`` pixels stand ``min_object_height_m`` above the
    table: the camera sees nothing left to grasp (the robot's own view, not ground truth)."""
    heights = np.nan_to_num(np.asarray(heightmap, np.float32), nan=0.0)
    return int((heights > min_object_height_m).sum()) < min_pixels


# --------------------------------------------------------------------------------- bookkeeping


@dataclass
class Transition:
    """One step of experience as the trainer stores it."""

    observation: np.ndarray
    action: int
    reward: float
    next_observation: np.ndarray
    terminated: bool
    truncated: bool
    is_success: bool


class TransitionBatcher:
    """Collects transitions into wire TransitionBatches: a fresh run id per batcher (one start
    of the actor) and sequence numbers that count the transitions sent before each batch."""

    def __init__(self, task: str, actor_id: str, num_actions: int, batch_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"transition_batch_size: must be >= 1, got {batch_size}")
        self.task, self.actor_id, self.num_actions = task, actor_id, int(num_actions)
        self.batch_size = int(batch_size)
        self.sequence = 0
        self.run_id = secrets.token_hex(8)
        self._pending: list[Transition] = []
        self._weights_version = -1

    def add(self, transition: Transition, weights_version: int) -> TransitionBatch | None:
        """Queue a transition; returns a batch when one is full or the episode ended."""
        self._pending.append(transition)
        self._weights_version = int(weights_version)
        if len(self._pending) >= self.batch_size or transition.terminated or \
                transition.truncated:
            return self.flush()
        return None

    def flush(self, stamp_ns: int = 0) -> TransitionBatch | None:
        """The queued transitions as one batch (None when nothing is queued)."""
        if not self._pending:
            return None
        items, self._pending = self._pending, []
        batch = TransitionBatch(
            observations=np.stack([t.observation for t in items]).astype(np.float32),
            actions=np.array([t.action for t in items], np.int64),
            rewards=np.array([t.reward for t in items], np.float32),
            next_observations=np.stack([t.next_observation for t in items]).astype(np.float32),
            terminated=np.array([t.terminated for t in items], bool),
            truncated=np.array([t.truncated for t in items], bool),
            is_success=np.array([t.is_success for t in items], bool),
            num_actions=self.num_actions, task=self.task, actor_id=self.actor_id,
            sequence=self.sequence, run_id=self.run_id,
            weights_version=max(self._weights_version, -1), stamp_ns=max(int(stamp_ns), 0))
        self.sequence += len(items)
        return batch


class EpisodeStats:
    """Steps, episodes, returns and success rates over a sliding window of recent episodes
    (and, for grasping, of recent attempts)."""

    def __init__(self, window: int = 50, initial_steps: int = 0) -> None:
        if window < 1:
            raise ValueError(f"success_window: must be >= 1, got {window}")
        self.steps = int(initial_steps)
        self.episodes = 0
        self.episode_return = 0.0
        self.episode_length = 0
        self.attempt_successes = 0
        self._episode_success: deque[bool] = deque(maxlen=window)
        self._attempt_success: deque[bool] = deque(maxlen=window)
        self._returns: deque[float] = deque(maxlen=window)

    def record_step(self, reward: float, success: bool, done: bool) -> bool:
        """Count one step; True when it ended an episode."""
        self.steps += 1
        self.episode_return += float(reward)
        self.episode_length += 1
        self._attempt_success.append(bool(success))
        self.attempt_successes += int(bool(success))
        if done:
            self.episodes += 1
            self._episode_success.append(bool(success))
            self._returns.append(self.episode_return)
            self.episode_return, self.episode_length = 0.0, 0
        return done

    @property
    def success_rate(self) -> float:
        """Share of recent episodes that ended in success (NaN before the first episode)."""
        return float(np.mean(self._episode_success)) if self._episode_success else math.nan

    @property
    def attempt_success_rate(self) -> float:
        """Share of recent steps that succeeded (grasp attempts that lifted an object)."""
        return float(np.mean(self._attempt_success)) if self._attempt_success else math.nan

    @property
    def mean_return(self) -> float:
        """Mean return of recent episodes (NaN before the first episode)."""
        return float(np.mean(self._returns)) if self._returns else math.nan
