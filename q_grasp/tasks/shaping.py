"""Potential-based reward shaping (Ng, Harada & Russell 1999), written once: the training
env's wrappers (``q_grasp.learning.tasks.add_shaping``) and the policy node apply these terms.

r' = r + gamma * phi(s') - phi(s) with phi = -k * distance and phi = 0 after termination, so
the optimal policy is unchanged while every step towards the goal pays at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

JOINT_SHAPING_GAMMA = 1.0
"""env.joint_shaping is k (d - d'): with gamma < 1, k (d - gamma d') would pay (1 - gamma) k d
for a step that changes nothing, and in a first run the arm learned to stall at a joint limit."""


def shaped_reward(reward: float, distance: float, next_distance: float, terminated: bool,
                  coefficient: float, gamma: float) -> float:
    """r + gamma * phi(s') - phi(s) with phi = -coefficient * distance, phi(s') = 0 when the
    step terminated the episode; ``reward`` unchanged for a coefficient <= 0."""
    if coefficient <= 0.0:
        return float(reward)
    next_potential = 0.0 if terminated else -coefficient * next_distance
    return float(reward) + gamma * next_potential + coefficient * distance


@dataclass(frozen=True)
class ShapingTerm:
    """One potential-based shaping term read from a step's info."""

    key: str
    """info entry holding the distance (e.g. "distance_m", "goal_joint_distance_rad")."""
    coefficient: float
    gamma: float
    option: str
    """The experiment field that sets the coefficient (for error messages)."""


def shaping_terms(env_cfg: Any, gamma: float) -> list[ShapingTerm]:
    """The experiment's shaping terms in the order they stack: env.distance_shaping (discount
    ``gamma``), then env.joint_shaping (JOINT_SHAPING_GAMMA)."""
    terms = []
    if env_cfg.distance_shaping > 0:
        terms.append(ShapingTerm("distance_m", float(env_cfg.distance_shaping), float(gamma),
                                 "env.distance_shaping"))
    if env_cfg.joint_shaping > 0:
        terms.append(ShapingTerm("goal_joint_distance_rad", float(env_cfg.joint_shaping),
                                 JOINT_SHAPING_GAMMA, "env.joint_shaping"))
    return terms


class MissingShapingInfoError(ValueError):
    """A shaping term's info entry is missing (the task does not report that distance)."""


class RewardShaping:
    """Stacked shaping terms over one episode: ``reset`` with the first info, then ``step``
    with every step's reward and info. An info without a term's entry raises
    MissingShapingInfoError with ``strict``, else reads as distance 0 (the term adds nothing)."""

    def __init__(self, terms: Sequence[ShapingTerm], strict: bool = False) -> None:
        self.terms = list(terms)
        self.strict = strict
        self._distances = [0.0] * len(self.terms)

    def _read(self, info: Mapping[str, Any], term: ShapingTerm) -> float:
        if term.key not in info and self.strict:
            raise MissingShapingInfoError(
                f"{term.option}: the environment reports no info[{term.key!r}]; set "
                f"{term.option.rpartition('.')[2]} to 0")
        return float(info.get(term.key, 0.0))

    def reset(self, info: Mapping[str, Any]) -> None:
        self._distances = [self._read(info, t) for t in self.terms]

    def step(self, reward: float, info: Mapping[str, Any], terminated: bool) -> float:
        for i, term in enumerate(self.terms):
            distance = self._read(info, term)
            reward = shaped_reward(reward, self._distances[i], distance, terminated,
                                   term.coefficient, term.gamma)
            self._distances[i] = distance
        return float(reward)
