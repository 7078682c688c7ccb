"""Pinhole camera: intrinsics as pybullet renders them, pixel <-> world both ways, depth in
metres along the optical axis, heightmap, CameraInfo fields, bad input."""

from __future__ import annotations

import numpy as np
import pybullet
import pytest

from q_grasp.sim import BulletSim, CameraConfig, PinholeCamera


@pytest.fixture(scope="module")
def sim():
    with BulletSim(seed=0) as s:
        yield s


def add_box(sim: BulletSim, center_xy, half_extents, rgba=(1.0, 0.0, 0.0, 1.0)) -> int:
    c = sim.client
    col = c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=list(half_extents))
    vis = c.createVisualShape(pybullet.GEOM_BOX, halfExtents=list(half_extents), rgbaColor=rgba)
    return c.createMultiBody(0.0, col, vis, [center_xy[0], center_xy[1], half_extents[2]])


def test_matrices_match_pybullet(sim):
    cfg = CameraConfig(width=80, height=60, fov_y_deg=40.0, position=(0.1, 0.02, 0.3),
                       target=(0.12, -0.01, 0.0), up_vector=(1.0, 0.0, 0.0))
    cam = PinholeCamera(cfg)
    view = sim.client.computeViewMatrix(cfg.position, cfg.target, cfg.up_vector)
    proj = sim.client.computeProjectionMatrixFOV(cfg.fov_y_deg, 80 / 60, cfg.near_m, cfg.far_m)
    np.testing.assert_allclose(cam.view_matrix.T.reshape(-1), view, atol=1e-6)
    np.testing.assert_allclose(cam.projection_matrix.T.reshape(-1), proj, atol=1e-6)
    # Square pixels; P = [K | 0]; the rotation is orthonormal with z along the view direction.
    assert cam.K[0, 0] == pytest.approx(cam.K[1, 1])
    np.testing.assert_allclose(cam.P[:, :3], cam.K)
    np.testing.assert_allclose(cam.rotation.T @ cam.rotation, np.eye(3), atol=1e-12)
    forward = np.subtract(cfg.target, cfg.position)
    np.testing.assert_allclose(cam.rotation[:, 2], forward / np.linalg.norm(forward))


def test_pixel_world_round_trips():
    cam = PinholeCamera(CameraConfig(width=64, height=48, position=(0.13, 0.0, 0.25),
                                     target=(0.14, 0.01, 0.0)))
    rng = np.random.default_rng(0)
    u = rng.uniform(-0.5, 63.5, 200)
    v = rng.uniform(-0.5, 47.5, 200)
    d = rng.uniform(0.1, 0.6, 200)
    pts = cam.pixel_to_world(u, v, d)
    assert pts.shape == (200, 3)
    u2, v2, d2 = cam.world_to_pixel(pts)
    np.testing.assert_allclose(u2, u, atol=1e-9)
    np.testing.assert_allclose(v2, v, atol=1e-9)
    np.testing.assert_allclose(d2, d, atol=1e-12)
    # And world -> pixel -> world, single points give scalars / (3,).
    world = np.array([0.15, -0.03, 0.02])
    uu, vv, dd = cam.world_to_pixel(world)
    assert isinstance(uu, float) and isinstance(dd, float)
    np.testing.assert_allclose(cam.pixel_to_world(uu, vv, dd), world, atol=1e-12)


def test_top_down_image_axes():
    """Default camera: image up = world +x, image right = world -y (the robot at the bottom)."""
    cam = PinholeCamera()
    u0, v0, _ = cam.world_to_pixel([0.13, 0.0, 0.0])
    u1, v1, _ = cam.world_to_pixel([0.16, 0.0, 0.0])
    u2, v2, _ = cam.world_to_pixel([0.13, -0.03, 0.0])
    assert v1 < v0 and u1 == pytest.approx(u0)
    assert u2 > u0 and v2 == pytest.approx(v0)
    # The optical axis hits the table at the principal point, 0.25 m away.
    u, v, d = cam.world_to_pixel([0.13, 0.0, 0.0])
    assert (u, v, d) == pytest.approx((cam.cx, cam.cy, 0.25))


@pytest.mark.parametrize("size", [(64, 64), (96, 72), (31, 47)])
def test_rendered_box_lands_on_predicted_pixels(sim, size):
    """Every box edge falls on the pixels the model predicts; depth and height are right."""
    width, height = size
    cam = PinholeCamera(CameraConfig(width=width, height=height))
    rng = np.random.default_rng(width)
    for _ in range(6):
        half = rng.uniform(0.004, 0.015, 3)
        center = rng.uniform([0.11, -0.02], [0.15, 0.02])
        body = add_box(sim, center, half)
        try:
            rgb, depth = cam.render(sim)
        finally:
            sim.client.removeBody(body)
        assert rgb.shape == (height, width, 3) and rgb.dtype == np.uint8
        assert depth.shape == (height, width) and depth.dtype == np.float32
        red = (rgb[..., 0] > 200) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
        rows, cols = np.nonzero(red)
        top_z = 2 * half[2]
        corners = np.array([[center[0] + sx * half[0], center[1] + sy * half[1], top_z]
                            for sx in (-1, 1) for sy in (-1, 1)])
        u, v, _ = cam.world_to_pixel(corners)
        # Pixels whose centres lie inside the projected top face are the box's pixels.
        assert (cols.min(), cols.max()) == (np.ceil(u.min()), np.floor(u.max()))
        assert (rows.min(), rows.max()) == (np.ceil(v.min()), np.floor(v.max()))
        uc, vc, dc = cam.world_to_pixel([center[0], center[1], top_z])
        r, c = int(round(vc)), int(round(uc))
        assert depth[r, c] == pytest.approx(dc, abs=2e-4)
        heights = cam.heightmap(depth)
        assert heights[r, c] == pytest.approx(top_z, abs=2e-4)
        np.testing.assert_allclose(cam.pixel_to_world(c, r, depth[r, c])[2], top_z, atol=2e-4)
        # The table around it reads height 0.
        assert np.median(heights[~red]) == pytest.approx(0.0, abs=2e-4)


def test_camera_info_fields():
    cam = PinholeCamera(CameraConfig(width=64, height=48))
    info = cam.camera_info()
    assert info["width"] == 64 and info["height"] == 48
    assert len(info["K"]) == 9 and len(info["P"]) == 12 and len(info["R"]) == 9
    assert info["D"] == [0.0] * 5 and info["distortion_model"] == "plumb_bob"
    assert info["frame_id"].endswith("optical_frame")
    assert info["K"][2] == pytest.approx(cam.cx) and info["K"][5] == pytest.approx(cam.cy)


def test_depth_linearisation():
    cam = PinholeCamera(CameraConfig(near_m=0.1, far_m=2.0))
    assert cam.linearize_depth(np.array([0.0, 1.0])) == pytest.approx([0.1, 2.0], rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"width": 0}, "width"), ({"height": -3}, "height"), ({"fov_y_deg": 0.0}, "fov_y_deg"),
     ({"near_m": 0.5, "far_m": 0.4}, "near_m"), ({"target": (0.13, 0.0, 0.25)}, "target"),
     ({"up_vector": (0.0, 0.0, 1.0)}, "up_vector")],
)
def test_bad_camera_config(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CameraConfig(**kwargs)


def test_heightmap_rejects_wrong_shape():
    cam = PinholeCamera(CameraConfig(width=32, height=32))
    with pytest.raises(ValueError, match="depth"):
        cam.heightmap(np.zeros((16, 16)))


@pytest.mark.parametrize("axis, angle", [((0.0, 0.0, 1.0), 0.7), ((1.0, 0.0, 0.0), np.pi),
                                         ((1.0, 2.0, -0.5), 2.5), ((0.0, 1.0, 0.0), -3.0)])
def test_rotation_matrix_to_quaternion(axis, angle) -> None:
    """quaternion_xyzw (the camera's /tf_static rotation) inverts pybullet's quaternion ->
    matrix, up to the sign a quaternion leaves free, on both branches (trace > 0 and not)."""
    from q_grasp.kinematics.camera import quaternion_xyzw

    axis = np.asarray(axis) / np.linalg.norm(axis)
    expected = np.array([*(np.sin(angle / 2) * axis), np.cos(angle / 2)])
    R = np.array(pybullet.getMatrixFromQuaternion(expected.tolist())).reshape(3, 3)
    q = np.array(quaternion_xyzw(R))
    assert np.allclose(q, expected, atol=1e-9) or np.allclose(q, -expected, atol=1e-9)
