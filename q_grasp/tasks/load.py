"""Set-up of a task for an actor or a learner outside gymnasium (the ROS nodes): its config,
spaces and Q-network from a checkpoint or an experiment YAML, without starting a simulator, so
that the nodes build exactly the network the single-process CLI builds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from gymnasium import spaces

from q_grasp.config import build
from q_grasp.learning.checkpoint import Checkpoint, load_checkpoint
from q_grasp.learning.config import ExperimentConfig
from q_grasp.learning.networks import (
    QNetwork,
    UNetQMap,
    build_network,
    check_network_matches_env,
    network_spec_for_env,
)
from q_grasp.learning.tasks import default_config, resolve_task
from q_grasp.paths import config_file
from q_grasp.tasks.grasp import GraspTask
from q_grasp.tasks.names import TASKS
from q_grasp.tasks.reach import ReachTask

# --------------------------------------------------------------------------------- set-up


class TaskSpaces(gym.Env):
    """Observation/action spaces (and image channel names) of a task, as a gym.Env.

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


@dataclass
class TaskSetup:
    """Everything the policy needs to act on one task, built from files, not from a simulator."""

    task: str
    """"grasp", "grasp_clutter" or "reacher"."""
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


ENV_ARGUMENTS = frozenset({"render_mode", "max_episode_steps"})
"""env.kwargs the gym env takes beside its config's fields (not part of the task)."""


def _env_config(task: str, kwargs: dict[str, Any]) -> Any:
    """The task's env config from an experiment's env.kwargs, through the config core."""
    from q_grasp.envs import ENV_SPECS

    # The registered id's defaults first (grasp_clutter: 1-5 objects, 10 attempts), as
    # gymnasium.make applies them in the single-process env.
    kwargs = {**ENV_SPECS[resolve_task(task)][1], **kwargs}
    if task == "reacher":
        from q_grasp.envs.reacher import ReacherConfig

        cls = ReacherConfig
    else:
        from q_grasp.envs.grasp import GraspConfig

        cls = GraspConfig
    return build(cls, {k: v for k, v in kwargs.items() if k not in ENV_ARGUMENTS},
                 where=cls.__name__)


def make_task(task: str, env_config: Any) -> ReachTask | GraspTask:
    """The task object for ``task`` (a grasp task or "reacher") with ``env_config``."""
    return ReachTask(env_config) if task == "reacher" else GraspTask(env_config)


def task_spaces(task: ReachTask | GraspTask) -> TaskSpaces:
    """The spaces (and image channels) of a task object."""
    return TaskSpaces(task.observation_space, task.action_space,
                      getattr(task, "channels", None))


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
        if not path.exists() and path.name == experiment_config:
            try:  # a bare name: the shipped config/<name> (parameter files name them so)
                path = config_file(experiment_config)
            except FileNotFoundError:
                pass
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
    task_space = task_spaces(make_task(task, env_config))
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
