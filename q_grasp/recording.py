"""MCAP recordings of a run's topics: serialized ROS 2 messages (CDR) with their `ros2msg`
schemas, as `ros2 bag record -s mcap` writes them, so `ros2 bag`, Foxglove and the `mcap`
Python readers open them. No rclpy here: the recorder node hands in serialized bytes (only
:func:`fill_replay_buffer` deserializes, with rclpy's CDR reader).
"""

from __future__ import annotations

import importlib
import os
import re
import struct
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

COMPRESSIONS = ("none", "lz4", "zstd")
"""Chunk compressions the writer offers (lz4: fast enough to record images live)."""
ROS2_PROFILE = "ros2"
SEPARATOR = "=" * 80
TYPE_PATTERN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)/(?:msg/)?([A-Z][A-Za-z0-9_]*)")


class RecordingError(ValueError):
    """A recording that cannot be written or read (the message names the file)."""


def message_class(type_name: str) -> Any:
    """The Python class of a ROS message type such as ``sensor_msgs/msg/Image``."""
    match = TYPE_PATTERN.fullmatch(type_name)
    if match is None:
        raise RecordingError(f"{type_name!r} is not a ROS message type (pkg/msg/Name)")
    package, name = match.groups()
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        raise RecordingError(f"message type {type_name} is not installed") from None


def _share_dirs() -> list[Path]:
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    # The pip-only path: the ROS wheels put their share/ folder into the virtualenv.
    return [Path(p) / "share" for p in [*prefixes, sys.prefix]]


def _msg_file(package: str, name: str) -> str:
    for share in _share_dirs():
        path = share / package / "msg" / f"{name}.msg"
        if path.is_file():
            return path.read_text()
    raise RecordingError(f"no {package}/msg/{name}.msg in the share folders of "
                         f"{[str(s) for s in _share_dirs()]}")


def message_definition(type_name: str) -> str:
    """The full ``ros2msg`` definition of a type: its .msg text, then every nested type's
    after a separator line and ``MSG: pkg/Name`` (rosbag2's format)."""
    cls = message_class(type_name)
    package, name = TYPE_PATTERN.fullmatch(type_name).groups()
    parts = [_msg_file(package, name)]
    seen = {(package, name)}
    pending = [cls]
    while pending:
        fields = pending.pop(0).get_fields_and_field_types()
        for field_type in fields.values():
            for pkg, sub in TYPE_PATTERN.findall(field_type):
                if (pkg, sub) in seen:
                    continue
                seen.add((pkg, sub))
                parts.append(f"{SEPARATOR}\nMSG: {pkg}/{sub}\n{_msg_file(pkg, sub)}")
                pending.append(message_class(f"{pkg}/msg/{sub}"))
    return "\n".join(part.rstrip("\n") for part in parts) + "\n"


class McapRecorder:
    """Writes serialized messages of registered topics to one .mcap file."""

    def __init__(self, path: str | Path, compression: str = "lz4",
                 chunk_size: int = 4 * 1024 * 1024) -> None:
        from mcap.writer import CompressionType, Writer

        if compression not in COMPRESSIONS:
            raise RecordingError(f"compression: must be one of {list(COMPRESSIONS)}, got "
                                 f"{compression!r}")
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise RecordingError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self._writer = Writer(self._file, chunk_size=chunk_size,
                              compression=CompressionType[compression.upper()])
        self._writer.start(profile=ROS2_PROFILE, library="q_grasp")
        self._schemas: dict[str, int] = {}
        self._sequence: dict[int, int] = {}
        self.messages = 0

    def add_topic(self, topic: str, type_name: str, definition: str | None = None,
                  offered_qos_profiles: str = "") -> int:
        """Register ``topic`` of ``type_name``; returns its channel id for :meth:`write`.

        ``offered_qos_profiles``: the channel's QoS as rosbag2 writes it (a YAML list), which
        the MCAP ``ros2`` profile asks of every channel and ``ros2 bag play`` offers on replay.
        """
        schema = self._schemas.get(type_name)
        if schema is None:
            text = definition if definition is not None else message_definition(type_name)
            schema = self._writer.register_schema(type_name, "ros2msg", text.encode())
            self._schemas[type_name] = schema
        channel = self._writer.register_channel(
            topic, "cdr", schema, metadata={"offered_qos_profiles": offered_qos_profiles})
        self._sequence[channel] = 0
        return channel

    def write(self, channel: int, data: bytes, log_time_ns: int) -> None:
        """One serialized (CDR) message received at ``log_time_ns``."""
        self._sequence[channel] += 1
        self._writer.add_message(channel, log_time=log_time_ns, data=data,
                                 publish_time=log_time_ns, sequence=self._sequence[channel])
        self.messages += 1

    def close(self) -> None:
        """Write the index and summary (a file without them is refused by the readers)."""
        try:
            self._writer.finish()
        finally:
            self._file.close()


def read_messages(path: str | Path, topics: Sequence[str] | None = None
                  ) -> Iterator[tuple[str, str, bytes, int]]:
    """(topic, type name, CDR bytes, log time ns) of a recording, in log-time order.

    RecordingError for a missing, truncated or foreign file."""
    from mcap.exceptions import McapError
    from mcap.reader import make_reader

    path = Path(path)
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below, also when the caller stops early
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        reader = make_reader(f)
        profile = reader.get_header().profile
        if profile != ROS2_PROFILE:
            raise RecordingError(f"{path}: an MCAP file of profile {profile!r}, not a ROS 2 "
                                 f"recording")
        for schema, channel, message in reader.iter_messages(topics=topics):
            if schema is None or channel.message_encoding != "cdr":
                raise RecordingError(f"{path}: topic {channel.topic} is not CDR-encoded ROS 2")
            yield channel.topic, schema.name, message.data, message.log_time
    except RecordingError:
        raise
    except (McapError, EOFError, OSError, ValueError, KeyError, IndexError, struct.error,
            RuntimeError) as exc:  # RuntimeError: lz4's for a broken chunk
        raise RecordingError(f"{path}: truncated or not an MCAP recording "
                             f"({type(exc).__name__}: {exc})"[:300]) from None
    finally:
        f.close()


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
        TRANSITIONS_TOPIC,
        WEIGHTS_SCHEMA,
        WEIGHTS_TOPIC,
        WeightsLimits,
        WireError,
        decode_weights,
    )
    from q_grasp.wire.auth import strip_tag

    added = batches = 0
    weights_checked = False
    expected = "std_msgs/msg/UInt8MultiArray"
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
