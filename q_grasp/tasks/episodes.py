"""An actor's bookkeeping outside gymnasium: transitions batched for the wire, episode
statistics (steps, returns, success rates over a window) and decision latencies."""

from __future__ import annotations

import math
import secrets
from collections import deque
from dataclasses import dataclass

import numpy as np

from q_grasp.wire import TransitionBatch


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

    def values(self, attempts: bool) -> dict[str, float]:
        """The statistics by diagnostic name (``attempts``: also the grasp attempts')."""
        values = dict(steps=self.steps, episodes=self.episodes, success_rate=self.success_rate,
                      mean_return=self.mean_return)
        if attempts:
            values.update(attempt_success_rate=self.attempt_success_rate,
                          grasp_successes=self.attempt_successes)
        return values

    def summary_line(self, attempts: bool) -> str:
        """One line of progress after an episode (``attempts``: with the attempts' success)."""
        return (f"episode {self.episodes}: step {self.steps}, success rate "
                f"{self.success_rate:.2f}"
                + (f", attempt success {self.attempt_success_rate:.2f}" if attempts else ""))


LATENCY_WINDOW = 100
"""Decisions over which decision_latency_ms_p50, _p90 and _max are reported."""


class DecisionLatency:
    """Wall-clock time from an observation to the first command it caused: the latest, a
    moving average and percentiles over the last LATENCY_WINDOW decisions."""

    def __init__(self, window: int = LATENCY_WINDOW) -> None:
        self.mean_ms: float | None = None
        self._recent: deque[float] = deque(maxlen=window)

    def add(self, latency_ms: float) -> dict[str, float]:
        """Record one decision's latency; the values to report, by diagnostic name."""
        self.mean_ms = (latency_ms if self.mean_ms is None
                        else 0.9 * self.mean_ms + 0.1 * latency_ms)
        self._recent.append(latency_ms)
        p50, p90, worst = np.percentile(self._recent, [50, 90, 100])
        return dict(decision_latency_ms=latency_ms, decision_latency_ms_mean=self.mean_ms,
                    decision_latency_ms_p50=p50, decision_latency_ms_p90=p90,
                    decision_latency_ms_max=worst, decision_latency_window=len(self._recent))
