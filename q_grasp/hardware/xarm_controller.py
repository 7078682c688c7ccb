"""The xArm board as a trajectory controller, without ROS: the connection (a missing board is
retried), position reads at a fixed rate, trajectories played by streaming one timed MOVE per
segment, a hold that stops joints where they are, and the tracking error. The xarm_driver node
feeds it validated trajectories and publishes what it reads.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import numpy as np

from q_grasp.hardware.health import Health
from q_grasp.hardware.xarm import XArmBoard, XArmError, open_hid_device
from q_grasp.hardware.xarm_joints import XArmJoints
from q_grasp.motion import SegmentStream, Trajectory
from q_grasp.node_params.xarm_driver import XArmDriverConfig

CONTROLLERS = ("arm", "gripper")


class XArmController:
    """One board behind the driver node (see the module docstring). ``publish(names,
    positions)`` gets every successful read; ``health`` every problem."""

    def __init__(self, config: XArmDriverConfig, health: Health,
                 publish: Callable[[list[str], np.ndarray], None]) -> None:
        self.config, self.health, self._publish = config, health, publish
        self.joints = XArmJoints(config.robot, config.calibration_file)
        self.calibration = self.joints.calibration
        self.board: XArmBoard | None = None
        self._positions: dict[str, float] | None = None  # last read, joint name -> rad or m
        self._last_read_s: float | None = None
        self._streams: dict[str, SegmentStream | None] = dict.fromkeys(CONTROLLERS)
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self._wake = threading.Event()
        self._next_connect_s = 0.0

    def limits(self, controller: str) -> tuple[dict[str, float], dict[str, float]]:
        """Lower and upper limits of the joints ``controller`` ("arm", "gripper") commands."""
        return self.joints.arm_limits if controller == "arm" else self.joints.gripper_limits

    # ----------------------------------------------------------------------------- board

    def connect(self) -> None:
        """Open the board (the fake one for device fake); a failure is reported and retried
        after reconnect_every_s."""
        cfg = self.config
        self._next_connect_s = time.monotonic() + cfg.reconnect_every_s
        try:
            if cfg.device == "fake":
                from q_grasp.hardware.fake_board import FakeXArmBoard

                device = FakeXArmBoard(self.joints.servo_ids,
                                       initial_units=self.joints.home_units(),
                                       max_speed_units_s=cfg.fake_max_speed_units_s)
            else:
                device = open_hid_device(cfg.serial_number)
        except XArmError as exc:
            self.health.error(str(exc), log=True)
            self.health.count("connect_failures")
            return
        self.board = XArmBoard(device, read_timeout_ms=round(cfg.read_timeout_s * 1000))
        self.health.ok("connected")

    def _read(self) -> bool:
        try:
            units = self.board.read_positions(self.joints.servo_ids)
        except (XArmError, OSError) as exc:
            self.health.count("read_failures")
            self.health.warn(f"position read failed: {exc}")
            if isinstance(exc, OSError):  # unplugged: reopen later
                self.board = None
            return False
        positions = self.joints.positions(units)
        with self._lock:
            self._positions = positions
        self._last_read_s = time.monotonic()
        names = self.joints.arm_names + self.joints.gripper_names
        self._publish(names, np.array([positions[n] for n in names]))
        self._track(positions)
        return True

    def _track(self, positions: dict[str, float]) -> None:
        """Tracking error: read positions against the trajectory's setpoint now."""
        stream = self._streams["arm"]
        if stream is None:
            return
        setpoint = stream.setpoint(time.monotonic())
        names = stream.path.joint_names
        error = max(abs(positions[n] - setpoint[i]) for i, n in enumerate(names))
        self.health.set(tracking_error_rad=round(error, 4))

    # ----------------------------------------------------------------------------- commands

    def play(self, controller: str, trajectory: Trajectory) -> str:
        """Start playing ``trajectory`` (validated) on ``controller``; "" when started, else
        the rejection reason ("no_state": nothing read from the board yet)."""
        with self._lock:
            current = self._positions
            if current is None:
                return "no_state"
            start = np.array([current[n] for n in trajectory.joint_names])
            self._streams[controller] = SegmentStream(trajectory, start, time.monotonic())
        self._wake.set()
        return ""

    def hold(self, controller: str) -> None:
        """Stop ``controller``'s joints where they are (ros2_control's empty trajectory)."""
        with self._lock:
            self._streams[controller] = None
            current = self._positions
        if current is None or self.board is None:
            return
        names = self.joints.arm_names if controller == "arm" else self.joints.gripper_names
        self._send(names, np.array([current[n] for n in names]), 0.0)

    def _send(self, names: tuple[str, ...] | list[str], positions: np.ndarray,
              duration_s: float) -> None:
        try:
            self.board.move(self.joints.servo_targets(names, positions), duration_s)
            self.health.count("moves_sent")
        except (XArmError, OSError) as exc:
            self.health.count("write_failures")
            self.health.warn(f"MOVE failed: {exc}")

    def _play_due(self, now: float) -> None:
        for controller in CONTROLLERS:
            with self._lock:
                stream = self._streams[controller]
            if stream is None:
                continue
            for positions, duration in stream.due(now):
                self._send(stream.path.joint_names, positions, duration)
            if stream.done and now - stream.t0 > stream.path.duration_s + 1.0:
                with self._lock:
                    if self._streams[controller] is stream:
                        self._streams[controller] = None

    # ----------------------------------------------------------------------------- loop

    def _next_segment_s(self) -> float:
        with self._lock:
            streams = [s for s in self._streams.values() if s is not None]
        return min((s.next_due_s for s in streams), default=math.inf)

    def run(self) -> None:
        """Read, play and reconnect until :meth:`close` (the driver's thread)."""
        cfg = self.config
        period = 1.0 / cfg.read_rate_hz
        next_read = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if self.board is None:
                if now >= self._next_connect_s:
                    self.connect()
                self.stop.wait(0.1)
                continue
            self._play_due(now)
            if now >= next_read:
                next_read = max(next_read + period, now)
                if self._read():
                    self.health.ok("connected")
            if self._last_read_s is not None and now - self._last_read_s > cfg.stale_after_s:
                self.health.error(f"no position read from the board for "
                                  f"{now - self._last_read_s:.1f} s")
            wait = min(next_read, self._next_segment_s()) - time.monotonic()
            if wait > 0:
                self._wake.wait(wait)
                self._wake.clear()

    def close(self, thread: threading.Thread | None = None) -> None:
        """Stop the loop (joining ``thread``), switch the servos off if configured, close."""
        self.stop.set()
        self._wake.set()
        if thread is not None and thread.is_alive():
            thread.join(timeout=5.0)
        board = self.board
        if board is not None:
            try:
                if self.config.power_off_on_shutdown:
                    board.power_off(self.joints.servo_ids)
                board.close()
            except (XArmError, OSError):
                pass
