"""ArmInterface over ROS 2 topics: the adapter the policy node runs the grasp skill with.

Commands go out as trajectory_msgs/JointTrajectory on the ros2_control JointTrajectoryController
topics; arrival is judged from /joint_states feedback, with timeouts measured in the arm's own
time (the joint states' stamps: simulated time for sim_arm, the driver's clock for a real arm),
never by sleeping. So the same code drives sim_arm or a real arm. The motions and their waits
are q_grasp.joint_feedback.FeedbackArm's; this module connects it to the topics.

The blocking calls (move_arm, move_arm_through, set_gripper) must run in a worker thread while
the node's executor serves its callbacks in another: they wait for joint-state callbacks. Spin
that executor as the node processes do (q_grasp.nodes.runtime: a SingleThreadedExecutor):
rclpy's MultiThreadedExecutor can stall its process for up to a second under a fast joint-state
stream, and the states of a whole short move are then lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from q_grasp.joint_feedback import (
    ArmRestartedError,
    ArmStoppedError,
    ArmTimeoutError,
    FeedbackArm,
    JointFeedback,
    RejectFn,
    RosArmConfig,
)
from q_grasp.messages import stamp_s
from q_grasp.nodes import qos
from q_grasp.nodes.convert import to_duration_msg
from q_grasp.robot_config import RobotConfig

__all__ = ["ArmRestartedError", "ArmStoppedError", "ArmTimeoutError", "RosArm", "RosArmConfig"]


class RosArm(FeedbackArm):
    """A FeedbackArm whose joints live behind ROS topics (sim_arm or a real driver): commands
    go out as trajectories, feedback comes from joint states."""

    def __init__(self, node: Node, robot: RobotConfig | None = None,
                 config: RosArmConfig | None = None, *, stop: threading.Event | None = None,
                 reject: RejectFn | None = None) -> None:
        config = config if config is not None else RosArmConfig()
        feedback = JointFeedback(config, stop=stop, reject=reject,
                                 warn=lambda text: node.get_logger().warn(text))
        super().__init__(robot if robot is not None else RobotConfig(), config, feedback,
                         self._publish)
        self.node = node
        self._arm_pub = node.create_publisher(JointTrajectory, config.arm_trajectory_topic,
                                              qos.COMMAND_QOS)
        self._gripper_pub = node.create_publisher(
            JointTrajectory, config.gripper_trajectory_topic, qos.COMMAND_QOS)
        # Its own callback group: on a multi-threaded executor, feedback flows while others wait.
        node.create_subscription(JointState, config.joint_states_topic, self._on_joint_state,
                                 qos.SENSOR_SUBSCRIBER_QOS,
                                 callback_group=MutuallyExclusiveCallbackGroup())

    def _on_joint_state(self, msg: JointState) -> None:
        stamp = stamp_s(msg)
        if stamp == 0.0:  # unstamped driver: fall back to this node's clock
            stamp = self.node.get_clock().now().nanoseconds * 1e-9
        self.feedback.update(msg.name, msg.position, msg.velocity, stamp)

    def _publish(self, controller: str, names: list[str], points: Sequence[np.ndarray],
                 times_s: Sequence[float]) -> None:
        msg = JointTrajectory(joint_names=list(names))
        msg.points = [JointTrajectoryPoint(positions=[float(v) for v in q],
                                           time_from_start=to_duration_msg(t))
                      for q, t in zip(points, times_s)]
        (self._arm_pub if controller == "arm" else self._gripper_pub).publish(msg)

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
