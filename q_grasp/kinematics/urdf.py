"""Read the kinematic tree (links, joints, origins, axes, limits) of a URDF file, numpy only."""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

JOINT_TYPES = ("revolute", "continuous", "prismatic", "fixed", "floating", "planar")
"""Joint types the URDF specification defines."""
MOVABLE_JOINT_TYPES = ("revolute", "continuous", "prismatic")
"""Single-degree-of-freedom joint types a kinematic chain can contain."""


def rpy_to_matrix(rpy: np.ndarray | list[float] | tuple[float, ...]) -> np.ndarray:
    """Rotation matrix (3, 3) of URDF roll-pitch-yaw: fixed axes x, then y, then z.

    R = Rz(yaw) @ Ry(pitch) @ Rx(roll), the convention of the URDF specification.
    """
    roll, pitch, yaw = (float(v) for v in rpy)
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def make_transform(xyz: np.ndarray | list[float], rpy: np.ndarray | list[float]) -> np.ndarray:
    """Homogeneous transform (4, 4) from a translation and URDF roll-pitch-yaw angles."""
    T = np.eye(4)
    T[:3, :3] = rpy_to_matrix(rpy)
    T[:3, 3] = np.asarray(xyz, dtype=float)
    return T


@dataclass
class UrdfJoint:
    """One joint of a URDF: the transform from parent link frame to joint frame, and motion."""

    name: str
    """Joint name, unique in the file."""
    joint_type: str
    """One of JOINT_TYPES."""
    parent: str
    """Parent link name."""
    child: str
    """Child link name."""
    origin: np.ndarray
    """(4, 4) transform from the parent link frame to this joint's frame (= child frame at 0)."""
    axis: np.ndarray
    """(3,) unit axis in the joint frame (rotation axis or translation direction)."""
    lower: float = -math.inf
    """Lower position limit (rad or m); -inf for continuous and fixed joints."""
    upper: float = math.inf
    """Upper position limit (rad or m); +inf for continuous and fixed joints."""

    @property
    def movable(self) -> bool:
        """True for single-DOF joints (revolute, continuous, prismatic)."""
        return self.joint_type in MOVABLE_JOINT_TYPES


@dataclass
class UrdfModel:
    """The kinematic tree of a robot: link names and joints keyed by name."""

    name: str
    """The robot's name attribute."""
    links: list[str]
    """Link names in file order."""
    joints: dict[str, UrdfJoint] = field(default_factory=dict)
    """Joints by name, in file order."""

    def parent_joint(self, link: str) -> UrdfJoint | None:
        """The joint whose child is ``link``; None for the root link."""
        return self._parent_of.get(link)

    def __post_init__(self) -> None:
        self._parent_of: dict[str, UrdfJoint] = {}
        for joint in self.joints.values():
            self._parent_of[joint.child] = joint

    @property
    def root_link(self) -> str:
        """The link that is no joint's child."""
        roots = [link for link in self.links if link not in self._parent_of]
        return roots[0]


def _floats(text: str | None, count: int, what: str, default: tuple[float, ...]) -> np.ndarray:
    if text is None:
        return np.array(default, dtype=float)
    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        raise ValueError(f"urdf: {what}: expected {count} numbers, got {text!r}") from None
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise ValueError(f"urdf: {what}: expected {count} finite numbers, got {text!r}")
    return np.array(values, dtype=float)


def _parse_joint(elem: ET.Element, links: set[str]) -> UrdfJoint:
    name = elem.get("name")
    if not name:
        raise ValueError("urdf: a <joint> has no name attribute")
    joint_type = elem.get("type")
    if joint_type not in JOINT_TYPES:
        raise ValueError(f"urdf: joint {name!r}: type must be one of {JOINT_TYPES}, "
                         f"got {joint_type!r}")
    ends = {}
    for tag in ("parent", "child"):
        sub = elem.find(tag)
        link = sub.get("link") if sub is not None else None
        if not link:
            raise ValueError(f"urdf: joint {name!r}: missing <{tag} link=...>")
        if link not in links:
            raise ValueError(f"urdf: joint {name!r}: {tag} link {link!r} is not a <link>")
        ends[tag] = link
    origin_elem = elem.find("origin")
    xyz = _floats(origin_elem.get("xyz") if origin_elem is not None else None, 3,
                  f"joint {name!r} origin xyz", (0.0, 0.0, 0.0))
    rpy = _floats(origin_elem.get("rpy") if origin_elem is not None else None, 3,
                  f"joint {name!r} origin rpy", (0.0, 0.0, 0.0))
    axis_elem = elem.find("axis")
    axis = _floats(axis_elem.get("xyz") if axis_elem is not None else None, 3,
                   f"joint {name!r} axis xyz", (1.0, 0.0, 0.0))
    norm = float(np.linalg.norm(axis))
    if joint_type in MOVABLE_JOINT_TYPES and norm < 1e-9:
        raise ValueError(f"urdf: joint {name!r}: axis must be a non-zero vector")
    if norm > 1e-9:
        axis = axis / norm
    lower, upper = -math.inf, math.inf
    if joint_type in ("revolute", "prismatic"):
        limit = elem.find("limit")
        if limit is None:
            raise ValueError(f"urdf: joint {name!r}: a {joint_type} joint needs a <limit>")
        lower = float(_floats(limit.get("lower"), 1, f"joint {name!r} limit lower", (0.0,))[0])
        upper = float(_floats(limit.get("upper"), 1, f"joint {name!r} limit upper", (0.0,))[0])
        if lower > upper:
            raise ValueError(f"urdf: joint {name!r}: limit lower {lower} > upper {upper}")
    return UrdfJoint(name=name, joint_type=joint_type, parent=ends["parent"],
                     child=ends["child"], origin=make_transform(xyz, rpy), axis=axis,
                     lower=lower, upper=upper)


def parse_urdf_string(xml_text: str, source: str = "<string>") -> UrdfModel:
    """Parse URDF text into a UrdfModel; ValueError naming ``source`` if it is not a URDF."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise ValueError(f"urdf_path: {source} is not valid XML ({exc})") from None
    if root.tag != "robot":
        raise ValueError(f"urdf_path: {source} is not a URDF file: root element is "
                         f"<{root.tag}>, expected <robot>")
    links: list[str] = []
    for elem in root.findall("link"):
        name = elem.get("name")
        if not name:
            raise ValueError(f"urdf: {source}: a <link> has no name attribute")
        if name in links:
            raise ValueError(f"urdf: {source}: link {name!r} is defined twice")
        links.append(name)
    if not links:
        raise ValueError(f"urdf_path: {source} is not a usable URDF file: it has no <link>")
    link_set = set(links)
    joints: dict[str, UrdfJoint] = {}
    children: set[str] = set()
    for elem in root.findall("joint"):
        joint = _parse_joint(elem, link_set)
        if joint.name in joints:
            raise ValueError(f"urdf: {source}: joint {joint.name!r} is defined twice")
        if joint.child in children:
            raise ValueError(f"urdf: {source}: link {joint.child!r} has two parent joints")
        children.add(joint.child)
        joints[joint.name] = joint
    roots = [link for link in links if link not in children]
    if len(roots) != 1:
        raise ValueError(f"urdf: {source}: expected exactly one root link, found {roots}")
    return UrdfModel(name=root.get("name", ""), links=links, joints=joints)


def parse_urdf(urdf_path: str | os.PathLike[str]) -> UrdfModel:
    """Parse a URDF file; ValueError if it does not exist or is not a URDF."""
    path = Path(urdf_path)
    if not path.is_file():
        raise ValueError(f"urdf_path: no such file: {str(path)!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"urdf_path: {str(path)!r} is not a URDF file (not UTF-8 text)") from None
    return parse_urdf_string(text, source=repr(str(path)))
