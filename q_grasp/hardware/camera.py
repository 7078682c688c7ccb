"""A USB camera (or a video file) as the policy's colour camera, without ROS: the ROS
camera_calibration YAML (what `ros2 run camera_calibration cameracalibrator` writes), the
centre crop + resize to the network's image size with the intrinsics that follow it, and the
capture loop of the usb_camera node."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from q_grasp.hardware.health import Health


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


def pinhole_guess(width: int, height: int) -> CameraCalibration:
    """Intrinsics of an uncalibrated camera: a pinhole of 60 degrees horizontal field of view
    centred on the image."""
    f = (width / 2) / np.tan(np.radians(30.0))
    return CameraCalibration(width, height, np.array([[f, 0, (width - 1) / 2],
                                                      [0, f, (height - 1) / 2], [0, 0, 1]]),
                             np.zeros(5))


class CameraStream:
    """An OpenCV camera or a video file read at ``rate_hz`` (the usb_camera node's device side):
    every frame centre-cropped and resized to ``width x height`` and handed to ``publish(rgb,
    camera_info)`` with the intrinsics that follow the crop; a camera that cannot be opened or
    gives no frames is reported to ``health`` and re-opened after reopen_every_s."""

    def __init__(self, config: Any, health: Health,
                 publish: Callable[[np.ndarray, dict[str, Any]], None]) -> None:
        self.config, self.health, self._publish = config, health, publish
        self.calibration = (load_camera_calibration(config.calibration_file)
                            if config.calibration_file else None)
        self._capture: Any = None
        self.stop = threading.Event()

    def _open(self) -> None:
        import cv2

        cfg = self.config
        source: int | str = int(cfg.source) if cfg.source.isdigit() else cfg.source
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            self.health.error(f"cannot open camera {cfg.source}")
            self.health.count("open_failures")
            return
        if isinstance(source, int):
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.capture_width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.capture_height)
        self._capture = capture
        self.health.ok("capturing")

    def _frame(self) -> np.ndarray | None:
        import cv2

        ok, frame = self._capture.read()
        if not ok and self.config.loop and not self.config.source.isdigit():
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._capture.read()
        if not ok or frame is None:
            return None
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def _calibration_for(self, frame: np.ndarray) -> CameraCalibration:
        h, w = frame.shape[:2]
        calibration = self.calibration
        if calibration is None:
            return pinhole_guess(w, h)
        if (calibration.width, calibration.height) != (w, h):
            self.health.warn(f"frames are {w}x{h} but the calibration is for "
                             f"{calibration.width}x{calibration.height}")
        return calibration

    def run(self) -> None:
        """Capture and publish until :meth:`close` (the node's thread)."""
        cfg = self.config
        period = 1.0 / cfg.rate_hz
        next_open = 0.0
        while not self.stop.is_set():
            started = time.monotonic()
            if self._capture is None:
                if started >= next_open:
                    next_open = started + cfg.reopen_every_s
                    self._open()
                self.stop.wait(0.1)
                continue
            frame = self._frame()
            if frame is None:
                self.health.count("empty_reads")
                self.health.error(f"camera {cfg.source} gives no frames")
                self._capture.release()
                self._capture = None
                continue
            calibration = self._calibration_for(frame)
            image, K = crop_and_resize(frame, calibration.K, cfg.width, cfg.height)
            self._publish(image, calibration.info() | {
                "width": cfg.width, "height": cfg.height, "K": K,
                "P": np.hstack([K, np.zeros((3, 1))])})
            self.health.count("frames")
            self.stop.wait(max(period - (time.monotonic() - started), 0.0))

    def close(self, thread: threading.Thread | None = None) -> None:
        """Stop capturing (joining ``thread``) and release the camera."""
        self.stop.set()
        if thread is not None and thread.is_alive():
            thread.join(timeout=5.0)
        if self._capture is not None:
            self._capture.release()
