"""The ROS arm adapter without ROS: its configuration (how motions are commanded and judged
finished), the errors its waits raise, the joint-state bookkeeping that every wait for a
motion, a gripper or a camera frame is measured against (arm time from the joint states'
stamps; a stop event that ends every wait), and the arm's motions on top of it
(:class:`FeedbackArm`; q_grasp.nodes.ros_arm connects it to the topics)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from q_grasp.config import check_each
from q_grasp.motion import MotionTolerances
from q_grasp.robot_config import RobotConfig

BACKWARDS_TOLERANCE_S = 1e-3
"""Joint states stamped more than this before the previous one count as going back in time."""

RejectFn = Callable[[str, str, str], None]
"""``reject(source, reason, detail)`` for malformed feedback, e.g. Diagnostics.reject."""


@dataclass
class RosArmConfig(MotionTolerances):
    """How the ROS arm adapter commands motions and decides that they are finished (the
    speed limit and tolerances of MotionTolerances)."""

    min_move_duration_s: float = 0.05
    """Shortest trajectory duration (s)."""
    move_timeout_margin_s: float = 1.5
    """A move fails when it has not arrived this long (arm time) after its trajectory ends."""
    blend_waypoints: bool = True
    """true: a path of waypoints (a grasp's descent, its lift) goes out as one multi-point
    trajectory that the controller blends; false: one trajectory per waypoint, stopping at
    each, as the in-process simulator moves."""
    gripper_duration_s: float = 0.0
    """Duration of gripper trajectories (0: a step; the gripper's own speed limit applies)."""
    gripper_min_settle_s: float = 0.1
    """Gripper motions last at least this long (arm time) before they may count as settled."""
    gripper_position_tolerance_m: float = 0.001
    """Fingers this close to their target have arrived; fingers that stop short must first
    have moved this far (an object between the pads)."""
    gripper_timeout_s: float = 1.5
    """Gripper motions stop waiting after this long (arm time)."""
    stale_timeout_s: float = 5.0
    """Wall-clock seconds without a new joint state after which a wait gives up (the arm or
    its driver stopped)."""
    joint_states_topic: str = "joint_states"
    """Joint state feedback topic."""
    arm_trajectory_topic: str = "arm_controller/joint_trajectory"
    """Arm JointTrajectoryController command topic."""
    gripper_trajectory_topic: str = "gripper_controller/joint_trajectory"
    """Gripper JointTrajectoryController command topic."""

    def path_times_s(self, start: np.ndarray, points: Sequence[np.ndarray]) -> list[float]:
        """time_from_start of each point of a path from ``start``: every segment lasts its
        largest joint distance at max_joint_velocity_rad_s, at least min_move_duration_s."""
        times: list[float] = []
        elapsed, previous = 0.0, np.asarray(start, float)
        for q in points:
            elapsed += max(float(np.abs(q - previous).max()) / self.max_joint_velocity_rad_s,
                           self.min_move_duration_s)
            times.append(elapsed)
            previous = q
        return times

    def __post_init__(self) -> None:
        super().__post_init__()
        check_each(self, ("stale_timeout_s", "gripper_timeout_s", "gripper_position_tolerance_m"),
                   lambda v: v > 0.0, "must be > 0")
        check_each(self, ("min_move_duration_s", "move_timeout_margin_s", "gripper_duration_s",
                          "gripper_min_settle_s"), lambda v: v >= 0.0, "must be >= 0 s")


class ArmTimeoutError(RuntimeError):
    """No joint states arrived (at start-up, or the arm stopped publishing)."""


class ArmStoppedError(RuntimeError):
    """The arm's owner is shutting down: raised out of any wait so that a skill unwinds."""


class ArmRestartedError(RuntimeError):
    """The arm's clock went back during a wait (a restarted simulator or driver): deadlines
    counted in the old clock would hold the wait until the new clock caught up, so the wait
    ends and the caller starts its episode over."""


class JointFeedback:
    """The latest joint states of an arm (positions, velocities, the arm's clock) and the waits
    measured against them: in arm time (the states' stamps), with a wall-clock limit on silence
    (stale_timeout_s) and a ``stop`` event that ends every wait with :class:`ArmStoppedError`.

    Waits run in one thread while :meth:`update` is called from another (a subscription).
    Predicates given to :meth:`wait` run with :attr:`cond` held and may read :attr:`positions`,
    :attr:`velocities` and :attr:`stamp_s` directly.
    """

    def __init__(self, config: RosArmConfig, *, stop: threading.Event | None = None,
                 reject: RejectFn | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.cond = threading.Condition()
        self.positions: dict[str, float] = {}
        self.velocities: dict[str, float] = {}
        self.stamp_s = 0.0
        """Stamp of the latest joint state (the arm's clock)."""
        self.seq = 0
        """Joint states received so far."""
        self.stop = stop if stop is not None else threading.Event()
        self._reject = reject
        self._warn = warn
        self.stamps_backwards = 0
        """Joint states stamped earlier than the one before (see _went_backwards)."""
        self.last_state_monotonic: float | None = None
        """time.monotonic() of the latest joint state (None before the first)."""
        self._motion_end_s: float | None = None

    def update(self, names: Sequence[str], positions: Sequence[float],
               velocities: Sequence[float], stamp_s: float) -> None:
        """One joint state (velocities may be empty: then they are estimated from positions);
        malformed or non-finite values are rejected through ``reject``."""
        if len(positions) != len(names):  # malformed; nothing here is trustworthy
            if self._reject is not None:
                self._reject("joint_states", "size_mismatch",
                             f"{len(names)} names but {len(positions)} positions")
            return
        has_velocity = len(velocities) == len(names)
        with self.cond:
            dt = stamp_s - self.stamp_s
            if dt < -BACKWARDS_TOLERANCE_S:
                self._went_backwards(stamp_s)
            for i, name in enumerate(names):
                position = float(positions[i])
                if not math.isfinite(position):
                    if self._reject is not None:
                        self._reject("joint_states", "non_finite", f"{name} = {position}")
                    continue
                if has_velocity and math.isfinite(velocities[i]):
                    self.velocities[name] = float(velocities[i])
                elif name in self.positions and dt > 0:
                    self.velocities[name] = (position - self.positions[name]) / dt
                self.positions[name] = position
            self.stamp_s = stamp_s
            self.seq += 1
            self.last_state_monotonic = time.monotonic()
            self.cond.notify_all()

    def _went_backwards(self, stamp_s: float) -> None:
        """Joint states older than the last ones: a restarted driver, or -- when it keeps
        happening -- two arms on one topic (e.g. two simulators in one ROS domain), each obeying
        the other's commands, which makes moves fail in ways that look like timing."""
        self.stamps_backwards += 1
        if self.stamps_backwards in (1, 10, 100, 1000) and self._warn is not None:
            self._warn(
                f"joint states went back in time ({self.stamp_s:.3f} s -> {stamp_s:.3f} s; "
                f"{self.stamps_backwards} times so far): a restarted driver, or more than one "
                f"arm publishing on {self.config.joint_states_topic} (give each its own "
                "namespace or ROS_DOMAIN_ID)")

    def wait_for_joints(self, names: Sequence[str], timeout_s: float) -> bool:
        """Block (wall clock) until every joint in ``names`` has been reported."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not all(n in self.positions for n in names):
                remaining = deadline - time.monotonic()
                if remaining <= 0.0 or self.stop.is_set():
                    return False
                self.cond.wait(min(remaining, 0.1))  # short: a stop request ends the wait
        return True

    def read(self, names: Sequence[str], velocities: bool = False) -> np.ndarray:
        """Latest positions (or velocities) of ``names``; ArmTimeoutError if one was never
        reported."""
        table = self.velocities if velocities else self.positions
        with self.cond:
            missing = [n for n in names if n not in table]
            if missing:
                raise ArmTimeoutError(f"no joint state yet for {missing} on "
                                      f"{self.config.joint_states_topic}")
            return np.array([table[n] for n in names])

    def arm_time_s(self) -> float:
        """Stamp of the latest joint state (the arm's clock)."""
        with self.cond:
            return self.stamp_s

    @property
    def restarts(self) -> int:
        """Times the arm's clock went back (see ArmRestartedError)."""
        with self.cond:
            return self.stamps_backwards

    def check_restart(self, restarts: int) -> None:
        """Raise ArmRestartedError if the clock went back since :attr:`restarts` was
        ``restarts``."""
        if self.stamps_backwards != restarts:
            raise ArmRestartedError(f"the arm's clock went back to {self.stamp_s:.3f} s (a "
                                    f"restarted simulator or driver)")

    def wait(self, done: Callable[[], bool], deadline_s: float) -> bool:
        """Wait for joint states until ``done()`` holds (True) or the arm's clock passes
        ``deadline_s`` or the feedback goes stale (False); ArmRestartedError if the clock
        goes back meanwhile."""
        stale = self.config.stale_timeout_s
        with self.cond:
            restarts = self.stamps_backwards
            while True:
                if self.stop.is_set():
                    raise ArmStoppedError("shutting down")
                self.check_restart(restarts)
                if done():
                    return True
                if self.stamp_s >= deadline_s:
                    return False
                if not self.wait_for_new_state(self.seq):
                    if self._warn is not None:
                        self._warn(f"no joint states for {stale:.1f} s of wall time; giving up "
                                   "the wait")
                    return False

    def motion_wait(self, done: Callable[[], bool], deadline_s: float) -> bool:
        """:meth:`wait` for a commanded motion; records the arm time at which it ended."""
        try:
            return self.wait(done, deadline_s)
        finally:
            with self.cond:
                self._motion_end_s = self.stamp_s

    @property
    def motion_end_s(self) -> float | None:
        """Arm time (joint-state stamp) at which the last move or gripper motion ended, arrived
        or given up; None before the first. (Later joint states may have come since: a settle
        time counted from this one does not grow by the time taken to act on it.)"""
        with self.cond:
            return self._motion_end_s

    def wait_for_new_state(self, seq: int) -> bool:
        """With the condition held: wait for a joint state after sequence number ``seq``; False
        after stale_timeout_s of wall time without one. Short waits, so that a stop request is
        seen at once (the caller raises)."""
        quiet_since = time.monotonic()
        while self.seq == seq and not self.stop.is_set():
            if time.monotonic() - quiet_since > self.config.stale_timeout_s:
                return False
            self.cond.wait(timeout=0.1)
        return True

    def next_stamp_s(self, seq: int) -> float:
        """Stamp of the first joint state after sequence number ``seq`` (the latest one when
        none comes in stale_timeout_s of wall time). A command's timeouts start there, not
        at the stamp read before publishing: that one may be old by up to a joint-state
        interval of arm time (with sim_arm's fast still world, seconds of simulated time), and a
        timeout counted from it can end before the motion has started."""
        with self.cond:
            self.wait_for_new_state(seq)
            if self.stop.is_set():
                raise ArmStoppedError("shutting down")
            return self.stamp_s

    def sequence(self) -> int:
        """The sequence number of the latest joint state (for :meth:`next_stamp_s`)."""
        with self.cond:
            return self.seq

    def arm_arrived(self, names: Sequence[str], targets: np.ndarray, since_s: float) -> bool:
        """With the condition held: the joints at ``targets`` and nearly still
        (MotionTolerances.arm_arrived), judged only from arm time ``since_s`` on."""
        if self.stamp_s < since_s or any(n not in self.velocities for n in names):
            return False
        return self.config.arm_arrived(self.read(names), self.read(names, velocities=True),
                                       targets)

    def departed(self, names: Sequence[str], start: np.ndarray) -> bool:
        """With the condition held: a joint of ``names`` joint_tolerance_rad or more from
        ``start`` (a commanded motion has been taken up)."""
        q = np.array([self.positions[n] for n in names])
        return bool(np.abs(q - start).max() >= self.config.joint_tolerance_rad)

    def fingers_done(self, names: Sequence[str], target: np.ndarray, start: np.ndarray,
                     settle_from_s: float, must_move: bool) -> bool:
        """With the condition held: fingers at ``target`` (within gripper_position_tolerance_m),
        or stopped short of it (on an object) from arm time ``settle_from_s`` on, after moving
        from ``start`` when ``must_move``."""
        tol = self.config.gripper_position_tolerance_m
        q = np.array([self.positions[n] for n in names])
        if np.abs(q - target).max() < tol:
            return True
        if (self.stamp_s < settle_from_s or any(n not in self.velocities for n in names)
                or (must_move and np.abs(q - start).max() < tol)):
            return False
        return self.config.fingers_settled(self.read(names, velocities=True))


Send = Callable[[str, list[str], list[np.ndarray], list[float]], None]
"""``send(controller, joint_names, points, times_s)``: one trajectory to the "arm" or "gripper"
controller (its points reached at times_s after it starts)."""


class FeedbackArm:
    """An ArmInterface behind trajectory controllers, without ROS: commands go out through
    ``send``, and every motion is judged from a :class:`JointFeedback` (arm time from the joint
    states' stamps). RosArm gives it ROS topics; a test can give it anything.

    The blocking calls (move_arm, move_arm_through, set_gripper) wait for joint states that
    another thread feeds into ``feedback``; its ``stop`` event makes every wait raise
    :class:`ArmStoppedError`, so a skill in the middle of a motion unwinds at once.
    """

    def __init__(self, robot: RobotConfig, config: RosArmConfig, feedback: JointFeedback,
                 send: Send) -> None:
        from q_grasp.kinematics.urdf import parse_urdf

        self.robot, self.config, self.feedback, self._send = robot, config, feedback, send
        self.arm_joint_names: list[str] = list(robot.arm_joint_names)
        self._gripper_names = list(robot.gripper_joint_names)
        self._grip_open = np.asarray(robot.gripper_open_positions, float)
        self._grip_closed = np.asarray(robot.gripper_closed_positions, float)
        joints = parse_urdf(robot.urdf_path).joints
        self.lower = np.array([joints[n].lower for n in self.arm_joint_names], float)
        self.upper = np.array([joints[n].upper for n in self.arm_joint_names], float)
        self._first_command_monotonic: float | None = None
        self.move_timeouts = 0
        """Moves that did not arrive in time (for diagnostics)."""
        self._gripper_sent: bool | None = None  # closed? of the last gripper command sent

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

    def _command(self, controller: str, names: list[str], points: list[np.ndarray],
                 times_s: list[float]) -> None:
        if self._first_command_monotonic is None:
            self._first_command_monotonic = time.monotonic()
        self._send(controller, names, points, times_s)

    # ----------------------------------------------------------------------------- commands

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
        trajectory is the only way to move an arm behind a controller."""
        return self.move_arm_through([joint_targets])

    def move_arm_through(self, waypoints: Sequence[np.ndarray]) -> bool:
        """Drive the arm through ``waypoints`` as one multi-point trajectory (the controller
        blends them: no stop at the intermediate ones; one trajectory per waypoint when
        ``blend_waypoints`` is false) and wait at the last; True once the
        joint states show the arm there and nearly still, False on timeout. Every segment
        lasts its largest joint distance at ``max_joint_velocity_rad_s`` (at least
        ``min_move_duration_s``). The path counts from the joint state in which the joints have
        left where they were (the command was taken up; a path that never leaves them from the
        first joint state after the command): arrival counts only once its last segment has
        begun, and the timeout is its duration plus ``move_timeout_margin_s`` (taking it up
        too must happen within that)."""
        cfg = self.config
        if len(waypoints) == 0:
            return True
        points = [self._arm_targets(q) for q in waypoints]
        if not cfg.blend_waypoints and len(points) > 1:
            reached = True
            for q in points:
                reached = self.move_arm_through([q])
            return reached
        start = self.read_arm_joints()
        times = cfg.path_times_s(start, points)
        seq = self.feedback.sequence()
        self._command("arm", self.arm_joint_names, points, times)
        t0 = self.feedback.next_stamp_s(seq)
        names = self.arm_joint_names
        if any(np.abs(q - start).max() >= cfg.joint_tolerance_rad for q in points):
            # Timed from when the command is taken up: the joints leave where they were. A
            # command that reaches the arm late leaves it standing, and a path that returns to
            # its start (out and back) would "arrive" before it began.
            if not self._motion_wait(lambda: self.feedback.departed(names, start),
                                     t0 + times[-1] + cfg.move_timeout_margin_s):
                self.move_timeouts += 1
                return False
            t0 = self.feedback.arm_time_s()
        # Arrival counts from the start of the last segment: a path may pass its last point
        # earlier (or start there, like an out-and-back move).
        last_segment_s = t0 + (times[-2] if len(times) > 1 else 0.0)

        def arrived() -> bool:  # called with the condition held
            return self.feedback.arm_arrived(names, points[-1], last_segment_s)

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
        self._command("gripper", names, [target], [cfg.gripper_duration_s])
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
