"""Running the nodes of a bringup: composed on one executor in this process, or as child
processes with their own logs; starting, stopping and reconfiguring them."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from q_grasp.bringup.config import OPTIONAL_NODES, BringupConfig
from q_grasp.bringup.monitor import Monitor
from q_grasp.node_processes import stop_process

MODULES = {"sim_arm": "q_grasp.nodes.sim_arm", "xarm_driver": "q_grasp.nodes.xarm_driver",
           "policy": "q_grasp.nodes.policy", "trainer": "q_grasp.nodes.trainer",
           "recorder": "q_grasp.nodes.recorder", "viewer": "q_grasp.nodes.viewer"}
"""Node name -> module whose main() runs it (what the console scripts run)."""
NODE_CLASSES = {"sim_arm": "SimArmNode", "xarm_driver": "XArmDriverNode", "policy": "PolicyNode",
                "trainer": "TrainerNode", "recorder": "RecorderNode", "viewer": "ViewerNode"}
"""Node name -> its class in that module (composed into the bringup process)."""


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
    from q_grasp.node_processes import REPO_ROOT, ros_library_path

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
            # Timers first, so that nothing of the node is left to fire once it is destroyed
            # (the EventsExecutor has fired a destroyed node's timer after a /clock rate change).
            for timer in list(node.timers):
                timer.cancel()
            self.executor.remove_node(node)
            node.destroy_node()
        proc = self.procs.pop(name, None)
        if proc is not None:
            stop_process(proc, timeout_s, name=name)

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
