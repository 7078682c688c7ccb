"""Checkpoints: round trip rebuilds an identical network; corrupt, foreign and mismatching files
give clear errors; resume continues counters and schedules."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from q_grasp.learning.checkpoint import (
    CheckpointError,
    checkpoint_bytes,
    load_checkpoint,
    load_checkpoint_bytes,
    save_checkpoint,
)
from q_grasp.learning.config import ExperimentConfig
from q_grasp.learning.networks import QNetwork, UNetQMap
from q_grasp.learning.trainer import restore_agent, run_training

torch.set_num_threads(1)


@pytest.mark.parametrize("net", [
    QNetwork(7, 8, hidden_sizes=[16, 16], dueling=True, obs_low=[-1] * 7, obs_high=[1] * 7),
    UNetQMap(4, 2, 20, 12, base_channels=4, depth=2, channel_scale=[1, 1, 1, 20.0],
             channel_names=["r", "g", "b", "height"]),
])
def test_round_trip_rebuilds_identical_network(tmp_path, net):
    cfg = ExperimentConfig()
    path = save_checkpoint(tmp_path / "m.safetensors", net, config=cfg,
                           env={"id": "x"}, counters={"env_steps": 5})
    ckpt = load_checkpoint(path)
    twin = ckpt.build_network()
    assert type(twin) is type(net) and twin.config == net.config
    x = torch.rand(3, *net.obs_shape)
    assert torch.equal(net(x), twin(x))
    assert ckpt.counters == {"env_steps": 5} and ckpt.config == cfg
    # Header is plain safetensors: metadata readable without q_grasp.
    n = int.from_bytes(path.read_bytes()[:8], "little")
    meta = json.loads(path.read_bytes()[8:8 + n])["__metadata__"]
    assert meta["format"] == "q_grasp.checkpoint" and json.loads(meta["network_config"])


def test_optimizer_state_round_trip():
    net = QNetwork(3, 2, hidden_sizes=[4])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.rand(5, 3)).sum().backward()
    opt.step()
    ckpt = load_checkpoint_bytes(checkpoint_bytes(net, optimizer=opt))
    opt2 = torch.optim.Adam(QNetwork(3, 2, hidden_sizes=[4]).parameters(), lr=1e-3)
    opt2.load_state_dict(ckpt.optimizer_state)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"])
        assert torch.equal(s1[k]["step"], s2[k]["step"])


def test_missing_corrupt_truncated_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(bad)
    good = checkpoint_bytes(QNetwork(3, 2, hidden_sizes=[4]))
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a q_grasp checkpoint"):
        load_checkpoint(foreign)


def test_weights_that_do_not_fit_the_config(tmp_path):
    net = QNetwork(3, 2, hidden_sizes=[4])
    data = checkpoint_bytes(net)
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    cfg = json.loads(header["__metadata__"]["network_config"])
    cfg["hidden_sizes"] = [5]
    header["__metadata__"]["network_config"] = json.dumps(cfg)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    tampered = len(raw).to_bytes(8, "little") + raw + data[8 + n:]
    with pytest.raises(CheckpointError, match="has shape"):
        load_checkpoint_bytes(tampered)


def test_network_that_does_not_match_the_env():
    ckpt = load_checkpoint_bytes(checkpoint_bytes(QNetwork(7, 8, hidden_sizes=[4])))
    with pytest.raises(CheckpointError, match="does not fit the environment.*shape"):
        ckpt.check_env(gym.make("CartPole-v1"))


def test_resume_continues_counters_schedules_and_buffer(tmp_path):
    cfg = ExperimentConfig.from_dict({
        "env": {"id": "CartPole-v1"}, "network": {"hidden_sizes": [16]},
        "buffer": {"capacity": 5000}, "dqn": {"batch_size": 16},
        "exploration": {"start": 1.0, "end": 0.0, "fraction": 1.0},
        "training": {"total_steps": 300, "learning_starts": 50, "eval_interval": 0,
                     "final_eval_episodes": 2, "log_interval": 100, "tensorboard": False}})
    first = run_training(cfg, tmp_path / "run", seed=0, log=lambda _m: None, plot=False)
    env = gym.make("CartPole-v1")
    longer = cfg.replace(training=cfg.training.__class__(**{**cfg.training.__dict__,
                                                             "total_steps": 600}))
    agent = restore_agent(env, first.checkpoint, longer)
    assert agent.env_steps == 300 and agent.learner.updates == 251
    assert len(agent.buffer) == 300
    assert agent.exploration_value == pytest.approx(0.5)  # linear 1 -> 0 over 600 steps
    x = np.zeros((1, 4), np.float32)
    ref = load_checkpoint(first.checkpoint).build_network()
    np.testing.assert_array_equal(agent.q_net.predict_q(x), ref.predict_q(x))
    res = run_training(longer, tmp_path / "run", seed=0, resume=first.checkpoint,
                       log=lambda _m: None, plot=False)
    ckpt = load_checkpoint(res.checkpoint)
    assert ckpt.counters["env_steps"] == 600 and ckpt.counters["updates"] == 551
    rows = (tmp_path / "run" / "progress.csv").read_text().strip().splitlines()
    assert rows[-1].startswith("600,") and sum(r.startswith("step") for r in rows) == 1
