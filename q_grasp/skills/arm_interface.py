"""The arm interface that skills (grasping, reaching) are written against.

Adapters: ``q_grasp.sim.robot.SimRobot`` drives pybullet in-process (the grasp env),
``q_grasp.nodes.ros_arm.RosArm`` drives ROS 2 topics (the policy node, against the sim node or a
real arm's drivers), ``q_grasp.tasks.reach.KinematicArm`` sets joints without physics (the
Reacher env).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ArmInterface(Protocol):
    """What a skill may ask of an arm. Positions are radians, lengths metres, world frame."""

    arm_joint_names: list[str]
    """Arm joints, in the order of every joint vector passed in or returned."""

    def read_arm_joints(self) -> np.ndarray:
        """Current arm joint positions (rad), shape (n_arm,)."""
        ...

    def move_arm(self, joint_targets: np.ndarray, *, teleport: bool = False) -> bool:
        """Drive the arm to ``joint_targets`` and wait until it gets there.

        ``teleport`` lets a simulator jump without physics (free-space moves only).
        Returns True when the arm reached the targets within tolerance, False on timeout.
        """
        ...

    def move_arm_through(self, waypoints: Sequence[np.ndarray]) -> bool:
        """Drive the arm through ``waypoints`` in order and wait until it reaches the last.

        An adapter may blend them into one motion (a JointTrajectoryController does) or stop
        at each (the in-process simulator does, as its benchmarks were measured). Returns
        True when the arm reached the last waypoint within tolerance (True for no
        waypoints), False on timeout.
        """
        ...

    def set_gripper(self, closed: bool) -> float:
        """Open or close the gripper, wait for it to settle, return the aperture (m)."""
        ...

    def gripper_aperture(self) -> float:
        """Distance between the finger pads (m), from the gripper joint states."""
        ...
