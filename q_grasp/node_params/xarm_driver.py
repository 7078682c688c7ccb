"""Parameters of the xarm_driver node (the NURO arm's servo board), without ROS."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from q_grasp.config import check_each
from q_grasp.robot_config import RobotConfig


@dataclass
class XArmDriverConfig:
    """Parameters of the xarm_driver node."""

    device: Literal["hid", "fake"] = "hid"
    """"hid": the board on USB (hidapi); "fake": q_grasp's fake board (try the driver and the
    policy without an arm)."""
    serial_number: str = ""
    """Serial number of the board to open (empty: the first xArm board found)."""
    calibration_file: str = ""
    """Calibration YAML (python -m q_grasp.hardware.calibrate writes it); empty: uncalibrated
    defaults (servo centre = joint zero, the URDF's limits), with a warning."""
    read_rate_hz: float = 10.0
    """Position reads (and joint_states messages) per second; the board answers ~10 Hz."""
    read_timeout_s: float = 0.2
    """Longest wait for the board's answer to one position read."""
    stale_after_s: float = 1.0
    """/diagnostics turns ERROR when no position read succeeded for this long."""
    reconnect_every_s: float = 2.0
    """How often to try opening a board that is missing or was unplugged."""
    power_off_on_shutdown: bool = True
    """Switch the servos off (joints go limp) when the node stops."""
    max_trajectory_points: int = 1000
    """Longest trajectory accepted (points)."""
    limit_tolerance: float = 1e-6
    """Positions this far outside a joint's limits are clipped instead of rejected."""
    fake_max_speed_units_s: float = 1500.0
    """device fake: how fast its servos turn (servo units per second)."""
    robot: RobotConfig = field(default_factory=RobotConfig)
    """The arm (URDF, joint names) the driver publishes for."""

    def __post_init__(self) -> None:
        if self.device not in ("hid", "fake"):
            raise ValueError(f"device: must be 'hid' or 'fake', got {self.device!r}")
        check_each(self, ("read_rate_hz", "read_timeout_s", "stale_after_s", "reconnect_every_s",
                          "fake_max_speed_units_s"), lambda v: v > 0.0, "must be > 0")
        if self.read_rate_hz > 200.0:
            raise ValueError(f"read_rate_hz: must be <= 200 Hz, got {self.read_rate_hz}")
        if self.max_trajectory_points < 1:
            raise ValueError(f"max_trajectory_points: must be >= 1, got "
                             f"{self.max_trajectory_points}")
        if not 0.0 <= self.limit_tolerance <= 0.1:
            raise ValueError(f"limit_tolerance: must be in [0, 0.1], got {self.limit_tolerance}")
