"""Exploration schedules (epsilon or Boltzmann temperature as a function of the step count).

Schedules are pure functions of the environment step, so a resumed run that restores the step
counter continues exactly where it left off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from q_grasp.learning.config import ExplorationConfig


@dataclass(frozen=True)
class LinearSchedule:
    """`start` -> `end` linearly over `duration_steps`, then constant."""

    start: float
    end: float
    duration_steps: float

    def __call__(self, step: int) -> float:
        if self.duration_steps <= 0:
            return self.end
        frac = min(max(step, 0) / self.duration_steps, 1.0)
        return self.start + frac * (self.end - self.start)


@dataclass(frozen=True)
class ExponentialSchedule:
    """`end + (start - end) * exp(-step / decay_steps)`."""

    start: float
    end: float
    decay_steps: float

    def __call__(self, step: int) -> float:
        return self.end + (self.start - self.end) * math.exp(-max(step, 0) / self.decay_steps)


@dataclass(frozen=True)
class ConstantSchedule:
    """Always `value`."""

    value: float

    def __call__(self, step: int) -> float:
        return self.value


Schedule = LinearSchedule | ExponentialSchedule | ConstantSchedule


def make_schedule(cfg: ExplorationConfig, total_steps: int) -> Schedule:
    """The schedule an `ExplorationConfig` describes for a run of `total_steps` steps."""
    if cfg.schedule == "linear":
        return LinearSchedule(cfg.start, cfg.end, cfg.fraction * total_steps)
    if cfg.schedule == "exponential":
        return ExponentialSchedule(cfg.start, cfg.end, cfg.decay_steps)
    return ConstantSchedule(cfg.start)


def epsilon_greedy(q_values: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """Per row of (B, A) Q-values: a random action with probability epsilon, else argmax."""
    greedy = q_values.argmax(axis=1)
    explore = rng.random(len(q_values)) < epsilon
    random_actions = rng.integers(0, q_values.shape[1], size=len(q_values))
    return np.where(explore, random_actions, greedy)


def boltzmann(q_values: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Per row of (B, A) Q-values: sample softmax(Q / temperature) (stable for large maps)."""
    logits = q_values.astype(np.float64) / max(temperature, 1e-8)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    cdf = np.cumsum(probs, axis=1)
    u = rng.random((len(q_values), 1)) * cdf[:, -1:]
    return np.minimum((cdf < u).sum(axis=1), q_values.shape[1] - 1)
