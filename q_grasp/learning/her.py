"""Hindsight experience replay (Andrychowicz et al. 2017) for goal-reaching envs.

After an episode, each transition is stored again with goals the arm did reach later in the
same episode ("future" strategy), so even failed episodes teach how to reach *some* goal. The
`GoalAdapter` tells where the goal sits in the observation, what the arm achieved, and the
env's reward for (achieved, goal); it fits envs shaped like q_grasp's Reacher (observation
ending in the goal xyz, `unwrapped.goal`, `unwrapped.ee_position`, `config.goal_tolerance_m`
and `config.reward`).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from q_grasp.learning.buffer import ReplayBuffer
from q_grasp.tasks.reach import reacher_reward


class GoalAdapter:
    """Goal layout and reward of a Reacher-like env (see module docstring)."""

    def __init__(self, env: gym.Env) -> None:
        u = env.unwrapped
        cfg = getattr(u, "config", None)
        needed = ("goal", "ee_position")
        if cfg is None or not all(hasattr(u, n) for n in needed) or \
                not hasattr(cfg, "goal_tolerance_m"):
            raise ValueError(f"buffer.her_k: env {env.spec.id if env.spec else u} is not a "
                             f"goal-reaching env (needs unwrapped.goal, unwrapped.ee_position, "
                             f"config.goal_tolerance_m); set her_k to 0")
        observation = getattr(cfg, "observation", "joints_goal")
        if observation != "joints_goal":
            # The other layouts hold goal-dependent entries (goal - ee, goal joints) that a
            # relabelled goal would leave stale.
            raise ValueError(f"buffer.her_k: hindsight relabelling needs the 'joints_goal' "
                             f"observation (goal xyz last), got {observation!r}; set her_k "
                             f"to 0 or env.kwargs.observation to joints_goal")
        self.env = u
        self.reward_type = getattr(cfg, "reward", "sparse")
        self.goal_dim = len(np.asarray(u.goal))
        self.tolerance_m = float(cfg.goal_tolerance_m)

    def achieved(self) -> np.ndarray:
        """The goal-space position the env is at now (end effector)."""
        return np.asarray(self.env.ee_position, np.float64).copy()

    def with_goal(self, obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        out = np.array(obs, copy=True)
        out[-self.goal_dim:] = goal
        return out

    def reward(self, achieved: np.ndarray, goal: np.ndarray) -> tuple[float, bool]:
        """(reward, success) the env would give for being at `achieved` with `goal`."""
        distance = float(np.linalg.norm(achieved - goal))
        return (reacher_reward(distance, self.tolerance_m, self.reward_type),
                distance <= self.tolerance_m)


class HindsightRelabeler:
    """Collects one episode, then adds `k` future-goal copies of each transition to a buffer."""

    def __init__(self, adapter: GoalAdapter, buffer: ReplayBuffer, k: int,
                 rng: np.random.Generator) -> None:
        if buffer.n_steps != 1:
            raise ValueError("buffer.her_k: hindsight relabeling needs buffer.n_steps = 1")
        self.adapter = adapter
        self.buffer = buffer
        self.k = int(k)
        self.rng = rng
        self.episode: list[tuple[np.ndarray, int, np.ndarray, np.ndarray]] = []

    def record(self, obs: np.ndarray, action: int, next_obs: np.ndarray) -> None:
        """Call after each env step (the env's achieved position is read now)."""
        self.episode.append((np.array(obs, copy=True), int(action), np.array(next_obs, copy=True),
                             self.adapter.achieved()))

    def end_episode(self) -> int:
        """Store the relabeled transitions; returns how many were added."""
        steps = self.episode
        self.episode = []
        added = 0
        for t, (obs, action, next_obs, achieved) in enumerate(steps):
            for j in self.rng.integers(t, len(steps), size=self.k):
                goal = steps[int(j)][3]
                reward, success = self.adapter.reward(achieved, goal)
                self.buffer.add(self.adapter.with_goal(obs, goal), action, reward,
                                self.adapter.with_goal(next_obs, goal), success, False,
                                stream="her")
                added += 1
        return added
