"""/diagnostics for q_grasp nodes: thread-safe counters and values published as key/values,
plus a rejection log that logs every bad message with its reason (throttled) and counts it."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from q_grasp.nodes.qos import DEFAULT_QOS

# DiagnosticStatus.level is a ROS `byte` (a length-1 bytes object in Python).
OK: bytes = DiagnosticStatus.OK
WARN: bytes = DiagnosticStatus.WARN
ERROR: bytes = DiagnosticStatus.ERROR
STALE: bytes = DiagnosticStatus.STALE


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def diagnostic_status(name: str, level: bytes, message: str, values: Mapping[str, Any],
                      hardware_id: str = "") -> DiagnosticStatus:
    """A DiagnosticStatus with one KeyValue per entry (values formatted as text)."""
    return DiagnosticStatus(
        level=level, name=name, message=message, hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=_text(v)) for k, v in values.items()])


def status_values(status: DiagnosticStatus) -> dict[str, str]:
    """KeyValues of a status as a dict (for tests and monitors)."""
    return {kv.key: kv.value for kv in status.values}


class Diagnostics:
    """Counters, gauges and rejections of one node, published periodically on /diagnostics.

    Safe to update from any callback thread. ``reject(source, reason, detail)`` is what a node
    calls for every bad input: it counts ``rejected.<source>.<reason>`` and logs the detail,
    throttled per (source, reason) so a flood of bad messages cannot flood the log.

    The period is wall-clock (steady) time, whatever the node's clock: a node on simulated time
    beside a simulator 40x faster than real time would otherwise publish 40 statuses a second
    (each node, each costing its executor and every /diagnostics subscriber).
    """

    def __init__(self, node: Node, name: str | None = None, *, period_s: float = 1.0,
                 hardware_id: str = "", log_throttle_s: float = 5.0,
                 topic: str = "/diagnostics") -> None:
        self._node = node
        self.name = name or node.get_fully_qualified_name()
        self.hardware_id = hardware_id
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._values: dict[str, Any] = {}
        self._level = OK
        self._message = "running"
        self._throttle_s = log_throttle_s
        self._last_logged: dict[tuple[str, str], float] = {}
        self._publisher = node.create_publisher(DiagnosticArray, topic, DEFAULT_QOS)
        self._timer = (node.create_timer(period_s, self.publish,
                                         clock=Clock(clock_type=ClockType.STEADY_TIME))
                       if period_s > 0 else None)

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to counter ``key``."""
        with self._lock:
            self._counters[key] += n

    def set(self, **values: Any) -> None:
        """Set gauges (latest value wins), e.g. ``set(buffer_size=1200, loss=0.03)``."""
        with self._lock:
            self._values.update(values)

    def set_level(self, level: bytes, message: str) -> None:
        """Overall status level (OK/WARN/ERROR) and a one-line message."""
        with self._lock:
            self._level, self._message = level, message

    def ok(self, message: str) -> None:
        """Level OK (q_grasp.hardware.health.Health)."""
        self.set_level(OK, message)

    def warn(self, message: str) -> None:
        """Level WARN."""
        self.set_level(WARN, message)

    def error(self, message: str, log: bool = False) -> None:
        """Level ERROR; ``log``: also to the node's log (at most every 30 s)."""
        self.set_level(ERROR, message)
        if log:
            self._node.get_logger().error(message, throttle_duration_sec=30.0)

    def counter(self, key: str) -> int:
        """Current value of a counter."""
        with self._lock:
            return self._counters[key]

    def rejected_total(self, source: str | None = None) -> int:
        """Number of rejected inputs (from one source, or all)."""
        prefix = "rejected." if source is None else f"rejected.{source}."
        with self._lock:
            return sum(v for k, v in self._counters.items() if k.startswith(prefix))

    def reject(self, source: str, reason: str, detail: str) -> None:
        """Count and log (throttled) a rejected input."""
        key = (source, reason)
        now = self._node.get_clock().now().nanoseconds * 1e-9
        with self._lock:
            self._counters[f"rejected.{source}.{reason}"] += 1
            total = self._counters[f"rejected.{source}.{reason}"]
            last = self._last_logged.get(key)
            # Throttle on the node clock; a clock that jumped back (sim reset) logs again.
            log = last is None or now - last >= self._throttle_s or now < last
            if log:
                self._last_logged[key] = now
        if log:
            self._node.get_logger().warn(f"rejected {source} ({reason}, {total} so far): "
                                         f"{detail}")

    def snapshot(self) -> dict[str, Any]:
        """All counters and gauges as one dict."""
        with self._lock:
            return {**self._values, **self._counters}

    def status(self) -> DiagnosticStatus:
        """The current DiagnosticStatus."""
        with self._lock:
            values = {**self._values, **dict(sorted(self._counters.items()))}
            level, message = self._level, self._message
        return diagnostic_status(self.name, level, message, values, self.hardware_id)

    def publish(self) -> None:
        """Publish the current status now (also called by the timer)."""
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = [self.status()]
        self._publisher.publish(msg)
