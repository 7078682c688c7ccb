"""Sim/real twin check: play the same joint trajectories on the arm and in the simulator and
report how far apart they are -- what to run before training on hardware.

  python -m q_grasp.hardware.twin_check --calibration xarm.yaml [--device hid|fake]
      [--image frame.png --camera-calibration elp.yaml --board 6x4 --square 0.015]

Each trajectory goes to the board as timed MOVE segments (as xarm_driver plays it) and to the
pybullet arm as motor setpoints interpolated over simulated time; both are read at the same
instants. Per joint it reports the RMS and largest difference between the two over the motion
and the offset once both have come to rest; with a board image, the camera's reprojection
error too. Large offsets point at the calibration (zero units, direction), a lag at speed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from q_grasp.hardware.xarm import XArmBoard, XArmCalibration, XArmError

SETTLE_S = 0.6
"""How long both arms rest at a trajectory's end before their offset is taken."""


def default_trajectories(home: Sequence[float], lower: np.ndarray, upper: np.ndarray
                         ) -> list[list[tuple[float, np.ndarray]]]:
    """A few moves from home, each joint well inside its limits, and back: (time s, joints)."""
    home = np.asarray(home, np.float64)
    span = 0.25 * (upper - lower)
    out = []
    for sign in (1.0, -1.0):
        target = np.clip(home + sign * np.minimum(span, 0.4), lower + 0.05, upper - 0.05)
        out.append([(1.2, target), (2.4, home)])
    return out


@dataclass
class JointReport:
    joint: str
    rms_rad: float
    max_rad: float
    rest_offset_rad: float


def _sample_times(duration_s: float, rate_hz: float) -> np.ndarray:
    return np.arange(0.0, duration_s + SETTLE_S + 1e-9, 1.0 / rate_hz)


def play_on_board(board: XArmBoard, calibration: XArmCalibration, names: Sequence[str],
                  trajectory: Sequence[tuple[float, np.ndarray]], start: np.ndarray,
                  rate_hz: float, clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> np.ndarray:
    """Stream the trajectory as MOVE segments; joint readings (T, J) at the sample times."""
    times = _sample_times(trajectory[-1][0], rate_hz)
    segments = [(0.0 if k == 0 else trajectory[k - 1][0], t, q)
                for k, (t, q) in enumerate(trajectory)]
    servo_ids = [calibration.joints[n].servo_id for n in names]
    readings = np.empty((len(times), len(names)))
    t0, next_segment = clock(), 0
    for i, t in enumerate(times):
        while clock() - t0 < t:
            if next_segment < len(segments) and clock() - t0 >= segments[next_segment][0]:
                break
            sleep(0.002)
        while next_segment < len(segments) and clock() - t0 >= segments[next_segment][0]:
            begin, end, q = segments[next_segment]
            board.move({s: calibration.joints[n].to_units(v)
                        for s, n, v in zip(servo_ids, names, q)}, end - begin)
            next_segment += 1
        while clock() - t0 < t:
            sleep(0.002)
        units = board.read_positions(servo_ids)
        readings[i] = [calibration.joints[n].to_rad(units[s]) for s, n in zip(servo_ids, names)]
    return readings


def play_in_sim(robot, trajectory: Sequence[tuple[float, np.ndarray]], start: np.ndarray,
                rate_hz: float) -> np.ndarray:
    """The same trajectory as motor setpoints over simulated time; readings (T, J)."""
    sim = robot.sim
    times = _sample_times(trajectory[-1][0], rate_hz)
    knots = np.array([0.0] + [t for t, _ in trajectory])
    points = np.vstack([start] + [q for _, q in trajectory])
    readings = np.empty((len(times), len(start)))
    t = 0.0
    for i, sample in enumerate(times):
        while t < sample - 1e-9:
            setpoint = np.array([np.interp(t, knots, points[:, j]) for j in range(len(start))])
            robot.set_arm_targets(setpoint)
            sim.step(1)
            t += sim.time_step_s
        readings[i] = robot.read_arm_joints()
    return readings


def compare(names: Sequence[str], real: np.ndarray, simulated: np.ndarray,
            rest_samples: int) -> list[JointReport]:
    diff = real - simulated
    rest = diff[-rest_samples:].mean(axis=0)
    return [JointReport(n, float(np.sqrt(np.mean(diff[:, j] ** 2))),
                        float(np.abs(diff[:, j]).max()), float(rest[j]))
            for j, n in enumerate(names)]


def twin_check(board: XArmBoard, calibration: XArmCalibration, robot_config,
               trajectories: list[list[tuple[float, np.ndarray]]] | None = None,
               rate_hz: float = 10.0, **board_timing) -> list[JointReport]:
    """Play every trajectory on the board and in pybullet from the arm's current pose (the
    simulated arm starts there too); one report per joint over all of them."""
    from q_grasp.sim import BulletSim, SimRobot

    names = list(robot_config.arm_joint_names)
    servo_ids = [calibration.joints[n].servo_id for n in names]
    with BulletSim(seed=0) as sim:
        robot = SimRobot(sim, robot_config)
        trajectories = trajectories or default_trajectories(
            robot_config.home_positions, robot.arm_lower, robot.arm_upper)
        real_all, sim_all, rest = [], [], max(1, int(SETTLE_S * rate_hz / 2))
        for trajectory in trajectories:
            units = board.read_positions(servo_ids)
            start = np.array([calibration.joints[n].to_rad(units[s])
                              for s, n in zip(servo_ids, names)])
            robot.teleport_arm(start)
            real_all.append(play_on_board(board, calibration, names, trajectory, start,
                                          rate_hz, **board_timing))
            sim_all.append(play_in_sim(robot, trajectory, start, rate_hz))
        reports = [compare(names, r, s, rest) for r, s in zip(real_all, sim_all)]
    # Over all trajectories: the worst of each measure per joint.
    return [JointReport(n, max(r[j].rms_rad for r in reports), max(r[j].max_rad for r in reports),
                        max((r[j].rest_offset_rad for r in reports), key=abs))
            for j, n in enumerate(names)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m q_grasp.hardware.twin_check",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibration", default="", help="xArm calibration YAML")
    parser.add_argument("--device", choices=["hid", "fake"], default="hid")
    parser.add_argument("--serial", default="")
    parser.add_argument("--image", default="", help="a camera frame with the board on the table")
    parser.add_argument("--camera-calibration", default="")
    parser.add_argument("--board", default="6x4")
    parser.add_argument("--square", type=float, default=0.015)
    parser.add_argument("--board-centre", default="0.13,0.0")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)

    from q_grasp.hardware.fake_board import FakeXArmBoard
    from q_grasp.hardware.xarm import open_hid_device
    from q_grasp.kinematics.urdf import parse_urdf
    from q_grasp.robot_config import RobotConfig

    robot = RobotConfig()
    try:
        if args.calibration:
            calibration = XArmCalibration.from_yaml(args.calibration, robot.arm_joint_names)
        else:
            urdf = parse_urdf(robot.urdf_path)
            calibration = XArmCalibration.default(robot.arm_joint_names, {
                n: (urdf.joints[n].lower, urdf.joints[n].upper) for n in robot.arm_joint_names})
        if args.device == "fake":
            device = FakeXArmBoard(calibration.servo_ids, initial_units={
                calibration.joints[n].servo_id: calibration.joints[n].to_units(q)
                for n, q in zip(robot.arm_joint_names, robot.home_positions)})
        else:
            device = open_hid_device(args.serial)
        board = XArmBoard(device)
        reports = twin_check(board, calibration, robot)
        board.close()
        camera = None
        if args.image:
            camera = _camera_error(args)
    except (ValueError, XArmError) as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"joints": [asdict(r) for r in reports],
                          "camera_reprojection_px": camera}, indent=1))
        return 0
    print(f"{'joint':<22}{'RMS (deg)':>10}{'max (deg)':>10}{'at rest (deg)':>15}")
    for r in reports:
        print(f"{r.joint:<22}{np.degrees(r.rms_rad):>10.2f}{np.degrees(r.max_rad):>10.2f}"
              f"{np.degrees(r.rest_offset_rad):>15.2f}")
    if camera is not None:
        print(f"camera reprojection error: {camera:.2f} px")
    return 0


def _camera_error(args: argparse.Namespace) -> float:
    import cv2

    from q_grasp.hardware.camera import load_camera_calibration
    from q_grasp.hardware.extrinsics import Board, camera_pose, find_corners

    columns, rows = (int(v) for v in args.board.lower().split("x"))
    cx, cy = (float(v) for v in args.board_centre.split(","))
    board = Board(columns, rows, args.square, (cx, cy, 0.0))
    image = cv2.imread(args.image)
    if image is None:
        raise ValueError(f"{args.image}: not an image OpenCV can read")
    intrinsics = load_camera_calibration(args.camera_calibration)
    corners = find_corners(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), board)
    return camera_pose(corners, board, intrinsics.K, intrinsics.D).reprojection_error_px


if __name__ == "__main__":
    sys.exit(main())
