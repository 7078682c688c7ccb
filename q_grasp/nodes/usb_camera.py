"""usb_camera: an OpenCV camera (device index) or a video file as the policy's colour camera.

Publishes ``camera/color/image_raw`` (rgb8) and ``camera/color/camera_info`` at ``rate_hz``,
centre-cropped and resized to ``width x height`` (the network's image size), with the
intrinsics of the calibration file (ROS camera_calibration YAML) carried through the crop and
resize. A camera that cannot be opened or yields no frames is reported on ``/diagnostics`` and
retried; the node stays up.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from q_grasp.hardware.camera import CameraCalibration, crop_and_resize, load_camera_calibration
from q_grasp.node_params.usb_camera import UsbCameraConfig
from q_grasp.nodes import qos
from q_grasp.nodes.convert import camera_info_msg, image_msg
from q_grasp.nodes.diagnostics import ERROR, OK, WARN, Diagnostics
from q_grasp.nodes.params import declare_config
from q_grasp.nodes.runtime import run_node


class UsbCameraNode(Node):
    """The camera node (see the module docstring)."""

    def __init__(self, node_name: str = "usb_camera", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        cfg = declare_config(self, UsbCameraConfig).config
        self._config = cfg
        self.diagnostics = Diagnostics(self, f"q_grasp/{self.get_name()}",
                                       hardware_id=f"camera:{cfg.source}")
        self.calibration = (load_camera_calibration(cfg.calibration_file)
                            if cfg.calibration_file else None)
        if self.calibration is None:
            self.get_logger().warn("no calibration_file: publishing a pinhole guess (60 degrees "
                                   "field of view); calibrate the camera for grasping")
        self._image_pub = self.create_publisher(Image, "camera/color/image_raw",
                                                qos.IMAGE_PUBLISHER_QOS)
        self._info_pub = self.create_publisher(CameraInfo, "camera/color/camera_info",
                                               qos.IMAGE_PUBLISHER_QOS)
        self._capture: Any = None
        self._stop = threading.Event()
        self.context.on_shutdown(self._stop.set)
        self._thread = threading.Thread(target=self._loop, name="usb_camera", daemon=True)
        self._thread.start()
        self.get_logger().info(f"usb_camera up: {cfg.source} -> {cfg.width}x{cfg.height} at "
                               f"{cfg.rate_hz:g} Hz")

    def _open(self) -> None:
        import cv2

        cfg = self._config
        source: int | str = int(cfg.source) if cfg.source.isdigit() else cfg.source
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            self.diagnostics.set_level(ERROR, f"cannot open camera {cfg.source}")
            self.diagnostics.count("open_failures")
            return
        if isinstance(source, int):
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.capture_width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.capture_height)
        self._capture = capture
        self.diagnostics.set_level(OK, "capturing")

    def _frame(self) -> np.ndarray | None:
        import cv2

        ok, frame = self._capture.read()
        if not ok and self._config.loop and not self._config.source.isdigit():
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._capture.read()
        if not ok or frame is None:
            return None
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def _calibration_for(self, frame: np.ndarray) -> CameraCalibration:
        h, w = frame.shape[:2]
        calibration = self.calibration
        if calibration is not None and (calibration.width, calibration.height) != (w, h):
            self.diagnostics.set_level(WARN, f"frames are {w}x{h} but the calibration is for "
                                             f"{calibration.width}x{calibration.height}")
        if calibration is None:
            f = (w / 2) / np.tan(np.radians(30.0))
            calibration = CameraCalibration(w, h, np.array([[f, 0, (w - 1) / 2],
                                                            [0, f, (h - 1) / 2], [0, 0, 1]]),
                                            np.zeros(5))
        return calibration

    def _loop(self) -> None:
        cfg = self._config
        period = 1.0 / cfg.rate_hz
        next_open = 0.0
        while not self._stop.is_set():
            started = time.monotonic()
            if self._capture is None:
                if started >= next_open:
                    next_open = started + cfg.reopen_every_s
                    self._open()
                self._stop.wait(0.1)
                continue
            frame = self._frame()
            if frame is None:
                self.diagnostics.count("empty_reads")
                self.diagnostics.set_level(ERROR, f"camera {cfg.source} gives no frames")
                self._capture.release()
                self._capture = None
                continue
            calibration = self._calibration_for(frame)
            image, K = crop_and_resize(frame, calibration.K, cfg.width, cfg.height)
            info = calibration.info() | {"width": cfg.width, "height": cfg.height, "K": K,
                                         "P": np.hstack([K, np.zeros((3, 1))])}
            stamp = self.get_clock().now().to_msg()
            self._image_pub.publish(image_msg(image, "rgb8", stamp=stamp,
                                              frame_id=cfg.frame_id))
            self._info_pub.publish(camera_info_msg(info, stamp=stamp, frame_id=cfg.frame_id))
            self.diagnostics.count("frames")
            self._stop.wait(max(period - (time.monotonic() - started), 0.0))

    def destroy_node(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        if self._capture is not None:
            self._capture.release()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``usb_camera``."""
    return run_node(UsbCameraNode, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
