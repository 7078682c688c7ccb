"""sim_arm's simulation (q_grasp.sim.arm_loop) run tick by tick in this process, no thread and
no DDS: the camera renders a frame again only when something in view moved
(camera_reuse_static_frames) and what it then publishes is what a fresh render shows; a still
world lets simulated time pass without physics (skip_physics_when_still) until a trajectory or a
scene reset wakes it. And the node's stamps with and without /clock."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")  # (one test runs the node)

from q_grasp.motion import Trajectory  # noqa: E402
from q_grasp.node_params.sim_arm import SimArmConfig  # noqa: E402
from q_grasp.sim.arm_loop import SimArmLoop  # noqa: E402
from q_grasp.sim.controller import TrajectoryFollower  # noqa: E402
from q_grasp.sim.pacing import Stream  # noqa: E402


class _Loop(SimArmLoop):
    """A SimArmLoop that counts its events in ``counts``."""

    def __init__(self, **overrides) -> None:
        self.counts: Counter[str] = Counter()
        cfg = SimArmConfig(**{"publish_clock": False, **overrides})
        super().__init__(cfg, publish=lambda messages: None,
                         count=lambda name: self.counts.update([name]), publish_clock=False)
        self.spawn()


@pytest.fixture()
def node(request):
    """The sim_arm simulation; ``request.param``: SimArmConfig overrides."""
    loop = _Loop(**getattr(request, "param", {}))
    try:
        yield loop
    finally:
        loop.close()


def test_static_scene_reuses_the_frame_and_motion_renders_again(node) -> None:
    cfg = node.config
    with node.lock:
        node.sim.step(240)  # let the objects settle
        first, _ = node.camera_frame(cfg)
        node.sim.step(10)
        again, _ = node.camera_frame(cfg)
        assert again is first  # nothing moved: the same frame, not a new render
        # ... and what a fresh render shows, up to the rounding of sub-pixel settling.
        fresh = node.camera.render(node.sim)
        assert np.abs(fresh[0].astype(int) - first[0].astype(int)).max() <= 1
        np.testing.assert_allclose(fresh[1], first[1], atol=1e-3)  # 1 mm (a pixel: ~2.5 mm)

        body = next(iter(node.scene.objects))
        pos, quat = node.sim.client.getBasePositionAndOrientation(body)
        node.sim.client.resetBasePositionAndOrientation(
            body, [pos[0] + 0.02, pos[1], pos[2]], quat)
        moved, poses = node.camera_frame(cfg)
        assert moved is not first
        assert np.abs(moved[1] - first[1]).max() > 0.005  # the depth image changed
        np.testing.assert_array_equal(node.camera.render(node.sim)[1], moved[1])
        np.testing.assert_allclose(poses[body][0][0], pos[0] + 0.02)

        # A joint moving counts too (the arm may be in view).
        joint = node.robot.joint_index("base_joint")
        node.sim.client.resetJointState(node.robot.body_id, joint, 0.3)
        turned, _ = node.camera_frame(cfg)
        assert turned is not moved
    assert node.counts["camera_frames_reused"] >= 1


@pytest.mark.parametrize("node", [{"camera_reuse_static_frames": False}], indirect=True)
def test_reuse_off_renders_every_frame(node) -> None:
    cfg = node.config
    with node.lock:
        node.sim.step(240)
        first, _ = node.camera_frame(cfg)
        again, _ = node.camera_frame(cfg)
    assert again is not first
    np.testing.assert_array_equal(again[0], first[0])
    assert node.counts["camera_frames_reused"] == 0


# ----------------------------------------------------------------------------- still world


def _ticks(node: SimArmLoop, n: int) -> tuple[int, int]:
    """Run n of the physics loop's control ticks; (physics steps, ticks skipped) taken."""
    calls = [0]
    client = node.sim.client
    step = client.stepSimulation

    def counting() -> None:
        calls[0] += 1
        step()

    client.stepSimulation = counting
    skipped0 = node.ticks_skipped
    try:
        with node.lock:
            for _ in range(n):
                node.control_tick(node.config)
    finally:
        del client.stepSimulation
    return calls[0], node.ticks_skipped - skipped0


def _body_state(node: SimArmLoop) -> np.ndarray:
    _, q, _, _ = node.robot.joint_states()
    poses = node.scene.object_poses()
    return np.concatenate([q] + [np.concatenate(p) for p in poses.values()])


def test_still_world_passes_time_without_physics_and_a_trajectory_wakes_it(node) -> None:
    per_tick = node.steps_per_tick
    _ticks(node, 240)  # objects settle, the arm holds home
    t0, before = node.sim_time_s, _body_state(node)
    steps, skipped = _ticks(node, 120)
    assert skipped == 120 and steps == 0  # nothing moved: no physics at all...
    np.testing.assert_allclose(node.sim_time_s - t0, 120 * per_tick * node.sim.time_step_s)
    np.testing.assert_array_equal(_body_state(node), before)  # ...and nothing changed

    # A trajectory wakes physics at the next tick and the arm follows it.
    target = node.robot.home_positions.copy()
    target[0] += 0.3
    names = node.config.robot.arm_joint_names
    node.arm.submit(Trajectory(tuple(names), np.array([0.3]), target[None, :]))
    ticks = int(0.3 / (per_tick * node.sim.time_step_s))  # while the trajectory runs
    steps, skipped = _ticks(node, ticks)
    assert skipped == 0 and steps == ticks * per_tick
    _ticks(node, 120)
    _, q, _, _ = node.robot.joint_states()
    assert abs(q[node.robot.movable_joint_names.index(names[0])] - target[0]) < 0.01
    # After the motion has died down it skips again.
    _, skipped = _ticks(node, 240)
    assert skipped > 0


def test_a_step_trajectory_wakes_physics(node) -> None:
    # A zero-duration trajectory (how the policy commands the gripper) is over in the tick it
    # starts; its new motor targets must still wake physics, or the fingers would never move.
    _ticks(node, 240)
    assert _ticks(node, 10)[1] == 10
    names = tuple(node.config.robot.gripper_joint_names)
    closed = np.asarray(node.config.robot.gripper_closed_positions, float)
    node.gripper.submit(Trajectory(names, np.array([0.0]), closed[None, :]))
    steps, skipped = _ticks(node, 60)
    assert steps > 0
    _, q, _, _ = node.robot.joint_states()
    fingers = [node.robot.movable_joint_names.index(n) for n in names]
    np.testing.assert_allclose(q[fingers], closed, atol=2e-3)


def test_scene_reset_wakes_physics(node) -> None:
    _ticks(node, 240)
    assert _ticks(node, 10)[1] == 10
    assert node.reset()  # the objects of the new scene
    steps, skipped = _ticks(node, 5)
    assert steps > 0 and skipped == 0


@pytest.mark.parametrize("node", [{"skip_physics_when_still": False}], indirect=True)
def test_still_skipping_off_steps_every_tick(node) -> None:
    _ticks(node, 240)
    steps, skipped = _ticks(node, 60)
    assert skipped == 0 and steps == 60 * node.steps_per_tick


def test_event_messages_do_not_push_a_stream_back() -> None:
    # Joint states sent at once for events (a command taken up, a goal reached) count as the
    # stream's messages, but the next regular one is never more than a period (simulated, and
    # wall-clock for the cap) after the last: counted from when each was due, 20 events in a
    # row pushed it 20 periods on, and a blocked move's policy, whose timeout it reports, waited
    # that long (seconds of physics) to hear of it.
    stream = Stream()
    rate_hz, cap_hz = 30.0, 100.0
    stream.published(1.0, 50.0, rate_hz, cap_hz)  # a regular message, on time
    for _ in range(20):
        stream.published(1.001, 50.001, rate_hz, cap_hz)  # events, before it is due again
    assert stream.is_due(1.001 + 1.0 / rate_hz, 50.001 + 1.0 / cap_hz)
    # Regular messages keep their rate: one period after the last was due, not after it went.
    stream = Stream()
    stream.published(0.0, 0.0, rate_hz, cap_hz)
    stream.published(1.0 / rate_hz + 0.004, 0.012, rate_hz, cap_hz)  # sent 4 ms late
    assert stream.due_s == pytest.approx(2.0 / rate_hz)
    assert stream.due_wall == pytest.approx(0.02)


@pytest.mark.parametrize("names", [["a", "b", "c"], ["c", "a"]], ids=["all_joints", "some"])
def test_follower_setpoints_are_the_trajectory_sampled(names) -> None:
    # The follower lays a trajectory out once for its per-tick sampling; its setpoints must be
    # exactly Trajectory.sample's (ramp from the start, the points, the last one held), and
    # joints the trajectory does not name keep theirs.
    follower = TrajectoryFollower(["a", "b", "c"], np.array([0.1, -0.2, 0.3]))
    traj = Trajectory(tuple(names), np.array([0.2, 0.5, 0.55]),
                      np.array([[1.0, -1.0, 0.5][:len(names)], [0.4, 2.0, -0.7][:len(names)],
                                [0.0, 0.3, 0.9][:len(names)]]))
    start = follower.setpoints[[["a", "b", "c"].index(n) for n in names]].copy()
    others = [i for i, n in enumerate(["a", "b", "c"]) if n not in names]
    held = follower.setpoints[others].copy()
    follower.submit(traj)
    t0 = 3.0
    for t in np.linspace(0.0, 0.7, 57):
        follower.update(t0 + t)
        got = follower.setpoints[[["a", "b", "c"].index(n) for n in names]]
        np.testing.assert_array_equal(got, traj.sample((t0 + t) - t0, start))  # its elapsed
        np.testing.assert_array_equal(follower.setpoints[others], held)
    assert not follower.active and follower.update(t0 + 1.0) is False


def test_reconfiguring_re_anchors_and_wakes_the_pacing(node) -> None:
    """New parameter values end a pacing wait computed from the old ones and pacing starts
    again from a new anchor."""
    node.pacer.pace(0.0, 1.0)
    assert node.pacer.anchor is not None
    node.reconfigure(SimArmConfig(publish_clock=False, camera_rate_hz=1.0))
    assert node.config.camera_rate_hz == 1.0
    assert node.pacer.anchor is None and node.wake.is_set()


@pytest.mark.ros
@pytest.mark.parametrize("sim_time_stamps", [True, False], ids=["sim_time_stamps", "node_clock"])
def test_stamps_of_a_simulator_without_clock(sim_time_stamps: bool) -> None:
    # A second simulator beside one that owns /clock (several arms, one trainer) publishes no
    # /clock; with sim_time_stamps its messages still carry its own simulated time, which its
    # policy times motions by; without, the node's clock (wall time here).
    import time

    from rclpy.parameter import Parameter

    from q_grasp.node_processes import unique_domain_id
    from q_grasp.nodes.sim_arm import SimArmNode

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=unique_domain_id())
    sim = SimArmNode(context=context, parameter_overrides=[
        Parameter("publish_clock", value=False), Parameter("camera_rate_hz", value=0.0),
        Parameter("sim_time_stamps", value=sim_time_stamps)])
    try:
        stamp = sim._stamp(12.5)
        seconds = stamp.sec + stamp.nanosec * 1e-9
        if sim_time_stamps:
            assert seconds == pytest.approx(12.5)
        else:
            assert abs(seconds - time.time()) < 5.0
    finally:
        sim.destroy_node()
        rclpy.try_shutdown(context=context)
