"""The Rerun viewer node over real DDS: the run's topics (joint states, images, Q-map, markers,
trainer diagnostics) end up as the expected entities in the saved .rrd, read back through the
Rerun SDK; a taken web port is refused with a one-line reason and nothing else stops."""

from __future__ import annotations

import math
import socket

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rerun")


@pytest.mark.ros
def test_viewer_saves_the_run_as_rerun_entities(tmp_path, monkeypatch) -> None:
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from geometry_msgs.msg import Point
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image, JointState
    from visualization_msgs.msg import Marker, MarkerArray

    from q_grasp.node_processes import unique_domain_id, wait_until
    from q_grasp.nodes import qos
    from q_grasp.nodes.convert import image_msg
    from q_grasp.nodes.viewer import ViewerNode
    from q_grasp.robot_config import RobotConfig
    from q_grasp.viewer import recorded_entities, recorded_values

    monkeypatch.setenv("ROS_DOMAIN_ID", str(unique_domain_id()))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = rclpy.Context()
    rclpy.init(context=context)
    rrd = tmp_path / "run.rrd"
    sparse_rrd = tmp_path / "sparse.rrd"
    held = socket.socket()
    held.bind(("0.0.0.0", 0))
    held.listen()
    nodes = []
    try:
        busy = ViewerNode("viewer_busy", context=context, parameter_overrides=[
            Parameter("rrd_path", value=str(tmp_path / "busy.rrd")),
            Parameter("web_port", value=held.getsockname()[1])])
        nodes.append(busy)
        assert busy.error == (f"viewer web port {held.getsockname()[1]} is in use (choose "
                              f"another or stop what holds it)") and busy.path is None
        viewer = ViewerNode(context=context, parameter_overrides=[
            Parameter("rrd_path", value=str(rrd)), Parameter("joint_rate_hz", value=1000.0),
            Parameter("image_rate_hz", value=1000.0)])
        nodes.append(viewer)
        # Rate limits of one message per 1000 s: the first of each stream only (the Q-map,
        # one per grasp decision, is never limited).
        sparse = ViewerNode("viewer_sparse", context=context, parameter_overrides=[
            Parameter("rrd_path", value=str(sparse_rrd)), Parameter("joint_rate_hz", value=1e-3),
            Parameter("image_rate_hz", value=1e-3)])
        nodes.append(sparse)
        talker = rclpy.create_node("talker", context=context)
        nodes.append(talker)
        pubs = {
            "joint_states": talker.create_publisher(JointState, "joint_states",
                                                    qos.JOINT_STATES_PUBLISHER_QOS),
            "color": talker.create_publisher(Image, "camera/color/image_raw",
                                             qos.IMAGE_PUBLISHER_QOS),
            "depth": talker.create_publisher(Image, "camera/depth/image_raw",
                                             qos.IMAGE_PUBLISHER_QOS),
            "q_map": talker.create_publisher(Image, "q_grasp/q_map", qos.DEFAULT_QOS),
            "markers": talker.create_publisher(MarkerArray, "q_grasp/markers",
                                               qos.DEFAULT_QOS),
            "diagnostics": talker.create_publisher(DiagnosticArray, "/diagnostics",
                                                   qos.DEFAULT_QOS),
        }
        executor = SingleThreadedExecutor(context=context)
        for node in nodes:
            executor.add_node(node)
        assert wait_until(lambda: all(p.get_subscription_count() for p in pubs.values()), 20.0,
                          lambda: executor.spin_once(timeout_sec=0.05))
        names = RobotConfig().arm_joint_names
        rgb = np.zeros((8, 8, 3), np.uint8)
        rgb[2:6, 2:6] = (255, 0, 0)
        yaw = math.pi / 4  # the grasp bar's orientation about z, as policy.py draws it
        for step in range(5):
            # Joints 1.. hold still after the first message: only joint 0 is logged again.
            pubs["joint_states"].publish(JointState(
                name=list(names), position=[0.1 * step] + [0.3] * (len(names) - 1)))
            pubs["color"].publish(image_msg(rgb, "rgb8"))
            pubs["depth"].publish(image_msg(np.full((8, 8), 0.4, np.float32), "32FC1"))
            pubs["q_map"].publish(image_msg(rgb, "rgb8"))
            grasp = Marker(ns="grasp", type=Marker.CUBE)
            grasp.pose.position.x = 0.2
            grasp.pose.orientation.z, grasp.pose.orientation.w = (math.sin(yaw / 2),
                                                                   math.cos(yaw / 2))
            grasp.scale.x, grasp.scale.y, grasp.scale.z = 0.06, 0.006, 0.006
            approach = Marker(ns="grasp_approach", type=Marker.ARROW,
                              points=[Point(x=0.2, z=0.06), Point(x=0.2)])
            outcome = Marker(ns="grasp_outcome", type=Marker.TEXT_VIEW_FACING,
                             text="success: held" if step % 2 else "failure: slipped")
            outcome.pose.position.x = 0.2
            outcome.header.stamp.sec = step + 1  # the policy stamps each attempt's markers
            outcome.color.g = 1.0 if step % 2 else 0.0
            outcome.color.r = 0.0 if step % 2 else 1.0
            goal = Marker(ns="goal", type=Marker.SPHERE)  # the Reacher's goal, its tolerance
            goal.pose.position.y = 0.1
            goal.scale.x = goal.scale.y = goal.scale.z = 0.04
            pubs["markers"].publish(MarkerArray(markers=[grasp, approach, outcome, goal]))
            pubs["diagnostics"].publish(DiagnosticArray(status=[DiagnosticStatus(
                name="q_grasp/trainer", values=[
                    KeyValue(key="transitions", value=str(10 * step)),
                    KeyValue(key="loss", value="0.5"), KeyValue(key="mean_max_q", value="1.5"),
                    KeyValue(key="success_rate", value="nan")])]))
            for _ in range(10):
                executor.spin_once(timeout_sec=0.02)
        for _ in range(50):
            executor.spin_once(timeout_sec=0.02)
        assert not viewer.error
        # An image the viewer cannot read stops the viewer (logged), never the spinning.
        bad = image_msg(rgb, "rgb8")
        bad.encoding = "yuv422"
        pubs["color"].publish(bad)
        assert wait_until(lambda: bool(viewer.error), 10.0,
                          lambda: executor.spin_once(timeout_sec=0.05))
        assert "camera/color" in viewer.error and viewer.path is None
    finally:
        held.close()
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
    entities = recorded_entities(rrd)
    expected = {"/camera/color", "/camera/depth", "/q_map", "/world/grasp", "/curves/loss",
                "/world/grasp_approach", "/world/grasp_outcome", "/grasp_outcomes",
                "/world/goal", "/curves/mean_max_q", "/robot/joints"}
    assert expected <= entities, entities
    # The grasp pose: the bar's centre, half sizes and yaw; the approach ends at the grasp.
    quaternion = recorded_values(rrd, "/world/grasp", "Boxes3D:quaternions")[0][0]
    assert np.allclose(quaternion, [0, 0, math.sin(yaw / 2), math.cos(yaw / 2)], atol=1e-6)
    assert np.allclose(recorded_values(rrd, "/world/grasp", "Boxes3D:half_sizes")[0],
                       [[0.03, 0.003, 0.003]], atol=1e-6)
    assert np.allclose(recorded_values(rrd, "/world/grasp_approach", "Arrows3D:vectors")[0],
                       [[0, 0, -0.06]], atol=1e-6)
    # The outcomes, in order, as labels in 3D and as a text log.
    labels = [row[0] for row in recorded_values(rrd, "/world/grasp_outcome",
                                                 "Points3D:labels")]
    assert labels == ["failure: slipped", "success: held"] * 2 + ["failure: slipped"]
    assert [row[0] for row in recorded_values(rrd, "/grasp_outcomes", "TextLog:text")] == labels
    assert [row[0] for row in recorded_values(rrd, "/grasp_outcomes",
                                              "TextLog:level")][:2] == ["WARN", "INFO"]
    assert np.allclose(recorded_values(rrd, "/world/goal", "Points3D:radii")[0], [0.02])
    # Joint 0 moved at every message, the others only once: one transform each.
    frames = [row[0] for row in recorded_values(rrd, "/robot/joints",
                                                 "Transform3D:child_frame")]
    assert len(frames) == 5 + (len(names) - 1), frames
    # The rate-limited viewer drew the first colour and depth image and joint state only.
    for entity, column in (("/camera/color", "Image:buffer"),
                           ("/camera/depth", "DepthImage:buffer"),
                           ("/q_map", "Image:buffer")):
        rows = len(recorded_values(sparse_rrd, entity, column))
        assert rows == (5 if entity == "/q_map" else 1), (entity, rows)
    assert any(e.startswith("/nuro_arm/visual_geometries/") for e in entities)  # the URDF
    assert "/curves/success_rate" not in entities  # NaN: nothing to draw
    assert not (tmp_path / "busy.rrd").exists()
