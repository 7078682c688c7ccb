"""Named object sets: a training split of pybullet_data's random_urdfs with the primitives, a
held-out split plus lego/duck/jenga, scaled to the gripper, and the bad-input errors."""

from __future__ import annotations

import numpy as np
import pytest

from q_grasp.envs.grasp import GraspConfig
from q_grasp.sim import BulletSim, Scene
from q_grasp.sim.object_sets import OBJECT_SETS, object_set, overlap


def test_sets_are_disjoint_and_complete():
    train, held_out = object_set("train"), object_set("held_out")
    assert not overlap(train.files, held_out.files)
    assert len(train.files) == 892 and train.shapes and train.primitive_fraction > 0
    assert len(held_out.files) == 98 + 3 and not held_out.shapes
    assert any(f.endswith("duck_vhacd.urdf") for f in held_out.files)
    assert object_set("primitives").files == ()
    with pytest.raises(ValueError, match=r"object_set: unknown object set 'toys'; known: "
                                         rf"{list(OBJECT_SETS)}".replace("[", r"\[")):
        object_set("toys")


def test_held_out_meshes_fit_the_gripper():
    cfg = GraspConfig(object_set="held_out", min_objects=3, max_objects=3).scene_config()
    cfg = cfg.resolved()
    assert cfg.scale_to_fit
    with BulletSim(seed=0) as sim:
        scene = Scene(sim, cfg)  # measures (and checks) every file of the set
        for seed in range(3):
            for o in scene.spawn(np.random.default_rng(seed)):
                assert o.kind == "urdf"
                assert cfg.width_m[0] - 1e-4 <= min(o.size_m[:2]) <= cfg.width_m[1] + 1e-4
                assert o.size_m[2] <= cfg.max_height_m + 1e-4


@pytest.mark.parametrize("kwargs, message", [
    ({"object_set": "toys"}, "object_set: unknown object set 'toys'"),
    ({"object_set": "held_out", "held_out_set": "held_out"},
     "held_out_set: 'held_out' is also the object_set"),
    ({"object_set": "train", "object_files": ("a.urdf",)}, "give one of them, not both"),
    ({"held_out_set": "held_out", "object_files": ("@HELD_OUT@",)},
     "object_files: 1 file.* in held_out_set 'held_out'"),
    ({"min_grasp_height_m": 0.1}, "min_grasp_height_m: must be in"),
    ({"min_grasp_height_m": 0.002, "observation": "rgb", "depth_source": "table_plane"},
     "min_grasp_height_m: needs heights"),
])
def test_bad_object_config(kwargs, message):
    kwargs = {k: (tuple(object_set("held_out").files[:1]) if v == ("@HELD_OUT@",) else v)
              for k, v in kwargs.items()}
    with pytest.raises(ValueError, match=message):
        GraspConfig(**kwargs)
