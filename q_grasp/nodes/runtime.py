"""Running q_grasp nodes: ``main()`` helpers that spin with a MultiThreadedExecutor and always
clean up (Ctrl-C, external shutdown, invalid parameters), one node or several in one process."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

NodeFactory = Callable[[], Node]


def run_nodes(factories: Sequence[NodeFactory], args: Sequence[str] | None = None, *,
              num_threads: int | None = None) -> int:
    """Create the nodes, spin them in one MultiThreadedExecutor until shutdown, clean up.

    Returns the process exit code: 0 after a normal or Ctrl-C shutdown, 2 when a node refused
    its parameters (ValueError while constructing; the message names the parameter).
    """
    rclpy.init(args=list(args) if args is not None else None)
    nodes: list[Node] = []
    code = 0
    try:
        for factory in factories:
            nodes.append(factory())
        executor = MultiThreadedExecutor(num_threads=num_threads)
        for node in nodes:
            executor.add_node(node)
        try:
            executor.spin()
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
        # shutdown check then fails to build its wait set (RCLError "the given context is not
        # valid") instead of raising ExternalShutdownException. That is the same shutdown.
        if rclpy.ok():
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


def _ignore_sigint() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_node(factory: NodeFactory, args: Sequence[str] | None = None, *,
             num_threads: int | None = None) -> int:
    """:func:`run_nodes` for a single node."""
    return run_nodes([factory], args, num_threads=num_threads)
