"""Train (and then evaluate) over ROS 2 topics without ``ros2 launch``: the pip-only twin of
``ros2 launch q_grasp sim_train.launch.py``.

  python -m q_grasp.nodes.bringup --task grasp                 # train, then greedy evaluation
  python -m q_grasp.nodes.bringup --task reacher --processes   # three node processes
  python -m q_grasp.nodes.bringup --task grasp --train false --checkpoint runs/x/ckpt.safetensors

It starts the launch file's three nodes (sim_arm, policy, trainer) with the same parameters
file (config/sim_train_<task>.yaml unless --config) and the same per-node overrides
(use_sim_time, task, checkpoint, train), either composed in this process on one
MultiThreadedExecutor (default) or as three child processes (--processes). Progress comes from
/diagnostics, as an operator would see it. At the budget (--max-transitions, default the
experiment's training.total_steps, the budget of ``python -m q_grasp train``; or --duration-s)
the actor stops, the trainer finishes the gradient updates it owes at its replay ratio and
writes its checkpoint, and a greedy policy (train:=false, the trainer's final checkpoint) is
evaluated on the same simulator. A summary goes to <out>/bringup_summary.json, the learning
curves to <out>/plots.png (TensorBoard scalars in <out>/tb).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from q_grasp.paths import config_file
from q_grasp.wire.auth import new_key_file, read_key_file

TASKS = ("grasp", "reacher")
"""Tasks with a shipped parameters file."""
NAMESPACE_PATTERN = re.compile(r"^(/?[A-Za-z_][A-Za-z0-9_]*)(/[A-Za-z_][A-Za-z0-9_]*)*$")
MODULES = {"sim_arm": "q_grasp.nodes.sim_arm", "xarm_driver": "q_grasp.nodes.xarm_driver",
           "policy": "q_grasp.nodes.policy", "trainer": "q_grasp.nodes.trainer",
           "recorder": "q_grasp.nodes.recorder", "viewer": "q_grasp.nodes.viewer"}
"""Node name -> module whose main() runs it (what the console scripts run)."""
NODE_CLASSES = {"sim_arm": "SimArmNode", "xarm_driver": "XArmDriverNode", "policy": "PolicyNode",
                "trainer": "TrainerNode", "recorder": "RecorderNode", "viewer": "ViewerNode"}
"""Node name -> its class in that module (composed into the bringup process)."""
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

    task: Literal["grasp", "reacher"] = "grasp"
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
        for name in ("progress_every_s", "catch_up_timeout_s"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name}: must be > 0 s, got {getattr(self, name)}")
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
    """The parameters a params file gives ``node_name`` (dotted names, as the node sees them).

    Sections apply as rcl applies them: ``/**``, ``/**/<name>``, ``<name>`` and ``/<name>``.
    """
    import yaml

    try:
        data = yaml.safe_load(params_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"config: cannot read {params_file}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config: {params_file} is not a ROS parameters file")
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
    from q_grasp.learning.trainer_core import newest_checkpoint

    trainer = node_parameters(params_file, "trainer")
    output_dir = Path(cfg.out or trainer.get("output_dir") or f"runs/ros_{cfg.task}")
    resume = cfg.checkpoint or str(newest_checkpoint(output_dir) or "")
    experiment_file = str(trainer.get("experiment_config") or "")
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
    ratio = float(trainer.get("replay_ratio") or 0.0)
    starts = int(trainer.get("learning_starts", -1))
    return TrainingPlan(
        output_dir=output_dir, resume_from=resume, total_steps=int(tcfg.total_steps),
        replay_ratio=ratio if ratio > 0 else tcfg.gradient_steps / tcfg.train_freq,
        learning_starts=starts if starts >= 0 else int(tcfg.learning_starts),
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


# --------------------------------------------------------------------------------- progress


def _number(values: dict[str, str], key: str, default: float = math.nan) -> float:
    try:
        return float(values[key])
    except (KeyError, ValueError):
        return default


class Monitor:
    """Latest /diagnostics of the trainer and of the policy, per status name."""

    def __init__(self, node: Any, namespace: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        from q_grasp.nodes.qos import DEFAULT_QOS

        self.node = node
        self._lock = threading.Lock()
        self.trainer: dict[str, str] = {}
        self.policy: dict[str, str] = {}
        self.sim_arm: dict[str, str] = {}
        self.messages: dict[str, tuple[bytes, str]] = {}
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                 DEFAULT_QOS)

    def _on_diagnostics(self, msg: Any) -> None:
        with self._lock:
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                if status.name == "q_grasp/trainer":
                    self.trainer = values
                elif status.name == "q_grasp/policy":
                    self.policy = values
                elif status.name == "q_grasp/sim_arm":
                    self.sim_arm = values
                else:
                    continue
                self.messages[status.name] = (status.level, status.message)

    def snapshot(self) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """Copies of the trainer's, the policy's and sim_arm's latest values."""
        with self._lock:
            return dict(self.trainer), dict(self.policy), dict(self.sim_arm)

    def forget_policy(self) -> None:
        """Drop the policy's values (a new policy node takes over the name)."""
        with self._lock:
            self.policy = {}
            self.messages.pop("q_grasp/policy", None)

    def errors(self) -> list[str]:
        """Nodes whose status level is ERROR, with their message."""
        from diagnostic_msgs.msg import DiagnosticStatus

        with self._lock:
            return [f"{name}: {message}" for name, (level, message) in self.messages.items()
                    if level == DiagnosticStatus.ERROR]


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:3d}:{secs:02d}"


def progress_line(task: str, elapsed_s: float, budget: str, trainer: dict[str, str],
                  policy: dict[str, str], rate: float) -> str:
    """One human-readable progress line from the nodes' diagnostics."""
    steps = int(_number(policy, "steps", 0))
    parts = [f"[{_clock(elapsed_s)}] transitions {steps}{budget} ({rate:.1f}/s)"]
    if task == "grasp":
        successes = int(_number(policy, "grasp_successes", 0))
        recent = _number(policy, "attempt_success_rate")
        parts.append(f"grasp attempts {steps}, successes {successes}"
                     + ("" if math.isnan(recent) else f" (last 50: {100 * recent:.0f}%)"))
    else:
        episodes = int(_number(policy, "episodes", 0))
        recent = _number(policy, "success_rate")
        parts.append(f"episodes {episodes}"
                     + ("" if math.isnan(recent) else f", success (last 50) {100 * recent:.0f}%"))
    if trainer:
        loss = _number(trainer, "loss")
        parts.append(f"trainer: {int(_number(trainer, 'transitions', 0))} received, updates "
                     f"{int(_number(trainer, 'updates', 0))} "
                     f"({_number(trainer, 'updates_per_s', 0.0):.1f}/s), loss "
                     + ("-" if math.isnan(loss) else f"{loss:.4f}"))
    epsilon = _number(policy, "epsilon")
    if not math.isnan(epsilon):
        parts.append(f"eps {epsilon:.3f}")
    parts.append(f"weights v{policy.get('weights_version', '-')}")
    return " | ".join(parts)


# --------------------------------------------------------------------------------- backends


def _spin(executor: Any, context: Any, seconds: float) -> None:
    """Serve callbacks for ``seconds``; Ctrl-C (a shut-down context) is a KeyboardInterrupt."""
    from rclpy.executors import ExternalShutdownException

    from q_grasp.nodes.runtime import spin_once

    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and context.ok():
            # (a stopped node's queued events are skipped: runtime.spin_once)
            spin_once(executor, min(0.1, max(deadline - time.monotonic(), 0.0)))
    except ExternalShutdownException:
        raise KeyboardInterrupt from None


def child_env() -> dict[str, str]:
    """This environment plus what a node process needs to start without the
    ros-wheels-bootstrapper's re-exec (LD_LIBRARY_PATH and its guard) and to import q_grasp."""
    from q_grasp.nodes.testing import REPO_ROOT, ros_library_path

    env = dict(os.environ)
    env.update({
        "LD_LIBRARY_PATH": ros_library_path(),
        "_ROS_WHEELS_BOOTSTRAP_COMPLETE": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", ""))
                                      if p),
        "PYTHONUNBUFFERED": "1",
        "RCUTILS_COLORIZED_OUTPUT": "0",
    })
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def ros_value(value: Any) -> str:
    """A parameter value for ``-p name:=value`` (YAML; '' stays an empty string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "''" if value == "" else json.dumps(value)
    return repr(value)


class Backend:
    """Runs each node either in this process (on one executor, spun by the main thread,
    with the progress monitor) or as a child process (its own session, so Ctrl-C reaches
    only bringup, which stops the children in order; output in <out>/logs/<node>.log)."""

    def __init__(self, cfg: BringupConfig, params_file: Path, log_dir: Path,
                 in_process: frozenset[str]) -> None:
        import rclpy

        self.cfg = cfg
        self.params_file = params_file
        self.log_dir = log_dir
        self.in_process = in_process
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        from q_grasp.nodes.runtime import make_executor

        self.executor = make_executor(cfg.executor, self.context)
        self.monitor_node = rclpy.create_node("bringup_monitor", context=self.context)
        self.monitor = Monitor(self.monitor_node, cfg.namespace)
        self.executor.add_node(self.monitor_node)
        self.nodes: dict[str, Any] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self._starts: dict[str, int] = {}
        self._param_clients: dict[str, Any] = {}

    def _namespace(self, name: str) -> str:
        ns = "" if name == "trainer" else self.cfg.namespace
        return "/" + ns.lstrip("/") if ns else ""

    # ------------------------------------------------------------------ start

    def start(self, name: str, overrides: dict[str, Any]) -> None:
        """Start node ``name`` with the params file and ``overrides`` (the launch file's)."""
        if name in self.in_process:
            self._start_node(name, overrides)
        else:
            self._start_child(name, overrides)

    def _start_node(self, name: str, overrides: dict[str, Any]) -> None:
        from rclpy.logging import LoggingSeverity
        from rclpy.parameter import Parameter

        # Only the nodes this run starts are imported (no recorder or viewer code otherwise).
        factory = getattr(importlib.import_module(MODULES[name]), NODE_CLASSES[name])
        node = factory(
            name, context=self.context, namespace=self._namespace(name),
            cli_args=["--ros-args", "--params-file", str(self.params_file)],
            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        node.get_logger().set_level(getattr(LoggingSeverity, self.cfg.node_log_level.upper()))
        self.nodes[name] = node
        self.executor.add_node(node)

    def command(self, name: str, overrides: dict[str, Any]) -> list[str]:
        """A child's command line (what `ros2 run q_grasp <name> --ros-args ...` runs)."""
        args = [sys.executable, "-m", MODULES[name], "--ros-args", "-r", f"__node:={name}"]
        if self._namespace(name):
            args += ["-r", f"__ns:={self._namespace(name)}"]
        args += ["--params-file", str(self.params_file)]
        for key, value in overrides.items():
            args += ["-p", f"{key}:={ros_value(value)}"]
        return args

    def _start_child(self, name: str, overrides: dict[str, Any]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        count = self._starts.get(name, 0)
        self._starts[name] = count + 1
        log_path = self.log_dir / (f"{name}.log" if count == 0 else f"{name}_{count}.log")
        log = open(log_path, "wb")  # noqa: SIM115 - closed when the child is stopped
        proc = subprocess.Popen(self.command(name, overrides), env=child_env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        proc._q_grasp_log = log  # type: ignore[attr-defined]
        self.procs[name] = proc
        self.logs[name] = log_path

    # ------------------------------------------------------------------ stop

    def stop(self, name: str, timeout_s: float = 60.0) -> None:
        """Stop node ``name``: destroy it (its threads are joined, the trainer saves a
        checkpoint), or SIGINT the child and SIGKILL it if it does not exit in time."""
        node = self.nodes.pop(name, None)
        if node is not None:
            # Timers first: on the EventsExecutor a destroyed node's timer was once seen firing
            # on into "cannot use Destroyable" errors (after a /clock rate change; the cause
            # is not known, this only makes sure nothing of the node is left to fire).
            for timer in list(node.timers):
                timer.cancel()
            self.executor.remove_node(node)
            node.destroy_node()
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    print(f"[bringup] {name} did not stop in {timeout_s:.0f} s; killing it",
                          file=sys.stderr)
                    proc.kill()
                    proc.wait(timeout=10.0)
        finally:
            proc._q_grasp_log.close()  # type: ignore[attr-defined]

    def set_parameters(self, name: str, values: dict[str, Any], timeout_s: float = 10.0
                       ) -> bool:
        """Set parameters of running node ``name`` (in this process, or a child's through its
        parameter services); False (with a printed reason) when they were not all set."""
        from rclpy.parameter import Parameter

        params = [Parameter(k, value=v) for k, v in values.items()]
        node = self.nodes.get(name)
        if node is not None:
            results = node.set_parameters(params)
        elif name in self.procs:
            from rclpy.parameter_client import AsyncParameterClient

            client = self._param_clients.get(name)
            if client is None:
                client = AsyncParameterClient(self.monitor_node,
                                              self._namespace(name) + "/" + name)
                self._param_clients[name] = client
            deadline = time.monotonic() + timeout_s
            while not client.services_are_ready() and time.monotonic() < deadline:
                self.spin(0.05)
            future = client.set_parameters(params) if client.services_are_ready() else None
            while future is not None and not future.done() and time.monotonic() < deadline:
                self.spin(0.05)
            if future is None or not future.done():
                print(f"[bringup] {name}: no answer from its parameter services within "
                      f"{timeout_s:.0f} s", file=sys.stderr)
                return False
            results = future.result().results
        else:
            return False
        failed = [r.reason for r in results if not r.successful]
        if failed:
            print(f"[bringup] {name}: parameters {sorted(values)} not set: {failed}",
                  file=sys.stderr)
        return not failed

    def failed(self) -> str | None:
        """A child that exited on its own, with the end of its log (in-process nodes report
        their errors on /diagnostics instead)."""
        for name, proc in list(self.procs.items()):
            if proc.poll() is not None:
                tail = self.logs[name].read_text(errors="replace")[-3000:]
                if name in OPTIONAL_NODES:
                    print(f"[bringup] {name} exited with status {proc.returncode} (see "
                          f"{self.logs[name]}); the run goes on without it", file=sys.stderr)
                    self.stop(name)
                    continue
                return f"{name} exited with status {proc.returncode}:\n{tail}"
        return None

    def spin(self, seconds: float) -> None:
        """Serve this process's callbacks for ``seconds`` (wall clock)."""
        _spin(self.executor, self.context, seconds)

    def close(self) -> None:
        """Stop everything still running (actor first), then this process's ROS context."""
        import rclpy

        for name in ("policy", "trainer", "sim_arm", *list(self.nodes), *list(self.procs)):
            try:
                self.stop(name)
            except Exception as exc:  # stop the others, and say why this one failed
                print(f"[bringup] stopping {name}: {exc}", file=sys.stderr)
        self.executor.shutdown()
        self.monitor_node.destroy_node()
        rclpy.try_shutdown(context=self.context)


# --------------------------------------------------------------------------------- the run


@dataclass
class RunSummary:
    """What a bringup run did (also written to <out>/bringup_summary.json)."""

    task: str
    mode: str
    command: str
    params_file: str
    output_dir: str
    resumed_from: str = ""
    budget: str = ""
    train_wall_s: float = 0.0
    catch_up_wall_s: float = 0.0
    transitions: int = 0
    episodes: int = 0
    train_successes: int = 0
    updates: int = 0
    weights_version: int = -1
    checkpoint: str = ""
    progress_csv: str = ""
    plots: str = ""
    recording: str = ""
    viewer_rrd: str = ""
    eval: dict[str, Any] = field(default_factory=dict)
    total_wall_s: float = 0.0


class Bringup:
    """Runs one bringup: start, train to the budget, stop in order, evaluate, summarise."""

    def __init__(self, cfg: BringupConfig, argv: Sequence[str] = (),
                 print_fn: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.print = print_fn or (lambda line: print(line, flush=True))
        self.params_file = Path(cfg.config).expanduser() if cfg.config else (
            default_params_file(cfg.task))
        if not self.params_file.is_file():
            raise ValueError(f"config: no such parameters file: {self.params_file}")
        if cfg.checkpoint and not Path(cfg.checkpoint).expanduser().is_file():
            raise ValueError(f"checkpoint: no such file: {cfg.checkpoint}")
        if cfg.auth_key_file:
            read_key_file(cfg.auth_key_file)  # AuthKeyError (a ValueError) names the file
        self.plan = training_plan(cfg, self.params_file)
        self.out = self.plan.output_dir
        self.argv = list(argv)
        self._stop_requested = False

    # ------------------------------------------------------------------ helpers

    def _budget(self) -> tuple[int, float]:
        cfg = self.cfg
        if cfg.duration_s:
            return 0, cfg.duration_s
        return (cfg.max_transitions or self.plan.total_steps), 0.0

    def _eval_episodes(self) -> int:
        if self.cfg.eval_episodes >= 0:
            return self.cfg.eval_episodes
        return max(self.plan.final_eval_episodes, 1)

    def _wait(self, backend: Any, done: Callable[[], bool], timeout_s: float,
              report: Callable[[], None] | None = None) -> bool:
        deadline = time.monotonic() + timeout_s
        next_report = time.monotonic() + self.cfg.progress_every_s
        while time.monotonic() < deadline:
            if done():
                return True
            if not backend.context.ok():  # Ctrl-C: rclpy's handler shut the context down
                raise KeyboardInterrupt
            failure = backend.failed()
            if failure:
                raise RuntimeError(failure)
            backend.spin(0.2)
            if report is not None and time.monotonic() >= next_report:
                report()
                next_report += self.cfg.progress_every_s
        return done()

    # ------------------------------------------------------------------ phases

    def run(self) -> RunSummary:
        fresh_key = None
        if not self.cfg.auth_key_file:
            fresh_key = new_key_file()
            self.cfg = dataclasses.replace(self.cfg, auth_key_file=str(fresh_key))
        try:
            return self._run()
        finally:
            if fresh_key is not None:
                fresh_key.unlink(missing_ok=True)

    def _run(self) -> RunSummary:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        summary = RunSummary(task=cfg.task, mode=cfg.mode,
                             command=" ".join(["python -m q_grasp.nodes.bringup", *self.argv]),
                             params_file=str(self.params_file), output_dir=str(self.out),
                             resumed_from=self.plan.resume_from)
        t_start = time.monotonic()
        backend = Backend(cfg, self.params_file, self.out / "logs", IN_PROCESS[cfg.mode])
        try:
            if cfg.record:
                summary.recording = self._start_recorder(backend)
            if cfg.viewer:
                summary.viewer_rrd = self._start_viewer(backend)
            if cfg.use_sim:
                backend.start("sim_arm", node_overrides(cfg, "sim_arm", self.plan))
            elif cfg.driver != "none":
                backend.start("xarm_driver", node_overrides(cfg, "xarm_driver", self.plan))
            if cfg.train:
                self._train(backend, summary)
            if self._eval_episodes() > 0 and not self._stop_requested:
                self._evaluate(backend, summary)
        except KeyboardInterrupt:
            self.print("[bringup] interrupted: stopping the nodes (the trainer saves a "
                       "checkpoint)")
            self._stop_requested = True
            if cfg.train and not summary.train_wall_s:
                summary.train_wall_s = time.monotonic() - t_start
                self._record_training(summary, backend.monitor)
        finally:
            backend.close()
        summary.total_wall_s = time.monotonic() - t_start
        if cfg.train:
            from q_grasp.learning.trainer_core import newest_checkpoint

            newest = newest_checkpoint(self.out)
            summary.checkpoint = str(newest) if newest else summary.checkpoint
            summary.progress_csv = str(self.out / "progress.csv")
            summary.plots = self._plot()
        path = self.out / "bringup_summary.json"
        path.write_text(json.dumps(asdict(summary), indent=2) + "\n")
        self._print_summary(summary, path)
        return summary

    def _start_recorder(self, backend: Backend) -> str:
        """Start the recorder before the other nodes, so that it hears their first messages;
        the path it writes ("" when it could not start: the run goes on without it)."""
        path = self.out / f"recording_{time.strftime('%Y%m%d_%H%M%S')}.mcap"
        try:
            backend.start("recorder", {"output_path": str(path)})
        except Exception as exc:  # a recorder never stops the run
            print(f"[bringup] not recording: {exc}", file=sys.stderr)
            return ""
        node = backend.nodes.get("recorder")
        if node is not None and node.error:
            return ""  # it logged why
        self.print(f"[bringup] recording the run's topics to {path}")
        return str(path)

    def _start_viewer(self, backend: Backend) -> str:
        """Start the Rerun viewer node before the others; the .rrd it writes ("" when it could
        not start: the run goes on without it)."""
        path = self.out / f"run_{time.strftime('%Y%m%d_%H%M%S')}.rrd"
        try:
            backend.start("viewer", {"rrd_path": str(path), "web_port": self.cfg.viewer_port})
        except Exception as exc:  # a viewer never stops the run
            print(f"[bringup] no viewer: {exc}", file=sys.stderr)
            return ""
        node = backend.nodes.get("viewer")
        if node is not None:
            if node.error:
                print(f"[bringup] no viewer: {node.error}", file=sys.stderr)
                return ""
            if node.url:
                self.print(f"[bringup] viewer: open {node.url} in a browser")
        self.print(f"[bringup] viewer: saving to {path} (reopen with: rerun {path})")
        return str(path)

    def _plot(self) -> str:
        """The trainer's learning curves as <out>/plots.png ("" with a printed reason when
        there is nothing to draw: the run ends either way)."""
        from q_grasp.learning.plotting import PlotError, plot_runs

        try:
            return str(plot_runs([self.out], self.out / "plots.png",
                                 title=f"{self.cfg.task} over ROS 2 topics ({self.out})"))
        except (PlotError, OSError) as exc:
            print(f"[bringup] no plots: {exc}", file=sys.stderr)
            return ""

    def _train(self, backend: Any, summary: RunSummary) -> None:
        cfg, plan = self.cfg, self.plan
        max_transitions, duration_s = self._budget()
        budget = f"/{max_transitions}" if max_transitions else ""
        summary.budget = (f"{max_transitions} transitions" if max_transitions
                          else f"{duration_s:g} s")
        self.print(
            f"[bringup] {cfg.task}: sim_arm + policy + trainer "
            f"({cfg.mode}), params "
            f"{self.params_file}, budget {summary.budget}, replay ratio {plan.replay_ratio:g}, "
            f"learning starts at {plan.learning_starts}, output {self.out}"
            + (f", resuming from {plan.resume_from}" if plan.resume_from else ""))
        backend.start("trainer", node_overrides(cfg, "trainer", plan))
        # Transitions published before the trainer's subscription is discovered are lost
        # (reliable, volatile): start acting once the learner listens.
        monitor_node = backend.monitor_node

        def trainer_listens() -> bool:  # the trainer's subscription, not the recorder's
            return any(info.node_name == "trainer" for info in
                       monitor_node.get_subscriptions_info_by_topic("/q_grasp/transitions"))

        if not self._wait(backend, trainer_listens, 300.0):
            raise RuntimeError("the trainer did not subscribe to /q_grasp/transitions within "
                               "300 s")
        backend.start("policy", node_overrides(cfg, "policy", plan))
        monitor = backend.monitor
        t0 = time.monotonic()
        window = [t0, 0]

        def steps() -> int:
            return int(_number(monitor.snapshot()[1], "steps", 0))

        def report() -> None:
            trainer, policy, _ = monitor.snapshot()
            now, count = time.monotonic(), int(_number(policy, "steps", 0))
            rate = (count - window[1]) / max(now - window[0], 1e-9) if window[1] else 0.0
            window[:] = [now, count]
            self.print(progress_line(cfg.task, now - t0, budget, trainer, policy, rate))
            for error in monitor.errors():
                self.print(f"[bringup] ERROR {error}")

        def budget_reached() -> bool:
            if duration_s:
                return time.monotonic() - t0 >= duration_s
            return steps() >= max_transitions

        self._wait(backend, budget_reached, math.inf, report)
        summary.train_wall_s = time.monotonic() - t0
        report()
        backend.stop("policy")
        self._record_training(summary, monitor)
        self.print(f"[bringup] budget reached after {summary.train_wall_s:.0f} s: actor "
                   f"stopped at {summary.transitions} transitions")
        t_catch = time.monotonic()
        if cfg.catch_up:
            # Nobody acts now: the simulator would only burn the CPU that the trainer needs.
            # Slow it to real time without camera frames meanwhile -- unless the trainer runs
            # on this process's EventsExecutor, whose sim-time timers stop firing after a
            # clock rate change: the composed layout keeps the simulator at full rate.
            paused = (cfg.use_sim and "trainer" not in backend.nodes
                      and backend.set_parameters("sim_arm", SIM_IDLE_PARAMETERS))
            self._catch_up(backend, summary.transitions)
            if paused:
                backend.set_parameters("sim_arm", self._sim_parameters(list(SIM_IDLE_PARAMETERS)))
        summary.catch_up_wall_s = time.monotonic() - t_catch
        self._record_training(summary, monitor)
        backend.stop("trainer", timeout_s=cfg.catch_up_timeout_s)
        monitor.forget_policy()

    def _sim_parameters(self, names: Sequence[str]) -> dict[str, Any]:
        """sim_arm's values of these parameters as started (params file, else defaults)."""
        from q_grasp.nodes.sim_arm import SimArmConfig

        given = node_parameters(self.params_file, "sim_arm")
        given.update(node_overrides(self.cfg, "sim_arm", self.plan))
        return {k: given.get(k, getattr(SimArmConfig(), k)) for k in names}

    @staticmethod
    def _record_training(summary: RunSummary, monitor: Monitor) -> None:
        trainer, policy, _ = monitor.snapshot()
        if policy.get("mode", "train") == "train":
            summary.transitions = int(_number(policy, "steps", summary.transitions))
            summary.episodes = int(_number(policy, "episodes", summary.episodes))
            summary.train_successes = int(_number(policy, "grasp_successes",
                                                  summary.train_successes))
        summary.updates = int(_number(trainer, "updates", summary.updates))
        summary.weights_version = int(_number(trainer, "weights_version",
                                              summary.weights_version))

    def _catch_up(self, backend: Any, transitions: int) -> None:
        """Wait until the trainer holds every transition the actor sent (or none arrive for
        a while: dropped by a full queue) and has done the updates owed for them."""
        plan, monitor = self.plan, backend.monitor
        last = [-1, time.monotonic()]  # received count, when it last changed

        def received() -> int:
            return int(_number(monitor.snapshot()[0], "transitions", 0))

        def owed() -> int:
            count = received()
            if count < plan.learning_starts:
                return 0
            return int((count - plan.learning_starts) * plan.replay_ratio) + 1

        def all_received() -> bool:
            count = received()
            if count != last[0]:
                last[:] = [count, time.monotonic()]
            return count >= transitions or time.monotonic() - last[1] > 30.0

        def caught_up() -> bool:
            return all_received() and int(_number(monitor.snapshot()[0], "updates", 0)) >= owed()

        def report() -> None:
            trainer = monitor.snapshot()[0]
            self.print(f"[bringup] trainer catching up: {int(_number(trainer, 'updates', 0))}"
                       f"/{owed()} updates for {received()} transitions "
                       f"({_number(trainer, 'updates_per_s', 0.0):.1f}/s)")

        if not caught_up():
            report()
            if not self._wait(backend, caught_up, self.cfg.catch_up_timeout_s, report):
                self.print("[bringup] catch-up timed out; stopping the trainer as it is")

    def _evaluate(self, backend: Any, summary: RunSummary) -> None:
        from q_grasp.learning.trainer_core import newest_checkpoint

        cfg = self.cfg
        episodes = self._eval_episodes()
        checkpoint = cfg.checkpoint
        if cfg.train:
            newest = newest_checkpoint(self.out)
            if newest is None:
                self.print("[bringup] no checkpoint was written; skipping the evaluation")
                return
            checkpoint = str(newest)
        overrides = node_overrides(cfg, "policy", None)
        overrides.update(train=False, checkpoint=checkpoint, max_episodes=episodes,
                         success_window=episodes, shutdown_when_done=False)
        self.print(f"[bringup] greedy evaluation: {episodes} episodes with {checkpoint}")
        monitor = backend.monitor
        monitor.forget_policy()
        qmaps = (self._save_eval_qmaps(backend) if cfg.task == "grasp" and cfg.eval_qmaps
                 else None)
        t0 = time.monotonic()
        backend.start("policy", overrides)

        def finished() -> bool:
            policy = monitor.snapshot()[1]
            return (policy.get("mode") == "evaluate"
                    and int(_number(policy, "episodes", 0)) >= episodes)

        def report() -> None:
            policy = monitor.snapshot()[1]
            if policy.get("mode") == "evaluate":
                self.print(f"[{_clock(time.monotonic() - t0)}] evaluating: episode "
                           f"{int(_number(policy, 'episodes', 0))}/{episodes}, "
                           f"{int(_number(policy, 'steps', 0))} steps")

        ok = self._wait(backend, finished, max(600.0, 60.0 * episodes), report)
        policy = monitor.snapshot()[1]
        backend.stop("policy")
        if qmaps is not None:
            backend.monitor_node.destroy_subscription(qmaps[0])
        steps = int(_number(policy, "steps", 0))
        result: dict[str, Any] = {
            "checkpoint": checkpoint, "episodes": int(_number(policy, "episodes", 0)),
            "steps": steps, "episode_success_rate": _number(policy, "success_rate"),
            "mean_return": _number(policy, "mean_return"),
            "wall_s": time.monotonic() - t0, "complete": ok}
        if cfg.task == "grasp":
            successes = int(_number(policy, "grasp_successes", 0))
            result.update(attempts=steps, grasp_successes=successes,
                          attempt_success_rate=successes / steps if steps else math.nan)
        if qmaps is not None:
            result.update(qmaps=qmaps[1]["saved"], qmap_dir=str(self.out / "eval_qmaps"))
        summary.eval = result

    def _save_eval_qmaps(self, backend: Backend) -> tuple[Any, dict[str, int]]:
        """Subscribe to the evaluating policy's Q-map images (it draws them only while someone
        listens) and save the first eval_qmaps as PNGs; (subscription, {"saved": count})."""
        from sensor_msgs.msg import Image

        from q_grasp.learning.visualize import save_png
        from q_grasp.nodes.convert import color_image_to_numpy
        from q_grasp.nodes.qos import DEFAULT_QOS

        folder = self.out / "eval_qmaps"
        for stale in folder.glob("qmap_*.png"):  # an earlier evaluation's
            stale.unlink()
        count = {"saved": 0}

        def on_q_map(msg: Any) -> None:
            if count["saved"] >= self.cfg.eval_qmaps:
                return
            try:
                save_png(color_image_to_numpy(msg), folder / f"qmap_{count['saved']:04d}.png")
            except (OSError, ValueError) as exc:  # the evaluation matters more than pictures
                print(f"[bringup] Q-map image not saved: {exc}", file=sys.stderr)
                return
            count["saved"] += 1

        topic = backend._namespace("policy").rstrip("/") + "/q_grasp/q_map"
        return backend.monitor_node.create_subscription(Image, topic, on_q_map,
                                                        DEFAULT_QOS), count

    def _print_summary(self, summary: RunSummary, path: Path) -> None:
        lines = ["[bringup] done in " + f"{summary.total_wall_s:.0f} s"]
        if self.cfg.train:
            lines.append(
                f"  training: {summary.transitions} transitions ({summary.train_successes} "
                f"successful grasps) in {summary.train_wall_s:.0f} s + "
                f"{summary.catch_up_wall_s:.0f} s trainer catch-up, {summary.updates} "
                f"updates, weights v{summary.weights_version}")
        result = summary.eval
        if result:
            if self.cfg.task == "grasp":
                lines.append(
                    f"  greedy evaluation: grasp success {result['grasp_successes']}/"
                    f"{result['attempts']} attempts = {100 * result['attempt_success_rate']:.1f}%"
                    f", episodes ending in a grasp {100 * result['episode_success_rate']:.1f}% "
                    f"of {result['episodes']}")
                if result.get("qmaps"):
                    lines.append(f"  Q-maps of the evaluation: {result['qmaps']} PNGs in "
                                 f"{result['qmap_dir']}")
            else:
                lines.append(f"  greedy evaluation: success "
                             f"{100 * result['episode_success_rate']:.1f}% of "
                             f"{result['episodes']} episodes, mean return "
                             f"{result['mean_return']:.3f}")
        if summary.checkpoint:
            lines.append(f"  checkpoint: {summary.checkpoint}")
        if summary.progress_csv:
            tb = self.out / "tb"
            lines.append(f"  metrics: {summary.progress_csv}"
                         + (f", TensorBoard: {tb}" if tb.is_dir() else ""))
        if summary.plots:
            lines.append(f"  plots: {summary.plots}")
        if summary.recording:
            size = Path(summary.recording).stat().st_size if Path(
                summary.recording).is_file() else 0
            lines.append(f"  recording: {summary.recording} ({size / 2**20:.1f} MiB)")
        if summary.viewer_rrd:
            lines.append(f"  viewer: {summary.viewer_rrd}")
        lines.append(f"  summary: {path}")
        for line in lines:
            self.print(line)


# --------------------------------------------------------------------------------- CLI


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m q_grasp.nodes.bringup", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS, default="grasp",
                        help="skill to learn (default grasp)")
    parser.add_argument("--config", default="",
                        help="node parameters file (default config/sim_train_<task>.yaml)")
    parser.add_argument("--namespace", default="", help="namespace of sim_arm and policy")
    parser.add_argument("--use-sim", type=_bool, default=True, metavar="true|false",
                        help="start sim_arm (false: a real arm provides the topics)")
    parser.add_argument("--driver", choices=["none", "xarm", "xarm-fake"], default="none",
                        help="with --use-sim false: start xarm_driver for the NURO arm's board "
                             "(xarm) or its fake board (xarm-fake, no arm needed)")
    parser.add_argument("--use-sim-time", type=_bool, default=True, metavar="true|false",
                        help="run every node on sim_arm's /clock")
    parser.add_argument("--checkpoint", default="",
                        help="initial weights (the trainer resumes from it); with --train "
                             "false, the policy to evaluate")
    parser.add_argument("--train", type=_bool, default=True, metavar="true|false",
                        help="train (default); false: only evaluate --checkpoint")
    parser.add_argument("--out", default="",
                        help="trainer output folder (default: the params file's output_dir)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--max-transitions", type=int, default=0, metavar="N",
                        help="stop after N transitions in total (default: the experiment's "
                             "training.total_steps)")
    budget.add_argument("--duration-s", type=float, default=0.0, metavar="S",
                        help="stop after S seconds of training instead")
    # Not mutually exclusive: the last one given wins, so that `make run RUN_ARGS=...` can
    # override the Makefile's --trainer-process.
    layout = parser.add_argument_group("process layout (the last one given wins)")
    layout.add_argument("--composed", action="store_const", dest="mode", const="composed",
                        help="all three nodes composed in this process (the default)")
    layout.add_argument("--processes", action="store_const", dest="mode", const="processes",
                        help="run the three nodes as child processes, as ros2 launch does")
    layout.add_argument("--trainer-process", action="store_const", dest="mode",
                        const="trainer-process",
                        help="compose sim_arm and policy here and run the trainer as a child "
                             "process")
    parser.add_argument("--record", action="store_true",
                        help="record the run's topics (joint states, images, trajectories, "
                             "transitions, weights, diagnostics) as ROS 2 messages in "
                             "<out>/recording_<date>.mcap (read by ros2 bag, Foxglove and "
                             "python -m q_grasp replay-buffer)")
    parser.add_argument("--viewer", action="store_true",
                        help="show the run in Rerun (arm in 3D, camera, Q-map, grasps, goal, "
                             "learning curves): saved to <out>/run_<date>.rrd and served at "
                             "http://localhost:PORT (--viewer-port)")
    parser.add_argument("--viewer-port", type=int, default=9090, metavar="PORT",
                        help="web viewer port of --viewer (default 9090; 0: only the .rrd)")
    parser.add_argument("--eval-episodes", type=int, default=-1, metavar="N",
                        help="greedy evaluation episodes (default: the experiment's "
                             "final_eval_episodes; 0: none)")
    parser.add_argument("--eval-qmaps", type=int, default=50, metavar="N",
                        help="grasping: save the Q-map images of the first N evaluation "
                             "decisions in <out>/eval_qmaps/ (default 50; 0: none)")
    parser.add_argument("--progress-every-s", type=float, default=10.0, metavar="S",
                        help="progress line period (default 10 s)")
    parser.add_argument("--catch-up", type=_bool, default=True, metavar="true|false",
                        help="let the trainer finish the updates owed at its replay ratio "
                             "after the actor stops (default true)")
    parser.add_argument("--executor", choices=EXECUTORS, default="events",
                        help="composed mode's rclpy executor (default events)")
    parser.add_argument("--node-log-level", choices=LOG_LEVELS, default="warn",
                        help="console log level of the nodes after start-up (default warn)")
    parser.add_argument("--auth-key-file", default="", metavar="PATH",
                        help="key file that authenticates transitions and weights (share it "
                             "to spread a system over machines); default: a fresh key per run")
    return parser


def config_from_args(argv: Sequence[str]) -> BringupConfig:
    """Parse and validate the command line (ValueError names the bad argument)."""
    args = build_parser().parse_args(list(argv))
    return BringupConfig(
        task=args.task, config=args.config, namespace=args.namespace, use_sim=args.use_sim,
        driver=args.driver,
        use_sim_time=args.use_sim_time, checkpoint=args.checkpoint, train=args.train,
        out=args.out, max_transitions=args.max_transitions, duration_s=args.duration_s,
        mode=args.mode or "composed", record=args.record, viewer=args.viewer,
        viewer_port=args.viewer_port, eval_episodes=args.eval_episodes,
        eval_qmaps=args.eval_qmaps,
        progress_every_s=args.progress_every_s, catch_up=args.catch_up,
        node_log_level=args.node_log_level, executor=args.executor,
        auth_key_file=args.auth_key_file)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit status 0 on success, 2 on invalid arguments, 1 if a node failed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (kill, timeout, a service manager) stops as cleanly as Ctrl-C: rclpy's own
        # handler shuts the context down and then calls this one.
        signal.signal(signal.SIGTERM, _terminate)
    try:
        cfg = config_from_args(argv)
        if not cfg.use_sim and cfg.use_sim_time:
            print("[bringup] warning: --use-sim false with --use-sim-time true needs another "
                  "/clock publisher; a real arm usually wants --use-sim-time false",
                  file=sys.stderr)
        bringup = Bringup(cfg, argv)
    except ValueError as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 2
    try:
        bringup.run()
    except ValueError as exc:  # a node refused its parameters
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
