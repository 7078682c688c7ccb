"""sim_arm's camera: a frame is rendered again only when something in view moved
(camera_reuse_static_frames), and what it then publishes is what a fresh render shows."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from rclpy.parameter import Parameter  # noqa: E402

from q_grasp.nodes.sim_arm import SimArmNode  # noqa: E402
from q_grasp.nodes.testing import unique_domain_id  # noqa: E402


@pytest.fixture()
def node(request):
    reuse = getattr(request, "param", True)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=unique_domain_id())
    sim = SimArmNode(context=context, parameter_overrides=[
        Parameter("camera_reuse_static_frames", value=reuse),
        Parameter("publish_clock", value=False)])
    # Stop the physics thread: the test steps the simulator itself.
    sim._stop.set()
    sim._thread.join(timeout=10.0)
    try:
        yield sim
    finally:
        sim.destroy_node()
        rclpy.try_shutdown(context=context)


def test_static_scene_reuses_the_frame_and_motion_renders_again(node) -> None:
    cfg = node._config
    with node._sim_lock:
        node.sim.step(240)  # let the objects settle
        first, _ = node._camera_frame(cfg)
        node.sim.step(10)
        again, _ = node._camera_frame(cfg)
        assert again is first  # nothing moved: the same frame, not a new render
        # ... and what a fresh render shows, up to the rounding of sub-pixel settling.
        fresh = node.camera.render(node.sim)
        assert np.abs(fresh[0].astype(int) - first[0].astype(int)).max() <= 1
        np.testing.assert_allclose(fresh[1], first[1], atol=1e-3)  # 1 mm (a pixel: ~2.5 mm)

        body = next(iter(node.scene.objects))
        pos, quat = node.sim.client.getBasePositionAndOrientation(body)
        node.sim.client.resetBasePositionAndOrientation(
            body, [pos[0] + 0.02, pos[1], pos[2]], quat)
        moved, poses = node._camera_frame(cfg)
        assert moved is not first
        assert np.abs(moved[1] - first[1]).max() > 0.005  # the depth image changed
        np.testing.assert_array_equal(node.camera.render(node.sim)[1], moved[1])
        np.testing.assert_allclose(poses[body][0][0], pos[0] + 0.02)

        # A joint moving counts too (the arm may be in view).
        joint = node.robot.joint_index("base_joint")
        node.sim.client.resetJointState(node.robot.body_id, joint, 0.3)
        turned, _ = node._camera_frame(cfg)
        assert turned is not moved
    assert node.diagnostics.counter("camera_frames_reused") >= 1


@pytest.mark.parametrize("node", [False], indirect=True)
def test_reuse_off_renders_every_frame(node) -> None:
    cfg = node._config
    with node._sim_lock:
        node.sim.step(240)
        first, _ = node._camera_frame(cfg)
        again, _ = node._camera_frame(cfg)
    assert again is not first
    np.testing.assert_array_equal(again[0], first[0])
    assert node.diagnostics.counter("camera_frames_reused") == 0
