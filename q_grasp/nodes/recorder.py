"""recorder: writes a run's topics (joint states, images, trajectories, transitions, weights,
diagnostics, ...) as serialized ROS 2 messages into one MCAP file, like ``ros2 bag record -s
mcap`` where rosbag2 is not installable (q_grasp.recording.fill_replay_buffer rebuilds a
replay buffer from one).

Subscriptions are raw (the CDR bytes are written as received, never deserialized). A recording
that fails (disk full, unwritable folder) is logged and stops; the node and the run go on.

  python -m q_grasp.nodes.recorder --ros-args -p output_path:=runs/x/recording.mcap
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from rclpy.qos import QoSProfile

from q_grasp.node_params.recorder import TOPIC_TYPES, RecorderConfig
from q_grasp.nodes import qos
from q_grasp.nodes.params import declare_config
from q_grasp.nodes.runtime import OptionalOutputNode, run_node
from q_grasp.recording import McapRecorder, RecordingError, message_class
from q_grasp.wire import TRANSITIONS_TOPIC, WEIGHTS_TOPIC

QOS = {"robot_description": qos.LATCHED_QOS, TRANSITIONS_TOPIC: qos.transitions_qos(100),
       WEIGHTS_TOPIC: qos.WEIGHTS_QOS}
"""Subscription QoS other than by kind (below): latched topics are transient local."""


def _subscription_qos(topic: str) -> QoSProfile:
    if topic in QOS:
        return QOS[topic]
    if topic == "joint_states" or topic.startswith("camera/"):
        return qos.SENSOR_SUBSCRIBER_QOS  # best effort: never slows the simulator's publishers
    return qos.COMMAND_QOS if topic.endswith("joint_trajectory") else qos.DEFAULT_QOS


TOPICS = {topic: (type_name, _subscription_qos(topic)) for topic, type_name in TOPIC_TYPES.items()}
"""The recordable topics (node_params.recorder.TOPIC_TYPES): type and subscription QoS."""


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


def offered_qos_yaml(profile: QoSProfile) -> str:
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


def main(args: list[str] | None = None) -> int:
    """Console script ``recorder``."""
    return run_node(RecorderNode, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
