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
        listener.destroy_node()
        sim.destroy_node()
        rclpy.try_shutdown(context=context)
        spinner.join(timeout=5.0)


def _wait_until_skipping(sim: SimArmNode, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not sim._skipping:
        assert time.monotonic() < deadline, "the world never came to rest"
        time.sleep(0.02)


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
    pub = listener.create_publisher(JointTrajectory, "arm_controller/joint_trajectory",
                                    qos.COMMAND_QOS)
    deadline = time.monotonic() + 10.0
    while pub.get_subscription_count() == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    names = list(sim._config.robot.arm_joint_names)
    target = sim.robot.home_positions.copy()
    target[0] += 0.2
    msg = JointTrajectory(joint_names=names)
    point = JointTrajectoryPoint(positions=[float(v) for v in target])
    point.time_from_start.nanosec = 200_000_000
    msg.points = [point]
    sent = time.monotonic()
    pub.publish(msg)
    while sim._skipping:
        assert time.monotonic() - sent < 2.0, "the command waited for the still loop's sleep"
        time.sleep(0.005)
    assert sim.diagnostics.counter("accepted.arm_trajectory") == 1
