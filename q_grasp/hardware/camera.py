"""A USB camera (or a video file) as the policy's colour camera, without ROS: the ROS
camera_calibration YAML (what `ros2 run camera_calibration cameracalibrator` writes), and the
centre crop + resize to the network's image size with the intrinsics that follow it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml


@dataclass
class CameraCalibration:
    """Intrinsics of the full camera image."""

    width: int
    height: int
    K: np.ndarray
    """3x3 camera matrix."""
    D: np.ndarray
    """Distortion coefficients."""
    distortion_model: str = "plumb_bob"
    camera_name: str = "camera"

    def info(self) -> dict[str, Any]:
        """The dict q_grasp.nodes.convert.camera_info_msg takes (P = [K | 0], R = I)."""
        return {"width": self.width, "height": self.height, "K": self.K,
                "P": np.hstack([self.K, np.zeros((3, 1))]), "D": self.D, "R": np.eye(3),
                "distortion_model": self.distortion_model}


def _matrix(data: dict, key: str, rows: int, cols: int | None, path: Path) -> np.ndarray:
    entry = data.get(key)
    if not isinstance(entry, dict) or "data" not in entry:
        raise ValueError(f"camera calibration {path}: {key}: missing (a mapping with rows, "
                         f"cols, data)")
    values = np.asarray(entry["data"], np.float64)
    if cols is not None and values.size != rows * cols:
        raise ValueError(f"camera calibration {path}: {key}: {values.size} values, expected "
                         f"{rows * cols}")
    if not np.isfinite(values).all():
        raise ValueError(f"camera calibration {path}: {key}: values must be finite")
    return values.reshape(rows, cols) if cols is not None else values


def load_camera_calibration(path: str | Path) -> CameraCalibration:
    """Read a ROS camera_calibration YAML (ValueError naming the file and field)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"camera calibration {path}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"camera calibration {path}: expected a mapping")
    for key in ("image_width", "image_height"):
        if not isinstance(data.get(key), int) or data[key] <= 0:
            raise ValueError(f"camera calibration {path}: {key}: must be a positive integer, "
                             f"got {data.get(key)!r}")
    K = _matrix(data, "camera_matrix", 3, 3, path)
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"camera calibration {path}: camera_matrix: focal lengths must be > 0")
    D = _matrix(data, "distortion_coefficients", 1, None, path)
    return CameraCalibration(int(data["image_width"]), int(data["image_height"]), K, D,
                             str(data.get("distortion_model", "plumb_bob")),
                             str(data.get("camera_name", "camera")))


def crop_and_resize(image: np.ndarray, K: np.ndarray, out_width: int, out_height: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The largest centred crop of ``image`` with the output's aspect ratio, resized to
    ``out_width x out_height`` (area averaging), and the camera matrix of the result."""
    import cv2

    h, w = image.shape[:2]
    scale = min(w / out_width, h / out_height)
    crop_w, crop_h = round(out_width * scale), round(out_height * scale)
    x0, y0 = (w - crop_w) // 2, (h - crop_h) // 2
    cropped = image[y0:y0 + crop_h, x0:x0 + crop_w]
    resized = cv2.resize(cropped, (out_width, out_height), interpolation=cv2.INTER_AREA)
    K_out = np.asarray(K, np.float64).copy()
    K_out[0, 2] -= x0
    K_out[1, 2] -= y0
    K_out[0, :] *= out_width / crop_w
    K_out[1, :] *= out_height / crop_h
    return resized, K_out
