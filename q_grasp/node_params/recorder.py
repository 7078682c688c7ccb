"""Parameters of the recorder node and the run's topics it can record, without ROS."""

from __future__ import annotations

from dataclasses import dataclass, field

from q_grasp.recording import COMPRESSIONS
from q_grasp.wire import TRANSITIONS_TOPIC, WEIGHTS_TOPIC

TOPIC_TYPES = {
    "joint_states": "sensor_msgs/msg/JointState",
    "camera/color/image_raw": "sensor_msgs/msg/Image",
    "camera/depth/image_raw": "sensor_msgs/msg/Image",
    "camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
    "camera/depth/camera_info": "sensor_msgs/msg/CameraInfo",
    "arm_controller/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "gripper_controller/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "robot_description": "std_msgs/msg/String",
    TRANSITIONS_TOPIC: "std_msgs/msg/UInt8MultiArray",
    WEIGHTS_TOPIC: "std_msgs/msg/UInt8MultiArray",
    "q_grasp/q_map": "sensor_msgs/msg/Image",
    "q_grasp/markers": "visualization_msgs/msg/MarkerArray",
    "q_grasp/goal": "geometry_msgs/msg/PointStamped",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}
"""The run's topics the recorder can record (relative names: in the recorder's namespace, the
arm's) and their types."""
DRAWN_ON_DEMAND = ("q_grasp/q_map", "q_grasp/markers", "q_grasp/goal")
"""Pictures for people that the policy draws only while someone subscribes (the Q-map overlay
costs the actor time on every grasp decision): recorded only when asked for in ``topics``."""


@dataclass
class RecorderConfig:
    """Parameters of the recorder node."""

    output_path: str = "recording.mcap"
    """The .mcap file to write (its folder is created; an existing file is replaced)."""
    topics: list[str] = field(
        default_factory=lambda: [t for t in TOPIC_TYPES if t not in DRAWN_ON_DEMAND])
    """Topics to record (names as in the recorder's topic table; relative ones in the node's
    namespace). Default: all but the Q-map, markers and goal, which the policy draws only for
    a subscriber; /clock is never recorded (each message carries its receive time)."""
    compression: str = "lz4"
    """Chunk compression: none, lz4 (fast, the default) or zstd (smaller, more CPU)."""
    chunk_size_bytes: int = 4 * 1024 * 1024
    """Messages are buffered and written (compressed) per chunk of about this size."""

    def __post_init__(self) -> None:
        if not self.output_path.strip():
            raise ValueError("output_path: must not be empty")
        unknown = [t for t in self.topics if t not in TOPIC_TYPES]
        if unknown or not self.topics:
            raise ValueError(f"topics: expected some of {list(TOPIC_TYPES)}, got {self.topics}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression: must be one of {list(COMPRESSIONS)}, got "
                             f"{self.compression!r}")
        if self.chunk_size_bytes < 1024:
            raise ValueError(f"chunk_size_bytes: must be >= 1024, got {self.chunk_size_bytes}")
