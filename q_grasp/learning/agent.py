"""Actor (acts from observations) and Learner (replay + TD updates), and the Agent that joins them.

The roles are separate so that the ROS policy node can wrap an `Actor` and the trainer node a
`Learner` (acme's actor/learner split): the actor only needs a network and exploration; the
learner owns the replay buffer, the target network and the optimizer. Both guard their network
with a lock so one thread can swap or publish weights while another acts or trains.
In a single process, `Agent` shares one network between the two.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from q_grasp.learning.buffer import ReplayBuffer
from q_grasp.learning.config import ExperimentConfig, ExplorationConfig
from q_grasp.learning.dqn import TargetUpdater, UpdateResult, dqn_update, make_optimizer
from q_grasp.learning.networks import (
    QNetwork,
    UNetQMap,
    build_network,
    image_channel_names,
    network_spec_for_env,
)
from q_grasp.learning.schedules import boltzmann, epsilon_greedy, make_schedule

MAX_Q_INTERVAL = 100
"""The learner measures the logged mean max-Q every this many updates (a U-Net needs full
Q-maps for it, several times the cost of the update itself) and reports the latest measure in
between."""


class FailedGraspMemory:
    """The failed grasps of the current episode, for pixel actions (rotation, row, col).

    Greedy choices skip a failed grasp's rotation within ``radius_px`` pixels of its pixel: a
    deterministic policy would otherwise try the same grasp on the unchanged scene until the
    episode ends. A success (the scene has changed) or the end of the episode clears it.
    """

    def __init__(self, n_rotations: int, height: int, width: int, radius_px: int) -> None:
        if radius_px < 0:
            raise ValueError(f"radius_px: must be >= 0, got {radius_px}")
        self.shape = (int(n_rotations), int(height), int(width))
        self.radius_px = int(radius_px)
        self._skip: np.ndarray | None = None

    def record(self, action: int, success: bool, done: bool) -> None:
        """What the last attempt did; ``done``: the episode ended with it."""
        if success or done:
            self.clear()
            return
        n_rot, height, width = self.shape
        rot, rest = divmod(int(action), height * width)
        row, col = divmod(rest, width)
        if self._skip is None:
            self._skip = np.zeros(self.shape, dtype=bool)
        r = self.radius_px
        self._skip[rot, max(row - r, 0):row + r + 1, max(col - r, 0):col + r + 1] = True

    def clear(self) -> None:
        """Forget every failed grasp (a new scene)."""
        self._skip = None

    def mask(self) -> np.ndarray | None:
        """Flat bool mask of the actions to skip (None: nothing to skip, or everything)."""
        if self._skip is None or self._skip.all():
            return None
        return self._skip.reshape(-1)


def masked_argmax(q_values: np.ndarray, skip: np.ndarray | None) -> int:
    """argmax of flat Q-values over the actions not in ``skip``."""
    if skip is None:
        return int(np.argmax(q_values))
    return int(np.argmax(np.where(skip, -np.inf, q_values)))


def check_action_mask(mask: Any, n_actions: int) -> np.ndarray | None:
    """A flat bool array of allowed actions from an ``info["action_mask"]``-style value, or None
    when there is none or it allows nothing (then every action stays allowed)."""
    if mask is None:
        return None
    allowed = np.asarray(mask).reshape(-1)
    if allowed.shape != (n_actions,):
        raise ValueError(f"action mask: expected {n_actions} entries (one per action), got "
                         f"shape {np.shape(mask)}")
    allowed = allowed.astype(bool, copy=False)
    return allowed if allowed.any() else None


def random_allowed_action(rng: np.random.Generator, n_actions: int,
                          allowed: np.ndarray | None = None) -> int:
    """A uniformly random action, among the ``allowed`` ones (flat bool) when given."""
    if allowed is None:
        return int(rng.integers(n_actions))
    return int(rng.choice(np.flatnonzero(allowed)))


class Actor:
    """Chooses actions: epsilon-greedy or Boltzmann on the Q-network's output, only among the
    actions an environment's action mask allows (``exploration.use_action_mask``); greedy
    choices also skip the episode's failed grasps when ``exploration.retry_exclusion_px`` >= 0."""

    def __init__(self, q_net: QNetwork | UNetQMap, exploration: ExplorationConfig,
                 total_steps: int, seed: int | None = None) -> None:
        self.q_net = q_net
        self.exploration = exploration
        self.schedule = make_schedule(exploration, total_steps)
        self.rng = np.random.default_rng(seed)
        self.lock = threading.RLock()
        self.failed_grasps: FailedGraspMemory | None = None
        if exploration.retry_exclusion_px >= 0 and q_net.kind == "unet":
            c = q_net.config
            self.failed_grasps = FailedGraspMemory(c["n_rotations"], c["height"], c["width"],
                                                   exploration.retry_exclusion_px)

    def record_outcome(self, action: int, success: bool, done: bool) -> None:
        """Tell the actor how its last action went (for the failed-grasp memory)."""
        if self.failed_grasps is not None:
            self.failed_grasps.record(action, success, done)

    @contextmanager
    def own_episodes(self) -> Iterator[None]:
        """A fresh failed-grasp memory inside the block (e.g. evaluation episodes run in the
        middle of a training episode), the old one restored after it."""
        saved = self.failed_grasps
        if saved is not None:
            self.failed_grasps = FailedGraspMemory(*saved.shape, saved.radius_px)
        try:
            yield
        finally:
            self.failed_grasps = saved

    def new_episode(self) -> None:
        """Forget the failed grasps (a new scene)."""
        if self.failed_grasps is not None:
            self.failed_grasps.clear()

    def allowed_actions(self, action_mask: Any = None) -> np.ndarray | None:
        """The flat bool mask of actions this actor may take (None: all), from an
        environment's action mask when ``exploration.use_action_mask`` is on."""
        if not self.exploration.use_action_mask:
            return None
        return check_action_mask(action_mask, self.q_net.n_actions)

    def skip_mask(self, allowed: np.ndarray | None = None) -> np.ndarray | None:
        """Actions greedy choices skip now (None: none): the episode's failed grasps and the
        actions outside ``allowed``; the failed grasps are forgotten when they would leave
        nothing."""
        failed = None if self.failed_grasps is None else self.failed_grasps.mask()
        if allowed is None:
            return failed
        blocked = ~allowed
        if failed is not None:
            both = blocked | failed
            if not both.all():
                return both
        return blocked

    def _greedy(self, obs: np.ndarray, allowed: np.ndarray | None = None) -> int:
        skip = self.skip_mask(allowed)
        with self.lock:
            if skip is None:
                return int(self.q_net.predict(obs))
            return masked_argmax(self.q_net.predict_q(obs), skip)

    def exploration_value(self, step: int) -> float:
        """Epsilon (or Boltzmann temperature) at environment step `step`."""
        return float(self.schedule(step))

    def set_exploration(self, exploration: ExplorationConfig, total_steps: int) -> None:
        """Explore as ``exploration`` says from now on (its schedule over ``total_steps``);
        nothing changes when it is the one in use."""
        if exploration != self.exploration:
            self.exploration = exploration
            self.schedule = make_schedule(exploration, total_steps)

    def act(self, obs: np.ndarray, step: int | None = None, *, greedy: bool = False,
            epsilon: float | None = None, action_mask: Any = None) -> int:
        """Action for one observation: greedy, with the given epsilon, or by the schedule;
        ``action_mask`` is the environment's ``info["action_mask"]`` (1 = allowed), if any."""
        allowed = self.allowed_actions(action_mask)
        if greedy:
            epsilon = self.exploration.eval_epsilon
            if epsilon == 0.0:
                return self._greedy(obs, allowed)
        value = epsilon if epsilon is not None else self.exploration_value(step or 0)
        if self.exploration.strategy == "boltzmann" and not greedy and epsilon is None:
            with self.lock:
                q = self.q_net.predict_q(obs)
            if allowed is not None:
                q = np.where(allowed, q, np.finfo(np.float32).min)
            return int(boltzmann(q[None], value, self.rng)[0])
        # Draw the coin first so that exploring steps skip the forward pass.
        if self.rng.random() < value:
            return random_allowed_action(self.rng, self.q_net.n_actions,
                                         self.exploration_actions(obs, allowed))
        return self._greedy(obs, allowed)

    def act_on_q_values(self, q_values: np.ndarray, epsilon: float,
                        allowed: np.ndarray | None = None, obs: np.ndarray | None = None
                        ) -> int:
        """Epsilon-greedy over Q-values already computed (e.g. also drawn as a Q-map): with
        probability ``epsilon`` a random action among ``allowed`` (flat bool, None: all; on
        objects of ``obs`` with ``exploration.min_height_m``), else the best action outside
        ``skip_mask(allowed)``."""
        q = np.asarray(q_values).reshape(-1)
        skip = self.skip_mask(allowed)
        if self.rng.random() < epsilon:
            return random_allowed_action(self.rng, q.size, self.exploration_actions(obs, allowed))
        return masked_argmax(q, skip)

    def exploration_actions(self, obs: np.ndarray | None, allowed: np.ndarray | None
                            ) -> np.ndarray | None:
        """The actions a random exploratory step draws from: ``allowed``, narrowed with
        ``exploration.min_height_m`` to grasps at pixels of ``obs``'s height channel at least
        that high (on an object), unless that leaves none."""
        floor = self.exploration.min_height_m
        names = getattr(self.q_net, "config", {}).get("channel_names") or ()
        if floor <= 0.0 or obs is None or "height" not in names:
            return allowed
        heights = np.asarray(obs)[names.index("height")]
        on_object = np.tile((heights >= floor).reshape(-1),
                            self.q_net.n_actions // heights.size)
        if allowed is not None:
            on_object &= allowed
        return on_object if on_object.any() else allowed

    def act_batch(self, obs: np.ndarray, epsilon: float) -> np.ndarray:
        """Epsilon-greedy actions for a batch of observations."""
        with self.lock:
            q = self.q_net.predict_q(obs)
        return epsilon_greedy(q, epsilon, self.rng)

    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Replace the network weights (e.g. received from the learner)."""
        with self.lock:
            self.q_net.load_state_dict(state_dict)


def exploration_config(schedule: str, start: float, end: float, eval_epsilon: float,
                       decay_steps: int, retry_exclusion_px: int = -1,
                       use_action_mask: bool = True, min_height_m: float = 0.0
                       ) -> tuple[ExplorationConfig, int]:
    """An epsilon-greedy ExplorationConfig from an actor's epsilon settings (and the
    experiment's failed-grasp exclusion, reachability mask and exploration on objects), and
    the ``total_steps`` that makes a linear schedule reach ``end`` after ``decay_steps``."""
    cfg = ExplorationConfig(strategy="epsilon_greedy", schedule=schedule, start=start, end=end,
                            fraction=1.0, decay_steps=float(max(decay_steps, 1)),
                            eval_epsilon=eval_epsilon, retry_exclusion_px=retry_exclusion_px,
                            use_action_mask=bool(use_action_mask),
                            min_height_m=float(min_height_m))
    cfg.validate()
    return cfg, max(int(decay_steps), 1)


class Learner:
    """Replay buffer + online/target networks + optimizer; `optimize` runs one TD update."""

    def __init__(self, q_net: QNetwork | UNetQMap, buffer: ReplayBuffer,
                 cfg: ExperimentConfig, device: str | torch.device = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.q_net = q_net.to(self.device)
        self.target_net = copy.deepcopy(q_net).to(self.device)
        self.target_net.requires_grad_(False)
        self.update_target = TargetUpdater(self.q_net, self.target_net)
        self.optimizer = make_optimizer(self.q_net.parameters(), cfg.dqn)
        self.buffer = buffer
        self.updates = 0
        self.last_mean_max_q = math.nan
        self.lock = threading.RLock()

    def add_transition(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray,
                       terminated: bool, truncated: bool, stream: Any = 0) -> None:
        """Store one environment step of actor `stream` (thread-safe)."""
        self.buffer.add(obs, action, reward, next_obs, terminated, truncated, stream)

    def can_optimize(self) -> bool:
        return len(self.buffer) >= self.cfg.dqn.batch_size

    def learning_rate(self, progress: float) -> float:
        """The learning rate at ``progress`` (fraction of the step budget used, in [0, 1]):
        dqn.learning_rate, going linearly to dqn.learning_rate_final when that is set."""
        dqn = self.cfg.dqn
        if dqn.learning_rate_final is None:
            return dqn.learning_rate
        frac = min(max(float(progress), 0.0), 1.0)
        return dqn.learning_rate + frac * (dqn.learning_rate_final - dqn.learning_rate)

    def set_progress(self, progress: float) -> None:
        """Anneal the optimizer's learning rate to ``progress`` (no-op at a constant rate)."""
        if self.cfg.dqn.learning_rate_final is not None:
            lr = self.learning_rate(progress)
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def optimize(self, beta: float = 1.0) -> UpdateResult | None:
        """Sample a batch and run one TD update (None while the buffer has too few samples)."""
        if not self.can_optimize():
            return None
        batch = self.buffer.sample(self.cfg.dqn.batch_size, beta=beta,
                                   next_obs=self.cfg.dqn.gamma != 0.0).to_torch(self.device)
        with self.lock:
            result = dqn_update(self.q_net, self.target_net, self.optimizer, batch, self.cfg.dqn,
                                measure_max_q=(self.updates % MAX_Q_INTERVAL == 0
                                               or math.isnan(self.last_mean_max_q)))
            if math.isnan(result.mean_max_q):  # not measured this time: the latest measure
                result = result._replace(mean_max_q=self.last_mean_max_q)
            self.last_mean_max_q = result.mean_max_q
            self.updates += 1
            dqn = self.cfg.dqn
            if self.updates % dqn.target_update_interval == 0:
                self.update_target(dqn.tau)
        self.buffer.update_priorities(batch.indices.cpu().numpy(), result.td_errors)
        return result

    def weights(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the online network's state dict (for actors)."""
        with self.lock:
            return {k: v.detach().cpu().clone() for k, v in self.q_net.state_dict().items()}


def make_buffer(cfg: ExperimentConfig, env: gym.Env, seed: int | None = None) -> ReplayBuffer:
    """The replay buffer `cfg.buffer` describes for `env`'s observation space."""
    obs_space = env.observation_space
    return ReplayBuffer(
        cfg.buffer.capacity, obs_space.shape, obs_space.dtype, n_steps=cfg.buffer.n_steps,
        gamma=cfg.dqn.gamma, prioritized=cfg.buffer.prioritized, alpha=cfg.buffer.alpha,
        priority_eps=cfg.buffer.priority_eps, channel_names=image_channel_names(env),
        augment=cfg.buffer.augment, n_actions=int(env.action_space.n), seed=seed)


class Agent:
    """Single-process DQN agent: an Actor and a Learner sharing one Q-network.

    Counters (`env_steps`, `episodes`, `learner.updates`) drive the exploration and PER-beta
    schedules, so restoring them (checkpoint resume) continues the schedules.
    """

    def __init__(self, env: gym.Env, cfg: ExperimentConfig, seed: int = 0,
                 network: tuple[str, dict[str, Any]] | None = None) -> None:
        self.cfg = cfg
        self.seed = seed
        seeds = np.random.SeedSequence(seed).generate_state(3)
        torch.manual_seed(seed)
        kind, net_config = network or network_spec_for_env(env, cfg.network)
        q_net = build_network(kind, net_config)
        self.buffer = make_buffer(cfg, env, seed=int(seeds[0]))
        self.learner = Learner(q_net, self.buffer, cfg, cfg.training.device)
        self.actor = Actor(self.learner.q_net, cfg.exploration, cfg.training.total_steps,
                           seed=int(seeds[1]))
        self.env_steps = 0
        self.episodes = 0

    @property
    def q_net(self) -> QNetwork | UNetQMap:
        return self.learner.q_net

    @property
    def exploration_value(self) -> float:
        return self.actor.exploration_value(self.env_steps)

    def act(self, obs: np.ndarray, greedy: bool = False, action_mask: Any = None) -> int:
        return self.actor.act(obs, self.env_steps, greedy=greedy, action_mask=action_mask)

    def observe(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray,
                terminated: bool, truncated: bool) -> None:
        self.learner.add_transition(obs, action, reward, next_obs, terminated, truncated)
        self.env_steps += 1
        if terminated or truncated:
            self.episodes += 1

    def per_beta(self) -> float:
        b0 = self.cfg.buffer.beta_start
        return b0 + self.training_progress() * (1.0 - b0)

    def training_progress(self) -> float:
        """Fraction of the step budget used, in [0, 1]."""
        return min(self.env_steps / max(self.cfg.training.total_steps, 1), 1.0)

    def learning_rate(self) -> float:
        return self.learner.learning_rate(self.training_progress())

    def optimize(self) -> UpdateResult | None:
        self.learner.set_progress(self.training_progress())
        return self.learner.optimize(beta=self.per_beta())

    def counters(self) -> dict[str, int]:
        return {"env_steps": self.env_steps, "episodes": self.episodes,
                "updates": self.learner.updates}

    def set_counters(self, counters: dict[str, int]) -> None:
        self.env_steps = int(counters.get("env_steps", 0))
        self.episodes = int(counters.get("episodes", 0))
        self.learner.updates = int(counters.get("updates", 0))
