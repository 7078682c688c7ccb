"""The whole ROS 2 system over real DDS: sim_arm, policy and trainer in three processes (reacher,
own ROS domain on localhost) with every documented topic typed as DESIGN.md says, transitions
reaching the trainer, weights updating the policy, progress on /diagnostics, and a trainer
killed with SIGKILL resuming from its checkpoint while the policy keeps acting; then the
bringup command (composed, grasp, tiny budget) from start to greedy evaluation; and its
argument validation."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from q_grasp.bringup.cli import config_from_args, main
from q_grasp.bringup.config import (
    IN_PROCESS,
    BringupConfig,
    default_params_file,
    node_overrides,
    node_parameters,
)
from q_grasp.bringup.processes import Backend

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"

# DESIGN.md "Topics and interfaces": topic -> type. /q_grasp/q_map is the grasp policy's
# (checked in the bringup test, which grasps).
DOCUMENTED = {
    "/joint_states": "sensor_msgs/msg/JointState",
    "/camera/color/image_raw": "sensor_msgs/msg/Image",
    "/camera/depth/image_raw": "sensor_msgs/msg/Image",
    "/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
    "/arm_controller/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "/gripper_controller/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "/q_grasp/transitions": "std_msgs/msg/UInt8MultiArray",
    "/q_grasp/weights": "std_msgs/msg/UInt8MultiArray",
    "/q_grasp/markers": "visualization_msgs/msg/MarkerArray",
    "/q_grasp/goal": "geometry_msgs/msg/PointStamped",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
    "/robot_description": "std_msgs/msg/String",
    "/clock": "rosgraph_msgs/msg/Clock",
}
GRASP_ONLY = {"/q_grasp/q_map": "sensor_msgs/msg/Image"}
# Topics that carry messages while the reacher trains (the gripper is never commanded).
FLOWING = set(DOCUMENTED) - {"/gripper_controller/joint_trajectory"}


# ----------------------------------------------------------------------------- arguments


def test_arguments_are_validated(tmp_path, capsys) -> None:
    with pytest.raises(ValueError, match="namespace: must be a ROS namespace"):
        BringupConfig(namespace="1arm")
    with pytest.raises(ValueError, match="checkpoint: --train false"):
        BringupConfig(train=False)
    with pytest.raises(ValueError, match="max_transitions: must be >= 1"):
        BringupConfig(max_transitions=-3)
    with pytest.raises(ValueError, match="progress_every_s: must be > 0"):
        BringupConfig(progress_every_s=0.0)
    with pytest.raises(SystemExit):  # argparse: one budget only
        config_from_args(["--max-transitions", "5", "--duration-s", "3"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        config_from_args(["--use-sim", "maybe"])
    assert "expected true or false" in capsys.readouterr().err
    cfg = config_from_args(["--task", "reacher", "--namespace", "arm0", "--use-sim-time",
                            "false", "--max-transitions", "10"])
    assert (cfg.task, cfg.namespace, cfg.use_sim_time, cfg.max_transitions) == (
        "reacher", "arm0", False, 10)
    assert cfg.mode == "composed"
    # The last layout given wins (make run passes --trainer-process before RUN_ARGS).
    assert config_from_args(["--trainer-process", "--processes"]).mode == "processes"
    assert config_from_args(["--trainer-process"]).mode == "trainer-process"
    assert config_from_args(["--trainer-process", "--composed"]).mode == "composed"
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config: no such parameters file" in capsys.readouterr().err
    assert main(["--train", "false", "--checkpoint", str(tmp_path / "no.safetensors")]) == 2
    assert "checkpoint: no such file" in capsys.readouterr().err


def test_params_file_sections_as_the_nodes_read_them() -> None:
    trainer = node_parameters(CONFIG / "sim_train_grasp.yaml", "trainer")
    assert trainer["task"] == "grasp" and trainer["output_dir"] == "runs/ros_grasp"
    sim = node_parameters(CONFIG / "sim_train_grasp.yaml", "sim_arm")
    assert sim["camera.width"] == 64 and "robot.urdf_path" not in sim  # commented out


@pytest.mark.parametrize("task", ["grasp", "grasp_clutter", "reacher"])
def test_params_file_policy_explores_like_the_experiment(task: str) -> None:
    """The shipped policy section refers to the experiment's exploration instead of copying it,
    and that gives the epsilon of every step the copied numbers gave (linear decay over the
    experiment's fraction of its training steps)."""
    from q_grasp.learning.agent import exploration_config
    from q_grasp.learning.schedules import make_schedule
    from q_grasp.learning.tasks import default_config, resolve_task

    policy = node_parameters(CONFIG / f"sim_train_{task}.yaml", "policy")
    assert policy["epsilon_schedule"] == "experiment"
    experiment = default_config(resolve_task(task))
    exploration, total = experiment.exploration, experiment.training.total_steps
    assert exploration.schedule == "linear"
    copied = exploration_config("linear", exploration.start, exploration.end,
                                exploration.eval_epsilon,
                                max(int(round(exploration.fraction * total)), 1))
    ours, theirs = make_schedule(exploration, total), make_schedule(*copied)
    for step in range(0, 2 * total, max(total // 50, 1)):
        assert ours(step) == pytest.approx(theirs(step)), step


# ----------------------------------------------------------------------------- over DDS

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from std_msgs.msg import String, UInt8MultiArray  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from q_grasp.learning.trainer_core import newest_checkpoint  # noqa: E402
from q_grasp.node_processes import (  # noqa: E402
    ros_child_env,
    start_node_process,
    stop_process,
    udp_localhost_env,
    unique_domain_id,
    wait_until,
)
from q_grasp.nodes import qos  # noqa: E402

SUBSCRIPTIONS = {
    "/joint_states": (JointState, qos_profile_sensor_data),
    "/camera/color/image_raw": (Image, qos_profile_sensor_data),
    "/camera/depth/image_raw": (Image, qos_profile_sensor_data),
    "/camera/color/camera_info": (CameraInfo, qos_profile_sensor_data),
    "/arm_controller/joint_trajectory": (JointTrajectory, qos.COMMAND_QOS),
    "/q_grasp/transitions": (UInt8MultiArray, qos.transitions_qos()),
    "/q_grasp/weights": (UInt8MultiArray, qos.WEIGHTS_QOS),
    "/robot_description": (String, qos.LATCHED_QOS),
    "/clock": (Clock, qos.CLOCK_QOS),
    "/diagnostics": (DiagnosticArray, qos.DEFAULT_QOS),
}


def log_excerpt(path: Path, head: int = 800, tail: int = 2500) -> str:
    """A node's log for a failure message: its start-up lines and its newest ones."""
    text = path.read_text(errors="replace")
    if len(text) <= head + tail:
        return text
    return f"{text[:head]}\n[...]\n{text[-tail:]}"


class Probe:
    """The test's node: what arrived on which topic, and the latest diagnostics per node."""

    def __init__(self, context) -> None:
        from geometry_msgs.msg import PointStamped
        from visualization_msgs.msg import MarkerArray

        self.node = rclpy.create_node("system_probe", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.received: dict[str, object] = {}
        self.diag: dict[str, dict[str, str]] = {}
        subs = dict(SUBSCRIPTIONS)
        subs["/q_grasp/markers"] = (MarkerArray, qos.DEFAULT_QOS)
        subs["/q_grasp/goal"] = (PointStamped, qos.DEFAULT_QOS)
        subs["/q_grasp/q_map"] = (Image, qos.DEFAULT_QOS)
        for topic, (msg_type, profile) in subs.items():
            self.node.create_subscription(msg_type, topic, self._recorder(topic), profile)

    def _recorder(self, topic: str):
        def record(msg) -> None:
            self.received[topic] = msg
            if topic == "/diagnostics":
                for status in msg.status:
                    self.diag[status.name] = {kv.key: kv.value for kv in status.values}
        return record

    def spin_once(self) -> None:
        self.executor.spin_once(timeout_sec=0.05)

    def value(self, node: str, key: str, default: float = 0.0) -> float:
        try:
            return float(self.diag.get(f"q_grasp/{node}", {})[key])
        except (KeyError, ValueError):
            return default

    def wait(self, predicate, timeout_s: float, what: str, logs: dict[str, Path]) -> None:
        if not wait_until(predicate, timeout_s, self.spin_once):
            tails = "\n".join(f"--- {name}\n{log_excerpt(path)}"
                              for name, path in logs.items() if path.exists())
            pytest.fail(f"timed out waiting for {what}; diagnostics {self.diag}\n{tails}")

    def types(self) -> dict[str, list[str]]:
        return dict(self.node.get_topic_names_and_types())


@pytest.fixture(scope="module")
def system(tmp_path_factory, ros_domain_env):
    """sim_arm + policy + trainer (reacher) in three processes, as the launch file starts them
    (same params file, use_sim_time), with a small replay start so that training shows."""
    folder = Path(tmp_path_factory.mktemp("system"))
    # UDP on localhost without shared memory, in every process and the probe: a trainer killed
    # with SIGKILL and restarted on the same host can otherwise stay cut off from everyone
    # (Fast DDS 2.14's shared-memory zombie-port clean-up; config/fastdds_udp_localhost.xml).
    transport = udp_localhost_env()
    domain = ros_domain_env(**transport)
    params = str(CONFIG / "sim_train_reacher.yaml")
    common = ["--params-file", params, "-p", "use_sim_time:=true"]
    trainer_args = [*common, "-p", f"output_dir:={folder / 'run'}", "-p", "learning_starts:=64",
                    "-p", "replay_ratio:=0.5", "-p", "publish_every_updates:=10",
                    "-p", "checkpoint_every_updates:=20", "-p", "log_every_s:=0.5"]
    logs = {name: folder / f"{name}.log" for name in ("sim_arm", "policy", "trainer")}
    def start(module: str, args: list[str], log: Path):
        return start_node_process(module, args, domain_id=domain, log_path=log,
                                  extra_env=transport)

    procs = {
        # The camera on (the reacher's file turns it off) so that its topics flow too.
        "sim_arm": start("q_grasp.nodes.sim_arm", [*common, "-p", "camera_rate_hz:=5.0"],
                         logs["sim_arm"]),
        "trainer": start("q_grasp.nodes.trainer", trainer_args, logs["trainer"]),
        "policy": start("q_grasp.nodes.policy", common, logs["policy"]),
    }
    context = rclpy.Context()
    rclpy.init(context=context)
    probe = Probe(context)
    state = {"procs": procs, "logs": logs, "probe": probe, "start": start,
             "trainer_args": trainer_args, "run": folder / "run", "folder": folder}
    try:
        yield state
    finally:
        try:
            probe.node.destroy_node()
            rclpy.try_shutdown(context=context)
        finally:
            for name in ("policy", "trainer", "sim_arm"):
                stop_process(state["procs"][name])


def learning(system) -> Probe:
    """The probe once the trainer has learned from the policy's transitions: where every test
    of the running system starts from, whichever of them runs first."""
    probe = system["probe"]
    probe.wait(lambda: probe.value("trainer", "updates") > 0, 120.0,
               "the trainer's first update", system["logs"])
    return probe


@pytest.mark.ros
class TestThreeProcesses:
    """Tests share the running system and run in any order: each waits for what it needs, and
    the one that kills the trainer leaves a restarted one that the others accept."""

    def test_documented_topics_with_documented_types(self, system) -> None:
        probe, logs = system["probe"], system["logs"]
        probe.wait(lambda: FLOWING <= set(probe.received), 60.0,
                   f"messages on {sorted(FLOWING)}", logs)
        types = probe.types()
        for topic, msg_type in DOCUMENTED.items():
            assert types.get(topic) == [msg_type], (topic, types.get(topic))
        assert probe.received["/camera/color/image_raw"].encoding == "rgb8"
        assert probe.received["/camera/depth/image_raw"].encoding == "32FC1"
        assert probe.received["/camera/color/image_raw"].header.frame_id.endswith(
            "_optical_frame")
        assert "<robot" in probe.received["/robot_description"].data
        names = set(probe.received["/joint_states"].name)
        assert {"base_joint", "left_finger_joint"} <= names

    def test_transitions_reach_the_trainer(self, system) -> None:
        probe, logs = learning(system), system["logs"]
        probe.wait(lambda: probe.value("trainer", "transitions") >= 64, 60.0,
                   "64 transitions counted by the trainer", logs)
        assert probe.value("trainer", "rejected", 0) == 0
        assert probe.value("trainer", "received_batches") > 0

    def test_weights_update_changes_the_policy_version(self, system) -> None:
        probe, logs = learning(system), system["logs"]
        probe.wait(lambda: probe.value("policy", "weights_version", -1) >= 10, 60.0,
                   "the policy on trainer weights version >= 10", logs)
        assert probe.value("policy", "weights_received") >= 2  # the initial ones, then more

    def test_diagnostics_report_progress(self, system) -> None:
        probe, logs = learning(system), system["logs"]
        before = {"updates": probe.value("trainer", "updates"),
                  "steps": probe.value("policy", "steps"),
                  "sim": probe.value("sim_arm", "sim_time_s")}
        probe.wait(lambda: probe.value("trainer", "updates") > before["updates"]
                   and probe.value("policy", "steps") > before["steps"] + 5
                   and probe.value("sim_arm", "sim_time_s") > before["sim"], 30.0,
                   "rising updates, steps and simulated time", logs)
        trainer = probe.diag["q_grasp/trainer"]
        assert float(trainer["loss"]) >= 0.0 and float(trainer["buffer_size"]) >= 64
        assert 0.0 <= float(probe.diag["q_grasp/policy"]["epsilon"]) <= 1.0

    def test_killed_trainer_resumes_while_the_policy_keeps_acting(self, system) -> None:
        probe, logs, procs = learning(system), system["logs"], system["procs"]
        probe.wait(lambda: newest_checkpoint(system["run"]) is not None, 60.0,
                   "a periodic checkpoint", logs)
        procs["trainer"].send_signal(signal.SIGKILL)  # no clean shutdown, no final save
        procs["trainer"].wait(timeout=10)
        stop_process(procs["trainer"])  # closes its log
        checkpoint = newest_checkpoint(system["run"])
        resumed_updates = int(checkpoint.name[5:14])
        probe.diag.pop("q_grasp/trainer", None)
        steps = probe.value("policy", "steps")
        # The actor does not need the learner: it keeps acting and publishing.
        probe.wait(lambda: probe.value("policy", "steps") > steps + 10, 30.0,
                   "the policy acting without a trainer", logs)
        assert procs["policy"].poll() is None
        logs["trainer"] = system["folder"] / "trainer_restarted.log"
        procs["trainer"] = system["start"]("q_grasp.nodes.trainer", system["trainer_args"],
                                           logs["trainer"])
        # Only the restarted process reports this checkpoint as its start (a late diagnostic of
        # the killed one may still arrive).
        def restarted(key: str, default: str = "") -> str:
            status = probe.diag.get("q_grasp/trainer", {})
            return status.get(key, default) if status.get("resumed_from") == str(
                checkpoint) else default

        probe.wait(lambda: float(restarted("updates", "-1")) > resumed_updates, 60.0,
                   f"the restarted trainer past update {resumed_updates}", logs)
        assert f"resumed from {checkpoint}" in logs["trainer"].read_text()
        # Counters continue from the checkpoint and new transitions keep arriving.
        counted = float(restarted("transitions"))
        probe.wait(lambda: float(restarted("transitions", "0")) > counted + 10, 30.0,
                   "transitions reaching the restarted trainer", logs)
        received = probe.value("policy", "weights_received")
        probe.wait(lambda: probe.value("policy", "weights_received") > received
                   and probe.value("policy", "weights_updates", -1) > resumed_updates,
                   30.0, "the policy on the restarted trainer's weights", logs)
        for name in ("policy", "sim_arm"):
            assert procs[name].poll() is None, logs[name].read_text()[-2000:]


# ----------------------------------------------------------------------------- bringup


@contextlib.contextmanager
def _bringup(monkeypatch, out: Path, log: Path, *args: str):
    """`python -m q_grasp.nodes.bringup ARGS --out OUT` on a fresh domain, its output in
    ``log``, with a Probe on that domain: yields (process, probe); killed if still running."""
    domain = unique_domain_id()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    cmd = [sys.executable, "-m", "q_grasp.nodes.bringup", *args, "--progress-every-s", "2",
           "--out", str(out)]
    context = rclpy.Context()
    rclpy.init(context=context)
    probe = Probe(context)
    with open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, env=ros_child_env(domain), stdout=sink,
                                stderr=subprocess.STDOUT, cwd=str(REPO),
                                start_new_session=True)
        try:
            yield proc, probe
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            probe.node.destroy_node()
            rclpy.try_shutdown(context=context)


@pytest.mark.ros
def test_bringup_grasp_composed_end_to_end(tmp_path, monkeypatch) -> None:
    """`python -m q_grasp.nodes.bringup` with a tiny budget: nodes up in one process, grasp
    attempts, the trainer's checkpoint, a greedy evaluation, a summary; the Q-map is an rgb8
    image on /q_grasp/q_map."""
    out, log = tmp_path / "run", tmp_path / "bringup.log"
    with _bringup(monkeypatch, out, log, "--task", "grasp", "--max-transitions", "4",
                  "--eval-episodes", "1") as (proc, probe):
        probe.wait(lambda: "/q_grasp/q_map" in probe.received, 90.0, "a Q-map image",
                   {"bringup": log})
        assert probe.types()["/q_grasp/q_map"] == [GRASP_ONLY["/q_grasp/q_map"]]
        assert probe.received["/q_grasp/q_map"].encoding == "rgb8"
        deadline = time.monotonic() + 120.0
        while proc.poll() is None and time.monotonic() < deadline:
            probe.spin_once()
        assert proc.poll() == 0, log.read_text()[-4000:]
    text = log.read_text()
    assert re.search(r"transitions \d+/4 ", text), text[-3000:]
    assert "greedy evaluation: grasp success" in text
    # Nobody set up a key: bringup made a fresh one for policy and trainer, removed at the end.
    origins = re.findall(r"authenticated \(HMAC-SHA256, key from (\S+)\)", text)
    assert len(origins) == 2 and len(set(origins)) == 1, text[:3000]
    assert not Path(origins[0]).exists()
    summary = json.loads((out / "bringup_summary.json").read_text())
    assert summary["transitions"] >= 4 and summary["mode"] == "composed"
    assert Path(summary["checkpoint"]).is_file()
    assert summary["eval"]["episodes"] == 1 and summary["eval"]["attempts"] >= 1
    assert (out / "progress.csv").is_file()
    # The learning curves beside the summary, and the trainer's TensorBoard scalars.
    assert summary["plots"] == str(out / "plots.png") and (out / "plots.png").stat().st_size
    assert any((out / "tb").glob("events.out.tfevents.*"))
    # The Q-maps the greedy policy acted on, one PNG per decision (heat map, not blank).
    qmaps = sorted((out / "eval_qmaps").glob("qmap_*.png"))
    assert len(qmaps) == summary["eval"]["qmaps"] >= 1
    import matplotlib.image

    assert matplotlib.image.imread(str(qmaps[0]))[..., :3].std() > 0.01


@pytest.mark.ros
def test_bringup_grasp_clutter_spawns_several_objects(tmp_path, monkeypatch) -> None:
    """`bringup --task grasp_clutter`: sim_arm spawns the clutter scene (several objects, as
    its /diagnostics report over DDS) and the policy's episodes go on after a grasp while
    objects are left (up to 10 attempts)."""
    out, log = tmp_path / "run", tmp_path / "bringup.log"
    objects: list[float] = []
    with _bringup(monkeypatch, out, log, "--task", "grasp_clutter", "--max-transitions", "3",
                  "--eval-episodes", "0") as (proc, probe):
        deadline = time.monotonic() + 150.0
        while proc.poll() is None and time.monotonic() < deadline:
            probe.spin_once()
            objects.append(probe.value("sim_arm", "objects", 0.0))
        assert proc.poll() == 0, log.read_text()[-4000:]
    # sim_arm's seed 0 draws a first scene of several objects from the file's 1-5.
    assert max(objects) >= 2, log.read_text()[-3000:]
    summary = json.loads((out / "bringup_summary.json").read_text())
    assert summary["task"] == "grasp_clutter" and summary["transitions"] >= 3
    assert summary["params_file"].endswith("sim_train_grasp_clutter.yaml")


@pytest.mark.parametrize("mode", ["composed", "processes"])
def test_bringup_changes_a_running_sim_arms_parameters(tmp_path, mode, monkeypatch) -> None:
    """What bringup does while the trainer catches up (slow the simulator down, no camera),
    for a node in its own process and for a child process (through parameter services)."""
    domain = unique_domain_id()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    cfg = config_from_args(["--task", "grasp", "--out", str(tmp_path / "run")])
    backend = Backend(cfg, default_params_file("grasp"), tmp_path / "logs", IN_PROCESS[mode])
    try:
        backend.start("sim_arm", node_overrides(cfg, "sim_arm", None))
        idle = {"real_time_factor": 1.0, "camera_rate_hz": 0.0}
        assert backend.set_parameters("sim_arm", idle, timeout_s=90.0)
        assert not backend.set_parameters("sim_arm", {"real_time_factor": -1.0})
        assert not backend.set_parameters("policy", idle)  # not running
        if mode == "composed":
            node = backend.nodes["sim_arm"]
            assert node.get_parameter("camera_rate_hz").value == 0.0
            assert node.get_parameter("real_time_factor").value == 1.0
        assert backend.failed() is None
    finally:
        backend.close()
