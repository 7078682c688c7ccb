"""ROS 2 messages read as numpy arrays, without rclpy: joint states, images, camera info,
trajectories and wire blobs in UInt8MultiArray. The readers take any object with the message's
fields (what rclpy hands a callback, or a test's stand-in), and every one validates and raises
:class:`MessageError` with a short reason code, so a node can log, count and drop a bad message
and keep running. Building messages is the nodes' (q_grasp.nodes.convert).
"""

from __future__ import annotations

import array
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from q_grasp.motion import Trajectory
from q_grasp.wire import WireError
from q_grasp.wire.errors import REASON_SCHEMA, REASON_TYPE


class MessageError(ValueError):
    """A message failed validation. ``reason`` is a short code for diagnostics counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------------- bytes


def uint8_array(data: Any) -> array.array:
    """Copy any buffer into the array.array('B') that rosidl stores uint8[] fields in.

    Assigning bytes or a list to a uint8[] field makes rosidl check every element in Python
    (seconds for a megabyte); an array.array('B') is taken as is, so this is one memcpy.
    """
    out = array.array("B")
    out.frombytes(data if isinstance(data, (bytes, bytearray)) else memoryview(data).cast("B"))
    return out


def msg_to_blob(msg: Any, schema: str) -> memoryview:
    """The blob inside a UInt8MultiArray (zero copy), after checking the schema label.

    Raises WireError("schema") when the label names another schema, so a weights message on
    the transitions topic is refused before its payload is looked at.
    """
    layout = getattr(msg, "layout", None)
    if layout is None or not hasattr(msg, "data"):
        raise WireError(REASON_TYPE, f"expected UInt8MultiArray, got {type(msg).__name__}")
    dims = layout.dim
    if len(dims) != 1 or dims[0].label != schema:
        got = dims[0].label if dims else None
        raise WireError(REASON_SCHEMA, f"layout label {got!r}, expected {schema!r}")
    if layout.data_offset != 0:
        raise WireError(REASON_SCHEMA, "layout.data_offset must be 0")
    data = msg.data
    if isinstance(data, array.array):
        return memoryview(data)
    return memoryview(bytes(data))


# --------------------------------------------------------------------------------- time


def stamp_ns(msg: Any) -> int:
    """A stamped message's header stamp in integer nanoseconds."""
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def stamp_s(msg: Any) -> float:
    """A stamped message's header stamp in seconds."""
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


RESET_STAMP_PREFIX = "reset stamp "
"""sim_arm's ~/reset_scene answers end with this and the reset's time in seconds, on the clock
of its message stamps (std_srvs/Trigger has only a message string to carry it): the stamp of
the last tick before the reset, so every message stamped later shows the new scene."""


def reset_stamp_s(message: str) -> float | None:
    """The reset time in a ~/reset_scene answer (None: the answer does not say)."""
    _, sep, tail = message.rpartition(RESET_STAMP_PREFIX)
    if not sep:
        return None
    try:
        value = float(tail.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def duration_to_s(duration: Any) -> float:
    """builtin_interfaces/Duration -> seconds."""
    return duration.sec + duration.nanosec * 1e-9


# --------------------------------------------------------------------------------- joints


def joint_positions(msg: Any, names: Sequence[str]) -> np.ndarray:
    """Positions of ``names`` (in that order) from a JointState that may list more joints,
    in any order. MessageError if a joint is missing, lengths disagree or a value is NaN."""
    if len(msg.position) != len(msg.name):
        raise MessageError("size_mismatch", f"{len(msg.name)} names but "
                                            f"{len(msg.position)} positions")
    index = {name: i for i, name in enumerate(msg.name)}
    missing = [n for n in names if n not in index]
    if missing:
        raise MessageError("missing_joint", f"joint state lacks {missing}")
    positions = np.asarray(msg.position, np.float64)[[index[n] for n in names]]
    if not np.isfinite(positions).all():
        raise MessageError("non_finite", "joint positions contain NaN or infinity")
    return positions


# --------------------------------------------------------------------------------- images

_COLOR_ENCODINGS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
_DEPTH_ENCODINGS = {"32FC1": np.float32, "16UC1": np.uint16}
_PUBLISHED_ENCODINGS = {"rgb8": (np.uint8, 3), "mono8": (np.uint8, 2), "32FC1": (np.float32, 2)}


def image_fields(image: np.ndarray, encoding: str) -> dict[str, Any]:
    """The fields of a sensor_msgs/Image (all but the header) for rgb8 (H,W,3 uint8), mono8
    (H,W uint8) and 32FC1 (H,W float32, metres for depth per REP-118)."""
    if encoding not in _PUBLISHED_ENCODINGS:
        raise ValueError(f"encoding: must be one of {sorted(_PUBLISHED_ENCODINGS)}, got "
                         f"{encoding!r}")
    dtype, ndim = _PUBLISHED_ENCODINGS[encoding]
    if image.dtype != dtype or image.ndim != ndim or (ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"image: {encoding} needs a {dtype.__name__} array of rank {ndim}, "
                         f"got {image.dtype} {image.shape}")
    image = np.ascontiguousarray(image)
    return dict(height=int(image.shape[0]), width=int(image.shape[1]), encoding=encoding,
                is_bigendian=int(sys.byteorder == "big"), step=int(image.strides[0]),
                data=uint8_array(image))


def _image_rows(msg: Any, row_bytes: int) -> np.ndarray:
    if msg.height <= 0 or msg.width <= 0:
        raise MessageError("bad_size", f"image is {msg.width}x{msg.height}")
    if msg.step < row_bytes:
        raise MessageError("bad_size", f"step {msg.step} < {row_bytes} bytes per row")
    if len(msg.data) != msg.step * msg.height:
        raise MessageError("bad_size", f"{len(msg.data)} data bytes, expected step*height = "
                                       f"{msg.step * msg.height}")
    data = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
    return data[:, :row_bytes]


def _check_shape(msg: Any, expected_hw: tuple[int, int] | None) -> None:
    if expected_hw is not None and (msg.height, msg.width) != tuple(expected_hw):
        raise MessageError("wrong_size", f"image is {msg.height}x{msg.width}, expected "
                                         f"{expected_hw[0]}x{expected_hw[1]}")


def color_image_to_numpy(msg: Any, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> RGB uint8 (H, W, 3), a copy."""
    channels = _COLOR_ENCODINGS.get(msg.encoding)
    if channels is None:
        raise MessageError("encoding", f"color image encoding {msg.encoding!r} not in "
                                       f"{sorted(_COLOR_ENCODINGS)}")
    rows = _image_rows(msg, msg.width * channels)
    _check_shape(msg, expected_hw)
    pixels = rows.reshape(msg.height, msg.width, channels)
    if msg.encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    if msg.encoding.startswith("bgr"):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])


def depth_image_to_numpy(msg: Any, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """sensor_msgs/Image depth -> float32 metres (H, W), a copy. 32FC1 is metres; 16UC1 is
    millimetres (REP-118), and its 0 ("no reading") becomes NaN like 32FC1's invalid pixels."""
    dtype = _DEPTH_ENCODINGS.get(msg.encoding)
    if dtype is None:
        raise MessageError("encoding", f"depth image encoding {msg.encoding!r} not in "
                                       f"{sorted(_DEPTH_ENCODINGS)}")
    rows = _image_rows(msg, msg.width * np.dtype(dtype).itemsize)
    _check_shape(msg, expected_hw)
    order = ">" if msg.is_bigendian else "<"
    values = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(order))
    values = values.reshape(msg.height, msg.width)
    if dtype is np.uint16:
        depth = values.astype(np.float32) * np.float32(1e-3)
        depth[values == 0] = np.nan
        return depth
    return values.astype(np.float32)  # native byte order, fresh memory


# --------------------------------------------------------------------------------- camera


def camera_info_to_dict(msg: Any) -> dict[str, Any]:
    """sensor_msgs/CameraInfo -> dict with K (3,3), P (3,4) numpy arrays; MessageError when
    the intrinsics are unusable (zero focal length, NaN, zero size)."""
    K = np.asarray(msg.k, np.float64).reshape(3, 3)
    P = np.asarray(msg.p, np.float64).reshape(3, 4)
    if msg.width <= 0 or msg.height <= 0:
        raise MessageError("bad_size", f"camera_info is {msg.width}x{msg.height}")
    if not (np.isfinite(K).all() and np.isfinite(P).all()) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise MessageError("bad_intrinsics", "camera_info K/P are not valid intrinsics")
    return {"width": int(msg.width), "height": int(msg.height), "K": K, "P": P,
            "D": np.asarray(msg.d, np.float64), "R": np.asarray(msg.r, np.float64).reshape(3, 3),
            "distortion_model": msg.distortion_model, "frame_id": msg.header.frame_id}


# --------------------------------------------------------------------------------- trajectories


def parse_joint_trajectory(msg: Any, lower: Mapping[str, float], upper: Mapping[str, float],
                           *, tolerance: float = 1e-6, max_points: int = 10000) -> Trajectory:
    """Validate a JointTrajectory against the known joints and their position limits.

    ``lower``/``upper`` map every commandable joint name to its limits. Rejections (with the
    reason codes a node counts): empty, too_many_points, unknown_joint, duplicate_joint,
    size_mismatch, non_finite, out_of_limits, time_not_increasing.
    """
    names = tuple(msg.joint_names)
    if not names or not msg.points:
        raise MessageError("empty", "trajectory has no joints or no points")
    if len(msg.points) > max_points:
        raise MessageError("too_many_points", f"{len(msg.points)} points, limit {max_points}")
    unknown = [n for n in names if n not in lower]
    if unknown:
        raise MessageError("unknown_joint", f"unknown joints {unknown}; known: {sorted(lower)}")
    if len(set(names)) != len(names):
        raise MessageError("duplicate_joint", f"joint names repeat: {list(names)}")
    positions = np.empty((len(msg.points), len(names)))
    times = np.empty(len(msg.points))
    for i, point in enumerate(msg.points):
        if len(point.positions) != len(names):
            raise MessageError("size_mismatch", f"point {i} has {len(point.positions)} "
                                                f"positions for {len(names)} joints")
        positions[i] = point.positions
        times[i] = duration_to_s(point.time_from_start)
    if not np.isfinite(positions).all():
        raise MessageError("non_finite", "trajectory positions contain NaN or infinity")
    lo = np.array([lower[n] for n in names]) - tolerance
    hi = np.array([upper[n] for n in names]) + tolerance
    outside = (positions < lo) | (positions > hi)
    if outside.any():
        i, j = map(int, np.argwhere(outside)[0])
        raise MessageError("out_of_limits", f"{names[j]} = {positions[i, j]:.4f} at point {i} "
                                            f"outside [{lo[j] + tolerance:.4f}, "
                                            f"{hi[j] - tolerance:.4f}]")
    if times[0] < 0 or (len(times) > 1 and np.any(np.diff(times) <= 0)):
        raise MessageError("time_not_increasing", "time_from_start must be >= 0 and strictly "
                                                  "increasing")
    return Trajectory(joint_names=names, times_s=times,
                      positions=np.clip(positions, lo + tolerance, hi - tolerance))


def accepted_trajectory(msg: Any, limits: tuple[Mapping[str, float], Mapping[str, float]],
                        reject: Callable[[str, str, str], None], source: str, *,
                        tolerance: float, max_points: int) -> Trajectory | None:
    """:func:`parse_joint_trajectory`, or None after ``reject(source, reason, detail)`` (a
    controller node's rejection counter) when the trajectory is refused."""
    try:
        return parse_joint_trajectory(msg, limits[0], limits[1], tolerance=tolerance,
                                      max_points=max_points)
    except MessageError as exc:
        reject(source, exc.reason, exc.detail)
        return None
