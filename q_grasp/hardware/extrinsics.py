"""Where the camera is: its pose in the robot's world frame from one image of a printed
checkerboard laid flat at a known place on the table (OpenCV corners + solvePnP), written as
the policy's camera parameters.

  python -m q_grasp.hardware.extrinsics --image frame.png --calibration elp.yaml \\
      --board 6x4 --square 0.015 --board-centre 0.13,0.0 --out camera_pose.yaml

A checkerboard looks the same turned by 180 degrees, so the corner order cannot tell which way
the camera faces; the solution above the table whose image-up direction is closest to ``--up``
(the camera's rough image-up direction in the world, default +x as in the shipped
configuration) is taken.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml


@dataclass
class Board:
    """A checkerboard on the table: inner corners (columns x rows), square size, where its
    centre lies and how it is turned (columns along world x at yaw 0)."""

    columns: int
    rows: int
    square_m: float
    centre_m: tuple[float, float, float] = (0.13, 0.0, 0.0)
    yaw_rad: float = 0.0

    def __post_init__(self) -> None:
        if self.columns < 3 or self.rows < 3 or self.columns == self.rows:
            raise ValueError(f"board: needs at least 3x3 inner corners, columns != rows, got "
                             f"{self.columns}x{self.rows}")
        if not 0.0 < self.square_m < 1.0:
            raise ValueError(f"board square: must be in (0, 1) m, got {self.square_m}")

    def corners_world(self) -> np.ndarray:
        """(rows*columns, 3) inner corners in OpenCV's order (row by row)."""
        c, s = np.cos(self.yaw_rad), np.sin(self.yaw_rad)
        along_columns, along_rows = np.array([c, s, 0.0]), np.array([-s, c, 0.0])
        i, j = np.meshgrid(np.arange(self.columns), np.arange(self.rows))
        offsets = ((i.ravel() - (self.columns - 1) / 2)[:, None] * along_columns
                   + (j.ravel() - (self.rows - 1) / 2)[:, None] * along_rows) * self.square_m
        return np.asarray(self.centre_m, np.float64) + offsets


@dataclass
class CameraPose:
    position_m: np.ndarray
    """Optical centre in the world frame."""
    forward: np.ndarray
    """Unit viewing direction (optical z) in the world frame."""
    up: np.ndarray
    """Unit direction that points up in the image (optical -y) in the world frame."""
    reprojection_error_px: float
    """RMS distance between the detected corners and the board's corners projected back."""

    def policy_parameters(self, target_distance_m: float | None = None) -> dict[str, list]:
        """camera_position_m / camera_target_m / camera_up_vector for the policy node; the
        target is where the optical axis meets the table (z = 0) when it does."""
        distance = target_distance_m
        if distance is None:
            distance = (-self.position_m[2] / self.forward[2] if self.forward[2] < -1e-6
                        else 0.25)
        target = self.position_m + distance * self.forward
        return {"camera_position_m": [round(float(v), 5) for v in self.position_m],
                "camera_target_m": [round(float(v), 5) for v in target],
                "camera_up_vector": [round(float(v), 5) for v in self.up]}


def find_corners(image_rgb: np.ndarray, board: Board) -> np.ndarray:
    """Sub-pixel inner corners (N, 2) of the board in an RGB image (ValueError if not found)."""
    import cv2

    gray = cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2GRAY)
    found, corners = cv2.findChessboardCorners(
        gray, (board.columns, board.rows),
        cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
    if not found:
        raise ValueError(f"no {board.columns}x{board.rows} checkerboard found in the image")
    corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1),
                               (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4))
    return corners.reshape(-1, 2)


def camera_pose(corners_px: np.ndarray, board: Board, K: np.ndarray,
                D: np.ndarray | None = None, up_prior: Sequence[float] = (1.0, 0.0, 0.0)
                ) -> CameraPose:
    """The camera's pose from detected corners (see the module docstring on ``up_prior``)."""
    import cv2

    world = board.corners_world()
    grid = np.arange(len(world)).reshape(board.rows, board.columns)
    # The detected order may run along either direction of each board axis: a mirrored order
    # fits a planar board as well as seen from below the table (rejected), a 180-degree turn
    # as well as the true one (resolved by up_prior).
    orders = [grid, grid[::-1, ::-1], grid[::-1, :], grid[:, ::-1]]
    D = np.zeros(5) if D is None else np.asarray(D, np.float64)
    prior = np.asarray(up_prior, np.float64) / np.linalg.norm(up_prior)
    best: tuple[float, CameraPose] | None = None
    for order in orders:
        points = world[order.ravel()]
        ok, rvec, tvec = cv2.solvePnP(points, corners_px.astype(np.float64), K, D,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok:
            continue
        projected, _ = cv2.projectPoints(points, rvec, tvec, K, D)
        error = float(np.sqrt(np.mean(np.sum((projected.reshape(-1, 2) - corners_px) ** 2,
                                             axis=1))))
        R, _ = cv2.Rodrigues(rvec)
        pose = CameraPose(position_m=(-R.T @ tvec).ravel(), forward=R.T @ [0.0, 0.0, 1.0],
                          up=-(R.T @ [0.0, 1.0, 0.0]), reprojection_error_px=error)
        if pose.position_m[2] <= board.centre_m[2] or error > 5.0:
            continue  # under the table, or not this board at all
        score = float(pose.up @ prior)
        if best is None or score > best[0]:
            best = (score, pose)
    if best is None:
        raise ValueError("solvePnP found no camera pose for these corners")
    return best[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m q_grasp.hardware.extrinsics",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True, help="image of the board (PNG/JPEG)")
    parser.add_argument("--calibration", required=True,
                        help="the camera's ROS camera_calibration YAML (same image size)")
    parser.add_argument("--board", required=True, help="inner corners, COLUMNSxROWS (e.g. 6x4)")
    parser.add_argument("--square", type=float, required=True, help="square size (m)")
    parser.add_argument("--board-centre", default="0.13,0.0",
                        help="x,y (m) of the board's centre in the world frame")
    parser.add_argument("--board-yaw", type=float, default=0.0,
                        help="board columns' direction (rad from world +x)")
    parser.add_argument("--up", default="1,0,0",
                        help="the camera's rough image-up direction in the world (x,y,z)")
    parser.add_argument("--out", required=True, help="YAML with the policy's camera parameters")
    args = parser.parse_args(argv)
    try:
        import cv2

        from q_grasp.hardware.camera import load_camera_calibration

        columns, rows = (int(v) for v in args.board.lower().split("x"))
        cx, cy = (float(v) for v in args.board_centre.split(","))
        up = [float(v) for v in args.up.split(",")]
        board = Board(columns, rows, args.square, (cx, cy, 0.0), args.board_yaw)
        image = cv2.imread(args.image)
        if image is None:
            raise ValueError(f"{args.image}: not an image OpenCV can read")
        calibration = load_camera_calibration(args.calibration)
        corners = find_corners(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), board)
        pose = camera_pose(corners, board, calibration.K, calibration.D, up)
    except ValueError as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 2
    params = pose.policy_parameters()
    Path(args.out).write_text(yaml.safe_dump({"/**/policy": {"ros__parameters": params}},
                                             sort_keys=False))
    print(f"camera at {params['camera_position_m']} m, looking at {params['camera_target_m']}; "
          f"reprojection error {pose.reprojection_error_px:.2f} px; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
