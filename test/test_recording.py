"""MCAP recordings: message definitions and CDR that the `mcap` ROS 2 readers decode; a short
grasp run over real DDS recorded with bringup --record (and --viewer), its messages decoded to
ROS types and a replay buffer rebuilt from its transitions; clear errors for truncated, foreign
and mismatched recordings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mcap_ros2")

from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402

from q_grasp.cli import main as cli_main  # noqa: E402
from q_grasp.node_params.recorder import RecorderConfig  # noqa: E402
from q_grasp.node_processes import ros_child_env, unique_domain_id  # noqa: E402
from q_grasp.nodes.recorder import TOPICS  # noqa: E402
from q_grasp.recording import (  # noqa: E402
    McapRecorder,
    RecordingError,
    message_class,
    read_messages,
)

REPO = Path(__file__).resolve().parents[1]


def test_every_recorded_type_decodes_with_the_mcap_ros2_reader(tmp_path) -> None:
    """The schemas written are complete ros2msg definitions: a reader without ROS (Foxglove's
    `mcap_ros2` decoder) parses each type's CDR."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    path = tmp_path / "types.mcap"
    recorder = McapRecorder(path, compression="zstd")
    sent = {}
    for i, (topic, (type_name, _)) in enumerate(sorted(TOPICS.items())):
        msg = message_class(type_name)()
        if hasattr(msg, "header"):
            msg.header.frame_id = f"frame_{i}"
        sent[topic] = (type_name, msg)
        recorder.write(recorder.add_topic(topic, type_name), serialize_message(msg), 1000 + i)
    recorder.close()
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        decoded = {c.topic: (s.name, m)
                   for s, c, _, m in reader.iter_decoded_messages()}
    assert set(decoded) == set(sent)
    for topic, (type_name, msg) in sent.items():
        assert decoded[topic][0] == type_name
        if hasattr(msg, "header"):
            assert decoded[topic][1].header.frame_id == msg.header.frame_id
    # And back to the ROS types through rclpy.
    for topic, type_name, data, _ in read_messages(path):
        assert deserialize_message(data, message_class(type_name)) == sent[topic][1]


def test_bad_recordings_and_config_are_refused(tmp_path) -> None:
    path = tmp_path / "ok.mcap"
    recorder = McapRecorder(path)
    channel = recorder.add_topic("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray")
    for i in range(200):
        recorder.write(channel, serialize_message(message_class(
            "diagnostic_msgs/msg/DiagnosticArray")()), i)
    recorder.close()
    assert len(list(read_messages(path))) == 200
    truncated = tmp_path / "truncated.mcap"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(RecordingError, match="truncated or not an MCAP"):
        list(read_messages(truncated))
    (tmp_path / "text.mcap").write_text("hello")
    with pytest.raises(RecordingError, match="text.mcap"):
        list(read_messages(tmp_path / "text.mcap"))
    with pytest.raises(RecordingError, match="cannot read"):
        list(read_messages(tmp_path / "missing.mcap"))
    with pytest.raises(RecordingError, match="holds no /q_grasp/transitions"):
        cli_main(["--debug", "replay-buffer", str(path), "--task", "reacher",
                  "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="topics: expected some of"):
        RecorderConfig(topics=["/tf"])
    with pytest.raises(ValueError, match="compression"):
        RecorderConfig(compression="gzip")


@pytest.mark.ros
def test_channels_carry_what_ros2_bag_reads(tmp_path, monkeypatch) -> None:
    """What rosbag2's MCAP storage reads besides the messages: profile `ros2`, `ros2msg`
    schemas, CDR channels, and each channel's `offered_qos_profiles` (the MCAP ros2 profile
    requires it; `ros2 bag play` offers it on replay) in rosbag2's YAML form."""
    import yaml
    from mcap.reader import make_reader
    from rclpy.parameter import Parameter

    from q_grasp.nodes.recorder import RecorderNode

    monkeypatch.setenv("ROS_DOMAIN_ID", str(unique_domain_id()))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = rclpy.Context()
    rclpy.init(context=context)
    path = tmp_path / "channels.mcap"
    try:
        node = RecorderNode(context=context, parameter_overrides=[
            Parameter("output_path", value=str(path)), Parameter("topics", value=list(TOPICS))])
        assert not node.error
        node.destroy_node()  # writes the summary
    finally:
        rclpy.try_shutdown(context=context)
    with open(path, "rb") as f:
        reader = make_reader(f)
        header, summary = reader.get_header(), reader.get_summary()
    assert header.profile == "ros2"
    qos = {}
    for channel in summary.channels.values():
        schema = summary.schemas[channel.schema_id]
        assert channel.message_encoding == "cdr" and schema.encoding == "ros2msg"
        assert schema.name == TOPICS[channel.topic if channel.topic in TOPICS
                                     else channel.topic.lstrip("/")][0]
        (profile,) = yaml.safe_load(channel.metadata["offered_qos_profiles"])
        assert set(profile) == {"history", "depth", "reliability", "durability", "deadline",
                                "lifespan", "liveliness", "liveliness_lease_duration",
                                "avoid_ros_namespace_conventions"}
        qos[channel.topic] = (profile["reliability"], profile["durability"])
    assert len(qos) == len(TOPICS)
    # transitions are transient local too: a replayed recording must match the trainer
    assert (qos["/robot_description"] == qos["/q_grasp/weights"] == qos["/q_grasp/transitions"]
            == ("reliable", "transient_local"))
    assert qos["/camera/color/image_raw"] == ("best_effort", "volatile")


@pytest.mark.ros
def test_recorded_grasp_run_rebuilds_the_replay_buffer(tmp_path, capsys) -> None:
    """bringup --record over real DDS: every recorded topic's messages decode to their ROS
    types, and replay-buffer refills a trainer with the run's transitions."""
    domain = unique_domain_id()
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "q_grasp.nodes.bringup", "--task", "grasp",
           "--max-transitions", "6", "--eval-episodes", "0", "--record", "--viewer",
           "--viewer-port", "0", "--out", str(out)]
    done = subprocess.run(cmd, env=ros_child_env(domain), cwd=str(REPO), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "bringup_summary.json").read_text())
    recording = Path(summary["recording"])
    assert recording.parent == out and recording.suffix == ".mcap"
    assert f"recording: {recording}" in done.stdout
    # The same run seen through Rerun (test_viewer.py checks the viewer in detail).
    from q_grasp.viewer import recorded_entities, recorded_values

    rrd = summary["viewer_rrd"]
    entities = recorded_entities(rrd)
    assert {"/camera/color", "/camera/depth", "/q_map", "/robot/joints", "/world/grasp",
            "/world/grasp_approach", "/world/grasp_outcome",
            "/grasp_outcomes"} <= entities, entities
    # The policy's own outcome of every grasp attempt (the run ends after its 6th transition,
    # the viewer may miss the last one).
    outcomes = [row[0] for row in recorded_values(rrd, "/grasp_outcomes", "TextLog:text")]
    assert len(outcomes) >= 5 and all(o.startswith(("success: ", "failure: ")) for o in outcomes)

    counts: dict[str, int] = {}
    for topic, type_name, data, _ in read_messages(recording):
        msg = deserialize_message(data, message_class(type_name))
        assert type(msg).__name__ == type_name.rsplit("/", 1)[1]
        counts[topic] = counts.get(topic, 0) + 1
        if topic == "/camera/color/image_raw":
            assert msg.encoding == "rgb8" and len(msg.data) == msg.height * msg.step > 0
    for topic in ("/joint_states", "/camera/color/image_raw", "/camera/depth/image_raw",
                  "/arm_controller/joint_trajectory", "/gripper_controller/joint_trajectory",
                  "/q_grasp/transitions", "/q_grasp/weights", "/diagnostics",
                  "/robot_description"):
        assert counts.get(topic, 0) >= 1, (topic, counts)

    # The transitions recorded, counted from the raw file (mcap_ros2's CDR decoder, not
    # rclpy): the replay buffer must hold exactly these. The bringup summary's count is the
    # policy's last /diagnostics report, which may lag the last few transitions.
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    from q_grasp.wire import TransitionLimits, decode_transitions
    from q_grasp.wire.auth import strip_tag

    recorded = 0
    with open(recording, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for *_, msg in reader.iter_decoded_messages(topics=["/q_grasp/transitions"]):
            blob, signed = strip_tag(bytes(msg.data))  # the run's own key is gone with it
            assert signed  # bringup signs every blob with a fresh key per run
            recorded += len(decode_transitions(blob, TransitionLimits(), authenticated=True))
    assert recorded >= summary["transitions"] >= 6
    # The live trainer listened before the actor acted: it got nothing the recorder missed.
    from q_grasp.learning.checkpoint import load_checkpoint

    assert load_checkpoint(summary["checkpoint"]).counters["env_steps"] <= recorded

    warm = tmp_path / "warm"
    assert cli_main(["replay-buffer", str(recording), "--task", "grasp",
                     "--out", str(warm)]) == 0
    printed = capsys.readouterr().out
    assert f"replay buffer: {recorded} of {recorded} recorded" in printed, printed
    from q_grasp.learning.trainer_core import TrainerConfig, TrainerCore

    core = TrainerCore(TrainerConfig(task="grasp", output_dir=str(warm)))
    assert core.resumed_from and len(core.learner.buffer) == recorded == core.transitions
    assert np.isfinite(core.stats()["epsilon"])

    # Another task's trainer refuses the recording, as does one with another network (its
    # weights do not fit) and a cut-off copy: one line each, naming the file.
    truncated = tmp_path / "cut.mcap"
    truncated.write_bytes(recording.read_bytes()[:-4000])
    wider = tmp_path / "wider.yaml"
    wider.write_text((REPO / "config" / "grasp.yaml").read_text().replace(
        "unet_base_channels: 8", "unet_base_channels: 16"))
    for i, (path, task, extra, message) in enumerate([
            (recording, "reacher", [], "does not fit a reacher trainer"),
            (recording, "grasp", ["--config", str(wider)], "does not fit a grasp trainer"),
            (truncated, "grasp", [], "truncated or not an MCAP")]):
        assert cli_main(["replay-buffer", str(path), "--task", task, *extra,
                         "--out", str(tmp_path / f"x_{i}")]) == 2
        err = capsys.readouterr().err
        assert message in err and str(path) in err and err.count("\n") == 1, err


@pytest.mark.ros
def test_a_failing_recorder_logs_and_the_node_goes_on(tmp_path, monkeypatch) -> None:
    """An unwritable path, and a write that fails mid-run: the node records why in `error`,
    stops writing and keeps spinning (the run it belongs to is never stopped by it)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from q_grasp.node_processes import wait_until
    from q_grasp.nodes import qos
    from q_grasp.nodes.recorder import RecorderNode

    monkeypatch.setenv("ROS_DOMAIN_ID", str(unique_domain_id()))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = rclpy.Context()
    rclpy.init(context=context)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    nodes = []
    try:
        unwritable = RecorderNode(context=context, parameter_overrides=[
            Parameter("output_path", value=str(blocker / "run.mcap"))])
        nodes.append(unwritable)
        assert "cannot write" in unwritable.error and unwritable.path is None
        recorder = RecorderNode("recorder2", context=context, parameter_overrides=[
            Parameter("output_path", value=str(tmp_path / "run.mcap")),
            Parameter("topics", value=["/diagnostics"]),
            Parameter("chunk_size_bytes", value=1024)])
        nodes.append(recorder)
        talker = rclpy.create_node("talker", context=context)
        nodes.append(talker)
        pub = talker.create_publisher(DiagnosticArray, "/diagnostics", qos.DEFAULT_QOS)
        executor = SingleThreadedExecutor(context=context)
        for node in nodes:
            executor.add_node(node)

        def spin() -> None:
            pub.publish(DiagnosticArray())
            executor.spin_once(timeout_sec=0.02)

        assert wait_until(lambda: recorder.messages >= 20, 20.0, spin)
        recorder.output._file.close()  # the disk goes away under the writer
        assert wait_until(lambda: bool(recorder.error), 20.0, spin)
        assert "writing" in recorder.error and recorder.path is None
        for _ in range(20):
            spin()  # messages keep arriving; nothing raises
    finally:
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
