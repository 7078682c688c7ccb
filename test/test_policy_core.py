"""The policy node's ROS-free logic against the single-process envs: same spaces and network,
same observations, same rewards and action semantics, checkpoints from the CLI accepted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from q_grasp.envs.reacher import reacher_reward
from q_grasp.learning.checkpoint import env_description, save_checkpoint
from q_grasp.learning.networks import network_spec_for_env
from q_grasp.learning.tasks import DistanceShaping, add_shaping, default_config, make_env
from q_grasp.nodes.policy_core import (
    CameraModel,
    EpisodeStats,
    ReacherEpisodes,
    Transition,
    TransitionBatcher,
    choose_action,
    decode_grasp_action,
    grasp_observation,
    grasp_spaces,
    load_task,
    shaped_reward,
    table_looks_empty,
)
from q_grasp.wire import TransitionLimits, decode_transitions, encode_transitions

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def grasp_env():
    from q_grasp.envs.grasp import TopDownGraspEnv

    env = TopDownGraspEnv(image_size=(32, 40), num_rotations=4, seed=1)
    yield env
    env.close()


def test_grasp_spaces_and_network_match_the_env(grasp_env) -> None:
    spaces = grasp_spaces(grasp_env.config)
    assert spaces.observation_space == grasp_env.observation_space
    assert spaces.action_space == grasp_env.action_space
    assert spaces.image_channels == grasp_env.image_channels
    net_cfg = default_config("q_grasp/TopDownGrasp-v0").network
    assert network_spec_for_env(spaces, net_cfg) == network_spec_for_env(grasp_env, net_cfg)


def test_grasp_observation_and_camera_model_match_the_env(grasp_env) -> None:
    obs, _ = grasp_env.reset(seed=3)
    camera = grasp_env.camera
    info = camera.camera_info()
    cfg = camera.config
    model = CameraModel(np.reshape(info["K"], (3, 3)), info["width"], info["height"],
                        cfg.position, cfg.target, cfg.up_vector)
    depth = grasp_env._depth
    np.testing.assert_allclose(model.heightmap(depth), camera.heightmap(depth), atol=1e-6)
    mine = grasp_observation(grasp_env.rgb_image, model.heightmap(depth),
                             grasp_env.image_channels, grasp_env.config.camera_height_m)
    np.testing.assert_allclose(mine, obs, atol=1e-6)
    for row, col in ((0, 0), (5, 17), (31, 39)):
        np.testing.assert_allclose(model.pixel_to_world(col, row, depth[row, col]),
                                   grasp_env.pixel_to_world(row, col), atol=1e-9)
    assert not table_looks_empty(model.heightmap(depth), 0.005)  # one object on the table
    assert table_looks_empty(np.zeros((4, 4)), 0.005)
    a = grasp_env.encode_action(3, 7, 11)
    assert decode_grasp_action(a, 4, 32, 40) == grasp_env.decode_action(a) == (3, 7, 11)
    # Pixels without depth read as table, never NaN in the observation.
    hm = np.full((32, 40), np.nan, np.float32)
    assert np.isfinite(grasp_observation(grasp_env.rgb_image, hm, ("height",), 0.25)).all()


@pytest.mark.parametrize("observation", ["joints_goal", "joints_goal_ee_dir",
                                         "joints_goal_ee_ik"])
def test_reacher_episodes_follow_the_env(observation: str) -> None:
    from q_grasp.envs.reacher import ReacherConfig, ReacherEnv

    cfg = ReacherConfig(dtheta_rad=0.07, reward="dense", observation=observation)
    episodes = ReacherEpisodes(cfg, seed=5)
    env = ReacherEnv(cfg)
    env_obs, _ = env.reset(seed=5)
    start, goal = episodes.new_episode()
    np.testing.assert_allclose(start, env.joint_positions)
    np.testing.assert_allclose(goal, env.goal)
    np.testing.assert_allclose(episodes.observation(start, goal), env_obs)
    target = start
    for action in (0, 3, 5, 6, 1):
        env_obs, env_reward, *_ , info = env.step(action)
        target, ok = episodes.joint_target(target, action)
        assert ok
        np.testing.assert_allclose(episodes.observation(target, goal), env_obs, atol=1e-6)
        distance = episodes.distance(target, goal)
        assert distance == pytest.approx(info["distance_m"])
        assert episodes.goal_joint_distance(target, goal) == pytest.approx(
            info.get("goal_joint_distance_rad", 0.0))
        assert reacher_reward(distance, cfg.goal_tolerance_m, "dense") == pytest.approx(
            env_reward)
    # "current" start: the goal is new, the start is where the arm is.
    here = start.copy()
    start2, goal2 = episodes.new_episode(here)
    np.testing.assert_allclose(start2, here)
    assert not np.allclose(goal2, goal)
    assert reacher_reward(0.005, 0.01, "sparse") == 1.0
    assert reacher_reward(0.05, 0.01, "sparse") == 0.0


def test_shaping_matches_the_cli_wrapper() -> None:
    env = DistanceShaping(make_env(default_config("q_grasp/Reacher-v0").env), 20.0, 0.98)
    _, info = env.reset(seed=0)
    distance = info["distance_m"]
    for action in (0, 2, 4, 6):
        _, reward, terminated, _, info = env.step(action)
        mine = shaped_reward(info["raw_reward"], distance, info["distance_m"], terminated,
                             20.0, 0.98)
        assert mine == pytest.approx(reward)
        distance = info["distance_m"]
    assert shaped_reward(0.5, 0.1, 0.2, False, 0.0, 0.98) == 0.5


def test_joint_shaping_matches_the_cli_wrapper() -> None:
    """env.joint_shaping: k (d - d') per radian of goal-joint distance (no discount), stacked
    on distance shaping, as the policy node computes it."""
    cfg = default_config("q_grasp/Reacher-v0")
    cfg.env.kwargs.update(observation="joints_goal_ee_ik", reward="sparse")
    cfg.env.distance_shaping, cfg.env.joint_shaping = 5.0, 14.0
    env = add_shaping(make_env(cfg.env), cfg.env, 0.9)
    _, info = env.reset(seed=1)
    d, jd = info["distance_m"], info["goal_joint_distance_rad"]
    for action in (0, 1, 0, 5):
        _, reward, terminated, _, info = env.step(action)
        mine = shaped_reward(info["raw_reward"], d, info["distance_m"], terminated, 5.0, 0.9)
        mine = shaped_reward(mine, jd, info["goal_joint_distance_rad"], terminated, 14.0, 1.0)
        assert mine == pytest.approx(reward)
        d, jd = info["distance_m"], info["goal_joint_distance_rad"]
    cfg.env.kwargs["observation"] = "joints_goal"
    with pytest.raises(ValueError, match=r"env.joint_shaping: the environment reports no "
                                         r"info\['goal_joint_distance_rad'\]"):
        add_shaping(make_env(cfg.env), cfg.env, 0.9).reset(seed=0)


def test_load_task_fresh_and_from_cli_checkpoint(tmp_path) -> None:
    fresh = load_task("reacher", seed=0)
    cfg = default_config("q_grasp/Reacher-v0")
    env = make_env(cfg.env)
    assert (fresh.q_net.kind, fresh.q_net.config) == network_spec_for_env(env, cfg.network)
    assert fresh.max_episode_steps == cfg.env.kwargs["episode_length"]
    # A checkpoint as `q-grasp train` writes it: the network and env kwargs come from it.
    path = save_checkpoint(tmp_path / "reacher.safetensors", fresh.q_net, config=cfg,
                           env=env_description(env, cfg.env.id, cfg.env.kwargs),
                           counters={"env_steps": 1234})
    loaded = load_task("reacher", checkpoint=str(path))
    for key, value in fresh.q_net.state_dict().items():
        torch.testing.assert_close(loaded.q_net.state_dict()[key], value)
    assert loaded.counters["env_steps"] == 1234
    assert loaded.env_config.dtheta_rad == cfg.env.kwargs["dtheta_rad"]
    with pytest.raises(ValueError, match="checkpoint: .* trained on 'q_grasp/Reacher-v0'"):
        load_task("grasp", checkpoint=str(path))
    with pytest.raises(ValueError, match="checkpoint: .*no such file"):
        load_task("reacher", checkpoint=str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="task: must be one of"):
        load_task("juggle")


def test_load_task_grasp_without_a_simulator() -> None:
    setup = load_task("grasp", seed=0)
    c, h, w = setup.spaces.observation_space.shape
    assert setup.q_net.kind == "unet" and setup.q_net.obs_shape == (c, h, w)
    assert setup.max_episode_steps == setup.env_config.max_attempts


def test_transitions_batch_and_decode() -> None:
    batcher = TransitionBatcher("reacher", "/arm1/policy", 8, batch_size=3)
    obs = np.arange(7, dtype=np.float32)
    assert batcher.add(Transition(obs, 1, 0.5, obs + 1, False, False, False), 4) is None
    batch = batcher.add(Transition(obs, 2, 1.0, obs + 2, True, False, True), 4)
    assert batch is not None and len(batch) == 2 and batch.sequence == 0
    decoded = decode_transitions(encode_transitions(batch), TransitionLimits(obs_shape=(7,),
                                                                             num_actions=8))
    np.testing.assert_array_equal(decoded.actions, [1, 2])
    np.testing.assert_array_equal(decoded.terminated, [False, True])
    assert (decoded.actor_id, decoded.weights_version, decoded.task) == ("/arm1/policy", 4,
                                                                         "reacher")
    assert batcher.flush() is None


def test_episode_stats_and_choose_action() -> None:
    stats = EpisodeStats(window=2, initial_steps=10)
    assert np.isnan(stats.success_rate)
    stats.record_step(0.0, False, False)
    stats.record_step(1.0, True, True)
    stats.record_step(0.0, False, True)
    assert (stats.steps, stats.episodes) == (13, 2)
    assert stats.success_rate == 0.5 and stats.mean_return == 0.5
    rng = np.random.default_rng(0)
    q = np.array([0.0, 3.0, 1.0])
    assert choose_action(q, 0.0, rng) == (1, False)
    actions = {choose_action(q, 1.0, rng)[0] for _ in range(50)}
    assert actions == {0, 1, 2}
