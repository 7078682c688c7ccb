"""RosArm (ArmInterface over ROS topics) against sim_arm in another process: moves, gripper,
and the project's grasp skill executed end to end through the trajectory topics. Only the
ArmInterface contract is used, so the test holds for any RosArm implementation."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import PoseArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from q_grasp.kinematics import KinematicChain  # noqa: E402
from q_grasp.node_processes import (  # noqa: E402
    start_node_process,
    stop_process,
    unique_domain_id,
    wait_until,
)
from q_grasp.nodes import qos  # noqa: E402
from q_grasp.nodes.ros_arm import RosArm, RosArmConfig  # noqa: E402
from q_grasp.robot_config import RobotConfig  # noqa: E402
from q_grasp.skills import arm_interface  # noqa: E402
from q_grasp.skills.grasp import execute_grasp  # noqa: E402

HOME = np.array([0.0, -1.1, 1.4, 1.3, 0.0])


@pytest.fixture(scope="module")
def ros_arm(tmp_path_factory, ros_domain_env):
    domain = ros_domain_env()
    log = Path(tmp_path_factory.mktemp("ros_arm")) / "sim_arm.log"
    proc = start_node_process(
        "q_grasp.nodes.sim_arm",
        ["-p", "real_time_factor:=4.0", "-p", "camera_rate_hz:=2.0",
         "-p", "scene.shapes:=[cube]", "-p", "seed:=3"],
        domain_id=domain, log_path=log)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("ros_arm_test", context=context)
    objects: list[PoseArray] = []
    node.create_subscription(PoseArray, "/sim_arm/object_poses", objects.append,
                             qos.DEFAULT_QOS)
    arm = RosArm(node, RobotConfig(), RosArmConfig())
    # The node processes' executor (q_grasp.nodes.runtime): rclpy's MultiThreadedExecutor
    # piles up pending futures under sim_arm's joint-state stream and stalls this process
    # for up to a second, long enough to miss a whole move (ros_arm module doc).
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        assert arm.wait_for_joint_states(timeout_s=30.0), log.read_text()
        # A command published before discovery matched the controller would be lost.
        assert wait_until(lambda: all(node.count_subscribers(t) > 0 for t in (
            "/arm_controller/joint_trajectory", "/gripper_controller/joint_trajectory")),
            10.0, lambda: time.sleep(0.02)), "sim_arm does not subscribe to the commands"
        yield arm, objects, proc, log
    finally:
        executor.shutdown()
        spinner.join(timeout=5.0)  # before the context goes: its spin would fail on it
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        stop_process(proc)


KEPT = """Subscriptions, publishers and clients a test adds to the fixture's node stay until the
node goes: destroying one while the executor's thread builds its wait set can end that thread
(rclpy InvalidHandle), and every later test in the module would then see no joint states."""


def test_is_an_arm_interface(ros_arm) -> None:
    arm, *_ = ros_arm
    assert isinstance(arm, arm_interface.ArmInterface)
    np.testing.assert_allclose(arm.read_arm_joints(), HOME, atol=0.03)
    assert arm.gripper_aperture() == pytest.approx(0.06, abs=0.005)


def test_move_arm_and_gripper(ros_arm) -> None:
    arm, _, proc, log = ros_arm
    target = HOME + np.array([0.4, 0.1, -0.1, 0.0, 0.5])
    assert arm.move_arm(target), log.read_text()[-2000:]
    np.testing.assert_allclose(arm.read_arm_joints(), target, atol=0.02)
    assert arm.set_gripper(True) < 0.004, log.read_text()[-2000:]
    assert arm.set_gripper(False) > 0.055, log.read_text()[-2000:]
    assert arm.move_arm(HOME), log.read_text()[-2000:]
    with pytest.raises(ValueError, match="finite"):
        arm.move_arm(np.full(5, np.nan))
    assert proc.poll() is None


def test_motion_end_is_the_arm_time_a_motion_ended(ros_arm) -> None:
    arm, _, _, log = ros_arm
    before = arm.arm_time_s()
    assert arm.move_arm(HOME + np.array([0.2, 0.0, 0.0, 0.0, 0.0])), log.read_text()[-2000:]
    ended = arm.motion_end_s
    assert ended is not None and before < ended <= arm.arm_time_s()
    # joint states keep coming; the end of the motion stays where it was
    assert arm.wait_until(lambda: False, 0.3) is False
    assert arm.arm_time_s() >= ended + 0.3
    assert arm.motion_end_s == ended
    arm.set_gripper(True)
    assert arm.motion_end_s > ended
    arm.set_gripper(False)
    assert arm.move_arm(HOME), log.read_text()[-2000:]


def _gripper_commands(arm: RosArm) -> list[JointTrajectory]:
    """The gripper commands the arm sends from now on (a subscription matched with its
    publisher; kept, see KEPT)."""
    sent: list[JointTrajectory] = []
    before = arm._gripper_pub.get_subscription_count()
    arm.node.create_subscription(JointTrajectory, "/gripper_controller/joint_trajectory",
                                 sent.append, qos.COMMAND_QOS)
    assert wait_until(lambda: arm._gripper_pub.get_subscription_count() > before, 10.0,
                      lambda: time.sleep(0.02))
    return sent


def test_a_gripper_already_where_it_was_sent_gets_no_command(ros_arm) -> None:
    arm, *_ = ros_arm
    sent = _gripper_commands(arm)
    assert arm.set_gripper(False) > 0.055  # open, sent (or already so): settles open
    time.sleep(0.3)  # a command it sent has arrived
    n = len(sent)
    ended = arm.motion_end_s
    assert arm.set_gripper(False) > 0.055  # open again: nothing to do
    time.sleep(0.3)
    assert len(sent) == n and arm.motion_end_s == ended
    assert arm.set_gripper(True) < 0.004  # a change is sent
    assert wait_until(lambda: len(sent) == n + 1, 5.0, lambda: time.sleep(0.02))
    arm.set_gripper(False)


def test_a_gripper_opened_by_a_reset_gets_no_command_once_assumed_open(ros_arm) -> None:
    """sim_arm's scene reset opens the gripper: after assume_gripper_open, opening sends
    nothing while the joint states show it open (the policy's skip_release_before_reset)."""
    from std_srvs.srv import Trigger

    arm, *_ = ros_arm
    node = arm.node
    sent = _gripper_commands(arm)
    client = node.create_client(Trigger, "/sim_arm/reset_scene")
    assert client.wait_for_service(timeout_sec=10.0)
    assert arm.set_gripper(True) < 0.004
    assert wait_until(lambda: bool(sent), 5.0, lambda: time.sleep(0.02))
    result = client.call_async(Trigger.Request())
    assert wait_until(result.done, 30.0, lambda: time.sleep(0.02)) and result.result().success
    names = arm._gripper_names

    def open_and_still() -> bool:  # (called with the state lock held)
        speeds = [arm.feedback.velocities.get(n, 1.0) for n in names]
        return arm.gripper_aperture() > 0.055 and arm.config.fingers_settled(speeds)

    assert arm.wait_until(open_and_still, 2.0)
    arm.assume_gripper_open()
    n = len(sent)
    assert arm.set_gripper(False) > 0.055
    time.sleep(0.3)  # a command it sent would have arrived
    assert len(sent) == n


def test_move_arm_through_is_one_blended_trajectory(ros_arm) -> None:
    arm, _, proc, log = ros_arm
    node = arm.node
    commands: list[JointTrajectory] = []
    before = node.count_subscribers("/arm_controller/joint_trajectory")
    node.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory",
                             commands.append, 10)  # (see KEPT)
    assert wait_until(lambda: node.count_subscribers("/arm_controller/joint_trajectory")
                      > before, 10.0, lambda: time.sleep(0.02))
    assert arm.move_arm(HOME)
    assert wait_until(lambda: bool(commands), 10.0, lambda: time.sleep(0.02))
    commands.clear()
    out = HOME + np.array([0.6, 0.0, 0.0, 0.0, 0.0])
    t0 = arm.arm_time_s()
    assert arm.move_arm_through([out, HOME]), log.read_text()[-2000:]
    # It started at the last waypoint, yet waited for the whole path: both segments'
    # 0.3 s at 2 rad/s (arrival counts from the start of the last segment). The path
    # itself is sim_arm's to follow (sampling: test_ros_common).
    assert arm.arm_time_s() - t0 >= 0.6
    np.testing.assert_allclose(arm.read_arm_joints(), HOME, atol=0.02)
    assert wait_until(lambda: bool(commands), 5.0, lambda: time.sleep(0.02))
    assert len(commands) == 1 and len(commands[0].points) == 2
    # Not blended: one trajectory per waypoint, each waited for.
    commands.clear()
    arm.config.blend_waypoints = False
    try:
        assert arm.move_arm_through([out, HOME]), log.read_text()[-2000:]
    finally:
        arm.config.blend_waypoints = True
    assert wait_until(lambda: len(commands) >= 2, 5.0, lambda: time.sleep(0.02))
    assert [len(c.points) for c in commands] == [1, 1]
    np.testing.assert_allclose(arm.read_arm_joints(), HOME, atol=0.02)
    assert arm.move_arm_through([]) is True
    with pytest.raises(ValueError, match="finite"):
        arm.move_arm_through([out, np.full(5, np.nan)])
    assert proc.poll() is None


def test_grasp_skill_over_ros(ros_arm) -> None:
    arm, objects, _, log = ros_arm
    assert arm.move_arm(HOME)
    chain = KinematicChain.from_robot_config(RobotConfig())
    assert wait_until(lambda: bool(objects), 10.0, lambda: time.sleep(0.05)), (
        "no ground-truth object poses from sim_arm")
    pose = objects[-1].poses[0]
    q = pose.orientation
    yaw = float(np.arctan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y**2 + q.z**2)))
    # A cube resting on the table: its top surface is at twice its centre height.
    surface = [pose.position.x, pose.position.y, 2.0 * pose.position.z]
    outcome = execute_grasp(arm, chain, surface, yaw, home_joints=HOME)
    assert outcome.ik_success, outcome.message
    assert outcome.success, f"{outcome.message}\n{log.read_text()[-2000:]}"
    np.testing.assert_allclose(arm.read_arm_joints(), HOME, atol=0.03)


def test_a_clock_that_goes_back_ends_the_wait(monkeypatch) -> None:
    """A restarted driver's joint states start again at a small stamp: a wait whose deadline
    is in the old clock ends with ArmRestartedError instead of lasting until the new clock
    has caught up."""
    from sensor_msgs.msg import JointState

    from q_grasp.nodes.ros_arm import ArmRestartedError

    monkeypatch.setenv("ROS_DOMAIN_ID", str(unique_domain_id()))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("restart_test", context=context)
    robot = RobotConfig()
    arm = RosArm(node, robot, RosArmConfig())
    driver = node.create_publisher(JointState, "joint_states", qos.JOINT_STATES_PUBLISHER_QOS)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    names = list(robot.arm_joint_names) + list(robot.gripper_joint_names)

    def publish(stamp_s: float) -> None:
        msg = JointState(name=names, position=[0.0] * len(names))
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp_s), int(stamp_s % 1 * 1e9)
        driver.publish(msg)

    outcome: list[BaseException | bool] = []

    def waiter() -> None:
        try:
            outcome.append(arm.wait_until(lambda: False, 60.0))  # until 160 s, old clock
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            outcome.append(exc)

    try:
        assert wait_until(lambda: arm.arm_time_s() >= 100.0, 10.0,
                          lambda: (publish(100.0), time.sleep(0.05)))
        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        for k in range(40):  # the restarted driver: a new clock from 1 s
            publish(101.0 if k < 5 else 1.0 + 0.05 * k)
            time.sleep(0.05)
        thread.join(timeout=5.0)
        assert outcome and isinstance(outcome[0], ArmRestartedError), outcome
        assert arm.restarts == 1
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
