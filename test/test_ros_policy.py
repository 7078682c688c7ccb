"""policy node over real DDS, with sim_arm in another process (own ROS domain, localhost):
transitions flow and decode, a weights blob changes the policy's weights version, hostile
weights blobs are rejected and counted while the node keeps acting, and a grasp episode runs
end to end with the Q-map, markers and goal published."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

import torch  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from geometry_msgs.msg import PointStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from safetensors.numpy import save as np_save  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from std_msgs.msg import UInt8MultiArray  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from q_grasp.learning.checkpoint import save_checkpoint  # noqa: E402
from q_grasp.learning.config import NetworkConfig  # noqa: E402
from q_grasp.learning.networks import build_network, network_spec_for_env  # noqa: E402
from q_grasp.messages import msg_to_blob  # noqa: E402
from q_grasp.node_processes import (  # noqa: E402
    start_node_process,
    stop_process,
    unique_domain_id,
    wait_until,
)
from q_grasp.nodes import qos  # noqa: E402
from q_grasp.nodes.convert import blob_to_msg, image_msg, joint_state_msg  # noqa: E402
from q_grasp.tasks.load import load_task  # noqa: E402
from q_grasp.wire import (  # noqa: E402
    TRANSITIONS_SCHEMA,
    WEIGHTS_SCHEMA,
    TransitionLimits,
    decode_transitions,
    encode_weights,
)
from q_grasp.wire.format import Checksum, canonical_json, numpy_dtype_code  # noqa: E402

torch.set_num_threads(1)
POLICY = "q_grasp/policy"


class Probe:
    """The test's node: records what the policy publishes and publishes weights."""

    def __init__(self, context) -> None:
        from rclpy.node import Node

        self.node = Node("policy_probe", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.transitions: list[UInt8MultiArray] = []
        self.last: dict[str, object] = {}
        self.diag: dict[str, str] = {}
        self.levels: list[tuple[bytes, str]] = []
        self.weights_versions: set[int] = {-1}  # every version the policy reported acting with
        self.node.create_subscription(UInt8MultiArray, "/q_grasp/transitions",
                                      self.transitions.append, qos.transitions_qos())
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag,
                                      qos.DEFAULT_QOS)
        for msg_type, topic in ((PointStamped, "/q_grasp/goal"),
                                (MarkerArray, "/q_grasp/markers"), (Image, "/q_grasp/q_map")):
            self.node.create_subscription(msg_type, topic, self._recorder(topic),
                                          qos.DEFAULT_QOS)
        self.weights_pub = self.node.create_publisher(UInt8MultiArray, "/q_grasp/weights",
                                                      qos.WEIGHTS_QOS)

    def _recorder(self, topic: str):
        return lambda msg: self.last.__setitem__(topic, msg)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(POLICY):
                self.diag = {kv.key: kv.value for kv in status.values}
                if "weights_version" in self.diag:
                    self.weights_versions.add(int(self.diag["weights_version"]))
                self.levels.append((status.level, status.message))

    def spin_once(self) -> None:
        self.executor.spin_once(timeout_sec=0.05)

    def wait(self, predicate, timeout_s: float, what: str, log: Path | None = None) -> None:
        ok = wait_until(predicate, timeout_s, self.spin_once)
        assert ok, f"timed out waiting for {what}; diagnostics {self.diag}\n" + (
            log.read_text()[-3000:] if log is not None else "")

    def counter(self, key: str) -> int:
        return int(self.diag.get(key, 0))

    def fresh_diagnostics(self, log: Path | None = None) -> None:
        """Wait for two more /diagnostics of the policy: what it reports then is counted
        after everything sent to it before the call."""
        reports = len(self.levels)
        self.wait(lambda: len(self.levels) >= reports + 2, 10.0, "two more diagnostics", log)


def _start(tmp_path_factory, ros_domain_env, name: str, sim_args: list[str],
           policy_args: list[str]):
    domain = ros_domain_env()
    folder = Path(tmp_path_factory.mktemp(name))
    sim = start_node_process("q_grasp.nodes.sim_arm", sim_args, domain_id=domain,
                             log_path=folder / "sim_arm.log")
    policy = start_node_process("q_grasp.nodes.policy",
                                ["-p", "use_sim_time:=true", *policy_args], domain_id=domain,
                                log_path=folder / "policy.log")
    context = rclpy.Context()
    rclpy.init(context=context)
    return domain, folder, sim, policy, context, Probe(context)


def _stop(sim, policy, context, probe) -> None:
    try:
        probe.node.destroy_node()
        rclpy.try_shutdown(context=context)
    finally:
        stop_process(policy)
        stop_process(sim)


@pytest.fixture(scope="class")
def reacher(tmp_path_factory, ros_domain_env):
    # A checkpoint as `q-grasp train` would leave it: the node must take network and counters.
    fresh = load_task("reacher", seed=3)
    ckpt = Path(tmp_path_factory.mktemp("ckpt")) / "reacher.safetensors"
    save_checkpoint(ckpt, fresh.q_net, config=fresh.experiment,
                    env={"id": fresh.env_id, "kwargs": fresh.experiment.env.kwargs},
                    counters={"env_steps": 500})
    domain, folder, sim, policy, context, probe = _start(
        tmp_path_factory, ros_domain_env, "reacher",
        ["-p", "real_time_factor:=0.0", "-p", "camera_rate_hz:=0.0",
         "-p", "spawn_on_start:=false"],
        ["-p", "task:=reacher", "-p", f"checkpoint:={ckpt}", "-p", "transition_batch_size:=2"])
    try:
        yield probe, policy, folder / "policy.log", fresh, domain
    finally:
        _stop(sim, policy, context, probe)
    # Checked here, not in a test, so that the tests of the class run in any order.
    assert policy.returncode == 0, (folder / "policy.log").read_text()[-3000:]


def _weights_blob(q_net, version: int, run_id: str = "test-run", task: str = "reacher"
                  ) -> bytes:
    return encode_weights(q_net.state_dict(), version, q_net.config, task=task,
                          source="test", num_updates=version, run_id=run_id)


def _crafted_weights(state: dict[str, np.ndarray], net_config: dict, version: int) -> bytes:
    """A weights blob with arbitrary tensors but valid metadata and checksum, so that the
    receiver's value checks (not the checksum) are what rejects it."""
    digest = Checksum()
    for name in sorted(state):
        arr = np.ascontiguousarray(state[name])
        digest.add(name, numpy_dtype_code(arr.dtype), arr.shape, arr.reshape(-1).view(np.uint8))
    meta = {"schema": WEIGHTS_SCHEMA, "schema_version": "2", "version": str(version),
            "run_id": "t1",
            "net_config": canonical_json(net_config), "task": "reacher", "source": "evil",
            "num_updates": "0", "stamp_ns": "0", "checksum": digest.hexdigest()}
    return np_save({k: np.ascontiguousarray(v) for k, v in state.items()}, metadata=meta)


class TestReacher:
    """One sim_arm + policy pair (reacher) shared by these tests, in any order; the policy
    must shut down cleanly at the end (SIGINT, exit status 0)."""

    def test_reacher_transitions_flow_and_decode(self, reacher) -> None:
        probe, policy, log, fresh, _ = reacher
        probe.wait(lambda: len(probe.transitions) >= 4, 45.0, "4 transition messages", log)
        obs_shape = fresh.spaces.observation_space.shape  # the packaged config's observation
        limits = TransitionLimits(obs_shape=obs_shape, num_actions=8, task="reacher")
        batches = [decode_transitions(msg_to_blob(m, TRANSITIONS_SCHEMA), limits)
                   for m in probe.transitions[:4]]
        # Sequence numbers count transitions: each batch starts where the one before ended
        # (the first ones may predate this subscription); one run id.
        assert [b.sequence for b in batches[1:]] == [b.sequence + len(b) for b in batches[:-1]]
        assert len({b.run_id for b in batches}) == 1
        assert all(b.actor_id == "/policy" for b in batches)
        # -1 (the checkpoint's weights) unless another test of the class has sent weights.
        probe.wait(lambda: {b.weights_version for b in batches} <= probe.weights_versions, 10.0,
                   f"diagnostics of weights versions {[b.weights_version for b in batches]}")
        assert all(1 <= len(b) <= 2 for b in batches)
        # Consecutive transitions chain: s' of one step is s of the next (same goal, measured q).
        first = batches[0]
        if len(first) == 2 and not (first.terminated[0] or first.truncated[0]):
            np.testing.assert_array_equal(first.next_observations[0], first.observations[1])
        goal = first.observations[0, 4:7]  # joints (4), then the goal (x, y, z)
        np.testing.assert_allclose(first.next_observations[:, 4:7],
                                   np.tile(goal, (len(first), 1)))
        probe.wait(lambda: "/q_grasp/goal" in probe.last and "/q_grasp/markers" in probe.last,
                   10.0, "goal and markers")
        point = probe.last["/q_grasp/goal"]
        assert point.header.frame_id == "world"
        assert {m.ns for m in probe.last["/q_grasp/markers"].markers} >= {"goal"}
        probe.wait(lambda: "decision_latency_ms" in probe.diag, 10.0, "diagnostics")
        # The checkpoint's counters continue the epsilon schedule; its weights are the network's
        # (until another test of the class sends weights).
        if probe.diag["weights_version"] == "-1":
            assert probe.diag["weights_source"].endswith("reacher.safetensors")
        assert int(probe.diag["steps"]) >= 500
        assert probe.diag["mode"] == "train" and 0.0 <= float(probe.diag["epsilon"]) <= 1.0
        assert policy.poll() is None


    def test_weights_update_changes_version(self, reacher) -> None:
        probe, policy, log, fresh, _ = reacher
        probe.wait(lambda: "weights_version" in probe.diag, 30.0, "diagnostics", log)
        torch.manual_seed(11)
        new_net = build_network(fresh.q_net.kind, fresh.q_net.config)  # fresh weights
        probe.weights_pub.publish(blob_to_msg(_weights_blob(new_net, 7), WEIGHTS_SCHEMA))
        probe.wait(lambda: probe.diag.get("weights_version") == "7", 20.0,
                   "weights_version 7 in /diagnostics", log)
        seen = len(probe.transitions)
        limits = TransitionLimits(obs_shape=fresh.spaces.observation_space.shape, num_actions=8)

        def acted_with_v7() -> bool:
            return any(decode_transitions(msg_to_blob(m, TRANSITIONS_SCHEMA), limits)
                       .weights_version == 7 for m in probe.transitions[seen:])

        probe.wait(acted_with_v7, 30.0, "a transition made with weights version 7", log)
        assert policy.poll() is None


    def test_hostile_weights_rejected_counted_survived(self, reacher) -> None:
        probe, policy, log, fresh, _ = reacher
        probe.wait(lambda: "weights_version" in probe.diag, 30.0, "diagnostics", log)
        version_before = probe.diag["weights_version"]
        net = fresh.q_net
        good = _weights_blob(net, 100)
        state = {k: v.numpy().copy() for k, v in net.state_dict().items()}
        nan_state = dict(state)
        key = next(k for k, v in state.items() if v.dtype == np.float32 and v.ndim == 2)
        nan_state[key] = state[key].copy()
        nan_state[key][0, 0] = np.nan
        # Another architecture's weights, labelled with this network's config: shapes differ.
        other = NetworkConfig(hidden_sizes=[16] * len(net.config["hidden_sizes"]))
        kind, other_cfg = network_spec_for_env(fresh.spaces, other)
        other_net = build_network(kind, other_cfg)
        wrong_shapes = {k: v.numpy() for k, v in other_net.state_dict().items()}
        hostile = {
            "truncated": blob_to_msg(good[: len(good) // 2], WEIGHTS_SCHEMA),
            "non_finite": blob_to_msg(_crafted_weights(nan_state, net.config, 101),
                                      WEIGHTS_SCHEMA),
            "shape": blob_to_msg(_crafted_weights(wrong_shapes, net.config, 102),
                                 WEIGHTS_SCHEMA),
            "net_config": blob_to_msg(_weights_blob(other_net, 103), WEIGHTS_SCHEMA),
            "schema": blob_to_msg(good, TRANSITIONS_SCHEMA),
        }
        before = {reason: probe.counter(f"rejected.weights.{reason}") for reason in hostile}
        steps_before = int(probe.diag.get("steps", 0))
        for reason, msg in hostile.items():
            probe.weights_pub.publish(msg)
            # Latched depth-1 topic: the next message may replace one not yet taken, so each
            # waits for its own rejection (however long the machine's load makes that).
            probe.wait(lambda r=reason: probe.counter(f"rejected.weights.{r}") > before[r],
                       20.0, f"the {reason} rejection", log)
        assert probe.diag["weights_version"] == version_before
        # Still acting after the attack.
        probe.wait(lambda: int(probe.diag.get("steps", 0)) > steps_before + 3, 20.0,
                   "more steps after the hostile blobs", log)
        assert policy.poll() is None
        assert "rejected weights" in log.read_text()

    def test_weights_rollback_and_foreign_task_refused_new_run_taken(self, reacher) -> None:
        probe, policy, log, fresh, _ = reacher
        probe.wait(lambda: "weights_version" in probe.diag, 30.0, "diagnostics", log)
        net = fresh.q_net

        def publish(blob: bytes, outcome: Callable[[], bool], what: str) -> None:
            # Latched depth 1: the next message may replace one not yet taken, so each waits
            # for its own outcome.
            probe.weights_pub.publish(blob_to_msg(blob, WEIGHTS_SCHEMA))
            probe.wait(outcome, 20.0, what, log)

        publish(_weights_blob(net, 500, run_id="run-1"),
                lambda: probe.diag.get("weights_version") == "500", "version 500")
        rollbacks = probe.counter("rejected.weights.rollback")
        foreign = probe.counter("rejected.weights.schema")
        publish(_weights_blob(net, 499, run_id="run-1"),  # an older version of the same run
                lambda: probe.counter("rejected.weights.rollback") == rollbacks + 1,
                "a rollback counted")
        publish(_weights_blob(net, 500, run_id="run-1"),  # the same one again
                lambda: probe.counter("rejected.weights.rollback") == rollbacks + 2,
                "a second rollback counted")
        publish(_weights_blob(net, 600, run_id="run-1", task="grasp"),  # another task's tag
                lambda: probe.counter("rejected.weights.schema") == foreign + 1,
                "a foreign task counted")
        assert probe.diag["weights_version"] == "500"
        publish(_weights_blob(net, 3, run_id="run-2"),  # a restarted trainer: a new run
                lambda: probe.diag.get("weights_version") == "3", "version 3")
        assert policy.poll() is None


    def test_bad_parameter_stops_a_policy(self, reacher, tmp_path) -> None:
        domain = reacher[-1]
        bad = start_node_process("q_grasp.nodes.policy", ["-p", "epsilon_start:=2.0"],
                                 domain_id=(domain % 100) + 1, log_path=tmp_path / "bad.log")
        try:
            assert bad.wait(timeout=60) == 2
        finally:
            stop_process(bad)
        assert "epsilon_start: must be in [0, 1], got 2.0" in (tmp_path / "bad.log").read_text()


@pytest.fixture(scope="class")
def grasp(tmp_path_factory, ros_domain_env):
    config = Path(__file__).resolve().parents[1] / "config" / "sim_train_grasp.yaml"
    domain, folder, sim, policy, context, probe = _start(
        tmp_path_factory, ros_domain_env, "grasp",
        ["--params-file", str(config), "-p", "real_time_factor:=0.0"],
        ["-p", "task:=grasp"])
    try:
        yield probe, policy, folder / "policy.log"
    finally:
        _stop(sim, policy, context, probe)


class TestGrasp:
    """sim_arm with the grasp scene + a grasping policy."""

    def test_grasp_attempts_over_topics(self, grasp) -> None:
        probe, policy, log = grasp
        probe.wait(lambda: len(probe.transitions) >= 2, 60.0, "2 grasp transitions", log)
        seen = len(probe.transitions)
        probe.fresh_diagnostics(log)
        wrong_size = probe.counter("rejected.color_image.wrong_size")  # another test's
        setup = load_task("grasp")
        c, h, w = setup.spaces.observation_space.shape
        limits = TransitionLimits(obs_shape=(c, h, w), num_actions=setup.q_net.n_actions,
                                  task="grasp")
        blob = msg_to_blob(probe.transitions[0], TRANSITIONS_SCHEMA)
        batch = decode_transitions(blob, limits)
        assert batch.rewards[0] in (0.0, 1.0)
        assert bool(batch.is_success[0]) == (batch.rewards[0] == 1.0)
        obs = batch.observations[0]
        assert 0.0 <= obs[:3].min() and obs[:3].max() <= 1.0
        # The height channel shows the object standing on the table.
        assert obs[3].max() > 0.01 and np.median(obs[3]) < 0.005
        probe.wait(lambda: "/q_grasp/q_map" in probe.last and "/q_grasp/markers" in probe.last,
                   10.0, "q_map and markers", log)
        q_map = probe.last["/q_grasp/q_map"]
        assert q_map.encoding == "rgb8" and (q_map.height, q_map.width) == (4 * h, 4 * w)
        assert q_map.header.frame_id == "camera_color_optical_frame"
        namespaces = {m.ns for m in probe.last["/q_grasp/markers"].markers}
        assert namespaces >= {"grasp", "grasp_approach"}
        probe.wait(lambda: "decision_latency_ms" in probe.diag and "resets" in probe.diag, 10.0,
                   "grasp diagnostics", log)
        # Grasps are chosen among those the arm can reach (random pixels fail IK ~40% of the
        # time), so none of the first attempts asks for an unreachable pose.
        probe.wait(lambda: len(probe.transitions) >= max(4, seen + 2), 60.0,
                   "2 more grasp transitions", log)
        probe.wait(lambda: int(probe.diag.get("steps", 0)) >= 4, 10.0,
                   "diagnostics after 4 attempts", log)
        assert int(probe.diag.get("grasp_ik_failures", 0)) == 0
        # sim_arm's images are the size the policy expects: none refused while it acted.
        probe.fresh_diagnostics(log)
        assert probe.counter("rejected.color_image.wrong_size") == wrong_size
        assert policy.poll() is None

    def test_bad_sensor_messages_rejected_counted_survived(self, grasp) -> None:
        probe, policy, log = grasp
        probe.wait(lambda: "steps" in probe.diag, 60.0, "diagnostics", log)
        node = probe.node
        color = node.create_publisher(Image, "/camera/color/image_raw", qos.IMAGE_PUBLISHER_QOS)
        depth = node.create_publisher(Image, "/camera/depth/image_raw", qos.IMAGE_PUBLISHER_QOS)
        info = node.create_publisher(CameraInfo, "/camera/color/camera_info",
                                     qos.IMAGE_PUBLISHER_QOS)
        joints = node.create_publisher(JointState, "/joint_states",
                                       qos.JOINT_STATES_PUBLISHER_QOS)
        assert wait_until(lambda: all(pub.get_subscription_count() > 0
                                      for pub in (color, depth, info, joints)), 10.0,
                          probe.spin_once), "the policy does not subscribe to the sensors"
        bad = {
            "color_image.wrong_size": (color, image_msg(np.zeros((8, 8, 3), np.uint8), "rgb8")),
            "depth_image.encoding": (depth, image_msg(np.zeros((64, 64, 3), np.uint8), "rgb8")),
            "camera_info.bad_intrinsics": (info, CameraInfo(width=64, height=64)),
            "joint_states.non_finite": (joints, joint_state_msg(["base_joint"], [np.nan])),
            "joint_states.size_mismatch": (joints, JointState(name=["a", "b"], position=[0.0])),
        }
        before = {key: probe.counter(f"rejected.{key}") for key in bad}
        steps_before = probe.counter("steps")

        def all_counted() -> bool:
            # The sensor subscriptions keep only the newest few messages and sim_arm floods
            # them, so a single bad message may be dropped unseen: repeat until counted.
            for publisher, msg in bad.values():
                publisher.publish(msg)
            return all(probe.counter(f"rejected.{k}") > before[k] for k in bad)

        probe.wait(all_counted, 30.0, f"rejections {sorted(bad)}", log)
        probe.wait(lambda: probe.counter("steps") > steps_before, 60.0, "another grasp", log)
        assert policy.poll() is None


def test_policy_recovers_from_a_restarted_simulator(tmp_path, monkeypatch) -> None:
    """sim_arm killed (the policy's /diagnostics goes to WARN, then ERROR, with the reason) and
    restarted (its clock starts again at 0): the policy acts again within seconds, not once
    the new clock has caught up with the old one."""
    from sensor_msgs.msg import JointState

    from q_grasp.node_processes import udp_localhost_env

    domain = unique_domain_id()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    for key, value in udp_localhost_env().items():  # SIGKILL + restart on one host
        monkeypatch.setenv(key, value)
    sim_args = ["-p", "real_time_factor:=1.0", "-p", "camera_rate_hz:=0.0",
                "-p", "spawn_on_start:=false", "-p", "use_sim_time:=false"]
    sim = start_node_process("q_grasp.nodes.sim_arm", sim_args, domain_id=domain,
                             log_path=tmp_path / "sim1.log", extra_env=udp_localhost_env())
    log = tmp_path / "policy.log"
    policy = start_node_process(
        "q_grasp.nodes.policy", ["-p", "use_sim_time:=true", "-p", "task:=reacher",
                                 "-p", "feedback_warn_s:=1.0", "-p", "feedback_error_s:=3.0"],
        domain_id=domain, log_path=log, extra_env=udp_localhost_env())
    context = rclpy.Context()
    rclpy.init(context=context)
    probe = Probe(context)
    stamps: list[tuple[float, float]] = []  # (joint-state stamp, wall time received)
    probe.node.create_subscription(
        JointState, "/joint_states",
        lambda m: stamps.append((m.header.stamp.sec + m.header.stamp.nanosec * 1e-9,
                                 time.monotonic())), qos.SENSOR_SUBSCRIBER_QOS)
    try:
        # Long enough that the old clock is well ahead of a new one (~15 s).
        probe.wait(lambda: probe.counter("steps") >= 3 and stamps and stamps[-1][0] > 15.0,
                   90.0, "the policy acting for 15 s of arm time", log)
        sim.kill()
        sim.wait(timeout=10)
        stop_process(sim)
        old_clock = stamps[-1][0]
        probe.levels.clear()
        probe.wait(lambda: any(level == DiagnosticStatus.ERROR and "no joint states" in text
                               for level, text in probe.levels), 20.0,
                   "ERROR on /diagnostics while no joint states come", log)
        assert any(level == DiagnosticStatus.WARN for level, _ in probe.levels)
        steps = probe.counter("steps")
        stamps.clear()
        sim = start_node_process("q_grasp.nodes.sim_arm", sim_args, domain_id=domain,
                                 log_path=tmp_path / "sim2.log", extra_env=udp_localhost_env())
        probe.wait(lambda: bool(stamps), 60.0, "the new simulator's joint states", log)
        back = stamps[0][1]
        probe.wait(lambda: probe.counter("steps") > steps + 2, 30.0, "steps on the new arm",
                   log)
        # Acting again while the new clock is still behind the old one.
        assert stamps[-1][0] < old_clock, (stamps[-1][0], old_clock)
        print(f"policy acting {time.monotonic() - back:.1f} s after the restarted simulator's "
              f"first joint state (old clock {old_clock:.1f} s, new {stamps[-1][0]:.1f} s)")
        assert probe.levels[-1][0] == DiagnosticStatus.OK, probe.levels[-3:]
        assert policy.poll() is None
    finally:
        _stop(sim, policy, context, probe)
