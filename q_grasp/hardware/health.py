"""How hardware loops report their state (a node passes its /diagnostics), without ROS."""

from __future__ import annotations

from typing import Protocol


class Health(Protocol):
    """Counters, values and an overall level with a one-line message."""

    def count(self, key: str, n: int = 1) -> None: ...
    def set(self, **values: float) -> None: ...
    def ok(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def error(self, message: str, log: bool = False) -> None:
        """ERROR level; ``log``: also to the log (throttled)."""
