"""Scene spawning: counts, workspace bounds, no overlap, sizes that fit the gripper, URDF
object sets (files, folders, scale_to_fit) and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from q_grasp.sim import BulletSim, Scene, SceneConfig

BOX_URDF = """<?xml version="1.0"?>
<robot name="{name}">
  <link name="base">
    <inertial><mass value="0.05"/>
      <inertia ixx="1e-5" ixy="0" ixz="0" iyy="1e-5" iyz="0" izz="1e-5"/></inertial>
    <visual><geometry><box size="{x} {y} {z}"/></geometry></visual>
    <collision><geometry><box size="{x} {y} {z}"/></geometry></collision>
  </link>
</robot>
"""


@pytest.fixture()
def sim():
    with BulletSim(seed=0) as s:
        yield s


def write_box(path, x, y, z):
    path.write_text(BOX_URDF.format(name=path.stem, x=x, y=y, z=z))
    return path


def test_counts_bounds_and_no_overlap(sim):
    cfg = SceneConfig(num_objects=(1, 5))
    scene = Scene(sim, cfg)
    counts = []
    for seed in range(6):
        objects = scene.spawn(np.random.default_rng(seed))
        counts.append(len(objects))
        assert 1 <= len(objects) <= 5
        assert sorted(scene.object_ids) == sorted(o.body_id for o in objects)
        for o in objects:
            # Centres stay in the workspace (settling may nudge them by a few millimetres).
            assert cfg.workspace_x_m[0] - 0.005 <= o.position[0] <= cfg.workspace_x_m[1] + 0.005
            assert cfg.workspace_y_m[0] - 0.005 <= o.position[1] <= cfg.workspace_y_m[1] + 0.005
            lo, hi = scene.object_aabb(o.body_id)
            assert lo[2] > -0.002  # resting on the table, not in it
            # The width the gripper closes across fits in the 6 cm aperture.
            assert cfg.width_m[0] - 1e-9 <= min(o.size_m[:2]) <= cfg.width_m[1] + 1e-9
        for a, b in itertools.combinations(scene.object_ids, 2):
            # No interpenetration (touching after settling is allowed).
            dist = [p[8] for p in sim.client.getClosestPoints(a, b, distance=0.0)]
            assert not dist or min(dist) > -0.002
        # Settled: nothing moves any more.
        for body in scene.object_ids:
            lin, ang = sim.client.getBaseVelocity(body)
            assert np.linalg.norm(lin) < 0.02 and np.linalg.norm(ang) < 0.5
    assert len(set(counts)) > 1  # the count is drawn, not fixed


def test_spawn_replaces_and_remove_clear(sim):
    scene = Scene(sim, SceneConfig(num_objects=(3, 3)))
    first = scene.spawn(np.random.default_rng(0))
    bodies_before = sim.client.getNumBodies()
    scene.spawn(np.random.default_rng(1))
    assert sim.client.getNumBodies() == bodies_before  # old objects were deleted
    assert len(first) == 3 and len(scene.object_ids) == 3
    victim = scene.object_ids[0]
    scene.remove(victim)
    assert victim not in scene.object_ids and len(scene.object_ids) == 2
    with pytest.raises(ValueError, match="body_id"):
        scene.remove(victim)
    scene.clear()
    assert scene.object_ids == []


def test_same_seed_same_scene(sim):
    scene = Scene(sim, SceneConfig(num_objects=(1, 4)))
    a = [(o.kind, tuple(o.size_m), tuple(o.position)) for o in scene.spawn(
        np.random.default_rng(5))]
    b = [(o.kind, tuple(o.size_m), tuple(o.position)) for o in scene.spawn(
        np.random.default_rng(5))]
    assert a == b


def test_shapes_subset(sim):
    scene = Scene(sim, SceneConfig(shapes=("cylinder",), num_objects=(3, 3)))
    assert {o.kind for o in scene.spawn(np.random.default_rng(0))} == {"cylinder"}


def test_urdf_files_and_folders(sim, tmp_path):
    folder = tmp_path / "objects"
    folder.mkdir()
    write_box(folder / "a.urdf", 0.02, 0.03, 0.02)
    write_box(folder / "b.urdf", 0.025, 0.025, 0.03)
    single = write_box(tmp_path / "big.urdf", 0.2, 0.12, 0.1)
    scene = Scene(sim, SceneConfig(object_files=(str(folder),), num_objects=(3, 3)))
    objects = scene.spawn(np.random.default_rng(0))
    assert len(objects) == 3 and {o.kind for o in objects} == {"urdf"}
    assert {o.source for o in objects} <= {str(folder / "a.urdf"), str(folder / "b.urdf")}
    # scale_to_fit shrinks an object too big for the gripper into the width range.
    cfg = SceneConfig(object_files=(str(single),), scale_to_fit=True, num_objects=(2, 2))
    for o in Scene(sim, cfg).spawn(np.random.default_rng(0)):
        assert o.scale < 1.0
        assert cfg.width_m[0] - 1e-3 <= min(o.size_m[:2]) <= cfg.width_m[1] + 1e-3
        assert o.size_m[2] <= cfg.height_m[1] + 1e-3
    # The minimum width wins over the 45 mm height cap: a 20 x 20 x 70 mm post becomes
    # 15 x 15 x 52.5 mm (within max_height_m), never a stick thinner than the fingers hold.
    post = write_box(tmp_path / "post.urdf", 0.02, 0.02, 0.07)
    cfg = SceneConfig(object_files=(str(post),), scale_to_fit=True, num_objects=(2, 2))
    for o in Scene(sim, cfg).spawn(np.random.default_rng(1)):
        assert o.size_m[0] == pytest.approx(cfg.width_m[0], abs=1e-4)
        assert o.size_m[2] == pytest.approx(0.0525, abs=1e-3)
    # A mesh taller than max_height_m even at the minimum width is refused, naming the file.
    tall = write_box(tmp_path / "tall.urdf", 0.02, 0.02, 0.2)
    with pytest.raises(ValueError, match=r"object_files: cannot be scaled.*tall.urdf \(20 x 20 x "
                                         r"200 mm\)"):
        Scene(sim, SceneConfig(object_files=(str(tall),), scale_to_fit=True))
    # A file that pybullet cannot load is an error naming it when the scene is made.
    broken = tmp_path / "broken.urdf"
    broken.write_text("<robot name='broken'><link name='a'><visual><geometry>"
                      "<mesh filename='missing.obj'/></geometry></visual></link>")
    with pytest.raises(ValueError, match=r"object_files: '.*broken.urdf' does not load"):
        Scene(sim, SceneConfig(object_files=(str(broken),)))


def test_primitives_mixed_with_files(sim, tmp_path):
    box = write_box(tmp_path / "box.urdf", 0.02, 0.03, 0.02)
    cfg = SceneConfig(object_files=(str(box),), primitive_fraction=0.5, num_objects=(5, 5))
    scene = Scene(sim, cfg)
    kinds = [o.kind for seed in range(4) for o in scene.spawn(np.random.default_rng(seed))]
    assert "urdf" in kinds and set(kinds) - {"urdf"}
    with pytest.raises(ValueError, match="primitive_fraction"):
        SceneConfig(object_files=(str(box),), primitive_fraction=1.5)


def test_bad_object_files(tmp_path):
    with pytest.raises(ValueError, match="object_files"):
        SceneConfig(object_files=(str(tmp_path / "missing.urdf"),))
    (tmp_path / "notes.txt").write_text("not a robot")
    with pytest.raises(ValueError, match="object_files"):
        SceneConfig(object_files=(str(tmp_path / "notes.txt"),))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="object_files"):
        SceneConfig(object_files=(str(tmp_path / "empty"),))


@pytest.mark.parametrize(
    "kwargs, name",
    [({"num_objects": (0, 2)}, "num_objects"), ({"num_objects": (3, 2)}, "num_objects"),
     ({"shapes": ("sphere",)}, "shapes"), ({"shapes": ()}, "shapes"),
     ({"workspace_x_m": (0.2, 0.1)}, "workspace_x_m"), ({"width_m": (0.0, 0.01)}, "width_m"),
     ({"min_gap_m": -1.0}, "min_gap_m")],
)
def test_bad_scene_config(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SceneConfig(**kwargs)
