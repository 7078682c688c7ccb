"""Node groundwork: message conversions, trajectory validation, parameters from dataclasses,
diagnostics and QoS. Conversions need only the message packages; tests that create a node are
marked ``ros`` and run in their own ROS domain on localhost."""

from __future__ import annotations

import array
import os
import sys
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
from sensor_msgs.msg import Image
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from q_grasp.messages import (
    MessageError,
    camera_info_to_dict,
    color_image_to_numpy,
    depth_image_to_numpy,
    joint_positions,
    msg_to_blob,
    parse_joint_trajectory,
    reset_stamp_s,
)
from q_grasp.nodes import qos
from q_grasp.nodes.convert import (
    blob_to_msg,
    camera_info_msg,
    image_msg,
    joint_state_msg,
    to_time_msg,
)
from q_grasp.wire import WireError

# ----------------------------------------------------------------------------- images


def test_rgb_and_depth_round_trip() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    depth = rng.random((6, 5)).astype(np.float32)
    msg = image_msg(rgb, "rgb8", to_time_msg(1.5), "camera_color_optical_frame")
    assert (msg.height, msg.width, msg.step, msg.encoding) == (6, 5, 15, "rgb8")
    assert msg.header.frame_id == "camera_color_optical_frame"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1, 500_000_000)
    np.testing.assert_array_equal(color_image_to_numpy(msg, (6, 5)), rgb)
    dmsg = image_msg(depth, "32FC1")
    assert dmsg.step == 20
    np.testing.assert_array_equal(depth_image_to_numpy(dmsg, (6, 5)), depth)


def _raw_image(encoding: str, h: int, w: int, step: int, data: bytes,
               bigendian: int = 0) -> Image:
    msg = Image(height=h, width=w, encoding=encoding, step=step, is_bigendian=bigendian)
    msg.data = bytes(data)
    return msg


def test_color_encodings_and_row_padding() -> None:
    bgr = np.array([[[1, 2, 3], [4, 5, 6]]], np.uint8)
    padded = bgr.tobytes() + b"\0\0"  # step 8 for 6 bytes of pixels
    out = color_image_to_numpy(_raw_image("bgr8", 1, 2, 8, padded))
    np.testing.assert_array_equal(out, bgr[:, :, ::-1])
    rgba = np.array([[[1, 2, 3, 255]]], np.uint8)
    np.testing.assert_array_equal(
        color_image_to_numpy(_raw_image("rgba8", 1, 1, 4, rgba.tobytes())), [[[1, 2, 3]]])
    mono = color_image_to_numpy(_raw_image("mono8", 1, 2, 2, b"\x07\x09"))
    np.testing.assert_array_equal(mono, [[[7, 7, 7], [9, 9, 9]]])


def test_depth_16uc1_millimetres_and_big_endian() -> None:
    mm = np.array([[0, 1000, 250]], np.uint16)
    depth = depth_image_to_numpy(_raw_image("16UC1", 1, 3, 6, mm.tobytes()))
    assert np.isnan(depth[0, 0]) and depth[0, 1] == pytest.approx(1.0)
    big = np.array([[0.5, 2.0]], ">f4")
    out = depth_image_to_numpy(_raw_image("32FC1", 1, 2, 8, big.tobytes(), bigendian=1))
    np.testing.assert_array_equal(out, [[0.5, 2.0]])
    assert out.dtype == np.float32 and out.dtype.byteorder in ("=", "<")


@pytest.mark.parametrize("msg, parse, reason", [
    (_raw_image("yuv422", 2, 2, 4, b"\0" * 8), color_image_to_numpy, "encoding"),
    (_raw_image("32FC1", 2, 2, 8, b"\0" * 16), color_image_to_numpy, "encoding"),
    (_raw_image("rgb8", 2, 2, 6, b"\0" * 12), depth_image_to_numpy, "encoding"),
    (_raw_image("rgb8", 2, 2, 6, b"\0" * 11), color_image_to_numpy, "bad_size"),
    (_raw_image("rgb8", 2, 2, 5, b"\0" * 10), color_image_to_numpy, "bad_size"),
    (_raw_image("rgb8", 0, 2, 6, b""), color_image_to_numpy, "bad_size"),
    (_raw_image("32FC1", 2, 2, 8, b"\0" * 100), depth_image_to_numpy, "bad_size"),
    (_raw_image("rgb8", 3, 2, 6, b"\0" * 18), color_image_to_numpy, "wrong_size"),
])
def test_bad_images_rejected_with_reason(msg: Image, parse, reason: str) -> None:
    with pytest.raises(MessageError) as info:
        parse(msg, (2, 2))
    assert info.value.reason == reason


def test_image_msg_refuses_wrong_arrays() -> None:
    with pytest.raises(ValueError, match="encoding"):
        image_msg(np.zeros((2, 2, 3), np.uint8), "bgr8")
    with pytest.raises(ValueError, match="32FC1"):
        image_msg(np.zeros((2, 2), np.float64), "32FC1")


# ----------------------------------------------------------------------------- camera, joints


def test_camera_info_round_trip() -> None:
    K = np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])
    P = np.hstack([K, np.zeros((3, 1))])
    info = {"width": 64, "height": 48, "K": K, "P": P, "D": [0.0] * 5, "R": np.eye(3),
            "distortion_model": "plumb_bob", "frame_id": "camera_color_optical_frame"}
    msg = camera_info_msg(info, to_time_msg(2.0))
    assert msg.header.frame_id == "camera_color_optical_frame"
    back = camera_info_to_dict(msg)
    np.testing.assert_array_equal(back["K"], K)
    np.testing.assert_array_equal(back["P"], P)
    assert (back["width"], back["height"]) == (64, 48)
    msg.k[0] = float("nan")
    with pytest.raises(MessageError, match="bad_intrinsics"):
        camera_info_to_dict(msg)


def test_joint_state_selection_and_errors() -> None:
    msg = joint_state_msg(["b", "a", "c"], [2.0, 1.0, 3.0], [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(joint_positions(msg, ["a", "b"]), [1.0, 2.0])
    with pytest.raises(MessageError, match="missing_joint"):
        joint_positions(msg, ["a", "z"])
    msg.position[0] = float("nan")
    with pytest.raises(MessageError, match="non_finite"):
        joint_positions(msg, ["b"])
    msg.position = [1.0]
    with pytest.raises(MessageError, match="size_mismatch"):
        joint_positions(msg, ["b"])


# ----------------------------------------------------------------------------- trajectories

LOWER = {"j1": -1.0, "j2": -2.0, "j3": 0.0}
UPPER = {"j1": 1.0, "j2": 2.0, "j3": 0.03}


def trajectory(names: list[str], points: list[tuple[list[float], float]]) -> JointTrajectory:
    msg = JointTrajectory(joint_names=names)
    for positions, t in points:
        sec = int(t)
        msg.points.append(JointTrajectoryPoint(
            positions=[float(p) for p in positions],
            time_from_start=Duration(sec=sec, nanosec=int(round((t - sec) * 1e9)))))
    return msg


def test_trajectory_parse_and_sample() -> None:
    traj = parse_joint_trajectory(trajectory(["j2", "j1"], [([1.0, 0.5], 1.0),
                                                             ([2.0, -0.5], 3.0)]), LOWER, UPPER)
    assert traj.joint_names == ("j2", "j1") and traj.duration_s == pytest.approx(3.0)
    start = np.array([0.0, 0.0])
    np.testing.assert_allclose(traj.sample(0.0, start), [0.0, 0.0])
    np.testing.assert_allclose(traj.sample(0.5, start), [0.5, 0.25])
    np.testing.assert_allclose(traj.sample(2.0, start), [1.5, 0.0])
    np.testing.assert_allclose(traj.sample(10.0, start), [2.0, -0.5])
    # A single point due at once is a step command.
    now = parse_joint_trajectory(trajectory(["j3"], [([0.03], 0.0)]), LOWER, UPPER)
    np.testing.assert_allclose(now.sample(0.0, np.array([0.0])), [0.03])


@pytest.mark.parametrize("msg, reason", [
    (trajectory([], [([], 1.0)]), "empty"),
    (trajectory(["j1"], []), "empty"),
    (trajectory(["j1", "elbow"], [([0, 0], 1.0)]), "unknown_joint"),
    (trajectory(["j1", "j1"], [([0, 0], 1.0)]), "duplicate_joint"),
    (trajectory(["j1", "j2"], [([0.0], 1.0)]), "size_mismatch"),
    (trajectory(["j1"], [([float("nan")], 1.0)]), "non_finite"),
    (trajectory(["j1"], [([float("inf")], 1.0)]), "non_finite"),
    (trajectory(["j1"], [([1.5], 1.0)]), "out_of_limits"),
    (trajectory(["j3"], [([0.01], 1.0), ([-0.01], 2.0)]), "out_of_limits"),
    (trajectory(["j1"], [([0.1], 2.0), ([0.2], 1.0)]), "time_not_increasing"),
    (trajectory(["j1"], [([0.1], 1.0), ([0.2], 1.0)]), "time_not_increasing"),
])
def test_bad_trajectories_rejected(msg: JointTrajectory, reason: str) -> None:
    with pytest.raises(MessageError) as info:
        parse_joint_trajectory(msg, LOWER, UPPER)
    assert info.value.reason == reason


def test_too_many_points() -> None:
    msg = trajectory(["j1"], [([0.0], 0.1 * (i + 1)) for i in range(20)])
    with pytest.raises(MessageError, match="too_many_points"):
        parse_joint_trajectory(msg, LOWER, UPPER, max_points=10)


# ----------------------------------------------------------------------------- wire messages


def test_blob_message_round_trip_and_label(monkeypatch) -> None:
    from std_msgs.msg import UInt8MultiArray

    from q_grasp.nodes import convert

    # rosidl takes an array.array('B') as is (one memcpy) but checks bytes or a list element by
    # element in Python (seconds per MiB): record what blob_to_msg hands the data field.
    handed = []

    class Spy(UInt8MultiArray):
        __slots__ = ()
        data = property(UInt8MultiArray.data.fget,
                        lambda self, value: (handed.append(value),
                                             UInt8MultiArray.data.fset(self, value)))

    monkeypatch.setattr(convert, "UInt8MultiArray", Spy)
    blob = bytes(range(256)) * 4096  # 1 MiB
    msg = blob_to_msg(blob, "q_grasp/transitions")
    assert type(handed[-1]) is array.array and handed[-1].typecode == "B", type(handed[-1])
    assert len(handed[-1]) == len(blob)
    assert msg.layout.dim[0].label == "q_grasp/transitions"
    assert msg.layout.dim[0].size == len(blob)
    assert bytes(msg_to_blob(msg, "q_grasp/transitions")) == blob
    with pytest.raises(WireError, match="schema"):
        msg_to_blob(msg, "q_grasp/weights")
    msg.layout.dim = []
    with pytest.raises(WireError, match="schema"):
        msg_to_blob(msg, "q_grasp/transitions")


# ----------------------------------------------------------------------------- QoS


@pytest.mark.parametrize("message, stamp", [
    ("arm at home, 1 objects spawned; reset stamp 12.500000", 12.5),
    ("arm at home, 2 objects spawned", None),              # another simulator's answer
    ("arm at home; reset stamp soon", None),
    ("arm at home; reset stamp nan", None),
    ("arm at home; reset stamp inf", None),
])
def test_reset_stamp_read_from_the_reset_answer(message: str, stamp: float | None) -> None:
    assert reset_stamp_s(message) == stamp


def test_qos_profiles_match_design() -> None:
    assert qos.SENSOR_SUBSCRIBER_QOS.reliability == ReliabilityPolicy.BEST_EFFORT
    assert qos.IMAGE_PUBLISHER_QOS.reliability == ReliabilityPolicy.RELIABLE
    assert qos.COMMAND_QOS.reliability == ReliabilityPolicy.RELIABLE
    for profile in (qos.WEIGHTS_QOS, qos.LATCHED_QOS):
        assert profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
        assert profile.depth == 1 and profile.reliability == ReliabilityPolicy.RELIABLE
    deep = qos.transitions_qos(500)
    assert deep.depth == 500 and deep.reliability == ReliabilityPolicy.RELIABLE
    # Transient local: a trainer that was down gets what the actors published meanwhile.
    assert deep.durability == DurabilityPolicy.TRANSIENT_LOCAL
    held = qos.HeldAtStart('[["/arm/policy", "run-a", 180, 200]]')
    assert held.covers("/arm/policy", "run-a", 180, 20)
    assert not held.covers("/arm/policy", "run-a", 190, 20)  # partly new: not held
    assert not held.covers("/arm/policy", "run-b", 0, 1)  # another start of the actor
    assert not qos.HeldAtStart("").covers("/arm/policy", "run-a", 0, 1)
    with pytest.raises(ValueError, match="depth"):
        qos.transitions_qos(0)
    assert qos.CLOCK_QOS.reliability == ReliabilityPolicy.BEST_EFFORT


# ----------------------------------------------------------------------------- nodes


def _node(context, name: str, overrides: list | None = None):
    from rclpy.node import Node

    return Node(name, context=context, parameter_overrides=overrides or [])


# ----------------------------------------------------------------------------- diagnostics


@pytest.mark.ros
def test_diagnostics_counts_and_rejections(ros_context) -> None:
    from q_grasp.nodes.diagnostics import WARN, Diagnostics, status_values

    node = _node(ros_context, "diag")
    try:
        diag = Diagnostics(node, "q_grasp/test", period_s=0.0)
        diag.count("received", 3)
        diag.set(loss=0.125, buffer_size=10)
        for _ in range(5):
            diag.reject("trajectory", "non_finite", "NaN in point 0")
        diag.reject("trajectory", "unknown_joint", "joint 'x'")
        diag.set_level(WARN, "rejecting input")
        status = diag.status()
        values = status_values(status)
        assert values["received"] == "3" and values["loss"] == "0.125"
        assert values["rejected.trajectory.non_finite"] == "5"
        assert diag.rejected_total("trajectory") == 6 and diag.rejected_total() == 6
        assert status.level == WARN and status.message == "rejecting input"
        diag.publish()
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_diagnostics_period_is_wall_clock_time_also_on_simulated_time(ros_context) -> None:
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from q_grasp.nodes.diagnostics import Diagnostics

    # use_sim_time and no /clock: the node's clock stands still, a sim-time timer never fires
    node = _node(ros_context, "diag_sim_time", [Parameter("use_sim_time", value=True)])
    executor = SingleThreadedExecutor(context=ros_context)
    try:
        diag = Diagnostics(node, "q_grasp/test", period_s=0.05)
        published = []
        diag.publish = lambda: published.append(time.monotonic())  # what the timer calls
        diag._timer.callback = diag.publish
        executor.add_node(node)
        # The node's clock stands still, so only a wall-clock timer can fire; no rate is
        # asserted (the machine's load decides how soon it fires).
        deadline = time.monotonic() + 30.0
        while len(published) < 3 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert len(published) >= 3, len(published)
    finally:
        executor.shutdown()
        node.destroy_node()


@pytest.mark.ros
def test_ros_arm_counts_joint_states_going_back_in_time(ros_context) -> None:
    """Two arms on one /joint_states (two simulators in one domain) interleave their clocks."""
    from q_grasp.nodes.ros_arm import RosArm
    from q_grasp.robot_config import RobotConfig

    node = _node(ros_context, "stamp_check")
    try:
        robot = RobotConfig()
        arm = RosArm(node, robot)
        names = list(robot.arm_joint_names) + list(robot.gripper_joint_names)
        for stamp, value in ((5.0, 0.1), (5.5, 0.2), (2.0, 0.3), (5.6, 0.4), (2.1, 0.5)):
            arm._on_joint_state(joint_state_msg(names, np.full(len(names), value),
                                                np.zeros(len(names)), np.zeros(len(names)),
                                                to_time_msg(stamp)))
        assert arm.stamps_backwards == 2  # 5.5 -> 2.0 and 5.6 -> 2.1
        np.testing.assert_allclose(arm.read_arm_joints(), 0.5)  # the latest still counts
    finally:
        node.destroy_node()


class _FakeDriver:
    """Feeds RosArm joint states from another thread once a command is "published", as a
    driver would: the first one stamped ``jump_s`` later than the last (sim_arm's fast still
    world lets seconds of simulated time pass between two capped joint states)."""

    def __init__(self, arm, names, start, stamp_s: float) -> None:
        import threading

        self.arm, self.names, self.q, self.stamp = arm, names, np.array(start, float), stamp_s
        self.threading = threading
        self.feed(np.zeros(len(names)))

    def feed(self, velocity) -> None:
        self.arm._on_joint_state(joint_state_msg(self.names, self.q, np.asarray(velocity, float),
                                                 np.zeros(len(self.names)),
                                                 to_time_msg(self.stamp)))

    def run_after_command(self, script) -> None:
        def send(*_command) -> None:
            self.threading.Thread(target=script, daemon=True).start()
        self.arm._send = send


@pytest.mark.ros
def test_ros_arm_timeouts_start_when_the_command_is_seen(ros_context) -> None:
    """A move's timeout counts from the first joint state after the command, not from the
    stamp read before it (which may be seconds of simulated time old)."""
    from q_grasp.nodes.ros_arm import RosArm, RosArmConfig
    from q_grasp.robot_config import RobotConfig

    node = _node(ros_context, "timeout_start")
    try:
        robot = RobotConfig()
        names = list(robot.arm_joint_names) + list(robot.gripper_joint_names)
        arm = RosArm(node, robot, RosArmConfig(move_timeout_margin_s=1.5))
        n_arm = len(robot.arm_joint_names)
        start = np.concatenate([np.zeros(n_arm), robot.gripper_open_positions])
        driver = _FakeDriver(arm, names, start, stamp_s=5.0)
        target = np.full(n_arm, 0.2)

        def motion() -> None:
            time.sleep(0.05)
            driver.stamp = 9.0  # 4 s later: the still world ran on before the command took
            driver.feed(np.zeros(len(names)))
            for k in range(1, 11):  # 0.1 s of motion per message, arriving at the target
                time.sleep(0.01)
                driver.stamp += 0.1
                driver.q[:n_arm] = target * k / 10
                driver.feed(np.r_[np.full(n_arm, 0.0 if k == 10 else 2.0),
                                  np.zeros(len(names) - n_arm)])

        driver.run_after_command(motion)
        assert arm.move_arm(target) is True
        assert arm.move_timeouts == 0
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_ros_arm_resqueeze_on_an_object_does_not_wait_for_the_timeout(ros_context) -> None:
    """Closing fingers that already rest on an object: they do not move, and that is settled."""
    from q_grasp.nodes.ros_arm import RosArm, RosArmConfig
    from q_grasp.robot_config import RobotConfig

    node = _node(ros_context, "resqueeze")
    try:
        robot = RobotConfig()
        names = list(robot.arm_joint_names) + list(robot.gripper_joint_names)
        cfg = RosArmConfig(gripper_timeout_s=1.5, gripper_min_settle_s=0.1)
        arm = RosArm(node, robot, cfg)
        n_arm = len(robot.arm_joint_names)
        on_object = np.full(len(robot.gripper_joint_names), 0.012)  # part-way: an object
        driver = _FakeDriver(arm, names, np.r_[np.zeros(n_arm), on_object], stamp_s=2.0)

        def still() -> None:  # 3 s of arm time, nothing moving
            for _ in range(60):
                time.sleep(0.005)
                driver.stamp += 0.05
                driver.feed(np.zeros(len(names)))

        driver.run_after_command(still)
        aperture = arm.set_gripper(True)
        assert aperture > 0.0
        assert arm.arm_time_s() - 2.0 < 0.5  # settled after the minimum, not after 1.5 s
        # Opening fingers that have not started to move is not "settled": that waits.
        driver.run_after_command(still)
        before = arm.arm_time_s()
        arm.set_gripper(False)
        assert arm.arm_time_s() - before >= 1.5
    finally:
        node.destroy_node()


# ----------------------------------------------------------------------------- test isolation


def test_domain_ids_reserved_across_processes(tmp_path, monkeypatch) -> None:
    """Two runs on one host never get the same ROS domain (they would hear each other's nodes)."""
    import subprocess
    import sys

    from q_grasp import node_processes as testing

    monkeypatch.setattr(testing, "DOMAIN_LOCK_DIR", tmp_path)
    monkeypatch.setattr(testing, "MAX_HELD_DOMAINS", 100)
    monkeypatch.setattr(testing, "_held_domains", {})
    mine = {testing.unique_domain_id() for _ in range(95)}
    assert len(mine) == 95 and mine <= set(range(1, 101))
    child = subprocess.run(
        [sys.executable, "-c",
         "import sys, pathlib\n"
         "from q_grasp import node_processes as testing\n"
         "testing.DOMAIN_LOCK_DIR = pathlib.Path(sys.argv[1])\n"
         "print(' '.join(str(testing.unique_domain_id()) for _ in range(5)))",
         str(tmp_path)], capture_output=True, text=True, timeout=60, check=True,
        env=dict(os.environ, PYTHONPATH=str(testing.REPO_ROOT)))
    theirs = {int(v) for v in child.stdout.split()}
    assert theirs == set(range(1, 101)) - mine, child.stderr
    held = next(iter(mine))
    testing.release_domain_id(held)
    assert held not in testing._held_domains
    monkeypatch.setattr(testing, "MAX_HELD_DOMAINS", 2)
    testing.unique_domain_id()
    assert len(testing._held_domains) == 2  # the oldest released
    for domain in list(testing._held_domains):
        testing.release_domain_id(domain)


def test_the_multi_threaded_executor_comes_with_a_warning(ros_context, capsys) -> None:
    from q_grasp.nodes import runtime

    before = sys.getswitchinterval()
    try:
        runtime.make_executor("single", ros_context)
        assert "MultiThreadedExecutor" not in capsys.readouterr().err
        executor = runtime.make_executor("multi", ros_context)
        assert type(executor).__name__ == "MultiThreadedExecutor"
        assert "'single' or 'events'" in capsys.readouterr().err
        executor.shutdown()
    finally:
        sys.setswitchinterval(before)


def test_executors_shorten_the_gil_switch_interval(monkeypatch, ros_context) -> None:
    from q_grasp.nodes import runtime

    before = sys.getswitchinterval()
    try:
        monkeypatch.delenv(runtime.SWITCH_INTERVAL_ENV, raising=False)
        runtime.make_executor("single", ros_context)
        assert sys.getswitchinterval() == pytest.approx(runtime.DEFAULT_SWITCH_INTERVAL_S)
        monkeypatch.setenv(runtime.SWITCH_INTERVAL_ENV, "0.002")
        runtime.make_executor("single", ros_context)
        assert sys.getswitchinterval() == pytest.approx(0.002)
        sys.setswitchinterval(0.004)
        monkeypatch.setenv(runtime.SWITCH_INTERVAL_ENV, "0")  # Python's own: left alone
        runtime.make_executor("single", ros_context)
        assert sys.getswitchinterval() == pytest.approx(0.004)
        for bad in ("fast", "-1", "nan", "5"):
            monkeypatch.setenv(runtime.SWITCH_INTERVAL_ENV, bad)
            with pytest.raises(ValueError, match=runtime.SWITCH_INTERVAL_ENV):
                runtime.make_executor("single", ros_context)
    finally:
        sys.setswitchinterval(before)
