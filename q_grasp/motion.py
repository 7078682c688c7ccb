"""When a motion is over: the tolerances and the arrival/settle checks that every arm (the
in-process SimRobot, the sim_arm node, the ROS arm adapter) judges its motions by."""

from __future__ import annotations

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
