"""The shipped node parameter files, config/sim_train_<task>.yaml, generated from the nodes'
config dataclasses so that every parameter appears with its docstring and a valid value.

Regenerate after changing a node config: ``python -m q_grasp.node_params.files``.
test/test_launch_static.py checks that the files are what this module writes and that they
cover every parameter with valid values.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from q_grasp.node_params.spec import config_specs, params_yaml
from q_grasp.tasks.names import GRASP_TASKS, TASKS

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
COMMENTED = {"robot.urdf_path": "/path/to/your_arm.urdf  (default: the installed package's "
                                "assets/nuro_arm/nuro_arm.urdf)"}
"""Parameters whose default is install-specific: written commented out, with this text."""


@dataclass(frozen=True)
class NodeSection:
    """One node's section of a parameter file."""

    node_name: str
    """Node name (the section key is /**/<node_name>)."""
    config_cls: type
    """The node's config dataclass."""
    dynamic: frozenset[str]
    """Parameters the node lets change at run time."""
    for_task: Callable[[str], Any]
    """The config the file ships for a task."""


def sim_arm_for_task(task: str) -> Any:
    """sim_arm's configuration for training ``task``, matching the single-process env."""
    from q_grasp.node_params.sim_arm import SimArmConfig

    if task in GRASP_TASKS:
        from q_grasp.tasks.load import load_task

        # The scene of the task's experiment config (grasp_clutter: 1-5 objects).
        env = load_task(task).env_config
        # Same camera, scene, robot and physics as the gym env, so that the ROS pipeline and
        # the single-process loop learn the same problem. Faster than real time every message
        # rate is multiplied in wall-clock terms; 60 Hz setpoints (4 physics steps each),
        # 30 Hz joint states and 5 Hz images keep the motion and cut the ROS cost per grasp by
        # a quarter to a third (benchmarks/bench_ros_system.py, "fast_rates" variant). A grasp
        # attempt is ~4 s of motion, so the pace sets the actor's speed: 20x trained the
        # default 500-attempt budget in 6 min instead of 7.5 at 10x on this 2-core machine.
        # /clock at 20 Hz (every third tick): each /clock message costs every node on sim time
        # a Python callback; the policy judges motion by /joint_states stamps, not /clock.
        # Motion unpaced (real_time_factor 0: physics as fast as the CPU allows) and a still
        # world at 200x (no physics then, only time passing), every stream capped at 100
        # messages per wall second: a policy's waits in simulated time (settling, blocked
        # moves' timeouts) pass in milliseconds while the messages per wall second stay
        # bounded ("composed_events" vs "composed_events_paced_rtf20" in
        # benchmarks/bench_ros_system.py). Frames of the moving arm at most 10 per wall
        # second (for rviz; no decision uses them): each costs about a control tick's physics.
        # /clock at most 20 per wall second: no q_grasp node times anything by it. A still
        # world's frames no more capped than the other streams: a policy settling 0.1 s
        # (still_time_s) after its last motion takes the frame of the tick the world comes to
        # rest at once, but the first frame of a new scene is asked for 0.1 s after the
        # reset's answer, which a frame capped at 10 per wall second kept waiting ~50 ms
        # (greedy grasp transition 141 -> 95 ms). After a goal reached, simulated time waits
        # up to 3 ms of wall time for the policy's next command: its reaction costs no
        # physics, as in the env. (Each of these was measured against the alternative:
        # docs/history/.)
        return SimArmConfig(real_time_factor=0.0, still_real_time_factor=200.0,
                            goal_hold_wall_s=0.003,
                            max_publish_rate_hz=100.0, camera_moving_max_rate_hz=10.0,
                            clock_max_rate_hz=20.0, camera_still_max_rate_hz=0.0,
                            tick_rate_hz=60.0, clock_rate_hz=20.0,
                            joint_state_rate_hz=30.0, camera_rate_hz=5.0, robot=env.robot,
                            sim=env.physics,
                            motors=env.motors, camera=env.camera_config(),
                            scene=env.scene_config())
    if task == "reacher":
        # Reaching needs no images and no objects: the camera is off to save CPU.
        return SimArmConfig(real_time_factor=10.0, camera_rate_hz=0.0, spawn_on_start=False,
                            publish_ground_truth=False)
    raise ValueError(f"task: must be one of {TASKS}, got {task!r}")


TRANSITIONS_DEPTH = {"grasp": 500, "grasp_clutter": 500, "reacher": 4000}
"""/q_grasp/transitions messages each actor keeps and the trainer queues (transient local): a
30 s trainer outage plus its start-up at the task's fastest, one transition per message (grasp
~16/s of 132 KB: 66 MB held by the actor; reacher up to ~60/s of 1 KB: 4 MB);
benchmarks/bench_trainer_outage.py."""


def trainer_for_task(task: str) -> Any:
    """The trainer's configuration for ``task`` (the experiment YAML is the task's default)."""
    from q_grasp.node_params.trainer import TrainerConfig

    if task not in TASKS:
        raise ValueError(f"task: must be one of {TASKS}, got {task!r}")
    return TrainerConfig(task=task, output_dir=f"runs/ros_{task}",
                         transitions_qos_depth=TRANSITIONS_DEPTH[task])


def policy_for_task(task: str) -> Any:
    """The policy's configuration for ``task`` (``epsilon_schedule: experiment``: it explores
    as its experiment config says, like ``python -m q_grasp train``)."""
    from q_grasp.node_params.policy import policy_config_for_task

    if task not in TASKS:
        raise ValueError(f"task: must be one of {TASKS}, got {task!r}")
    return dataclasses.replace(policy_config_for_task(task),
                               transitions_queue_depth=TRANSITIONS_DEPTH[task])


def node_sections() -> list[NodeSection]:
    """Every node with a section in the parameter files."""
    from q_grasp.node_params.policy import DYNAMIC_PARAMETERS as POLICY_DYNAMIC
    from q_grasp.node_params.policy import PolicyConfig
    from q_grasp.node_params.sim_arm import DYNAMIC_PARAMETERS as SIM_ARM_DYNAMIC
    from q_grasp.node_params.sim_arm import SimArmConfig
    from q_grasp.node_params.trainer import DYNAMIC_PARAMETERS as TRAINER_DYNAMIC
    from q_grasp.node_params.trainer import TrainerConfig
    from q_grasp.node_params.usb_camera import UsbCameraConfig
    from q_grasp.node_params.xarm_driver import XArmDriverConfig

    return [NodeSection("sim_arm", SimArmConfig, SIM_ARM_DYNAMIC, sim_arm_for_task),
            NodeSection("policy", PolicyConfig, POLICY_DYNAMIC, policy_for_task),
            NodeSection("trainer", TrainerConfig, TRAINER_DYNAMIC, trainer_for_task),
            NodeSection("xarm_driver", XArmDriverConfig, frozenset(),
                        lambda task: XArmDriverConfig()),
            NodeSection("usb_camera", UsbCameraConfig, frozenset(),
                        lambda task: UsbCameraConfig())]


def render(task: str) -> str:
    """The text of config/sim_train_<task>.yaml."""
    parts = [
        f"# q_grasp: node parameters for training the {task} task over ROS 2 topics.\n"
        "# Pass to every node (ros2 launch q_grasp sim_train.launch.py task:=" + task + ", or\n"
        "# --ros-args --params-file); each node reads its own /**/<node> section.\n"
        "# Generated from the nodes' config dataclasses by `python -m\n"
        "# q_grasp.node_params.files`; edit values freely, every parameter is documented.\n"
        "# Nested keys (camera: width:) are the dotted parameter names (camera.width).\n"
    ]
    for section in node_sections():
        specs = config_specs(section.config_cls, dynamic=section.dynamic)
        parts.append(params_yaml(section.node_name, specs, section.for_task(task),
                                 commented=COMMENTED))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Write config/sim_train_<task>.yaml for every task (or into the folder given)."""
    parser = argparse.ArgumentParser(
        prog="python -m q_grasp.node_params.files",
        description="Write the documented node parameter files config/sim_train_<task>.yaml "
                    "from the nodes' config dataclasses.")
    parser.add_argument("out_dir", nargs="?", type=Path, default=CONFIG_DIR,
                        help=f"folder to write into (default {CONFIG_DIR})")
    out_dir = parser.parse_args(sys.argv[1:] if argv is None else argv).out_dir
    if not out_dir.is_dir():
        parser.error(f"out_dir: not a folder: {out_dir}")
    for task in TASKS:
        path = out_dir / f"sim_train_{task}.yaml"
        path.write_text(render(task))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
