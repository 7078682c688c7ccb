"""The attacks and faults of issue 23 replayed against real nodes over DDS, each refused or
survived as designed. This module holds the ones not tested elsewhere; the others are in

- test_ros_trainer.py: one valid batch published 30 times, an older one and a gap in the
  sequence numbers (test_repeated_and_old_batches_are_refused_and_gaps_counted); unsigned and
  foreign-key transitions, a missing key file (test_only_blobs_signed_with_the_system_key_
  are_taken); trainer SIGKILL: replay buffer and weights versions (test_trainer_node_over_dds);
  ``max_updates_per_s`` 1e-6 and back (test_a_parameter_cannot_wedge_the_update_loop);
- test_ros_policy.py: weights rollback, a repeat, another task's tag, a new trainer run
  (TestReacher::test_weights_rollback_and_foreign_task_refused_new_run_taken); malformed
  weights (TestReacher::test_hostile_weights_rejected_counted_survived); sim_arm SIGKILL and
  restart (test_policy_recovers_from_a_restarted_simulator).

Here: transitions published while the trainer is down (transient local), a truncated newest
checkpoint under the trainer node, and weights forged with the trainer's run id and version
2^62, float64 and all-zero weights at a policy and trainer that share a key.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

import torch  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from std_msgs.msg import UInt8MultiArray  # noqa: E402

# the trainer node settings of the trainer's own DDS tests
from test_ros_trainer import trainer_args  # noqa: E402

from q_grasp.learning.tasks import default_config, make_env  # noqa: E402
from q_grasp.learning.trainer_core import checkpoints_newest_first  # noqa: E402
from q_grasp.messages import msg_to_blob  # noqa: E402
from q_grasp.node_processes import (  # noqa: E402
    start_node_process,
    stop_process,
    udp_localhost_env,
    unique_domain_id,
    wait_until,
)
from q_grasp.nodes import qos  # noqa: E402
from q_grasp.nodes.convert import blob_to_msg  # noqa: E402
from q_grasp.wire import (  # noqa: E402
    TRANSITIONS_SCHEMA,
    WEIGHTS_SCHEMA,
    Authenticator,
    TransitionBatch,
    WeightsLimits,
    WireError,
    authenticator,
    decode_weights,
    encode_transitions,
    encode_weights,
)

torch.set_num_threads(1)
OBS_DIM = make_env(default_config("q_grasp/Reacher-v0").env).observation_space.shape[0]


def batch(n: int, sequence: int, run_id: str = "actor-run") -> TransitionBatch:
    rng = np.random.default_rng(sequence)
    return TransitionBatch(
        observations=rng.uniform(-0.3, 0.3, (n, OBS_DIM)).astype(np.float32),
        actions=rng.integers(0, 8, n).astype(np.int64),
        rewards=rng.uniform(-1, 0, n).astype(np.float32),
        next_observations=rng.uniform(-0.3, 0.3, (n, OBS_DIM)).astype(np.float32),
        terminated=np.zeros(n, bool), truncated=np.zeros(n, bool), num_actions=8,
        task="reacher", actor_id="/attacked/policy", run_id=run_id, sequence=sequence)


class Probe:
    """The test's node: an actor's transitions publisher (as the policy creates it), a weights
    publisher, and the /diagnostics of the node named ``watch``."""

    def __init__(self, watch: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("attack_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.diag: dict[str, str] = {}
        self.weights: list[UInt8MultiArray] = []

        def on_diag(msg: DiagnosticArray) -> None:
            for status in msg.status:
                if status.name.endswith(watch):
                    self.diag.update({kv.key: kv.value for kv in status.values})

        self.node.create_subscription(DiagnosticArray, "/diagnostics", on_diag,
                                      qos.DEFAULT_QOS)
        self.node.create_subscription(UInt8MultiArray, "/q_grasp/weights", self.weights.append,
                                      qos.WEIGHTS_QOS)
        self.transitions = self.node.create_publisher(UInt8MultiArray, "/q_grasp/transitions",
                                                      qos.transitions_qos())
        self.weights_pub = self.node.create_publisher(UInt8MultiArray, "/q_grasp/weights",
                                                      qos.WEIGHTS_QOS)

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    def wait(self, predicate, timeout_s: float, log: Path) -> None:
        ok = wait_until(predicate, timeout_s, lambda: self.executor.spin_once(timeout_sec=0.05))
        assert ok, f"timed out; diagnostics {self.diag}\n{log.read_text()[-3000:]}"

    def counter(self, key: str) -> int:
        return int(self.diag.get(key, 0))

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def domain(monkeypatch) -> int:
    domain = unique_domain_id()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    for key, value in udp_localhost_env().items():  # nodes killed and restarted on one host
        monkeypatch.setenv(key, value)
    return domain



def stopped(proc, log: Path) -> None:
    """Stop a node cleanly (SIGINT; a loaded machine may need long for the final checkpoint)."""
    code = stop_process(proc, timeout_s=60.0)
    assert code == 0, f"exit code {code}\n{log.read_text()[-3000:]}"


def start_trainer(out: Path, domain: int, log: Path, *extra: str):
    return start_node_process("q_grasp.nodes.trainer", trainer_args(out, *extra),
                              domain_id=domain, log_path=log, extra_env=udp_localhost_env())


def test_transitions_published_while_the_trainer_is_down_are_not_lost(tmp_path, domain) -> None:
    """Trainer SIGKILLed, 40 batches published during the outage, trainer restarted: every
    transition is in its buffer, none counted lost; the batches it had on disk come again from
    the actor's history and are counted as redelivered, not as rejected; a repeat published
    after the restart, of a batch first received after it, is still refused as a duplicate."""
    probe = Probe("trainer")
    out = tmp_path / "run"
    log1, log2 = tmp_path / "trainer1.log", tmp_path / "trainer2.log"
    # Learning held off: only the transitions are looked at.
    proc = start_trainer(out, domain, log1, "learning_starts:=100000000")
    try:
        probe.wait(lambda: probe.transitions.get_subscription_count() > 0
                   and "buffer_size" in probe.diag, 60.0, log1)
        for k in range(10):
            probe.transitions.publish(blob_to_msg(encode_transitions(batch(20, 20 * k)),
                                                  TRANSITIONS_SCHEMA))
        probe.wait(lambda: probe.counter("replay_persisted") >= 200, 20.0, log1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        stop_process(proc)
    for k in range(10, 50):  # the outage
        probe.transitions.publish(blob_to_msg(encode_transitions(batch(20, 20 * k)),
                                              TRANSITIONS_SCHEMA))
        probe.spin_for(0.02)
    probe.diag.clear()
    proc = start_trainer(out, domain, log2, "learning_starts:=100000000")
    try:
        probe.wait(lambda: probe.counter("buffer_size") == 1000, 60.0, log2)
        assert probe.counter("lost_transitions") == 0
        assert probe.counter("redelivered_batches") == 10
        assert probe.counter("rejected") == 0
        probe.transitions.publish(blob_to_msg(encode_transitions(batch(20, 20 * 49)),
                                              TRANSITIONS_SCHEMA))
        probe.wait(lambda: probe.counter("rejected.transitions.duplicate") == 1, 20.0, log2)
        assert probe.counter("buffer_size") == 1000
    finally:
        probe.close()
        stopped(proc, log2)


def weights_version(msg: UInt8MultiArray, auth=None) -> int:
    blob = msg_to_blob(msg, WEIGHTS_SCHEMA)
    return decode_weights(auth.verify(blob) if auth else blob, WeightsLimits()).version


def test_a_truncated_newest_checkpoint_is_skipped_by_the_node(tmp_path, domain) -> None:
    """The newest checkpoint cut in half on disk: the trainer starts from the one before (with
    a warning naming the broken one), and its weights versions still go up."""
    probe = Probe("trainer")
    out = tmp_path / "run"
    log1, log2 = tmp_path / "trainer1.log", tmp_path / "trainer2.log"
    proc = start_trainer(out, domain, log1)
    try:
        probe.wait(lambda: probe.transitions.get_subscription_count() > 0 and probe.weights,
                   60.0, log1)
        for k in range(10):
            probe.transitions.publish(blob_to_msg(encode_transitions(batch(20, 20 * k)),
                                                  TRANSITIONS_SCHEMA))
        probe.wait(lambda: len(checkpoints_newest_first(out)) >= 2
                   and weights_version(probe.weights[-1]) >= 30, 60.0, log1)
    finally:
        stopped(proc, log1)
    probe.spin_for(1.0)  # the stopped trainer's last weights, still on their way
    last_version = max(weights_version(m) for m in probe.weights)
    newest, previous = checkpoints_newest_first(out)[:2]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    probe.weights.clear()
    proc = start_trainer(out, domain, log2)
    try:
        probe.wait(lambda: f"resumed from {previous}" in log2.read_text(), 60.0, log2)
        probe.wait(lambda: bool(probe.weights), 60.0, log2)
        assert weights_version(probe.weights[0]) > last_version
        text = log2.read_text()
        assert f"skipped checkpoint {newest}" in text, text[-3000:]
        assert proc.poll() is None
    finally:
        probe.close()
        stopped(proc, log2)


def test_forged_float64_and_zero_weights_are_refused_and_the_trainer_still_heard(
        tmp_path, domain) -> None:
    """Trainer and policy share a key. Weights claiming the trainer's own run id, version 2^62
    and source /trainer, unsigned or signed with another key, are refused as unauthenticated
    (taken, they would have locked the real trainer out as a rollback); float64 and all-zero
    weights signed with the system's key are refused as dtype and range. The policy then takes
    the trainer's next versions."""
    key_file = tmp_path / "system.key"
    key_file.write_text("the key of the attacked system\n")
    auth = authenticator(str(key_file))
    probe = Probe("policy")
    trainer_log, policy_log = tmp_path / "trainer.log", tmp_path / "policy.log"
    trainer = start_trainer(tmp_path / "run", domain, trainer_log, f"auth_key_file:={key_file}")
    policy = start_node_process(
        "q_grasp.nodes.policy", ["-p", "task:=reacher", "-p", f"auth_key_file:={key_file}"],
        domain_id=domain, log_path=policy_log, extra_env=udp_localhost_env())
    try:
        def signed_weights() -> list:
            # (Only this system's: a run on the same domain without a domain lock has its own.)
            found = []
            for msg in probe.weights:
                try:
                    found.append(decode_weights(auth.verify(msg_to_blob(msg, WEIGHTS_SCHEMA)),
                                                WeightsLimits()))
                except WireError:
                    pass
            return found

        probe.wait(lambda: bool(signed_weights()) and probe.diag.get("weights_version") == "0",
                   90.0, policy_log)
        genuine = signed_weights()[0]
        before = {reason: probe.counter(f"rejected.weights.{reason}")
                  for reason in ("unauthenticated", "dtype", "range")}
        state, config = genuine.state_dict, genuine.net_config

        def weights(state, version, sign=auth.sign):
            return sign(encode_weights(state, version, config, task="reacher",
                                       source=genuine.source, run_id=genuine.run_id))

        other_key = Authenticator(b"a key of another system")
        attacks = {
            "unauthenticated": [weights(state, 2**62, sign=bytes),
                                weights(state, 2**62, sign=other_key.sign)],
            "dtype": [weights({k: v.double() if v.is_floating_point() else v
                               for k, v in state.items()}, 2**62)],
            "range": [weights({k: torch.zeros_like(v) for k, v in state.items()}, 2**62)],
        }
        for blobs in attacks.values():
            for blob in blobs:
                probe.weights_pub.publish(blob_to_msg(blob, WEIGHTS_SCHEMA))
                probe.spin_for(0.5)  # latched depth 1: one message at a time
        probe.wait(lambda: all(probe.counter(f"rejected.weights.{reason}")
                               >= before[reason] + len(blobs)
                               for reason, blobs in attacks.items()), 30.0, policy_log)
        assert probe.diag["weights_version"] == "0"
        # The genuine trainer learns and publishes newer versions of its run: still taken.
        probe.wait(lambda: probe.transitions.get_subscription_count() > 0, 30.0, trainer_log)
        for k in range(10):
            probe.transitions.publish(blob_to_msg(
                auth.sign(encode_transitions(batch(20, 20 * k))), TRANSITIONS_SCHEMA))
        probe.wait(lambda: int(probe.diag.get("weights_version", 0)) >= 10, 60.0, trainer_log)
        assert "rejected weights (unauthenticated" in policy_log.read_text()
        assert policy.poll() is None and trainer.poll() is None
    finally:
        probe.close()
        try:
            stopped(policy, policy_log)
        finally:
            stopped(trainer, trainer_log)
