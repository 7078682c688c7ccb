"""DQN update: Double-DQN targets by hand, terminated vs truncated masking, n-step discount,
target-network updates, exploration schedules."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from q_grasp.learning.buffer import ReplayBatch
from q_grasp.learning.config import DQNConfig, ExplorationConfig
from q_grasp.learning.dqn import (
    dqn_update,
    load_optimizer_state,
    make_optimizer,
    td_target,
    update_target,
)
from q_grasp.learning.schedules import (
    ExponentialSchedule,
    LinearSchedule,
    boltzmann,
    epsilon_greedy,
    make_schedule,
)

torch.set_num_threads(1)


class TableQ(nn.Module):
    """Q(s, .) = table[s] for integer states encoded as a 1-element float observation."""

    def __init__(self, table):
        super().__init__()
        self.table = nn.Parameter(torch.tensor(table, dtype=torch.float32))

    def forward(self, obs):
        return self.table[obs[:, 0].long()]


def _batch(obs, actions, rewards, next_obs, terminated, truncated, n_steps):
    b = len(obs)
    return ReplayBatch(
        torch.tensor(obs, dtype=torch.float32).view(b, 1), torch.tensor(actions),
        torch.tensor(rewards, dtype=torch.float32),
        torch.tensor(next_obs, dtype=torch.float32).view(b, 1),
        torch.tensor(terminated, dtype=torch.float32),
        torch.tensor(truncated, dtype=torch.float32),
        torch.tensor(n_steps), torch.ones(b), torch.arange(b))


# Online net prefers action 0 in state 1, the target net prefers action 1 there.
ONLINE = [[0.0, 0.0], [5.0, 1.0]]
TARGET = [[0.0, 0.0], [2.0, 7.0]]


def test_double_dqn_target_by_hand():
    q, qt = TableQ(ONLINE), TableQ(TARGET)
    batch = _batch([0], [0], [0.5], [1], [0.0], [0.0], [1])
    g = 0.9
    # Double DQN: a* = argmax online(s') = 0, evaluated by the target net: 2.0.
    assert td_target(q, qt, batch, g, double_q=True).item() == pytest.approx(0.5 + g * 2.0)
    # Plain DQN: max target(s') = 7.0.
    assert td_target(q, qt, batch, g, double_q=False).item() == pytest.approx(0.5 + g * 7.0)


def test_terminated_masks_bootstrap_but_truncated_does_not():
    q, qt = TableQ(ONLINE), TableQ(TARGET)
    batch = _batch([0, 0, 0], [0, 0, 0], [1.0, 1.0, 1.0], [1, 1, 1], [1.0, 0.0, 1.0],
                   [0.0, 1.0, 1.0], [1, 1, 1])
    y = td_target(q, qt, batch, 0.5, double_q=True)
    np.testing.assert_allclose(y.numpy(), [1.0, 1.0 + 0.5 * 2.0, 1.0])


def test_gamma_zero_is_a_contextual_bandit():
    q, qt = TableQ(ONLINE), TableQ(TARGET)
    batch = _batch([0, 0], [0, 1], [1.0, 0.0], [1, 1], [0.0, 0.0], [0.0, 0.0], [1, 1])
    np.testing.assert_allclose(td_target(q, qt, batch, 0.0, True).numpy(), [1.0, 0.0])


def test_n_step_bootstrap_uses_gamma_to_the_window_length():
    q, qt = TableQ(ONLINE), TableQ(TARGET)
    batch = _batch([0, 0], [0, 0], [3.0, 3.0], [1, 1], [0.0, 0.0], [0.0, 1.0], [3, 2])
    y = td_target(q, qt, batch, 0.5, double_q=True)
    np.testing.assert_allclose(y.numpy(), [3.0 + 0.125 * 2.0, 3.0 + 0.25 * 2.0])


def test_update_moves_q_towards_target_and_reports():
    q, qt = TableQ(ONLINE), TableQ(TARGET)
    cfg = DQNConfig(gamma=0.9, learning_rate=0.1, optimizer="adam", loss="mse",
                    max_grad_norm=None)
    opt = make_optimizer(q.parameters(), cfg)
    batch = _batch([0], [1], [1.0], [1], [0.0], [0.0], [1])
    target = 1.0 + 0.9 * 2.0
    res = dqn_update(q, qt, opt, batch, cfg)
    assert res.loss == pytest.approx(target ** 2)
    assert res.td_errors[0] == pytest.approx(target)
    assert res.mean_q == 0.0 and res.mean_max_q == 0.0
    assert q.table[0, 1].item() > 0.0 and q.table[0, 0].item() == 0.0  # only Q(s, a) moved
    assert qt.table[1, 1].item() == 7.0  # target net untouched


def test_huber_loss_and_gradient_clipping():
    q, qt = TableQ([[0.0, 0.0], [0.0, 0.0]]), TableQ([[0.0, 0.0], [0.0, 0.0]])
    cfg = DQNConfig(loss="huber", huber_delta=1.0, max_grad_norm=0.5, learning_rate=1e-3)
    opt = make_optimizer(q.parameters(), cfg)
    batch = _batch([0], [0], [10.0], [1], [1.0], [0.0], [1])
    res = dqn_update(q, qt, opt, batch, cfg)
    assert res.loss == pytest.approx(10.0 - 0.5)  # linear part of Huber
    assert res.grad_norm == pytest.approx(1.0)  # reported before clipping


def test_target_update_hard_and_polyak():
    a, b = TableQ([[1.0, 1.0]]), TableQ([[0.0, 0.0]])
    update_target(a, b, tau=0.25)
    np.testing.assert_allclose(b.table.detach().numpy(), [[0.25, 0.25]])
    update_target(a, b, tau=1.0)
    np.testing.assert_allclose(b.table.detach().numpy(), [[1.0, 1.0]])


def test_target_update_of_several_tensors_and_buffers():
    a, b = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), nn.Sequential(
        nn.Linear(3, 4), nn.BatchNorm1d(4))
    a[1].running_mean.fill_(2.0)
    before = [p.detach().clone() for p in b.parameters()]
    update_target(a, b, tau=0.1)
    for p, tp, old in zip(a.parameters(), b.parameters(), before, strict=True):
        torch.testing.assert_close(tp.detach(), old + 0.1 * (p.detach() - old))
    torch.testing.assert_close(b[1].running_mean, a[1].running_mean)  # buffers are copied
    with pytest.raises(ValueError, match="parameters"):
        update_target(a, nn.Linear(3, 4))


def test_optimizer_state_of_a_per_parameter_adam_loads_and_resumes_alike():
    """A state saved by the per-parameter Adam (older checkpoints) loads into the fused one,
    which keeps its kernel and continues with the same moments."""
    torch.manual_seed(0)
    x = torch.randn(16, 3)
    old_net, new_net = nn.Linear(3, 2), nn.Linear(3, 2)
    new_net.load_state_dict(old_net.state_dict())
    old_opt = torch.optim.Adam(old_net.parameters(), lr=0.01)
    for _ in range(3):
        old_opt.zero_grad()
        old_net(x).pow(2).mean().backward()
        old_opt.step()
    new_net.load_state_dict(old_net.state_dict())
    new_opt = make_optimizer(new_net.parameters(), DQNConfig(learning_rate=0.01))
    # A copy, as from a file: a loaded state shares its tensors with the dict it came from.
    load_optimizer_state(new_opt, copy.deepcopy(old_opt.state_dict()))
    assert new_opt.param_groups[0]["fused"]
    for net, opt in ((old_net, old_opt), (new_net, new_opt)):
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()
    for p, q in zip(old_net.parameters(), new_net.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_schedules():
    lin = LinearSchedule(1.0, 0.1, 900)
    assert lin(0) == 1.0 and lin(450) == pytest.approx(0.55) and lin(10_000) == pytest.approx(0.1)
    exp = ExponentialSchedule(1.0, 0.05, 100.0)
    assert exp(100) == pytest.approx(0.05 + 0.95 * math.exp(-1))
    s = make_schedule(ExplorationConfig(start=1.0, end=0.0, fraction=0.9), 1000)
    assert s(900) == pytest.approx(0.0) and s(450) == pytest.approx(0.5)
    assert make_schedule(ExplorationConfig(schedule="constant", start=0.3), 10)(5) == 0.3


def test_epsilon_greedy_and_boltzmann():
    rng = np.random.default_rng(0)
    q = np.array([[0.0, 1.0, 0.0]] * 2000)
    assert np.all(epsilon_greedy(q, 0.0, rng) == 1)
    frac = np.mean(epsilon_greedy(q, 0.3, rng) != 1)
    assert frac == pytest.approx(0.2, abs=0.03)  # 0.3 * 2/3 pick another action
    # Boltzmann: p(a) ~ exp(Q / T).
    acts = boltzmann(q, 1.0, rng)
    p1 = math.e / (math.e + 2)
    assert np.mean(acts == 1) == pytest.approx(p1, abs=0.03)
    assert np.all(boltzmann(q * 1000, 0.01, rng) == 1)  # no overflow at low temperature


def test_gamma_zero_learner_update_without_next_observations_matches_the_full_batch():
    """At gamma 0 the learner samples without next observations; its update (Q, loss,
    gradients, new weights) equals one on the full batch drawn from the same seed."""
    from q_grasp.learning.agent import Learner
    from q_grasp.learning.buffer import ReplayBuffer
    from q_grasp.learning.config import ExperimentConfig
    from q_grasp.learning.networks import UNetQMap

    cfg = ExperimentConfig()
    cfg.dqn = DQNConfig(gamma=0.0, learning_rate=1e-2, batch_size=6, max_grad_norm=1.0)
    rng = np.random.default_rng(0)
    transitions = [(rng.random((4, 8, 8), np.float32), int(rng.integers(2 * 64)),
                    float(rng.random() < 0.5), rng.random((4, 8, 8), np.float32))
                   for _ in range(10)]
    learners = []
    for _ in range(2):
        torch.manual_seed(0)
        net = UNetQMap(4, 2, 8, 8, base_channels=4, depth=2, coord_channels=False)
        buf = ReplayBuffer(16, (4, 8, 8), channel_names=("r", "g", "b", "height"), seed=1)
        for obs, a, r, nxt in transitions:
            buf.add(obs, a, r, nxt, True, False)
        learners.append(Learner(net, buf, cfg))
    lean = learners[0].optimize()
    full_learner = learners[1]
    batch = full_learner.buffer.sample(6).to_torch()
    assert batch.next_observations is not None
    full = dqn_update(full_learner.q_net, full_learner.target_net, full_learner.optimizer,
                      batch, cfg.dqn)
    assert lean.loss == full.loss and lean.grad_norm == full.grad_norm
    np.testing.assert_array_equal(lean.td_errors, full.td_errors)
    for a, b in zip(learners[0].q_net.parameters(), full_learner.q_net.parameters(),
                    strict=True):
        assert torch.equal(a, b)
