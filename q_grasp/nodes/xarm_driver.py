"""xarm_driver: the real NURO arm (xArm servo board over USB HID) behind the same topics as
sim_arm, so that the policy drives it unchanged.

Publishes ``joint_states`` (the URDF's joint names, radians; the two finger joints in metres
through the gripper calibration), stamped, at ``read_rate_hz``. Takes
``arm_controller/joint_trajectory`` and ``gripper_controller/joint_trajectory`` with sim_arm's
validation and rejection counters, and plays each trajectory by streaming one timed MOVE per
segment; a trajectory with no points stops the joints it names where they are. Read failures,
stale reads and tracking error go to ``/diagnostics``; a missing board is retried, never fatal.
``device: fake`` runs the same driver against q_grasp.hardware.fake_board (no arm needed).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from q_grasp.hardware.xarm import XArmBoard, XArmError, open_hid_device
from q_grasp.hardware.xarm_joints import XArmJoints
from q_grasp.messages import accepted_trajectory
from q_grasp.motion import SegmentStream
from q_grasp.node_params.xarm_driver import XArmDriverConfig
from q_grasp.nodes import qos
from q_grasp.nodes.convert import joint_state_msg
from q_grasp.nodes.diagnostics import ERROR, OK, WARN, Diagnostics
from q_grasp.nodes.params import declare_config
from q_grasp.nodes.runtime import run_node


class XArmDriverNode(Node):
    """The driver node (see the module docstring)."""

    def __init__(self, node_name: str = "xarm_driver", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        cfg = declare_config(self, XArmDriverConfig).config
        self._config = cfg
        self.diagnostics = Diagnostics(self, f"q_grasp/{self.get_name()}",
                                       hardware_id=f"xarm:{cfg.device}")
        self.joints = XArmJoints(cfg.robot, cfg.calibration_file)
        self.calibration = self.joints.calibration
        if not self.joints.calibrated:
            self.get_logger().warn("no calibration_file: using uncalibrated defaults (servo "
                                   "centre = joint zero); calibrate before trusting positions")

        self.board: XArmBoard | None = None
        self._positions: dict[str, float] | None = None  # last read, joint name -> rad or m
        self._last_read_s: float | None = None
        self._streams: dict[str, SegmentStream | None] = {"arm": None, "gripper": None}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._next_connect_s = 0.0

        self._joint_pub = self.create_publisher(JointState, "joint_states",
                                                qos.JOINT_STATES_PUBLISHER_QOS)
        commands = MutuallyExclusiveCallbackGroup()
        self.create_subscription(JointTrajectory, "arm_controller/joint_trajectory",
                                 lambda m: self._on_trajectory(m, "arm"), qos.COMMAND_QOS,
                                 callback_group=commands)
        self.create_subscription(JointTrajectory, "gripper_controller/joint_trajectory",
                                 lambda m: self._on_trajectory(m, "gripper"), qos.COMMAND_QOS,
                                 callback_group=commands)
        self.context.on_shutdown(self._stop.set)
        self._connect()
        self._thread = threading.Thread(target=self._loop, name="xarm_driver", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"xarm_driver up: device {cfg.device}, servos {self.joints.servo_ids}, reads at "
            f"{cfg.read_rate_hz:g} Hz, "
            f"{'calibration ' + cfg.calibration_file if cfg.calibration_file else 'uncalibrated'}")

    # ----------------------------------------------------------------------------- board

    def _connect(self) -> None:
        cfg = self._config
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
            self.diagnostics.set_level(ERROR, str(exc))
            self.diagnostics.count("connect_failures")
            self.get_logger().error(str(exc), throttle_duration_sec=30.0)
            return
        self.board = XArmBoard(device, read_timeout_ms=round(cfg.read_timeout_s * 1000))
        self.diagnostics.set_level(OK, "connected")

    def _read(self) -> bool:
        board = self.board
        try:
            units = board.read_positions(self.joints.servo_ids)
        except (XArmError, OSError) as exc:
            self.diagnostics.count("read_failures")
            self.diagnostics.set_level(WARN, f"position read failed: {exc}")
            if isinstance(exc, OSError):  # unplugged: reopen later
                self.board = None
            return False
        positions = self.joints.positions(units)
        with self._lock:
            self._positions = positions
        self._last_read_s = time.monotonic()
        names = self.joints.arm_names + self.joints.gripper_names
        self._joint_pub.publish(joint_state_msg(
            names, np.array([positions[n] for n in names]),
            stamp=self.get_clock().now().to_msg()))
        self._track(positions)
        return True

    def _track(self, positions: dict[str, float]) -> None:
        """Tracking error: read positions against the trajectory's setpoint now."""
        now = time.monotonic()
        stream = self._streams["arm"]
        if stream is None:
            return
        setpoint = stream.setpoint(now)
        names = stream.path.joint_names
        error = max(abs(positions[n] - setpoint[i]) for i, n in enumerate(names))
        self.diagnostics.set(tracking_error_rad=round(error, 4))

    # ----------------------------------------------------------------------------- commands

    def _on_trajectory(self, msg: JointTrajectory, controller: str) -> None:
        source = f"{controller}_trajectory"
        limits = self.joints.arm_limits if controller == "arm" else self.joints.gripper_limits
        if not msg.points and msg.joint_names and all(n in limits[0] for n in msg.joint_names):
            self._hold(controller)  # as ros2_control: an empty trajectory stops and holds
            self.diagnostics.count(f"accepted.{source}")
            return
        trajectory = accepted_trajectory(msg, limits, self.diagnostics.reject, source,
                                         tolerance=self._config.limit_tolerance,
                                         max_points=self._config.max_trajectory_points)
        if trajectory is None:
            return
        with self._lock:
            current = self._positions
        if current is None:
            self.diagnostics.reject(source, "no_state", "no position read from the board yet")
            return
        start = np.array([current[n] for n in trajectory.joint_names])
        with self._lock:
            self._streams[controller] = SegmentStream(trajectory, start, time.monotonic())
        self._wake.set()
        self.diagnostics.count(f"accepted.{source}")

    def _hold(self, controller: str) -> None:
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
            self.diagnostics.count("moves_sent")
        except (XArmError, OSError) as exc:
            self.diagnostics.count("write_failures")
            self.diagnostics.set_level(WARN, f"MOVE failed: {exc}")

    def _play(self, now: float) -> None:
        for controller in ("arm", "gripper"):
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

    def _loop(self) -> None:
        cfg = self._config
        period = 1.0 / cfg.read_rate_hz
        next_read = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if self.board is None:
                if now >= self._next_connect_s:
                    self._connect()
                self._stop.wait(0.1)
                continue
            self._play(now)
            if now >= next_read:
                next_read = max(next_read + period, now)
                if self._read():
                    self.diagnostics.set_level(OK, "connected")
            if self._last_read_s is not None and now - self._last_read_s > cfg.stale_after_s:
                self.diagnostics.set_level(
                    ERROR, f"no position read from the board for {now - self._last_read_s:.1f}"
                           f" s")
            wait = min(next_read, self._next_segment_s()) - time.monotonic()
            if wait > 0:
                self._wake.wait(wait)
                self._wake.clear()

    # ----------------------------------------------------------------------------- shutdown

    def destroy_node(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        board = self.board
        if board is not None:
            try:
                if self._config.power_off_on_shutdown:
                    board.power_off(self.joints.servo_ids)
                board.close()
            except (XArmError, OSError):
                pass
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``xarm_driver``."""
    return run_node(XArmDriverNode, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
