"""sim_arm's physics thread running in this process, a listener node beside it over DDS: a
still world at ``still_real_time_factor`` lets many ticks pass per loop iteration while each
stream keeps to ``max_publish_rate_hz`` per wall-clock second, and a trajectory ends the
long sleep of a still world at once."""

from __future__ import annotations

import threading
import time

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from q_grasp.nodes import qos  # noqa: E402
from q_grasp.nodes.sim_arm import SimArmNode  # noqa: E402
from q_grasp.nodes.testing import unique_domain_id  # noqa: E402


@pytest.fixture()
def system(request):
    """(sim_arm with its physics thread, listener node, received joint-state stamps)."""
    overrides = {"publish_clock": True, "camera_rate_hz": 0.0, **request.param}
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=unique_domain_id())
    sim = SimArmNode(context=context, parameter_overrides=[
        Parameter(name, value=value) for name, value in overrides.items()])
    listener = rclpy.create_node("listener", context=context)
    received: list[tuple[float, float]] = []  # (wall s, stamp s)
    listener.create_subscription(
        JointState, "joint_states",
        lambda m: received.append((time.monotonic(),
                                   m.header.stamp.sec + m.header.stamp.nanosec * 1e-9)),
        qos.SENSOR_SUBSCRIBER_QOS)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(sim)
    executor.add_node(listener)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        yield sim, listener, received
    finally:
        executor.shutdown(timeout_sec=2.0)
        spinner.join(timeout=5.0)  # before the nodes go: its spin would use their handles
        listener.destroy_node()
        sim.destroy_node()
        rclpy.try_shutdown(context=context)


def _wait_until_skipping(sim: SimArmNode, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not sim._skipping:
        assert time.monotonic() < deadline, "the world never came to rest"
        time.sleep(0.02)


def _command_publisher(listener, topic: str = "arm_controller/joint_trajectory"):
    pub = listener.create_publisher(JointTrajectory, topic, qos.COMMAND_QOS)
    deadline = time.monotonic() + 10.0
    while pub.get_subscription_count() == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return pub


def _states_after(got: list, n0: int, count: int) -> list:
    """``count`` entries of the fixture's joint-state list from index ``n0`` (waits up to 10 s)."""
    deadline = time.monotonic() + 10.0
    while len(got) < n0 + count:
        assert time.monotonic() < deadline, got[n0:]
        time.sleep(0.002)
    return got[n0:n0 + count]


def _base_move(sim: SimArmNode, delta_rad: float, duration_s: float) -> JointTrajectory:
    target = sim.robot.home_positions.copy()
    target[0] += delta_rad
    msg = JointTrajectory(joint_names=list(sim._config.robot.arm_joint_names))
    point = JointTrajectoryPoint(positions=[float(v) for v in target])
    point.time_from_start.sec = int(duration_s)
    point.time_from_start.nanosec = int(round((duration_s % 1.0) * 1e9))
    msg.points = [point]
    return msg


@pytest.mark.parametrize("system", [{"real_time_factor": 2.0, "still_real_time_factor": 40.0,
                                     "max_publish_rate_hz": 25.0,
                                     "joint_state_rate_hz": 60.0}], indirect=True)
def test_still_world_runs_at_its_own_factor_with_capped_streams(system) -> None:
    sim, _, received = system
    _wait_until_skipping(sim)
    time.sleep(0.3)
    t0, skipped0 = sim._sim_time_s(), sim._ticks_skipped
    n0 = len(received)
    time.sleep(2.0)
    advanced = sim._sim_time_s() - t0
    # Far faster than the moving factor (2) and never faster than the still one (40)...
    assert 20.0 < advanced / 2.0 <= 40.0 * 1.1, advanced
    assert sim._ticks_skipped - skipped0 >= 0.9 * advanced * sim._config.tick_rate_hz
    # ...while joint states keep to 25 per wall-clock second (60 Hz of simulated time at
    # factor 40 would be 2,400 per second), each newer than the last.
    got = received[n0:]
    assert 10 <= len(got) <= 25 * 2.0 * 1.1 + 2, len(got)
    stamps = [s for _, s in got]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert sim._skipping  # nothing woke physics meanwhile


@pytest.mark.parametrize("system", [{"real_time_factor": 1.0, "joint_state_rate_hz": 0.2,
                                     "clock_rate_hz": 0.2}], indirect=True)
def test_a_trajectory_ends_the_sleep_of_a_still_world_at_once(system) -> None:
    # At 0.2 Hz the still loop sleeps ~5 s between messages; a command must not wait for that.
    sim, listener, _ = system
    _wait_until_skipping(sim, timeout_s=60.0)
    time.sleep(0.5)
    pub = _command_publisher(listener)
    msg = _base_move(sim, 0.2, 0.2)
    sent = time.monotonic()
    pub.publish(msg)
    while sim._skipping:
        assert time.monotonic() - sent < 2.0, "the command waited for the still loop's sleep"
        time.sleep(0.005)
    assert sim.diagnostics.counter("accepted.arm_trajectory") == 1


@pytest.mark.parametrize("system", [
    {"real_time_factor": 1.0, "joint_state_rate_hz": 0.2, "clock_rate_hz": 0.2},
    {"real_time_factor": 1.0, "joint_state_rate_hz": 0.2, "clock_rate_hz": 0.2,
     "joint_states_on_events": False}], indirect=True, ids=["events", "no_events"])
def test_joint_states_report_a_command_taken_up_and_its_goal_reached(system) -> None:
    # The stream is due every 5 s; with joint_states_on_events the command's start and the
    # arm's arrival are reported on their ticks, before the joint state of the world at rest.
    sim, listener, _ = system
    base = sim._config.robot.arm_joint_names[0]
    states: list[tuple[float, float]] = []  # (stamp s, base joint position)
    listener.create_subscription(
        JointState, "joint_states",
        lambda m: states.append((m.header.stamp.sec + m.header.stamp.nanosec * 1e-9,
                                 m.position[list(m.name).index(base)])),
        qos.SENSOR_SUBSCRIBER_QOS)
    _wait_until_skipping(sim, timeout_s=60.0)
    pub = _command_publisher(listener)
    time.sleep(0.5)
    msg = _base_move(sim, 0.2, 0.2)
    n0, sent_s = len(states), sim._sim_time_s()
    pub.publish(msg)
    deadline = time.monotonic() + 10.0
    while sim._skipping or sim.arm.active:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    _wait_until_skipping(sim)
    time.sleep(0.3)
    got = states[n0:]
    assert got, "no joint state after the command"
    rest_stamp = got[-1][0]
    if sim._config.joint_states_on_events:
        assert len(got) == 3, got  # taken up, goal reached, at rest
        taken_up, arrived = got[0], got[1]
        assert taken_up[0] - sent_s < 0.2  # a tick or two after the command, not 5 s
        goal = msg.points[0].positions[0]
        assert abs(arrived[1] - goal) < sim._config.motors.joint_tolerance_rad
        assert taken_up[0] < arrived[0] < rest_stamp - sim._config.still_time_s + 1e-6
    else:
        assert len(got) == 1, got  # only the world at rest


@pytest.mark.parametrize("system", [
    {"real_time_factor": 1.0, "camera_rate_hz": 60.0, "camera_moving_max_rate_hz": 4.0},
    {"real_time_factor": 1.0, "camera_rate_hz": 60.0}], indirect=True,
    ids=["capped", "uncapped"])
def test_camera_frames_of_a_moving_world_keep_to_their_wall_cap(system) -> None:
    sim, listener, _ = system
    _wait_until_skipping(sim, timeout_s=60.0)
    pub = _command_publisher(listener)
    frames0 = sim.diagnostics.counter("camera_frames_while_moving")
    started = time.monotonic()
    pub.publish(_base_move(sim, 0.8, 1.0))
    deadline = started + 10.0
    while sim._skipping or sim.arm.active:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    _wait_until_skipping(sim)
    moving_s = time.monotonic() - started
    frames = sim.diagnostics.counter("camera_frames_while_moving") - frames0
    cap = sim._config.camera_moving_max_rate_hz
    if cap > 0:
        assert 1 <= frames <= cap * moving_s + 1, (frames, moving_s)
    else:  # 60 Hz of simulated time at real time: the cap above is what makes it fewer
        assert frames >= 30 * moving_s, (frames, moving_s)


@pytest.mark.parametrize("system", [{"real_time_factor": 2.0, "still_real_time_factor": 40.0,
                                     "max_publish_rate_hz": 50.0, "clock_max_rate_hz": 10.0,
                                     "joint_state_rate_hz": 60.0, "clock_rate_hz": 0.0}],
                         indirect=True)
def test_clock_keeps_to_its_own_wall_cap(system) -> None:
    from rosgraph_msgs.msg import Clock

    sim, listener, received = system
    clocks: list[float] = []
    listener.create_subscription(
        Clock, "/clock", lambda m: clocks.append(m.clock.sec + m.clock.nanosec * 1e-9),
        qos.CLOCK_QOS)
    _wait_until_skipping(sim)
    time.sleep(0.5)
    c0, n0 = len(clocks), len(received)
    time.sleep(2.0)
    got = clocks[c0:]
    # /clock every tick of simulated time (120 Hz at factor 40) would be 4,800 a second; the
    # joint states keep to max_publish_rate_hz (50), /clock to its own 10.
    assert 5 <= len(got) <= 10 * 2.0 * 1.1 + 2, len(got)
    assert len(received) - n0 > 2 * len(got), (len(received) - n0, len(got))
    assert all(b > a for a, b in zip(got, got[1:]))


@pytest.mark.parametrize("system", [{"real_time_factor": 1.0, "still_real_time_factor": 40.0,
                                     "max_publish_rate_hz": 50.0, "camera_rate_hz": 60.0,
                                     "camera_still_max_rate_hz": 5.0}], indirect=True)
def test_still_world_frames_keep_to_their_cap(system) -> None:
    sim, _, received = system
    _wait_until_skipping(sim, timeout_s=60.0)
    time.sleep(0.5)
    frames0, n0 = sim.diagnostics.counter("camera_frames"), len(received)
    t0, loops0 = sim._sim_time_s(), sim._loop_iterations
    time.sleep(2.0)
    loops = sim._loop_iterations - loops0
    frames = sim.diagnostics.counter("camera_frames") - frames0
    joints = len(received) - n0
    advanced = sim._sim_time_s() - t0
    # 60 Hz of simulated time at factor 40, capped at 50/s for the joint states, 5/s for frames
    assert 5 <= frames <= 5 * 2.0 * 1.1 + 2, frames
    assert joints > 3 * frames, (joints, frames)
    # ...and a frame held back by its cap is not due to the pacing, which sleeps until a
    # stream is: no more loop iterations than the caps let messages out (50 joint states, 50
    # clocks, 5 frames per second), far below one per tick (2,400 per second)
    assert 20.0 < advanced / 2.0 <= 40.0 * 1.1, advanced
    assert loops <= 1.5 * 2.0 * (50 + 50 + 5), loops
    assert sim._skipping


@pytest.mark.parametrize("system", [{"real_time_factor": 1.0, "joint_state_rate_hz": 0.2,
                                     "clock_rate_hz": 0.2}], indirect=True)
def test_gripper_settle_report_is_one_a_ros_arm_may_take(system) -> None:
    # A RosArm counts gripper_min_settle_s from the first joint state after its command (the
    # "taken up" report). sim_arm's settle report must come no earlier than that after it, or
    # the policy waits for a later joint state (here the stream is due every 5 s).
    sim, listener, got = system  # got: (wall s, stamp s) of every joint state
    names = list(sim._config.robot.gripper_joint_names)
    _wait_until_skipping(sim, timeout_s=60.0)
    pub = _command_publisher(listener, "gripper_controller/joint_trajectory")
    time.sleep(0.5)
    # The fingers' present positions: they stay where they are, still from the first tick.
    with sim._sim_lock:
        fingers = sim.robot.joint_states()[1][sim._gripper_columns]
    msg = JointTrajectory(joint_names=names)
    msg.points = [JointTrajectoryPoint(positions=[float(v) for v in fingers])]
    n0 = len(got)
    pub.publish(msg)
    (_, taken_up), (_, settled), _ = _states_after(got, n0, 3)  # taken up, settled, at rest
    min_settle_s = sim._config.motors.gripper_min_steps * sim.sim.time_step_s
    tick_s = 1.0 / sim._config.tick_rate_hz
    assert min_settle_s - 1e-6 <= settled - taken_up < min_settle_s + tick_s + 1e-6, (
        taken_up, settled)


@pytest.mark.parametrize("system", [
    {"real_time_factor": 1.0, "joint_state_rate_hz": 0.2, "clock_rate_hz": 0.2,
     "goal_hold_wall_s": 0.5, "goal_hold_at_home": at_home} for at_home in (True, False)],
    indirect=True, ids=["hold_at_home", "no_hold_at_home"])
def test_goal_hold_stands_time_still_until_the_next_command(system) -> None:
    # goal_hold_wall_s: after the joint state of a goal reached, simulated time waits for the
    # next command (up to 0.5 s of wall time here); one that comes meanwhile starts on the next
    # tick, so the policy's reaction took no simulated time. At the home pose it holds only
    # with goal_hold_at_home (a grasping policy waits for a camera frame there).
    sim, listener, got = system  # got: (wall s, stamp s) of every joint state
    at_home = sim._config.goal_hold_at_home
    _wait_until_skipping(sim, timeout_s=60.0)
    pub = _command_publisher(listener)
    time.sleep(0.3)
    n0 = len(got)
    pub.publish(_base_move(sim, 0.2, 0.2))
    _, (_, goal_s) = _states_after(got, n0, 2)  # taken up, goal reached
    time.sleep(0.2)  # within the hold: time stands
    assert sim._sim_time_s() == pytest.approx(goal_s, abs=1e-6)
    n1 = len(got)
    pub.publish(_base_move(sim, 0.0, 0.2))  # back home
    taken_up, (goal_wall, goal2_s), (rest_wall, rest_s) = _states_after(got, n1, 3)
    assert taken_up[1] - goal_s <= 1.0 / sim._config.tick_rate_hz + 1e-6
    # No command after the second goal: time goes on after the 0.5 s hold (none at home
    # without goal_hold_at_home) and the world comes to rest.
    assert rest_s > goal2_s
    if at_home:
        assert rest_wall - goal_wall >= 0.45
    else:
        assert rest_wall - goal_wall < 0.4
    assert sim.diagnostics.counter("goal_holds") == (2 if at_home else 1)
    assert sim.diagnostics.counter("goal_hold_timeouts") == (1 if at_home else 0)


@pytest.mark.parametrize("system", [
    {"publish_clock": False, "sim_time_stamps": on, "real_time_factor": 4.0,
     "joint_state_rate_hz": 30.0} for on in (True, False)],
    indirect=True, ids=["sim_time_stamps", "node_clock"])
def test_stamps_of_a_simulator_without_clock(system) -> None:
    # A second simulator beside one that owns /clock (several arms, one trainer) publishes no
    # /clock; with sim_time_stamps its messages still carry its own simulated time, which its
    # policy times motions by; without, the node's clock (wall time here).
    sim, _, got = system
    deadline = time.monotonic() + 30.0
    while len(got) < 10:
        assert time.monotonic() < deadline, "no joint states"
        time.sleep(0.05)
    stamps = [stamp for _, stamp in got]
    assert stamps == sorted(stamps)
    if sim._config.sim_time_stamps:
        assert 0.0 < stamps[-1] <= sim._sim_time_s() + 1e-9
    else:
        assert abs(stamps[-1] - time.time()) < 5.0
