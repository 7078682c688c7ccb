"""The trainer: its ROS-free core (validation, replay ratio, weights, checkpoints, resume) and
the node over real DDS in its own process (weights versions rise, bad blobs are counted and
survived, a killed trainer resumes from its checkpoint)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from q_grasp.learning.tasks import default_config, make_env
from q_grasp.nodes.trainer_core import TrainerConfig, TrainerCore, newest_checkpoint
from q_grasp.wire import (
    TransitionBatch,
    WeightsLimits,
    WireError,
    decode_weights,
    encode_transitions,
    network_config_of,
    state_dict_shapes,
)

torch.set_num_threads(1)

# The packaged reacher config's observation (what a trainer with task:=reacher expects).
OBS_DIM = make_env(default_config("q_grasp/Reacher-v0").env).observation_space.shape[0]
N_ACTIONS = 8


def reacher_batch(n: int, seed: int = 0, **overrides) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    fields = dict(
        observations=rng.uniform(-0.3, 0.3, (n, OBS_DIM)).astype(np.float32),
        actions=rng.integers(0, N_ACTIONS, n).astype(np.int64),
        rewards=rng.uniform(-1, 0, n).astype(np.float32),
        next_observations=rng.uniform(-0.3, 0.3, (n, OBS_DIM)).astype(np.float32),
        terminated=np.arange(n) % 10 == 9, truncated=np.zeros(n, bool),
        is_success=np.arange(n) % 20 == 19, num_actions=N_ACTIONS, task="reacher",
        actor_id="/arm0/policy", sequence=seed)
    fields.update(overrides)
    return TransitionBatch(**fields)


@pytest.fixture(scope="module")
def core_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("trainer_core")


@pytest.fixture(scope="module")
def core(core_dir) -> TrainerCore:
    return TrainerCore(TrainerConfig(task="reacher", output_dir=str(core_dir),
                                     learning_starts=64, keep_checkpoints=2))


@pytest.mark.parametrize("blob, reason", [
    (b"not a blob", "too_large"),  # its first 8 bytes declare an enormous header
    (encode_transitions(reacher_batch(4, observations=np.zeros((4, OBS_DIM + 2), np.float32),
                                      next_observations=np.zeros((4, OBS_DIM + 2), np.float32))),
     "shape"),
    (encode_transitions(reacher_batch(4, num_actions=16)), "range"),
    (encode_transitions(reacher_batch(4, task="grasp")), "schema"),
])
def test_bad_blobs_never_reach_the_buffer(core, blob: bytes, reason: str) -> None:
    before = len(core.learner.buffer)
    with pytest.raises(WireError) as info:
        core.ingest(core.decode(blob))
    assert info.value.reason == reason
    assert len(core.learner.buffer) == before


def test_updates_follow_the_replay_ratio_and_weights_validate(core) -> None:
    assert core.updates_due() == 0  # nothing collected yet
    assert not core.unsaved  # nothing to checkpoint either
    core.ingest(core.decode(encode_transitions(reacher_batch(200, seed=1))))
    assert core.unsaved
    due = core.updates_due()
    assert due == int((200 - 64) * core.replay_ratio) + 1
    for _ in range(due):
        assert core.update() is not None
    assert core.updates_due() == 0 and core.updates == due
    first = core.weights_blob()
    second = core.weights_blob()
    net = core.learner.q_net
    # What the policy node expects: its own network's constructor arguments.
    assert network_config_of(net) == dict(net.config)
    msgs = [decode_weights(b, WeightsLimits(task="reacher"), dict(net.config),
                           expected_shapes=state_dict_shapes(net.state_dict()))
            for b in (first, second)]
    assert msgs[1].version > msgs[0].version >= due
    stats = core.stats()
    assert stats["transitions"] == 200 and stats["episodes"] == 20
    assert stats["success_rate"] == pytest.approx(0.5)


def test_checkpoint_resume(core, core_dir) -> None:
    path = core.save_checkpoint(replay=True)
    assert not core.unsaved
    assert newest_checkpoint(core_dir) == path
    resumed = TrainerCore(TrainerConfig(task="reacher", output_dir=str(core_dir),
                                        learning_starts=64))
    assert resumed.resumed_from == str(path)
    assert not resumed.unsaved  # what it resumed from is already on disk
    assert (resumed.updates, resumed.transitions) == (core.updates, core.transitions)
    assert resumed.weights_version >= core.updates
    assert len(resumed.learner.buffer) == len(core.learner.buffer)
    for key, value in core.learner.q_net.state_dict().items():
        assert torch.equal(resumed.learner.q_net.state_dict()[key].cpu(), value.cpu())
    # Old periodic checkpoints are pruned to keep_checkpoints.
    for _ in range(3):
        core.update()
        core.save_checkpoint()
    assert len(list((core_dir / "checkpoints").glob("ckpt_*.safetensors"))) == 2


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="replay_ratio"):
        TrainerConfig(replay_ratio=-1.0)
    with pytest.raises(ValueError, match="device"):
        TrainerConfig(device="tpu")
    with pytest.raises(ValueError, match="publish_every_updates"):
        TrainerConfig(publish_every_updates=0)


# ----------------------------------------------------------------------------- over DDS


@pytest.mark.ros
def test_trainer_node_over_dds(tmp_path) -> None:
    rclpy = pytest.importorskip("rclpy")
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import UInt8MultiArray

    from q_grasp.nodes import qos
    from q_grasp.nodes.convert import blob_to_msg, msg_to_blob
    from q_grasp.nodes.testing import (
        start_node_process,
        stop_process,
        unique_domain_id,
        wait_until,
    )
    from q_grasp.wire import TRANSITIONS_SCHEMA, WEIGHTS_SCHEMA

    domain = unique_domain_id()
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    out = tmp_path / "run"
    args = ["-p", "task:=reacher", "-p", f"output_dir:={out}", "-p", "learning_starts:=32",
            "-p", "publish_every_updates:=10", "-p", "checkpoint_every_updates:=20",
            "-p", "log_every_s:=0.3", "-p", "replay_ratio:=1.0"]
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("trainer_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    weights: list[UInt8MultiArray] = []
    diagnostics: dict[str, str] = {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith("trainer"):
                diagnostics.update({kv.key: kv.value for kv in status.values})

    node.create_subscription(UInt8MultiArray, "/q_grasp/weights", weights.append,
                             qos.WEIGHTS_QOS)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, qos.DEFAULT_QOS)
    pub = node.create_publisher(UInt8MultiArray, "/q_grasp/transitions",
                                qos.transitions_qos(100))

    def spin() -> None:
        executor.spin_once(timeout_sec=0.05)

    def version(msg: UInt8MultiArray) -> int:
        return decode_weights(msg_to_blob(msg, WEIGHTS_SCHEMA), WeightsLimits()).version

    proc = start_node_process("q_grasp.nodes.trainer", args, domain_id=domain,
                              log_path=tmp_path / "trainer1.log")
    try:
        assert wait_until(lambda: bool(weights), 40.0, spin), (
            (tmp_path / "trainer1.log").read_text())
        assert version(weights[-1]) == 0  # the initial weights, latched for late actors
        assert wait_until(lambda: pub.get_subscription_count() > 0, 10.0, spin)
        hostile = [blob_to_msg(b"\x00" * 64, TRANSITIONS_SCHEMA),
                   blob_to_msg(encode_transitions(reacher_batch(3)), WEIGHTS_SCHEMA),
                   blob_to_msg(encode_transitions(reacher_batch(3, num_actions=9)),
                               TRANSITIONS_SCHEMA)]
        for msg in hostile:
            pub.publish(msg)
        for seed in range(10):  # 200 transitions: more than one DQN batch (128)
            pub.publish(blob_to_msg(encode_transitions(reacher_batch(20, seed=seed)),
                                    TRANSITIONS_SCHEMA))
        assert wait_until(lambda: int(diagnostics.get("updates", 0)) >= 40
                          and int(diagnostics.get("rejected", 0)) >= 3, 30.0, spin), (
            f"{diagnostics}\n{(tmp_path / 'trainer1.log').read_text()}")
        assert int(diagnostics["rejected.transitions.schema"]) == 1
        assert wait_until(lambda: version(weights[-1]) >= 30, 10.0, spin)
        assert newest_checkpoint(out) is not None
        proc.send_signal(signal.SIGKILL)  # no clean shutdown: resume from periodic checkpoint
        proc.wait(timeout=10)
    finally:
        stop_process(proc)
    resumed_from = newest_checkpoint(out)
    checkpoint_updates = int(resumed_from.name[5:14])
    weights.clear()
    proc = start_node_process("q_grasp.nodes.trainer", args, domain_id=domain,
                              log_path=tmp_path / "trainer2.log")
    try:
        assert wait_until(lambda: bool(weights) and version(weights[-1]) >= checkpoint_updates,
                          40.0, spin), (tmp_path / "trainer2.log").read_text()
        log = (tmp_path / "trainer2.log").read_text()
        assert f"resumed from {resumed_from}" in log
        # Something new, so that the clean shutdown has a checkpoint to write.
        diagnostics.clear()
        pub.publish(blob_to_msg(encode_transitions(reacher_batch(20, seed=99)),
                                TRANSITIONS_SCHEMA))
        assert wait_until(lambda: int(diagnostics.get("received_batches", 0)) >= 1, 20.0,
                          spin), (tmp_path / "trainer2.log").read_text()
    finally:
        assert stop_process(proc) == 0, (tmp_path / "trainer2.log").read_text()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert (out / "checkpoints" / "replay.safetensors").is_file()  # saved at clean shutdown
    assert (out / "progress.csv").read_text().count("\n") >= 2
    # The same numbers as TensorBoard scalars (the shared metrics writer), step = transitions;
    # one event file per trainer process, each read on its own.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    updates = []
    for path in sorted((out / "tb").glob("events.out.tfevents.*")):
        events = EventAccumulator(str(path))
        events.Reload()
        tags |= set(events.Tags()["scalars"])
        if "trainer/updates" in events.Tags()["scalars"]:
            updates += events.Scalars("trainer/updates")
    assert {"trainer/updates", "trainer/loss", "trainer/mean_max_q",
            "trainer/weights_version"} <= tags, tags
    assert max(e.value for e in updates) >= 40 and max(e.step for e in updates) >= 200
