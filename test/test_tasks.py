"""The task layer: what the gymnasium envs and the policy node share - task set-up without a
simulator, the camera model from a CameraInfo, driving a task on an arm that tracks targets,
reward shaping, and the actor's bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.utils import seeding

from q_grasp.envs.reacher import ReacherConfig, ReacherEnv
from q_grasp.kinematics.camera import CameraModel
from q_grasp.learning.checkpoint import env_description, save_checkpoint
from q_grasp.learning.networks import network_spec_for_env
from q_grasp.learning.tasks import add_shaping, default_config, make_env
from q_grasp.tasks.episodes import (
    DecisionLatency,
    EpisodeStats,
    Transition,
    TransitionBatcher,
)
from q_grasp.tasks.grasp import GraspTask, grasp_observation, table_looks_empty
from q_grasp.tasks.load import load_task, task_spaces
from q_grasp.tasks.reach import KinematicArm, ReachTask
from q_grasp.tasks.shaping import RewardShaping, shaped_reward, shaping_terms
from q_grasp.wire import TransitionLimits, decode_transitions, encode_transitions

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def grasp_env():
    from q_grasp.envs.grasp import TopDownGraspEnv

    env = TopDownGraspEnv(image_size=(32, 40), num_rotations=4, seed=1)
    yield env
    env.close()


def test_load_task_builds_the_envs_network_without_a_simulator(grasp_env) -> None:
    setup = load_task("grasp", seed=0)
    c, h, w = setup.spaces.observation_space.shape
    assert setup.q_net.kind == "unet" and setup.q_net.obs_shape == (c, h, w)
    assert setup.max_episode_steps == setup.env_config.max_attempts
    net_cfg = default_config("q_grasp/TopDownGrasp-v0").network
    spaces = task_spaces(GraspTask(grasp_env.config))
    assert network_spec_for_env(spaces, net_cfg) == network_spec_for_env(grasp_env, net_cfg)


def test_camera_model_from_camera_info_sees_what_the_sim_camera_sees(grasp_env) -> None:
    obs, _ = grasp_env.reset(seed=3)
    camera = grasp_env.camera
    info = camera.camera_info()
    cfg = camera.config
    model = CameraModel.looking_at(np.reshape(info["K"], (3, 3)), info["width"],
                                   info["height"], cfg.position, cfg.target, cfg.up_vector)
    depth = grasp_env._depth
    np.testing.assert_allclose(model.heightmap(depth), camera.heightmap(depth), atol=1e-6)
    task = GraspTask(grasp_env.config)
    np.testing.assert_allclose(task.observation(grasp_env.rgb_image, model.heightmap(depth)),
                               obs, atol=1e-6)
    for row, col in ((0, 0), (5, 17), (31, 39)):
        np.testing.assert_allclose(model.pixel_to_world(col, row, depth[row, col]),
                                   grasp_env.pixel_to_world(row, col), atol=1e-9)
    assert not table_looks_empty(model.heightmap(depth), 0.005)  # one object on the table
    assert table_looks_empty(np.zeros((4, 4)), 0.005)
    # Pixels without depth read as table, never NaN in the observation.
    hm = np.full((32, 40), np.nan, np.float32)
    assert np.isfinite(grasp_observation(grasp_env.rgb_image, hm, ("height",), 0.25)).all()


def test_camera_model_with_unequal_focal_lengths_is_consistent() -> None:
    K = np.array([[40.0, 0.0, 19.2], [0.0, 43.0, 15.1], [0.0, 0.0, 1.0]])
    model = CameraModel.looking_at(K, 40, 32, (0.13, 0.0, 0.25), (0.13, 0.0, 0.0),
                                   (1.0, 0.0, 0.0))
    depth = np.random.default_rng(0).uniform(0.2, 0.25, (32, 40))
    points = model.surface_points(depth)
    np.testing.assert_allclose(model.heightmap(depth), points[..., 2], atol=1e-6)
    u, v, d = model.world_to_pixel(points.reshape(-1, 3))
    rows, cols = np.mgrid[0:32, 0:40]
    np.testing.assert_allclose(u, cols.ravel(), atol=1e-9)
    np.testing.assert_allclose(v, rows.ravel(), atol=1e-9)
    np.testing.assert_allclose(d, depth.ravel(), atol=1e-9)
    with pytest.raises(ValueError, match="camera K"):
        CameraModel.looking_at(np.zeros((3, 3)), 40, 32, (0, 0, 1), (0, 0, 0), (1, 0, 0))


def test_grasp_task_decodes_actions_and_ends_episodes(grasp_env) -> None:
    task = GraspTask(grasp_env.config)
    a = task.encode_action(3, 7, 11)
    assert task.decode_action(a) == (3, 7, 11)
    camera = grasp_env.camera
    depth = np.full((32, 40), 0.2, np.float32)
    target = task.grasp_target(camera, depth, a)
    assert target.yaw_rad == pytest.approx(3 * np.pi / 4) and target.has_depth
    np.testing.assert_allclose(target.point_m, camera.pixel_to_world(11, 7, 0.2))
    depth[7, 11] = np.nan
    assert not task.grasp_target(camera, depth, a).has_depth
    with pytest.raises(ValueError, match="action: must be an integer"):
        task.decode_action(4 * 32 * 40)
    assert task.episode_end(True, False, 1) == (False, False)  # clutter: grasp on
    assert task.episode_end(True, False, 1, terminate_on_success=True) == (True, False)
    assert task.episode_end(False, True, 1) == (True, False)
    assert task.episode_end(False, False, 5) == (False, True)
    assert task.episode_end(False, False, 2, max_attempts=2) == (False, True)


class LaggingArm(KinematicArm):
    """An arm that stops 1 mrad short of every target, as a real arm's tracking error."""

    def move_arm(self, joint_targets: np.ndarray, *, teleport: bool = False) -> bool:
        return super().move_arm(np.asarray(joint_targets) - 1e-3)


@pytest.mark.parametrize("observation", ["joints_goal", "joints_goal_ee_ik"])
def test_reach_task_steps_add_to_targets_and_judge_measured_joints(observation: str) -> None:
    cfg = ReacherConfig(dtheta_rad=0.07, reward="dense", observation=observation)
    task = ReachTask(cfg)
    env = ReacherEnv(cfg)
    env_obs, _ = env.reset(seed=5)
    # The node's goal stream is the env's for the same seed.
    episode = task.new_episode(seeding.np_random(5)[0], max_steps=3)
    np.testing.assert_array_equal(episode.goal, env.goal)
    np.testing.assert_array_equal(episode.start_q, env.joint_positions)
    arm = LaggingArm(task.arm_joint_names, episode.start_q)
    episode.target = episode.start_q.copy()
    for action in (0, 3, 5):
        state, reward, terminated, truncated = task.step(arm, episode, action)
        env_obs, env_reward, *_ = env.step(action)
        np.testing.assert_allclose(episode.target, env.joint_positions)  # no accumulated lag
        np.testing.assert_allclose(arm.read_arm_joints(), episode.target - 1e-3)
        assert state.distance_m == pytest.approx(
            np.linalg.norm(task.ee_position(episode.target - 1e-3) - episode.goal))
        assert not terminated
    assert truncated and episode.steps == 3
    # A start where the arm is: the goal is new, the start is the arm's pose.
    here = task.home_q[task.reach_index] + 0.1
    second = task.new_episode(seeding.np_random(6)[0], reach_q=here)
    np.testing.assert_allclose(second.start_q[task.reach_index], here)
    assert (second.goal_q is not None) == (observation == "joints_goal_ee_ik")
    with pytest.raises(ValueError, match="reach_joint_positions"):
        task.new_episode(seeding.np_random(6)[0], reach_q=task.upper + 1.0)


def test_reward_shaping_stacks_like_the_training_wrappers() -> None:
    """env.distance_shaping (discounted) then env.joint_shaping (k (d - d')): the node's
    RewardShaping gives the rewards the CLI's wrappers give."""
    cfg = default_config("q_grasp/Reacher-v0")
    cfg.env.kwargs.update(observation="joints_goal_ee_ik", reward="sparse")
    cfg.env.distance_shaping, cfg.env.joint_shaping = 5.0, 14.0
    env = add_shaping(make_env(cfg.env), cfg.env, 0.9)
    shaping = RewardShaping(shaping_terms(cfg.env, 0.9))
    _, info = env.reset(seed=1)
    shaping.reset(info)
    d = info["distance_m"]
    for action in (0, 1, 0, 5):
        _, reward, terminated, _, info = env.step(action)
        assert shaping.step(info["raw_reward"], info, terminated) == pytest.approx(reward)
        assert reward != info["raw_reward"]
        assert shaped_reward(0.0, d, info["distance_m"], False, 5.0, 0.9) == pytest.approx(
            5.0 * d - 0.9 * 5.0 * info["distance_m"])
        d = info["distance_m"]
    assert shaped_reward(0.5, 0.1, 0.2, False, 0.0, 0.98) == 0.5
    assert shaped_reward(1.0, 0.1, 0.2, True, 2.0, 0.98) == pytest.approx(1.2)
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


def test_episode_stats() -> None:
    stats = EpisodeStats(window=2, initial_steps=10)
    assert np.isnan(stats.success_rate)
    stats.record_step(0.0, False, False)
    stats.record_step(1.0, True, True)
    stats.record_step(0.0, False, True)
    assert (stats.steps, stats.episodes) == (13, 2)
    assert stats.success_rate == 0.5 and stats.mean_return == 0.5
    assert stats.values(attempts=True)["attempt_success_rate"] == 0.5  # (the last 2 steps)
    assert "attempt_success_rate" not in stats.values(attempts=False)
    assert stats.summary_line(attempts=False) == "episode 2: step 13, success rate 0.50"


def test_decision_latency_reports_mean_and_window_percentiles() -> None:
    latency = DecisionLatency(window=3)
    for ms in (10.0, 20.0, 30.0):
        values = latency.add(ms)
    assert values["decision_latency_ms"] == 30.0 and values["decision_latency_window"] == 3
    assert values["decision_latency_ms_mean"] == pytest.approx(0.9 * (0.9 * 10 + 2) + 3)
    values = latency.add(100.0)  # the window drops the oldest
    assert (values["decision_latency_ms_p50"], values["decision_latency_ms_max"]) == (30.0, 100.0)


def _rollout(env, n_actions: int) -> tuple[float, float, int]:
    rng = np.random.default_rng(1)
    obs, _ = env.reset(seed=3)
    total_obs, total_reward, ends = float(np.sum(obs, dtype=np.float64)), 0.0, 0
    for _ in range(120):
        obs, reward, terminated, truncated, _ = env.step(int(rng.integers(n_actions)))
        total_obs += float(np.sum(obs, dtype=np.float64))
        total_reward += reward
        if terminated or truncated:
            ends += 1
            obs, _ = env.reset()
            total_obs += float(np.sum(obs, dtype=np.float64))
    return total_obs, total_reward, ends


@pytest.mark.parametrize("kwargs, expected", [
    ({}, (-43.63824722263962, 0.0, 2)),
    ({"observation": "joints_goal_ee_ik", "reward": "distance"},
     (-376.39762722915475, -284.6942704986867, 2)),
    ({"action_mode": "cartesian", "observation": "joints_goal_ee_dir", "reward": "dense"},
     (-158.6134772154728, -113.7168966329578, 2)),
    (None, (-177.70108261831774, -16.000000000000007, 0)),
])
def test_seeded_reacher_episodes_keep_their_numbers(kwargs, expected) -> None:
    """Observations and rewards of seeded random episodes, as the envs gave them before the
    task layer: a refactoring that changes them changes every learning figure (None: the
    training env of config/reacher.yaml with its reward shaping)."""
    if kwargs is None:
        cfg = default_config("q_grasp/Reacher-v0")
        env, n_actions = add_shaping(make_env(cfg.env), cfg.env, cfg.dqn.gamma), 8
    else:
        env = ReacherEnv(**kwargs)
        n_actions = int(env.action_space.n)
    total_obs, total_reward, ends = _rollout(env, n_actions)
    assert total_obs == pytest.approx(expected[0], rel=1e-9)
    assert total_reward == pytest.approx(expected[1], rel=1e-9, abs=1e-12)
    assert ends == expected[2]


def test_grasp_clutter_task_and_a_shipped_experiment_by_name() -> None:
    # The registered clutter defaults (1-5 objects, 10 attempts) apply as in gymnasium.make.
    clutter = load_task("grasp_clutter")
    assert clutter.env_config.max_objects == 5 and clutter.max_episode_steps == 10
    # Its shipped config trains on the train set, the held-out set kept out, bare table masked.
    assert clutter.env_config.object_set == "train"
    assert clutter.env_config.held_out_set == "held_out"
    assert clutter.env_config.min_grasp_height_m > 0.0
    # A bare file name is the shipped config/<name> (parameter files refer to them so).
    objects = load_task("grasp_clutter", experiment_config="grasp_objects.yaml")
    assert objects.env_config.object_set == "train"
    assert objects.env_config.min_grasp_height_m > 0.0
    with pytest.raises(ValueError, match="experiment_config: is for env"):
        load_task("grasp", experiment_config="grasp_objects.yaml")
