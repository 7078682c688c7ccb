"""The DQN update as one readable function, plus target-network updates and the optimizer.

    y = R + (1 - terminated) * gamma^k * Q_target(s', a*),
    a* = argmax_a Q_online(s', a) (Double DQN) or argmax_a Q_target(s', a),

where R is the k-step discounted return stored by the replay buffer. Only `terminated` masks
the bootstrap term: a time-limit cut-off (truncated) still bootstraps.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from q_grasp.learning.buffer import ReplayBatch
from q_grasp.learning.config import DQNConfig


class UpdateResult(NamedTuple):
    """What one gradient step reports."""

    loss: float
    """Mean (importance-weighted) Huber/MSE TD loss, or binary cross-entropy."""
    mean_q: float
    """Mean Q(s, a) of the batch's actions."""
    mean_max_q: float
    """Mean max_a Q(s, a) over the batch (model confidence); NaN when the update was asked not
    to measure it (it costs full Q-maps for a U-Net)."""
    grad_norm: float
    """Gradient L2 norm before clipping."""
    td_errors: np.ndarray
    """Per-sample TD errors y - Q(s, a) (for prioritized replay)."""


def make_optimizer(params, cfg: DQNConfig) -> torch.optim.Optimizer:
    """Adam or AdamW as configured (the learner owns it; networks never do).

    The fused kernel updates all parameters in one call: on CPU torch's default is a Python loop
    over the parameters, one small kernel each.
    """
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad,
               fused=True)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a saved optimizer state but keep this optimizer's kernel choice (fused/foreach):
    a state saved by an older optimizer would otherwise switch it back to the per-parameter
    loop."""
    kernels = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, kernel in zip(optimizer.param_groups, kernels, strict=True):
        group.update(kernel)


def td_target(q_net: nn.Module, target_net: nn.Module, batch: ReplayBatch, gamma: float,
              double_q: bool) -> torch.Tensor:
    """TD targets (B,) for a torch batch, computed without gradients."""
    if gamma == 0.0:
        # Contextual bandit (e.g. one grasp attempt judged on its own): nothing to bootstrap,
        # which saves two forward passes of an image-sized network.
        return batch.rewards.clone()
    with torch.no_grad():
        next_q_target = target_net(batch.next_observations).flatten(1)
        if double_q:
            next_actions = q_net(batch.next_observations).flatten(1).argmax(dim=1, keepdim=True)
        else:
            next_actions = next_q_target.argmax(dim=1, keepdim=True)
        next_q = next_q_target.gather(1, next_actions).squeeze(1)
        discount = torch.pow(torch.as_tensor(gamma, dtype=next_q.dtype), batch.n_steps)
        return batch.rewards + (1.0 - batch.terminated) * discount * next_q


def dqn_update(q_net: nn.Module, target_net: nn.Module, optimizer: torch.optim.Optimizer,
               batch: ReplayBatch, cfg: DQNConfig, measure_max_q: bool = True) -> UpdateResult:
    """One gradient step on a torch `ReplayBatch` (see module docstring for the target);
    ``measure_max_q=False`` lets a network skip the passes that only the logged mean max-Q
    needs (then NaN unless it comes for free)."""
    target = td_target(q_net, target_net, batch, cfg.gamma, cfg.double_q)
    taken_and_max = getattr(q_net, "q_taken_and_max", None)
    if cfg.loss == "bce":
        # Q = sigmoid(logit) = P(success). Taken on the logits, the loss's gradient is p - y:
        # no sigmoid-derivative factor that vanishes where the sigmoid saturates.
        if taken_and_max is None or getattr(q_net, "config", {}).get("output") != "sigmoid":
            raise ValueError("dqn.loss bce needs a network with a sigmoid output "
                             "(network.unet_output: sigmoid)")
        logit, q_max = taken_and_max(batch.observations, batch.actions, measure_max_q,
                                     logits=True)
        per_sample = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
        q_taken = torch.sigmoid(logit)
    elif taken_and_max is not None:  # q_grasp networks (the U-Net evaluates only taken pixels)
        q_taken, q_max = taken_and_max(batch.observations, batch.actions, measure_max_q)
    else:
        q_all = q_net(batch.observations).flatten(1)
        q_taken = q_all.gather(1, batch.actions.long().unsqueeze(1)).squeeze(1)
        q_max = float(q_all.detach().max(dim=1).values.mean())
    q_max = math.nan if q_max is None else q_max
    if cfg.loss == "huber":
        per_sample = F.huber_loss(q_taken, target, reduction="none", delta=cfg.huber_delta)
    elif cfg.loss == "mse":
        per_sample = F.mse_loss(q_taken, target, reduction="none")
    loss = (batch.weights * per_sample).mean()

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = clip_grad_norm(optimizer, cfg.max_grad_norm)
    optimizer.step()

    with torch.no_grad():
        td_errors = (target - q_taken).cpu().numpy()
        return UpdateResult(float(loss), float(q_taken.mean()), q_max, float(grad_norm),
                            td_errors)


def clip_grad_norm(optimizer: torch.optim.Optimizer, max_norm: float | None) -> torch.Tensor:
    """The L2 norm of all gradients of the optimizer's parameters, scaled down to ``max_norm``
    when above it (None: only measured); torch's ``clip_grad_norm_`` arithmetic, in two
    multi-tensor calls without its per-call grouping of tensors by device and dtype."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"]
             if p.grad is not None]
    with torch.no_grad():
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        if max_norm is not None:
            torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total


class TargetUpdater:
    """theta' <- tau * theta + (1 - tau) * theta' (tau = 1: hard copy); buffers are copied.

    The tensor lists are gathered once (walking a module's parameters costs more than updating
    a small network) and updated with one multi-tensor call instead of one kernel per tensor.
    """

    def __init__(self, q_net: nn.Module, target_net: nn.Module) -> None:
        self.params, self.target_params = list(q_net.parameters()), list(target_net.parameters())
        self.buffers, self.target_buffers = list(q_net.buffers()), list(target_net.buffers())
        if (len(self.params), len(self.buffers)) != (len(self.target_params),
                                                     len(self.target_buffers)):
            raise ValueError(f"update_target: {len(self.params)} parameters and "
                             f"{len(self.buffers)} buffers vs {len(self.target_params)} and "
                             f"{len(self.target_buffers)} in the target network")

    def __call__(self, tau: float = 1.0) -> None:
        with torch.no_grad():
            if tau >= 1.0:
                torch._foreach_copy_(self.target_params, self.params)
            else:
                torch._foreach_lerp_(self.target_params, self.params, tau)
            if self.buffers:
                torch._foreach_copy_(self.target_buffers, self.buffers)


def update_target(q_net: nn.Module, target_net: nn.Module, tau: float = 1.0) -> None:
    """theta' <- tau * theta + (1 - tau) * theta' (tau = 1: hard copy); buffers are copied."""
    TargetUpdater(q_net, target_net)(tau)
