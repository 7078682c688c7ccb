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

import dataclasses
import math
import sys
import threading
import time
import traceback
from typing import Any

import numpy as np
import torch
from geometry_msgs.msg import Point, PointStamped
from gymnasium.utils import seeding as gym_seeding
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import UInt8MultiArray
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from q_grasp.frame_sync import CameraFrame, FrameSync, FrameTimeouts
from q_grasp.learning.agent import Actor
from q_grasp.learning.visualize import q_map_overlay
from q_grasp.node_params.policy import DYNAMIC_PARAMETERS, PolicyConfig
from q_grasp.nodes import qos
from q_grasp.nodes.convert import (
    MessageError,
    blob_to_msg,
    camera_info_to_dict,
    color_image_to_numpy,
    depth_image_to_numpy,
    image_msg,
    msg_to_blob,
    node_authenticator,
    stamp_ns,
)
from q_grasp.nodes.diagnostics import ERROR, OK, WARN, Diagnostics
from q_grasp.nodes.params import declare_config
from q_grasp.nodes.ros_arm import ArmRestartedError, ArmStoppedError, ArmTimeoutError, RosArm
from q_grasp.nodes.runtime import run_node
from q_grasp.tasks.episodes import (
    DecisionLatency,
    EpisodeStats,
    Transition,
    TransitionBatcher,
)
from q_grasp.tasks.grasp import GraspTask, table_looks_empty
from q_grasp.tasks.load import load_task, make_task
from q_grasp.tasks.names import is_grasp_task
from q_grasp.tasks.reach import ReachTask
from q_grasp.tasks.shaping import RewardShaping, shaping_terms
from q_grasp.wire import (
    TRANSITIONS_SCHEMA,
    TRANSITIONS_TOPIC,
    WEIGHTS_SCHEMA,
    WEIGHTS_TOPIC,
    WeightsLimits,
    WireError,
    decode_weights,
    encode_transitions,
    state_dict_dtypes,
    state_dict_shapes,
)

RESET_HOME_WAIT_S = 0.5
"""Longest wait (arm time) for joint states that show the arm home after a scene reset
(skip_release_before_reset); then it is sent home."""


def _yaw_quaternion(yaw: float) -> tuple[float, float, float, float]:
    return 0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)


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
        env_cfg = self.setup.env_config
        if cfg.task == "reacher" and cfg.goal_tolerance_m > 0.0:
            env_cfg = dataclasses.replace(env_cfg, goal_tolerance_m=cfg.goal_tolerance_m)
            self.setup.env_config = env_cfg
        self.robot = env_cfg.robot
        self.task: ReachTask | GraspTask = make_task(cfg.task, env_cfg)
        q_net = self.setup.q_net
        exploration, total = cfg.exploration(self.setup.experiment)
        self.actor = Actor(q_net, exploration, total, seed=cfg.seed)
        self._net_config = dict(q_net.config)
        self._weights_shapes = state_dict_shapes(q_net.state_dict())
        self._weights_dtypes = state_dict_dtypes(q_net.state_dict())
        self._weights_limits = WeightsLimits(max_blob_bytes=cfg.max_weights_bytes,
                                             task=cfg.task)
        self._weights_version = -1
        self._weights_run = ""
        start_step = 0
        if cfg.resume_exploration and cfg.train:
            start_step = int(self.setup.counters.get("env_steps", 0))
        self.stats = EpisodeStats(cfg.success_window, initial_steps=start_step)
        actor_id = cfg.actor_id or self.get_fully_qualified_name()
        self._batcher = TransitionBatcher(cfg.task, actor_id, q_net.n_actions,
                                          cfg.transition_batch_size)
        self._latency = DecisionLatency()
        self._last_summary = time.monotonic()
        self._stop = threading.Event()
        # SIGINT shuts the context down before destroy_node runs: stop acting at once.
        self.context.on_shutdown(self._stop.set)

        self.arm = RosArm(self, self.robot, cfg.arm, stop=self._stop,
                          reject=self.diagnostics.reject)
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

        self.frames: FrameSync | None = None
        self._q_map_pub = None
        self._reset_client = None
        if is_grasp_task(cfg.task):
            self._init_grasp(cfg)
        else:
            self.task.check_workspace()
            # The goal stream ReacherEnv(seed=seed) draws.
            self._goal_rng = gym_seeding.np_random(cfg.seed)[0]

        self.diagnostics.set(task=cfg.task, mode="train" if cfg.train else "evaluate",
                             weights_version=-1, weights_source=self.setup.source,
                             steps=self.stats.steps, episodes=0)
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
        env_cfg = self.setup.env_config
        # A colour-only camera: the table plane stands in for depth.
        self._table_plane = getattr(env_cfg, "depth_source", "camera") == "table_plane"
        self.chain = self.task.chain
        self.channels = self.task.channels
        self.image_hw = (self.task.height, self.task.width)
        self.n_rotations = self.task.num_rotations
        task_camera = env_cfg.camera_config()
        camera_pose = (tuple(cfg.camera_position_m or task_camera.position),
                       tuple(cfg.camera_target_m or task_camera.target),
                       tuple(cfg.camera_up_vector or task_camera.up_vector))
        self.frames = FrameSync(
            self.image_hw, camera_pose, max_skew_s=cfg.max_stamp_skew_s, stop=self._stop,
            table_depth=(lambda camera: self.task.depth(camera, None)) if self._table_plane
            else None)
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
        if weights.run_id == self._weights_run and weights.version <= self._weights_version:
            # Within one run of the trainer versions only grow: this is a replay.
            self.diagnostics.reject("weights", "rollback", (
                f"version {weights.version} from {weights.source!r} (run {weights.run_id}) is "
                f"not newer than the version {self._weights_version} in use"))
            return
        own = self.actor.q_net.state_dict()
        # Convert every tensor before touching the network, so that the swap below cannot
        # fail half way: the network holds either the old weights or the new ones.
        state = {k: v.to(dtype=own[k].dtype) for k, v in weights.state_dict.items()}
        with self.actor.lock:
            self.actor.q_net.load_state_dict(state)
            self._weights_version = weights.version
        if weights.run_id != self._weights_run:
            if self._weights_run:
                self.get_logger().info(f"weights from a new trainer run {weights.run_id} "
                                       f"(version {weights.version})")
            self._weights_run = weights.run_id
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
            if is_grasp_task(self.config.task) and self.actor.exploration.use_action_mask:
                self._build_reach_table()  # before the first decision
            self._wait_for_arm()
            errors = 0
            while not self._stop.is_set():
                cfg = self.config
                if cfg.max_episodes and self.stats.episodes >= cfg.max_episodes:
                    self._finish()
                    return
                try:
                    if is_grasp_task(cfg.task):
                        self._grasp_episode()
                    else:
                        self._reacher_episode()
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
        now = time.monotonic()
        ages = {}
        if self.arm.last_state_monotonic is not None:
            ages["joint states"] = now - self.arm.last_state_monotonic
        color_s = None if self.frames is None else self.frames.last_color_monotonic
        if color_s is not None:
            ages["camera frames"] = now - color_s
        if not ages:
            return  # not started: _wait_for_arm says so
        what, age = max(ages.items(), key=lambda item: item[1])
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
            self.get_logger().info(f"waiting for joint_states of {self.robot.arm_joint_names} "
                                   f"and the trajectory controllers ({waited:.0f} s)")
            self.diagnostics.set_level(WARN, "waiting for the arm")
        self.diagnostics.set_level(OK, "acting")

    def _finish(self) -> None:
        stats = self.stats
        self.get_logger().info(
            f"done: {stats.episodes} episodes, success rate {stats.success_rate:.3f} over the "
            f"last {min(stats.episodes, self.config.success_window)}, attempt success rate "
            f"{stats.attempt_success_rate:.3f}, mean return {stats.mean_return:.3f}")
        self._finished = True
        self.diagnostics.set_level(OK, "finished")
        self.diagnostics.publish()
        if self.config.shutdown_when_done:
            self.context.try_shutdown()

    def _epsilon(self) -> float:
        cfg = self.config
        exploration, total = cfg.exploration(self.setup.experiment)
        if not cfg.train:
            return exploration.eval_epsilon
        self.actor.set_exploration(exploration, total)  # (ros2 param set may change it)
        return self.actor.exploration_value(self.stats.steps)

    def _q_values(self, obs: np.ndarray) -> np.ndarray:
        with self.actor.lock:
            return self.actor.q_net.predict_q(obs)

    def _record(self, transition: Transition, latency_ms: float | None, epsilon: float) -> None:
        done = transition.terminated or transition.truncated
        self.stats.record_step(transition.reward, transition.is_success, done)
        cfg = self.config
        if cfg.train:
            batch = self._batcher.add(transition, self._weights_version)
            if batch is not None:
                batch.stamp_ns = self.get_clock().now().nanoseconds
                blob = encode_transitions(batch, checksum=not self._auth.enabled)
                msg = blob_to_msg(self._auth.sign(blob), TRANSITIONS_SCHEMA)
                self._transitions_pub.publish(msg)
                self.diagnostics.count("transitions_published", len(batch))
        grasp = is_grasp_task(cfg.task)
        values = self.stats.values(attempts=grasp)
        values.update(epsilon=epsilon, weights_version=self._weights_version,
                      move_timeouts=self.arm.move_timeouts,
                      joint_state_stamps_backwards=self.arm.stamps_backwards)
        if latency_ms is not None:
            values.update(self._latency.add(latency_ms))
        self.diagnostics.set(**values)
        if self._feedback_level is not None:
            pass  # _check_feedback's WARN/ERROR stands until the feedback is back
        elif self.diagnostics.rejected_total() == 0:
            self.diagnostics.set_level(OK, "acting")
        else:
            self.diagnostics.set_level(WARN, "acting; rejected some inputs (see rejected.*)")
        if done:
            line = (self.stats.summary_line(attempts=grasp)
                    + f", epsilon {epsilon:.3f}, weights v{self._weights_version}")
            self.get_logger().debug(line)
            now = time.monotonic()
            if now - self._last_summary >= cfg.log_every_s:
                self._last_summary = now
                self.get_logger().info(line)

    # ----------------------------------------------------------------------------- reacher

    def _reacher_episode(self) -> None:
        cfg, task = self.config, self.task
        current = self.arm.read_arm_joints()
        here = np.clip(current, task.chain.lower, task.chain.upper)
        episode = task.new_episode(
            self._goal_rng, reach_q=None if cfg.start_pose == "random" else here[task.reach_index],
            max_steps=self.setup.max_episode_steps)
        tolerance = task.config.goal_tolerance_m
        self._publish_goal(episode.goal, tolerance)
        if cfg.start_pose == "random":
            self.arm.move_arm(episode.start_q)
            episode.target = episode.start_q.copy()
        else:
            episode.target = here
        state = task.measure(self.arm.read_arm_joints(), episode)
        # Training shapes rewards as the CLI's wrappers do (learning.tasks.add_shaping).
        experiment = self.setup.experiment
        shaping = RewardShaping(shaping_terms(experiment.env, experiment.dqn.gamma)
                                if cfg.train else [])
        shaping.reset(state.info)
        while True:
            epsilon = self._epsilon()
            received = time.monotonic()
            self.arm.mark_decision()
            action = self.actor.act(state.observation, epsilon=epsilon)
            next_state, reward, terminated, truncated = task.step(self.arm, episode, action)
            first = self.arm.first_command_monotonic
            latency = None if first is None else (first - received) * 1e3
            reward = shaping.step(reward, next_state.info, terminated)
            self._record(Transition(state.observation, action, reward, next_state.observation,
                                    terminated, truncated, next_state.success), latency, epsilon)
            self._publish_markers(goal=episode.goal, tolerance=tolerance, ee=next_state.ee)
            if terminated or truncated or self._stop.is_set():
                return
            state = next_state

    # ----------------------------------------------------------------------------- grasp

    def _reset_scene(self) -> bool:
        """Call the reset service; True when it reported success."""
        client = self._reset_client
        if client is None:
            return False
        if not client.wait_for_service(timeout_sec=1.0):
            self.diagnostics.count("reset_unavailable")
            self.get_logger().warn(f"reset service {client.srv_name} not available; "
                                   "continuing with the scene as it is",
                                   throttle_duration_sec=30.0)
            return False
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
                return False
        result = future.result()
        if result is None or not result.success:
            self.diagnostics.count("reset_failures")
            self.get_logger().warn(f"scene reset failed: {result.message if result else '?'}")
            return False
        self.diagnostics.count("resets")
        return True

    def _wait_for_frame(self, after_s: float) -> CameraFrame:
        """The first complete colour + depth frame stamped at or after ``after_s`` (arm
        clock); ArmTimeoutError after frame_timeout_s (FrameSync.wait)."""
        cfg = self.config
        try:
            return self.frames.wait(after_s, self.arm, FrameTimeouts(
                cfg.frame_timeout_s, cfg.frame_timeout_min_wall_s,
                cfg.arm.stale_timeout_s + cfg.frame_timeout_s))
        except ArmTimeoutError:
            self.diagnostics.count("frame_timeouts")
            raise

    def _settled_frame(self, after_motion: bool = False) -> tuple[np.ndarray, CameraFrame]:
        """The first frame stamped settle_time_s (arm clock) after now -- or, ``after_motion``,
        after the end of the arm's last motion -- and its observation. (One wait: the frame's
        stamp says that the time has passed, so no joint state need say it first.)"""
        since = self.arm.motion_end_s if after_motion else None
        if since is None:
            since = self.arm.arm_time_s()
        frame = self._wait_for_frame(since + self.config.settle_time_s)
        return self.task.observation(frame.rgb, frame.heightmap), frame

    def _grasp_episode(self) -> None:
        from q_grasp.skills.grasp import GraspOutcome

        cfg = self.config
        self.actor.new_episode()
        reset = self._reset_scene()
        home = np.asarray(self.robot.home_positions, float)

        def at_home() -> bool:
            return bool(np.abs(self.arm.read_arm_joints() - home).max()
                        <= cfg.arm.joint_tolerance_rad)

        # After a reset (arm home) the joint states may still show the arm where the last
        # episode left it: wait for the reset's before deciding to move.
        if reset and cfg.skip_release_before_reset:
            self.arm.assume_gripper_open()
            if not at_home():
                self.arm.wait_until(at_home, RESET_HOME_WAIT_S)
        if not at_home():
            self.arm.move_arm(home)  # out of the camera's view
        obs, frame = self._settled_frame()
        h, w = self.image_hw
        attempts = 0
        place = np.asarray(cfg.place_joint_positions, float)
        if place.size and place.size != len(self.robot.arm_joint_names):
            raise ValueError(f"place_joint_positions: expected {len(self.robot.arm_joint_names)}"
                             f" values, got {place.size}")

        # A success that ends the episode is left to the reset (skip_release_before_reset) --
        # only while the reset service is there to undo it (not on an arm without one).
        client = self._reset_client
        leave_to_reset = (cfg.skip_release_before_reset and cfg.terminate_on_success
                          and client is not None and not place.size)
        left = [False]  # carry_away left this attempt's success to the reset

        def carry_away(outcome: GraspOutcome) -> bool:
            if outcome.success and place.size:
                self.arm.move_arm(place)
            left[0] = bool(outcome.success and leave_to_reset and client.service_is_ready())
            return left[0]

        while not self._stop.is_set():
            left[0] = False
            epsilon = self._epsilon()
            self.arm.mark_decision()
            q = self._q_values(obs)
            allowed = self._reachable_actions(frame)
            action = self.actor.act_on_q_values(q, epsilon, allowed)
            target = self.task.grasp_target(frame.camera, frame.depth, action)
            cell = (target.rotation, target.row, target.col)
            if cfg.publish_q_map and self._q_map_pub.get_subscription_count() > 0:
                self._publish_q_map(obs, q.reshape(self.n_rotations, h, w), cell, frame,
                                    None if allowed is None else allowed[:h * w])
            if target.has_depth:
                self._publish_markers(grasp=(target.point_m, target.yaw_rad))
                self._publish_goal(target.point_m, None)
            else:  # nothing to aim at: an unsuccessful attempt
                self.diagnostics.count("grasp_no_depth")
            outcome = self.task.execute(self.arm, target, home, after_lift=carry_away)
            if target.has_depth:
                self._publish_markers(grasp=(target.point_m, target.yaw_rad),
                                      outcome=(target.point_m, outcome))
            first = self.arm.first_command_monotonic
            latency = None if first is None else (first - frame.received_monotonic) * 1e3
            if not outcome.ik_success:
                self.diagnostics.count("grasp_ik_failures")
            attempts += 1
            if left[0]:
                # Terminal: no TD target reads next_obs, and the arm still blocks the view.
                next_obs, next_frame = obs, frame
                terminated, truncated = True, False
            else:
                next_obs, next_frame = self._settled_frame(after_motion=True)
                # (a colour-only camera cannot tell an empty table: attempts end the episode)
                empty = (not self._table_plane
                         and table_looks_empty(next_frame.heightmap, cfg.empty_table_height_m))
                terminated, truncated = self.task.episode_end(
                    outcome.success, empty, attempts, cfg.terminate_on_success,
                    self.setup.max_episode_steps)
                truncated = truncated or (not terminated and self.task.nothing_graspable(
                    next_frame.camera, next_frame.depth))
            self._record(Transition(obs, action, self.task.reward(outcome), next_obs,
                                    terminated, truncated, bool(outcome.success)),
                         latency, epsilon)
            self.actor.record_outcome(action, bool(outcome.success), terminated or truncated)
            self.get_logger().debug(f"grasp at pixel ({target.row}, {target.col}) rotation "
                                    f"{target.rotation}: {outcome.message}")
            if terminated or truncated:
                return
            obs, frame = next_obs, next_frame

    def _build_reach_table(self) -> None:
        """Build the arm's top-down reachability (from the IK: seconds) before acting."""
        start = time.monotonic()
        _ = self.task.reach
        self.get_logger().info(f"reachability table of the grasp skill built in "
                               f"{time.monotonic() - start:.1f} s")

    def _reachable_actions(self, frame: CameraFrame) -> np.ndarray | None:
        """Flat bool mask of the grasps the arm can reach in this frame (None: the experiment
        switched the mask off, or nothing is reachable)."""
        if not self.actor.exploration.use_action_mask:
            return None
        mask = self.task.action_mask(frame.camera, frame.depth)
        if not mask.any():
            self.diagnostics.count("grasp_nothing_reachable")
        return self.actor.allowed_actions(mask)

    # ----------------------------------------------------------------------------- display

    def _publish_q_map(self, obs: np.ndarray, q_map: np.ndarray, action: tuple[int, int, int],
                       frame: CameraFrame, reachable: np.ndarray | None = None) -> None:
        picture = q_map_overlay(obs, q_map, self.channels, action,
                                scale=self.config.q_map_scale,
                                reachable=None if reachable is None
                                else reachable.reshape(q_map.shape[1:]))
        self._q_map_pub.publish(image_msg(np.ascontiguousarray(picture, np.uint8), "rgb8",
                                          frame.stamp, frame.frame_id))

    def _marker(self, ns: str, kind: int, position: np.ndarray, scale: tuple[float, ...],
                rgba: tuple[float, ...], yaw: float = 0.0) -> Marker:
        marker = Marker(ns=ns, id=0, type=kind, action=Marker.ADD)
        marker.header.frame_id = self.config.world_frame
        marker.header.stamp = self.get_clock().now().to_msg()
        p = marker.pose.position
        p.x, p.y, p.z = (float(v) for v in position)
        o = marker.pose.orientation
        o.x, o.y, o.z, o.w = _yaw_quaternion(yaw)
        marker.scale.x, marker.scale.y, marker.scale.z = (float(s) for s in scale)
        c = marker.color
        c.r, c.g, c.b, c.a = (float(v) for v in rgba)
        return marker

    def _publish_markers(self, *, goal: np.ndarray | None = None, tolerance: float = 0.01,
                         ee: np.ndarray | None = None,
                         grasp: tuple[np.ndarray, float] | None = None,
                         outcome: tuple[np.ndarray, Any] | None = None) -> None:
        if self._markers_pub.get_subscription_count() == 0:
            return  # drawn for people (rviz); nobody watching, nothing to build
        markers = MarkerArray()
        if goal is not None:
            size = 2.0 * max(tolerance, 0.005)
            markers.markers.append(self._marker("goal", Marker.SPHERE, goal, (size,) * 3,
                                                (0.1, 0.8, 0.2, 0.6)))
        if ee is not None:
            markers.markers.append(self._marker("end_effector", Marker.SPHERE, ee, (0.01,) * 3,
                                                (0.2, 0.4, 1.0, 0.9)))
        if grasp is not None:
            point, yaw = grasp
            # The bar lies along the finger closing direction (cos yaw, sin yaw, 0), the arrow
            # shows the top-down approach ending at the grasp point.
            markers.markers.append(self._marker("grasp", Marker.CUBE, point, (0.06, 0.006, 0.006),
                                                (1.0, 0.5, 0.0, 0.9), yaw))
            arrow = Marker(ns="grasp_approach", id=0, type=Marker.ARROW, action=Marker.ADD)
            arrow.header = markers.markers[-1].header
            arrow.points = [Point(x=float(point[0]), y=float(point[1]), z=float(point[2]) + 0.06),
                            Point(x=float(point[0]), y=float(point[1]), z=float(point[2]))]
            arrow.pose.orientation.w = 1.0
            arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.004, 0.008, 0.01
            arrow.color.r, arrow.color.g, arrow.color.b, arrow.color.a = 1.0, 0.5, 0.0, 0.9
            markers.markers.append(arrow)
        if outcome is not None:  # text over the grasp point: "success: ..." or "failure: ..."
            point, result = outcome
            text = self._marker("grasp_outcome", Marker.TEXT_VIEW_FACING, point, (0.02,) * 3,
                                (0.1, 0.8, 0.2, 0.9) if result.success else (0.9, 0.1, 0.1, 0.9))
            text.text = f"{'success' if result.success else 'failure'}: {result.message}"
            markers.markers.append(text)
        self._markers_pub.publish(markers)

    def _publish_goal(self, point: np.ndarray, tolerance: float | None) -> None:
        if self._goal_pub.get_subscription_count() > 0:  # (for people, as the markers)
            msg = PointStamped()
            msg.header.frame_id = self.config.world_frame
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.point.x, msg.point.y, msg.point.z = (float(v) for v in point)
            self._goal_pub.publish(msg)
        if tolerance is not None:
            self._publish_markers(goal=point, tolerance=tolerance)

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
