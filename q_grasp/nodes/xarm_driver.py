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

import sys
import threading
from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from q_grasp.hardware.xarm_controller import XArmController
from q_grasp.messages import accepted_trajectory
from q_grasp.node_params.xarm_driver import XArmDriverConfig
from q_grasp.nodes import qos
from q_grasp.nodes.convert import joint_state_msg
from q_grasp.nodes.diagnostics import Diagnostics
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
        self.xarm = XArmController(cfg, self.diagnostics, self._publish_joints)
        if not self.xarm.joints.calibrated:
            self.get_logger().warn("no calibration_file: using uncalibrated defaults (servo "
                                   "centre = joint zero); calibrate before trusting positions")
        self._joint_pub = self.create_publisher(JointState, "joint_states",
                                                qos.JOINT_STATES_PUBLISHER_QOS)
        commands = MutuallyExclusiveCallbackGroup()
        for controller in ("arm", "gripper"):
            self.create_subscription(
                JointTrajectory, f"{controller}_controller/joint_trajectory",
                lambda m, c=controller: self._on_trajectory(m, c), qos.COMMAND_QOS,
                callback_group=commands)
        self.context.on_shutdown(self.xarm.stop.set)
        self.xarm.connect()
        self._thread = threading.Thread(target=self.xarm.run, name="xarm_driver", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"xarm_driver up: device {cfg.device}, servos {self.xarm.joints.servo_ids}, reads "
            f"at {cfg.read_rate_hz:g} Hz, "
            f"{'calibration ' + cfg.calibration_file if cfg.calibration_file else 'uncalibrated'}")

    # ----------------------------------------------------------------------------- topics

    def _publish_joints(self, names: list[str], positions: np.ndarray) -> None:
        self._joint_pub.publish(joint_state_msg(names, positions,
                                                stamp=self.get_clock().now().to_msg()))

    def _on_trajectory(self, msg: JointTrajectory, controller: str) -> None:
        source = f"{controller}_trajectory"
        limits = self.xarm.limits(controller)
        if not msg.points and msg.joint_names and all(n in limits[0] for n in msg.joint_names):
            self.xarm.hold(controller)  # as ros2_control: an empty trajectory stops and holds
            self.diagnostics.count(f"accepted.{source}")
            return
        trajectory = accepted_trajectory(msg, limits, self.diagnostics.reject, source,
                                         tolerance=self._config.limit_tolerance,
                                         max_points=self._config.max_trajectory_points)
        if trajectory is None:
            return
        if self.xarm.play(controller, trajectory):
            self.diagnostics.reject(source, "no_state", "no position read from the board yet")
            return
        self.diagnostics.count(f"accepted.{source}")

    def destroy_node(self) -> None:
        self.xarm.close(self._thread)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``xarm_driver``."""
    return run_node(XArmDriverNode, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
