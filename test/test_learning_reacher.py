"""Learning smoke test: a small-budget Reacher run is clearly better than the random policy."""

import numpy as np
import pytest
import torch

from q_grasp.learning.config import ExperimentConfig
from q_grasp.learning.trainer import EVAL_SEED_BASE, evaluate, run_training

torch.set_num_threads(1)


def _random_policy_eval(env, episodes, seed):
    class RandomActor:
        rng = np.random.default_rng(0)

        def act(self, obs, greedy=False, action_mask=None):
            return int(self.rng.integers(env.action_space.n))

    return evaluate(env, RandomActor(), episodes, seed=seed)


def test_small_budget_reacher_is_clearly_better_than_random(tmp_path):
    pytest.importorskip("q_grasp.envs.reacher")
    from q_grasp.learning.tasks import default_config, make_env

    data = default_config("q_grasp/Reacher-v0").to_dict()
    # The packaged reacher config (config/reacher.yaml: goal joints in the observation, sparse
    # success reward) with one fixed goal and 4,000 steps: 57-77% success on seeds 0-2 against
    # random's 0%, far enough from the threshold not to pass or fail with the CPU's
    # floating-point paths.
    data["env"]["kwargs"].update(fixed_goal=[0.15, 0.0, 0.05], episode_length=100)
    data["training"].update(total_steps=4000, eval_interval=0, final_eval_episodes=30,
                            tensorboard=False, save_replay_buffer=False)
    cfg = ExperimentConfig.from_dict(data)
    res = run_training(cfg, tmp_path / "reacher", seed=1, log=lambda _m: None, plot=False)
    random_res = _random_policy_eval(make_env(cfg.env), 30, seed=EVAL_SEED_BASE + 10_000 + 5_000)
    assert res.final_eval.success_rate >= random_res.success_rate + 0.25
    assert res.final_eval.mean_return > random_res.mean_return
