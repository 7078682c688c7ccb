"""sim_arm over real DDS: the node runs in its own process (own ROS domain, localhost only);
this test checks every documented topic and type, follows a trajectory through /joint_states,
and sends malformed commands that must be rejected, counted, and survived."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Duration  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from q_grasp.messages import (  # noqa: E402
    color_image_to_numpy,
    depth_image_to_numpy,
    joint_positions,
    reset_stamp_s,
    stamp_s,
)
from q_grasp.node_processes import (  # noqa: E402
    start_node_process,
    stop_process,
    unique_domain_id,
    wait_until,
)
from q_grasp.nodes import qos  # noqa: E402

ARM = ["base_joint", "shoulder_joint", "elbow_joint", "wrist_joint", "wrist_rotation_joint"]
HOME = [0.0, -1.1, 1.4, 1.3, 0.0]
FINGERS = ["left_finger_joint", "right_finger_joint"]

DOCUMENTED_TOPICS = {
    "/joint_states": "sensor_msgs/msg/JointState",
    "/camera/color/image_raw": "sensor_msgs/msg/Image",
    "/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
    "/camera/depth/image_raw": "sensor_msgs/msg/Image",
    "/camera/depth/camera_info": "sensor_msgs/msg/CameraInfo",
    "/robot_description": "std_msgs/msg/String",
    "/clock": "rosgraph_msgs/msg/Clock",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
    "/arm_controller/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "/gripper_controller/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
}


def trajectory(names: list[str], points: list[tuple[list[float], float]]) -> JointTrajectory:
    msg = JointTrajectory(joint_names=names)
    for positions, t in points:
        msg.points.append(JointTrajectoryPoint(
            positions=[float(p) for p in positions],
            time_from_start=Duration(sec=int(t), nanosec=int(round((t % 1) * 1e9)))))
    return msg


SENSOR_TOPICS = ("/joint_states", "/camera/color/image_raw", "/camera/depth/image_raw",
                 "/camera/color/camera_info", "/camera/depth/camera_info", "/robot_description",
                 "/clock")


class Probe:
    """The test's side of the conversation: a node that records what sim_arm publishes."""

    def __init__(self, context) -> None:
        from rclpy.node import Node

        self.node = Node("sim_arm_probe", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.last: dict[str, object] = {}
        self.first: dict[str, object] = {}
        self.counts: dict[str, int] = {}
        self.stamps: dict[str, list[float]] = {"/clock": [], "/joint_states": []}
        subs = [
            (JointState, "/joint_states", qos.SENSOR_SUBSCRIBER_QOS),
            (Image, "/camera/color/image_raw", qos.SENSOR_SUBSCRIBER_QOS),
            (Image, "/camera/depth/image_raw", qos.SENSOR_SUBSCRIBER_QOS),
            (CameraInfo, "/camera/color/camera_info", qos.SENSOR_SUBSCRIBER_QOS),
            (CameraInfo, "/camera/depth/camera_info", qos.SENSOR_SUBSCRIBER_QOS),
            (String, "/robot_description", qos.LATCHED_QOS),
            (Clock, "/clock", qos.CLOCK_QOS),
            (DiagnosticArray, "/diagnostics", qos.DEFAULT_QOS),
        ]
        for msg_type, topic, profile in subs:
            self.node.create_subscription(msg_type, topic, self._recorder(topic), profile)
        self.arm_pub = self.node.create_publisher(
            JointTrajectory, "/arm_controller/joint_trajectory", qos.COMMAND_QOS)
        self.gripper_pub = self.node.create_publisher(
            JointTrajectory, "/gripper_controller/joint_trajectory", qos.COMMAND_QOS)
        self.reset = self.node.create_client(Trigger, "/sim_arm/reset_scene")

    def _recorder(self, topic: str):
        def record(msg) -> None:
            self.last[topic] = msg
            self.first.setdefault(topic, msg)
            self.counts[topic] = self.counts.get(topic, 0) + 1
            if topic in self.stamps:
                t = msg.clock if topic == "/clock" else msg.header.stamp
                self.stamps[topic].append(t.sec + t.nanosec * 1e-9)
        return record

    def spin_once(self) -> None:
        self.executor.spin_once(timeout_sec=0.05)

    def wait(self, predicate, timeout_s: float, what: str) -> None:
        assert wait_until(predicate, timeout_s, self.spin_once), f"timed out waiting for {what}"

    def joints(self, names: list[str]) -> np.ndarray:
        return joint_positions(self.last["/joint_states"], names)

    def diagnostics(self) -> dict[str, str]:
        msg = self.last.get("/diagnostics")
        if msg is None:
            return {}
        return {kv.key: kv.value for status in msg.status for kv in status.values}

    def wait_for_count(self, topic: str, more: int, timeout_s: float) -> None:
        start = self.counts.get(topic, 0)
        self.wait(lambda: self.counts.get(topic, 0) >= start + more, timeout_s,
                  f"{more} more messages on {topic}")


@pytest.fixture(scope="module")
def sim_arm(tmp_path_factory, ros_domain_env):
    domain = ros_domain_env()
    log = Path(tmp_path_factory.mktemp("sim_arm")) / "sim_arm.log"
    proc = start_node_process("q_grasp.nodes.sim_arm",
                              ["-p", "real_time_factor:=3.0", "-p", "camera_rate_hz:=5.0",
                               "-p", "clock_rate_hz:=40.0"],
                              domain_id=domain, log_path=log)
    context = rclpy.Context()
    rclpy.init(context=context)
    probe = Probe(context)
    try:
        # Every test starts from a sim_arm that publishes on every sensor topic.
        probe.wait(lambda: all(t in probe.last for t in SENSOR_TOPICS) or proc.poll() is not None,
                   30.0, "a message on every sensor topic")
        assert proc.poll() is None, log.read_text()
        yield probe, proc, log, domain
    finally:
        probe.node.destroy_node()
        rclpy.try_shutdown(context=context)
        stop_process(proc)
    # A clean shutdown on SIGINT, checked here so that the module's tests run in any order.
    assert proc.returncode == 0, log.read_text()


def test_documented_topics_and_types(sim_arm) -> None:
    probe, proc, log, _ = sim_arm
    node = probe.node

    def all_topics_typed() -> bool:
        types = dict(node.get_topic_names_and_types())
        return all(DOCUMENTED_TOPICS[t] in types.get(t, []) for t in DOCUMENTED_TOPICS)

    deadline = time.monotonic() + 30.0
    while not all_topics_typed() and time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        probe.spin_once()
    types = dict(node.get_topic_names_and_types())
    missing = {t: ty for t, ty in DOCUMENTED_TOPICS.items() if ty not in types.get(t, [])}
    assert not missing, f"missing topics {missing}\n{log.read_text()}"
    assert all(t in probe.last for t in SENSOR_TOPICS)


def test_messages_are_well_formed(sim_arm) -> None:
    probe, *_ = sim_arm
    probe.wait(lambda: "/camera/depth/image_raw" in probe.last, 20.0, "images")
    color, depth = probe.last["/camera/color/image_raw"], probe.last["/camera/depth/image_raw"]
    assert (color.encoding, depth.encoding) == ("rgb8", "32FC1")
    assert color.header.frame_id == depth.header.frame_id == "camera_color_optical_frame"
    rgb = color_image_to_numpy(color)
    metres = depth_image_to_numpy(depth)
    assert rgb.shape == (64, 64, 3) and metres.shape == (64, 64)
    # Top-down camera 0.25 m above the table: depths between the objects' tops and the table.
    assert 0.15 < float(np.median(metres)) < 0.3
    info = probe.last["/camera/color/camera_info"]
    assert (info.width, info.height) == (64, 64) and info.k[0] > 0
    assert info.header.frame_id == "camera_color_optical_frame"
    assert "<robot" in probe.last["/robot_description"].data
    joint_state = probe.last["/joint_states"]
    assert set(ARM + FINGERS) <= set(joint_state.name)
    # It starts at home (whatever the module's other tests have moved since).
    np.testing.assert_allclose(joint_positions(probe.first["/joint_states"], ARM), HOME,
                               atol=0.05)
    # Stamps are simulated time, consistent with /clock.
    clock = probe.last["/clock"].clock
    assert clock.sec + clock.nanosec * 1e-9 > 0


def test_clock_and_joint_states_flow_with_rising_stamps(sim_arm) -> None:
    """clock_rate_hz 40 beside 60 Hz joint states: both streams flow over DDS with simulated
    time rising. Their rates in simulated time depend on how well the loop keeps up with this
    machine's load, so they are checked on a fake clock (test_sim_arm_pacing.py)."""
    probe, *_ = sim_arm
    probe.wait_for_count("/clock", 20, 30.0)
    probe.wait_for_count("/joint_states", 20, 30.0)
    clock = np.diff(probe.stamps["/clock"][-15:])
    joints = np.diff(probe.stamps["/joint_states"][-15:])
    assert clock.min() > 0 and joints.min() > 0


def test_trajectory_is_followed(sim_arm) -> None:
    probe, *_ = sim_arm
    probe.wait(lambda: "/joint_states" in probe.last, 20.0, "joint states")
    # A command for a subset of the joints, two points, like JointTrajectoryController gets.
    probe.arm_pub.publish(trajectory(["base_joint", "wrist_rotation_joint"],
                                     [([0.25, 0.3], 0.5), ([0.5, 0.6], 1.0)]))
    probe.wait(lambda: abs(probe.joints(["base_joint"])[0] - 0.5) < 0.02
               and abs(probe.joints(["wrist_rotation_joint"])[0] - 0.6) < 0.02, 20.0,
               "base_joint to reach 0.5 rad")
    np.testing.assert_allclose(probe.joints(["shoulder_joint", "elbow_joint"]), HOME[1:3],
                               atol=0.05)
    probe.gripper_pub.publish(trajectory(FINGERS, [([0.0, 0.0], 0.5)]))
    probe.wait(lambda: probe.joints(FINGERS).max() < 0.005, 20.0, "the gripper to close")
    probe.gripper_pub.publish(trajectory(FINGERS, [([0.03, 0.03], 0.5)]))
    probe.wait(lambda: probe.joints(FINGERS).min() > 0.025, 20.0, "the gripper to open")


BAD_COMMANDS = [
    ("arm", trajectory(["base_joint", "no_such_joint"], [([0.0, 0.0], 1.0)]), "unknown_joint"),
    ("arm", trajectory(["base_joint"], [([float("nan")], 1.0)]), "non_finite"),
    ("arm", trajectory(["base_joint"], [([100.0], 1.0)]), "out_of_limits"),
    ("arm", trajectory(["base_joint"], [([0.1], 1.0), ([0.2], 0.5)]), "time_not_increasing"),
    ("arm", trajectory(["left_finger_joint"], [([0.0], 1.0)]), "unknown_joint"),
    ("arm", trajectory(["base_joint"], []), "empty"),
    ("gripper", trajectory(["left_finger_joint"], [([0.5], 1.0)]), "out_of_limits"),
    ("gripper", trajectory(FINGERS, [([0.0], 1.0)]), "size_mismatch"),
]


def test_malformed_trajectories_rejected_counted_survived(sim_arm) -> None:
    probe, proc, log, _ = sim_arm
    probe.wait(lambda: "/joint_states" in probe.last, 20.0, "joint states")
    # Hold a known pose first so that "nothing moved" is checkable.
    probe.arm_pub.publish(trajectory(ARM, [(HOME, 0.2)]))
    probe.wait(lambda: np.abs(probe.joints(ARM) - HOME).max() < 0.02, 20.0, "home pose")
    expected: dict[str, int] = {}
    for controller, msg, reason in BAD_COMMANDS:
        (probe.arm_pub if controller == "arm" else probe.gripper_pub).publish(msg)
        key = f"rejected.{controller}_trajectory.{reason}"
        expected[key] = expected.get(key, 0) + 1

    def counted() -> bool:
        diag = probe.diagnostics()
        return all(int(diag.get(k, 0)) >= n for k, n in expected.items())

    probe.wait(counted, 20.0, f"rejection counters {expected}, got {probe.diagnostics()}")
    probe.wait_for_count("/joint_states", 20, 10.0)
    assert proc.poll() is None, log.read_text()
    np.testing.assert_allclose(probe.joints(ARM), HOME, atol=0.02)
    assert "rejected arm_trajectory" in log.read_text()


def test_reset_scene_service(sim_arm) -> None:
    probe, *_ = sim_arm
    assert probe.reset.wait_for_service(timeout_sec=10.0)
    probe.arm_pub.publish(trajectory(["base_joint"], [([-0.4], 0.3)]))
    probe.wait(lambda: abs(probe.joints(["base_joint"])[0] + 0.4) < 0.02, 20.0, "base at -0.4")
    before_s = stamp_s(probe.last["/joint_states"])
    future = probe.reset.call_async(Trigger.Request())
    probe.wait(future.done, 20.0, "reset_scene response")
    assert future.result().success, future.result().message
    # The answer carries the reset's stamp (that of the last tick before it): every joint
    # state stamped later shows home.
    reset_s = reset_stamp_s(future.result().message)
    assert reset_s is not None and reset_s >= before_s - 1e-9, future.result().message
    probe.wait(lambda: stamp_s(probe.last["/joint_states"]) > reset_s + 1e-6, 10.0,
               "a joint state stamped after the reset")
    np.testing.assert_allclose(probe.joints(ARM), HOME, atol=0.02)


def test_bad_parameters_stop_a_sim_arm(sim_arm, tmp_path) -> None:
    domain = sim_arm[-1]
    bad = start_node_process("q_grasp.nodes.sim_arm", ["-p", "camera.width:=0"],
                             domain_id=domain, log_path=tmp_path / "bad.log",
                             extra_env={"ROS_DOMAIN_ID": str((domain % 100) + 1)})
    try:
        assert bad.wait(timeout=30) == 2
    finally:
        stop_process(bad)
    assert "camera.width: must be an integer >= 1 pixels, got 0" in (
        tmp_path / "bad.log").read_text()


def test_events_executor_process_lets_node_threads_run(tmp_path) -> None:
    # Q_GRASP_EXECUTOR=events: rclpy's EventsExecutor.spin() waits in C++ holding the GIL, so a
    # node process spun by it starved its own threads (sim_arm's physics stopped in its first
    # publish; SIGINT did not stop it either). run_node spins it one event at a time instead.
    domain = unique_domain_id()
    log = tmp_path / "sim_arm.log"
    proc = start_node_process("q_grasp.nodes.sim_arm",
                              ["-p", "real_time_factor:=2.0", "-p", "camera_rate_hz:=0.0"],
                              domain_id=domain, log_path=log,
                              extra_env={"Q_GRASP_EXECUTOR": "events"})
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    probe = Probe(context)
    try:
        probe.wait_for_count("/joint_states", 30, 60.0)  # the physics thread runs
        probe.wait(lambda: probe.arm_pub.get_subscription_count() > 0, 30.0, "the controller")
        probe.arm_pub.publish(trajectory(ARM, [([0.3] + HOME[1:], 0.3)]))  # the executor serves
        probe.wait(lambda: abs(probe.joints(["base_joint"])[0] - 0.3) < 0.02, 30.0, "the move")
    finally:
        probe.node.destroy_node()
        rclpy.try_shutdown(context=context)
        code = stop_process(proc)
    assert code == 0, log.read_text()[-3000:]
