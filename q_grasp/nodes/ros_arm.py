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
    ArmRestartedError,
    ArmStoppedError,
    ArmTimeoutError,
    JointFeedback,
    RejectFn,
    RosArmConfig,
)
from q_grasp.nodes import qos
from q_grasp.nodes.convert import stamp_s, to_duration_msg
from q_grasp.robot_config import RobotConfig

__all__ = ["ArmRestartedError", "ArmStoppedError", "ArmTimeoutError", "RosArm", "RosArmConfig"]


class RosArm:
    """An ArmInterface whose joints live behind ROS topics (sim_arm or a real driver): commands
    go out as trajectories, and every wait is the ROS-free :class:`JointFeedback`'s."""

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
        self.feedback = JointFeedback(self.config, stop=stop, reject=reject,
                                      warn=lambda text: node.get_logger().warn(text))
        self._first_command_monotonic: float | None = None
        self.move_timeouts = 0
        """Moves that did not arrive in time (for diagnostics)."""
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
        stamp = stamp_s(msg)
        if stamp == 0.0:  # unstamped driver: fall back to this node's clock
            stamp = self.node.get_clock().now().nanoseconds * 1e-9
        self.feedback.update(msg.name, msg.position, msg.velocity, stamp)

    def wait_for_joint_states(self, timeout_s: float = 10.0) -> bool:
        """Block (wall clock) until every arm and gripper joint has been reported and both
        controllers subscribe to their command topics (a command published before discovery
        completes would be lost)."""
        deadline = time.monotonic() + timeout_s
        if not self.feedback.wait_for_joints(self.arm_joint_names + self._gripper_names,
                                             timeout_s):
            return False
        while time.monotonic() < deadline and not self.feedback.stop.is_set():
            if (self._arm_pub.get_subscription_count() > 0
                    and self._gripper_pub.get_subscription_count() > 0):
                return True
            time.sleep(0.02)  # discovery is wall-clock work; nothing to wait on but time
        return False

    def joint_positions(self, names: Sequence[str]) -> np.ndarray:
        """Latest positions of any reported joints, in the order of ``names``."""
        return self.feedback.read(list(names))

    def read_arm_joints(self) -> np.ndarray:
        """Latest arm joint positions (rad), in ``arm_joint_names`` order."""
        return self.feedback.read(self.arm_joint_names)

    def gripper_aperture(self) -> float:
        """Distance between the finger pads (m), from the latest gripper joint states."""
        q = self.feedback.read(self._gripper_names)
        return float(self.robot.gripper_aperture_scale_m * np.mean(q - self._grip_closed))

    def arm_time_s(self) -> float:
        """Stamp of the latest joint state (the arm's clock)."""
        return self.feedback.arm_time_s()

    @property
    def restarts(self) -> int:
        """Times the arm's clock went back (see ArmRestartedError)."""
        return self.feedback.restarts

    def check_restart(self, restarts: int) -> None:
        """Raise ArmRestartedError if the clock went back since :attr:`restarts` was
        ``restarts``."""
        self.feedback.check_restart(restarts)

    @property
    def stamps_backwards(self) -> int:
        """Joint states stamped earlier than the one before."""
        return self.feedback.stamps_backwards

    @property
    def last_state_monotonic(self) -> float | None:
        """time.monotonic() of the latest joint state (None before the first)."""
        return self.feedback.last_state_monotonic

    @property
    def motion_end_s(self) -> float | None:
        """Arm time at which the last move or gripper motion ended (JointFeedback's)."""
        return self.feedback.motion_end_s

    def _motion_wait(self, done: Callable[[], bool], deadline_s: float) -> bool:
        return self.feedback.motion_wait(done, deadline_s)

    def wait_until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Wait (arm time) until ``done()``, evaluated with the state lock held after every
        joint state, holds (True) or ``timeout_s`` passes (False). Raises ArmStoppedError."""
        return self.feedback.wait(done, self.arm_time_s() + timeout_s)

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
        times = self.config.path_times_s(self.read_arm_joints(), points)
        seq = self.feedback.sequence()
        self._publish(self._arm_pub, self._path_trajectory(self.arm_joint_names, points, times))
        t0 = self.feedback.next_stamp_s(seq)
        # Arrival counts from the start of the last segment: a path may pass its last point
        # earlier (or start there, like an out-and-back move).
        last_segment_s = t0 + (times[-2] if len(times) > 1 else 0.0)

        def arrived() -> bool:  # called with the condition held
            return self.feedback.arm_arrived(self.arm_joint_names, points[-1], last_segment_s)

        arrived_in_time = self._motion_wait(arrived, t0 + times[-1] + cfg.move_timeout_margin_s)
        if not arrived_in_time:
            self.move_timeouts += 1
        return arrived_in_time

    def assume_gripper_open(self) -> None:
        """The gripper was opened by something other than this arm's commands (a simulator's
        scene reset): the next open sends nothing when the joint states show the fingers open
        and still (as after an open command of its own)."""
        self._gripper_sent = False

    def set_gripper(self, closed: bool) -> float:
        """Close or open the gripper, wait until the fingers stop, return the aperture (m).
        Sends nothing when this arm's last gripper command was the same and the fingers are
        there (within gripper_position_tolerance_m) and still: e.g. the open before a grasp,
        which would cost a round trip while the arm stands."""
        cfg = self.config
        target = self._grip_closed if closed else self._grip_open
        other = self._grip_open if closed else self._grip_closed
        names = self._gripper_names
        start = self.feedback.read(names)
        tol = cfg.gripper_position_tolerance_m
        if self._gripper_sent == closed and np.abs(start - target).max() < tol:
            with self.feedback.cond:
                still = cfg.fingers_settled([self.feedback.velocities.get(n, math.inf)
                                             for n in names])
            if still:
                return self.gripper_aperture()
        self._gripper_sent = closed
        seq = self.feedback.sequence()
        self._publish(self._gripper_pub, self._trajectory(self._gripper_names, target,
                                                          cfg.gripper_duration_s))
        t0 = self.feedback.next_stamp_s(seq)
        # (less a microsecond: stamps are whole nanoseconds, and a driver that counts the
        # same interval in its own clock's steps may land a rounding error short of it)
        settle_from = t0 + max(cfg.gripper_min_settle_s, cfg.gripper_duration_s) - 1e-6
        # Fingers must first move (before the command takes effect they are still too) --
        # except when closing fingers that are already closed on an object (a re-squeeze):
        # they may stay where they are.
        must_move = not closed or bool(np.abs(start - other).max() < tol)

        def settled() -> bool:  # called with the condition held
            return self.feedback.fingers_done(names, target, start, settle_from, must_move)

        self._motion_wait(settled, t0 + cfg.gripper_duration_s + cfg.gripper_timeout_s)
        return self.gripper_aperture()
