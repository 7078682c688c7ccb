"""The policy's episodes outside gymnasium: a task (q_grasp.tasks) driven on an arm that is not
simulated in this process, with the learning actor's choices, and the actor's bookkeeping
(episode statistics, transitions batched for the trainer, decision latency, weights version).

The host (the policy node) supplies the arm (RosArm), the camera frames (a FrameSync it feeds)
and an :class:`ActingView` for what leaves the process: transition batches, diagnostics, the
scene reset and the pictures drawn for people. Nothing here needs ROS.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from gymnasium.utils import seeding as gym_seeding

from q_grasp.frame_sync import CameraFrame, FrameSync, FrameTimeouts
from q_grasp.joint_feedback import ArmTimeoutError
from q_grasp.learning.agent import Actor
from q_grasp.tasks.episodes import DecisionLatency, EpisodeStats, Transition, TransitionBatcher
from q_grasp.tasks.grasp import GraspTarget, GraspTask, table_looks_empty
from q_grasp.tasks.load import TaskSetup, make_task
from q_grasp.tasks.names import is_grasp_task
from q_grasp.tasks.reach import ReachTask
from q_grasp.tasks.shaping import RewardShaping, shaping_terms
from q_grasp.wire import TransitionBatch
from q_grasp.wire.weights import WeightsMessage

RESET_HOME_WAIT_S = 0.5
"""Longest wait (arm time) for joint states that show the arm home after a scene reset
(skip_release_before_reset); then it is sent home."""


class ActingView(Protocol):
    """What acting hands to its host."""

    def count(self, key: str) -> None:
        """Add one to a diagnostics counter."""

    def reset_scene(self) -> float | None:
        """Ask for a fresh scene (the start of a grasp episode); None unless one came (never
        raises on failure), else the arm-clock time of the reset (-inf: not known)."""

    def can_reset(self) -> bool:
        """A scene reset is available now (a success may then be left to it)."""

    def send(self, batch: TransitionBatch) -> None:
        """Send a full batch of transitions to the trainer."""

    def report(self, values: dict[str, Any], summary: str | None) -> None:
        """Statistics after a step; ``summary``: the progress line after an episode."""

    def show_goal(self, point: np.ndarray, tolerance: float | None) -> None:
        """A goal (the Reacher's, with its tolerance) or a grasp point (None)."""

    def show_markers(self, **markers: Any) -> None:
        """goal + tolerance, ee, grasp=(point, yaw), outcome=(point, GraspOutcome)."""

    def show_q_map(self, obs: np.ndarray, q_map: np.ndarray, cell: tuple[int, int, int],
                   frame: CameraFrame, reachable: np.ndarray | None) -> None:
        """The Q-map of a grasp decision, with the chosen cell and the reachable pixels."""

    def debug(self, line: str) -> None:
        """A debug log line."""


class ActingArm(Protocol):
    """The ArmInterface acting drives, with the arm's clock and the decision-latency mark
    (RosArm has them)."""

    def read_arm_joints(self) -> np.ndarray: ...
    def move_arm(self, joint_targets: np.ndarray) -> bool: ...
    def wait_until(self, done: Callable[[], bool], timeout_s: float) -> bool: ...
    def assume_gripper_open(self) -> None: ...
    def arm_time_s(self) -> float: ...
    def mark_decision(self) -> None: ...
    @property
    def first_command_monotonic(self) -> float | None: ...
    @property
    def motion_end_s(self) -> float | None: ...


class Acting:
    """One actor's episodes of ``setup.task`` on ``arm`` (see the module docstring).

    ``config()`` returns the current policy parameters (q_grasp.node_params.policy; some
    change at run time); ``stop`` ends every wait.
    """

    def __init__(self, setup: TaskSetup, config: Callable[[], Any], arm: ActingArm,
                 view: ActingView, *, actor_id: str, stop: threading.Event) -> None:
        cfg = config()
        self.setup, self.config, self.arm, self.view = setup, config, arm, view
        self.stop = stop
        if cfg.task == "reacher" and cfg.goal_tolerance_m > 0.0:
            setup.env_config = dataclasses.replace(setup.env_config,
                                                   goal_tolerance_m=cfg.goal_tolerance_m)
        self.robot = setup.env_config.robot
        self.task: ReachTask | GraspTask = make_task(cfg.task, setup.env_config)
        self.grasp = is_grasp_task(cfg.task)
        q_net = setup.q_net
        if not cfg.train and hasattr(q_net, "use_eval_smoothing"):
            q_net.use_eval_smoothing()  # a greedy evaluation acts as `q_grasp eval` does
        exploration, total = cfg.exploration(setup.experiment)
        self.actor = Actor(q_net, exploration, total, seed=cfg.seed)
        start_step = 0
        if cfg.resume_exploration and cfg.train:
            start_step = int(setup.counters.get("env_steps", 0))
        self.stats = EpisodeStats(cfg.success_window, initial_steps=start_step)
        self.batcher = TransitionBatcher(cfg.task, actor_id, q_net.n_actions,
                                         cfg.transition_batch_size)
        self.latency = DecisionLatency()
        self.weights_version = -1
        self.weights_run = ""
        self.frames: FrameSync | None = None
        if self.grasp:
            self.frames = self._frame_sync(cfg, stop)
        else:
            self.task.check_workspace()
            self._goal_rng = gym_seeding.np_random(cfg.seed)[0]  # ReacherEnv(seed=seed)'s goals

    def _frame_sync(self, cfg: Any, stop: threading.Event) -> FrameSync:
        # A colour-only camera: the table plane stands in for depth.
        self.table_plane = getattr(self.setup.env_config, "depth_source",
                                   "camera") == "table_plane"
        task = self.task
        camera = self.setup.env_config.camera_config()
        pose = (tuple(cfg.camera_position_m or camera.position),
                tuple(cfg.camera_target_m or camera.target),
                tuple(cfg.camera_up_vector or camera.up_vector))
        return FrameSync((task.height, task.width), pose, max_skew_s=cfg.max_stamp_skew_s,
                         stop=stop, table_depth=(lambda cam: task.depth(cam, None))
                         if self.table_plane else None)

    # ----------------------------------------------------------------------------- state

    def take_weights(self, weights: WeightsMessage) -> str:
        """Load the trainer's weights; "" when taken, else why not (a replay: within one run
        of the trainer versions only grow)."""
        if weights.run_id == self.weights_run and weights.version <= self.weights_version:
            return (f"version {weights.version} from {weights.source!r} (run {weights.run_id})"
                    f" is not newer than the version {self.weights_version} in use")
        own = self.actor.q_net.state_dict()
        # Convert every tensor before touching the network, so that the swap below cannot
        # fail half way: the network holds either the old weights or the new ones.
        state = {k: v.to(dtype=own[k].dtype) for k, v in weights.state_dict.items()}
        with self.actor.lock:
            self.actor.q_net.load_state_dict(state)
            self.weights_version = weights.version
        self.weights_run = weights.run_id
        return ""

    def feedback_age(self, now: float, last_state: float | None) -> tuple[str, float] | None:
        """The input that has been silent longest (joint states, camera frames) and for how
        long, at ``now`` (time.monotonic); None before any arrived."""
        ages = {}
        if last_state is not None:
            ages["joint states"] = now - last_state
        color_s = None if self.frames is None else self.frames.last_color_monotonic
        if color_s is not None:
            ages["camera frames"] = now - color_s
        return max(ages.items(), key=lambda item: item[1]) if ages else None

    def epsilon(self) -> float:
        """Exploration now (the parameters may change at run time)."""
        cfg = self.config()
        exploration, total = cfg.exploration(self.setup.experiment)
        if not cfg.train:
            return exploration.eval_epsilon
        self.actor.set_exploration(exploration, total)
        return self.actor.exploration_value(self.stats.steps)

    def record(self, transition: Transition, latency_ms: float | None, epsilon: float) -> None:
        """Count a step, send its transition when training, report the statistics."""
        done = transition.terminated or transition.truncated
        self.stats.record_step(transition.reward, transition.is_success, done)
        if self.config().train:
            batch = self.batcher.add(transition, self.weights_version)
            if batch is not None:
                self.view.send(batch)
        values = self.stats.values(attempts=self.grasp)
        values.update(epsilon=epsilon, weights_version=self.weights_version)
        if latency_ms is not None:
            values.update(self.latency.add(latency_ms))
        summary = None
        if done:
            summary = (self.stats.summary_line(attempts=self.grasp)
                       + f", epsilon {epsilon:.3f}, weights v{self.weights_version}")
        self.view.report(values, summary)

    def _latency_ms(self, since_monotonic: float) -> float | None:
        first = self.arm.first_command_monotonic
        return None if first is None else (first - since_monotonic) * 1e3

    # ----------------------------------------------------------------------------- reach

    def reach_episode(self) -> None:
        """One Reacher episode (as ReacherEnv, with the training's reward shaping)."""
        cfg, task = self.config(), self.task
        here = np.clip(self.arm.read_arm_joints(), task.chain.lower, task.chain.upper)
        random_start = cfg.start_pose == "random"
        episode = task.new_episode(
            self._goal_rng, reach_q=None if random_start else here[task.reach_index],
            max_steps=self.setup.max_episode_steps)
        tolerance = task.config.goal_tolerance_m
        self.view.show_goal(episode.goal, tolerance)
        if random_start:
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
            epsilon = self.epsilon()
            received = time.monotonic()
            self.arm.mark_decision()
            action = self.actor.act(state.observation, epsilon=epsilon)
            next_state, reward, terminated, truncated = task.step(self.arm, episode, action)
            reward = shaping.step(reward, next_state.info, terminated)
            self.record(Transition(state.observation, action, reward, next_state.observation,
                                   terminated, truncated, next_state.success),
                        self._latency_ms(received), epsilon)
            self.view.show_markers(goal=episode.goal, tolerance=tolerance, ee=next_state.ee)
            if terminated or truncated or self.stop.is_set():
                return
            state = next_state

    # ----------------------------------------------------------------------------- grasp

    def build_reach_table(self) -> float:
        """Build the arm's top-down reachability (from the IK: seconds); the seconds taken."""
        start = time.monotonic()
        _ = self.task.reach
        return time.monotonic() - start

    def wait_for_frame(self, after_s: float) -> CameraFrame:
        """The first complete colour + depth frame stamped at or after ``after_s`` (arm
        clock); ArmTimeoutError after frame_timeout_s (FrameSync.wait)."""
        cfg = self.config()
        try:
            return self.frames.wait(after_s, self.arm, FrameTimeouts(
                cfg.frame_timeout_s, cfg.frame_timeout_min_wall_s,
                cfg.arm.stale_timeout_s + cfg.frame_timeout_s))
        except ArmTimeoutError:
            self.view.count("frame_timeouts")
            raise

    def settled_frame(self, after_motion: bool = False, not_before_s: float = -math.inf
                      ) -> tuple[np.ndarray, CameraFrame]:
        """The first frame stamped settle_time_s (arm clock) after now -- or, ``after_motion``,
        after the end of the arm's last motion -- and not before ``not_before_s`` (a scene
        reset: the joint states seen so far may all predate it), and its observation. (One
        wait: the frame's stamp says that the time has passed, so no joint state need say it
        first.)"""
        since = self.arm.motion_end_s if after_motion else None
        if since is None:
            since = self.arm.arm_time_s()
        since = max(since, not_before_s)
        frame = self.wait_for_frame(since + self.config().settle_time_s)
        return self.task.observation(frame.rgb, frame.heightmap), frame

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """The network's Q-values for ``obs`` (never during a weights swap)."""
        with self.actor.lock:
            return self.actor.q_net.predict_q(obs)

    def reachable_actions(self, frame: CameraFrame) -> np.ndarray | None:
        """Flat bool mask of the grasps the arm can reach in this frame (None: the experiment
        switched the mask off, or nothing is reachable)."""
        if not self.actor.exploration.use_action_mask:
            return None
        mask = self.task.action_mask(frame.camera, frame.depth)
        if not mask.any():
            self.view.count("grasp_nothing_reachable")
        return self.actor.allowed_actions(mask)

    def grasp_episode(self) -> None:
        """One grasp episode (as TopDownGraspEnv): attempts until success, an empty table or
        the attempt limit."""
        cfg, task = self.config(), self.task
        self.actor.new_episode()
        reset_at = self.view.reset_scene()
        reset = reset_at is not None
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
        obs, frame = self.settled_frame(not_before_s=-math.inf if reset_at is None else reset_at)
        attempts = 0
        place = np.asarray(cfg.place_joint_positions, float)
        if place.size and place.size != len(self.robot.arm_joint_names):
            raise ValueError(f"place_joint_positions: expected {len(self.robot.arm_joint_names)}"
                             f" values, got {place.size}")

        # A success that ends the episode is left to the reset (skip_release_before_reset) --
        # only while a reset is there to undo it (not on an arm without one).
        leave_to_reset = (cfg.skip_release_before_reset and cfg.terminate_on_success
                          and not place.size)
        left = [False]  # carry_away left this attempt's success to the reset

        def carry_away(outcome: Any) -> bool:
            if outcome.success and place.size:
                self.arm.move_arm(place)
            left[0] = bool(outcome.success and leave_to_reset and self.view.can_reset())
            return left[0]

        while not self.stop.is_set():
            left[0] = False
            epsilon = self.epsilon()
            self.arm.mark_decision()
            q = self.q_values(obs)
            allowed = self.reachable_actions(frame)
            action = self.actor.act_on_q_values(q, epsilon, allowed, obs)
            target = task.grasp_target(frame.camera, frame.depth, action)
            self._show_decision(obs, q, target, frame, allowed)
            outcome = task.execute(self.arm, target, home, after_lift=carry_away)
            if target.has_depth:
                self.view.show_markers(grasp=(target.point_m, target.yaw_rad),
                                       outcome=(target.point_m, outcome))
            latency = self._latency_ms(frame.received_monotonic)
            if not outcome.ik_success:
                self.view.count("grasp_ik_failures")
            attempts += 1
            if left[0]:
                # Terminal: no TD target reads next_obs, and the arm still blocks the view.
                next_obs, next_frame = obs, frame
                terminated, truncated = True, False
            else:
                next_obs, next_frame = self.settled_frame(after_motion=True)
                # (a colour-only camera cannot tell an empty table: attempts end the episode)
                empty = (not self.table_plane
                         and table_looks_empty(next_frame.heightmap, cfg.empty_table_height_m))
                terminated, truncated = task.episode_end(
                    outcome.success, empty, attempts, cfg.terminate_on_success,
                    self.setup.max_episode_steps)
                truncated = truncated or (not terminated and task.nothing_graspable(
                    next_frame.camera, next_frame.depth))
            self.record(Transition(obs, action, task.reward(outcome), next_obs, terminated,
                                   truncated, bool(outcome.success)), latency, epsilon)
            self.actor.record_outcome(action, bool(outcome.success), terminated or truncated)
            self.view.debug(f"grasp at pixel ({target.row}, {target.col}) rotation "
                            f"{target.rotation}: {outcome.message}")
            if terminated or truncated:
                return
            obs, frame = next_obs, next_frame

    def _show_decision(self, obs: np.ndarray, q: np.ndarray, target: GraspTarget,
                       frame: CameraFrame, allowed: np.ndarray | None) -> None:
        task = self.task
        h, w = task.height, task.width
        self.view.show_q_map(obs, q.reshape(task.num_rotations, h, w),
                             (target.rotation, target.row, target.col), frame,
                             None if allowed is None else allowed[:h * w])
        if target.has_depth:
            self.view.show_markers(grasp=(target.point_m, target.yaw_rad))
            self.view.show_goal(target.point_m, None)
        else:  # nothing to aim at: an unsuccessful attempt
            self.view.count("grasp_no_depth")
