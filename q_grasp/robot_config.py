"""Describe a robot arm by configuration (URDF, joint names, links, home pose), not by indices."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from q_grasp.config import build

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
NURO_ARM_URDF = ASSETS_DIR / "nuro_arm" / "nuro_arm.urdf"


@dataclass
class RobotConfig:
    """Everything q_grasp needs to know about an arm; every name refers to the URDF."""

    urdf_path: str = str(NURO_ARM_URDF)
    """Path of the robot's URDF file."""
    base_link: str = "base_link"
    """Root link of the kinematic chain (the link fixed to the world)."""
    ee_link: str = "grasp_link"
    """Tool centre point link: the point between the finger pads that grasps aim at."""
    arm_joint_names: list[str] = field(
        default_factory=lambda: [
            "base_joint", "shoulder_joint", "elbow_joint", "wrist_joint", "wrist_rotation_joint"
        ]
    )
    """Arm joints from base to wrist rotation, in the order used for joint vectors."""
    reach_joint_names: list[str] = field(
        default_factory=lambda: ["base_joint", "shoulder_joint", "elbow_joint", "wrist_joint"]
    )
    """Joints the Reacher task moves (wrist rotation does not move the tool centre point)."""
    gripper_joint_names: list[str] = field(
        default_factory=lambda: ["left_finger_joint", "right_finger_joint"]
    )
    """Joints driven to open and close the gripper."""
    gripper_open_positions: list[float] = field(default_factory=lambda: [0.03, 0.03])
    """Gripper joint positions when fully open."""
    gripper_closed_positions: list[float] = field(default_factory=lambda: [0.0, 0.0])
    """Gripper joint positions when fully closed on nothing."""
    gripper_aperture_scale_m: float = 2.0
    """Aperture between the pads in metres = scale * mean(gripper joint positions - closed)."""
    home_positions: list[float] = field(default_factory=lambda: [0.0, -1.1, 1.4, 1.3, 0.0])
    """Arm joint positions (rad) that keep the arm out of the camera's view."""
    base_position: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.03])
    """Position (m) of base_link in the world frame; raised above the table for top-down grasps."""
    base_yaw_rad: float = 0.0
    """Yaw (rad) of base_link in the world frame."""
    max_joint_force: float = 5.0
    """Motor force/torque limit used by the simulator for arm joints."""
    max_gripper_force: float = 20.0
    """Motor force limit used by the simulator for the gripper joints."""

    REMOVED_FIELDS: ClassVar[dict[str, str]] = {
        "wrist_rotation_joint": "the grasp yaw comes from the IK of the whole arm"}
    """Settings no longer read, with why: accepted with a warning (q_grasp.config)."""

    def __post_init__(self) -> None:
        if not os.path.isfile(self.urdf_path):
            raise ValueError(f"robot urdf_path: no such file: {self.urdf_path!r}")
        n_arm = len(self.arm_joint_names)
        if n_arm == 0:
            raise ValueError("robot arm_joint_names: at least one joint is required")
        if len(self.home_positions) != n_arm:
            raise ValueError(
                f"robot home_positions: expected {n_arm} values (one per arm joint), "
                f"got {len(self.home_positions)}"
            )
        for name in self.reach_joint_names:
            if name not in self.arm_joint_names:
                raise ValueError(f"robot reach_joint_names: {name!r} is not an arm joint")
        n_grip = len(self.gripper_joint_names)
        for key in ("gripper_open_positions", "gripper_closed_positions"):
            if len(getattr(self, key)) != n_grip:
                raise ValueError(f"robot {key}: expected {n_grip} values, got "
                                 f"{len(getattr(self, key))}")
        if len(self.base_position) != 3:
            raise ValueError("robot base_position: expected 3 values [x, y, z] in metres")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RobotConfig:
        """Build from a mapping through the one config loader (unknown keys, types, ranges)."""
        return build(cls, data, where="robot config")
