"""The xArm board's protocol, calibration and fake board; xarm_driver over real DDS against the
fake board (the arm itself cannot be here); the real policy node driving it."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from q_grasp.hardware.fake_board import FakeXArmBoard
from q_grasp.hardware.xarm import (
    RAD_PER_UNIT,
    Command,
    GripperCalibration,
    ServoCalibration,
    XArmBoard,
    XArmCalibration,
    XArmError,
    move_packet,
    packet,
    parse_position_reply,
    position_read_packet,
)
from q_grasp.robot_config import RobotConfig

ARM = RobotConfig().arm_joint_names


# ----------------------------------------------------------------------------- protocol


def test_packets_have_the_boards_layout() -> None:
    # 0x55 0x55, len(data) + 2, command, data; MOVE: n, duration lo/hi, (id, lo, hi) per servo
    assert move_packet({6: 500, 1: 0x2BC}, 1000) == bytes(
        [0x55, 0x55, 11, 3, 2, 0xE8, 0x03, 6, 0xF4, 0x01, 1, 0xBC, 0x02])
    assert position_read_packet([6, 5]) == bytes([0x55, 0x55, 5, 21, 2, 6, 5])
    with pytest.raises(ValueError, match="outside"):
        move_packet({6: 1001}, 100)
    with pytest.raises(ValueError, match="duration"):
        move_packet({6: 500}, 70000)


def test_position_replies_are_parsed_and_checked() -> None:
    reply = packet(Command.POSITION_READ, [2, 6, 0xF4, 0x01, 5, 0x10, 0x00]) + bytes(40)
    assert parse_position_reply(reply, [6, 5]) == {6: 500, 5: 16}
    with pytest.raises(XArmError, match="command 3"):
        parse_position_reply(packet(Command.MOVE, [1, 6, 0, 0]), [6])
    with pytest.raises(XArmError, match="does not hold"):
        parse_position_reply(packet(Command.POSITION_READ, [2, 6, 0xF4]), [6])
    with pytest.raises(XArmError, match=r"servo\(s\) \[5\]"):
        parse_position_reply(packet(Command.POSITION_READ, [1, 6, 0xF4, 0x01]), [6, 5])
    with pytest.raises(XArmError, match="0x55"):
        parse_position_reply(bytes([0x54, 0x55, 2, 21]), [6])


def test_calibration_maps_and_never_leaves_its_limits(tmp_path) -> None:
    joint = ServoCalibration(servo_id=5, centre_units=480, direction=-1, lower_rad=-1.5,
                             upper_rad=1.2)
    for angle in np.linspace(-1.5, 1.2, 11):
        assert abs(joint.to_rad(joint.to_units(angle)) - angle) <= RAD_PER_UNIT / 2 + 1e-12
    assert joint.to_units(5.0) == joint.to_units(1.2)  # clipped to the calibrated limit
    assert joint.to_units(-5.0) == joint.to_units(-1.5)
    gripper = GripperCalibration(open_units=700, closed_units=260, open_m=0.03, closed_m=0.0)
    assert gripper.to_units(0.03) == 700 and gripper.to_units(0.0) == 260
    assert gripper.to_units(1.0) == 700
    assert gripper.to_m(480) == pytest.approx(0.015)

    calibration = XArmCalibration.default(ARM)
    path = tmp_path / "xarm.yaml"
    calibration.to_yaml(path)
    assert XArmCalibration.from_yaml(path, ARM) == calibration
    data = yaml.safe_load(path.read_text())
    del data["joints"]["elbow_joint"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=r"xarm.yaml.*missing \['elbow_joint'\]"):
        XArmCalibration.from_yaml(path, ARM)
    data["joints"]["elbow_joint"] = {"servo_id": 5}  # the shoulder's id again
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="servo ids repeat"):
        XArmCalibration.from_yaml(path, ARM)
    # A bad value gets the config core's one line: the file, the field, the range, the value.
    for change, message in (({"servo_id": 0}, "joints.elbow_joint.servo_id: must be in "
                                              "[1, 253], got 0"),
                            ({"servo_id": 4, "direction": "up"},
                             "joints.elbow_joint.direction: expected an integer, got 'up'"),
                            ({"servo_id": 4, "spin": 1},
                             "joints.elbow_joint.spin: unknown field")):
        data["joints"]["elbow_joint"] = change
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ValueError) as info:
            XArmCalibration.from_yaml(path, ARM)
        assert str(info.value).startswith(f"config file {str(path)!r}: {message}")


def test_joints_map_to_servos_and_back_within_the_calibrated_range(tmp_path) -> None:
    """XArmJoints (the driver's joints without ROS): uncalibrated defaults narrowed to the
    URDF, the home pose in servo units, and positions through units and back."""
    from q_grasp.hardware.xarm_joints import XArmJoints

    robot = RobotConfig()
    joints = XArmJoints(robot)
    assert not joints.calibrated
    assert joints.servo_ids == joints.calibration.servo_ids and len(joints.servo_ids) == 6
    lower, upper = joints.arm_limits
    assert all(lower[n] < upper[n] for n in robot.arm_joint_names)
    units = joints.home_units()
    positions = joints.positions(units)
    assert [positions[n] for n in robot.arm_joint_names] == pytest.approx(
        robot.home_positions, abs=0.01)  # (servo units are ~4 mrad)
    opening = float(np.mean(robot.gripper_open_positions))
    assert [positions[n] for n in robot.gripper_joint_names] == pytest.approx(
        [opening] * 2, abs=1e-3)
    names = [*robot.arm_joint_names, *robot.gripper_joint_names]
    targets = joints.servo_targets(names, np.array([positions[n] for n in names]))
    assert set(targets) == set(joints.servo_ids)  # one servo for both fingers
    assert all(abs(targets[i] - units[i]) <= 1 for i in targets)


def test_fake_board_turns_servos_at_a_bounded_speed() -> None:
    now = [0.0]
    fake = FakeXArmBoard(initial_units={6: 500}, max_speed_units_s=1000.0,
                         clock=lambda: now[0])
    board = XArmBoard(fake)
    board.move({6: 800}, duration_s=0.1)  # faster than the servo can: it takes 0.3 s
    now[0] = 0.15
    assert board.read_positions([6])[6] == 650
    now[0] = 0.3
    assert board.read_positions([6, 5]) == {6: 800, 5: 500}
    fake.silent_servos.add(5)
    with pytest.raises(XArmError, match=r"\[5\] did not answer"):
        board.read_positions([6, 5])
    board.power_off([6])
    assert fake.received[-1].command == Command.POWER_OFF
    assert not fake.servos[6].powered


# ----------------------------------------------------------------------------- the driver


rclpy = pytest.importorskip("rclpy")


class Health:
    """Records what an XArmController reports."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.levels: list[tuple[str, str]] = []

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def set(self, **values: float) -> None:
        pass

    def ok(self, message: str) -> None:
        self.levels.append(("ok", message))

    def warn(self, message: str) -> None:
        self.levels.append(("warn", message))

    def error(self, message: str, log: bool = False) -> None:
        self.levels.append(("error", message))


def test_controller_plays_a_trajectory_and_holds_without_ros() -> None:
    from q_grasp.hardware.xarm_controller import XArmController
    from q_grasp.motion import Trajectory
    from q_grasp.node_params.xarm_driver import XArmDriverConfig

    reads: list[np.ndarray] = []
    health = Health()
    xarm = XArmController(XArmDriverConfig(device="fake", read_rate_hz=50.0), health,
                          lambda names, q: reads.append(q))
    home = np.array(RobotConfig().home_positions)
    target = home + [0.2, -0.1, 0.1, 0.0, 0.3]
    path = Trajectory(joint_names=tuple(ARM), times_s=np.array([0.3]), positions=target[None])
    assert xarm.play("arm", path) == "no_state"  # nothing read yet
    xarm.connect()
    thread = threading.Thread(target=xarm.run, daemon=True)
    thread.start()
    try:
        _wait(lambda: len(reads) >= 2, 20, "position reads")
        assert np.allclose(reads[-1][:5], home, atol=RAD_PER_UNIT)
        assert xarm.play("arm", path) == ""
        _wait(lambda: np.allclose(reads[-1][:5], target, atol=2 * RAD_PER_UNIT), 20,
              "the arm at the target")
        fake = xarm.board.device
        duration, targets = fake.moves()[-1].move_targets()
        assert duration == 300 and set(targets) == {xarm.calibration.joints[n].servo_id
                                                    for n in ARM}
        xarm.hold("arm")
        assert fake.moves()[-1].move_targets()[0] == 0  # a hold is a MOVE of duration 0
    finally:
        xarm.close(thread)
    assert not thread.is_alive()
    assert health.counts.get("moves_sent", 0) >= 2 and ("ok", "connected") in health.levels


@pytest.fixture
def driver(request, monkeypatch):
    """xarm_driver (fake board) in this process, a probe node beside it, both spun."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from q_grasp.node_processes import unique_domain_id
    from q_grasp.nodes import qos
    from q_grasp.nodes.xarm_driver import XArmDriverNode

    domain = unique_domain_id()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    overrides = {"device": "fake", "read_rate_hz": 50.0, **getattr(request, "param", {})}
    node = XArmDriverNode(context=context, parameter_overrides=[
        Parameter(k, value=v) for k, v in overrides.items()])
    probe = rclpy.create_node("xarm_probe", context=context)
    seen = {"states": [], "diag": {}}
    probe.create_subscription(JointState, "joint_states", seen["states"].append,
                              qos.SENSOR_SUBSCRIBER_QOS)
    probe.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda m: [seen["diag"].update({kv.key: kv.value for kv in s.values} | {
            "_level": s.level, "_message": s.message}) for s in m.status
            if s.name.endswith("xarm_driver")], qos.DEFAULT_QOS)
    arm_pub = probe.create_publisher(JointTrajectory, "arm_controller/joint_trajectory",
                                     qos.COMMAND_QOS)
    grip_pub = probe.create_publisher(JointTrajectory, "gripper_controller/joint_trajectory",
                                      qos.COMMAND_QOS)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(probe)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        yield node, seen, arm_pub, grip_pub, domain
    finally:
        executor.shutdown(timeout_sec=2.0)
        spinner.join(timeout=5.0)
        probe.destroy_node()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _trajectory(names, points):
    from builtin_interfaces.msg import Duration
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    msg = JointTrajectory()
    msg.joint_names = list(names)
    for t, positions in points:
        point = JointTrajectoryPoint()
        point.positions = [float(p) for p in positions]
        point.time_from_start = Duration(sec=int(t), nanosec=int(round((t % 1) * 1e9)))
        msg.points.append(point)
    return msg


def test_driver_plays_trajectories_as_timed_moves(driver) -> None:
    node, seen, arm_pub, grip_pub, _ = driver
    fake = node.xarm.board.device
    _wait(lambda: len(seen["states"]) >= 3 and arm_pub.get_subscription_count() > 0, 20,
          "joint states and the trajectory subscription")
    state = seen["states"][-1]
    assert list(state.name) == [*ARM, *RobotConfig().gripper_joint_names]
    home = np.array(RobotConfig().home_positions)
    assert np.allclose(state.position[:5], home, atol=RAD_PER_UNIT)
    assert state.header.stamp.sec > 0

    target1 = home + [0.2, -0.1, 0.1, 0.0, 0.3]
    target2 = home + [0.3, 0.0, 0.2, -0.1, 0.0]
    before = len(fake.moves())
    arm_pub.publish(_trajectory(ARM, [(0.4, target1), (0.7, target2)]))
    _wait(lambda: len(fake.moves()) >= before + 2, 10, "two MOVE packets")
    moves = fake.moves()[before:before + 2]
    cal = node.xarm.calibration
    for packet_, target, duration_ms in zip(moves, (target1, target2), (400, 300)):
        duration, targets = packet_.move_targets()
        assert duration == duration_ms
        assert set(targets) == {cal.joints[n].servo_id for n in ARM}
        for name, angle in zip(ARM, target):
            assert abs(targets[cal.joints[name].servo_id] - cal.joints[name].to_units(angle)) \
                <= 1
    # The second segment starts when the first ends (0.4 s after the first).
    assert moves[1].time_s - moves[0].time_s == pytest.approx(0.4, abs=0.1)
    _wait(lambda: np.allclose(seen["states"][-1].position[:5], target2,
                              atol=2 * RAD_PER_UNIT), 10, "the arm at the last point")

    # Gripper: both fingers map to the one servo.
    grip_pub.publish(_trajectory(RobotConfig().gripper_joint_names, [(0.2, (0.0, 0.0))]))
    _wait(lambda: fake.moves()[-1].move_targets()[1].get(1) == cal.gripper.to_units(0.0), 10,
          "the gripper MOVE")
    _wait(lambda: abs(seen["states"][-1].position[5]) < 0.001, 10, "the fingers closed")

    # An empty trajectory stops the arm where it is.
    arm_pub.publish(_trajectory(ARM, [(3.0, home)]))
    time.sleep(0.5)
    arm_pub.publish(_trajectory(ARM, []))
    _wait(lambda: fake.moves()[-1].move_targets()[0] == 0, 10, "the hold MOVE")
    held = fake.moves()[-1].move_targets()[1][6]
    time.sleep(0.3)
    assert abs(fake.units(6) - held) <= 1


def test_bad_trajectories_never_reach_the_board(driver) -> None:
    node, seen, arm_pub, grip_pub, _ = driver
    fake = node.xarm.board.device
    _wait(lambda: len(seen["states"]) >= 2 and arm_pub.get_subscription_count() > 0, 20,
          "joint states")
    home = RobotConfig().home_positions
    before = len(fake.moves())
    arm_pub.publish(_trajectory(ARM, [(0.5, [math.nan, *home[1:]])]))
    arm_pub.publish(_trajectory(["base_joint", "spare_joint"], [(0.5, (0.0, 0.0))]))
    arm_pub.publish(_trajectory(ARM, [(0.5, [3.5, *home[1:]])]))
    arm_pub.publish(_trajectory(ARM, [(0.5, home), (0.4, home)]))
    arm_pub.publish(_trajectory(ARM[:2], [(0.5, (0.0,))]))
    _wait(lambda: sum(int(v) for k, v in seen["diag"].items()
                      if k.startswith("rejected.arm_trajectory.")) >= 5, 20,
          "five rejections on /diagnostics")
    for reason in ("non_finite", "unknown_joint", "out_of_limits", "time_not_increasing",
                   "size_mismatch"):
        assert int(seen["diag"][f"rejected.arm_trajectory.{reason}"]) == 1, seen["diag"]
    assert len(fake.moves()) == before
    assert node.context.ok()


@pytest.mark.parametrize("driver", [{"device": "hid"}], indirect=True)
def test_a_missing_board_is_reported_and_the_node_stays_up(driver) -> None:
    node, seen, *_ = driver
    _wait(lambda: "no xArm board" in seen["diag"].get("_message", ""), 20,
          "the missing board on /diagnostics")
    assert seen["diag"]["_level"] == b"\x02"  # ERROR
    assert node.xarm.board is None and node.context.ok()


def test_policy_runs_reacher_episodes_through_the_driver(driver, tmp_path) -> None:
    """The real policy node (its own process) completes Reacher episodes against
    xarm_driver + fake board over DDS."""
    from q_grasp.node_processes import start_node_process, stop_process

    node, seen, arm_pub, _, domain = driver
    fake = node.xarm.board.device
    log = tmp_path / "policy.log"
    policy = start_node_process(
        "q_grasp.nodes.policy",
        ["-p", "task:=reacher", "-p", "train:=false", "-p", "eval_epsilon:=1.0",
         "-p", "use_sim_time:=false", "-p", "seed:=4", "-p", "log_every_s:=0.5"],
        domain_id=domain, log_path=log)
    try:
        _wait(lambda: int(seen["diag"].get("accepted.arm_trajectory", 0)) >= 20, 120,
              "the policy's trajectories")
        _wait(lambda: _policy_episodes(log) >= 1, 240, "a finished Reacher episode")
    finally:
        assert stop_process(policy) == 0, log.read_text()[-3000:]
    assert len(fake.moves()) >= 20
    assert int(seen["diag"].get("read_failures", 0)) == 0


def _policy_episodes(log: Path) -> int:
    import re

    found = re.findall(r"episode (\d+):", log.read_text())
    return max(map(int, found), default=0)


def test_calibration_routine_on_the_fake_board() -> None:
    """The arm moved by hand as the routine asks (here: the fake board's servos set by the
    test) gives each joint's zero units and direction and the gripper's range."""
    from q_grasp.hardware.calibrate import calibrate

    fake = FakeXArmBoard(initial_units={6: 480, 5: 530, 4: 500, 3: 505, 2: 470, 1: 400})
    zero = {6: 480, 5: 530, 4: 500, 3: 505, 2: 470}
    directions = {6: 1, 5: -1, 4: 1, 3: -1, 2: 1}
    steps = iter([None, *zero, "open", "closed"])

    def ask(text: str) -> None:
        step = next(steps)
        for servo in fake.servos.values():
            servo.powered = False
        if step is None:
            for servo, units in zero.items():
                fake.servos[servo].start_units = fake.servos[servo].target_units = units
        elif step in zero:
            state = fake.servos[step]
            state.start_units = state.target_units = zero[step] + 80 * directions[step]
        else:
            units = 700 if step == "open" else 260
            fake.servos[1].start_units = fake.servos[1].target_units = units

    calibration = calibrate(XArmBoard(fake), ARM, {n: (-1.5, 1.5) for n in ARM}, ask)
    for name, servo in zip(ARM, (6, 5, 4, 3, 2)):
        joint = calibration.joints[name]
        assert (joint.servo_id, joint.centre_units, joint.direction) == (
            servo, zero[servo], directions[servo])
        assert -1.5 <= joint.lower_rad < joint.upper_rad <= 1.5
    assert (calibration.gripper.open_units, calibration.gripper.closed_units) == (700, 260)
    assert fake.received[0].command == Command.POWER_OFF

    def ask_without_moving(text: str) -> None:
        pass

    with pytest.raises(ValueError, match="base_joint .*turn it further"):
        calibrate(XArmBoard(FakeXArmBoard()), ARM, {}, ask_without_moving)


def test_policy_runs_grasp_episodes_through_the_driver(driver, tmp_path) -> None:
    """Grasp episodes through xarm_driver + fake board: the camera comes from a simulator
    whose own arm topics are moved out of the way (the fake board has no camera); every
    attempt's arm and gripper trajectories become MOVE packets."""
    from q_grasp.node_processes import start_node_process, stop_process

    node, seen, _, _, domain = driver
    fake = node.xarm.board.device
    logs = {name: tmp_path / f"{name}.log" for name in ("camera_sim", "policy")}
    camera = start_node_process(
        "q_grasp.nodes.sim_arm",
        ["-r", "__node:=sim_arm", "-r", "joint_states:=/sim_only/joint_states",
         "-r", "arm_controller/joint_trajectory:=/sim_only/arm",
         "-r", "gripper_controller/joint_trajectory:=/sim_only/gripper",
         "-p", "publish_clock:=false", "-p", "real_time_factor:=1.0",
         "-p", "camera_rate_hz:=10.0"],
        domain_id=domain, log_path=logs["camera_sim"])
    policy = start_node_process(
        "q_grasp.nodes.policy",
        ["-p", "task:=grasp", "-p", "train:=false", "-p", "eval_epsilon:=1.0",
         "-p", "use_sim_time:=false", "-p", "seed:=2", "-p", "log_every_s:=0.5",
         "-p", "max_stamp_skew_s:=0.2"],
        domain_id=domain, log_path=logs["policy"])
    try:
        _wait(lambda: _policy_episodes(logs["policy"]) >= 1, 240,
              "a finished grasp episode: " + logs["policy"].read_text()[-2000:])
    finally:
        codes = [stop_process(policy), stop_process(camera)]
    assert codes == [0, 0], {n: p.read_text()[-2000:] for n, p in logs.items()}
    cal = node.xarm.calibration
    gripper_moves = [p for p in fake.moves() if cal.gripper.servo_id in p.move_targets()[1]]
    arm_moves = [p for p in fake.moves()
                 if cal.joints["base_joint"].servo_id in p.move_targets()[1]]
    assert len(gripper_moves) >= 2 and len(arm_moves) >= 4  # open/close; home, descend, lift
    assert int(seen["diag"].get("read_failures", 0)) == 0


def test_twin_check_finds_a_servo_that_stops_short() -> None:
    """The fake board on a simulated clock against pybullet: joints that follow agree at rest;
    a servo stalling 15 units short shows as that joint's rest offset."""
    from q_grasp.hardware.twin_check import twin_check

    robot = RobotConfig()
    calibration = XArmCalibration.default(ARM, {n: (-2.0, 2.0) for n in ARM})
    now = [0.0]

    def sleep(dt: float) -> None:
        now[0] += dt

    fake = FakeXArmBoard(calibration.servo_ids, clock=lambda: now[0], initial_units={
        calibration.joints[n].servo_id: calibration.joints[n].to_units(q)
        for n, q in zip(ARM, robot.home_positions)})
    elbow = calibration.joints["elbow_joint"].servo_id
    fake.servos[elbow].stall_units = 15.0
    reports = {r.joint: r for r in twin_check(XArmBoard(fake), calibration, robot,
                                              clock=lambda: now[0], sleep=sleep)}
    stall = 15.0 * RAD_PER_UNIT
    assert abs(abs(reports["elbow_joint"].rest_offset_rad) - stall) < 0.3 * stall
    for name in ARM:
        if name != "elbow_joint":
            assert abs(reports[name].rest_offset_rad) < 0.3 * stall, reports[name]
        assert reports[name].max_rad >= abs(reports[name].rest_offset_rad)
