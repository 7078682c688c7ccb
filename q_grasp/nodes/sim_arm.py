"""sim_arm: the pybullet NURO arm presented the way a ROS 2 driver presents a real arm.

Publishes /joint_states, RGB and depth images with CameraInfo, /robot_description (latched),
/clock on simulated time and /diagnostics; executes ros2_control-style JointTrajectory commands
with physics; offers ~/reset_scene and ~/spawn_scene. Physics runs in a worker thread paced to
``real_time_factor`` (0 = as fast as possible); subscriptions and services only hand work to it,
so a long motion never blocks a callback.

Topics (all remappable, relative names follow the node's namespace):
  joint_states                          sensor_msgs/JointState        every movable joint
  camera/color/image_raw                sensor_msgs/Image rgb8
  camera/color/camera_info              sensor_msgs/CameraInfo
  camera/depth/image_raw                sensor_msgs/Image 32FC1 (m)   aligned with color
  camera/depth/camera_info              sensor_msgs/CameraInfo
  robot_description                     std_msgs/String               transient local
  /clock                                rosgraph_msgs/Clock           when publish_clock
  /diagnostics                          diagnostic_msgs/DiagnosticArray
  ~/object_poses                        geometry_msgs/PoseArray       ground truth (evaluation)
  /tf_static                            world->base_link, world->camera optical frame, when
                                        tf2_msgs is installed (ROS 2 installs; not the venv)
Subscriptions: arm_controller/joint_trajectory, gripper_controller/joint_trajectory.
Services: ~/reset_scene, ~/spawn_scene (std_srvs/Trigger).
"""

from __future__ import annotations

import sys
import threading
import traceback
from pathlib import Path

import numpy as np
from geometry_msgs.msg import Pose, PoseArray, TransformStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from q_grasp.kinematics.camera import quaternion_xyzw
from q_grasp.messages import RESET_STAMP_PREFIX, accepted_trajectory
from q_grasp.node_params.sim_arm import DYNAMIC_PARAMETERS, SimArmConfig
from q_grasp.nodes import qos
from q_grasp.nodes.convert import (
    camera_info_msg,
    image_msg,
    joint_state_msg,
    time_msg_s,
    to_time_msg,
)
from q_grasp.nodes.diagnostics import ERROR, OK, WARN, Diagnostics
from q_grasp.nodes.params import declare_config
from q_grasp.nodes.runtime import run_node
from q_grasp.sim.arm_loop import Messages, SimArmLoop
from q_grasp.sim.controller import TrajectoryFollower


class SimArmNode(Node):
    """The simulated arm, camera and objects as a ROS 2 driver."""

    def __init__(self, node_name: str = "sim_arm", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self._params = declare_config(self, SimArmConfig, dynamic=DYNAMIC_PARAMETERS,
                                      on_change=self._on_parameters_changed)
        cfg = self._params.config
        self._config = cfg
        self.diagnostics = Diagnostics(self, f"q_grasp/{self.get_name()}",
                                       hardware_id="pybullet")

        self.loop = SimArmLoop(cfg, publish=self._publish_messages,
                               count=self.diagnostics.count, publish_clock=cfg.publish_clock,
                               report=self._report_rate)
        self.sim, self.robot, self.camera = self.loop.sim, self.loop.robot, self.loop.camera
        self.scene, self.arm, self.gripper = self.loop.scene, self.loop.arm, self.loop.gripper
        rc = cfg.robot
        self._arm_limits = self.robot.joint_limits(rc.arm_joint_names)
        self._gripper_limits = self.robot.joint_limits(rc.gripper_joint_names)

        # Publishers. Sensor streams are reliable so that every subscriber QoS matches.
        self._joint_pub = self.create_publisher(JointState, "joint_states",
                                                qos.JOINT_STATES_PUBLISHER_QOS,
                                                qos_overriding_options=qos.QOS_OVERRIDES)
        image_qos = dict(qos_profile=qos.IMAGE_PUBLISHER_QOS,
                         qos_overriding_options=qos.QOS_OVERRIDES)
        self._color_pub = self.create_publisher(Image, "camera/color/image_raw", **image_qos)
        self._color_info_pub = self.create_publisher(CameraInfo, "camera/color/camera_info",
                                                     **image_qos)
        self._depth_pub = self._depth_info_pub = None
        if cfg.publish_depth:
            self._depth_pub = self.create_publisher(Image, "camera/depth/image_raw",
                                                    **image_qos)
            self._depth_info_pub = self.create_publisher(
                CameraInfo, "camera/depth/camera_info", **image_qos)
        self._description_pub = self.create_publisher(String, "robot_description",
                                                      qos.LATCHED_QOS)
        self._clock_pub = (self.create_publisher(Clock, "/clock", qos.CLOCK_QOS)
                           if cfg.publish_clock else None)
        self._truth_pub = (self.create_publisher(PoseArray, "~/object_poses", qos.DEFAULT_QOS)
                           if cfg.publish_ground_truth else None)
        self._camera_info = camera_info_msg(self.camera.camera_info())
        self._tf_static_pub = None

        # Commands and services in their own callback groups: a slow reset never delays a
        # trajectory, and neither ever waits for physics (they only hand over work).
        commands = MutuallyExclusiveCallbackGroup()
        services = MutuallyExclusiveCallbackGroup()
        self.create_subscription(JointTrajectory, "arm_controller/joint_trajectory",
                                 self._on_arm_trajectory, qos.COMMAND_QOS,
                                 callback_group=commands)
        self.create_subscription(JointTrajectory, "gripper_controller/joint_trajectory",
                                 self._on_gripper_trajectory, qos.COMMAND_QOS,
                                 callback_group=commands)
        self.create_service(Trigger, "~/reset_scene", self._on_reset_scene,
                            callback_group=services)
        self.create_service(Trigger, "~/spawn_scene", self._on_spawn_scene,
                            callback_group=services)

        self._publish_robot_description(rc.urdf_path)
        self._publish_static_transforms()
        if cfg.spawn_on_start:
            self.loop.spawn()
        self.diagnostics.set(objects=len(self.scene.object_ids))

        # SIGINT shuts the context down before destroy_node runs: stop publishing at once.
        self.context.on_shutdown(self.loop.shutdown)
        self._warn_if_uncapped(cfg)
        self._thread = threading.Thread(target=self._physics_loop, name="sim_arm_physics",
                                        daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"sim_arm up: {len(self.robot.movable_joint_names)} joints, camera "
            f"{self.camera.width}x{self.camera.height} at {cfg.camera_rate_hz} Hz, real-time "
            f"factor {cfg.real_time_factor or 'unlimited'}, "
            f"{self._stamps_description(cfg)}")

    # ----------------------------------------------------------------------------- set-up

    @staticmethod
    def _stamps_description(cfg: SimArmConfig) -> str:
        if cfg.publish_clock:
            return "publishing /clock"
        return "simulated-time stamps" if cfg.sim_time_stamps else "node-clock stamps"

    def _publish_robot_description(self, urdf_path: str) -> None:
        self._description_pub.publish(String(data=Path(urdf_path).read_text()))

    def _publish_static_transforms(self) -> None:
        try:  # tf2_msgs comes with ROS 2 installs; the pip-only venv does not need TF.
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self.get_logger().info("tf2_msgs not installed: not publishing /tf_static")
            return
        cfg = self._config
        stamp = self._stamp(self.loop.sim_time_s)
        base = TransformStamped()
        base.header.stamp, base.header.frame_id = stamp, cfg.world_frame
        base.child_frame_id = cfg.robot.base_link
        (base.transform.translation.x, base.transform.translation.y,
         base.transform.translation.z) = (float(v) for v in cfg.robot.base_position)
        yaw = cfg.robot.base_yaw_rad
        base.transform.rotation.z, base.transform.rotation.w = np.sin(yaw / 2), np.cos(yaw / 2)
        position, rotation = self.camera.world_pose()
        cam = TransformStamped()
        cam.header.stamp, cam.header.frame_id = stamp, cfg.world_frame
        cam.child_frame_id = cfg.camera.frame_id
        (cam.transform.translation.x, cam.transform.translation.y,
         cam.transform.translation.z) = (float(v) for v in position)
        (cam.transform.rotation.x, cam.transform.rotation.y, cam.transform.rotation.z,
         cam.transform.rotation.w) = quaternion_xyzw(rotation)
        self._tf_static_pub = self.create_publisher(TFMessage, "/tf_static", qos.LATCHED_QOS)
        self._tf_static_pub.publish(TFMessage(transforms=[base, cam]))

    # ----------------------------------------------------------------------------- callbacks

    def _on_parameters_changed(self, config: SimArmConfig, names: list[str]) -> None:
        self._config = config
        self.loop.reconfigure(config)
        self.get_logger().info(f"parameters changed: {', '.join(names)}")
        self._warn_if_uncapped(config)

    def _warn_if_uncapped(self, cfg: SimArmConfig) -> None:
        warning = cfg.uncapped_warning()
        if warning:
            self.get_logger().warn(warning)

    def _on_trajectory(self, msg: JointTrajectory, follower: TrajectoryFollower,
                       limits: tuple[dict[str, float], dict[str, float]], source: str) -> None:
        trajectory = accepted_trajectory(msg, limits, self.diagnostics.reject, source,
                                         tolerance=self._config.limit_tolerance,
                                         max_points=self._config.max_trajectory_points)
        if trajectory is None:
            return
        self.loop.submit(follower, trajectory)
        self.diagnostics.count(f"accepted.{source}")

    def _on_arm_trajectory(self, msg: JointTrajectory) -> None:
        self._on_trajectory(msg, self.arm, self._arm_limits, "arm_trajectory")

    def _on_gripper_trajectory(self, msg: JointTrajectory) -> None:
        self._on_trajectory(msg, self.gripper, self._gripper_limits, "gripper_trajectory")

    def _on_reset_scene(self, request: Trigger.Request, response: Trigger.Response
                        ) -> Trigger.Response:
        try:
            objects = self.loop.reset()
        except Exception as exc:  # a failed reset is reported to the caller, never fatal
            response.success, response.message = False, f"reset failed: {exc}"
            self.diagnostics.count("reset_failures")
            return response
        self.diagnostics.count("resets")
        self.diagnostics.set(objects=len(objects))
        response.success = True
        # The reset's stamp (the clock of this node's messages) lets a policy tell frames of
        # the new scene from frames published before it (messages.reset_stamp_s).
        response.message = (f"arm at home, {len(objects)} objects spawned; "
                            f"{RESET_STAMP_PREFIX}{time_msg_s(self._stamp(self.loop.reset_time_s)):.9f}")
        return response

    def _on_spawn_scene(self, request: Trigger.Request, response: Trigger.Response
                        ) -> Trigger.Response:
        try:
            objects = self.loop.spawn()
        except Exception as exc:
            response.success, response.message = False, f"spawn failed: {exc}"
            self.diagnostics.count("spawn_failures")
            return response
        self.diagnostics.count("spawns")
        self.diagnostics.set(objects=len(objects))
        response.success, response.message = True, f"{len(objects)} objects spawned"
        return response

    # ----------------------------------------------------------------------------- physics

    def _stamp(self, sim_time_s: float):
        if self._config.publish_clock or self._config.sim_time_stamps:
            return to_time_msg(sim_time_s)
        return self.get_clock().now().to_msg()

    def _publish_messages(self, messages: Messages) -> None:
        """What one iteration of the physics loop publishes, with one stamp."""
        stamp = self._stamp(messages.sim_time_s)
        if messages.clock:
            self._clock_pub.publish(Clock(clock=stamp))
        if messages.joints is not None:
            names, position, velocity, effort = messages.joints
            self._joint_pub.publish(joint_state_msg(names, position, velocity, effort, stamp))
        if messages.frame is not None:
            self._publish_camera(messages.frame, stamp, messages.poses)

    def _physics_loop(self) -> None:
        try:
            self.loop.run()
        except Exception as exc:
            if self.loop.stop.is_set() or not self.context.ok():
                return  # shutting down: publishers may already be gone
            # Keep the node alive (services, diagnostics) and say why physics stopped.
            self.get_logger().error(f"physics loop stopped: {exc}\n{traceback.format_exc()}")
            self.diagnostics.set_level(ERROR, f"physics loop stopped: {exc}")

    def _publish_camera(self, frame: tuple[np.ndarray, np.ndarray], stamp, poses) -> None:
        rgb, depth = frame
        frame_id = self._config.camera.frame_id
        self._camera_info.header.stamp, self._camera_info.header.frame_id = stamp, frame_id
        self._color_pub.publish(image_msg(rgb, "rgb8", stamp, frame_id))
        self._color_info_pub.publish(self._camera_info)
        if self._depth_pub is not None:
            self._depth_pub.publish(image_msg(depth, "32FC1", stamp, frame_id))
            self._depth_info_pub.publish(self._camera_info)
        self.diagnostics.count("camera_frames")
        if (poses is not None and self._truth_pub is not None
                and self._truth_pub.get_subscription_count() > 0):  # (evaluation, rviz)
            msg = PoseArray()
            msg.header.stamp, msg.header.frame_id = stamp, self._config.world_frame
            for position, quat in poses.values():
                pose = Pose()
                pose.position.x, pose.position.y, pose.position.z = (float(v) for v in position)
                (pose.orientation.x, pose.orientation.y, pose.orientation.z,
                 pose.orientation.w) = (float(v) for v in quat)
                msg.poses.append(pose)
            self._truth_pub.publish(msg)

    def _report_rate(self) -> None:
        """Diagnostics of the physics loop (called by it every few hundred iterations)."""
        values, slow = self.loop.rate_report()
        self.diagnostics.set(**values)
        if self.diagnostics.rejected_total() == 0:
            self.diagnostics.set_level(OK, "running")
        elif slow:
            self.diagnostics.set_level(WARN, "slower than the requested real-time factor")
        else:
            self.diagnostics.set_level(WARN, "rejected some commands (see rejected.*)")

    # ----------------------------------------------------------------------------- shutdown

    def destroy_node(self) -> None:
        """Stop the physics thread before the publishers it uses go away, then the sim."""
        self.loop.shutdown()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self.loop.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``sim_arm``."""
    return run_node(SimArmNode, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
