"""recorder: writes a run's topics (joint states, images, trajectories, transitions, weights,
diagnostics, ...) as serialized ROS 2 messages into one MCAP file, like ``ros2 bag record -s
mcap`` where rosbag2 is not installable; and rebuilds a replay buffer from a recording.

Subscriptions are raw (the CDR bytes are written as received, never deserialized). A recording
that fails (disk full, unwritable folder) is logged and stops; the node and the run go on.

  python -m q_grasp.nodes.recorder --ros-args -p output_path:=runs/x/recording.mcap
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from q_grasp.nodes import qos
from q_grasp.nodes.params import declare_config
from q_grasp.nodes.runtime import OptionalOutputNode, run_node
from q_grasp.recording import (
    COMPRESSIONS,
    McapRecorder,
    RecordingError,
    message_class,
    read_messages,
)

TRANSITIONS_TOPIC = "/q_grasp/transitions"
WEIGHTS_TOPIC = "/q_grasp/weights"
TOPICS = {
    "joint_states": ("sensor_msgs/msg/JointState", qos.SENSOR_SUBSCRIBER_QOS),
    "camera/color/image_raw": ("sensor_msgs/msg/Image", qos.SENSOR_SUBSCRIBER_QOS),
    "camera/depth/image_raw": ("sensor_msgs/msg/Image", qos.SENSOR_SUBSCRIBER_QOS),
    "camera/color/camera_info": ("sensor_msgs/msg/CameraInfo", qos.SENSOR_SUBSCRIBER_QOS),
    "camera/depth/camera_info": ("sensor_msgs/msg/CameraInfo", qos.SENSOR_SUBSCRIBER_QOS),
    "arm_controller/joint_trajectory": ("trajectory_msgs/msg/JointTrajectory", qos.COMMAND_QOS),
    "gripper_controller/joint_trajectory": ("trajectory_msgs/msg/JointTrajectory",
                                            qos.COMMAND_QOS),
    "robot_description": ("std_msgs/msg/String", qos.LATCHED_QOS),
    TRANSITIONS_TOPIC: ("std_msgs/msg/UInt8MultiArray", qos.transitions_qos(100)),
    WEIGHTS_TOPIC: ("std_msgs/msg/UInt8MultiArray", qos.WEIGHTS_QOS),
    "q_grasp/q_map": ("sensor_msgs/msg/Image", qos.DEFAULT_QOS),
    "q_grasp/markers": ("visualization_msgs/msg/MarkerArray", qos.DEFAULT_QOS),
    "q_grasp/goal": ("geometry_msgs/msg/PointStamped", qos.DEFAULT_QOS),
    "/diagnostics": ("diagnostic_msgs/msg/DiagnosticArray", qos.DEFAULT_QOS),
}
"""The run's topics the recorder can record (relative names: in the recorder's namespace, the
arm's), their types and the subscription QoS (sensor streams best effort, so the recorder
never slows the simulator's reliable publishers; latched topics transient local)."""
DRAWN_ON_DEMAND = ("q_grasp/q_map", "q_grasp/markers", "q_grasp/goal")
"""Pictures for people that the policy draws only while someone subscribes (the Q-map overlay
costs the actor time on every grasp decision): recorded only when asked for in ``topics``."""


@dataclass
class RecorderConfig:
    """Parameters of the recorder node."""

    output_path: str = "recording.mcap"
    """The .mcap file to write (its folder is created; an existing file is replaced)."""
    topics: list[str] = field(
        default_factory=lambda: [t for t in TOPICS if t not in DRAWN_ON_DEMAND])
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
        unknown = [t for t in self.topics if t not in TOPICS]
        if unknown or not self.topics:
            raise ValueError(f"topics: expected some of {list(TOPICS)}, got {self.topics}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression: must be one of {list(COMPRESSIONS)}, got "
                             f"{self.compression!r}")
        if self.chunk_size_bytes < 1024:
            raise ValueError(f"chunk_size_bytes: must be >= 1024, got {self.chunk_size_bytes}")


class RecorderNode(OptionalOutputNode):
    """Records the configured topics until destroyed."""

    def __init__(self, node_name: str = "recorder", **kwargs: Any) -> None:
        super().__init__(node_name, "recording", **kwargs)
        self._config = declare_config(self, RecorderConfig).config
        try:
            self.output = McapRecorder(Path(self._config.output_path).expanduser(),
                                       self._config.compression, self._config.chunk_size_bytes)
        except (RecordingError, OSError) as exc:
            self.fail(str(exc))
            return
        for topic in dict.fromkeys(self._config.topics):
            type_name, profile = TOPICS[topic]
            try:
                msg_type = message_class(type_name)
                channel = self.output.add_topic(self.resolve_topic_name(topic), type_name,
                                                offered_qos_profiles=offered_qos_yaml(profile))
            except (RecordingError, OSError) as exc:
                self.get_logger().warning(f"not recording {topic}: {exc}")
                continue
            self.create_subscription(msg_type, topic, self._writer_for(channel), profile,
                                     raw=True)
        self.get_logger().info(f"recording {len(self._config.topics)} topics to "
                               f"{self.output.path}")

    @property
    def path(self) -> Path | None:
        """The file being written (None once recording failed)."""
        return self.output.path if self.output is not None else None

    @property
    def messages(self) -> int:
        """Messages written so far."""
        return self.output.messages if self.output is not None else 0

    def _writer_for(self, channel: int) -> Any:
        def write(data: bytes) -> None:
            self.use_output(lambda out: out.write(channel, data, time.time_ns()), "writing")
        return write


def offered_qos_yaml(profile: Any) -> str:
    """rosbag2's ``offered_qos_profiles`` (Jazzy's form: policy names) for an rclpy QoSProfile:
    the recorder's own subscription QoS per topic, so a replay offers what the run's consumers
    need (latched /robot_description and weights stay transient local)."""
    import yaml

    def duration(d: Any) -> dict[str, int]:
        return {"sec": d.nanoseconds // 10**9, "nsec": d.nanoseconds % 10**9}

    return yaml.safe_dump([{
        "history": profile.history.name.lower(), "depth": int(profile.depth),
        "reliability": profile.reliability.name.lower(),
        "durability": profile.durability.name.lower(), "deadline": duration(profile.deadline),
        "lifespan": duration(profile.lifespan), "liveliness": profile.liveliness.name.lower(),
        "liveliness_lease_duration": duration(profile.liveliness_lease_duration),
        "avoid_ros_namespace_conventions": bool(profile.avoid_ros_namespace_conventions),
    }], sort_keys=False)


def fill_replay_buffer(core: Any, path: str | Path) -> int:
    """Feed the transitions of recording ``path`` into ``core`` (a TrainerCore), each blob
    validated as the trainer validates live ones; returns the transitions added.

    RecordingError (naming the file) for a truncated or foreign file, a recording of another
    task or network (its first weights message is checked against the core's network), or
    one without transitions."""
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import UInt8MultiArray

    from q_grasp.messages import msg_to_blob
    from q_grasp.wire import (
        TRANSITIONS_SCHEMA,
        WEIGHTS_SCHEMA,
        WeightsLimits,
        WireError,
        decode_weights,
    )
    from q_grasp.wire.auth import strip_tag

    added = batches = 0
    weights_checked = False
    expected = TOPICS[TRANSITIONS_TOPIC][0]
    for topic, type_name, data, _ in read_messages(path, [TRANSITIONS_TOPIC, WEIGHTS_TOPIC]):
        if type_name != expected:
            raise RecordingError(f"{path}: {topic} holds {type_name}, expected {expected}")
        if topic == WEIGHTS_TOPIC and weights_checked:
            continue
        try:
            msg = deserialize_message(data, UInt8MultiArray)
        except Exception as exc:  # rclpy raises several types for broken CDR
            raise RecordingError(f"{path}: a {topic} message is not valid CDR: {exc}") from None
        try:
            # A run signs its blobs with a key of its own, gone with the run: the recording is
            # trusted as a file the user chose (as a checkpoint is); every blob is still
            # validated in full.
            blob, signed = strip_tag(msg_to_blob(
                msg, WEIGHTS_SCHEMA if topic == WEIGHTS_TOPIC else TRANSITIONS_SCHEMA))
            if topic == WEIGHTS_TOPIC:
                decode_weights(blob, WeightsLimits(task=core.config.task), core.net_config)
                weights_checked = True
                continue
            batch = core.decode(blob, authenticated=signed)
        except WireError as exc:
            raise RecordingError(
                f"{path}: {topic} message {batches + 1 if topic == TRANSITIONS_TOPIC else 1} "
                f"does not fit a {core.config.task} trainer with this network: {exc}") from None
        added += core.ingest(batch)
        batches += 1
    if not batches:
        raise RecordingError(f"{path}: holds no {TRANSITIONS_TOPIC} messages")
    return added


def main(args: list[str] | None = None) -> int:
    """Console script ``recorder``."""
    return run_node(RecorderNode, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
