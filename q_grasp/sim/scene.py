"""Objects on the table: primitive shapes with random size, pose and colour, or a user's set of
URDF files, spawned inside a workspace without overlap and settled with physics."""

from __future__ import annotations

import colorsys
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from q_grasp.sim.bullet import BulletSim
from q_grasp.sim.quiet import pybullet

PRIMITIVE_SHAPES = ("cube", "cuboid", "cylinder")
_FILE_EXTENTS: dict[tuple[str, float], np.ndarray] = {}
"""(URDF path, mtime) -> bounding-box extents (m) at scale 1: measuring a set of hundreds of
meshes takes seconds, and every env of a process needs the same numbers."""


def _pair(value: tuple[float, float] | list[float], name: str, low: float = 0.0) -> None:
    if len(value) != 2 or not value[0] <= value[1]:
        raise ValueError(f"{name}: expected (min, max) with min <= max, got {tuple(value)}")
    if value[0] < low:
        raise ValueError(f"{name}: values must be >= {low}, got {tuple(value)}")


def resolve_object_files(object_files: tuple[str, ...] | list[str]) -> list[str]:
    """Expand URDF files and folders (searched recursively for ``*.urdf``) into a sorted list.

    Raises ValueError naming ``object_files`` for a missing path, a non-URDF file or a folder
    without URDF files.
    """
    files: list[str] = []
    for entry in object_files:
        path = Path(os.path.expanduser(str(entry)))
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*.urdf"))
            if not found:
                raise ValueError(f"object_files: folder {str(entry)!r} contains no .urdf files")
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() != ".urdf":
                raise ValueError(
                    f"object_files: {str(entry)!r} is not a URDF file (expected a .urdf file "
                    "or a folder of them)"
                )
            files.append(str(path))
        else:
            raise ValueError(
                f"object_files: no such file or folder: {str(entry)!r} (expected .urdf files "
                "or folders of them)"
            )
    return files


@dataclass
class SceneConfig:
    """Which objects to spawn, how big, and where. Sizes are chosen to fit the gripper: the
    NURO arm's fingers open 6 cm, so the width the gripper closes across (the minor width)
    stays within ``width_m``."""

    workspace_x_m: tuple[float, float] = (0.10, 0.16)
    """Range (m) of object centre x in the world frame (forward from the robot). The NURO arm
    reaches top-down from 0.097 m (wrist limit, at table height) to ~0.17 m (at the pre-grasp
    height above tall objects) from its base axis, so 0.10-0.16 m with |y| <= 0.05 m keeps
    every object centre reachable."""
    workspace_y_m: tuple[float, float] = (-0.05, 0.05)
    """Range (m) of object centre y in the world frame (left of the robot)."""
    num_objects: tuple[int, int] = (1, 1)
    """Number of objects per scene, drawn uniformly from [min, max] (inclusive)."""
    shapes: tuple[str, ...] = PRIMITIVE_SHAPES
    """Primitive shapes to draw from: any of "cube", "cuboid", "cylinder"."""
    width_m: tuple[float, float] = (0.015, 0.04)
    """Range of the minor horizontal width (m): cube side, cuboid width, cylinder diameter."""
    cuboid_length_m: tuple[float, float] = (0.04, 0.075)
    """Range of a cuboid's major horizontal length (m); at least 1.3x its width. Lengths over
    the 6 cm aperture can only be grasped across, so the grasp rotation matters for them."""
    height_m: tuple[float, float] = (0.02, 0.045)
    """Range of cuboid and cylinder heights (m); a cube's height is its side."""
    mass_kg: tuple[float, float] = (0.02, 0.08)
    """Range of primitive object masses (kg)."""
    lateral_friction: float = 1.0
    """Friction coefficient of every spawned object (URDF objects included)."""
    object_files: tuple[str, ...] = ()
    """URDF files or folders of them (searched recursively). When given, objects are drawn from
    these files instead of the primitive shapes."""
    object_set: str = ""
    """A named set of ``q_grasp.sim.object_sets`` (primitives, train, held_out): its shapes
    and files, their mix and scale_to_fit replace ``shapes``/``object_files`` here."""
    scale_to_fit: bool = False
    """Scale URDF objects so that their minor horizontal width falls in ``width_m`` (so the
    gripper can close across them), and, where the width range allows, their height within
    ``height_m``'s maximum and their length within ``cuboid_length_m``'s. The minimum width
    wins over those caps (a tall mesh becomes a 15 mm post, not a stick thinner than the
    fingers can hold); a file that would then stand taller than ``max_height_m`` is an error
    when the scene is made."""
    max_height_m: float = 0.06
    """scale_to_fit: tallest object allowed (m); the NURO arm's top-down reach shrinks fast
    above this."""
    primitive_fraction: float = 0.0
    """With object_files: the chance that an object is a primitive of ``shapes`` instead."""
    min_gap_m: float = 0.005
    """Smallest distance (m) between two objects at spawn time."""
    max_placement_tries: int = 200
    """Random poses tried per object before the scene gives up on placing it."""
    settle_steps: int = 120
    """Physics steps after spawning for the objects to come to rest."""
    allow_sleeping: bool = True
    """Let objects at rest sleep (skipped by the solver until something touches them): about
    twice the physics speed with five objects on the table."""

    def __post_init__(self) -> None:
        _pair(self.workspace_x_m, "workspace_x_m", low=-10.0)
        _pair(self.workspace_y_m, "workspace_y_m", low=-10.0)
        _pair(self.num_objects, "num_objects", low=1)
        if int(self.num_objects[1]) > 50:
            raise ValueError(f"num_objects: max must be <= 50, got {self.num_objects[1]}")
        _pair(self.width_m, "width_m", low=0.002)
        _pair(self.cuboid_length_m, "cuboid_length_m", low=0.002)
        _pair(self.height_m, "height_m", low=0.002)
        _pair(self.mass_kg, "mass_kg", low=1e-4)
        self.shapes = tuple(self.shapes)
        unknown = [s for s in self.shapes if s not in PRIMITIVE_SHAPES]
        if unknown:
            raise ValueError(f"shapes: unknown {unknown}; accepted: {list(PRIMITIVE_SHAPES)}")
        self.object_files = tuple(str(f) for f in self.object_files)
        if not self.shapes and not self.object_files:
            raise ValueError("shapes: at least one shape is needed when object_files is empty")
        if self.min_gap_m < 0.0:
            raise ValueError(f"min_gap_m: must be >= 0 m, got {self.min_gap_m}")
        if self.max_placement_tries < 1:
            raise ValueError(
                f"max_placement_tries: must be >= 1, got {self.max_placement_tries}"
            )
        if self.settle_steps < 0:
            raise ValueError(f"settle_steps: must be >= 0, got {self.settle_steps}")
        if not 0.0 <= self.primitive_fraction <= 1.0:
            raise ValueError(f"primitive_fraction: must be in [0, 1], got "
                             f"{self.primitive_fraction}")
        if self.primitive_fraction > 0.0 and not self.shapes:
            raise ValueError("primitive_fraction: > 0 needs at least one shape")
        if self.max_height_m < self.height_m[0]:
            raise ValueError(f"max_height_m: must be >= height_m's minimum {self.height_m[0]} m,"
                             f" got {self.max_height_m}")
        if self.object_set:
            from q_grasp.sim.object_sets import object_set

            object_set(self.object_set)  # an unknown name fails here
            if self.object_files:
                raise ValueError("object_set, object_files: give one of them, not both")
        resolve_object_files(self.object_files)  # fail early on a bad path

    def resolved(self) -> SceneConfig:
        """This config with ``object_set`` expanded into shapes, files and their mix."""
        if not self.object_set:
            return self
        from q_grasp.sim.object_sets import object_set

        named = object_set(self.object_set)
        return dataclasses.replace(
            self, object_set="", shapes=named.shapes or PRIMITIVE_SHAPES, object_files=named.files,
            primitive_fraction=named.primitive_fraction if named.files else 0.0,
            scale_to_fit=True)


@dataclass
class ObjectInfo:
    """One spawned object, as it was placed (poses change later; see Scene.object_poses)."""

    body_id: int
    """pybullet body id in the scene's BulletSim."""
    kind: str
    """"cube", "cuboid", "cylinder" or "urdf"."""
    size_m: np.ndarray
    """Extents (m) along the object's own x, y, z axes (a URDF object's bounding box)."""
    position: np.ndarray
    """World position (m) of the body's base after settling."""
    yaw_rad: float
    """Yaw about world z (rad) after settling."""
    rgba: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    """Colour of a primitive (URDF objects keep their own)."""
    mass_kg: float = 0.0
    """Mass of a primitive (URDF objects: their base link's mass)."""
    source: str = ""
    """URDF path of a file object, empty for primitives."""
    scale: float = 1.0
    """Global scaling applied to a URDF object."""
    extra: dict = field(default_factory=dict)


class Scene:
    """Spawns and tracks the objects on the table of a BulletSim."""

    def __init__(self, sim: BulletSim, config: SceneConfig | None = None) -> None:
        self.sim = sim
        self.config = (config if config is not None else SceneConfig()).resolved()
        self.object_files = resolve_object_files(self.config.object_files)
        self.objects: dict[int, ObjectInfo] = {}
        for path in self.object_files:  # a file that does not load fails here, not mid-run
            self._extents_of_file(path)
        if self.config.scale_to_fit:
            unfit = [f"{p} ({' x '.join(f'{1000 * e:.0f}' for e in self._extents_of_file(p))}"
                     f" mm)" for p in self.object_files if self._scale_range(p) is None]
            if unfit:
                raise ValueError(
                    f"object_files: cannot be scaled to the gripper (a width >= "
                    f"{self.config.width_m[0]} m with a height <= {self.config.max_height_m} m; "
                    f"too tall for their width): "
                    f"{', '.join(unfit[:5])}{' ...' if len(unfit) > 5 else ''}; leave them out")

    @property
    def object_ids(self) -> list[int]:
        """Body ids of the objects currently in the scene, in spawn order."""
        return list(self.objects)

    def object_poses(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Current world pose of every object: body id -> (position (3,), quat xyzw (4,))."""
        c = self.sim.client
        poses = {}
        for body in self.objects:
            pos, quat = c.getBasePositionAndOrientation(body)
            poses[body] = (np.asarray(pos), np.asarray(quat))
        return poses

    def object_aabb(self, body_id: int) -> tuple[np.ndarray, np.ndarray]:
        """World axis-aligned bounding box of an object over all its links."""
        return _body_aabb(self.sim.client, body_id)

    def remove(self, body_id: int) -> None:
        """Delete an object from the simulator and the scene."""
        if body_id not in self.objects:
            raise ValueError(f"body_id: {body_id} is not an object of this scene")
        self.sim.client.removeBody(body_id)
        del self.objects[body_id]

    def clear(self) -> None:
        """Delete every object (e.g. before spawning a new scene in the same world)."""
        for body in list(self.objects):
            self.remove(body)

    def forget(self) -> None:
        """Drop the bookkeeping without touching the simulator (after ``BulletSim.reset``)."""
        self.objects = {}

    # ----------------------------------------------------------------------------- spawning
    def spawn(self, rng: np.random.Generator, num_objects: int | None = None) -> list[ObjectInfo]:
        """Replace the scene with new random objects and let them settle.

        ``num_objects`` overrides the config's range. Objects that find no free spot after
        ``max_placement_tries`` poses are left out (the returned list is then shorter).
        """
        cfg = self.config
        self.clear()
        if num_objects is None:
            num_objects = int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))
        if num_objects < 1:
            raise ValueError(f"num_objects: must be >= 1, got {num_objects}")
        for _ in range(num_objects):
            info = self._spawn_one(rng)
            if info is not None:
                self.objects[info.body_id] = info
        self.sim.step(cfg.settle_steps)
        c = self.sim.client
        for body, info in self.objects.items():
            pos, quat = c.getBasePositionAndOrientation(body)
            info.position = np.asarray(pos)
            info.yaw_rad = float(c.getEulerFromQuaternion(quat)[2])
        return list(self.objects.values())

    def _spawn_one(self, rng: np.random.Generator) -> ObjectInfo | None:
        cfg = self.config
        c = self.sim.client
        if self.object_files and not (cfg.primitive_fraction > 0.0
                                      and rng.uniform() < cfg.primitive_fraction):
            info = self._create_file_object(rng)
        else:
            info = self._create_primitive(rng)
        body = info.body_id
        # Everything already in the world except the table: this scene's objects, the robot,
        # and bodies other code added.
        others = [c.getBodyUniqueId(i) for i in range(c.getNumBodies())]
        others = [b for b in others if b not in (body, self.sim.table_id)]
        for _ in range(cfg.max_placement_tries):
            x = rng.uniform(*cfg.workspace_x_m)
            y = rng.uniform(*cfg.workspace_y_m)
            yaw = rng.uniform(-math.pi, math.pi)
            quat = c.getQuaternionFromEuler([0.0, 0.0, yaw])
            c.resetBasePositionAndOrientation(body, [x, y, 0.5], quat)
            lo, _ = _body_aabb(c, body)
            # Rest the lowest point 1 mm above the table; settling drops it the rest.
            z = 0.5 - lo[2] + 0.001
            c.resetBasePositionAndOrientation(body, [x, y, z], quat)
            if not any(
                c.getClosestPoints(body, other, distance=cfg.min_gap_m) for other in others
            ):
                info.position = np.array([x, y, z])
                info.yaw_rad = yaw
                return info
        c.removeBody(body)
        return None

    def _create_primitive(self, rng: np.random.Generator) -> ObjectInfo:
        cfg = self.config
        c = self.sim.client
        kind = str(cfg.shapes[int(rng.integers(len(cfg.shapes)))])
        width = rng.uniform(*cfg.width_m)
        if kind == "cube":
            size = np.array([width, width, width])
        elif kind == "cuboid":
            length = rng.uniform(max(cfg.cuboid_length_m[0], 1.3 * width),
                                 max(cfg.cuboid_length_m[1], 1.3 * width))
            size = np.array([length, width, rng.uniform(*cfg.height_m)])
        else:
            size = np.array([width, width, rng.uniform(*cfg.height_m)])
        hue = rng.uniform()
        sat = rng.uniform(0.6, 1.0)
        val = rng.uniform(0.55, 0.95)
        rgba = (*colorsys.hsv_to_rgb(hue, sat, val), 1.0)
        mass = rng.uniform(*cfg.mass_kg)
        if kind == "cylinder":
            col = c.createCollisionShape(
                pybullet.GEOM_CYLINDER, radius=width / 2, height=float(size[2])
            )
            vis = c.createVisualShape(
                pybullet.GEOM_CYLINDER, radius=width / 2, length=float(size[2]), rgbaColor=rgba
            )
        else:
            col = c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=(size / 2).tolist())
            vis = c.createVisualShape(
                pybullet.GEOM_BOX, halfExtents=(size / 2).tolist(), rgbaColor=rgba
            )
        body = c.createMultiBody(
            baseMass=mass, baseCollisionShapeIndex=col, baseVisualShapeIndex=vis,
            basePosition=[0.0, 0.0, 0.5], useMaximalCoordinates=True,
        )
        self._set_friction(body)
        return ObjectInfo(
            body_id=body, kind=kind, size_m=size, position=np.zeros(3), yaw_rad=0.0,
            rgba=rgba, mass_kg=mass,
        )

    def _extents_of_file(self, path: str) -> np.ndarray:
        """Bounding-box extents of a URDF at scale 1 (measured once per process and file)."""
        key = (path, os.path.getmtime(path))
        if key not in _FILE_EXTENTS:
            c = self.sim.client
            try:
                body = c.loadURDF(path, basePosition=[0.0, 0.0, 0.5],
                                  useMaximalCoordinates=True)
            except pybullet.error as exc:
                raise ValueError(f"object_files: {path!r} does not load in pybullet ({exc})"
                                 ) from None
            lo, hi = _body_aabb(c, body)
            c.removeBody(body)
            _FILE_EXTENTS[key] = hi - lo
        return _FILE_EXTENTS[key]

    def _scale_range(self, path: str) -> tuple[float, float] | None:
        """Scales that put a file's minor horizontal width in ``width_m`` and, where that range
        allows, its height and length under their caps; the minimum width wins over the caps.
        None when even the minimum width makes it taller than ``max_height_m``."""
        cfg = self.config
        extents = self._extents_of_file(path)
        minor = float(max(min(extents[0], extents[1]), 1e-4))
        major = float(max(extents[0], extents[1], 1e-4))
        height = float(max(extents[2], 1e-4))
        low, high = cfg.width_m[0] / minor, cfg.width_m[1] / minor
        if low * height > cfg.max_height_m:
            return None
        high = max(low, min(high, cfg.height_m[1] / height, cfg.cuboid_length_m[1] / major))
        return low, high

    def _create_file_object(self, rng: np.random.Generator) -> ObjectInfo:
        cfg = self.config
        c = self.sim.client
        path = self.object_files[int(rng.integers(len(self.object_files)))]
        scale = 1.0
        extents = self._extents_of_file(path)
        if cfg.scale_to_fit:
            scale = float(rng.uniform(*self._scale_range(path)))
        body = c.loadURDF(path, basePosition=[0.0, 0.0, 0.5], globalScaling=scale,
                          useMaximalCoordinates=True)
        self._set_friction(body)
        mass = float(c.getDynamicsInfo(body, -1)[0])
        return ObjectInfo(
            body_id=body, kind="urdf", size_m=extents * scale, position=np.zeros(3),
            yaw_rad=0.0, mass_kg=mass, source=path, scale=scale,
        )

    def _set_friction(self, body: int) -> None:
        c = self.sim.client
        for link in range(-1, c.getNumJoints(body)):
            c.changeDynamics(
                body, link, lateralFriction=self.config.lateral_friction,
                spinningFriction=0.001, rollingFriction=0.0001,
            )
        if self.config.allow_sleeping:
            c.changeDynamics(body, -1,
                             activationState=pybullet.ACTIVATION_STATE_ENABLE_SLEEPING)


def _body_aabb(client: object, body: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = client.getAABB(body, -1)
    lo, hi = np.asarray(lo), np.asarray(hi)
    for link in range(client.getNumJoints(body)):
        a, b = client.getAABB(body, link)
        lo, hi = np.minimum(lo, a), np.maximum(hi, b)
    return lo, hi
