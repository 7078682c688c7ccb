"""The trainer: its ROS-free core (validation, replay ratio, weights, checkpoints, resume) and
the node over real DDS in its own process (weights versions rise, bad blobs are counted and
survived, a killed trainer resumes from its checkpoint)."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from q_grasp.learning.tasks import default_config, make_env
from q_grasp.learning.trainer_core import TrainerConfig, TrainerCore, newest_checkpoint
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
        actor_id="/arm0/policy", run_id="run-a", sequence=seed * n)
    fields.update(overrides)
    return TransitionBatch(**fields)


@pytest.fixture
def core_dir(tmp_path) -> Path:
    (tmp_path / "trainer_core").mkdir()
    return tmp_path / "trainer_core"


@pytest.fixture
def core(core_dir) -> TrainerCore:
    """A fresh trainer core per test, so that no test depends on another having run first."""
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
    msgs = [decode_weights(b, WeightsLimits(task="reacher"), network_config_of(net),
                           expected_shapes=state_dict_shapes(net.state_dict()))
            for b in (first, second)]
    assert msgs[1].version > msgs[0].version >= due
    stats = core.stats()
    assert stats["transitions"] == 200 and stats["episodes"] == 20
    assert stats["success_rate"] == pytest.approx(0.5)


def test_checkpoint_resume(core, core_dir) -> None:
    core.ingest(core.decode(encode_transitions(reacher_batch(200, seed=1))))
    for _ in range(core.updates_due()):
        core.update()
    core.weights_blob()  # a broadcast: its version must not go back after the resume
    assert core.updates > 0
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


def ingest_and_train(core: TrainerCore, seeds, n: int = 20) -> None:
    for seed in seeds:
        core.ingest(core.decode(encode_transitions(reacher_batch(n, seed=seed))))
    for _ in range(core.updates_due()):
        core.update()


def test_a_broken_newest_checkpoint_is_skipped_for_the_previous_one(tmp_path) -> None:
    config = TrainerConfig(task="reacher", output_dir=str(tmp_path), learning_starts=64)
    core = TrainerCore(config)
    ingest_and_train(core, range(10))
    older = core.save_checkpoint()
    ingest_and_train(core, range(10, 12))
    newest = core.save_checkpoint()
    assert newest != older
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a crash mid-write
    resumed = TrainerCore(config)
    assert resumed.resumed_from == str(older)
    assert len(resumed.warnings) == 1 and str(newest) in resumed.warnings[0]
    assert "truncated" in resumed.warnings[0]
    # An explicit checkpoint is what the user asked for: no silent fallback.
    with pytest.raises(ValueError, match="checkpoint"):
        TrainerCore(TrainerConfig(task="reacher", output_dir=str(tmp_path / "other"),
                                  checkpoint=str(newest)))


def test_a_crash_loses_only_the_unflushed_transitions_and_no_weights_version(tmp_path) -> None:
    config = TrainerConfig(task="reacher", output_dir=str(tmp_path), learning_starts=64)
    core = TrainerCore(config)
    ingest_and_train(core, range(10))
    core.save_checkpoint()  # without the replay buffer: periodic checkpoints have none
    ingest_and_train(core, range(10, 15))
    assert core.flush_replay() == 300
    core.ingest(core.decode(encode_transitions(reacher_batch(20, seed=99))))  # not flushed
    published = [decode_weights(core.weights_blob(), WeightsLimits()).version
                 for _ in range(3)]
    del core  # SIGKILL: no final checkpoint, no replay file
    resumed = TrainerCore(config)
    assert len(resumed.learner.buffer) == 300 and resumed.transitions == 300
    assert resumed.episodes == 30
    assert not resumed.warnings
    assert decode_weights(resumed.weights_blob(), WeightsLimits()).version > max(published)
    # A clean shutdown writes the whole buffer; a restart does not add the segments twice.
    ingest_and_train(resumed, range(20, 22))
    resumed.save_checkpoint(replay=True)
    again = TrainerCore(config)
    assert len(again.learner.buffer) == 340 and again.transitions == 340


def test_replay_segments_are_pruned_with_the_capacity_and_validated(tmp_path) -> None:
    from q_grasp.learning.buffer import ObservationCodec
    from q_grasp.learning.replay_log import ReplayLog, Segment

    log = ReplayLog(tmp_path, capacity=50, codec=ObservationCodec((OBS_DIM,)),
                    num_actions=N_ACTIONS)
    for k in range(5):
        b = reacher_batch(20, seed=k)
        log.append(20 * k, b.observations, b.actions, b.rewards, b.next_observations,
                   b.terminated, b.truncated, f"actor{k % 2}")
        log.flush()
    assert [first for first, _, _ in log.segments()] == [40, 60, 80]  # >= 50 newest kept
    segments = list(log.read(since=70))
    assert [(s.first, len(s)) for s in segments] == [(70, 10), (80, 20)]
    assert segments[1].streams == ["actor0"] * 20
    np.testing.assert_array_equal(segments[1]["actions"], reacher_batch(20, seed=4).actions)
    # Images are stored as the buffer stores them (colour uint8, depth float16) and decode
    # to exactly what the buffer holds.
    images = ReplayLog(tmp_path / "images", capacity=10, num_actions=N_ACTIONS,
                       codec=ObservationCodec((4, 8, 8), channel_names=("r", "g", "b", "depth")))
    rng = np.random.default_rng(0)
    obs = rng.random((3, 4, 8, 8), dtype=np.float32)
    images.append(0, obs, np.zeros(3, np.int64), np.zeros(3, np.float32), obs,
                  np.zeros(3, bool), np.zeros(3, bool), "a")
    images.flush()
    (stored,) = images.read()
    parts = images.codec.allocate(3)
    for i in range(3):
        images.codec.store(parts, i, obs[i])
    np.testing.assert_array_equal(stored["observations"], images.codec.decode(parts))
    assert stored["observations"].dtype == np.float32
    _, _, middle = log.segments()[1]
    middle.write_bytes(middle.read_bytes()[:-8])
    read = list(log.read())
    assert isinstance(read[0], Segment) and isinstance(read[2], Segment)
    assert read[1][0] == middle and "readable" in read[1][1]


def test_stream_guard_refuses_repeats_and_counts_gaps() -> None:
    from q_grasp.learning.trainer_core import StreamGuard

    guard = StreamGuard(max_streams=2)
    assert guard.admit(reacher_batch(20, seed=0)) == (None, 0)
    assert guard.admit(reacher_batch(20, seed=0)) == ("duplicate", 0)
    assert guard.admit(reacher_batch(20, seed=1)) == (None, 0)
    assert guard.admit(reacher_batch(20, seed=0)) == ("stale", 0)
    assert guard.admit(reacher_batch(20, seed=2, sequence=45)) == (None, 5)  # 40..44 lost
    assert guard.admit(reacher_batch(20, seed=0, run_id="run-b")) == (None, 0)  # a restart
    restored = StreamGuard(max_streams=2)
    restored.load(guard.state())
    assert restored.admit(reacher_batch(20, seed=2, sequence=45)) == ("duplicate", 0)
    assert guard.admit(reacher_batch(5, actor_id="/arm1/policy")) == (None, 0)
    # Only the 2 most recently heard streams are remembered: run-a was forgotten.
    assert guard.admit(reacher_batch(20, seed=0)) == (None, 0)
    with pytest.raises(ValueError):
        restored.load('[["a", "r", -1, 0]]')


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="replay_ratio"):
        TrainerConfig(replay_ratio=-1.0)
    with pytest.raises(ValueError, match="device"):
        TrainerConfig(device="tpu")
    with pytest.raises(ValueError, match="publish_every_updates"):
        TrainerConfig(publish_every_updates=0)


# ----------------------------------------------------------------------------- over DDS


class TrainerProbe:
    """A probe node in a test process: publishes transitions, reads weights and the trainer's
    /diagnostics, sets the trainer's parameters (all over real DDS)."""

    def __init__(self, rclpy, domain: int) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import UInt8MultiArray

        from q_grasp.nodes import qos

        self.rclpy = rclpy
        self.domain = domain
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("trainer_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.weights: list[UInt8MultiArray] = []
        self.diagnostics: dict[str, str] = {}

        def on_diagnostics(msg: DiagnosticArray) -> None:
            for status in msg.status:
                if status.name.endswith("trainer"):
                    self.diagnostics.update({kv.key: kv.value for kv in status.values})

        self.node.create_subscription(UInt8MultiArray, "/q_grasp/weights", self.weights.append,
                                      qos.WEIGHTS_QOS)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics,
                                      qos.DEFAULT_QOS)
        self.pub = self.node.create_publisher(UInt8MultiArray, "/q_grasp/transitions",
                                              qos.transitions_qos(100))

    def spin(self) -> None:
        self.executor.spin_once(timeout_sec=0.05)

    def wait(self, predicate, timeout_s: float) -> bool:
        from q_grasp.node_processes import wait_until

        return wait_until(predicate, timeout_s, self.spin)

    def publish(self, blob: bytes, schema=None) -> None:
        from q_grasp.nodes.convert import blob_to_msg
        from q_grasp.wire import TRANSITIONS_SCHEMA

        self.pub.publish(blob_to_msg(blob, schema or TRANSITIONS_SCHEMA))

    def version(self, index: int = -1) -> int:
        from q_grasp.messages import msg_to_blob
        from q_grasp.wire import WEIGHTS_SCHEMA

        return decode_weights(msg_to_blob(self.weights[index], WEIGHTS_SCHEMA),
                              WeightsLimits()).version

    def counter(self, key: str) -> int:
        return int(self.diagnostics.get(key, 0))

    def set_parameter(self, name: str, value) -> bool:
        from rclpy.parameter import Parameter
        from rclpy.parameter_client import AsyncParameterClient

        client = AsyncParameterClient(self.node, "trainer")
        assert client.wait_for_services(timeout_sec=10.0)
        future = client.set_parameters([Parameter(name, value=value)])
        self.executor.spin_until_future_complete(future, timeout_sec=10.0)
        return future.done() and future.result().results[0].successful

    def close(self) -> None:
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


@pytest.fixture
def probe(monkeypatch):
    rclpy = pytest.importorskip("rclpy")
    from q_grasp.node_processes import unique_domain_id

    domain = unique_domain_id()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    probe = TrainerProbe(rclpy, domain)
    yield probe
    probe.close()


CLEAN_STOP_S = 60.0
"""How long a trainer may take to stop cleanly on SIGINT (it writes its checkpoint and replay
buffer first): what is asserted is a clean stop, not its speed on a loaded machine."""


def trainer_args(out: Path, *extra: str) -> list[str]:
    args = ["-p", "task:=reacher", "-p", f"output_dir:={out}", "-p", "learning_starts:=32",
            "-p", "publish_every_updates:=10", "-p", "checkpoint_every_updates:=20",
            "-p", "log_every_s:=0.3", "-p", "replay_ratio:=1.0",
            "-p", "replay_flush_every_s:=0.5"]
    for item in extra:
        args += ["-p", item]
    return args


@pytest.mark.ros
def test_trainer_node_over_dds(tmp_path, probe) -> None:
    from q_grasp.node_processes import start_node_process, stop_process
    from q_grasp.wire import WEIGHTS_SCHEMA

    domain, diagnostics, weights = probe.domain, probe.diagnostics, probe.weights
    out = tmp_path / "run"
    args = trainer_args(out)
    proc = start_node_process("q_grasp.nodes.trainer", args, domain_id=domain,
                              log_path=tmp_path / "trainer1.log")
    try:
        assert probe.wait(lambda: bool(weights), 40.0), (
            (tmp_path / "trainer1.log").read_text())
        assert probe.version() == 0  # the initial weights, latched for late actors
        assert probe.wait(lambda: probe.pub.get_subscription_count() > 0, 10.0)
        probe.publish(b"\x00" * 64)
        probe.publish(encode_transitions(reacher_batch(3)), WEIGHTS_SCHEMA)
        probe.publish(encode_transitions(reacher_batch(3, num_actions=9)))
        for seed in range(10):  # 200 transitions: more than one DQN batch (128)
            probe.publish(encode_transitions(reacher_batch(20, seed=seed)))
        assert probe.wait(lambda: probe.counter("updates") >= 40
                          and probe.counter("rejected") >= 3, 30.0), (
            f"{diagnostics}\n{(tmp_path / 'trainer1.log').read_text()}")
        assert int(diagnostics["rejected.transitions.schema"]) == 1
        assert probe.wait(lambda: probe.version() >= 30, 10.0)
        assert newest_checkpoint(out) is not None
        # Within replay_flush_every_s (0.5 s) the replay buffer is on disk.
        probe.wait(lambda: probe.counter("replay_persisted") >= 200, 5.0)
        last_published = probe.version()
        proc.send_signal(signal.SIGKILL)  # no clean shutdown: resume from periodic checkpoint
        proc.wait(timeout=10)
    finally:
        stop_process(proc)
    resumed_from = newest_checkpoint(out)
    weights.clear()
    diagnostics.clear()
    proc = start_node_process("q_grasp.nodes.trainer", args, domain_id=domain,
                              log_path=tmp_path / "trainer2.log")
    try:
        assert probe.wait(lambda: bool(weights) and "buffer_size" in diagnostics, 40.0), (
            (tmp_path / "trainer2.log").read_text())
        assert probe.version(0) > last_published  # versions never go back across a restart
        assert probe.counter("buffer_size") == 200  # the replay buffer survived the SIGKILL
        log = (tmp_path / "trainer2.log").read_text()
        assert f"resumed from {resumed_from}" in log
        # Something new, so that the clean shutdown has a checkpoint to write.
        diagnostics.clear()
        probe.publish(encode_transitions(reacher_batch(20, seed=99)))
        assert probe.wait(lambda: probe.counter("received_batches") >= 1, 20.0), (
            (tmp_path / "trainer2.log").read_text())
    finally:
        assert stop_process(proc, CLEAN_STOP_S) == 0, (tmp_path / "trainer2.log").read_text()
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


@pytest.mark.ros
def test_a_parameter_cannot_wedge_the_update_loop(tmp_path, probe) -> None:
    """max_updates_per_s 1e-6 (a pause of 11 days after each update) and back to 0: training
    goes on at once, because a parameter change ends the pause."""
    from q_grasp.node_processes import start_node_process, stop_process

    log = tmp_path / "trainer.log"
    proc = start_node_process("q_grasp.nodes.trainer", trainer_args(tmp_path / "run"),
                              domain_id=probe.domain, log_path=log)
    try:
        assert probe.wait(lambda: bool(probe.weights), 40.0), log.read_text()
        assert probe.set_parameter("max_updates_per_s", 1e-6)
        assert probe.wait(lambda: probe.pub.get_subscription_count() > 0, 10.0)
        for seed in range(10):
            probe.publish(encode_transitions(reacher_batch(20, seed=seed)))
        assert probe.wait(lambda: probe.counter("received_batches") >= 10, 20.0), log.read_text()
        # The first update runs, then its pause starts (the loop has nothing else to do).
        probe.wait(lambda: False, 2.0)
        assert probe.counter("updates") <= 1
        assert probe.set_parameter("max_updates_per_s", 0.0)
        assert probe.wait(lambda: probe.counter("updates") >= 100, 30.0), (
            f"{probe.diagnostics}\n{log.read_text()}")
    finally:
        assert stop_process(proc, CLEAN_STOP_S) == 0, log.read_text()


@pytest.mark.ros
def test_repeated_and_old_batches_are_refused_and_gaps_counted(tmp_path, probe) -> None:
    """One valid batch published 30 times is stored once; an older one is refused; a gap in
    the sequence numbers is counted as lost transitions."""
    from q_grasp.node_processes import start_node_process, stop_process

    log = tmp_path / "trainer.log"
    proc = start_node_process("q_grasp.nodes.trainer", trainer_args(tmp_path / "run"),
                              domain_id=probe.domain, log_path=log)
    try:
        assert probe.wait(lambda: bool(probe.weights), 40.0), log.read_text()
        assert probe.wait(lambda: probe.pub.get_subscription_count() > 0, 10.0)
        first, second = (encode_transitions(reacher_batch(20, seed=k)) for k in (0, 1))
        probe.publish(first)
        probe.publish(second)
        for _ in range(30):
            probe.publish(second)
        probe.publish(first)
        probe.publish(encode_transitions(reacher_batch(20, seed=5)))  # 40..99 never came
        assert probe.wait(lambda: probe.counter("received_batches") == 3
                          and probe.counter("rejected.transitions.duplicate") == 30
                          and probe.counter("rejected.transitions.stale") == 1
                          and probe.counter("buffer_size") == 60, 20.0), (
            f"{probe.diagnostics}\n{log.read_text()}")
        assert probe.counter("lost_transitions") == 60
        assert "rejected transitions (duplicate" in log.read_text()
    finally:
        assert stop_process(proc, CLEAN_STOP_S) == 0, log.read_text()


@pytest.mark.ros
def test_only_blobs_signed_with_the_system_key_are_taken(tmp_path, probe) -> None:
    """With a key file the trainer refuses unsigned and foreign-key transitions, takes signed
    ones and signs its weights; a missing key file stops it at start, naming the file."""
    from q_grasp.messages import msg_to_blob
    from q_grasp.node_processes import start_node_process, stop_process
    from q_grasp.wire import WEIGHTS_SCHEMA, Authenticator, authenticator

    missing = tmp_path / "no_such.key"
    log = tmp_path / "missing.log"
    proc = start_node_process("q_grasp.nodes.trainer", trainer_args(
        tmp_path / "run0", f"auth_key_file:={missing}"), domain_id=probe.domain, log_path=log)
    try:
        assert proc.wait(timeout=60) != 0
    finally:
        stop_process(proc)
    errors = [line for line in log.read_text().splitlines() if "ERROR" in line]
    assert len(errors) == 1 and str(missing) in errors[0], log.read_text()

    key_file = tmp_path / "system.key"
    key_file.write_text("a shared secret of this system\n")
    auth = authenticator(str(key_file))
    log = tmp_path / "trainer.log"
    proc = start_node_process("q_grasp.nodes.trainer", trainer_args(
        tmp_path / "run", f"auth_key_file:={key_file}"), domain_id=probe.domain, log_path=log)
    try:
        assert probe.wait(lambda: bool(probe.weights), 40.0), log.read_text()
        signed_weights = msg_to_blob(probe.weights[-1], WEIGHTS_SCHEMA)
        assert decode_weights(auth.verify(signed_weights), WeightsLimits()).version == 0
        with pytest.raises(WireError, match="unauthenticated"):
            Authenticator(b"another key, another system").verify(signed_weights)
        assert probe.wait(lambda: probe.pub.get_subscription_count() > 0, 10.0)
        probe.publish(encode_transitions(reacher_batch(20, seed=0)))  # unsigned
        probe.publish(Authenticator(b"another key, another system").sign(
            encode_transitions(reacher_batch(20, seed=1))))
        probe.publish(auth.sign(encode_transitions(reacher_batch(20, seed=2))))
        assert probe.wait(lambda: probe.counter("rejected.transitions.unauthenticated") == 2
                          and probe.counter("received_batches") == 1, 20.0), (
            f"{probe.diagnostics}\n{log.read_text()}")
    finally:
        assert stop_process(proc, CLEAN_STOP_S) == 0, log.read_text()


def test_the_learning_rate_follows_the_experiment_schedule(tmp_path) -> None:
    """learning_rate_final anneals over the transitions received, as the single-process Agent
    anneals it over its env steps (same Learner.learning_rate)."""
    experiment = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "config" / "reacher.yaml").read_text())
    experiment["dqn"].update(learning_rate=1e-3, learning_rate_final=1e-4)
    experiment["training"]["total_steps"] = 400
    path = tmp_path / "decay.yaml"
    path.write_text(yaml.safe_dump(experiment))
    core = TrainerCore(TrainerConfig(task="reacher", output_dir=str(tmp_path / "out"),
                                     experiment_config=str(path), learning_starts=64))

    def lr() -> float:
        return core.learner.optimizer.param_groups[0]["lr"]

    ingest_and_train(core, range(10))  # 200 of 400 transitions: half way
    assert lr() == pytest.approx(1e-3 + 0.5 * (1e-4 - 1e-3))
    ingest_and_train(core, range(10, 30))  # past the budget: the final rate
    assert lr() == pytest.approx(1e-4)
    constant = TrainerCore(TrainerConfig(task="reacher", output_dir=str(tmp_path / "const"),
                                         learning_starts=64))
    ingest_and_train(constant, range(10))
    assert constant.learner.optimizer.param_groups[0]["lr"] == pytest.approx(
        constant.setup.experiment.dqn.learning_rate)
