"""pybullet simulation backend: the world (BulletSim), the arm (SimRobot), the camera and the
object scene. Every pybullet call in q_grasp goes through a BulletSim's own client. The sim_arm
node's simulation (its control loop, trajectory controller and pacing) is in arm_loop,
controller and pacing."""

from q_grasp.sim.bullet import BulletSim, BulletSimConfig
from q_grasp.sim.camera import CameraConfig, PinholeCamera
from q_grasp.sim.robot import SimRobot, SimRobotConfig
from q_grasp.sim.scene import ObjectInfo, Scene, SceneConfig, resolve_object_files

__all__ = [
    "BulletSim",
    "BulletSimConfig",
    "CameraConfig",
    "ObjectInfo",
    "PinholeCamera",
    "Scene",
    "SceneConfig",
    "SimRobot",
    "SimRobotConfig",
    "resolve_object_files",
]
