"""Pacing of a simulation loop against a clock: simulated time kept to a real-time factor, and
published streams kept to a rate in simulated time and a cap in wall-clock time. The clock is
injected (``WallClock`` in a node, a fake one in tests), so pacing is tested without sleeping."""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol

FAR_BEHIND_S = 0.25
"""Wall-clock lag after which pacing re-anchors instead of racing to catch up (which would
make simulated time jerk forwards after a slow tick or a reset that settled objects)."""

MAX_STILL_JUMP_S = 1.0
"""Most simulated time one loop iteration lets pass in a still world (still_real_time_factor)."""


class Clock(Protocol):
    """What pacing needs of time: a monotonic reading and a wait that ``wake`` ends early."""

    def now(self) -> float:
        """Monotonic wall-clock seconds."""
        ...

    def wait(self, wake: threading.Event, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` or until ``wake`` is set; True when it was set."""
        ...


class WallClock:
    """The real clock: time.monotonic, and waits on the event itself."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, wake: threading.Event, timeout_s: float) -> bool:
        return wake.wait(timeout_s)


def next_due(due_s: float, rate_hz: float, now_s: float) -> float:
    """When a stream published at ``rate_hz`` is next due after publishing at ``now_s``: one
    period after it was due, never before now (a slow stretch does not cause a burst) and never
    more than a period after now (a message sent before it was due -- an event's joint state --
    does not push the stream back by a period each)."""
    period = 1.0 / rate_hz
    return min(max(due_s + period, now_s), now_s + period)


class Stream:
    """When one published stream is next due: a rate in simulated time (0 = every tick) and a
    cap in wall-clock time (0 = none)."""

    __slots__ = ("due_s", "due_wall")

    def __init__(self) -> None:
        self.due_s = 0.0
        self.due_wall = 0.0

    def is_due(self, now_s: float, wall: float) -> bool:
        return now_s >= self.due_s and wall >= self.due_wall

    def published(self, now_s: float, wall: float, rate_hz: float, cap_hz: float) -> None:
        if rate_hz > 0.0:
            self.due_s = next_due(self.due_s, rate_hz, now_s)
        if cap_hz > 0.0:
            self.due_wall = next_due(self.due_wall, cap_hz, wall)


class Pacer:
    """Keeps simulated time to a real-time factor on ``clock``, from an anchor (wall, simulated
    time, factor) set on the first call and again whenever the factor changes or the loop falls
    far behind. Setting ``wake`` ends a wait at once (a command, a reset, a parameter change)."""

    def __init__(self, clock: Clock, wake: threading.Event) -> None:
        self.clock = clock
        self.wake = wake
        self.anchor: tuple[float, float, float] | None = None

    def reset(self) -> None:
        """Re-anchor on the next call (a new real-time factor)."""
        self.anchor = None

    def pace(self, now_s: float, rtf: float, streams: list[Stream] | None = None) -> None:
        """Wait until simulated time ``now_s`` is due at real-time factor ``rtf`` (0: do not
        wait) -- or, given ``streams`` (a still world), until the first of them is due."""
        if rtf <= 0.0:
            return
        wall = self.clock.now()
        anchor = self.anchor
        if anchor is None or anchor[2] != rtf:
            self.anchor = (wall, now_s, rtf)
            return
        due = anchor[0] + (now_s - anchor[1]) / rtf
        if wall - due > FAR_BEHIND_S:
            self.anchor = (wall, now_s, rtf)
            return
        if streams:
            due = max(due, min(max(anchor[0] + (st.due_s - anchor[1]) / rtf, st.due_wall)
                               for st in streams))
        if due - wall > 0:
            self.clock.wait(self.wake, due - wall)
            self.wake.clear()

    def ticks_behind(self, sim_time_s: float, rtf: float, tick_s: float) -> int:
        """Ticks of ``tick_s`` simulated seconds that may pass at once to catch up with the
        wall time since the anchor at ``rtf`` (at least one, at most MAX_STILL_JUMP_S); one
        while the anchor is of another factor or pacing is off."""
        anchor = self.anchor
        if anchor is None or rtf <= 0.0 or anchor[2] != rtf:
            return 1
        behind_s = anchor[1] + (self.clock.now() - anchor[0]) * rtf - sim_time_s
        return int(min(max(math.ceil(behind_s / tick_s - 1e-6), 1),
                       max(1, MAX_STILL_JUMP_S // tick_s)))
