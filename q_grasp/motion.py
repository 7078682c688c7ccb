"""Joint motions without ROS: a validated joint trajectory, its interpolation (the simulator's
controller and the real-arm driver follow the same path) and its timed segments (the real arm's
board), and the tolerances and arrival/settle checks that every arm (the in-process SimRobot,
the sim_arm node, the ROS arm adapter) judges its motions by."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from q_grasp.config import check_each


@dataclass
class MotionTolerances:
    """How fast arm joints move, and how close and how still a joint must be for a motion to
    count as finished: one set for every arm (SimRobotConfig, RosArmConfig)."""

    max_joint_velocity_rad_s: float = 2.0
    """Speed limit of arm joints (the servos' rated speed is ~2 rad/s): the simulator's motors
    move no faster, and trajectories sent to an arm are timed so that the joint that moves
    furthest moves at it."""
    joint_tolerance_rad: float = 0.01
    """A move has arrived when every arm joint is this close to its target..."""
    velocity_tolerance_rad_s: float = 0.05
    """...and every arm joint is slower than this."""
    gripper_velocity_tolerance_m_s: float = 0.002
    """Fingers slower than this count as settled (stopped on an object or at their limit)."""

    def __post_init__(self) -> None:
        check_each(self, ("max_joint_velocity_rad_s", "joint_tolerance_rad",
                          "velocity_tolerance_rad_s", "gripper_velocity_tolerance_m_s"),
                   lambda v: v > 0.0, "must be > 0")

    def arm_arrived(self, positions: np.ndarray, velocities: np.ndarray,
                    targets: np.ndarray) -> bool:
        """Every arm joint within joint_tolerance_rad of its target and slower than
        velocity_tolerance_rad_s (NaN counts as not arrived)."""
        err = np.abs(np.asarray(positions, np.float64) - np.asarray(targets, np.float64))
        speed = np.abs(np.asarray(velocities, np.float64))
        return bool(np.all(err < self.joint_tolerance_rad)
                    and np.all(speed < self.velocity_tolerance_rad_s))

    def fingers_settled(self, velocities: np.ndarray) -> bool:
        """Every finger slower than gripper_velocity_tolerance_m_s (stopped on an object or at
        its limit); the caller decides from when a stop may count."""
        speed = np.abs(np.asarray(velocities, np.float64))
        return bool(np.all(speed < self.gripper_velocity_tolerance_m_s))


@dataclass(frozen=True)
class Trajectory:
    """A validated joint trajectory, ready to be interpolated."""

    joint_names: tuple[str, ...]
    """Commanded joints, in the column order of ``positions``."""
    times_s: np.ndarray
    """time_from_start of each point (P,), strictly increasing, >= 0."""
    positions: np.ndarray
    """Target positions (P, J)."""

    def starting_from(self, start: np.ndarray) -> Trajectory:
        """The same trajectory with ``start`` (the joints' positions when it began) as a point
        at time 0, unless its first point is already due at once (no ramp then)."""
        if self.times_s[0] <= 0.0:
            return self
        return Trajectory(self.joint_names, np.concatenate([[0.0], self.times_s]),
                          np.vstack([np.asarray(start, np.float64)[None, :], self.positions]))

    def sample(self, t_s: float, start: np.ndarray) -> np.ndarray:
        """Position setpoint at ``t_s`` after the start, interpolating linearly from ``start``
        (the joints' positions when the trajectory began) through the points. A caller that
        samples one trajectory often keeps a ``PathSampler(trajectory.starting_from(start))``."""
        return PathSampler(self.starting_from(start)).at(t_s).copy()

    @property
    def duration_s(self) -> float:
        """time_from_start of the last point."""
        return float(self.times_s[-1])


class PathSampler:
    """A trajectory laid out for sampling many times (every control tick): linear between its
    points, its first point before them and its last one held after them."""

    __slots__ = ("duration_s", "_times", "_points", "_steps")

    def __init__(self, path: Trajectory) -> None:
        self.duration_s = path.duration_s
        self._times = path.times_s.tolist()  # (a list: bisect is cheaper than searchsorted)
        self._points = path.positions
        self._steps = np.diff(path.positions, axis=0)

    def at(self, t_s: float) -> np.ndarray:
        """The setpoint ``t_s`` after the path's time 0 (a view of its points: do not write)."""
        times = self._times
        if t_s >= times[-1]:
            return self._points[-1]
        if t_s <= times[0]:
            return self._points[0]
        k = bisect.bisect_right(times, t_s) - 1
        return self._points[k] + (t_s - times[k]) / (times[k + 1] - times[k]) * self._steps[k]


class SegmentStream:
    """A trajectory played as timed segments (one "move to these positions in this long"
    command each, as a servo board takes them), started at ``t0`` of the caller's clock."""

    def __init__(self, trajectory: Trajectory, start: np.ndarray, t0: float) -> None:
        self.path = trajectory.starting_from(start)
        self._sampler = PathSampler(self.path)
        self.t0 = t0
        # A trajectory whose first point is not due at once starts from ``start`` (prepended:
        # nothing to send for it); otherwise its first point is sent at once.
        self.next_point = 1 if trajectory.times_s[0] > 0.0 else 0

    def due(self, now: float) -> list[tuple[np.ndarray, float]]:
        """(target positions, segment duration) of every segment that starts by ``now``."""
        out = []
        times = self.path.times_s
        while self.next_point < len(times):
            k = self.next_point
            start = times[k - 1] if k > 0 else 0.0
            if now - self.t0 < start:
                break
            out.append((self.path.positions[k], float(times[k] - start)))
            self.next_point += 1
        return out

    @property
    def done(self) -> bool:
        """Every segment has been handed out."""
        return self.next_point >= len(self.path.times_s)

    @property
    def next_due_s(self) -> float:
        """When the next segment starts (the caller's clock; inf once done)."""
        if self.done:
            return float("inf")
        k = self.next_point
        return self.t0 + (float(self.path.times_s[k - 1]) if k > 0 else 0.0)

    def setpoint(self, now: float) -> np.ndarray:
        """The interpolated position setpoint at ``now``."""
        return self._sampler.at(now - self.t0)
