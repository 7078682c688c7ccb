"""ArmInterface over ROS 2 topics: the adapter the policy node runs the grasp skill with.

Commands go out as trajectory_msgs/JointTrajectory on the ros2_control JointTrajectoryController
topics; arrival is judged from /joint_states feedback, with timeouts measured in the arm's own
time (the joint states' stamps: simulated time for sim_arm, the driver's clock for a real arm),
never by sleeping. So the same code drives sim_arm or a real arm.

The blocking calls (move_arm, move_arm_through, set_gripper) must run in a worker thread while
the node's executor serves its callbacks in another: they wait for joint-state callbacks.
Setting the ``stop`` event (node shutdown) makes every wait raise :class:`ArmStoppedError`, so
a skill in the middle of a motion unwinds at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from q_grasp.joint_feedback import (
    BACKWARDS_TOLERANCE_S,
    ArmRestartedError,
    ArmStoppedError,
    ArmTimeoutError,
    RejectFn,
    RosArmConfig,
)
from q_grasp.nodes import qos
from q_grasp.nodes.convert import stamp_s, to_duration_msg
from q_grasp.robot_config import RobotConfig

__all__ = ["ArmRestartedError", "ArmStoppedError", "ArmTimeoutError", "RosArm", "RosArmConfig"]


class RosArm:
    """An ArmInterface whose joints live behind ROS topics (sim_arm or a real driver)."""

    def __init__(self, node: Node, robot: RobotConfig | None = None,
                 config: RosArmConfig | None = None, *, stop: threading.Event | None = None,
                 reject: RejectFn | None = None) -> None:
        self.node = node
        self.robot = robot if robot is not None else RobotConfig()
        self.config = config if config is not None else RosArmConfig()
        self.arm_joint_names: list[str] = list(self.robot.arm_joint_names)
        self._gripper_names = list(self.robot.gripper_joint_names)
        self._grip_open = np.asarray(self.robot.gripper_open_positions, float)
        self._grip_closed = np.asarray(self.robot.gripper_closed_positions, float)
        self.lower, self.upper = self._limits_from_urdf()
        self._cond = threading.Condition()
        self._positions: dict[str, float] = {}
        self._velocities: dict[str, float] = {}
        self._stamp_s = 0.0
        self._seq = 0
        self._stop = stop if stop is not None else threading.Event()
        self._reject = reject
        self._first_command_monotonic: float | None = None
        self.move_timeouts = 0
        """Moves that did not arrive in time (for diagnostics)."""
        self.stamps_backwards = 0
        """Joint states stamped earlier than the one before (see _went_backwards)."""
        self.last_state_monotonic: float | None = None
        """time.monotonic() of the latest joint state (None before the first)."""
        self._motion_end_s: float | None = None
        self._gripper_sent: bool | None = None  # closed? of the last gripper command sent
        cfg = self.config
        self._arm_pub = node.create_publisher(JointTrajectory, cfg.arm_trajectory_topic,
                                              qos.COMMAND_QOS)
        self._gripper_pub = node.create_publisher(JointTrajectory, cfg.gripper_trajectory_topic,
                                                  qos.COMMAND_QOS)
        # Its own callback group, so feedback keeps flowing while another callback waits.
        node.create_subscription(JointState, cfg.joint_states_topic, self._on_joint_state,
                                 qos.SENSOR_SUBSCRIBER_QOS,
                                 callback_group=MutuallyExclusiveCallbackGroup())

    def _limits_from_urdf(self) -> tuple[np.ndarray, np.ndarray]:
        from q_grasp.kinematics.urdf import parse_urdf

        joints = parse_urdf(self.robot.urdf_path).joints
        lower = np.array([joints[n].lower for n in self.arm_joint_names], float)
        upper = np.array([joints[n].upper for n in self.arm_joint_names], float)
        return lower, upper

    # ----------------------------------------------------------------------------- feedback

    def _on_joint_state(self, msg: JointState) -> None:
        if len(msg.position) != len(msg.name):  # malformed; nothing here is trustworthy
            if self._reject is not None:
                self._reject("joint_states", "size_mismatch",
                             f"{len(msg.name)} names but {len(msg.position)} positions")
            return
        stamp = stamp_s(msg)
        if stamp == 0.0:  # unstamped driver: fall back to this node's clock
            stamp = self.node.get_clock().now().nanoseconds * 1e-9
        has_velocity = len(msg.velocity) == len(msg.name)
        with self._cond:
            dt = stamp - self._stamp_s
            if dt < -BACKWARDS_TOLERANCE_S:
                self._went_backwards(stamp)
            for i, name in enumerate(msg.name):
                position = float(msg.position[i])
                if not math.isfinite(position):
                    if self._reject is not None:
                        self._reject("joint_states", "non_finite", f"{name} = {position}")
                    continue
                if has_velocity and math.isfinite(msg.velocity[i]):
                    self._velocities[name] = float(msg.velocity[i])
                elif name in self._positions and dt > 0:
                    self._velocities[name] = (position - self._positions[name]) / dt
                self._positions[name] = position
            self._stamp_s = stamp
            self._seq += 1
            self.last_state_monotonic = time.monotonic()
            self._cond.notify_all()

    def _went_backwards(self, stamp: float) -> None:
        """Joint states older than the last ones: a restarted driver, or -- when it keeps
        happening -- two arms on one topic (e.g. two simulators in one ROS domain), each obeying
        the other's commands, which makes moves fail in ways that look like timing."""
        self.stamps_backwards += 1
        if self.stamps_backwards in (1, 10, 100, 1000):
            self.node.get_logger().warn(
                f"joint states went back in time ({self._stamp_s:.3f} s -> {stamp:.3f} s; "
                f"{self.stamps_backwards} times so far): a restarted driver, or more than one "
                f"arm publishing on {self.config.joint_states_topic} (give each its own "
                "namespace or ROS_DOMAIN_ID)")

    def wait_for_joint_states(self, timeout_s: float = 10.0) -> bool:
        """Block (wall clock) until every arm and gripper joint has been reported and both
        controllers subscribe to their command topics (a command published before discovery
        completes would be lost)."""
        deadline = time.monotonic() + timeout_s
        names = self.arm_joint_names + self._gripper_names
        with self._cond:
            while not all(n in self._positions for n in names):
                remaining = deadline - time.monotonic()
                if remaining <= 0.0 or self._stop.is_set():
                    return False
                self._cond.wait(min(remaining, 0.1))  # short: a stop request ends the wait
        while time.monotonic() < deadline and not self._stop.is_set():
            if (self._arm_pub.get_subscription_count() > 0
                    and self._gripper_pub.get_subscription_count() > 0):
                return True
            time.sleep(0.02)  # discovery is wall-clock work; nothing to wait on but time
        return False

    def _read(self, names: list[str], table: dict[str, float]) -> np.ndarray:
        with self._cond:
            missing = [n for n in names if n not in table]
            if missing:
                raise ArmTimeoutError(f"no joint state yet for {missing} on "
                                      f"{self.config.joint_states_topic}")
            return np.array([table[n] for n in names])

    def joint_positions(self, names: Sequence[str]) -> np.ndarray:
        """Latest positions of any reported joints, in the order of ``names``."""
        return self._read(list(names), self._positions)

    def read_arm_joints(self) -> np.ndarray:
        """Latest arm joint positions (rad), in ``arm_joint_names`` order."""
        return self._read(self.arm_joint_names, self._positions)

    def gripper_aperture(self) -> float:
        """Distance between the finger pads (m), from the latest gripper joint states."""
        q = self._read(self._gripper_names, self._positions)
        return float(self.robot.gripper_aperture_scale_m * np.mean(q - self._grip_closed))

    def arm_time_s(self) -> float:
        """Stamp of the latest joint state (the arm's clock)."""
        with self._cond:
            return self._stamp_s

    @property
    def restarts(self) -> int:
        """Times the arm's clock went back (see ArmRestartedError)."""
        with self._cond:
            return self.stamps_backwards

    def check_restart(self, restarts: int) -> None:
        """Raise ArmRestartedError if the clock went back since :attr:`restarts` was
        ``restarts``."""
        if self.stamps_backwards != restarts:
            raise ArmRestartedError(f"the arm's clock went back to {self._stamp_s:.3f} s (a "
                                    f"restarted simulator or driver)")

    def _wait(self, done, deadline_s: float) -> bool:
        """Wait for joint states until ``done()`` holds (True) or the arm's clock passes
        ``deadline_s`` or the feedback goes stale (False); ArmRestartedError if the clock
        goes back meanwhile."""
        stale = self.config.stale_timeout_s
        with self._cond:
            restarts = self.stamps_backwards
            while True:
                if self._stop.is_set():
                    raise ArmStoppedError("shutting down")
                self.check_restart(restarts)
                if done():
                    return True
                if self._stamp_s >= deadline_s:
                    return False
                if not self._wait_for_new_state(self._seq):
                    self.node.get_logger().warn(
                        f"no joint states for {stale:.1f} s of wall time; giving up the wait")
                    return False

    def _motion_wait(self, done, deadline_s: float) -> bool:
        """``_wait`` for a commanded motion; records the arm time at which it ended."""
        try:
            return self._wait(done, deadline_s)
        finally:
            with self._cond:
                self._motion_end_s = self._stamp_s

    @property
    def motion_end_s(self) -> float | None:
        """Arm time (joint-state stamp) at which the last move or gripper motion ended, arrived
        or given up; None before the first. (Later joint states may have come since: a settle
        time counted from this one does not grow by the time taken to act on it.)"""
        with self._cond:
            return self._motion_end_s

    def _wait_for_new_state(self, seq: int) -> bool:
        """With the condition held: wait for a joint state after sequence number ``seq``; False
        after stale_timeout_s of wall time without one. Short waits, so that a stop request is
        seen at once (the caller raises)."""
        quiet_since = time.monotonic()
        while self._seq == seq and not self._stop.is_set():
            if time.monotonic() - quiet_since > self.config.stale_timeout_s:
                return False
            self._cond.wait(timeout=0.1)
        return True

    def _next_stamp_s(self, seq: int) -> float:
        """Stamp of the first joint state after sequence number ``seq`` (the latest one when
        none comes in stale_timeout_s of wall time). A command's timeouts start there, not
        at the stamp read before publishing: that one may be old by up to a joint-state
        interval of arm time (with sim_arm's fast still world, seconds of simulated time), and a
        timeout counted from it can end before the motion has started."""
        with self._cond:
            self._wait_for_new_state(seq)
            if self._stop.is_set():
                raise ArmStoppedError("shutting down")
            return self._stamp_s

    def _sequence(self) -> int:
        with self._cond:
            return self._seq

    def wait_until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Wait (arm time) until ``done()``, evaluated with the state lock held after every
        joint state, holds (True) or ``timeout_s`` passes (False). Raises ArmStoppedError."""
        return self._wait(done, self.arm_time_s() + timeout_s)

    def mark_decision(self) -> None:
        """Start a decision-latency measurement: :attr:`first_command_monotonic` becomes the
        wall time of the first command published after this call."""
        self._first_command_monotonic = None

    @property
    def first_command_monotonic(self) -> float | None:
        """time.monotonic() of the first command since :meth:`mark_decision` (None: none yet)."""
        return self._first_command_monotonic

    def _publish(self, publisher, msg: JointTrajectory) -> None:
        if self._first_command_monotonic is None:
            self._first_command_monotonic = time.monotonic()
        publisher.publish(msg)

    # ----------------------------------------------------------------------------- commands

    def _trajectory(self, names: list[str], targets: np.ndarray, duration_s: float
                    ) -> JointTrajectory:
        return self._path_trajectory(names, [targets], [duration_s])

    @staticmethod
    def _path_trajectory(names: list[str], points: Sequence[np.ndarray],
                         times_s: Sequence[float]) -> JointTrajectory:
        msg = JointTrajectory(joint_names=list(names))
        msg.points = [JointTrajectoryPoint(positions=[float(v) for v in q],
                                           time_from_start=to_duration_msg(t))
                      for q, t in zip(points, times_s)]
        return msg

    def _arm_targets(self, joint_targets: np.ndarray) -> np.ndarray:
        q = np.asarray(joint_targets, float).reshape(-1)
        if q.shape[0] != len(self.arm_joint_names):
            raise ValueError(f"joint_targets: expected {len(self.arm_joint_names)} values "
                             f"({self.arm_joint_names}), got {q.shape[0]}")
        if not np.isfinite(q).all():
            raise ValueError("joint_targets: values must be finite")
        return np.clip(q, self.lower, self.upper)

    def move_arm(self, joint_targets: np.ndarray, *, teleport: bool = False) -> bool:
        """Move to ``joint_targets`` (clamped to the URDF limits); True once the joint states
        show the arm there and nearly still, False on timeout. ``teleport`` is ignored: a
        trajectory is the only way to move an arm over ROS."""
        return self.move_arm_through([joint_targets])

    def move_arm_through(self, waypoints: Sequence[np.ndarray]) -> bool:
        """Drive the arm through ``waypoints`` as one multi-point trajectory (the controller
        blends them: no stop at the intermediate ones; one trajectory per waypoint when
        ``blend_waypoints`` is false) and wait at the last; True once the
        joint states show the arm there and nearly still, False on timeout. Every segment
        lasts its largest joint distance at ``max_joint_velocity_rad_s`` (at least
        ``min_move_duration_s``); the timeout is the whole path's duration plus
        ``move_timeout_margin_s``, counted from the first joint state after the command, and
        arrival counts only once the last segment has begun."""
        cfg = self.config
        if len(waypoints) == 0:
            return True
        points = [self._arm_targets(q) for q in waypoints]
        if not cfg.blend_waypoints and len(points) > 1:
            reached = True
            for q in points:
                reached = self.move_arm_through([q])
            return reached
        previous = self.read_arm_joints()
        times: list[float] = []
        elapsed = 0.0
        for q in points:
            elapsed += max(float(np.abs(q - previous).max()) / cfg.max_joint_velocity_rad_s,
                           cfg.min_move_duration_s)
            times.append(elapsed)
            previous = q
        seq = self._sequence()
        self._publish(self._arm_pub, self._path_trajectory(self.arm_joint_names, points, times))
        t0 = self._next_stamp_s(seq)
        names = self.arm_joint_names
        q = points[-1]
        # Arrival counts from the start of the last segment: a path may pass its last point
        # earlier (or start there, like an out-and-back move).
        last_segment_s = t0 + (times[-2] if len(times) > 1 else 0.0)

        def arrived() -> bool:  # called with the condition held
            if self._stamp_s < last_segment_s or any(n not in self._velocities for n in names):
                return False
            return cfg.arm_arrived(self._read(names, self._positions),
                                   self._read(names, self._velocities), q)

        arrived_in_time = self._motion_wait(arrived, t0 + elapsed + cfg.move_timeout_margin_s)
        if not arrived_in_time:
            self.move_timeouts += 1
        return arrived_in_time

    def set_gripper(self, closed: bool) -> float:
        """Close or open the gripper, wait until the fingers stop, return the aperture (m).
        Sends nothing when this arm's last gripper command was the same and the fingers are
        there (within gripper_position_tolerance_m) and still: e.g. the open before a grasp,
        which would cost a round trip while the arm stands."""
        cfg = self.config
        target = self._grip_closed if closed else self._grip_open
        other = self._grip_open if closed else self._grip_closed
        names = self._gripper_names
        start = self._read(names, self._positions)
        tol = cfg.gripper_position_tolerance_m
        if self._gripper_sent == closed and np.abs(start - target).max() < tol:
            with self._cond:
                still = cfg.fingers_settled([self._velocities.get(n, math.inf)
                                             for n in names])
            if still:
                return self.gripper_aperture()
        self._gripper_sent = closed
        seq = self._sequence()
        self._publish(self._gripper_pub, self._trajectory(self._gripper_names, target,
                                                          cfg.gripper_duration_s))
        t0 = self._next_stamp_s(seq)
        # (less a microsecond: stamps are whole nanoseconds, and a driver that counts the
        # same interval in its own clock's steps may land a rounding error short of it)
        settle_from = t0 + max(cfg.gripper_min_settle_s, cfg.gripper_duration_s) - 1e-6
        # Fingers must first move (before the command takes effect they are still too) --
        # except when closing fingers that are already closed on an object (a re-squeeze):
        # they may stay where they are.
        must_move = not closed or bool(np.abs(start - other).max() < tol)

        def settled() -> bool:
            q = np.array([self._positions[n] for n in names])
            if np.abs(q - target).max() < tol:
                return True
            # Stopped short of the target (on an object) counts once they have moved (or
            # at once for a re-squeeze, above).
            if (self._stamp_s < settle_from or any(n not in self._velocities for n in names)
                    or (must_move and np.abs(q - start).max() < tol)):
                return False
            return cfg.fingers_settled(self._read(names, self._velocities))

        self._motion_wait(settled, t0 + cfg.gripper_duration_s + cfg.gripper_timeout_s)
        return self.gripper_aperture()
