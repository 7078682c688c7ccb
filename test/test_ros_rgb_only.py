"""The policy grasps from colour only over DDS: sim_arm without a depth stream, the policy on
config/grasp_rgb.yaml (grasp points on the table plane), attempts made and recorded."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")

ROOT = Path(__file__).resolve().parents[1]


def test_policy_grasps_without_a_depth_stream(tmp_path) -> None:
    from q_grasp.node_processes import start_node_process, stop_process, unique_domain_id

    domain = unique_domain_id()
    logs = {name: tmp_path / f"{name}.log" for name in ("sim_arm", "policy")}
    sim = start_node_process(
        "q_grasp.nodes.sim_arm", ["-p", "publish_depth:=false", "-p", "real_time_factor:=0.0",
                                  "-p", "camera_rate_hz:=5.0", "-p", "scene.shapes:=[cube]",
                                  "-p", "max_publish_rate_hz:=100.0"],
        domain_id=domain, log_path=logs["sim_arm"])
    policy = start_node_process(
        "q_grasp.nodes.policy",
        ["-p", "task:=grasp", "-p", "train:=false", "-p", "eval_epsilon:=1.0",
         "-p", "use_sim_time:=true", "-p", "log_every_s:=0.5",
         "-p", f"experiment_config:={ROOT / 'config' / 'grasp_rgb.yaml'}"],
        domain_id=domain, log_path=logs["policy"])
    try:
        deadline = time.monotonic() + 180
        episodes = 0
        while time.monotonic() < deadline and episodes < 2:
            found = re.findall(r"episode (\d+):", logs["policy"].read_text())
            episodes = max(map(int, found), default=0)
            assert policy.poll() is None, logs["policy"].read_text()[-3000:]
            time.sleep(0.5)
        assert episodes >= 2, logs["policy"].read_text()[-3000:]
    finally:
        codes = [stop_process(policy), stop_process(sim)]
    text = logs["policy"].read_text()
    assert codes == [0, 0], text[-3000:]
    assert "no camera frame" not in text and "grasp_no_depth" not in text
