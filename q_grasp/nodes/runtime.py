"""Running q_grasp nodes: ``main()`` helpers that spin one executor and always clean up (Ctrl-C,
external shutdown, invalid parameters), one node or several in one process.

The executor of a node process (the console scripts, ``ros2 launch``) is rclpy's
SingleThreadedExecutor unless the environment variable ``Q_GRASP_EXECUTOR`` says ``multi`` or
``events``. Every q_grasp callback only stores data or hands work over (physics, acting and
training run in the nodes' own threads), so one thread serves them all; rclpy's
MultiThreadedExecutor spins its main thread at 100% of a core while a callback group is busy
(benchmarks/bench_ros_system.py: 0.2-0.3 grasp transitions/s in three processes with it).

Making an executor also shortens the interpreter's GIL switch interval (``sys.setswitchinterval``,
Python's default 5 ms) to ``Q_GRASP_SWITCH_INTERVAL_S`` (default 0.0005 s; 0 keeps Python's): the
nodes' own threads run Python most of the time (sim_arm's physics loop never sleeps while it
simulates faster than real time), and each message callback waits for the GIL for up to one
interval, so every command's round trip (trajectory in, joint state out and back) would cost
milliseconds.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

NodeFactory = Callable[[], Node]
EXECUTORS = ("single", "events", "multi")
"""Executor kinds: rclpy's SingleThreadedExecutor, experimental EventsExecutor, and
MultiThreadedExecutor."""
EXECUTOR_ENV = "Q_GRASP_EXECUTOR"
"""Environment variable choosing the executor of node processes (default ``single``)."""
SWITCH_INTERVAL_ENV = "Q_GRASP_SWITCH_INTERVAL_S"
"""Environment variable setting the GIL switch interval (s) of processes running q_grasp nodes;
0 keeps Python's default."""
DEFAULT_SWITCH_INTERVAL_S = 0.0005


def switch_interval_s() -> float | None:
    """The GIL switch interval ``Q_GRASP_SWITCH_INTERVAL_S`` asks for (None: Python's own).
    Raises ValueError for anything but a number in [0, 1]."""
    text = os.environ.get(SWITCH_INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_SWITCH_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{SWITCH_INTERVAL_ENV}: must be a number of seconds in [0, 1] "
                         f"(0: Python's default), got {text!r}")
    return value or None


def make_executor(kind: str, context: Any = None, num_threads: int | None = None) -> Any:
    """An executor of ``kind`` (one of EXECUTORS) on ``context`` (None: the default one).
    Also sets this process's GIL switch interval (:func:`switch_interval_s`, module doc)."""
    if kind not in EXECUTORS:
        raise ValueError(f"executor: must be one of {list(EXECUTORS)}, got {kind!r}")
    interval = switch_interval_s()
    if interval is not None:
        sys.setswitchinterval(interval)
    if kind == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:  # rclpy before Jazzy
            print("[q_grasp] rclpy has no EventsExecutor; using the SingleThreadedExecutor",
                  file=sys.stderr)
            kind = "single"
        else:
            return EventsExecutor(context=context)
    if kind == "single":
        from rclpy.executors import SingleThreadedExecutor

        return SingleThreadedExecutor(context=context)
    from rclpy.executors import MultiThreadedExecutor

    print("[q_grasp] MultiThreadedExecutor: its spin loop can hold the GIL for a second or more "
          "while callbacks pile up, starving this process's node threads; 'single' or 'events' "
          "serve q_grasp's callbacks faster (q_grasp/nodes/runtime.py)", file=sys.stderr)
    # Callbacks only store data or hand work over, so a few threads serve every group.
    return MultiThreadedExecutor(num_threads=num_threads or 4, context=context)


def spin(executor: Any, context: Any = None) -> None:
    """Serve callbacks until ``context`` (None: the default one) shuts down.

    The EventsExecutor is spun one event at a time from Python: its own ``spin()`` (rclpy
    9.x, Jazzy) waits in C++ without releasing the GIL, so the nodes' threads (sim_arm's
    physics, the policy's actor) stop as soon as it starts -- a node process on
    ``Q_GRASP_EXECUTOR=events`` made no progress at all with it
    (test_events_executor_process_lets_node_threads_run).
    """
    if not _is_events_executor(executor):
        executor.spin()
        return
    context = context if context is not None else rclpy.get_default_context()
    while context.ok():
        spin_once(executor, 0.1)


def spin_once(executor: Any, timeout_sec: float) -> None:
    """One ``executor.spin_once``, ignoring the event of an entity destroyed after it was
    queued (a node or timer going away): the EventsExecutor still dispatches it."""
    from rclpy.impl.implementation_singleton import rclpy_implementation

    try:
        executor.spin_once(timeout_sec=timeout_sec)
    except rclpy_implementation.InvalidHandle:
        pass


def _is_events_executor(executor: Any) -> bool:
    return type(executor).__name__ == "EventsExecutor"


def run_nodes(factories: Sequence[NodeFactory], args: Sequence[str] | None = None, *,
              num_threads: int | None = None) -> int:
    """Create the nodes, spin them in one executor (``Q_GRASP_EXECUTOR``, default single)
    until shutdown, clean up.

    Returns the process exit code: 0 after a normal or Ctrl-C shutdown, 2 when a node refused
    its parameters (ValueError while constructing; the message names the parameter).
    """
    kind = os.environ.get(EXECUTOR_ENV, "") or "single"
    if kind not in EXECUTORS:
        print(f"[ERROR] {EXECUTOR_ENV}: must be one of {list(EXECUTORS)}, got {kind!r}",
              file=sys.stderr)
        return 2
    rclpy.init(args=list(args) if args is not None else None)
    nodes: list[Node] = []
    code = 0
    try:
        for factory in factories:
            nodes.append(factory())
        executor = make_executor(kind, num_threads=num_threads)
        for node in nodes:
            executor.add_node(node)
        try:
            spin(executor)
        finally:
            executor.shutdown()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:
        # Invalid configuration: one clear line instead of a traceback.
        print(f"[ERROR] {exc}", file=sys.stderr)
        code = 2
    except Exception:
        # Ctrl-C shuts the context down from the signal handler; a spin_once already past its
        # shutdown check then fails to build its wait set or to take a message (RCLError,
        # RuntimeError) instead of raising ExternalShutdownException. That is the same shutdown,
        # though the context may be marked shut down a moment after the error.
        if not _shutdown_follows():
            raise
    finally:
        # rclpy's SIGINT handler shuts the context down and then raises KeyboardInterrupt in
        # the main thread, which can land in the middle of destroy_node (joining a worker).
        # Cleanup is bounded, so ignore further Ctrl-C until it is done.
        _ignore_sigint()
        for node in reversed(nodes):
            try:
                node.destroy_node()
            except Exception as exc:  # keep destroying the others; report, never mask exit
                print(f"[WARN] destroying {node.get_name()}: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
    return code


def _shutdown_follows(within_s: float = 1.0) -> bool:
    """Whether the default context is shut down, or is within ``within_s`` (a Ctrl-C that
    arrives meanwhile counts as the shutdown)."""
    deadline = time.monotonic() + within_s
    try:
        while rclpy.ok():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
    except KeyboardInterrupt:
        pass
    return True


def _ignore_sigint() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_node(factory: NodeFactory, args: Sequence[str] | None = None, *,
             num_threads: int | None = None) -> int:
    """:func:`run_nodes` for a single node."""
    return run_nodes([factory], args, num_threads=num_threads)


class OptionalOutputNode(Node):
    """A node whose output (a recording, a viewer) the run can do without: a failure is logged
    once and kept in ``error``, the output is closed and dropped, and the node keeps spinning
    (the run is never stopped by it). Subclasses set ``self.output`` (an object with
    ``close()`` and ``path``) and call :meth:`use_output` from their callbacks."""

    def __init__(self, node_name: str, what: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.output: Any = None
        self.error = ""
        self._what = what
        self._output_lock = threading.Lock()

    def use_output(self, action: Callable[[Any], None], doing: str) -> None:
        """``action(output)`` unless the output failed before; a failure stops the output."""
        with self._output_lock:
            if self.output is None:
                return
            try:
                action(self.output)
            except Exception as exc:  # never stops the run
                self.fail(f"{doing} {self.output.path}: {exc}")

    def fail(self, reason: str) -> None:
        """Log once and stop the output (what it wrote so far stays)."""
        self.error = reason
        self.get_logger().error(f"{self._what} stopped: {reason}")
        output, self.output = self.output, None
        if output is not None:
            try:
                output.close()
            except Exception:  # noqa: S110 - the reason above is what the user needs
                pass

    def destroy_node(self) -> None:
        """Finish the output (its file's index or footer) before going."""
        with self._output_lock:
            output, self.output = self.output, None
        if output is not None:
            try:
                output.close()
                self.get_logger().info(f"{self._what}: finished {output.path}")
            except Exception as exc:
                self.get_logger().error(f"finishing {output.path} failed: {exc}")
        super().destroy_node()
