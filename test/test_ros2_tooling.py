"""q_grasp as a ROS 2 user runs it: plain ``colcon build`` (no --symlink-install), then
``ros2 launch q_grasp sim_train.launch.py``, watched with ``ros2 node list``,
``ros2 topic list -t`` and ``ros2 topic echo /diagnostics``, stopped with SIGINT -- with the real
Jazzy launch tooling.

`launch`, `launch_ros` and `ros2cli` are not on PyPI. tools/ros2_tooling.sh builds them once per
machine (cached) from the Jazzy source tarballs in ../shared/ros2_launch (or
$Q_GRASP_ROS2_LAUNCH_SOURCES) beside the PyPI rclpy wheels; without those sources every test here
skips with that reason. Run with ``make test-ros2`` (CI runs it after ``make test``).

Every process a test starts carries a marker in its environment, so the test can tell whether
anything it launched is still running afterwards (an orphan re-parented to init included).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from q_grasp.node_processes import udp_localhost_env, unique_domain_id

pytestmark = [pytest.mark.ros, pytest.mark.ros2_tooling]

ROOT = Path(__file__).resolve().parents[1]
SOURCES = Path(os.environ.get("Q_GRASP_ROS2_LAUNCH_SOURCES",
                              ROOT.parent / "shared" / "ros2_launch"))
MARKER_VAR = "Q_GRASP_TEST_LAUNCH_MARKER"
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "runs", "build", "install", "log",
                                     "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache")
# Variables of the test's own environment that would let the launched system see the checkout
# or this virtualenv instead of the colcon install.
DROPPED_VARS = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "AMENT_PREFIX_PATH",
                "CMAKE_PREFIX_PATH", "COLCON_PREFIX_PATH", "ROS_DOMAIN_ID",
                "_ROS_WHEELS_BOOTSTRAP_COMPLETE")


@dataclass
class Workspace:
    root: Path
    env: dict[str, str]


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_VARS}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if "/.venv/" not in p + "/")
    # The tooling's virtualenv uses the interpreter this one was made from.
    env["PYTHON"] = getattr(sys, "_base_executable", sys.executable)
    return env


def _bash(script: str, env: dict[str, str], cwd: Path, timeout: float
          ) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    """The tooling (cached), and q_grasp built with a plain ``colcon build`` in a scratch
    workspace; ``env`` is what ``source install/setup.bash`` gives a user."""
    if not (SOURCES / "launch_ros-jazzy.tar.gz").is_file():
        pytest.skip(f"no ROS 2 launch tooling sources in {SOURCES} (launch, launch_ros and "
                    f"ros2cli are not on PyPI; set Q_GRASP_ROS2_LAUNCH_SOURCES)")
    base = _base_env()
    setup = subprocess.run(["bash", str(ROOT / "tools" / "ros2_tooling.sh"), str(SOURCES)],
                           env=base, capture_output=True, text=True, timeout=1800)
    assert setup.returncode == 0, setup.stderr[-4000:]
    env_script = setup.stdout.strip().splitlines()[-1]

    ws = tmp_path_factory.mktemp("ws")
    shutil.copytree(ROOT, ws / "src" / "q_grasp", ignore=COPY_IGNORE)
    build = _bash(f"source {env_script} && colcon build --packages-select q_grasp "
                  f"--event-handlers console_direct+", base, ws, 600)
    output = build.stdout + build.stderr
    assert build.returncode == 0, output[-4000:]
    assert "Unknown distribution option" not in output, output[-4000:]
    dump = _bash(f"source {env_script} && source install/setup.bash && env -0", base, ws, 60)
    assert dump.returncode == 0, dump.stderr
    env = dict(item.split("=", 1) for item in dump.stdout.split("\0") if "=" in item)
    env.update(udp_localhost_env())
    return Workspace(ws, env)


def _marked_processes(marker: str) -> list[int]:
    """PIDs of live processes whose environment carries ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and f"{MARKER_VAR}={marker}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Launch:
    """``ros2 launch q_grasp sim_train.launch.py ARGS`` in a folder of its own, output to a log."""

    def __init__(self, ws: Workspace, cwd: Path, args: Sequence[str]) -> None:
        self.ws, self.cwd = ws, cwd
        self.marker = uuid.uuid4().hex
        self.env = {**ws.env, MARKER_VAR: self.marker, "ROS_DOMAIN_ID": str(unique_domain_id()),
                    "ROS_HOME": str(cwd / "ros_home"), "PYTHONUNBUFFERED": "1"}
        self.log_path = cwd / "launch.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        # SIGINT back to its default: a suite started in the background (nohup, `cmd &` in a
        # script) hands its children SIGINT ignored, and Python keeps it so.
        self.proc = subprocess.Popen(["ros2", "launch", "q_grasp", "sim_train.launch.py", *args],
                                     cwd=cwd, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_default_sigint)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ros2(self, *args: str, timeout: float = 60.0) -> str:
        try:
            result = subprocess.run(["ros2", *args], cwd=self.cwd, env=self.env,
                                    capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:  # a loaded machine: the caller polls again
            return ""
        return result.stdout if result.returncode == 0 else ""

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def interrupt(self, timeout: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.wait_exit(timeout)

    def leftovers(self) -> list[int]:
        return _marked_processes(self.marker)

    def kill_leftovers(self) -> None:
        """Test cleanup only: SIGKILL whatever this launch left running."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for pid in self.leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not self._log.closed:
            self._log.close()


@pytest.fixture
def launched(workspace, tmp_path):
    started: list[Launch] = []

    def start(*args: str) -> Launch:
        launch = Launch(workspace, tmp_path, args)
        started.append(launch)
        return launch

    yield start
    for launch in started:
        launch.kill_leftovers()


def _trainer_status(launch: Launch) -> dict[str, str] | None:
    """The trainer's key/values from one /diagnostics message (None if none came)."""
    # Three nodes publish /diagnostics; without the filter the first message is usually not
    # the trainer's, and the trainer's progress is never seen.
    text = launch.ros2("topic", "echo", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray",
                       "--once", "--full-length", "--no-daemon",
                       "--filter", "any(s.name.endswith('trainer') for s in m.status)",
                       "--timeout", "20",
                       timeout=30.0)
    for doc in yaml.safe_load_all(text):
        for status in (doc or {}).get("status", []):
            if status.get("name", "").endswith("trainer"):
                return {kv["key"]: kv["value"] for kv in status.get("values", [])}
    return None


def _wait_for(predicate, timeout: float, what: str, launch: Launch):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert launch.proc.poll() is None, f"launch exited while waiting for {what}:\n{launch.log}"
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}:\n"
                         f"{launch.log[-6000:]}")


def test_colcon_build_installs_the_package(workspace) -> None:
    """A plain build installs the nodes where launch_ros finds them, with every subpackage."""
    prefix = workspace.root / "install" / "q_grasp"
    for script in ("sim_arm", "policy", "trainer"):
        assert (prefix / "lib" / "q_grasp" / script).is_file(), script
    installed = list(prefix.glob("lib/python3*/site-packages/q_grasp/nodes/policy.py"))
    assert installed and not installed[0].is_symlink(), installed  # a copy, not a symlink
    result = subprocess.run(["ros2", "pkg", "prefix", "q_grasp"], env=workspace.env,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == str(prefix)


def test_grasp_training_under_ros2_launch(launched) -> None:
    launch = launched()
    nodes = _wait_for(lambda: {"/sim_arm", "/policy", "/trainer"} <= set(
        launch.ros2("node", "list", "--no-daemon").split()), 120, "the three nodes", launch)
    assert nodes
    expected = {
        "/joint_states": "sensor_msgs/msg/JointState]",
        "/camera/color/image_raw": "sensor_msgs/msg/Image]",
        "/camera/depth/image_raw": "sensor_msgs/msg/Image]",
        "/arm_controller/joint_trajectory": "trajectory_msgs/msg/JointTrajectory]",
        "/q_grasp/transitions": "std_msgs/msg/UInt8MultiArray]",
        "/q_grasp/weights": "std_msgs/msg/UInt8MultiArray]",
        "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray]",
        "/clock": "rosgraph_msgs/msg/Clock]",
    }

    def topics() -> dict[str, str]:
        listed = launch.ros2("topic", "list", "-t", "--no-daemon", "--spin-time", "2")
        return dict(line.split(" [", 1) for line in listed.splitlines() if " [" in line)

    def all_topics() -> dict[str, str] | None:
        listed = topics()  # a fresh CLI process: discovery may not have found them all yet
        return listed if set(expected) <= set(listed) else None

    listed = _wait_for(all_topics, 60, "the documented topics", launch)
    assert {k: listed[k] for k in expected} == expected, listed

    def trained() -> dict[str, str] | None:
        status = _trainer_status(launch)
        if status and int(status.get("updates", 0)) > 0 and int(status.get("transitions", 0)):
            return status
        return None

    first = _wait_for(trained, 300, "trainer updates on /diagnostics", launch)
    later = _wait_for(lambda: (s := _trainer_status(launch)) and int(s.get("updates", 0)) > int(
        first["updates"]) and s, 120, "more updates", launch)
    assert int(later["transitions"]) >= int(first["transitions"])

    assert launch.interrupt(timeout=60) == 0, launch.log[-6000:]
    assert launch.leftovers() == [], launch.log[-6000:]
    log = launch.log
    assert list((launch.cwd / "runs" / "ros_grasp" / "checkpoints").glob("ckpt_*.safetensors"))
    for noise in ("pybullet build time", "argv[0]=", "Traceback", "Exception in thread"):
        assert noise not in log, f"{noise!r} in the launch output:\n{log[-6000:]}"


@pytest.mark.parametrize("args, reason", [
    (["rviz:=true"], "rviz:=true needs the ROS packages robot_state_publisher, rviz2"),
    (["config:=/nonexistent/params.yaml"], "config:=/nonexistent/params.yaml is not a file"),
    (["checkpoint:=/nonexistent/policy.safetensors"],
     "checkpoint:=/nonexistent/policy.safetensors is not a file"),
    (["driver:=xarm"], "driver:=xarm replaces the simulator: add use_sim:=false"),
])
def test_bad_arguments_stop_the_launch_before_any_node(launched, args, reason) -> None:
    launch = launched(*args)
    code = launch.wait_exit(timeout=90)
    log = launch.log
    assert code == 1, log
    assert reason in log, log
    assert "process started" not in log, log  # launch logs every process it starts
    assert launch.leftovers() == [], log


def test_a_node_exiting_on_bad_input_ends_the_system(launched, tmp_path) -> None:
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}" + bytes(64))
    launch = launched(f"checkpoint:={bad}")
    code = launch.wait_exit(timeout=180)
    log = launch.log
    assert code == 1, log
    assert "exited with code 2" in log and "stopping the other nodes" in log, log
    assert "checkpoint" in log, log  # the node's own reason
    assert launch.leftovers() == [], log


def test_use_sim_false_waits_and_saves_no_empty_checkpoint(launched) -> None:
    launch = launched("use_sim:=false", "use_sim_time:=false")
    _wait_for(lambda: {"/policy", "/trainer"} <= set(
        launch.ros2("node", "list", "--no-daemon").split()), 120, "policy and trainer", launch)
    assert "/sim_arm" not in launch.ros2("node", "list", "--no-daemon").split()
    # Both nodes fully up (a node is listed as soon as its constructor starts), the policy
    # waiting politely for an arm.
    _wait_for(lambda: "trainer up" in launch.log and "waiting for joint_states" in launch.log,
              120, "the trainer up and the policy waiting for an arm", launch)
    assert launch.interrupt(timeout=60) == 0, launch.log[-6000:]
    assert launch.leftovers() == [], launch.log
    checkpoints = launch.cwd / "runs" / "ros_grasp" / "checkpoints"
    assert not list(checkpoints.glob("ckpt_*.safetensors"))
    assert "no checkpoint written" in launch.log, launch.log[-6000:]


def test_launch_testing_reacher(workspace, tmp_path) -> None:
    """launch's own test runner over the installed launch file (test/launch_tests/)."""
    marker = uuid.uuid4().hex
    env = {**workspace.env, MARKER_VAR: marker, "ROS_DOMAIN_ID": str(unique_domain_id()),
           "ROS_HOME": str(tmp_path / "ros_home")}
    test_file = workspace.root / "src" / "q_grasp" / "test" / "launch_tests" / "reacher_launch.py"
    try:
        result = subprocess.run(["launch_test", str(test_file)], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=600)
    finally:
        leftovers = _marked_processes(marker)
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "test_transitions_reach_the_trainer" in output and "FAILED" not in output, output
    assert leftovers == [], output[-6000:]


def test_the_real_arm_launch_with_the_fake_board(launched) -> None:
    """use_sim:=false driver:=xarm_fake: xarm_driver (on q_grasp's fake board) replaces
    sim_arm, the policy drives it, Ctrl-C stops everything."""
    launch = launched("use_sim:=false", "use_sim_time:=false", "task:=reacher",
                      "driver:=xarm_fake", "train:=false")
    _wait_for(lambda: {"/xarm_driver", "/policy"} <= set(
        launch.ros2("node", "list", "--no-daemon").split()), 120, "driver and policy", launch)
    _wait_for(lambda: "accepted.arm_trajectory" in launch.ros2(
        "topic", "echo", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "--once",
        "--full-length", "--no-daemon", timeout=30.0), 120,
        "the policy's trajectories accepted by the driver", launch)
    assert "device fake" in launch.log
    assert launch.interrupt(timeout=60) == 0, launch.log[-6000:]
    assert launch.leftovers() == [], launch.log[-6000:]
