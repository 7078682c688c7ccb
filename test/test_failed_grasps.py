"""The failed-grasp memory: greedy grasping does not repeat a failed grasp on the same scene,
in the actor's choice from an observation and from Q-values already computed (the policy
node's)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from q_grasp.learning.agent import Actor, FailedGraspMemory, masked_argmax
from q_grasp.learning.config import ExperimentConfig, ExplorationConfig
from q_grasp.learning.networks import UNetQMap

R, H, W = 2, 6, 8


def action_of(rot: int, row: int, col: int) -> int:
    return rot * H * W + row * W + col


def test_memory_skips_the_failed_rotation_near_the_failed_pixel() -> None:
    memory = FailedGraspMemory(R, H, W, radius_px=1)
    assert memory.mask() is None
    memory.record(action_of(1, 0, 7), success=False, done=False)
    skip = memory.mask().reshape(R, H, W)
    assert skip[1, :2, 6:].all() and skip.sum() == 4  # clipped at the image corner
    assert not skip[0].any()
    memory.record(action_of(0, 3, 3), success=False, done=False)
    assert memory.mask().reshape(R, H, W)[0].sum() == 9
    memory.record(action_of(0, 5, 5), success=True, done=False)  # the scene changed
    assert memory.mask() is None
    memory.record(action_of(0, 5, 5), success=False, done=True)  # a new episode next
    assert memory.mask() is None
    with pytest.raises(ValueError, match="radius_px"):
        FailedGraspMemory(R, H, W, radius_px=-1)


def test_masked_argmax_and_act_on_q_values_leave_out_skipped_actions() -> None:
    q = np.arange(R * H * W, dtype=np.float32)
    skip = np.zeros(q.size, dtype=bool)
    skip[-1] = True
    assert masked_argmax(q, None) == q.size - 1
    assert masked_argmax(q, skip) == q.size - 2
    actor = Actor(UNetQMap(1, R, H, W, base_channels=4, depth=1),
                  ExplorationConfig(retry_exclusion_px=0), total_steps=10)
    assert actor.act_on_q_values(q, 0.0) == q.size - 1
    actor.record_outcome(q.size - 1, success=False, done=False)  # the failed grasp is skipped
    assert actor.act_on_q_values(q, 0.0) == q.size - 2


def _fixed_map_net(q_map: torch.Tensor) -> UNetQMap:
    net = UNetQMap(1, R, H, W, base_channels=4, depth=1)
    net.forward = lambda obs: q_map.expand(obs.shape[0], -1, -1, -1)
    return net


def test_actor_tries_the_next_best_grasp_after_a_failure() -> None:
    q_map = torch.zeros(1, R, H, W)
    q_map[0, 0, 2, 2] = 1.0   # best
    q_map[0, 0, 2, 3] = 0.9   # next to it: skipped with the best one
    q_map[0, 1, 4, 6] = 0.8   # elsewhere, another rotation
    net = _fixed_map_net(q_map)
    obs = np.zeros((1, H, W), np.float32)
    actor = Actor(net, ExplorationConfig(retry_exclusion_px=1), total_steps=10)
    assert actor.act(obs, greedy=True) == action_of(0, 2, 2)
    actor.record_outcome(action_of(0, 2, 2), success=False, done=False)
    assert actor.act(obs, greedy=True) == action_of(1, 4, 6)
    with actor.own_episodes():  # e.g. an evaluation in the middle of a training episode
        assert actor.act(obs, greedy=True) == action_of(0, 2, 2)
    assert actor.act(obs, greedy=True) == action_of(1, 4, 6)
    actor.new_episode()
    assert actor.act(obs, greedy=True) == action_of(0, 2, 2)
    # Off (the default): the same failed grasp again.
    plain = Actor(net, ExplorationConfig(), total_steps=10)
    plain.record_outcome(action_of(0, 2, 2), success=False, done=False)
    assert plain.act(obs, greedy=True) == action_of(0, 2, 2)


def test_exclusion_radius_is_validated() -> None:
    with pytest.raises(ValueError, match="exploration.retry_exclusion_px"):
        ExperimentConfig.from_dict({"exploration": {"retry_exclusion_px": -2}})


def test_exploration_on_objects_draws_random_grasps_from_high_pixels_only() -> None:
    """exploration.min_height_m: random exploratory grasps land on pixels of the height
    channel at least that high (within the action mask); greedy choices are unaffected; with no
    such pixel, or none the mask allows, exploration falls back to the whole mask."""
    net = UNetQMap(4, R, H, W, base_channels=4, depth=1,
                   channel_names=["r", "g", "b", "height"])
    obs = np.zeros((4, H, W), np.float32)
    obs[3, 1:3, 2:4] = 0.03  # an object, 3 cm high: 4 pixels
    obs[3, 5, 7] = 0.001     # below the floor
    on_object = {action_of(r, row, col) for r in range(R) for row in (1, 2) for col in (2, 3)}
    actor = Actor(net, ExplorationConfig(min_height_m=0.002), total_steps=10, seed=0)
    drawn = {actor.act(obs, epsilon=1.0) for _ in range(200)}
    assert drawn == on_object  # every rotation of every object pixel, nothing else
    q = np.zeros(R * H * W, np.float32)
    assert {actor.act_on_q_values(q, 1.0, None, obs) for _ in range(200)} == on_object
    allowed = np.zeros(R * H * W, bool)
    allowed[[action_of(1, 1, 2), action_of(0, 4, 4)]] = True
    assert {actor.act_on_q_values(q, 1.0, allowed, obs) for _ in range(50)} == {
        action_of(1, 1, 2)}
    allowed[action_of(1, 1, 2)] = False  # no allowed object pixel: the mask as it is
    assert {actor.act_on_q_values(q, 1.0, allowed, obs) for _ in range(20)} == {
        action_of(0, 4, 4)}
    flat = np.zeros_like(obs)  # nothing high: anywhere
    assert len({actor.act(flat, epsilon=1.0) for _ in range(300)}) > 50
    q[action_of(0, 5, 0)] = 1.0  # greedy still picks bare table when the map says so
    assert actor.act_on_q_values(q, 0.0, None, obs) == action_of(0, 5, 0)
    off = Actor(net, ExplorationConfig(), total_steps=10, seed=0)
    assert len({off.act(obs, epsilon=1.0) for _ in range(300)} - on_object) > 50
    with pytest.raises(ValueError, match="exploration.min_height_m"):
        ExperimentConfig.from_dict({"exploration": {"min_height_m": -0.01}})
