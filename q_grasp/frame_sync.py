"""Camera frames without ROS: colour, depth and intrinsics that arrive on separate streams,
paired by their stamps into one :class:`CameraFrame`, and the wait for the first frame taken
after a given time of the arm's clock (the policy node decides on frames of a world at rest).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from q_grasp.joint_feedback import ArmStoppedError, ArmTimeoutError
from q_grasp.kinematics.camera import CameraModel


class ArmClock(Protocol):
    """What a frame wait needs of the arm: its clock and its restarts (RosArm has them)."""

    def arm_time_s(self) -> float: ...

    @property
    def restarts(self) -> int: ...

    def check_restart(self, restarts: int) -> None: ...


@dataclass
class CameraFrame:
    """One colour + depth pair with the camera model that maps its pixels to the world."""

    rgb: np.ndarray
    depth: np.ndarray
    heightmap: np.ndarray
    stamp_ns: int
    stamp: Any
    """The colour image's stamp as it came (a ROS Time over ROS), for what is drawn on it."""
    frame_id: str
    received_monotonic: float
    camera: CameraModel


@dataclass(frozen=True)
class FrameTimeouts:
    """How long a frame wait lasts."""

    timeout_s: float
    """Arm time past the requested stamp (or now, if later) before the wait gives up..."""
    min_wall_s: float
    """...but never before this much wall-clock time (a fast simulator's still world)."""
    max_wall_s: float
    """Wall-clock time after which the wait gives up whatever the arm's clock says."""


class FrameSync:
    """The latest colour image, depth image and camera model, and waits for a frame.

    ``camera_pose`` is (position, target, up) of the camera in the world; ``table_depth``,
    when given, stands in for a depth stream (a colour-only camera: the table plane's depth
    for a camera model). ``stop`` ends every wait with ArmStoppedError.
    """

    def __init__(self, image_hw: tuple[int, int], camera_pose: tuple[Any, Any, Any], *,
                 max_skew_s: float, stop: threading.Event,
                 table_depth: Callable[[CameraModel], np.ndarray] | None = None) -> None:
        self.image_hw = image_hw
        self._camera_pose = camera_pose
        self._skew_ns = int(max_skew_s * 1e9)
        self._stop = stop
        self._table_depth = table_depth
        self._cond = threading.Condition()
        self._color: tuple[int, Any, np.ndarray, str, float] | None = None
        self._depth: tuple[int, np.ndarray, float] | None = None
        self._camera: CameraModel | None = None
        self._camera_key: tuple | None = None

    def set_color(self, stamp_ns: int, stamp: Any, rgb: np.ndarray, frame_id: str) -> None:
        with self._cond:
            self._color = (stamp_ns, stamp, rgb, frame_id, time.monotonic())
            self._cond.notify_all()

    def set_depth(self, stamp_ns: int, depth: np.ndarray) -> None:
        with self._cond:
            self._depth = (stamp_ns, depth, time.monotonic())
            self._cond.notify_all()

    def set_intrinsics(self, K: np.ndarray, width: int, height: int) -> None:
        """A camera_info's K: a new camera model when it changed."""
        key = tuple(np.round(np.asarray(K, float).ravel(), 9))
        if key == self._camera_key:
            return
        camera = CameraModel.looking_at(K, width, height, *self._camera_pose)
        with self._cond:
            self._camera, self._camera_key = camera, key
            self._cond.notify_all()

    @property
    def last_color_monotonic(self) -> float | None:
        """time.monotonic() of the latest colour image (None before the first)."""
        color = self._color
        return None if color is None else color[4]

    def _complete(self, after_ns: int) -> tuple[tuple, tuple, CameraModel] | None:
        """With the condition held: the latest colour, depth and camera if they form a frame
        stamped at or after ``after_ns`` (less the skew)."""
        color, depth, camera = self._color, self._depth, self._camera
        if self._table_depth is not None and camera is not None and color is not None:
            depth = (color[0], self._table_depth(camera), color[4])
        if (color is not None and depth is not None and camera is not None
                and abs(color[0] - depth[0]) <= self._skew_ns
                and min(color[0], depth[0]) >= after_ns - self._skew_ns):
            return color, depth, camera
        return None

    def wait(self, after_s: float, arm: ArmClock, timeouts: FrameTimeouts) -> CameraFrame:
        """The first complete colour + depth frame stamped at or after ``after_s`` (arm
        clock). ArmTimeoutError after ``timeouts.timeout_s`` of arm time past ``after_s`` (and
        at least ``min_wall_s`` of wall time) without one; ArmRestartedError if the arm's clock
        goes back meanwhile (a new arm's frames are stamped in its own clock, before
        ``after_s``)."""
        after_ns = int(after_s * 1e9)
        deadline_s = max(arm.arm_time_s(), after_s) + timeouts.timeout_s
        start = time.monotonic()
        wall_min, wall_deadline = start + timeouts.min_wall_s, start + timeouts.max_wall_s
        restarts = arm.restarts
        with self._cond:
            while True:
                if self._stop.is_set():
                    raise ArmStoppedError("shutting down")
                arm.check_restart(restarts)
                found = self._complete(after_ns)
                if found is not None:
                    break
                wall = time.monotonic()
                if (arm.arm_time_s() > deadline_s and wall >= wall_min) or wall > wall_deadline:
                    h, w = self.image_hw
                    raise ArmTimeoutError(
                        f"no camera frame (colour, depth and camera_info of {h}x{w}) stamped "
                        f"after {after_s:.2f} s within {timeouts.timeout_s} s")
                self._cond.wait(0.05)
        (stamp_ns, stamp, rgb, frame_id, received), depth, camera = found
        return CameraFrame(rgb=rgb, depth=depth[1], heightmap=camera.heightmap(depth[1]),
                           stamp_ns=stamp_ns, stamp=stamp, frame_id=frame_id,
                           received_monotonic=max(received, depth[2]), camera=camera)
