"""policy: the actor node. It drives the episodes of a task (``q_grasp.tasks``: observation,
action decoding, reward, episode end - the code the gymnasium envs run) on the arm through its
topics, picks actions with the learning actor (epsilon-greedy), publishes every transition for
the trainer, and swaps in the trainer's weights as they arrive.

Tasks: ``reacher`` (MLP over reach-joint angles and goal; joint steps) and ``grasp`` (U-Net Q-map
over the top-down RGB-D image; pixel + rotation -> grasp through q_grasp.skills.grasp).
Acting runs in a worker thread; subscription callbacks only store data, so nothing that waits
for motion ever blocks them.

Topics (relative names follow the node's namespace; all remappable):
  joint_states                          sensor_msgs/JointState       (in)
  camera/color/image_raw                sensor_msgs/Image rgb8       (in, grasp)
  camera/depth/image_raw                sensor_msgs/Image 32FC1/16UC1 (in, grasp)
  camera/color/camera_info              sensor_msgs/CameraInfo       (in, grasp)
  arm_controller/joint_trajectory       trajectory_msgs/JointTrajectory (out)
  gripper_controller/joint_trajectory   trajectory_msgs/JointTrajectory (out)
  /q_grasp/transitions                  std_msgs/UInt8MultiArray     (out, wire blob; global)
  /q_grasp/weights                      std_msgs/UInt8MultiArray     (in, latched; global)
  q_grasp/q_map                         sensor_msgs/Image rgb8       (out, grasp heat map)
  q_grasp/markers                       visualization_msgs/MarkerArray (out)
  q_grasp/goal                          geometry_msgs/PointStamped   (out)
  /diagnostics                          diagnostic_msgs/DiagnosticArray (out)
Service client: sim_arm/reset_scene (std_srvs/Trigger) at the start of every grasp episode.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import traceback
from typing import Any

import numpy as np
import torch
from geometry_msgs.msg import Point, PointStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, UInt8MultiArray
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from q_grasp.frame_sync import CameraFrame
from q_grasp.learning.visualize import q_map_overlay
from q_grasp.markers import policy_markers
from q_grasp.messages import (
    MessageError,
    camera_info_to_dict,
    color_image_to_numpy,
    depth_image_to_numpy,
    msg_to_blob,
    reset_stamp_s,
    stamp_ns,
)
from q_grasp.node_params.policy import DYNAMIC_PARAMETERS, PolicyConfig
from q_grasp.nodes import qos
from q_grasp.nodes.convert import blob_to_msg, image_msg, node_authenticator
from q_grasp.nodes.diagnostics import ERROR, OK, WARN, Diagnostics
from q_grasp.nodes.params import declare_config
from q_grasp.nodes.ros_arm import ArmRestartedError, ArmStoppedError, RosArm
from q_grasp.nodes.runtime import run_node
from q_grasp.tasks.acting import Acting
from q_grasp.tasks.load import load_task
from q_grasp.wire import (
    TRANSITIONS_SCHEMA,
    TRANSITIONS_TOPIC,
    WEIGHTS_SCHEMA,
    WEIGHTS_TOPIC,
    TransitionBatch,
    WeightsLimits,
    WireError,
    decode_weights,
    encode_transitions,
    network_config_of,
    state_dict_dtypes,
    state_dict_shapes,
)


class PolicyNode(Node):
    """The actor: acts on the arm through topics, publishes transitions, receives weights."""

    def __init__(self, node_name: str = "policy", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._params = declare_config(self, PolicyConfig, dynamic=DYNAMIC_PARAMETERS)
        cfg = self._params.config
        self._auth = node_authenticator(self, cfg.auth_key_file)
        torch.set_num_threads(cfg.torch_threads)
        self.diagnostics = Diagnostics(self, f"q_grasp/{self.get_name()}",
                                       period_s=cfg.diagnostics_period_s, hardware_id=cfg.task)
        self.setup = load_task(cfg.task, experiment_config=cfg.experiment_config,
                               checkpoint=cfg.checkpoint, seed=cfg.seed)
        self._stop = threading.Event()
        # SIGINT shuts the context down before destroy_node runs: stop acting at once.
        self.context.on_shutdown(self._stop.set)
        self.arm = RosArm(self, self.setup.env_config.robot, cfg.arm, stop=self._stop,
                          reject=self.diagnostics.reject)
        actor_id = cfg.actor_id or self.get_fully_qualified_name()
        self.acting = Acting(self.setup, lambda: self.config, self.arm, self,
                             actor_id=actor_id, stop=self._stop)
        q_net = self.setup.q_net
        self._net_config = network_config_of(q_net)
        self._weights_shapes = state_dict_shapes(q_net.state_dict())
        self._weights_dtypes = state_dict_dtypes(q_net.state_dict())
        self._weights_limits = WeightsLimits(max_blob_bytes=cfg.max_weights_bytes,
                                             task=cfg.task)
        self._last_summary = time.monotonic()
        self._feedback_level: bytes | None = None  # what _check_feedback last set
        self._finished = False
        self.create_timer(0.5, self._check_feedback,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._transitions_pub = self.create_publisher(
            UInt8MultiArray, TRANSITIONS_TOPIC,
            qos.transitions_qos(cfg.transitions_queue_depth))
        self._markers_pub = self.create_publisher(MarkerArray, "q_grasp/markers", qos.DEFAULT_QOS)
        self._goal_pub = self.create_publisher(PointStamped, "q_grasp/goal", qos.DEFAULT_QOS)
        self.create_subscription(UInt8MultiArray, WEIGHTS_TOPIC, self._on_weights,
                                 qos.WEIGHTS_QOS, callback_group=MutuallyExclusiveCallbackGroup())
        self.frames = self.acting.frames
        self._q_map_pub = None
        self._reset_client = None
        if self.frames is not None:
            self._init_grasp(cfg)

        self.diagnostics.set(task=cfg.task, mode="train" if cfg.train else "evaluate",
                             weights_version=-1, weights_source=self.setup.source,
                             steps=self.acting.stats.steps, episodes=0)
        self._worker = threading.Thread(target=self._run, name="policy_act", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"policy up: task {cfg.task}, {'training' if cfg.train else 'evaluating'}, "
            f"{q_net.kind} network ({q_net.n_actions} actions) from {self.setup.source}, "
            f"actor id {actor_id}")

    @property
    def config(self) -> PolicyConfig:
        """The current (validated) parameters."""
        return self._params.config

    # ----------------------------------------------------------------------------- set-up

    def _init_grasp(self, cfg: PolicyConfig) -> None:
        self.image_hw = self.frames.image_hw
        sensors = MutuallyExclusiveCallbackGroup()
        sensor_qos = qos.SENSOR_SUBSCRIBER_QOS
        self.create_subscription(Image, "camera/color/image_raw", self._on_color, sensor_qos,
                                 callback_group=sensors)
        self.create_subscription(Image, "camera/depth/image_raw", self._on_depth, sensor_qos,
                                 callback_group=sensors)
        self.create_subscription(CameraInfo, "camera/color/camera_info", self._on_camera_info,
                                 sensor_qos, callback_group=sensors)
        self._q_map_pub = self.create_publisher(Image, "q_grasp/q_map", qos.DEFAULT_QOS)
        if cfg.reset_service:
            self._reset_client = self.create_client(
                Trigger, cfg.reset_service, callback_group=MutuallyExclusiveCallbackGroup())

    # ----------------------------------------------------------------------------- callbacks

    def _on_weights(self, msg: UInt8MultiArray) -> None:
        try:
            blob = self._auth.verify(msg_to_blob(msg, WEIGHTS_SCHEMA),
                                     self._weights_limits.max_blob_bytes)
            weights = decode_weights(blob, self._weights_limits, self._net_config,
                                     expected_shapes=self._weights_shapes,
                                     expected_dtypes=self._weights_dtypes)
        except WireError as exc:
            self.diagnostics.reject("weights", exc.reason, exc.detail)
            return
        if weights.run_id != self.acting.weights_run and self.acting.weights_run:
            self.get_logger().info(f"weights from a new trainer run {weights.run_id} "
                                   f"(version {weights.version})")
        refused = self.acting.take_weights(weights)
        if refused:
            self.diagnostics.reject("weights", "rollback", refused)
            return
        self.diagnostics.count("weights_received")
        self.diagnostics.set(weights_version=weights.version,
                             weights_source=weights.source or "trainer",
                             weights_updates=weights.num_updates)

    def _on_color(self, msg: Image) -> None:
        rgb = self._image(msg, color_image_to_numpy, "color_image")
        if rgb is not None:
            self.frames.set_color(stamp_ns(msg), msg.header.stamp, rgb, msg.header.frame_id)

    def _on_depth(self, msg: Image) -> None:
        depth = self._image(msg, depth_image_to_numpy, "depth_image")
        if depth is not None:
            self.frames.set_depth(stamp_ns(msg), depth)

    def _image(self, msg: Image, to_numpy: Any, source: str) -> np.ndarray | None:
        """The image as an array of the task's size; None (rejected, counted) otherwise."""
        try:
            return to_numpy(msg, self.image_hw)
        except MessageError as exc:
            self.diagnostics.reject(source, exc.reason, exc.detail)
            return None

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            info = camera_info_to_dict(msg)
            h, w = self.image_hw
            if (info["height"], info["width"]) != (h, w):
                raise MessageError("wrong_size", f"camera_info is {info['height']}x"
                                                 f"{info['width']}, expected {h}x{w}")
        except MessageError as exc:
            self.diagnostics.reject("camera_info", exc.reason, exc.detail)
            return
        self.frames.set_intrinsics(info["K"], info["width"], info["height"])

    # ----------------------------------------------------------------------------- acting

    def _run(self) -> None:
        """Worker thread: wait for the arm, then run episodes until shutdown."""
        try:
            acting = self.acting
            if acting.grasp and acting.actor.exploration.use_action_mask:
                seconds = acting.build_reach_table()  # before the first decision
                self.get_logger().info(f"reachability table of the grasp skill built in "
                                       f"{seconds:.1f} s")
            self._wait_for_arm()
            errors = 0
            while not self._stop.is_set():
                cfg = self.config
                if cfg.max_episodes and acting.stats.episodes >= cfg.max_episodes:
                    self._finish()
                    return
                try:
                    if acting.grasp:
                        acting.grasp_episode()
                    else:
                        acting.reach_episode()
                    errors = 0
                except (ArmStoppedError, KeyboardInterrupt):
                    return
                except ArmRestartedError as exc:  # the episode starts over on the new arm
                    self.diagnostics.count("arm_restarts")
                    self.get_logger().warn(f"episode abandoned: {exc}; starting over")
                except Exception as exc:  # keep the node alive; say what went wrong
                    if self._shutting_down():
                        return
                    errors += 1
                    self.diagnostics.count("act_errors")
                    self.diagnostics.set_level(ERROR, f"acting failed: {exc}")
                    self.get_logger().error(f"episode failed ({errors} in a row): {exc}\n"
                                            f"{traceback.format_exc()}")
                    self._stop.wait(min(1.0 * errors, 10.0))
        except ArmStoppedError:
            return
        except Exception:
            # Ctrl-C invalidates the context before its on_shutdown callbacks set the stop
            # flag: a publisher or subscription call in between fails. That is the shutdown.
            if not self._shutting_down():
                raise

    def _check_feedback(self) -> None:
        """/diagnostics WARN, then ERROR, with the reason, while joint states (grasp: camera
        frames) have stopped coming; back to OK when they return."""
        if self._finished:
            return
        cfg = self.config
        oldest = self.acting.feedback_age(time.monotonic(), self.arm.last_state_monotonic)
        if oldest is None:
            return  # not started: _wait_for_arm says so
        what, age = oldest
        level = (ERROR if age >= cfg.feedback_error_s
                 else WARN if age >= cfg.feedback_warn_s else None)
        if level is not None:
            self.diagnostics.set_level(level, f"no {what} for {age:.0f} s (the arm, its driver "
                                              f"or the camera stopped?)")
        elif self._feedback_level is not None:
            self.diagnostics.set_level(OK, "acting")
        self._feedback_level = level

    def _shutting_down(self) -> bool:
        return self._stop.is_set() or not self.context.ok()

    def _wait_for_arm(self) -> None:
        waited = 0.0
        while not self.arm.wait_for_joint_states(timeout_s=5.0):
            if self._stop.is_set():
                raise ArmStoppedError("shutting down")
            waited += 5.0
            self.get_logger().info(f"waiting for joint_states of {self.arm.arm_joint_names} "
                                   f"and the trajectory controllers ({waited:.0f} s)")
            self.diagnostics.set_level(WARN, "waiting for the arm")
        self.diagnostics.set_level(OK, "acting")

    def _finish(self) -> None:
        stats = self.acting.stats
        self.get_logger().info(
            f"done: {stats.episodes} episodes, success rate {stats.success_rate:.3f} over the "
            f"last {min(stats.episodes, self.config.success_window)}, attempt success rate "
            f"{stats.attempt_success_rate:.3f}, mean return {stats.mean_return:.3f}")
        self._finished = True
        self.diagnostics.set_level(OK, "finished")
        self.diagnostics.publish()
        if self.config.shutdown_when_done:
            self.context.try_shutdown()

    # ----------------------------------------------------------------------------- ActingView

    def count(self, key: str) -> None:
        """A diagnostics counter (for Acting)."""
        self.diagnostics.count(key)

    def debug(self, line: str) -> None:
        """A debug log line (for Acting)."""
        self.get_logger().debug(line)

    def send(self, batch: TransitionBatch) -> None:
        """Publish a batch of transitions for the trainer."""
        batch.stamp_ns = self.get_clock().now().nanoseconds
        blob = encode_transitions(batch, checksum=not self._auth.enabled)
        self._transitions_pub.publish(blob_to_msg(self._auth.sign(blob), TRANSITIONS_SCHEMA))
        self.diagnostics.count("transitions_published", len(batch))

    def report(self, values: dict[str, Any], summary: str | None) -> None:
        """Acting's statistics to /diagnostics; the summary line to the log (throttled)."""
        self.diagnostics.set(**values, move_timeouts=self.arm.move_timeouts,
                             joint_state_stamps_backwards=self.arm.stamps_backwards)
        if self._feedback_level is not None:
            pass  # _check_feedback's WARN/ERROR stands until the feedback is back
        elif self.diagnostics.rejected_total() == 0:
            self.diagnostics.set_level(OK, "acting")
        else:
            self.diagnostics.set_level(WARN, "acting; rejected some inputs (see rejected.*)")
        if summary is not None:
            self.get_logger().debug(summary)
            now = time.monotonic()
            if now - self._last_summary >= self.config.log_every_s:
                self._last_summary = now
                self.get_logger().info(summary)

    def can_reset(self) -> bool:
        """A reset service is configured and ready now."""
        return self._reset_client is not None and self._reset_client.service_is_ready()

    def reset_scene(self) -> float | None:
        """Call the reset service (if any) and wait for it: None unless it reported success
        (a failure is counted and logged); else the reset's stamp, -inf when the answer does
        not carry one (messages.reset_stamp_s)."""
        client = self._reset_client
        if client is None:
            return None
        if not client.wait_for_service(timeout_sec=1.0):
            self.diagnostics.count("reset_unavailable")
            self.get_logger().warn(f"reset service {client.srv_name} not available; "
                                   "continuing with the scene as it is",
                                   throttle_duration_sec=30.0)
            return None
        done = threading.Event()
        future = client.call_async(Trigger.Request())
        future.add_done_callback(lambda _: done.set())
        deadline = time.monotonic() + self.config.reset_timeout_s
        while not done.wait(0.1):
            if self._stop.is_set():
                raise ArmStoppedError("shutting down")
            if time.monotonic() > deadline:
                future.cancel()
                self.diagnostics.count("reset_timeouts")
                self.get_logger().warn("scene reset timed out")
                return None
        result = future.result()
        if result is None or not result.success:
            self.diagnostics.count("reset_failures")
            self.get_logger().warn(f"scene reset failed: {result.message if result else '?'}")
            return None
        self.diagnostics.count("resets")
        stamp = reset_stamp_s(result.message)
        return -math.inf if stamp is None else stamp

    # ----------------------------------------------------------------------------- display

    def show_q_map(self, obs: np.ndarray, q_map: np.ndarray, action: tuple[int, int, int],
                   frame: CameraFrame, reachable: np.ndarray | None = None) -> None:
        """The Q-map overlay on q_grasp/q_map, while someone subscribes."""
        if not self.config.publish_q_map or self._q_map_pub.get_subscription_count() == 0:
            return
        picture = q_map_overlay(obs, q_map, self.acting.task.channels, action,
                                scale=self.config.q_map_scale,
                                reachable=None if reachable is None
                                else reachable.reshape(q_map.shape[1:]))
        self._q_map_pub.publish(image_msg(np.ascontiguousarray(picture, np.uint8), "rgb8",
                                          frame.stamp, frame.frame_id))

    def show_markers(self, **markers: Any) -> None:
        """q_grasp.markers.policy_markers(**markers) for rviz and the viewer, while someone
        subscribes."""
        if self._markers_pub.get_subscription_count() == 0:
            return  # drawn for people (rviz); nobody watching, nothing to build
        header = Header(frame_id=self.config.world_frame,
                        stamp=self.get_clock().now().to_msg())
        msg = MarkerArray()
        for spec in policy_markers(**markers):
            marker = Marker(header=header, ns=spec.ns, id=0, type=spec.kind, action=Marker.ADD,
                            text=spec.text, points=[Point(x=x, y=y, z=z)
                                                    for x, y, z in spec.points])
            p, o, s, c = marker.pose.position, marker.pose.orientation, marker.scale, marker.color
            p.x, p.y, p.z = spec.position
            o.x, o.y, o.z, o.w = spec.quaternion
            s.x, s.y, s.z = spec.scale
            c.r, c.g, c.b, c.a = spec.rgba
            msg.markers.append(marker)
        self._markers_pub.publish(msg)

    def show_goal(self, point: np.ndarray, tolerance: float | None) -> None:
        """The goal on q_grasp/goal (and as a marker with its ``tolerance``)."""
        if self._goal_pub.get_subscription_count() > 0:  # (for people, as the markers)
            msg = PointStamped()
            msg.header.frame_id = self.config.world_frame
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.point.x, msg.point.y, msg.point.z = (float(v) for v in point)
            self._goal_pub.publish(msg)
        if tolerance is not None:
            self.show_markers(goal=point, tolerance=tolerance)

    # ----------------------------------------------------------------------------- shutdown

    def destroy_node(self) -> None:
        """Stop the worker (every wait raises on the stop flag) before the node goes away."""
        self._stop.set()
        if self._worker.is_alive():
            self._worker.join(timeout=10.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``policy``."""
    return run_node(PolicyNode, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
