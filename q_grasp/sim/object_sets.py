"""Named object sets: which objects a scene draws from, by name (``GraspConfig.object_set``).

  primitives   cubes, cuboids and cylinders of random size (the default scene)
  train        the primitives (a quarter of the objects) and 892 of pybullet_data's 1,000
               random_urdfs meshes: those whose number is not a multiple of 10
  held_out     never trained on: the 98 random_urdfs meshes numbered 000, 010, ..., 990, plus
               pybullet_data's lego brick, duck and jenga block

Every mesh is scaled to fit the gripper (``SceneConfig.scale_to_fit``). The 10 meshes listed in
``TOO_TALL`` are left out of both sets: at the gripper's smallest width (15 mm) they would
stand more than ``SceneConfig.max_height_m`` (60 mm) tall, out of the arm's top-down reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from q_grasp.sim.scene import PRIMITIVE_SHAPES

HELD_OUT_EVERY = 10
"""random_urdfs meshes whose number is a multiple of this are held out."""
NUM_RANDOM_URDFS = 1000
TOO_TALL = frozenset({167, 178, 232, 251, 350, 357, 479, 578, 580, 755})
"""random_urdfs meshes taller than 60 mm when scaled to 15 mm wide (measured with pybullet)."""
EXTRA_HELD_OUT = ("lego/lego.urdf", "duck_vhacd.urdf", "jenga/jenga.urdf")
"""pybullet_data objects (relative paths) added to the held-out set."""


@dataclass(frozen=True)
class ObjectSet:
    """What a named set spawns."""

    name: str
    shapes: tuple[str, ...]
    """Primitive shapes (may be empty)."""
    files: tuple[str, ...]
    """URDF files (absolute paths; may be empty)."""
    primitive_fraction: float
    """Chance that an object is a primitive when the set also has files."""


def pybullet_data_dir() -> Path:
    """pybullet_data's folder (ships with the pybullet wheel)."""
    import pybullet_data

    return Path(pybullet_data.getDataPath())


def _random_urdf(number: int) -> str:
    return str(pybullet_data_dir() / "random_urdfs" / f"{number:03d}" / f"{number:03d}.urdf")


def _split(held_out: bool) -> tuple[str, ...]:
    return tuple(_random_urdf(n) for n in range(NUM_RANDOM_URDFS)
                 if n not in TOO_TALL and (n % HELD_OUT_EVERY == 0) == held_out)


def object_set(name: str) -> ObjectSet:
    """The named set (ValueError naming it and the known sets when unknown)."""
    if name == "primitives":
        return ObjectSet(name, PRIMITIVE_SHAPES, (), 0.0)
    if name == "train":
        return ObjectSet(name, PRIMITIVE_SHAPES, _split(held_out=False), 0.25)
    if name == "held_out":
        extra = tuple(str(pybullet_data_dir() / p) for p in EXTRA_HELD_OUT)
        return ObjectSet(name, (), _split(held_out=True) + extra, 0.0)
    raise ValueError(f"object_set: unknown object set {name!r}; known: {list(OBJECT_SETS)}")


OBJECT_SETS = ("primitives", "train", "held_out")
"""Names ``object_set`` accepts."""


def overlap(files_a: tuple[str, ...] | list[str], files_b: tuple[str, ...] | list[str]
            ) -> list[str]:
    """Files (resolved paths) in both lists, sorted."""
    a = {str(Path(f).expanduser().resolve()) for f in files_a}
    return sorted(a & {str(Path(f).expanduser().resolve()) for f in files_b})
