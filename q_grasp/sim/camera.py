"""A pinhole RGB-D camera: pybullet rendering plus the intrinsics/extrinsics to map pixels to
world points and back (the same K and P a sensor_msgs/CameraInfo carries).

Conventions: pixel (u, v) = (column, row) with integer coordinates at pixel centres (as in ROS
CameraInfo); the optical frame has z forward, x right (image columns), y down (image rows);
depth is metres along the optical axis (the optical-frame z of the point), not along the ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from q_grasp.sim.bullet import BulletSim
from q_grasp.sim.quiet import pybullet


@dataclass
class CameraConfig:
    """Image size, field of view and pose of a pinhole camera (defaults: top-down over the
    default grasp workspace)."""

    width: int = 64
    """Image width in pixels."""
    height: int = 64
    """Image height in pixels."""
    fov_y_deg: float = 34.0
    """Vertical field of view (degrees). 34 deg from 0.25 m sees ~0.15 m of table, the default
    workspace (0.08 x 0.10 m) plus a margin for objects near its edges."""
    position: tuple[float, float, float] = (0.13, 0.0, 0.25)
    """Camera centre in the world frame (m)."""
    target: tuple[float, float, float] = (0.13, 0.0, 0.0)
    """World point the optical axis goes through (m)."""
    up_vector: tuple[float, float, float] = (1.0, 0.0, 0.0)
    """World direction that appears upwards in the image. (1, 0, 0) puts the robot, which
    stands at x = 0, at the bottom of the image reaching up."""
    near_m: float = 0.05
    """Near clipping distance (m); closer surfaces are not rendered."""
    far_m: float = 1.0
    """Far clipping distance (m); the depth of empty pixels."""
    frame_id: str = "camera_color_optical_frame"
    """TF frame of the optical frame, reported in camera_info()."""

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"camera {name}: must be an integer >= 1 pixels, got {value}")
        if not 1.0 <= self.fov_y_deg <= 170.0:
            raise ValueError(
                f"camera fov_y_deg: must be in [1, 170] degrees, got {self.fov_y_deg}"
            )
        if not 0.0 < self.near_m < self.far_m:
            raise ValueError(
                f"camera near_m/far_m: need 0 < near_m < far_m, got {self.near_m}, {self.far_m}"
            )
        forward = np.subtract(self.target, self.position)
        if np.linalg.norm(forward) < 1e-9:
            raise ValueError("camera target: must differ from camera position")
        if np.linalg.norm(np.cross(forward, self.up_vector)) < 1e-9 * np.linalg.norm(forward):
            raise ValueError("camera up_vector: must not be parallel to the viewing direction")


class PinholeCamera:
    """Renders RGB-D images from a BulletSim and converts between pixels and world points."""

    def __init__(self, config: CameraConfig | None = None) -> None:
        self.config = config if config is not None else CameraConfig()
        cfg = self.config
        self.width = int(cfg.width)
        self.height = int(cfg.height)
        eye = np.asarray(cfg.position, dtype=float)
        forward = np.asarray(cfg.target, dtype=float) - eye
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, np.asarray(cfg.up_vector, dtype=float))
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        self.position = eye
        # Columns: optical x (right), y (down), z (forward) in world coordinates.
        self.rotation = np.stack([right, -up, forward], axis=1)
        # OpenGL matrices (the same ones pybullet.computeViewMatrix/computeProjectionMatrixFOV
        # build), kept in numpy so that the camera model needs no simulator.
        view = np.eye(4)
        view[0, :3], view[1, :3], view[2, :3] = right, up, -forward
        view[:3, 3] = -view[:3, :3] @ eye
        self.view_matrix = view
        t = 1.0 / np.tan(np.deg2rad(cfg.fov_y_deg) / 2.0)
        aspect = self.width / self.height
        n, f = cfg.near_m, cfg.far_m
        proj = np.zeros((4, 4))
        proj[0, 0] = t / aspect
        proj[1, 1] = t
        proj[2, 2] = (f + n) / (n - f)
        proj[2, 3] = 2.0 * f * n / (n - f)
        proj[3, 2] = -1.0
        self.projection_matrix = proj
        # NDC [-1, 1] spans the image, so the focal length (pixels) is the same on both axes.
        # An ideal rasteriser samples pixel centres, giving c = (size - 1) / 2; pybullet's
        # TinyRenderer (the one used here, in DIRECT and GUI alike) samples pixel column i at
        # window x = i and flips rows so that row j is window y = H - 1 - j, i.e. half a pixel
        # right and up of the ideal centres. Measured on rendered boxes (test_camera.py):
        # cx = W / 2 and cy = H / 2 - 1 put every box edge on the right pixel.
        focal = self.height / 2.0 * t
        self.K = np.array(
            [[focal, 0.0, self.width / 2.0], [0.0, focal, self.height / 2.0 - 1.0],
             [0.0, 0.0, 1.0]]
        )
        self.P = np.hstack([self.K, np.zeros((3, 1))])
        # World z of a pixel's back-projection per metre of depth: heightmap in one multiply.
        u, v = np.meshgrid(np.arange(self.width), np.arange(self.height))
        rays = np.stack(
            [(u - self.K[0, 2]) / focal, (v - self.K[1, 2]) / focal, np.ones_like(u, float)],
            axis=-1,
        )
        self._z_per_depth = (rays @ self.rotation.T)[..., 2]

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

    def linearize_depth(self, depth_buffer: np.ndarray) -> np.ndarray:
        """Turn an OpenGL depth buffer (values in [0, 1]) into metres along the optical axis."""
        n, f = self.config.near_m, self.config.far_m
        d = np.asarray(depth_buffer, dtype=np.float64)
        return (f * n / (f - (f - n) * d)).astype(np.float32)

    def render(self, sim: BulletSim, lighting: dict | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Render (rgb uint8 (H, W, 3), depth float32 (H, W) in metres along the optical axis).
        ``lighting``: pybullet's light keywords (lightDirection, lightColor,
        lightAmbientCoeff, lightDiffuseCoeff, lightSpecularCoeff), e.g. for randomisation."""
        rgb, depth, _ = self.render_with_segmentation(sim, lighting)
        return rgb, depth

    def render_with_segmentation(
        self, sim: BulletSim, lighting: dict | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like ``render`` plus pybullet's segmentation mask (body id per pixel, -1 = none);
        the mask is simulator ground truth, for evaluation and tests only."""
        _, _, rgba, depth_buffer, seg = sim.client.getCameraImage(
            self.width,
            self.height,
            viewMatrix=self.view_matrix.T.reshape(-1).tolist(),
            projectionMatrix=self.projection_matrix.T.reshape(-1).tolist(),
            shadow=0,
            # Always TinyRenderer: the intrinsics above are measured for it, and it renders
            # the same images with or without a GUI.
            renderer=pybullet.ER_TINY_RENDERER,
            **(lighting or {}),
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(self.height, self.width, 4)[..., :3]
        depth = self.linearize_depth(np.asarray(depth_buffer).reshape(self.height, self.width))
        seg = np.asarray(seg).reshape(self.height, self.width)
        # Low bits hold the body id when pybullet also encodes link indices.
        seg = np.where(seg >= 0, seg & ((1 << 24) - 1), -1).astype(np.int32)
        return np.ascontiguousarray(rgb), depth, seg

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
            "frame_id": self.config.frame_id,
        }

    def world_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Optical frame pose in the world: position (3,) and rotation matrix (3, 3)."""
        return self.position.copy(), self.rotation.copy()
