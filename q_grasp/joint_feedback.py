"""The ROS arm adapter's feedback without ROS: its configuration (how motions are commanded and
judged finished), the errors its waits raise, and the joint-state bookkeeping that every wait
for a motion, a gripper or a camera frame is measured against (arm time from the joint states'
stamps; a stop event that ends every wait)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from q_grasp.motion import MotionTolerances

BACKWARDS_TOLERANCE_S = 1e-3
"""Joint states stamped more than this before the previous one count as going back in time."""

RejectFn = Callable[[str, str, str], None]
"""``reject(source, reason, detail)`` for malformed feedback, e.g. Diagnostics.reject."""


@dataclass
class RosArmConfig(MotionTolerances):
    """How the ROS arm adapter commands motions and decides that they are finished (the
    tolerances of MotionTolerances)."""

    max_joint_velocity_rad_s: float = 2.0
    """Trajectory timing: the joint that moves furthest moves at this speed."""
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

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("max_joint_velocity_rad_s", "stale_timeout_s", "gripper_timeout_s",
                     "gripper_position_tolerance_m"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("min_move_duration_s", "move_timeout_margin_s", "gripper_duration_s",
                     "gripper_min_settle_s"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"{name}: must be >= 0 s, got {getattr(self, name)}")


class ArmTimeoutError(RuntimeError):
    """No joint states arrived (at start-up, or the arm stopped publishing)."""


class ArmStoppedError(RuntimeError):
    """The arm's owner is shutting down: raised out of any wait so that a skill unwinds."""


class ArmRestartedError(RuntimeError):
    """The arm's clock went back during a wait (a restarted simulator or driver): deadlines
    counted in the old clock would hold the wait until the new clock caught up, so the wait
    ends and the caller starts its episode over."""
