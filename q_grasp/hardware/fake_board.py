"""A fake xArm board behind the HID calls: it parses the bytes the driver writes, moves its
servos toward their targets at a bounded speed, and answers position reads. The only stand-in
q_grasp uses for hardware that cannot be here; tests read back every packet it received."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from q_grasp.hardware.xarm import (
    REPORT_SIZE,
    SERVO_CENTRE_UNITS,
    Command,
    packet,
    parse_packet,
)


@dataclass
class ReceivedPacket:
    """A packet the board took, with its arrival time (the board's clock)."""

    time_s: float
    command: int
    data: bytes

    def move_targets(self) -> tuple[int, dict[int, int]]:
        """(duration ms, servo id -> units) of a MOVE."""
        n = self.data[0]
        duration = self.data[1] | (self.data[2] << 8)
        targets = {}
        for k in range(n):
            servo, lo, hi = self.data[3 + 3 * k:6 + 3 * k]
            targets[servo] = lo | (hi << 8)
        return duration, targets


class _Servo:
    def __init__(self, units: float) -> None:
        self.start_units = self.target_units = units
        self.start_s = 0.0
        self.duration_s = 0.0
        self.powered = True
        self.stall_units = 0.0
        """Stops this far short of every target (a servo under load, a gear with play)."""

    def position(self, now_s: float, max_speed: float) -> float:
        span = self.target_units - self.start_units
        span -= np.sign(span) * min(self.stall_units, abs(span))
        # The commanded duration, but never faster than the servo can turn.
        duration = max(self.duration_s, abs(span) / max_speed)
        if duration <= 0.0 or now_s >= self.start_s + duration:
            return self.start_units + span
        return self.start_units + span * (now_s - self.start_s) / duration


class FakeXArmBoard:
    """hidapi's device interface (write with a report-id byte, read, close) over simulated
    servos. ``max_speed_units_s`` bounds how fast a servo turns (the LX-15D: ~0.16 s per 60
    degrees at 7.4 V, about 1,500 units/s); ``silent_servos`` never answer a read."""

    def __init__(self, servo_ids: Sequence[int] = (1, 2, 3, 4, 5, 6), *,
                 initial_units: Mapping[int, float] | None = None,
                 max_speed_units_s: float = 1500.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.max_speed_units_s = float(max_speed_units_s)
        self.servos = {s: _Servo(float((initial_units or {}).get(s, SERVO_CENTRE_UNITS)))
                       for s in servo_ids}
        self.received: list[ReceivedPacket] = []
        self.silent_servos: set[int] = set()
        self.closed = False
        self._replies: list[bytes] = []
        self._lock = threading.Lock()

    # hidapi's device API ------------------------------------------------------------------

    def write(self, data: bytes | Sequence[int]) -> int:
        raw = bytes(data)
        if self.closed:
            raise OSError("fake board: device closed")
        if not raw or raw[0] != 0:
            raise OSError("fake board: a write must start with report id 0")
        command, payload = parse_packet(raw[1:])
        now = self._clock()
        with self._lock:
            self.received.append(ReceivedPacket(now, command, payload))
            if command == Command.MOVE:
                duration, targets = ReceivedPacket(now, command, payload).move_targets()
                for servo, units in targets.items():
                    if servo in self.servos:
                        state = self.servos[servo]
                        state.start_units = state.position(now, self.max_speed_units_s)
                        state.target_units = float(units)
                        state.start_s, state.duration_s = now, duration / 1000.0
                        state.powered = True
            elif command == Command.POWER_OFF:
                for servo in payload[1:1 + payload[0]]:
                    if servo in self.servos:
                        state = self.servos[servo]
                        state.start_units = state.target_units = state.position(
                            now, self.max_speed_units_s)
                        state.powered = False
            elif command == Command.POSITION_READ:
                asked = payload[1:1 + payload[0]]
                answer = [s for s in asked if s in self.servos and s not in self.silent_servos]
                data = [len(answer)]
                for servo in answer:
                    units = round(self.servos[servo].position(now, self.max_speed_units_s))
                    data += [servo, units & 0xFF, (units >> 8) & 0xFF]
                self._replies.append(packet(Command.POSITION_READ, data))
        return len(raw)

    def read(self, max_length: int, timeout_ms: int = 0) -> list[int]:
        with self._lock:
            if not self._replies:
                return []
            reply = self._replies.pop(0)
        return list(reply.ljust(REPORT_SIZE, b"\x00")[:max_length])

    def close(self) -> None:
        self.closed = True

    # for tests ----------------------------------------------------------------------------

    def units(self, servo: int) -> float:
        """Where a servo is now."""
        with self._lock:
            return self.servos[servo].position(self._clock(), self.max_speed_units_s)

    def moves(self) -> list[ReceivedPacket]:
        with self._lock:
            return [p for p in self.received if p.command == Command.MOVE]
