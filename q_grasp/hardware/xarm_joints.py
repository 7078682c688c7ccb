"""A robot's joints on the xArm servo board, without ROS: its calibration (a file, or
uncalibrated defaults from the URDF), the range commands may use (the URDF's limits narrowed to
the calibrated ones) and joint positions <-> servo units (one servo drives both fingers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from q_grasp.hardware.xarm import XArmCalibration
from q_grasp.kinematics.urdf import parse_urdf
from q_grasp.robot_config import RobotConfig


class XArmJoints:
    """The arm and gripper joints of ``robot`` as the board's servos see them."""

    def __init__(self, robot: RobotConfig, calibration_file: str = "") -> None:
        self.robot = robot
        self.arm_names = list(robot.arm_joint_names)
        self.gripper_names = list(robot.gripper_joint_names)
        urdf = parse_urdf(robot.urdf_path)
        limits = {n: (urdf.joints[n].lower, urdf.joints[n].upper)
                  for n in self.arm_names + self.gripper_names}
        self.calibrated = bool(calibration_file)
        """False: uncalibrated defaults (servo centre = joint zero); positions not trusted."""
        if calibration_file:
            self.calibration = XArmCalibration.from_yaml(calibration_file, self.arm_names)
        else:
            self.calibration = XArmCalibration.default(
                self.arm_names, limits,
                gripper_open_m=float(np.mean(robot.gripper_open_positions)),
                gripper_closed_m=float(np.mean(robot.gripper_closed_positions)))
        joints = self.calibration.joints
        self.arm_limits = ({n: max(limits[n][0], joints[n].lower_rad) for n in self.arm_names},
                           {n: min(limits[n][1], joints[n].upper_rad) for n in self.arm_names})
        """Lower and upper limits commands to the arm joints may use (rad)."""
        self.gripper_limits = ({n: limits[n][0] for n in self.gripper_names},
                               {n: limits[n][1] for n in self.gripper_names})
        """Lower and upper limits of the finger joints (m)."""
        self.servo_ids = self.calibration.servo_ids

    def home_units(self) -> dict[int, float]:
        """Servo positions of the robot's home pose, gripper open (a fake board's start)."""
        cal = self.calibration
        units = {cal.joints[n].servo_id: cal.joints[n].to_units(q)
                 for n, q in zip(self.arm_names, self.robot.home_positions)}
        units[cal.gripper.servo_id] = cal.gripper.to_units(
            float(np.mean(self.robot.gripper_open_positions)))
        return units

    def positions(self, units: Mapping[int, float]) -> dict[str, float]:
        """Joint positions (rad; fingers m) by name from servo positions by id."""
        cal = self.calibration
        positions = {n: cal.joints[n].to_rad(units[cal.joints[n].servo_id])
                     for n in self.arm_names}
        opening = cal.gripper.to_m(units[cal.gripper.servo_id])
        positions.update({n: opening for n in self.gripper_names})
        return positions

    def servo_targets(self, names: Sequence[str], positions: np.ndarray) -> dict[int, int]:
        """Servo targets (units by id) for joint ``positions`` in the order of ``names``; the
        fingers' mean sets the gripper servo."""
        cal = self.calibration
        targets: dict[int, int] = {}
        gripper = [positions[i] for i, n in enumerate(names) if n in self.gripper_names]
        for i, name in enumerate(names):
            if name in cal.joints:
                targets[cal.joints[name].servo_id] = cal.joints[name].to_units(positions[i])
        if gripper:  # one servo drives both fingers
            targets[cal.gripper.servo_id] = cal.gripper.to_units(float(np.mean(gripper)))
        return targets
