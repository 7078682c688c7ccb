"""Building ROS messages for the nodes: joint states, images, camera info, time stamps and
wire blobs in UInt8MultiArray, and the nodes' blob authenticator. Reading messages back into
arrays is the ROS-free q_grasp.messages'.
"""

from __future__ import annotations

import array
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration, Time
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import MultiArrayDimension, UInt8MultiArray

from q_grasp.messages import image_fields, uint8_array
from q_grasp.wire import Authenticator, authenticator


def node_authenticator(node: Node, key_file: str) -> Authenticator:
    """The node's blob authenticator (AuthKeyError, a ValueError naming the file, stops the
    node at start); says in the log whether blobs are authenticated."""
    auth = authenticator(key_file)
    if auth.enabled:
        node.get_logger().info(f"transitions and weights authenticated (HMAC-SHA256, key from "
                               f"{auth.origin})")
    else:
        node.get_logger().warn("no auth key (auth_key_file, $Q_GRASP_AUTH_KEY_FILE or "
                               "$Q_GRASP_AUTH_KEY): transitions and weights are not "
                               "authenticated; any process on this ROS domain can send them")
    return auth


def blob_to_msg(blob: bytes | bytearray | memoryview, schema: str) -> UInt8MultiArray:
    """Wrap a wire blob in a UInt8MultiArray whose layout.dim[0].label names the schema."""
    msg = UInt8MultiArray()
    msg.data = uint8_array(blob)
    msg.layout.dim = [MultiArrayDimension(label=schema, size=len(msg.data),
                                          stride=len(msg.data))]
    msg.layout.data_offset = 0
    return msg


def to_time_msg(t_s: float) -> Time:
    """Seconds -> builtin_interfaces/Time."""
    sec = math.floor(t_s)
    return Time(sec=int(sec), nanosec=min(int(round((t_s - sec) * 1e9)), 999_999_999))


def time_msg_s(msg: Time) -> float:
    """builtin_interfaces/Time -> seconds."""
    return msg.sec + msg.nanosec * 1e-9


def to_duration_msg(t_s: float) -> Duration:
    """Seconds -> builtin_interfaces/Duration."""
    time_msg = to_time_msg(t_s)
    return Duration(sec=time_msg.sec, nanosec=time_msg.nanosec)


def joint_state_msg(names: Sequence[str], positions: np.ndarray,
                    velocities: np.ndarray | None = None, efforts: np.ndarray | None = None,
                    stamp: Time | None = None, frame_id: str = "") -> JointState:
    """Build a JointState from arrays (velocities and efforts may be omitted)."""
    msg = JointState()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.name = list(names)
    msg.position = array.array("d", np.asarray(positions, np.float64).tobytes())
    if velocities is not None:
        msg.velocity = array.array("d", np.asarray(velocities, np.float64).tobytes())
    if efforts is not None:
        msg.effort = array.array("d", np.asarray(efforts, np.float64).tobytes())
    return msg


def image_msg(image: np.ndarray, encoding: str, stamp: Time | None = None,
              frame_id: str = "") -> Image:
    """numpy -> sensor_msgs/Image (encodings: q_grasp.messages.image_fields)."""
    msg = Image()
    for name, value in image_fields(image, encoding).items():  # (data as is: no copy)
        setattr(msg, name, value)
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def camera_info_msg(info: Mapping[str, Any], stamp: Time | None = None,
                    frame_id: str | None = None) -> CameraInfo:
    """sensor_msgs/CameraInfo from PinholeCamera.camera_info()'s dict (width, height, K, P, D,
    R, distortion_model, frame_id). K/R may be 3x3 or flat; P 3x4 or flat."""
    msg = CameraInfo()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id if frame_id is not None else str(info.get("frame_id", ""))
    msg.width, msg.height = int(info["width"]), int(info["height"])
    msg.distortion_model = str(info.get("distortion_model", "plumb_bob"))
    msg.d = [float(v) for v in np.asarray(info.get("D", [0.0] * 5), np.float64).ravel()]
    msg.k = np.asarray(info["K"], np.float64).reshape(9)
    msg.r = np.asarray(info.get("R", np.eye(3)), np.float64).reshape(9)
    msg.p = np.asarray(info["P"], np.float64).reshape(12)
    return msg
