"""The simulator's pinhole RGB-D camera: a ``q_grasp.kinematics.camera.CameraModel`` whose
intrinsics come from a field of view, rendered by pybullet. The model's conventions hold
(pixel (u, v) = (column, row); optical frame z forward, x right, y down; depth along z)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from q_grasp.kinematics.camera import DEFAULT_FRAME_ID, CameraModel, look_at_rotation
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
    frame_id: str = DEFAULT_FRAME_ID
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


class PinholeCamera(CameraModel):
    """A CameraModel whose intrinsics come from a field of view, that renders RGB-D images
    from a BulletSim."""

    def __init__(self, config: CameraConfig | None = None) -> None:
        cfg = self.config = config if config is not None else CameraConfig()
        width, height = int(cfg.width), int(cfg.height)
        eye = np.asarray(cfg.position, dtype=float)
        rotation = look_at_rotation(cfg.position, cfg.target, cfg.up_vector)
        right, up, forward = rotation[:, 0], -rotation[:, 1], rotation[:, 2]
        # OpenGL matrices (the same ones pybullet.computeViewMatrix/computeProjectionMatrixFOV
        # build), kept in numpy so that the camera model needs no simulator.
        view = np.eye(4)
        view[0, :3], view[1, :3], view[2, :3] = right, up, -forward
        view[:3, 3] = -view[:3, :3] @ eye
        self.view_matrix = view
        t = 1.0 / np.tan(np.deg2rad(cfg.fov_y_deg) / 2.0)
        aspect = width / height
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
        focal = height / 2.0 * t
        K = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0 - 1.0],
                      [0.0, 0.0, 1.0]])
        super().__init__(K, width, height, eye, rotation, cfg.frame_id)

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
