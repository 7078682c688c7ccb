"""Task names -> gymnasium environments and their default config files."""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym

from q_grasp.learning.config import EnvConfig, ExperimentConfig
from q_grasp.paths import config_file
from q_grasp.tasks.shaping import (
    MissingShapingInfoError,
    RewardShaping,
    ShapingTerm,
    shaping_terms,
)

TASK_ALIASES = {
    "reacher": "q_grasp/Reacher-v0",
    "grasp": "q_grasp/TopDownGrasp-v0",
    "grasp_clutter": "q_grasp/TopDownGraspClutter-v0",
    "cartpole": "CartPole-v1",
}
DEFAULT_CONFIG_FILES = {
    "q_grasp/Reacher-v0": "reacher.yaml",
    "q_grasp/TopDownGrasp-v0": "grasp.yaml",
    "q_grasp/TopDownGraspClutter-v0": "grasp_clutter.yaml",
    "CartPole-v1": "cartpole.yaml",
}


class RewardShapingWrapper(gym.Wrapper):
    """The env with potential-based reward shaping (``q_grasp.tasks.shaping``) from the
    distances its info reports. The env's own reward is kept in info['raw_reward']."""

    def __init__(self, env: gym.Env, terms: list[ShapingTerm]) -> None:
        super().__init__(env)
        self.shaping = RewardShaping(terms, strict=True)

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        try:
            self.shaping.reset(info)
        except MissingShapingInfoError as exc:
            raise TaskError(str(exc)) from None
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        try:
            shaped = self.shaping.step(reward, info, terminated)
        except MissingShapingInfoError as exc:
            raise TaskError(str(exc)) from None
        info = dict(info)
        info["raw_reward"] = float(reward)
        return obs, shaped, terminated, truncated, info


def add_shaping(env: gym.Env, env_cfg: Any, gamma: float) -> gym.Env:
    """The training env with the config's potential-based shapings (distance, joint)."""
    terms = shaping_terms(env_cfg, gamma)
    return RewardShapingWrapper(env, terms) if terms else env


class TaskError(ValueError):
    """Unknown task, or an environment that cannot be created."""


def resolve_task(task: str) -> str:
    """Alias (reacher, grasp, grasp_clutter, cartpole) or gymnasium id -> gymnasium id."""
    return TASK_ALIASES.get(task.lower(), task) if task else task


def default_config(env_id: str) -> ExperimentConfig:
    """The packaged config for `env_id`, or the built-in defaults for other gymnasium ids.

    A task with a packaged config whose file cannot be found is an error (TaskError), never a
    silent fall-back to other settings."""
    name = DEFAULT_CONFIG_FILES.get(env_id)
    if name:
        try:
            return ExperimentConfig.from_yaml(config_file(name))
        except FileNotFoundError as exc:
            raise TaskError(f"task {env_id!r}: its packaged config {exc}") from None
    return ExperimentConfig(env=EnvConfig(id=env_id))


def make_env(env_cfg: EnvConfig, render_mode: str | None = None) -> gym.Env:
    """`gymnasium.make` with the config's kwargs; registers q_grasp envs when needed."""
    if env_cfg.id.startswith("q_grasp/"):
        try:
            importlib.import_module("q_grasp.envs")
        except ImportError as exc:
            raise TaskError(f"task {env_cfg.id!r}: the q_grasp environments cannot be imported "
                            f"({exc})") from None
    kwargs: dict[str, Any] = dict(env_cfg.kwargs)
    if env_cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = env_cfg.max_episode_steps
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    try:
        return gym.make(env_cfg.id, **kwargs)
    except gym.error.Error as exc:
        known = ", ".join(TASK_ALIASES)
        raise TaskError(f"unknown task {env_cfg.id!r} ({exc}); use one of {known} or a "
                        f"registered gymnasium id such as CartPole-v1") from None
    except (TypeError, ValueError) as exc:
        raise TaskError(f"task {env_cfg.id!r}: cannot create the environment with kwargs "
                        f"{env_cfg.kwargs}: {exc}") from None
