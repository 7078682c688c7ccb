"""The sim_arm node's simulation without ROS: a pybullet arm, camera and objects stepped one
control tick at a time, trajectories followed, arrival reported, a still world let pass without
physics, and every stream paced on an injected clock. The node turns what a tick publishes
(:class:`Messages`) into ROS messages; tests drive it tick by tick on a fake clock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from q_grasp.motion import Trajectory
from q_grasp.sim.bullet import BulletSim
from q_grasp.sim.camera import PinholeCamera
from q_grasp.sim.controller import TrajectoryFollower
from q_grasp.sim.pacing import Clock, Pacer, Stream, WallClock
from q_grasp.sim.quiet import pybullet
from q_grasp.sim.robot import SimRobot
from q_grasp.sim.scene import Scene

STATIC_FRAME_TOLERANCE = 1e-5
"""Largest joint (rad) or object pose (m, quaternion) change for which the camera frame is
reused (camera_reuse_static_frames): far below one pixel of the 64x64 camera (~2.5 mm)."""

REPORT_EVERY_ITERATIONS = 200
"""Loop iterations between two calls of the ``report`` hook (rates for diagnostics)."""

JointStates = tuple[list[str], np.ndarray, np.ndarray, np.ndarray]
"""(names, positions, velocities, efforts) of every movable joint."""


@dataclass
class Messages:
    """What one loop iteration publishes, all stamped with ``sim_time_s``."""

    sim_time_s: float
    clock: bool
    """/clock is due."""
    joints: JointStates | None
    frame: tuple[np.ndarray, np.ndarray] | None
    """(rgb, depth) of the camera."""
    poses: dict[int, tuple[np.ndarray, np.ndarray]] | None
    """Object poses (ground truth) at the frame."""


class SimArmLoop:
    """The simulated arm's world and its control loop.

    ``config`` is a ``q_grasp.node_params.sim_arm.SimArmConfig`` (replace it with
    :meth:`reconfigure` while running). ``publish`` receives the messages of every iteration
    that has any; ``count`` counts events by name (diagnostics). Everything that touches the
    simulator holds ``lock`` (pybullet clients are not thread-safe); the loop holds it one tick
    at a time.
    """

    def __init__(self, config: Any, *, publish: Callable[[Messages], None],
                 count: Callable[[str], None], publish_clock: bool,
                 clock: Clock | None = None, report: Callable[[], None] | None = None) -> None:
        self.config = config
        self._publish = publish
        self._count = count
        self._report = report
        self.publishes_clock = publish_clock
        self.lock = threading.RLock()
        self.sim = BulletSim(seed=config.seed, config=config.sim)
        self.robot = SimRobot(self.sim, config.robot, config.motors)
        self.camera = PinholeCamera(config.camera)
        self.scene = Scene(self.sim, config.scene)
        rc = config.robot
        self.steps_per_tick = max(1, round(1.0 / (config.tick_rate_hz * self.sim.time_step_s)))
        self.home = self.robot.home_positions
        self.arm = TrajectoryFollower(rc.arm_joint_names, self.home)
        self.gripper = TrajectoryFollower(rc.gripper_joint_names,
                                          np.asarray(rc.gripper_open_positions))
        movable = {name: i for i, name in enumerate(self.robot.movable_joint_names)}
        self.arm_columns = [movable[n] for n in rc.arm_joint_names]
        self.gripper_columns = [movable[n] for n in rc.gripper_joint_names]
        # (what the camera saw, rendered frame) of the last render: camera_reuse_static_frames
        self._last_frame: tuple[np.ndarray, tuple[np.ndarray, np.ndarray]] | None = None
        # Event-driven feedback (joint_states_on_events): publish joint states this tick; the
        # arm's goal not yet reported; simulated time (the stamp of the tick's joint state) at
        # which the gripper's command was taken up (None: its settling reported).
        self._report_now = False
        self._arm_goal_pending = False
        self._gripper_started_s: float | None = None
        self._goal_reported = False  # this tick's report is of a goal reached (goal_hold_wall_s)
        self._goal_at_home = False  # ... of the arm reaching its home pose (goal_hold_at_home)
        self.stop = threading.Event()
        self.wake = threading.Event()  # a command, reset or spawn: end the pacing wait now
        self.clock = clock if clock is not None else WallClock()
        self.pacer = Pacer(self.clock, self.wake)
        self._rate_window = (self.clock.now(), self.sim_time_s)  # (wall, sim) of rate_report
        # skip_physics_when_still: sim time since which nothing has moved (None: moving)
        self._still_since_s: float | None = None
        self.skipping = False  # the last control tick let time pass without physics
        self.reset_time_s = 0.0  # simulated time of the latest reset()
        self.ticks_skipped = 0
        self.loop_iterations = 0
        self._joint, self._camera, self._clock = Stream(), Stream(), Stream()

    # ----------------------------------------------------------------------------- commands

    @property
    def sim_time_s(self) -> float:
        return self.sim.sim_time_s

    def submit(self, follower: TrajectoryFollower, trajectory: Trajectory) -> None:
        """Queue ``trajectory`` on ``follower`` (self.arm or self.gripper); any thread."""
        follower.submit(trajectory)
        self.wake.set()

    def reconfigure(self, config: Any) -> None:
        """Take up new parameter values: re-anchor pacing, end a wait computed from the old."""
        self.config = config
        self.pacer.reset()
        self.wake.set()

    def spawn(self) -> list[int]:
        """Spawn a new scene of objects; their ids."""
        with self.lock:
            objects = self.scene.spawn(self.sim.rng)
            self._still_since_s = None
        self.wake.set()
        return objects

    def reset(self) -> list[int]:
        """Arm home, gripper open, trajectories dropped, a new scene; the objects' ids.
        ``reset_time_s``: the simulated time it happened at."""
        with self.lock:
            self.reset_time_s = self.sim_time_s
            self.robot.home()
            self.arm.cancel(self.robot.home_positions)
            self.gripper.cancel(np.asarray(self.config.robot.gripper_open_positions))
            objects = self.scene.spawn(self.sim.rng)
            self._still_since_s = None
            self._arm_goal_pending, self._gripper_started_s = False, None
        self.wake.set()
        return objects

    def shutdown(self) -> None:
        """End run() after its iteration (and any wait) at once."""
        self.stop.set()
        self.wake.set()

    def close(self) -> None:
        with self.lock:
            self.sim.close()

    # ----------------------------------------------------------------------------- the loop

    def run(self) -> None:
        """Iterate until shutdown(); exceptions propagate to the caller."""
        self._rate_window = (self.clock.now(), self.sim_time_s)
        while not self.stop.is_set():
            self.iteration()

    def rate_report(self) -> tuple[dict[str, Any], bool]:
        """The loop's diagnostics since the last call (for the ``report`` callback): simulated
        time, the measured and requested real-time factors, skipped ticks, iterations,
        whether trajectories are active; and whether it runs at under half the requested
        real-time factor."""
        (wall0, sim0), wall, sim_s = self._rate_window, self.clock.now(), self.sim_time_s
        self._rate_window = (wall, sim_s)
        measured = (sim_s - sim0) / (wall - wall0) if wall > wall0 else 0.0
        target = self.config.real_time_factor
        values = dict(sim_time_s=round(sim_s, 3), real_time_factor=round(measured, 3),
                      real_time_factor_target=target,
                      still_real_time_factor=self.still_rtf(self.config),
                      physics_ticks_skipped=self.ticks_skipped,
                      physics_loop_iterations=self.loop_iterations,
                      arm_trajectory_active=self.arm.active,
                      gripper_trajectory_active=self.gripper.active)
        return values, target > 0 and measured < 0.5 * target

    def iteration(self) -> Messages | None:
        """One control tick (or, in a still world, as many as the pacing lets pass), what is
        due published, then the pacing wait. Returns what it published."""
        cfg = self.config
        cap = cfg.max_publish_rate_hz
        joint, camera, clock = self._joint, self._camera, self._clock
        was_skipping = self.skipping
        with self.lock:
            now_s = self.control_tick(cfg, self._still_ticks(cfg))
            wall = self.clock.now()
            joint_due = self._report_now or joint.is_due(now_s, wall)
            self._report_now = False
            # The frames' own wall cap (camera_*_max_rate_hz) is in camera.due_wall, so a still
            # world's pacing waits until a capped frame is due.
            camera_due = cfg.camera_rate_hz > 0 and camera.is_due(now_s, wall)
            rest_tick = self.skipping and not was_skipping
            frame_cap = (cfg.camera_still_max_rate_hz if self.skipping
                         else cfg.camera_moving_max_rate_hz)
            if self.skipping:
                # A still world: the joint states and a frame go out on the tick it comes to
                # rest (a policy waiting for a motion to end hears of it at once and sees the
                # world at rest), and when either stream goes out the other follows if its
                # simulated-time rate (and the frames' cap) allows (their max_publish_rate_hz
                # caps aligned): a frame taken after the latest joint state is there with it.
                joint_due = (joint_due or rest_tick
                             or (camera_due and now_s >= joint.due_s))
                camera_due = cfg.camera_rate_hz > 0 and (
                    camera_due or rest_tick
                    or (joint_due and now_s >= camera.due_s
                        and (frame_cap <= 0.0 or wall >= camera.due_wall)))
            joints = self.robot.joint_states() if joint_due else None
            frame = poses = None
            if camera_due:
                frame, poses = self.camera_frame(cfg)
        clock_due = self.publishes_clock and clock.is_due(now_s, wall)
        if clock_due:
            clock.published(now_s, wall, cfg.clock_rate_hz, cfg.clock_max_rate_hz or cap)
        if joints is not None:
            joint.published(now_s, wall, cfg.joint_state_rate_hz, cap)
        if frame is not None:
            camera.published(now_s, wall, cfg.camera_rate_hz, cap)
            if not self.skipping:
                self._count("camera_frames_while_moving")
            if frame_cap > 0.0:
                camera.due_wall = max(camera.due_wall, wall + 1.0 / frame_cap)
        messages = None
        if clock_due or joints is not None or frame is not None:
            messages = Messages(now_s, clock_due, joints, frame, poses)
            self._publish(messages)
        if self._goal_reported:
            self._goal_reported = False
            if (joints is not None and cfg.goal_hold_wall_s > 0.0
                    and (cfg.goal_hold_at_home or not self._goal_at_home)):
                self._hold_for_command(cfg.goal_hold_wall_s)
        self.loop_iterations += 1
        if self._report is not None and self.loop_iterations % REPORT_EVERY_ITERATIONS == 0:
            self._report()
        if self.skipping:
            streams = [joint] + ([clock] if self.publishes_clock else []) + (
                [camera] if cfg.camera_rate_hz > 0 else [])
            self.pacer.pace(now_s, self.still_rtf(cfg), streams)
        else:
            self.pacer.pace(now_s, cfg.real_time_factor)
        return messages

    def _hold_for_command(self, hold_s: float) -> None:
        """goal_hold_wall_s: after a goal's joint state went out, wait (without the sim lock,
        simulated time standing) up to ``hold_s`` of wall time for the next command, unless a
        trajectory is queued or running or a goal is still to be reported."""
        self.wake.clear()  # checked after the clear: a command that came before it is seen
        if (self._arm_goal_pending or self._gripper_started_s is not None
                or self.arm.active or self.gripper.active):
            return
        self._count("goal_holds")
        if self.clock.wait(self.wake, hold_s):
            self.wake.clear()  # taken: the next tick takes the command up
        else:
            self._count("goal_hold_timeouts")

    @staticmethod
    def still_rtf(cfg: Any) -> float:
        """The real-time factor of a still world."""
        return cfg.still_real_time_factor or cfg.real_time_factor

    def _still_ticks(self, cfg: Any) -> int:
        """Control ticks the next tick lets pass if the world is still: as many as the wall
        time since the pacing origin allows at still_real_time_factor; one when the last tick
        ran physics."""
        if not self.skipping:
            return 1
        return self.pacer.ticks_behind(self.sim_time_s, self.still_rtf(cfg),
                                       self.steps_per_tick * self.sim.time_step_s)

    # ----------------------------------------------------------------------------- one tick

    def _apply_setpoints(self, now_s: float) -> bool:
        """Send the followers' setpoints to the motors; True when any of them changed."""
        cfg = self.config
        arm = self.arm.update(now_s)
        if arm:
            self.robot.set_arm_targets(self.arm.setpoints)
        gripper = self.gripper.update(now_s)
        if (self.arm.started or self.gripper.started) and cfg.joint_states_on_events:
            # A command taken up: say so at once (a waiting policy starts its timeouts at the
            # first joint state after its command), then report when its goal is reached.
            self._report_now = True
            if self.arm.started:
                self._arm_goal_pending = True
            if self.gripper.started:
                # Counted from the stamp of this tick's joint state (after its physics), as a
                # RosArm counts gripper_min_settle_s from the first joint state after its
                # command: a settle report a tick earlier comes before the policy may take it.
                self._gripper_started_s = now_s + self.steps_per_tick * self.sim.time_step_s
        self.arm.started = self.gripper.started = False
        if gripper:
            client, body = self.sim.client, self.robot.body_id
            rc, motors = cfg.robot, cfg.motors
            for name, target in zip(rc.gripper_joint_names, self.gripper.setpoints):
                client.setJointMotorControl2(
                    body, self.robot.joint_index(name), pybullet.POSITION_CONTROL,
                    targetPosition=float(target), force=rc.max_gripper_force,
                    maxVelocity=motors.gripper_max_velocity_m_s)
        return arm or gripper

    def control_tick(self, cfg: Any, still_ticks: int = 1) -> float:
        """One control tick: the followers' setpoints to the motors, then physics -- or, in a
        still world (skip_physics_when_still), ``still_ticks`` ticks of time passing. Returns
        the simulated time after it. Caller holds the lock."""
        now_s = self.sim_time_s
        # A follower reports a change every tick it runs a trajectory, the last one included
        # (a step trajectory, e.g. the gripper's, is over in the tick it starts): busy.
        busy = self._apply_setpoints(now_s)
        if not cfg.skip_physics_when_still or busy:
            self._still_since_s = None
        elif (self._still_since_s is not None
              and now_s - self._still_since_s >= cfg.still_time_s - 1e-9):
            self.sim.pass_time(self.steps_per_tick * still_ticks)
            self.ticks_skipped += still_ticks
            self.skipping = True
            # At rest: the joint states go out on this tick anyway (see iteration).
            self._arm_goal_pending, self._gripper_started_s = False, None
            return self.sim_time_s
        self.skipping = False
        self.sim.step(self.steps_per_tick)
        check_still = cfg.skip_physics_when_still and not busy
        check_goals = self._arm_may_arrive() or self._fingers_may_settle(cfg)
        if not (check_still or check_goals):  # (no joint states to read: most ticks of a move)
            return self.sim_time_s
        _, position, velocity, _ = self.robot.joint_states()  # once for both checks
        if check_goals:
            self._check_goals(cfg, position, velocity)
        if check_still:
            if not self._world_is_still(velocity, cfg.still_velocity):
                self._still_since_s = None
            elif self._still_since_s is None:
                self._still_since_s = self.sim_time_s
        return self.sim_time_s

    def _arm_may_arrive(self) -> bool:
        """An arm goal is to be reported and its trajectory is over."""
        return self._arm_goal_pending and not self.arm.active

    def _fingers_may_settle(self, cfg: Any) -> bool:
        """The fingers' settling is to be reported and their command has run for
        gripper_min_steps (counted from the stamp of the tick that took it up)."""
        started = self._gripper_started_s
        return (started is not None and not self.gripper.active and self.sim_time_s - started
                >= (cfg.motors.gripper_min_steps - 0.5) * self.sim.time_step_s)

    def _check_goals(self, cfg: Any, position: np.ndarray, velocity: np.ndarray) -> None:
        """Report (joint states this tick) the arm reaching its trajectory's goal or the fingers
        settling after gripper_min_steps, judged as the single-process SimRobot judges them
        (MotionTolerances), from the joint states after this tick's physics."""
        motors = cfg.motors
        if self._arm_may_arrive():
            cols = self.arm_columns
            if motors.arm_arrived(position[cols], velocity[cols], self.arm.setpoints):
                self._arm_goal_pending, self._report_now = False, True
                self._goal_reported = True
                self._goal_at_home = bool(np.abs(self.arm.setpoints - self.home).max()
                                          < motors.joint_tolerance_rad)
        if (self._fingers_may_settle(cfg)
                and motors.fingers_settled(velocity[self.gripper_columns])):
            self._gripper_started_s, self._report_now = None, True
            self._goal_reported = True
            self._goal_at_home = False

    def _world_is_still(self, velocity: np.ndarray, max_speed: float) -> bool:
        """Every joint (``velocity``, the joint states after this tick's physics) and every
        object slower than ``max_speed`` (m/s, rad/s)."""
        if np.abs(velocity).max(initial=0.0) >= max_speed:
            return False
        client = self.sim.client
        for body in self.scene.object_ids:
            linear, angular = client.getBaseVelocity(body)
            if max(map(abs, linear)) >= max_speed or max(map(abs, angular)) >= max_speed:
                return False
        return True

    def camera_frame(self, cfg: Any) -> tuple[tuple[np.ndarray, np.ndarray], dict]:
        """The camera's current (rgb, depth) and the object poses; the last frame again while
        nothing in view has moved (camera_reuse_static_frames). Caller holds the lock."""
        poses = self.scene.object_poses()
        _, positions, _, _ = self.robot.joint_states()
        signature = np.concatenate([positions] + [np.concatenate([[body], pos, quat])
                                                  for body, (pos, quat) in poses.items()])
        last = self._last_frame
        if (cfg.camera_reuse_static_frames and last is not None
                and last[0].shape == signature.shape
                and np.allclose(last[0], signature, rtol=0.0, atol=STATIC_FRAME_TOLERANCE)):
            self._count("camera_frames_reused")
            return last[1], poses
        frame = self.camera.render(self.sim)
        self._last_frame = (signature, frame)
        return frame, poses
