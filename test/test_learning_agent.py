"""Agent: seeded runs repeat exactly, actor/learner roles, image (U-Net) pixel actions, and a
small-budget Reacher run that is clearly better than the random policy."""

import csv
import json
import math

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from q_grasp.learning.agent import MAX_Q_INTERVAL, Actor, Agent
from q_grasp.learning.config import ExperimentConfig
from q_grasp.learning.trainer import evaluate, run_training

torch.set_num_threads(1)


class FakeGraspEnv(gym.Env):
    """TopDownGrasp layout: obs (C,H,W) r,g,b,height; Discrete(R*H*W); reward 1 for picking the
    pixel of the one bright square at a rotation that matches its (even/odd) orientation."""

    metadata = {"render_modes": []}

    def __init__(self, height=12, width=10, rotations=2):
        self.h, self.w, self.r = height, width, rotations
        self.image_channels = ("r", "g", "b", "height")
        self.observation_space = spaces.Box(0.0, 1.0, (4, height, width), np.float32)
        self.action_space = spaces.Discrete(rotations * height * width)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.row = int(self.np_random.integers(1, self.h - 1))
        self.col = int(self.np_random.integers(1, self.w - 1))
        obs = np.zeros((4, self.h, self.w), np.float32)
        obs[:3, self.row, self.col] = 1.0
        obs[3, self.row, self.col] = 0.03
        self.obs = obs
        return obs, {}

    def step(self, action):
        rot, rest = divmod(int(action), self.h * self.w)
        row, col = divmod(rest, self.w)
        ok = (row, col) == (self.row, self.col)
        return self.obs, float(ok), True, False, {"is_success": ok}


def _cfg(**sections) -> ExperimentConfig:
    base = {"env": {"id": "CartPole-v1"},
            "network": {"hidden_sizes": [32, 32]},
            "buffer": {"capacity": 2000},
            "dqn": {"batch_size": 32, "target_update_interval": 50},
            "training": {"total_steps": 600, "learning_starts": 100, "eval_interval": 0,
                         "final_eval_episodes": 3, "log_interval": 300, "tensorboard": False,
                         "save_replay_buffer": False}}
    for k, v in sections.items():
        base.setdefault(k, {}).update(v)
    return ExperimentConfig.from_dict(base)


def test_seeded_runs_repeat_exactly(tmp_path):
    cfg = _cfg()
    results = []
    for name in ("a", "b"):
        run_training(cfg, tmp_path / name, seed=3, log=lambda _m: None, plot=False)
        results.append(((tmp_path / name / "episodes.csv").read_text(),
                        (tmp_path / name / "model.safetensors")))
    assert results[0][0] == results[1][0]
    from q_grasp.learning.checkpoint import load_checkpoint

    a, b = (load_checkpoint(p) for _, p in results)
    for k in a.q_net_state:
        assert torch.equal(a.q_net_state[k], b.q_net_state[k])
    run_training(cfg, tmp_path / "c", seed=4, log=lambda _m: None, plot=False)
    assert (tmp_path / "c" / "episodes.csv").read_text() != results[0][0]


def test_result_best_reports_the_best_evaluated_model(tmp_path):
    cfg = _cfg(training={"eval_interval": 200, "eval_episodes": 2, "keep_best": True,
                         "result": "best"})
    res = run_training(cfg, tmp_path / "r", seed=0, log=lambda _m: None, plot=False)
    saved = json.loads((tmp_path / "r" / "eval.json").read_text())
    assert saved["result"] == "best" and saved["result_checkpoint"] == "best.safetensors"
    assert res.checkpoint == tmp_path / "r" / "best.safetensors"
    assert saved["final_eval"] == saved["best_eval"]
    assert saved["last_model_eval"]["episodes"] == 3
    assert res.final_eval.mean_return == saved["best_eval"]["mean_return"]
    # The weights at the end compete (an evaluation at step 600), and the later of equal scores
    # is kept.
    with open(tmp_path / "r" / "progress.csv") as f:
        evals = [(float(r["eval_mean_return"]), int(r["step"])) for r in csv.DictReader(f)
                 if r["eval_mean_return"]]
    assert [step for _, step in evals] == [200, 400, 600]
    top = max(score for score, _ in evals)
    from q_grasp.learning.checkpoint import load_checkpoint

    kept = load_checkpoint(tmp_path / "r" / "best.safetensors").counters["env_steps"]
    assert kept == max(step for score, step in evals if score == top)


def test_actor_and_learner_are_separable():
    env = gym.make("CartPole-v1")
    cfg = _cfg()
    agent = Agent(env, cfg, seed=0)
    # An actor with its own network copy, updated from the learner's weights (the ROS split).
    from q_grasp.learning.networks import build_network

    remote = Actor(build_network(agent.q_net.kind, agent.q_net.config), cfg.exploration,
                   total_steps=100, seed=1)
    obs, _ = env.reset(seed=0)
    for _ in range(64):
        a = remote.act(obs, epsilon=1.0)
        nxt, r, te, tr, _ = env.step(a)
        agent.learner.add_transition(obs, a, r, nxt, te, tr, stream="actor-1")
        obs = nxt if not (te or tr) else env.reset()[0]
    assert agent.learner.optimize() is not None
    remote.load_weights(agent.learner.weights())
    x = np.zeros((4, 4), np.float32)
    np.testing.assert_array_equal(remote.q_net.predict_q(x), agent.q_net.predict_q(x))


def test_unet_agent_on_fake_grasp_env_learns_pixel_actions():
    env = FakeGraspEnv()
    cfg = _cfg(env={"id": "fake"}, network={"kind": "auto", "unet_base_channels": 8,
                                             "unet_depth": 2},
               buffer={"augment": {"rotate90": False, "flip": True, "translate_px": 1}},
               dqn={"batch_size": 16, "learning_rate": 3e-3, "target_update_interval": 20},
               exploration={"start": 1.0, "end": 0.0, "fraction": 0.5})
    agent = Agent(env, cfg, seed=0)
    assert agent.q_net.kind == "unet" and agent.q_net.n_actions == env.action_space.n
    assert agent.buffer.obs["color"].dtype == np.uint8
    obs, _ = env.reset(seed=0)
    max_q = []
    for _ in range(300):
        a = agent.act(obs)
        nxt, r, te, tr, _ = env.step(a)
        agent.observe(obs, a, r, nxt, te, tr)
        obs, _ = env.reset()
        if agent.env_steps >= 32:
            max_q.append(agent.optimize().mean_max_q)
    res = evaluate(env, agent.actor, 30, seed=123)
    assert res.success_rate >= 0.5  # random: 1 / (H*W) = 0.8%
    # The mean max-Q is measured every MAX_Q_INTERVAL updates and repeated in between.
    assert all(math.isfinite(q) for q in max_q)
    for start in range(0, len(max_q), MAX_Q_INTERVAL):
        assert len(set(max_q[start:start + MAX_Q_INTERVAL])) == 1
    assert len(set(max_q)) > 1


def test_boltzmann_exploration_acts_in_range():
    env = FakeGraspEnv(8, 8, 2)
    cfg = _cfg(network={"kind": "unet", "unet_base_channels": 4, "unet_depth": 1},
               exploration={"strategy": "boltzmann", "start": 1.0, "end": 0.1})
    agent = Agent(env, cfg, seed=0)
    obs, _ = env.reset(seed=0)
    acts = {agent.act(obs) for _ in range(50)}
    assert all(0 <= a < env.action_space.n for a in acts) and len(acts) > 1


def test_policy_node_explores_as_the_experiment_or_its_own_epsilon_says():
    """The policy's epsilon parameters resolved against the experiment (ROS-free), and an actor
    switched to another schedule at run time (ros2 param set)."""
    import dataclasses

    import pytest

    from q_grasp.learning.tasks import default_config, resolve_task
    from q_grasp.node_params.policy import PolicyConfig

    experiment = default_config(resolve_task("reacher"))
    assert PolicyConfig(task="reacher").exploration(experiment) == (
        experiment.exploration, experiment.training.total_steps)
    own = PolicyConfig(task="reacher", epsilon_schedule="linear", epsilon_start=0.5,
                       epsilon_end=0.1, epsilon_decay_steps=40)
    exploration, total = own.exploration(experiment)
    assert (exploration.start, exploration.end, total) == (0.5, 0.1, 40)
    assert exploration.use_action_mask == experiment.exploration.use_action_mask
    boltzmann = dataclasses.replace(experiment, exploration=dataclasses.replace(
        experiment.exploration, strategy="boltzmann"))
    with pytest.raises(ValueError, match="epsilon_schedule: experiment needs an epsilon_greedy"):
        PolicyConfig(task="reacher").exploration(boltzmann)

    env = gym.make("CartPole-v1")
    actor = Actor(Agent(env, _cfg(), seed=0).q_net, *PolicyConfig(
        task="reacher").exploration(experiment), seed=0)
    schedule = actor.schedule
    actor.set_exploration(*PolicyConfig(task="reacher").exploration(experiment))
    assert actor.schedule is schedule  # unchanged: the schedule (and its state) is kept
    actor.set_exploration(exploration, total)
    assert actor.exploration_value(0) == pytest.approx(0.5)
    assert actor.exploration_value(40) == pytest.approx(0.1)
