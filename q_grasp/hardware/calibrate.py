"""Calibrate the xArm's servos against the URDF and write the YAML that xarm_driver reads.

  python -m q_grasp.hardware.calibrate --out xarm_calibration.yaml

The servos are switched off (the joints go limp); you move the arm by hand when asked: once to
the URDF's zero pose (every joint at 0 rad: the arm straight up, the gripper facing forward),
then each joint a little in its positive direction, then the gripper fully open and fully
closed. From the positions read at each step it records, per joint, the servo units at zero and
the direction, and the gripper's open and closed units; the limits are the URDF's, narrowed to
what the servo can reach from its zero.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence

from q_grasp.hardware.xarm import (
    DEFAULT_ARM_SERVO_IDS,
    DEFAULT_GRIPPER_SERVO_ID,
    RAD_PER_UNIT,
    SERVO_MAX_UNITS,
    SERVO_MIN_UNITS,
    GripperCalibration,
    ServoCalibration,
    XArmBoard,
    XArmCalibration,
    XArmError,
)

MIN_TURN_UNITS = 20
"""A joint turned by hand must move at least this far (about 5 degrees) to tell its direction."""


def calibrate(board: XArmBoard, arm_joint_names: Sequence[str],
              limits: Mapping[str, tuple[float, float]], ask: Callable[[str], None], *,
              arm_servo_ids: Sequence[int] = DEFAULT_ARM_SERVO_IDS,
              gripper_servo_id: int = DEFAULT_GRIPPER_SERVO_ID,
              gripper_open_m: float = 0.03, gripper_closed_m: float = 0.0) -> XArmCalibration:
    """Run the routine; ``ask(text)`` returns once the person has done what ``text`` says."""
    if len(arm_servo_ids) != len(arm_joint_names):
        raise ValueError(f"{len(arm_servo_ids)} servo ids for {len(arm_joint_names)} joints")
    servos = [*arm_servo_ids, gripper_servo_id]
    board.power_off(servos)
    ask("Servos are off. Move the arm by hand to the URDF's zero pose (every joint at 0 rad) "
        "and hold it there")
    zero = board.read_positions(servos)
    joints = {}
    for name, servo in zip(arm_joint_names, arm_servo_ids):
        ask(f"Turn {name} by hand about 20 degrees in its positive direction (the URDF's axis, "
            f"right-hand rule)")
        moved = board.read_positions([servo])[servo] - zero[servo]
        if abs(moved) < MIN_TURN_UNITS:
            raise ValueError(f"{name} (servo {servo}) moved {moved} units; turn it further")
        direction = 1 if moved > 0 else -1
        # Angles the servo reaches from its zero, in the joint's own sense.
        reach = sorted(direction * (u - zero[servo]) * RAD_PER_UNIT
                       for u in (SERVO_MIN_UNITS, SERVO_MAX_UNITS))
        lower, upper = limits.get(name, (reach[0], reach[1]))
        joints[name] = ServoCalibration(servo, centre_units=float(zero[servo]),
                                        direction=direction, lower_rad=max(lower, reach[0]),
                                        upper_rad=min(upper, reach[1]))
    ask("Open the gripper fully by hand")
    open_units = board.read_positions([gripper_servo_id])[gripper_servo_id]
    ask("Close the gripper fully by hand (nothing between the fingers)")
    closed_units = board.read_positions([gripper_servo_id])[gripper_servo_id]
    calibration = XArmCalibration(joints, GripperCalibration(
        gripper_servo_id, float(open_units), float(closed_units), gripper_open_m,
        gripper_closed_m))
    calibration.check(arm_joint_names)
    return calibration


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m q_grasp.hardware.calibrate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="calibration YAML to write")
    parser.add_argument("--serial", default="", help="board serial number (default: the first)")
    args = parser.parse_args(argv)

    from q_grasp.hardware.xarm import open_hid_device
    from q_grasp.kinematics.urdf import parse_urdf
    from q_grasp.robot_config import RobotConfig

    robot = RobotConfig()
    urdf = parse_urdf(robot.urdf_path)
    limits = {n: (urdf.joints[n].lower, urdf.joints[n].upper) for n in robot.arm_joint_names}
    try:
        board = XArmBoard(open_hid_device(args.serial))
    except XArmError as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 2
    try:
        calibration = calibrate(board, robot.arm_joint_names, limits,
                                lambda text: input(f"{text}, then press Enter. "),
                                gripper_open_m=max(robot.gripper_open_positions),
                                gripper_closed_m=min(robot.gripper_closed_positions))
    except (XArmError, ValueError) as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 2
    finally:
        board.close()
    calibration.to_yaml(args.out)
    print(f"wrote {args.out}; start the driver with -p calibration_file:={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
