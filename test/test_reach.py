"""The top-down reachability table (q_grasp.skills.reach) against the IK it summarises, the
grasp environment's info["action_mask"], and actors that act only on allowed actions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from q_grasp.envs.grasp import GraspConfig, TopDownGraspEnv
from q_grasp.kinematics import KinematicChain
from q_grasp.learning.agent import Actor, check_action_mask
from q_grasp.learning.config import ExplorationConfig
from q_grasp.learning.networks import QNetwork, UNetQMap
from q_grasp.skills.grasp import GraspSkillConfig, plan_grasp, plans_exist
from q_grasp.skills.reach import TopDownReach


@pytest.fixture(scope="module")
def arm() -> tuple[KinematicChain, GraspSkillConfig, TopDownReach]:
    cfg = GraspConfig()
    chain = KinematicChain.from_robot_config(cfg.robot)
    return chain, cfg.skill, TopDownReach(chain, cfg.skill)


def test_the_table_agrees_with_plan_grasp_and_never_claims_an_unreachable_grasp(arm) -> None:
    chain, params, reach = arm
    rng = np.random.default_rng(123)
    # Points over (and beyond) what the camera sees, from the table up to tall objects.
    points = np.column_stack([rng.uniform(0.04, 0.22, 150), rng.uniform(-0.09, 0.09, 150),
                              rng.uniform(0.0, 0.08, 150)])
    said = reach.reachable(points)
    truth = np.array([plan_grasp(chain, p, rng.uniform(0.0, math.pi), params).success
                      for p in points])
    assert 0.2 < truth.mean() < 0.8  # the sample covers both sides of the edge
    assert not (said & ~truth).any(), points[said & ~truth]
    assert (said == truth).mean() >= 0.9


def test_batched_plans_agree_with_plan_grasp(arm) -> None:
    chain, params, _ = arm
    rng = np.random.default_rng(321)
    points = np.column_stack([rng.uniform(0.04, 0.22, 40), rng.uniform(-0.09, 0.09, 40),
                              rng.uniform(0.0, 0.08, 40)])
    yaws = rng.uniform(-math.pi, math.pi, 40)
    batched = plans_exist(chain, points, yaws, params)
    single = [plan_grasp(chain, p, float(y), params).success for p, y in zip(points, yaws)]
    assert batched.tolist() == single
    assert 0.2 < batched.mean() < 0.8
    with pytest.raises(ValueError, match="positions_m"):
        plans_exist(chain, np.array([[0.1, np.nan, 0.0]]), 0.0, params)
    with pytest.raises(ValueError, match="positions_m"):
        plans_exist(chain, np.zeros(3), 0.0, params)


def test_reach_does_not_depend_on_the_gripper_yaw(arm) -> None:
    chain, params, reach = arm
    rng = np.random.default_rng(7)
    for _ in range(25):
        p = np.array([rng.uniform(0.06, 0.21), rng.uniform(-0.08, 0.08), rng.uniform(0, 0.05)])
        outcomes = {plan_grasp(chain, p, k * math.pi / 4, params).success for k in range(4)}
        assert len(outcomes) == 1, p


def test_nothing_is_reachable_above_the_tables_last_row(arm) -> None:
    chain, params, reach = arm
    t = reach.table
    last = int(np.flatnonzero(~np.isnan(t.r_max_m))[-1])
    assert last < len(t.heights_m) - 1  # the table stops before its highest row
    z = t.heights_m[last + 1] + params.descend_depth_m  # surface height of that row
    for radius in np.arange(0.02, 0.3, 0.01):
        assert not plan_grasp(chain, [radius, 0.0, z], 0.0, params).success, radius
    assert not reach.reachable(np.array([0.1, 0.0, z]))


def test_reach_rejects_bad_arguments(arm) -> None:
    chain, params, reach = arm
    with pytest.raises(ValueError, match="margin_m"):
        TopDownReach(chain, params, margin_m=-0.001)
    with pytest.raises(ValueError, match="height_step_m"):
        TopDownReach(chain, params, height_step_m=0.0)
    with pytest.raises(ValueError, match="points_m"):
        reach.reachable(np.zeros((4, 2)))
    assert not reach.reachable(np.array([np.nan, 0.0, 0.0]))


def test_grasp_env_reports_the_reachable_grasps_in_info() -> None:
    env = TopDownGraspEnv(image_size=(32, 32), num_rotations=4, seed=3)
    try:
        obs, info = env.reset()
        mask = info["action_mask"]
        assert mask.dtype == np.int8 and mask.shape == (env.action_space.n,)
        per_rot = mask.reshape(4, 32, 32)
        assert (per_rot == per_rot[0]).all()  # every rotation shares the pixel mask
        assert 0.2 < per_rot[0].mean() < 0.9  # the image's near and far edges are out of reach
        # The object (workspace) is reachable, and an unreachable pixel fails in the env.
        assert per_rot[0][env.heightmap > 0.01].all()
        row, col = np.argwhere(per_rot[0] == 0)[0]
        _, _, _, _, info = env.step(env.encode_action(0, int(row), int(col)))
        assert not info["ik_success"] and "action_mask" in info
    finally:
        env.close()
    env = TopDownGraspEnv(image_size=(16, 16), num_rotations=2, action_mask=False)
    try:
        assert "action_mask" not in env.reset(seed=0)[1]
    finally:
        env.close()


def _actor(q_map: torch.Tensor, **exploration) -> Actor:
    _, r, h, w = q_map.shape
    net = UNetQMap(1, r, h, w, base_channels=4, depth=1)
    net.forward = lambda obs: q_map.expand(obs.shape[0], -1, -1, -1)
    return Actor(net, ExplorationConfig(**exploration), total_steps=10, seed=0)


def test_actors_act_only_on_allowed_actions() -> None:
    q_map = torch.zeros(1, 2, 4, 5)
    q_map[0, 1, 0, 0] = 5.0  # the best grasp, but out of reach
    q_map[0, 0, 2, 3] = 1.0
    obs = np.zeros((1, 4, 5), np.float32)
    allowed = np.zeros(40, np.int8)
    allowed[20:40] = 1          # rotation 1 only ...
    allowed[20 + 0 * 5 + 0] = 0  # ... without its pixel (0, 0)
    actor = _actor(q_map)
    greedy = actor.act(obs, greedy=True, action_mask=allowed)
    assert allowed[greedy] and greedy != 20
    assert actor.act(obs, greedy=True) == 20  # no mask: the raw argmax
    randoms = {actor.act(obs, epsilon=1.0, action_mask=allowed) for _ in range(200)}
    assert randoms <= set(np.flatnonzero(allowed)) and len(randoms) > 10
    boltz = _actor(q_map, strategy="boltzmann", start=10.0, end=10.0)
    assert all(allowed[boltz.act(obs, step=0, action_mask=allowed)] for _ in range(50))
    # Switched off: the mask is ignored.
    off = _actor(q_map, use_action_mask=False)
    assert off.act(obs, greedy=True, action_mask=allowed) == 20
    # With the failed-grasp memory, skipping never leaves the allowed set.
    memory = _actor(q_map, retry_exclusion_px=10)
    first = memory.act(obs, greedy=True, action_mask=allowed)
    memory.record_outcome(first, success=False, done=False)  # excludes all of rotation 1
    assert allowed[memory.act(obs, greedy=True, action_mask=allowed)]


def test_action_masks_are_validated_and_the_actor_draws_within_them() -> None:
    assert check_action_mask(None, 4) is None
    assert check_action_mask(np.zeros(4), 4) is None  # nothing allowed: ignore the mask
    assert check_action_mask([1, 0, 1, 0], 4).tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="expected 4 entries"):
        check_action_mask(np.ones(5), 4)
    q = np.arange(6, dtype=np.float32)
    allowed = np.array([1, 1, 0, 0, 0, 0], dtype=bool)
    actor = Actor(QNetwork(4, 6), ExplorationConfig(), total_steps=10, seed=0)
    assert actor.act_on_q_values(q, 0.0, allowed) == 1
    assert actor.act_on_q_values(q, 0.0) == 5
    draws = {actor.act_on_q_values(q, 1.0, allowed) for _ in range(50)}
    assert draws == {0, 1}


def test_q_map_image_darkens_unreachable_pixels_and_scales_colours_to_the_reachable() -> None:
    from q_grasp.learning.visualize import q_map_overlay

    obs = np.full((4, 8, 8), 0.5, np.float32)
    q_map = np.zeros((2, 8, 8), np.float32)
    q_map[0, 7, 0] = 100.0          # an unreachable outlier must not flatten the colours
    q_map[1, 3, 3] = 1.0
    reachable = np.ones((8, 8), bool)
    reachable[6:, :] = False
    channels = ("r", "g", "b", "height")
    img = q_map_overlay(obs, q_map, channels, None, scale=4, reachable=reachable)
    plain = q_map_overlay(obs, q_map, channels, None, scale=4)
    assert img.shape == (32, 32, 3)
    assert img[30, 10].max() < plain[30, 10].max()  # an unreachable pixel: darkened
    # The best reachable pixel gets the top of the colour scale only when the outlier is out.
    assert not np.array_equal(img[14, 14], plain[14, 14])
