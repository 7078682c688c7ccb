"""Train a q_grasp policy over ROS 2 topics: sim_arm (pybullet), policy (actor), trainer
(learner), and optionally rviz2 with robot_state_publisher.

  ros2 launch q_grasp sim_train.launch.py                       # grasping, headless
  ros2 launch q_grasp sim_train.launch.py task:=reacher rviz:=true
  ros2 launch q_grasp sim_train.launch.py use_sim:=false use_sim_time:=false
        # a real arm's drivers provide /joint_states, the camera and the trajectory topics
  ros2 launch q_grasp sim_train.launch.py train:=false checkpoint:=/path/to/policy.safetensors
        # evaluate a checkpoint greedily, no trainer

Every node reads its own section of the params file (config:=...). Show the arguments with
``ros2 launch q_grasp sim_train.launch.py --show-args``.
"""

# ruff: noqa: I001  (ruff takes this folder, launch/, for the first-party "launch" package)
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
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


def generate_launch_description() -> LaunchDescription:
    declared_arguments = [
        DeclareLaunchArgument(
            "task", default_value="grasp", choices=["grasp", "reacher"],
            description="Skill to learn: top-down grasping (U-Net Q-map over the camera "
                        "image) or goal reaching (MLP over joint angles and goal)."),
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
            "train", default_value="true", choices=["true", "false"],
            description="Start the trainer. false: the policy acts greedily with the "
                        "checkpoint's weights (evaluation)."),
        DeclareLaunchArgument(
            "checkpoint", default_value="",
            description="Checkpoint file (.safetensors): initial weights for the policy, and "
                        "the trainer resumes from it. Empty: fresh weights, or the trainer "
                        "resumes from the newest checkpoint in its output folder."),
    ]

    task = LaunchConfiguration("task")
    config = LaunchConfiguration("config")
    namespace = LaunchConfiguration("namespace")
    checkpoint = LaunchConfiguration("checkpoint")
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
    )
    policy = Node(
        package=PACKAGE,
        executable="policy",
        name="policy",
        namespace=namespace,
        output="screen",
        parameters=[config, {"use_sim_time": use_sim_time, "task": task,
                             "checkpoint": checkpoint, "train": train}],
    )
    trainer = Node(
        package=PACKAGE,
        executable="trainer",
        name="trainer",
        output="screen",
        parameters=[config, {"use_sim_time": use_sim_time, "task": task,
                             "checkpoint": checkpoint}],
        condition=IfCondition(LaunchConfiguration("train")),
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
        declared_arguments + [sim_arm, policy, trainer, robot_state_publisher, rviz])
