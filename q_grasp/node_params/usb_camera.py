"""Parameters of the usb_camera node (an OpenCV camera or a video file), without ROS."""

from __future__ import annotations

from dataclasses import dataclass

from q_grasp.config import check_each


@dataclass
class UsbCameraConfig:
    """Parameters of the usb_camera node."""

    source: str = "0"
    """Camera device index (digits, e.g. "0" for /dev/video0) or a video file path."""
    calibration_file: str = ""
    """ROS camera_calibration YAML of the full image; empty: a pinhole guess (60 degrees
    horizontal field of view), with a warning."""
    width: int = 64
    """Published image width (the network's image size)."""
    height: int = 64
    """Published image height."""
    capture_width: int = 640
    """Requested capture width of a device (the ELP webcam: 640x480 at up to 30 fps)."""
    capture_height: int = 480
    """Requested capture height of a device."""
    rate_hz: float = 10.0
    """Frames published per second."""
    loop: bool = True
    """A video file starts over at its end."""
    frame_id: str = "camera_color_optical_frame"
    """Frame of the published images."""
    reopen_every_s: float = 2.0
    """How often to try opening a camera that failed or stopped giving frames."""

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("source: must be a device index or a video file")
        check_each(self, ("width", "height", "capture_width", "capture_height"),
                   lambda v: 1 <= v <= 8192, "must be in [1, 8192]")
        check_each(self, ("rate_hz", "reopen_every_s"), lambda v: v > 0.0, "must be > 0")
