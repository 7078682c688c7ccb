"""The pinhole camera model (numpy only): intrinsics K and a pose in the world, pixels to world
points and back, heights above the table. Built from a simulated camera's field of view
(``q_grasp.sim.camera.PinholeCamera``) or from a sensor_msgs/CameraInfo's K and a known pose.

Conventions: pixel (u, v) = (column, row) with integer coordinates at pixel centres (as in ROS
CameraInfo); the optical frame has z forward, x right (image columns), y down (image rows);
depth is metres along the optical axis (the optical-frame z of the point), not along the ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_FRAME_ID = "camera_color_optical_frame"


def quaternion_xyzw(R: np.ndarray) -> tuple[float, float, float, float]:
    """Rotation matrix -> unit quaternion (x, y, z, w), numerically stable branch."""
    m = np.asarray(R, np.float64)
    trace = np.trace(m)
    if trace > 0.0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4)
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        v = np.zeros(3)
        v[i] = s / 4
        v[j] = (m[j, i] + m[i, j]) / s
        v[k] = (m[k, i] + m[i, k]) / s
        q = (v[0], v[1], v[2], (m[k, j] - m[j, k]) / s)
    norm = float(np.linalg.norm(q))
    return tuple(float(c) / norm for c in q)  # type: ignore[return-value]


def look_at_rotation(position: Sequence[float], target: Sequence[float],
                     up_vector: Sequence[float]) -> np.ndarray:
    """Rotation (3, 3) whose columns are the optical x (right), y (down) and z (forward) axes
    in world coordinates, for a camera at ``position`` looking at ``target``."""
    eye = np.asarray(position, dtype=float)
    forward = np.asarray(target, dtype=float) - eye
    norm = np.linalg.norm(forward)
    if norm < 1e-9:
        raise ValueError("camera target: must differ from camera position")
    forward /= norm
    right = np.cross(forward, np.asarray(up_vector, dtype=float))
    if np.linalg.norm(right) < 1e-9:
        raise ValueError("camera up_vector: must not be parallel to the viewing direction")
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return np.stack([right, -up, forward], axis=1)


class CameraModel:
    """Pixel <-> world for a pinhole camera with intrinsics ``K`` and an optical frame at
    ``position`` with axes ``rotation`` (columns: optical x, y, z in the world frame)."""

    def __init__(self, K: np.ndarray, width: int, height: int, position: Sequence[float],
                 rotation: np.ndarray, frame_id: str = DEFAULT_FRAME_ID) -> None:
        self.K = np.asarray(K, np.float64).reshape(3, 3)
        if not (np.isfinite(self.K).all() and self.K[0, 0] > 0 and self.K[1, 1] > 0):
            raise ValueError("camera K: not a valid intrinsic matrix")
        self.width, self.height = int(width), int(height)
        self.position = np.asarray(position, dtype=float).reshape(3)
        self.rotation = np.asarray(rotation, dtype=float).reshape(3, 3)
        self.frame_id = frame_id
        self.P = np.hstack([self.K, np.zeros((3, 1))])
        # World z of a pixel's back-projection per metre of depth: heightmap in one multiply.
        u, v = np.meshgrid(np.arange(self.width), np.arange(self.height))
        rays = np.stack([(u - self.K[0, 2]) / self.K[0, 0], (v - self.K[1, 2]) / self.K[1, 1],
                         np.ones_like(u, float)], axis=-1)
        self._z_per_depth = (rays @ self.rotation.T)[..., 2]

    @classmethod
    def looking_at(cls, K: np.ndarray, width: int, height: int, position: Sequence[float],
                   target: Sequence[float], up_vector: Sequence[float],
                   frame_id: str = DEFAULT_FRAME_ID) -> CameraModel:
        """A camera with intrinsics ``K`` (e.g. a CameraInfo's) at ``position`` (world, m)
        looking at ``target`` with ``up_vector`` pointing up in the image."""
        return cls(K, width, height, position, look_at_rotation(position, target, up_vector),
                   frame_id)

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    def world_to_pixel(
        self, points: np.ndarray | list[float]
    ) -> tuple[np.ndarray | float, np.ndarray | float, np.ndarray | float]:
        """Project world points (3,) or (N, 3) to (u, v, depth); scalars for a single point."""
        pts = np.asarray(points, dtype=float)
        single = pts.ndim == 1
        pts = pts.reshape(-1, 3)
        pc = (pts - self.position) @ self.rotation  # rows: optical-frame coordinates
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.fx * pc[:, 0] / z + self.cx
            v = self.fy * pc[:, 1] / z + self.cy
        if single:
            return float(u[0]), float(v[0]), float(z[0])
        return u, v, z

    def pixel_to_world(
        self, u: np.ndarray | float, v: np.ndarray | float, depth_m: np.ndarray | float
    ) -> np.ndarray:
        """Back-project pixel(s) at the given depth(s) (m along the optical axis) to world
        points: (3,) for scalars, (..., 3) for arrays (broadcast together)."""
        u, v, d = np.broadcast_arrays(
            np.asarray(u, dtype=float), np.asarray(v, dtype=float),
            np.asarray(depth_m, dtype=float),
        )
        pc = np.stack([(u - self.cx) / self.fx * d, (v - self.cy) / self.fy * d, d], axis=-1)
        return pc @ self.rotation.T + self.position

    def surface_points(self, depth: np.ndarray) -> np.ndarray:
        """World points (H, W, 3) (m) of the surface seen at every pixel of a depth image."""
        v, u = np.mgrid[0:self.height, 0:self.width]
        return self.pixel_to_world(u, v, depth)

    def heightmap(self, depth: np.ndarray) -> np.ndarray:
        """Height above the table (world z) of the surface seen by each pixel, float32 (H, W)."""
        depth = np.asarray(depth, dtype=np.float64)
        if depth.shape != (self.height, self.width):
            raise ValueError(
                f"depth: expected shape {(self.height, self.width)}, got {depth.shape}"
            )
        return (self.position[2] + depth * self._z_per_depth).astype(np.float32)

    def camera_info(self) -> dict[str, Any]:
        """The fields of a sensor_msgs/CameraInfo (no distortion; P = [K | 0])."""
        return {
            "width": self.width,
            "height": self.height,
            "distortion_model": "plumb_bob",
            "D": [0.0] * 5,
            "K": self.K.reshape(-1).tolist(),
            "R": np.eye(3).reshape(-1).tolist(),
            "P": self.P.reshape(-1).tolist(),
            "frame_id": self.frame_id,
        }

    def world_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Optical frame pose in the world: position (3,) and rotation matrix (3, 3)."""
        return self.position.copy(), self.rotation.copy()
