"""Joint motions without ROS: a validated joint trajectory and its interpolation (the
simulator's controller and the real-arm driver follow the same path), and the tolerances and
arrival/settle checks that every arm (the in-process SimRobot, the sim_arm node, the ROS arm
adapter) judges its motions by."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np


@dataclass
class MotionTolerances:
    """How close and how still a joint must be for a motion to count as finished."""

    joint_tolerance_rad: float = 0.01
    """A move has arrived when every arm joint is this close to its target..."""
    velocity_tolerance_rad_s: float = 0.05
    """...and every arm joint is slower than this."""
    gripper_velocity_tolerance_m_s: float = 0.002
    """Fingers slower than this count as settled (stopped on an object or at their limit)."""

    def __post_init__(self) -> None:
        for name in ("joint_tolerance_rad", "velocity_tolerance_rad_s",
                     "gripper_velocity_tolerance_m_s"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")

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
