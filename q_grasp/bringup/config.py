"""What a bringup starts: the validated command line (BringupConfig), the node parameters
file, the trainer's plan (budget, replay ratio) and each node's overrides (the launch file's)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from q_grasp.config import ConfigError, check_each, read_yaml
from q_grasp.node_params.spec import build_config, config_specs
from q_grasp.paths import config_file
from q_grasp.tasks.names import TASKS

C = TypeVar("C")

NAMESPACE_PATTERN = re.compile(r"^(/?[A-Za-z_][A-Za-z0-9_]*)(/[A-Za-z_][A-Za-z0-9_]*)*$")
LOG_LEVELS = ("debug", "info", "warn", "error")
EXECUTORS = ("multi", "single", "events")
IN_PROCESS = {"composed": frozenset({"sim_arm", "xarm_driver", "policy", "trainer", "recorder",
                                     "viewer"}),
              "trainer-process": frozenset({"sim_arm", "xarm_driver", "policy", "recorder",
                                            "viewer"}),
              "processes": frozenset()}
"""Per mode, the nodes that run inside the bringup process (the others run as children)."""
OPTIONAL_NODES = frozenset({"recorder", "viewer"})
"""Nodes the run goes on without when they fail."""
SIM_IDLE_PARAMETERS = {"real_time_factor": 1.0, "still_real_time_factor": 0.0,
                       "camera_rate_hz": 0.0}
"""sim_arm's dynamic parameters while the trainer catches up after the actor stopped (restored
before the evaluation)."""


@dataclass
class BringupConfig:
    """What to start and when to stop (the command line, validated)."""

    task: Literal["grasp", "grasp_clutter", "reacher"] = "grasp"
    """Skill to learn (the launch file's task argument)."""
    config: str = ""
    """Node parameters file; empty: config/sim_train_<task>.yaml (source tree, else the
    installed share folder), the file the launch file uses."""
    namespace: str = ""
    """Namespace of sim_arm and policy (the trainer and /q_grasp/* stay global)."""
    use_sim: bool = True
    """Start sim_arm; false: a real arm's drivers provide its topics."""
    driver: Literal["none", "xarm", "xarm-fake"] = "none"
    """With use_sim false: start xarm_driver for the NURO arm's board on USB ("xarm") or for
    the fake board ("xarm-fake"); "none": the arm's drivers run elsewhere."""
    use_sim_time: bool = True
    """Every node runs on sim_arm's /clock."""
    checkpoint: str = ""
    """Checkpoint for the policy's initial weights (and the trainer resumes from it); with
    train false, the policy to evaluate."""
    train: bool = True
    """Start the trainer and train; false: only the greedy evaluation of ``checkpoint``."""
    out: str = ""
    """Trainer output folder (checkpoints/, progress.csv), node logs and the summary; empty:
    the parameters file's trainer output_dir. A folder that holds checkpoints is resumed."""
    max_transitions: int = 0
    """Stop training once this many transitions were collected in total (a resumed run
    counts the earlier ones); 0: the experiment's training.total_steps (unless duration_s)."""
    duration_s: float = 0.0
    """Stop training after this many wall-clock seconds instead (0: use max_transitions)."""
    mode: Literal["composed", "trainer-process", "processes"] = "composed"
    """composed: the three nodes in this process on one executor; trainer-process: sim_arm
    and policy composed here, the trainer in a child process (actor and learner each get a
    core and an interpreter of their own); processes: three child processes, as ros2 launch
    starts them."""
    record: bool = False
    """Record the run's topics (joint states, images, trajectories, transitions, weights,
    diagnostics) as ROS 2 messages in <out>/recording_<date>.mcap (the recorder node)."""
    viewer: bool = False
    """Show the run in Rerun (the viewer node): saved to <out>/run_<date>.rrd, and served to a
    browser at http://localhost:<viewer_port> unless viewer_port is 0."""
    viewer_port: int = 9090
    """Web viewer port of --viewer (0: only the .rrd file)."""
    eval_episodes: int = -1
    """Greedy evaluation episodes after training; -1: the experiment's final_eval_episodes;
    0: no evaluation."""
    eval_qmaps: int = 50
    """Grasping: save the Q-map image (heat map over the camera image, chosen grasp marked)
    of the first this many evaluation decisions as <out>/eval_qmaps/qmap_NNNN.png (0: none)."""
    progress_every_s: float = 10.0
    """Print a progress line this often (wall clock)."""
    auth_key_file: str = ""
    """Key file the policy and trainer authenticate transitions and weights with (give one
    to share a system between machines); empty: a fresh key for this run, in a private
    temporary file removed at the end."""
    catch_up: bool = True
    """After the actor stops, let the trainer finish the gradient updates it owes at its
    replay ratio (so a run does the updates `q_grasp train` does for the same budget)."""
    catch_up_timeout_s: float = 1800.0
    """Longest wait (wall clock) for those updates and for the final checkpoint."""
    node_log_level: Literal["debug", "info", "warn", "error"] = "warn"
    """Composed mode: console log level of the nodes after start-up (their per-episode lines
    are INFO). Child processes always log everything to <out>/logs/<node>.log."""
    executor: Literal["multi", "single", "events"] = "events"
    """Composed mode's executor: rclpy's experimental EventsExecutor (falls back to single
    where rclpy lacks it), MultiThreadedExecutor or SingleThreadedExecutor (child processes:
    the Q_GRASP_EXECUTOR environment variable, default single; see q_grasp.nodes.runtime).
    No node callback blocks (the nodes act, step physics and train in their own threads), so
    one thread serves them; the EventsExecutor costs about a tenth of the
    MultiThreadedExecutor's CPU per message (benchmarks/bench_ros_system.py), which matters
    with /clock and joint states at hundreds of messages per second."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task: must be one of {list(TASKS)}, got {self.task!r}")
        if self.driver not in ("none", "xarm", "xarm-fake"):
            raise ValueError(f"driver: must be none, xarm or xarm-fake, got {self.driver!r}")
        if self.driver != "none" and self.use_sim:
            raise ValueError("driver: needs --use-sim false (the driver replaces sim_arm)")
        if self.namespace and not NAMESPACE_PATTERN.match(self.namespace):
            raise ValueError(f"namespace: must be a ROS namespace such as arm0 or /lab/arm0 "
                             f"(letters, digits, _; not starting with a digit), got "
                             f"{self.namespace!r}")
        if self.max_transitions < 0:
            raise ValueError(f"max_transitions: must be >= 1 (0 = the experiment's "
                             f"total_steps), got {self.max_transitions}")
        if not (self.duration_s >= 0.0 and math.isfinite(self.duration_s)):
            raise ValueError(f"duration_s: must be > 0 s, got {self.duration_s}")
        if self.max_transitions and self.duration_s:
            raise ValueError("max_transitions, duration_s: give one budget, not both")
        if self.eval_qmaps < 0:
            raise ValueError(f"eval_qmaps: must be >= 0, got {self.eval_qmaps}")
        if self.eval_episodes < -1:
            raise ValueError(f"eval_episodes: must be >= 0 (or -1 = the experiment's), got "
                             f"{self.eval_episodes}")
        check_each(self, ("progress_every_s", "catch_up_timeout_s"),
                   lambda v: v > 0.0, "must be > 0 s")
        if self.node_log_level not in LOG_LEVELS:
            raise ValueError(f"node_log_level: must be one of {list(LOG_LEVELS)}, got "
                             f"{self.node_log_level!r}")
        if self.mode not in IN_PROCESS:
            raise ValueError(f"mode: must be one of {list(IN_PROCESS)}, got {self.mode!r}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor: must be one of {list(EXECUTORS)}, got "
                             f"{self.executor!r}")
        if not 0 <= self.viewer_port <= 65535:
            raise ValueError(f"viewer_port: must be a TCP port (0: no web viewer), got "
                             f"{self.viewer_port}")
        if not self.train and not self.checkpoint:
            raise ValueError("checkpoint: --train false evaluates a trained policy; give its "
                             "checkpoint file")
        if not self.train and self.eval_episodes == 0:
            raise ValueError("eval_episodes: --train false only evaluates; must be >= 1")


# --------------------------------------------------------------------------------- set-up


def default_params_file(task: str) -> Path:
    """config/sim_train_<task>.yaml from the source tree, else from the installed share."""
    try:
        return config_file(f"sim_train_{task}.yaml")
    except FileNotFoundError as exc:
        raise ValueError(f"config: {exc}") from None


def node_parameters(params_file: Path, node_name: str) -> dict[str, Any]:
    """The parameters a params file gives ``node_name`` (dotted names, as the node sees them),
    read by the config core's YAML loader.

    Sections apply as rcl applies them: ``/**``, ``/**/<name>``, ``<name>`` and ``/<name>``.
    """
    data = read_yaml(params_file)
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(params_file)!r}: top level must be a mapping of "
                          f"node sections, got {type(data).__name__}")
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}{key}.", item)
        else:
            flat[prefix[:-1]] = value

    for key in ("/**", f"/**/{node_name}", node_name, f"/{node_name}"):
        section = data.get(key)
        if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
            walk("", section["ros__parameters"])
    return flat


def node_config(params_file: Path, node_name: str, config_cls: type[C],
                overrides: dict[str, Any] | None = None) -> C:
    """The config ``node_name`` builds from a params file (and the launch file's
    ``overrides``), validated as the node validates it; parameters that are not fields of
    ``config_cls`` (use_sim_time, ...) are ROS's, as for the node. ConfigError names the file,
    the node and the field."""
    values = {**node_parameters(params_file, node_name), **(overrides or {})}
    try:
        return build_config(config_cls, config_specs(config_cls), values)
    except ConfigError as exc:
        raise ConfigError(f"config file {str(params_file)!r}: {node_name}: {exc}") from None


@dataclass
class TrainingPlan:
    """What the trainer will do, worked out before starting it (for budget and catch-up)."""

    output_dir: Path
    """The trainer's output folder."""
    resume_from: str
    """Checkpoint the trainer starts from ("" = fresh)."""
    total_steps: int
    """The experiment's training.total_steps (the single-process budget)."""
    replay_ratio: float
    """Gradient updates per transition."""
    learning_starts: int
    """Transitions before the first update."""
    final_eval_episodes: int
    """The experiment's final_eval_episodes."""


def training_plan(cfg: BringupConfig, params_file: Path) -> TrainingPlan:
    """Resolve the trainer's experiment as TrainerCore will (checkpoint, file, packaged)."""
    from q_grasp.learning.checkpoint import load_checkpoint
    from q_grasp.learning.config import ExperimentConfig
    from q_grasp.learning.tasks import default_config, resolve_task
    from q_grasp.learning.trainer_core import TrainerConfig, newest_checkpoint

    trainer = node_config(params_file, "trainer", TrainerConfig,
                          node_overrides(cfg, "trainer", None))
    # (a file without one: the run's folder for the task, not the trainer's generic default)
    output_dir = Path(cfg.out or node_parameters(params_file, "trainer").get("output_dir")
                      or f"runs/ros_{cfg.task}")
    resume = cfg.checkpoint or str(newest_checkpoint(output_dir) or "")
    experiment_file = trainer.experiment_config
    experiment = None
    if resume and not experiment_file:
        try:
            experiment = load_checkpoint(resume).config
        except ValueError as exc:
            raise ValueError(f"checkpoint: {exc}") from None
    if experiment is None and experiment_file:
        try:
            experiment = ExperimentConfig.from_yaml(Path(experiment_file).expanduser())
        except (OSError, ValueError) as exc:
            raise ValueError(f"config: trainer experiment_config: {exc}") from None
    if experiment is None:
        experiment = default_config(resolve_task(cfg.task))
    tcfg = experiment.training
    return TrainingPlan(
        output_dir=output_dir, resume_from=resume, total_steps=int(tcfg.total_steps),
        replay_ratio=(trainer.replay_ratio if trainer.replay_ratio > 0
                      else tcfg.gradient_steps / tcfg.train_freq),
        learning_starts=(trainer.learning_starts if trainer.learning_starts >= 0
                         else int(tcfg.learning_starts)),
        final_eval_episodes=int(tcfg.final_eval_episodes))


def node_overrides(cfg: BringupConfig, node_name: str, plan: TrainingPlan | None
                   ) -> dict[str, Any]:
    """The launch file's per-node parameters on top of the params file (plus output_dir)."""
    values: dict[str, Any] = {"use_sim_time": cfg.use_sim_time}
    if node_name == "policy":
        values.update(task=cfg.task, checkpoint=cfg.checkpoint, train=cfg.train,
                      auth_key_file=cfg.auth_key_file)
        if plan is not None and not cfg.checkpoint and plan.resume_from:
            # The trainer resumes from its newest checkpoint; the actor continues with those
            # weights and its exploration schedule from the same step.
            values["checkpoint"] = plan.resume_from
    elif node_name == "xarm_driver":
        values["device"] = "fake" if cfg.driver == "xarm-fake" else "hid"
    elif node_name == "trainer":
        values.update(task=cfg.task, checkpoint=cfg.checkpoint,
                      auth_key_file=cfg.auth_key_file)
        if plan is not None:
            values["output_dir"] = str(plan.output_dir)
    return values
