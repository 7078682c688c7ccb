"""Kinematics from scratch (numpy only): URDF chain, forward kinematics, Jacobian, IK."""

from q_grasp.kinematics.chain import (
    IKBatchResult,
    IKResult,
    KinematicChain,
    rotation_vector,
    top_down_rotation,
)
from q_grasp.kinematics.urdf import UrdfJoint, UrdfModel, parse_urdf, parse_urdf_string

__all__ = [
    "IKBatchResult",
    "IKResult",
    "KinematicChain",
    "UrdfJoint",
    "UrdfModel",
    "parse_urdf",
    "parse_urdf_string",
    "rotation_vector",
    "top_down_rotation",
]
