"""Hindsight relabelling: goal layout, rewards and the observations it refuses."""

import numpy as np
import pytest

from q_grasp.envs.reacher import ReacherEnv, reacher_reward
from q_grasp.learning.buffer import ReplayBuffer
from q_grasp.learning.her import GoalAdapter, HindsightRelabeler


@pytest.mark.parametrize("reward", ["sparse", "dense", "distance"])
def test_relabelled_transitions_carry_the_new_goal_and_its_reward(reward: str) -> None:
    env = ReacherEnv(reward=reward, dtheta_rad=0.07)
    adapter = GoalAdapter(env)
    buffer = ReplayBuffer(100, env.observation_space.shape, seed=0)
    relabeler = HindsightRelabeler(adapter, buffer, k=2, rng=np.random.default_rng(0))
    obs, _ = env.reset(seed=3)
    for action in (0, 2, 4, 1):
        next_obs, *_ = env.step(action)
        relabeler.record(obs, action, next_obs)
        obs = next_obs
    assert relabeler.end_episode() == 8 and len(buffer) == 8
    batch = buffer.sample(32)
    for o, o2, r, term in zip(batch.observations, batch.next_observations, batch.rewards,
                                batch.terminated):
        goal = o[-3:]
        np.testing.assert_array_equal(o2[-3:], goal)  # one goal for s and s'
        ee = env.chain.fk(np.concatenate([o2[:4], env.joint_positions[4:]]))[:3, 3]
        distance = float(np.linalg.norm(ee - goal))
        assert r == pytest.approx(reacher_reward(distance, 0.01, reward), abs=1e-4)
        assert bool(term) == (distance <= 0.01)


@pytest.mark.parametrize("observation", ["joints_goal_ee", "joints_goal_ee_dir",
                                         "joints_goal_ee_ik"])
def test_relabelling_refuses_observations_with_goal_dependent_entries(observation) -> None:
    with pytest.raises(ValueError, match="hindsight relabelling needs the 'joints_goal'"):
        GoalAdapter(ReacherEnv(observation=observation))
