"""usb_camera: the ROS camera_calibration file, crop + resize with its intrinsics, and the node
publishing a video file's frames with that CameraInfo over DDS."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import yaml

from q_grasp.hardware.camera import crop_and_resize, load_camera_calibration

cv2 = pytest.importorskip("cv2")

K_FULL = [[520.0, 0.0, 318.0], [0.0, 515.0, 242.0], [0.0, 0.0, 1.0]]
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]  # RGB


def _calibration_file(path, **changes):
    data = {"image_width": 640, "image_height": 480, "camera_name": "elp",
            "camera_matrix": {"rows": 3, "cols": 3, "data": sum(K_FULL, [])},
            "distortion_model": "plumb_bob",
            "distortion_coefficients": {"rows": 1, "cols": 5, "data": [0.1, -0.2, 0, 0, 0]},
            "rectification_matrix": {"rows": 3, "cols": 3, "data": [1, 0, 0, 0, 1, 0, 0, 0, 1]},
            "projection_matrix": {"rows": 3, "cols": 4,
                                  "data": [520, 0, 318, 0, 0, 515, 242, 0, 0, 0, 1, 0]}}
    data.update(changes)
    path.write_text(yaml.safe_dump(data))
    return path


def test_calibration_file_is_read_and_checked(tmp_path) -> None:
    calibration = load_camera_calibration(_calibration_file(tmp_path / "ok.yaml"))
    assert (calibration.width, calibration.height) == (640, 480)
    assert np.allclose(calibration.K, K_FULL) and calibration.D.size == 5
    with pytest.raises(ValueError, match="bad.yaml: camera_matrix: missing"):
        load_camera_calibration(_calibration_file(tmp_path / "bad.yaml", camera_matrix=None))
    with pytest.raises(ValueError, match="camera_matrix: 4 values, expected 9"):
        load_camera_calibration(_calibration_file(
            tmp_path / "short.yaml", camera_matrix={"rows": 2, "cols": 2, "data": [1, 0, 0, 1]}))
    with pytest.raises(ValueError, match="image_width"):
        load_camera_calibration(_calibration_file(tmp_path / "w.yaml", image_width=-4))


def test_crop_and_resize_keeps_the_projection() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    out, K = crop_and_resize(image, np.array(K_FULL), 64, 64)
    assert out.shape == (64, 64, 3)
    # A world point projects to the same place in the full image (cropped, scaled) and
    # through the new intrinsics.
    point = np.array([0.03, -0.02, 0.25])
    full = np.array(K_FULL) @ point
    u, v = full[:2] / full[2]
    small = K @ point
    assert np.allclose(small[:2] / small[2], [(u - 80) * 64 / 480, v * 64 / 480])


def test_camera_stream_without_ros_guesses_intrinsics_and_reports_a_missing_camera(
        tmp_path) -> None:
    from q_grasp.hardware.camera import CameraStream, pinhole_guess
    from q_grasp.node_params.usb_camera import UsbCameraConfig

    video = tmp_path / "grey.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for _ in range(3):
        writer.write(np.full((240, 320, 3), 128, np.uint8))
    writer.release()
    levels: list[tuple[str, str]] = []
    health = type("Health", (), {
        "count": lambda self, key, n=1: None, "set": lambda self, **values: None,
        "ok": lambda self, m: levels.append(("ok", m)),
        "warn": lambda self, m: levels.append(("warn", m)),
        "error": lambda self, m, log=False: levels.append(("error", m))})()
    published: list[tuple[np.ndarray, dict]] = []

    def publish(image, info) -> None:
        published.append((image, info))
        stream.stop.set()  # one frame is enough

    stream = CameraStream(UsbCameraConfig(source=str(video), width=32, height=32), health,
                          publish)
    stream.run()
    image, info = published[0]
    assert image.shape == (32, 32, 3) and (info["width"], info["height"]) == (32, 32)
    _, K = crop_and_resize(np.zeros((240, 320, 3), np.uint8), pinhole_guess(320, 240).K, 32, 32)
    assert np.allclose(info["K"], K) and levels == [("ok", "capturing")]
    missing = CameraStream(UsbCameraConfig(source=str(tmp_path / "none.avi")), health, publish)
    missing._open()
    assert levels[-1] == ("error", f"cannot open camera {tmp_path / 'none.avi'}")


rclpy = pytest.importorskip("rclpy")


def test_node_publishes_a_video_files_frames_with_its_camera_info(tmp_path, monkeypatch) -> None:
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, Image

    from q_grasp.messages import color_image_to_numpy
    from q_grasp.node_processes import unique_domain_id
    from q_grasp.nodes import qos
    from q_grasp.nodes.usb_camera import UsbCameraNode

    video = tmp_path / "table.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for colour in COLOURS * 2:
        writer.write(np.full((480, 640, 3), colour[::-1], np.uint8))  # OpenCV writes BGR
    writer.release()
    calibration = _calibration_file(tmp_path / "elp.yaml")

    domain = unique_domain_id()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    nodes = []
    try:
        camera = UsbCameraNode(context=context, parameter_overrides=[
            Parameter("source", value=str(video)),
            Parameter("calibration_file", value=str(calibration)),
            Parameter("rate_hz", value=30.0)])
        missing = UsbCameraNode("missing_camera", context=context, parameter_overrides=[
            Parameter("source", value=str(tmp_path / "none.avi"))])
        probe = rclpy.create_node("camera_probe", context=context)
        nodes += [camera, missing, probe]
        images: list[Image] = []
        infos: list[CameraInfo] = []
        probe.create_subscription(Image, "camera/color/image_raw", images.append,
                                  qos.IMAGE_PUBLISHER_QOS)
        probe.create_subscription(CameraInfo, "camera/color/camera_info", infos.append,
                                  qos.IMAGE_PUBLISHER_QOS)
        executor = SingleThreadedExecutor(context=context)
        for node in nodes:
            executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        deadline = time.monotonic() + 30
        while (len(images) < 8 or not infos) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(images) >= 8 and infos, (len(images), len(infos))
        seen = set()
        for msg in images:
            assert (msg.width, msg.height, msg.encoding) == (64, 64, "rgb8")
            pixels = color_image_to_numpy(msg, (64, 64)).reshape(-1, 3).mean(axis=0)
            seen.add(int(np.argmin([np.abs(pixels - c).sum() for c in COLOURS])))
            assert min(np.abs(pixels - c).sum() for c in COLOURS) < 40
        assert seen == {0, 1, 2}  # every frame of the file, looping
        _, K = crop_and_resize(np.zeros((480, 640, 3), np.uint8), np.array(K_FULL), 64, 64)
        assert np.allclose(np.array(infos[-1].k).reshape(3, 3), K)
        assert list(infos[-1].d) == pytest.approx([0.1, -0.2, 0, 0, 0])
        assert "cannot open camera" in missing.diagnostics.status().message
        executor.shutdown(timeout_sec=2.0)
        spinner.join(timeout=5.0)
    finally:
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)


def _render_board(board, camera_config):
    """The board as black tiles on the simulator's table, seen by a pybullet camera."""
    from q_grasp.sim import BulletSim, PinholeCamera
    from q_grasp.sim.quiet import pybullet

    sim = BulletSim(seed=0)
    client = sim.client
    s = board.square_m
    half = [s / 2, s / 2, 0.0005]
    visual = client.createVisualShape(pybullet.GEOM_BOX, halfExtents=half,
                                      rgbaColor=[0.02, 0.02, 0.02, 1.0])
    c, sn = np.cos(board.yaw_rad), np.sin(board.yaw_rad)
    along_columns, along_rows = np.array([c, sn, 0.0]), np.array([-sn, c, 0.0])
    for a in range(board.columns + 1):
        for b in range(board.rows + 1):
            if (a + b) % 2:
                continue
            centre = (np.asarray(board.centre_m) + (a - board.columns / 2) * s * along_columns
                      + (b - board.rows / 2) * s * along_rows + [0, 0, 0.0005])
            client.createMultiBody(baseMass=0.0, baseVisualShapeIndex=visual,
                                   basePosition=centre.tolist(),
                                   baseOrientation=client.getQuaternionFromEuler(
                                       [0, 0, board.yaw_rad]))
    camera = PinholeCamera(camera_config)
    rgb, _ = camera.render(sim)
    sim.close()
    return rgb, camera


@pytest.mark.parametrize("yaw", [0.0, 0.3])
def test_extrinsics_recover_a_rendered_cameras_pose(yaw) -> None:
    from q_grasp.hardware.extrinsics import Board, camera_pose, find_corners
    from q_grasp.sim import CameraConfig

    board = Board(6, 4, 0.015, (0.13, 0.0, 0.001), yaw)
    position = np.array([0.118, 0.008, 0.26])
    target = np.array([0.135, -0.004, 0.0])
    config = CameraConfig(width=640, height=480, fov_y_deg=40.0, position=tuple(position),
                          target=tuple(target), up_vector=(1.0, 0.05, 0.0))
    rgb, camera = _render_board(board, config)
    corners = find_corners(rgb, board)
    K = np.asarray(camera.camera_info()["K"], np.float64).reshape(3, 3)
    pose = camera_pose(corners, board, K, up_prior=(1.0, 0.0, 0.0))
    forward = (target - position) / np.linalg.norm(target - position)
    assert np.linalg.norm(pose.position_m - position) < 0.005, pose.position_m
    angle = np.degrees(np.arccos(np.clip(pose.forward @ forward, -1.0, 1.0)))
    assert angle < 1.0, angle
    assert pose.reprojection_error_px < 1.0
    assert pose.up @ [1.0, 0.0, 0.0] > 0.9  # the image's up, not the 180-degree twin
    params = pose.policy_parameters()
    assert abs(params["camera_target_m"][2]) < 1e-6  # the axis met the table


def test_extrinsics_refuse_a_missing_board() -> None:
    from q_grasp.hardware.extrinsics import Board, find_corners

    with pytest.raises(ValueError, match="no 6x4 checkerboard"):
        find_corners(np.full((480, 640, 3), 200, np.uint8), Board(6, 4, 0.015))
    with pytest.raises(ValueError, match="columns != rows"):
        Board(5, 5, 0.015)
