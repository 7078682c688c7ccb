"""Train a q_grasp policy over ROS 2 topics: sim_arm (pybullet), policy (actor), trainer
(learner), and optionally rviz2 with robot_state_publisher.

  ros2 launch q_grasp sim_train.launch.py                       # grasping, headless
  ros2 launch q_grasp sim_train.launch.py task:=reacher rviz:=true
  ros2 launch q_grasp sim_train.launch.py use_sim:=false use_sim_time:=false
        # a real arm's drivers provide /joint_states, the camera and the trajectory topics
  ros2 launch q_grasp sim_train.launch.py use_sim:=false use_sim_time:=false task:=reacher \
        driver:=xarm   # the NURO arm's servo board on USB (driver:=xarm_fake: its fake board)
  ros2 launch q_grasp sim_train.launch.py train:=false checkpoint:=/path/to/policy.safetensors
        # evaluate a checkpoint greedily, no trainer
  ros2 launch q_grasp sim_train.launch.py record:=true record_path:=runs/grasp.mcap
        # also record the run's topics as an MCAP file (ros2 bag, Foxglove, q_grasp replay-buffer)
  ros2 launch q_grasp sim_train.launch.py viewer:=true
        # watch it in Rerun at http://localhost:9090 (no rviz needed), saved to viewer_path

The policy and the trainer sign and check transitions and weights with a key (HMAC-SHA256): a
fresh one per launch in a private temporary file by default; auth_key_file:=PATH shares one
between machines. Every node reads its own section of the params file (config:=...). Show
the arguments with ``ros2 launch q_grasp sim_train.launch.py --show-args``.

Before any node starts, the arguments are checked (config and checkpoint files exist; rviz:=true
finds rviz2 and robot_state_publisher): a bad one ends the launch with a reason and exit code 1,
nothing left running. Once running, a q_grasp node that exits ends the whole system; one that
exits with an error (bad parameters, an unreadable checkpoint) makes ``ros2 launch`` exit 1.
"""

# ruff: noqa: I001  (ruff takes this folder, launch/, for the first-party "launch" package)
import atexit
import os

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.conditions import IfCondition, LaunchConfigurationNotEquals
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = "q_grasp"


def _robot_description() -> str:
    """The URDF that sim_arm simulates, for robot_state_publisher (rviz's robot model).

    It ships inside the Python package (sim_arm loads it from there), so it is read through
    q_grasp itself rather than from the share directory.
    """
    from q_grasp.robot_config import RobotConfig

    with open(RobotConfig().urdf_path, encoding="utf-8") as urdf:
        return urdf.read()


class LaunchArgumentError(RuntimeError):
    """A launch argument that cannot work; raised before any process starts."""


RVIZ_PACKAGES = ("robot_state_publisher", "rviz2")
"""ROS packages that rviz:=true starts (not q_grasp dependencies of the pip-only path)."""


def _check_arguments(context: LaunchContext) -> list:
    """Refuse arguments that cannot work, before the nodes start (the first action)."""
    def value(name: str) -> str:
        return context.launch_configurations.get(name, "")

    config = value("config")
    if not os.path.isfile(config):
        raise LaunchArgumentError(
            f"config:={config} is not a file; give a node parameters file such as the "
            f"package's config/sim_train_<task>.yaml")
    if value("driver") != "none" and value("use_sim") == "true":
        raise LaunchArgumentError(f"driver:={value('driver')} replaces the simulator: add "
                                  f"use_sim:=false (and use_sim_time:=false)")
    checkpoint = value("checkpoint")
    if checkpoint and not os.path.isfile(checkpoint):
        raise LaunchArgumentError(f"checkpoint:={checkpoint} is not a file")
    from q_grasp.wire.auth import new_key_file, read_key_file

    key_file = value("auth_key_file")
    if key_file:
        try:
            read_key_file(key_file)
        except ValueError as exc:
            raise LaunchArgumentError(f"auth_key_file:={key_file}: {exc}") from None
    else:  # a fresh key for this launch; the nodes read it at start
        fresh = new_key_file()
        atexit.register(fresh.unlink, missing_ok=True)
        context.launch_configurations["auth_key_file"] = str(fresh)
    if value("rviz") == "true":
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix

        missing = []
        for package in RVIZ_PACKAGES:
            try:
                get_package_prefix(package)
            except PackageNotFoundError:
                missing.append(package)
        if missing:
            distro = os.environ.get("ROS_DISTRO", "<distro>")
            raise LaunchArgumentError(
                f"rviz:=true needs the ROS packages {', '.join(missing)}, which are not "
                f"installed (apt install "
                f"{' '.join('ros-' + distro + '-' + p.replace('_', '-') for p in missing)}); "
                f"or launch with rviz:=false")
    return []


def _end_system(event, context: LaunchContext) -> list | None:
    """on_exit of every q_grasp node: the system cannot work without it, so end it all."""
    if context.is_shutdown:
        return None
    name = event.action.name
    if event.returncode != 0:
        # Raising makes the launch shut everything down and exit 1, with this reason.
        raise RuntimeError(f"{name} exited with code {event.returncode} (its log above says "
                           f"why); stopping the other nodes")
    return [Shutdown(reason=f"{name} finished")]


def generate_launch_description() -> LaunchDescription:
    declared_arguments = [
        DeclareLaunchArgument(
            "task", default_value="grasp", choices=["grasp", "grasp_clutter", "reacher"],
            description="Skill to learn: top-down grasping (U-Net Q-map over the camera "
                        "image; grasp_clutter: 1-5 objects per scene) or goal reaching (MLP "
                        "over joint angles and goal)."),
        DeclareLaunchArgument(
            "config",
            default_value=[FindPackageShare(PACKAGE), "/config/sim_train_",
                           LaunchConfiguration("task"), ".yaml"],
            description="Node parameters file (every parameter documented inside); "
                        "defaults to the package's config/sim_train_<task>.yaml."),
        DeclareLaunchArgument(
            "use_sim_time", default_value="true", choices=["true", "false"],
            description="Run every node on sim_arm's /clock (needed faster than real "
                        "time). Set false for a real arm."),
        DeclareLaunchArgument(
            "namespace", default_value="",
            description="Namespace for sim_arm and policy (one arm per namespace); the "
                        "trainer and /q_grasp/* topics stay global so several arms can feed "
                        "one trainer."),
        DeclareLaunchArgument(
            "rviz", default_value="false", choices=["true", "false"],
            description="Start rviz2 with config/q_grasp.rviz and robot_state_publisher."),
        DeclareLaunchArgument(
            "use_sim", default_value="true", choices=["true", "false"],
            description="Start the pybullet sim_arm. false: a real arm's drivers provide "
                        "the same topics (see README 'Swapping the simulator for a real arm')."),
        DeclareLaunchArgument(
            "driver", default_value="none", choices=["none", "xarm", "xarm_fake"],
            description="With use_sim:=false: start xarm_driver for the NURO arm's servo board "
                        "on USB (xarm) or for q_grasp's fake board (xarm_fake, no arm "
                        "needed); none: the arm's drivers run elsewhere."),
        DeclareLaunchArgument(
            "train", default_value="true", choices=["true", "false"],
            description="Start the trainer. false: the policy acts greedily with the "
                        "checkpoint's weights (evaluation)."),
        DeclareLaunchArgument(
            "checkpoint", default_value="",
            description="Checkpoint file (.safetensors): initial weights for the policy, and "
                        "the trainer resumes from it. Empty: fresh weights, or the trainer "
                        "resumes from the newest checkpoint in its output folder."),
        DeclareLaunchArgument(
            "record", default_value="false", choices=["true", "false"],
            description="Start the recorder: the run's topics (joint states, images, "
                        "trajectories, transitions, weights, diagnostics) as ROS 2 messages in "
                        "the MCAP file record_path. A recorder that fails logs it; the run "
                        "goes on."),
        DeclareLaunchArgument(
            "record_path", default_value="recording.mcap",
            description="The .mcap file record:=true writes (relative to the working "
                        "directory); python -m q_grasp replay-buffer rebuilds a replay buffer "
                        "from it."),
        DeclareLaunchArgument(
            "viewer", default_value="false", choices=["true", "false"],
            description="Start the Rerun viewer node: the arm in 3D, camera, Q-map, grasps, "
                        "goal and learning curves, served at http://localhost:<viewer_port> "
                        "and saved to viewer_path (needs the rerun-sdk package)."),
        DeclareLaunchArgument(
            "viewer_port", default_value="9090",
            description="Web viewer port of viewer:=true (0: only the .rrd file)."),
        DeclareLaunchArgument(
            "viewer_path", default_value="run.rrd",
            description="The .rrd file viewer:=true saves (reopen with: rerun FILE.rrd)."),
        DeclareLaunchArgument(
            "auth_key_file", default_value="",
            description="Key file with which the policy and trainer authenticate transitions "
                        "and weights (HMAC-SHA256); give the same file on every machine of a "
                        "system. Empty: a fresh key for this launch."),
    ]

    task = LaunchConfiguration("task")
    config = LaunchConfiguration("config")
    namespace = LaunchConfiguration("namespace")
    checkpoint = LaunchConfiguration("checkpoint")
    auth_key_file = LaunchConfiguration("auth_key_file")
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    train = ParameterValue(LaunchConfiguration("train"), value_type=bool)
    rviz_config = PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "q_grasp.rviz"])

    sim_arm = Node(
        package=PACKAGE,
        executable="sim_arm",
        name="sim_arm",
        namespace=namespace,
        output="screen",
        parameters=[config, {"use_sim_time": use_sim_time}],
        condition=IfCondition(LaunchConfiguration("use_sim")),
        on_exit=_end_system,
    )
    xarm_driver = Node(
        package=PACKAGE,
        executable="xarm_driver",
        name="xarm_driver",
        namespace=namespace,
        output="screen",
        parameters=[config, {"use_sim_time": use_sim_time, "device": ParameterValue(
            PythonExpression(["'fake' if '", LaunchConfiguration("driver"),
                              "' == 'xarm_fake' else 'hid'"]), value_type=str)}],
        condition=LaunchConfigurationNotEquals("driver", "none"),
        on_exit=_end_system,
    )
    policy = Node(
        package=PACKAGE,
        executable="policy",
        name="policy",
        namespace=namespace,
        output="screen",
        parameters=[config, {"use_sim_time": use_sim_time, "task": task,
                             "checkpoint": checkpoint, "train": train,
                             "auth_key_file": auth_key_file}],
        on_exit=_end_system,
    )
    trainer = Node(
        package=PACKAGE,
        executable="trainer",
        name="trainer",
        output="screen",
        parameters=[config, {"use_sim_time": use_sim_time, "task": task,
                             "checkpoint": checkpoint, "auth_key_file": auth_key_file}],
        condition=IfCondition(LaunchConfiguration("train")),
        on_exit=_end_system,
    )
    # No on_exit=_end_system for recorder and viewer: the run goes on without them.
    recorder = Node(
        package=PACKAGE,
        executable="recorder",
        name="recorder",
        namespace=namespace,
        output="screen",
        parameters=[config, {"output_path": LaunchConfiguration("record_path")}],
        condition=IfCondition(LaunchConfiguration("record")),
    )
    viewer = Node(
        package=PACKAGE,
        executable="viewer",
        name="viewer",
        namespace=namespace,
        output="screen",
        parameters=[config, {"rrd_path": LaunchConfiguration("viewer_path"),
                             "web_port": ParameterValue(LaunchConfiguration("viewer_port"),
                                                        value_type=int)}],
        condition=IfCondition(LaunchConfiguration("viewer")),
    )
    robot_state_publisher = Node(
        package="robot_state_publisher",
        executable="robot_state_publisher",
        namespace=namespace,
        output="log",
        parameters=[{"robot_description": ParameterValue(_robot_description(), value_type=str),
                     "use_sim_time": use_sim_time}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        output="log",
        arguments=["-d", rviz_config],
        parameters=[{"use_sim_time": use_sim_time}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )

    return LaunchDescription(
        declared_arguments + [OpaqueFunction(function=_check_arguments),
                              recorder, viewer, sim_arm, xarm_driver, policy, trainer,
                              robot_state_publisher, rviz])
