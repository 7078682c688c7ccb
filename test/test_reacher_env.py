"""Reacher gymnasium environment: API conformance, seeding, episode semantics, rewards, errors."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from q_grasp.envs.reacher import ReacherConfig, ReacherEnv, reacher_observation, reacher_reward
from q_grasp.kinematics import KinematicChain

START = np.array([0.0, -0.3, 1.2, 1.0])
"""A start pose with the tool in front of the robot, well inside the joint limits."""


@pytest.fixture(scope="module")
def env() -> ReacherEnv:
    e = ReacherEnv()
    yield e
    e.close()


def _ee_after(env: ReacherEnv, reach_q: np.ndarray) -> np.ndarray:
    q = env.joint_positions
    q[:4] = reach_q
    return env.chain.fk(q)[:3, 3]


def _far_goal(env: ReacherEnv, start: np.ndarray) -> np.ndarray:
    """A reachable goal far from the tool at ``start``."""
    return _ee_after(env, start + np.array([1.0, 0.0, 0.0, 0.0]))


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"reward": "dense"}, {"reward": "distance"}, {"action_mode": "cartesian"},
     {"fixed_goal": (0.12, 0.05, 0.1)}],
)
def test_check_env_passes(kwargs) -> None:
    with ReacherEnv(**kwargs) as e:
        check_env(e, skip_render_check=True)


@pytest.mark.filterwarnings("ignore:.*alternative render modes")
def test_check_env_with_rendering() -> None:
    with ReacherEnv(render_mode="rgb_array", render_width=64, render_height=48) as e:
        check_env(e)
        e.reset(seed=0)
        frame = e.render()
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        assert frame.std() > 5  # not a blank image: table, arm and goal marker are visible


@pytest.mark.filterwarnings("ignore:.*no render_mode was given")
def test_render_without_mode_returns_none(env: ReacherEnv) -> None:
    env.reset(seed=0)
    assert env.render() is None


def test_spaces(env: ReacherEnv) -> None:
    assert env.observation_space.shape == (7,)
    assert env.observation_space.dtype == np.float32
    assert env.action_space == gymnasium.spaces.Discrete(8)
    with ReacherEnv(action_mode="cartesian") as cart:
        assert cart.action_space == gymnasium.spaces.Discrete(6)
    np.testing.assert_allclose(env.observation_space.low[:4], env.chain.lower[:4], rtol=1e-6)
    np.testing.assert_allclose(env.observation_space.high[:4], env.chain.upper[:4], rtol=1e-6)


def test_seeded_resets_repeat() -> None:
    a, b = ReacherEnv(), ReacherEnv()
    rng = np.random.default_rng(0)
    actions = rng.integers(8, size=200)
    for seed in (0, 1, 123):
        obs_a, _ = a.reset(seed=seed)
        obs_b, _ = b.reset(seed=seed)
        np.testing.assert_array_equal(obs_a, obs_b)
        for action in actions:
            out_a, out_b = a.step(int(action)), b.step(int(action))
            np.testing.assert_array_equal(out_a[0], out_b[0])
            assert out_a[1:4] == out_b[1:4]
            if out_a[2] or out_a[3]:
                a.reset()
                b.reset()
    first = a.reset(seed=7)[0]
    assert not np.array_equal(first, a.reset()[0])  # unseeded resets continue the stream
    np.testing.assert_array_equal(first, a.reset(seed=7)[0])
    # The config seed applies to the first reset called without one.
    c, d = ReacherEnv(seed=42), ReacherEnv(seed=42)
    np.testing.assert_array_equal(c.reset()[0], d.reset()[0])
    np.testing.assert_array_equal(c.reset()[0], d.reset()[0])


def test_resets_sample_valid_starts_and_goals(env: ReacherEnv) -> None:
    goals = []
    for seed in range(300):
        obs, info = env.reset(seed=seed)
        assert env.observation_space.contains(obs)
        assert not info["is_success"] and info["distance_m"] > env.config.goal_tolerance_m
        goal = obs[4:]
        assert goal[2] >= env.config.goal_min_height_m - 1e-6
        assert env.ee_position[2] >= 0.0
        goals.append(goal)
    goals = np.array(goals)
    assert np.all(goals.std(axis=0) > 0.03)  # spread over the workspace
    for goal in goals[:10]:  # every goal is reachable by the four reach joints
        result = env.chain.ik(goal, q0=env.joint_positions, active_joints=env.reach_joint_names)
        assert result.success, result.message


def test_terminated_on_success() -> None:
    # A tolerance below one step's motion, so the start is not already at the goal.
    with ReacherEnv(goal_tolerance_m=0.002) as env:
        goal = _ee_after(env, START + [env.config.dtheta_rad, 0, 0, 0])
        obs, info = env.reset(options={"reach_joint_positions": START, "goal": goal})
        np.testing.assert_allclose(obs[:4], START, rtol=1e-6)
        np.testing.assert_allclose(obs[4:], goal, rtol=1e-6)
        assert not info["is_success"]
        obs, reward, terminated, truncated, info = env.step(0)  # +dtheta on the base joint
        assert (reward, terminated, truncated, info["is_success"]) == (1.0, True, False, True)
        assert info["distance_m"] < 1e-9
        with pytest.raises(RuntimeError, match="reset"):
            env.step(0)


def test_truncated_at_episode_length() -> None:
    with ReacherEnv(episode_length=3, goal_tolerance_m=0.002) as e:
        e.reset(options={"reach_joint_positions": START, "goal": _far_goal(e, START)})
        for t in range(3):
            _, reward, terminated, truncated, info = e.step(2)
            assert reward == 0.0 and not terminated and not info["is_success"]
            assert truncated == (t == 2)
        # Success on the last step is a termination, not a truncation.
        goal = _ee_after(e, START + [3 * e.config.dtheta_rad, 0, 0, 0])
        e.reset(options={"reach_joint_positions": START, "goal": goal})
        results = [e.step(0) for _ in range(3)]
        assert [r[2] for r in results] == [False, False, True]
        assert [r[3] for r in results] == [False, False, False]


def test_joints_clamped_at_limits(env: ReacherEnv) -> None:
    lower, upper = env.chain.lower[:4], env.chain.upper[:4]
    start = START.copy()
    start[0] = upper[0] - 0.01
    env.reset(options={"reach_joint_positions": start, "goal": _far_goal(env, START)})
    for _ in range(3):
        obs, *_ = env.step(0)
        assert env.observation_space.contains(obs)
    assert env.joint_positions[0] == upper[0]
    start[2] = lower[2] + 0.02
    env.reset(options={"reach_joint_positions": start, "goal": _far_goal(env, START)})
    for _ in range(3):
        obs, *_ = env.step(5)  # -dtheta on the elbow
    assert env.joint_positions[2] == lower[2]
    assert obs[2] == np.float32(lower[2])
    # Only the chosen joint moves, by exactly dtheta.
    env.reset(options={"reach_joint_positions": START, "goal": _far_goal(env, START)})
    obs, *_ = env.step(7)  # -dtheta on the wrist
    np.testing.assert_allclose(obs[:4], START - [0, 0, 0, env.config.dtheta_rad], rtol=1e-6)


def test_sparse_and_dense_rewards() -> None:
    tol = 0.01
    for reward_type in ("sparse", "dense", "distance"):
        with ReacherEnv(reward=reward_type, goal_tolerance_m=tol) as e:
            e.reset(options={"reach_joint_positions": START, "goal": _far_goal(e, START)})
            rewards = []
            for action in (0, 0, 1, 2, 3):
                _, reward, terminated, _, info = e.step(action)
                assert not terminated
                expected = {"sparse": 0.0, "dense": tol / info["distance_m"] - 1.0,
                            "distance": -info["distance_m"] / 0.1}[reward_type]
                assert reward == pytest.approx(expected)
                rewards.append(reward)
            if reward_type != "sparse":
                assert all(r < 0.0 for r in rewards)
            if reward_type == "dense":
                assert all(-1.0 < r < 0.0 for r in rewards)
            goal = _ee_after(e, START + [0, e.config.dtheta_rad, 0, 0])
            e.reset(options={"reach_joint_positions": START, "goal": goal})
            assert e.step(2)[1] == 1.0


@pytest.mark.parametrize("reward_type", ["dense", "distance"])
def test_dense_reward_grows_near_the_goal(reward_type: str) -> None:
    with ReacherEnv(reward=reward_type) as e:
        goal = _ee_after(e, START + [0.5, 0, 0, 0])
        e.reset(options={"reach_joint_positions": START, "goal": goal})
        rewards = [e.step(0)[1] for _ in range(8)]  # base joint walks straight to the goal
        assert all(b > a for a, b in zip(rewards[:-1], rewards[1:]))


def test_cartesian_actions_move_the_tool() -> None:
    with ReacherEnv(action_mode="cartesian", cartesian_step_m=0.01) as e:
        e.reset(options={"reach_joint_positions": START, "goal": _far_goal(e, START)})
        for action in range(6):
            before = e.ee_position
            _, _, _, _, info = e.step(action)
            assert info["ik_success"]
            step = np.zeros(3)
            step[action // 2] = 0.01 if action % 2 == 0 else -0.01
            np.testing.assert_allclose(e.ee_position - before, step, atol=1.5e-3)
            q = e.joint_positions
            assert np.all(q >= e.chain.lower) and np.all(q <= e.chain.upper)
        # Walking out of the workspace stops at its edge instead of jumping elsewhere.
        e.reset(options={"reach_joint_positions": START, "goal": _far_goal(e, START)})
        stuck = 0
        for _ in range(49):
            _, _, _, truncated, info = e.step(0)  # +x forever
            stuck += not info["ik_success"]
            if truncated:
                break
        assert stuck > 0
        assert e.ee_position[0] < e.chain.max_reach_m + 0.01


def test_goals_near_start_are_reachable_in_budget() -> None:
    with ReacherEnv(max_goal_steps=1, goal_tolerance_m=0.002) as e:
        for seed in range(20):
            obs, info = e.reset(seed=seed)
            assert not info["is_success"]
            assert obs[6] >= e.config.goal_min_height_m - 1e-6
            start = e.joint_positions
            # The goal is exactly one joint step away: some action ends the episode at once.
            reached = []
            for action in range(8):
                e.reset(options={"reach_joint_positions": start[:4], "goal": e.goal})
                reached.append(e.step(action)[2])
            assert any(reached)
    with ReacherEnv(max_goal_steps=10) as e:
        for seed in range(20):
            e.reset(seed=seed)
            # 10 steps of 0.035 rad move the tool at most ~10 * 0.035 * 0.33 m.
            assert np.linalg.norm(e.goal - e.ee_position) < 10 * 0.035 * e.chain.max_reach_m
    with pytest.raises(ValueError, match="max_goal_steps"):
        ReacherEnv(max_goal_steps=0)


def test_fixed_goal_is_used(env: ReacherEnv) -> None:
    with ReacherEnv(fixed_goal=[0.12, 0.05, 0.1]) as e:
        for seed in range(3):
            obs, _ = e.reset(seed=seed)
            np.testing.assert_allclose(obs[4:], [0.12, 0.05, 0.1], rtol=1e-6)


def test_config_object_and_overrides() -> None:
    with ReacherEnv(ReacherConfig(dtheta_rad=0.05), episode_length=10) as e:
        assert e.config.dtheta_rad == 0.05 and e.config.episode_length == 10
    with ReacherEnv(robot={"base_position": [0.0, 0.0, 0.05]}) as e:
        assert e.chain.fk(e.chain.default_q)[2, 3] == pytest.approx(
            KinematicChain.from_robot_config(e.config.robot).fk(e.chain.default_q)[2, 3])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dtheta_rad": 0.0}, r"dtheta_rad: must be in \(0.0, 0.5\] rad"),
        ({"dtheta_rad": 1.0}, "dtheta_rad"),
        ({"dtheta_rad": float("nan")}, "dtheta_rad"),
        ({"episode_length": 0}, "episode_length: must be an integer >= 1"),
        ({"episode_length": 2.5}, "episode_length"),
        ({"goal_tolerance_m": 0.0}, "goal_tolerance_m"),
        ({"reward": "shaped"}, "reward: must be one of"),
        ({"action_mode": "torque"}, "action_mode: must be one of"),
        ({"cartesian_step_m": -0.01}, "cartesian_step_m"),
        ({"goal_min_height_m": -0.1}, "goal_min_height_m"),
        ({"workspace_samples": 10}, "workspace_samples"),
        ({"render_width": 8}, r"render_width: must be an integer in \[16, 2048\]"),
        ({"seed": -1}, "seed"),
        ({"fixed_goal": (1.0, 0.0, 0.1)}, "fixed_goal: .* outside the reachable workspace"),
        ({"fixed_goal": (0.15, 0.0, -0.05)}, "fixed_goal: .* below the table"),
        ({"fixed_goal": (0.25, 0.0, 0.3)}, "fixed_goal: .* outside the reachable workspace"),
        ({"fixed_goal": (0.1, float("nan"), 0.1)}, "fixed_goal: must be None or 3 finite"),
        ({"fixed_goal": (0.1, 0.1)}, "fixed_goal"),
        ({"no_such_field": 1}, "unknown config fields"),
        ({"render_mode": "human"}, "render_mode"),
    ],
)
def test_bad_parameters_raise(kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ReacherEnv(**kwargs)


@pytest.mark.parametrize("action", [8, -1, 2.0, "1", None, np.array([1, 2]), True])
def test_bad_actions_raise(env: ReacherEnv, action) -> None:
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action: must be an integer in \[0, 7\]"):
        env.step(action)


def test_numpy_integer_actions_accepted(env: ReacherEnv) -> None:
    env.reset(seed=0)
    env.step(np.int64(3))
    env.step(np.array(4))
    env.step(env.action_space.sample())


def test_bad_reset_options_raise(env: ReacherEnv) -> None:
    with pytest.raises(ValueError, match="options: unknown keys"):
        env.reset(options={"joints": [0, 0, 0, 0]})
    with pytest.raises(ValueError, match="reach_joint_positions"):
        env.reset(options={"reach_joint_positions": [0.0, 3.0, 0.0, 0.0]})
    with pytest.raises(ValueError, match=r"options\['goal'\]: .* outside the reachable"):
        env.reset(options={"goal": [2.0, 0.0, 0.0]})


def test_registered_id_if_available() -> None:
    try:
        import q_grasp.envs  # noqa: F401  (registration lives with the grasp env)
    except ImportError:
        pytest.skip("q_grasp.envs does not import yet")
    if "q_grasp/Reacher-v0" not in gymnasium.registry:
        pytest.skip("q_grasp/Reacher-v0 is not registered yet")
    e = gymnasium.make("q_grasp/Reacher-v0", config=ReacherConfig(reward="dense"))
    assert e.unwrapped.config.reward == "dense"
    e.close()
    e = gymnasium.make("q_grasp/Reacher-v0", dtheta_rad=0.05)
    assert e.unwrapped.config.dtheta_rad == 0.05
    e.reset(seed=0)
    e.step(0)
    e.close()


def test_joints_goal_ee_observation() -> None:
    """The "joints_goal_ee" option appends the end effector (forward kinematics) and goal - ee;
    the default layout is unchanged and the same seed gives the same episode."""
    with ReacherEnv(observation="joints_goal_ee") as e, ReacherEnv() as plain:
        check_env(e, skip_render_check=True)
        assert e.observation_space.shape == (13,)
        np.testing.assert_allclose(e.observation_space.low[:7], plain.observation_space.low)
        np.testing.assert_allclose(e.observation_space.high[:7], plain.observation_space.high)
        obs, _ = e.reset(seed=3)
        obs_plain, _ = plain.reset(seed=3)
        for action in (0, 3, 5, 6):
            np.testing.assert_array_equal(obs[:7], obs_plain)
            assert e.observation_space.contains(obs)
            ee = e.chain.fk(e.joint_positions)[:3, 3]
            np.testing.assert_allclose(obs[7:10], ee, atol=1e-6)
            np.testing.assert_allclose(obs[10:13], e.goal - ee, atol=1e-6)
            np.testing.assert_allclose(np.linalg.norm(obs[10:13]),
                                       np.linalg.norm(e.goal - e.ee_position), atol=1e-6)
            obs, *_ = e.step(action)
            obs_plain, *_ = plain.step(action)


def test_reacher_observation_function() -> None:
    """The module-level builder (for nodes with measured joints) matches the env."""
    with ReacherEnv(observation="joints_goal_ee") as e:
        obs, _ = e.reset(seed=5)
        q = e.joint_positions
        built = reacher_observation(q[:4], e.goal, e.chain.fk(q)[:3, 3], "joints_goal_ee")
        np.testing.assert_array_equal(built, obs)
        assert built.dtype == np.float32
        np.testing.assert_array_equal(reacher_observation(q[:4], e.goal), obs[:7])
    with pytest.raises(ValueError, match="ee: the 'joints_goal_ee' observation needs"):
        reacher_observation(q[:4], np.zeros(3), None, "joints_goal_ee")
    with pytest.raises(ValueError, match="observation: must be one of"):
        reacher_observation(q[:4], np.zeros(3), np.zeros(3), "pixels")
    with pytest.raises(ValueError, match="observation: must be one of"):
        ReacherEnv(observation="ee_only")


def test_reacher_reward_function() -> None:
    assert reacher_reward(0.005, 0.01, "distance") == 1.0
    assert reacher_reward(0.2, 0.01, "distance") == pytest.approx(-2.0)
    assert reacher_reward(0.02, 0.01, "dense") == pytest.approx(-0.5)
    assert reacher_reward(0.02, 0.01, "sparse") == 0.0
    with pytest.raises(ValueError, match="reward: must be one of"):
        reacher_reward(0.02, 0.01, "shaped")


def test_joints_goal_ee_dir_observation() -> None:
    """"joints_goal_ee_dir" appends (goal - ee) / max(|goal - ee|, 5 cm) to "joints_goal_ee"."""
    with ReacherEnv(observation="joints_goal_ee_dir") as e, \
            ReacherEnv(observation="joints_goal_ee") as ee_env:
        check_env(e, skip_render_check=True)
        assert e.observation_space.shape == (16,)
        obs, _ = e.reset(seed=4)
        obs_ee, _ = ee_env.reset(seed=4)
        for action in (1, 2, 7):
            np.testing.assert_array_equal(obs[:13], obs_ee)
            error = e.goal - e.ee_position
            expected = error / max(np.linalg.norm(error), 0.05)
            np.testing.assert_allclose(obs[13:], expected, atol=1e-6)
            assert np.linalg.norm(obs[13:]) <= 1.0 + 1e-6
            obs, *_ = e.step(action)
            obs_ee, *_ = ee_env.step(action)
        near = _ee_after(e, START + [0.0, 0.0, 0.0, 0.3])  # a goal a few cm from the tool
        obs, _ = e.reset(options={"reach_joint_positions": START, "goal": near})
        distance = np.linalg.norm(near - e.ee_position)
        assert distance < 0.05
        assert np.linalg.norm(obs[13:]) == pytest.approx(distance / 0.05, rel=1e-5)


def test_joints_goal_ee_ik_observation() -> None:
    """"joints_goal_ee_ik" appends goal joints - joints, the goal joints being an IK solution
    for the goal (fixed for the episode); info reports their L1 distance."""
    with ReacherEnv(observation="joints_goal_ee_ik", dtheta_rad=0.07) as e, \
            ReacherEnv(observation="joints_goal_ee_dir", dtheta_rad=0.07) as ee_env:
        check_env(e, skip_render_check=True)
        assert e.observation_space.shape == (24,)
        obs, info = e.reset(seed=8)
        obs_ee, _ = ee_env.reset(seed=8)
        goal_q = e.goal_q
        q_goal = e.joint_positions
        q_goal[e._reach_idx] = goal_q
        # The goal joints put the tool centre point on the goal (IK to 1/10 of the tolerance).
        assert np.linalg.norm(e.chain.fk(q_goal)[:3, 3] - e.goal) <= 0.1 * 0.01 + 1e-9
        for action in (0, 3, 6, 6):
            np.testing.assert_array_equal(obs[:16], obs_ee)
            error = goal_q - e.joint_positions[e._reach_idx]
            np.testing.assert_allclose(obs[16:20], error, atol=1e-6)
            np.testing.assert_allclose(obs[20:], np.clip(error / 0.1, -1, 1), atol=1e-6)
            assert info["goal_joint_distance_rad"] == pytest.approx(np.abs(error).sum(),
                                                                     abs=1e-5)
            obs, _, _, _, info = e.step(action)
            obs_ee, *_ = ee_env.step(action)
        np.testing.assert_array_equal(e.goal_q, goal_q)  # fixed for the episode
        # Deterministic: the same start and goal give the same goal joints.
        e.reset(seed=8)
        np.testing.assert_array_equal(e.goal_q, goal_q)
    with ReacherEnv() as plain:
        plain.reset(seed=0)
        assert plain.goal_q is None
        assert "goal_joint_distance_rad" not in plain.step(0)[4]
    with pytest.raises(ValueError, match="goal_q: the 'joints_goal_ee_ik' observation needs"):
        reacher_observation(START, np.zeros(3), np.zeros(3), "joints_goal_ee_ik")


def test_moving_joints_towards_the_goal_joints_reaches_free_goals() -> None:
    """The goal joints make free random goals solvable by joint-space descent: stepping the
    joint with the largest error reaches most goals (200 episodes measured: 96%)."""
    with ReacherEnv(observation="joints_goal_ee_ik", dtheta_rad=0.07, episode_length=150) as e:
        successes = 0
        for episode in range(20):
            obs, _ = e.reset(seed=300 + episode)
            done = False
            while not done:
                error = obs[16:20]
                j = int(np.argmax(np.abs(error)))
                obs, _, terminated, truncated, info = e.step(2 * j + (0 if error[j] > 0 else 1))
                done = terminated or truncated
            successes += info["is_success"]
        assert successes >= 16
