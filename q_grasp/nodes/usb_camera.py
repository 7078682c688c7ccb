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
from typing import Any

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from q_grasp.hardware.camera import CameraStream
from q_grasp.node_params.usb_camera import UsbCameraConfig
from q_grasp.nodes import qos
from q_grasp.nodes.convert import camera_info_msg, image_msg
from q_grasp.nodes.diagnostics import Diagnostics
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
        self.camera = CameraStream(cfg, self.diagnostics, self._publish)
        if self.camera.calibration is None:
            self.get_logger().warn("no calibration_file: publishing a pinhole guess (60 degrees "
                                   "field of view); calibrate the camera for grasping")
        self._image_pub = self.create_publisher(Image, "camera/color/image_raw",
                                                qos.IMAGE_PUBLISHER_QOS)
        self._info_pub = self.create_publisher(CameraInfo, "camera/color/camera_info",
                                               qos.IMAGE_PUBLISHER_QOS)
        self.context.on_shutdown(self.camera.stop.set)
        self._thread = threading.Thread(target=self.camera.run, name="usb_camera", daemon=True)
        self._thread.start()
        self.get_logger().info(f"usb_camera up: {cfg.source} -> {cfg.width}x{cfg.height} at "
                               f"{cfg.rate_hz:g} Hz")

    def _publish(self, image: np.ndarray, info: dict[str, Any]) -> None:
        stamp, frame_id = self.get_clock().now().to_msg(), self._config.frame_id
        self._image_pub.publish(image_msg(image, "rgb8", stamp=stamp, frame_id=frame_id))
        self._info_pub.publish(camera_info_msg(info, stamp=stamp, frame_id=frame_id))

    def destroy_node(self) -> None:
        self.camera.close(self._thread)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``usb_camera``."""
    return run_node(UsbCameraNode, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
