"""launch_testing test of the installed sim_train.launch.py (task:=reacher): the three nodes
start, transitions reach the trainer, and every process exits with code 0 after the launch ends.

Run by test/test_ros2_tooling.py with ``launch_test`` inside a colcon workspace (the file name
keeps pytest's own collection away from it: it needs launch_testing, which is not on PyPI).
"""

# ruff: noqa: I001  (ruff takes the repository's launch/ folder for the "launch" package)
import os
import time
import unittest

import launch
import launch_testing
import launch_testing.actions
import launch_testing.asserts
import rclpy
from ament_index_python.packages import get_package_share_directory
from diagnostic_msgs.msg import DiagnosticArray
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

TIMEOUT_S = float(os.environ.get("Q_GRASP_LAUNCH_TEST_TIMEOUT_S", "180"))


def generate_test_description():
    share = get_package_share_directory("q_grasp")
    sim_train = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "sim_train.launch.py")),
        launch_arguments={"task": "reacher"}.items())
    return launch.LaunchDescription([sim_train, launch_testing.actions.ReadyToTest()])


class TestReacherTraining(unittest.TestCase):

    def test_nodes_come_up(self, proc_output):
        for name in ("sim_arm up", "policy up", "trainer up"):
            proc_output.assertWaitFor(name, timeout=TIMEOUT_S, stream="stderr")

    def test_transitions_reach_the_trainer(self):
        rclpy.init()
        try:
            node = rclpy.create_node("reacher_launch_probe")
            seen = {}

            def on_diagnostics(msg):
                for status in msg.status:
                    if status.name.endswith("trainer"):
                        seen.update({kv.key: kv.value for kv in status.values})

            node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
            deadline = time.monotonic() + TIMEOUT_S
            while time.monotonic() < deadline and int(seen.get("transitions", 0)) < 50:
                rclpy.spin_once(node, timeout_sec=0.5)
            self.assertGreaterEqual(int(seen.get("transitions", 0)), 50, seen)
            node.destroy_node()
        finally:
            rclpy.shutdown()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_every_process_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
