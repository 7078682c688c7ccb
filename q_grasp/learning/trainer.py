"""Single-process training loop, greedy evaluation and metric logging (CSV + TensorBoard).

`run_training` is what `python -m q_grasp train` runs: it builds env and agent from an
`ExperimentConfig`, trains with periodic progress lines, evaluations and checkpoints, and ends
with a greedy evaluation and plots. Resuming from a checkpoint restores network, target,
optimizer, counters (hence schedules), RNG states and, when saved, the replay buffer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import deque
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from safetensors.numpy import load_file as np_load_file
from safetensors.numpy import save_file as np_save_file

from q_grasp.learning.agent import Actor, Agent
from q_grasp.learning.checkpoint import (
    CheckpointError,
    env_description,
    load_checkpoint,
    save_checkpoint,
)
from q_grasp.learning.config import ExperimentConfig
from q_grasp.learning.dqn import load_optimizer_state
from q_grasp.learning.her import GoalAdapter, HindsightRelabeler
from q_grasp.learning.metrics import CsvLog, ScalarWriter
from q_grasp.learning.tasks import add_shaping, make_env

PROGRESS_FIELDS = ["step", "episodes", "updates", "time_s", "steps_per_s", "epsilon",
                   "mean_return", "mean_length", "success_rate", "loss", "mean_q", "mean_max_q",
                   "grad_norm", "eval_mean_return", "eval_success_rate"]
EPISODE_FIELDS = ["step", "episode", "return", "length", "success"]
EVAL_SEED_BASE = 1_000_000


@dataclass
class EvalResult:
    """Greedy evaluation over episodes: returns, lengths, success flags."""

    returns: np.ndarray
    lengths: np.ndarray
    successes: np.ndarray | None
    """Per-episode success (info['is_success'] at the episode's last step), None if unknown."""
    attempt_successes: int = 0
    """Steps whose info['is_success'] was true (grasp attempts that lifted an object)."""

    @property
    def episodes(self) -> int:
        return len(self.returns)

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def return_ci95(self) -> float:
        """Half-width of the normal 95% confidence interval of the mean return."""
        n = len(self.returns)
        return float(1.96 * np.std(self.returns, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.successes)) if self.successes is not None else float("nan")

    @property
    def attempt_success_rate(self) -> float:
        steps = int(np.sum(self.lengths))
        return self.attempt_successes / steps if steps else float("nan")

    def success_ci95(self) -> tuple[float, float]:
        """Wilson score 95% interval of the success rate."""
        if self.successes is None:
            return float("nan"), float("nan")
        return wilson_interval(int(np.sum(self.successes)), len(self.successes))

    def attempt_success_ci95(self) -> tuple[float, float]:
        """Wilson score 95% interval of the attempt (step) success rate."""
        return wilson_interval(self.attempt_successes, int(np.sum(self.lengths)))

    def summary(self) -> str:
        text = (f"{self.episodes} episodes: mean return {self.mean_return:.3f} "
                f"+- {self.return_ci95:.3f} (95% CI), mean length {np.mean(self.lengths):.1f}")
        if self.successes is not None:
            lo, hi = self.success_ci95()
            text += f", success rate {self.success_rate:.3f} (95% CI {lo:.3f}-{hi:.3f})"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (unknown values are None, not NaN)."""
        lo, hi = self.success_ci95()
        out = {"episodes": self.episodes, "mean_return": self.mean_return,
               "return_ci95": self.return_ci95, "mean_length": float(np.mean(self.lengths)),
               "success_rate": self.success_rate, "success_ci95": [lo, hi],
               "attempt_success_rate": self.attempt_success_rate,
               "attempts": int(np.sum(self.lengths)), "attempt_successes": self.attempt_successes,
               "attempt_success_ci95": list(self.attempt_success_ci95())}
        if self.successes is None:
            out.update(success_rate=None, success_ci95=None, attempt_success_rate=None,
                       attempt_success_ci95=None)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in out.items()}


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def evaluate(env: gym.Env, actor: Actor, episodes: int, seed: int = EVAL_SEED_BASE,
             on_step: Callable[[np.ndarray, int, dict], None] | None = None) -> EvalResult:
    """Run `episodes` greedy episodes (env seeded seed, seed+1, ...); `on_step(obs, a, info)`."""
    returns, lengths, successes = [], [], []
    known_success = True
    attempt_successes = 0
    # Evaluation episodes get a failed-grasp memory of their own (the actor may be in the middle
    # of a training episode), and a U-Net acts with its evaluation smoothing.
    smoothing = getattr(getattr(actor, "q_net", None), "evaluation_smoothing", None)
    with (actor.own_episodes() if hasattr(actor, "own_episodes") else nullcontext(),
          smoothing() if smoothing is not None else nullcontext()):
        for i in range(episodes):
            obs, info = env.reset(seed=seed + i)
            total, length, done = 0.0, 0, False
            while not done:
                action = actor.act(obs, greedy=True, action_mask=info.get("action_mask"))
                if on_step is not None:
                    on_step(obs, action, info)
                obs, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                length += 1
                attempt_successes += int(bool(info.get("is_success", False)))
                done = terminated or truncated
                if hasattr(actor, "record_outcome"):
                    actor.record_outcome(action, bool(info.get("is_success", False)), done)
            if "is_success" not in info:
                known_success = False
            returns.append(total)
            lengths.append(length)
            successes.append(float(bool(info.get("is_success", False))))
    return EvalResult(np.array(returns), np.array(lengths),
                      np.array(successes) if known_success else None, attempt_successes)


class MetricsLogger:
    """progress.csv (one row per log interval), episodes.csv (one row per episode), TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool, append: bool = False) -> None:
        self.run_dir = run_dir
        self.progress = CsvLog(run_dir / "progress.csv", PROGRESS_FIELDS, append)
        self.episodes = CsvLog(run_dir / "episodes.csv", EPISODE_FIELDS, append)
        self.tb = ScalarWriter(run_dir / "tb") if tensorboard else None

    def log_episode(self, row: dict[str, Any]) -> None:
        self.episodes.write(row)
        if self.tb is not None:
            self.tb.scalars("episode", {"return": row["return"], "length": row["length"]},
                            row["step"])

    def log_progress(self, row: dict[str, Any]) -> None:
        self.progress.write({k: row.get(k) for k in PROGRESS_FIELDS})
        if self.tb is not None:
            self.tb.scalars("train", row, row["step"], skip=("step",))
            self.tb.flush()

    def close(self) -> None:
        self.progress.close()
        self.episodes.close()
        if self.tb is not None:
            self.tb.close()


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    """The result policy's checkpoint: model.safetensors, or best.safetensors with
    training.result "best"."""
    final_eval: EvalResult
    """The greedy evaluation of that policy at the end of training."""
    wall_time_s: float
    plot: Path | None = None


def _rng_state(agent: Agent) -> dict[str, Any]:
    return {"actor": agent.actor.rng.bit_generator.state,
            "buffer": agent.buffer.rng.bit_generator.state,
            "torch": torch.get_rng_state()}


def save_agent(path: Path, agent: Agent, cfg: ExperimentConfig, env: gym.Env,
               extra: dict[str, Any] | None = None) -> Path:
    """Checkpoint with everything a resume needs (weights, target, optimizer, counters, RNGs)."""
    return save_checkpoint(
        path, agent.q_net, target_net=agent.learner.target_net,
        optimizer=agent.learner.optimizer, config=cfg,
        env=env_description(env, cfg.env.id, cfg.env.kwargs), counters=agent.counters(),
        rng=_rng_state(agent), extra=extra)


def restore_agent(env: gym.Env, ckpt_path: str | Path, cfg: ExperimentConfig | None = None,
                  seed: int | None = None) -> Agent:
    """An Agent continued from a checkpoint (config from the file unless given)."""
    ckpt = load_checkpoint(ckpt_path)
    ckpt.check_env(env)
    cfg = cfg or ckpt.config
    if cfg is None:
        raise CheckpointError(f"checkpoint {ckpt.source}: holds no experiment config to resume")
    seed = int(ckpt.extra.get("seed", 0)) if seed is None else seed
    agent = Agent(env, cfg, seed=seed, network=(ckpt.network_kind, ckpt.network_config))
    agent.q_net.load_state_dict(ckpt.q_net_state)
    if ckpt.target_net_state is not None:
        agent.learner.target_net.load_state_dict(ckpt.target_net_state)
    else:
        agent.learner.target_net.load_state_dict(ckpt.q_net_state)
    if ckpt.optimizer_state is not None:
        try:
            load_optimizer_state(agent.learner.optimizer, ckpt.optimizer_state)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint {ckpt.source}: optimizer state does not fit: "
                                  f"{exc}") from None
    agent.set_counters(ckpt.counters)
    if "actor" in ckpt.rng:
        agent.actor.rng.bit_generator.state = ckpt.rng["actor"]
    if "buffer" in ckpt.rng:
        agent.buffer.rng.bit_generator.state = ckpt.rng["buffer"]
    if "torch" in ckpt.rng:
        torch.set_rng_state(ckpt.rng["torch"])
    replay = Path(ckpt_path).with_name("replay.safetensors")
    if replay.is_file():
        agent.buffer.load_state_dict(np_load_file(str(replay)))
    return agent


def run_training(cfg: ExperimentConfig, run_dir: str | Path, seed: int = 0,
                 resume: str | Path | None = None, log: Callable[[str], None] = print,
                 plot: bool = True) -> TrainResult:
    """Train as configured; writes CSV/TensorBoard metrics, checkpoints, eval.json, plots."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tcfg = cfg.training
    torch.set_num_threads(tcfg.torch_threads)
    env = add_shaping(make_env(cfg.env), cfg.env, cfg.dqn.gamma)
    eval_env = make_env(cfg.env)
    if resume is not None:
        agent = restore_agent(env, resume, cfg, seed)
        log(f"resumed from {resume} at step {agent.env_steps} ({len(agent.buffer)} transitions "
            f"in the replay buffer)")
    else:
        agent = Agent(env, cfg, seed=seed)
    relabeler = None
    if cfg.buffer.her_k:
        relabeler = HindsightRelabeler(GoalAdapter(env), agent.buffer, cfg.buffer.her_k,
                                       np.random.default_rng(seed + 17))
    (run_dir / "config.yaml").write_text(_yaml_dump(cfg))
    logger = MetricsLogger(run_dir, tcfg.tensorboard, append=resume is not None)
    env.action_space.seed(seed)
    log(f"training {cfg.env.id} seed {seed} for {tcfg.total_steps} steps: network "
        f"{agent.q_net.kind} ({sum(p.numel() for p in agent.q_net.parameters())} parameters), "
        f"replay buffer {cfg.buffer.capacity} ({agent.buffer.nbytes / 2**20:.1f} MiB) -> "
        f"{run_dir}")

    window_returns: deque[float] = deque(maxlen=100)
    window_lengths: deque[int] = deque(maxlen=100)
    window_success: deque[float] = deque(maxlen=100)
    updates: list[tuple[float, float, float, float]] = []
    best_eval = -math.inf
    last_eval: EvalResult | None = None
    t_start = time.perf_counter()
    t_log, step_log = t_start, agent.env_steps
    extra = {"seed": seed}

    obs, info = env.reset(seed=seed + 7919 * agent.episodes)
    ep_return, ep_len = 0.0, 0
    while agent.env_steps < tcfg.total_steps:
        action = agent.act(obs, action_mask=info.get("action_mask"))
        next_obs, reward, terminated, truncated, info = env.step(action)
        agent.observe(obs, action, float(reward), next_obs, terminated, truncated)
        agent.actor.record_outcome(action, bool(info.get("is_success", False)),
                                   terminated or truncated)
        if relabeler is not None:
            relabeler.record(obs, action, next_obs)
        ep_return += float(info.get("raw_reward", reward))
        ep_len += 1
        obs = next_obs
        step = agent.env_steps
        if terminated or truncated:
            success = info.get("is_success")
            window_returns.append(ep_return)
            window_lengths.append(ep_len)
            if success is not None:
                window_success.append(float(bool(success)))
            logger.log_episode({"step": step, "episode": agent.episodes, "return": ep_return,
                                "length": ep_len,
                                "success": "" if success is None else int(bool(success))})
            if relabeler is not None:
                relabeler.end_episode()
            obs, info = env.reset()
            ep_return, ep_len = 0.0, 0

        if step >= tcfg.learning_starts and step % tcfg.train_freq == 0:
            for _ in range(tcfg.gradient_steps):
                result = agent.optimize()
                if result is not None:
                    updates.append((result.loss, result.mean_q, result.mean_max_q,
                                    result.grad_norm))

        eval_row: dict[str, float] = {}
        # With result "best" the weights at the end compete with the periodic ones.
        if ((tcfg.eval_interval and step % tcfg.eval_interval == 0 and step < tcfg.total_steps)
                or (step == tcfg.total_steps and tcfg.result == "best")):
            last_eval = evaluate(eval_env, agent.actor, tcfg.eval_episodes,
                                 seed=EVAL_SEED_BASE + 10_000 * seed)
            eval_row = {"eval_mean_return": last_eval.mean_return,
                        "eval_success_rate": last_eval.success_rate}
            score = (last_eval.success_rate if last_eval.successes is not None
                     else last_eval.mean_return)
            log(f"  eval at step {step}: {last_eval.summary()}")
            if tcfg.keep_best and score >= best_eval:
                best_eval = score
                save_agent(run_dir / "best.safetensors", agent, cfg, env, extra)

        if step % tcfg.log_interval == 0 or step == tcfg.total_steps or eval_row:
            now = time.perf_counter()
            row = _progress_row(agent, step, now - t_start, (step - step_log) /
                                max(now - t_log, 1e-9), window_returns, window_lengths,
                                window_success, updates, eval_row)
            logger.log_progress(row)
            log(_progress_line(row, tcfg.total_steps))
            t_log, step_log, updates = now, step, []

        if tcfg.checkpoint_interval and step % tcfg.checkpoint_interval == 0:
            save_agent(run_dir / f"checkpoint_{step}.safetensors", agent, cfg, env, extra)

    wall = time.perf_counter() - t_start
    ckpt_path = save_agent(run_dir / "model.safetensors", agent, cfg, env, extra)
    if tcfg.save_replay_buffer:
        np_save_file(agent.buffer.state_dict(), str(run_dir / "replay.safetensors"))
    final_seed = EVAL_SEED_BASE + 10_000 * seed + 5_000
    final = evaluate(eval_env, agent.actor, tcfg.final_eval_episodes, seed=final_seed)
    best = None
    best_path = run_dir / "best.safetensors"
    if tcfg.keep_best and best_path.is_file():
        # The model chosen by the periodic evaluations, judged on the final-evaluation episodes.
        best_net = load_checkpoint(best_path)
        best_actor = Actor(best_net.build_network(), cfg.exploration, tcfg.total_steps)
        best = evaluate(eval_env, best_actor, tcfg.final_eval_episodes, seed=final_seed)
        log(f"best periodic-eval model (step {best_net.counters.get('env_steps')}): "
            f"{best.summary()}")
    result_eval, result_path = final, ckpt_path
    if tcfg.result == "best" and best is not None:
        result_eval, result_path = best, best_path
    (run_dir / "eval.json").write_text(json.dumps(
        {"env_id": cfg.env.id, "seed": seed, "env_steps": agent.env_steps,
         "episodes": agent.episodes, "updates": agent.learner.updates, "train_wall_s": wall,
         "result": tcfg.result, "result_checkpoint": result_path.name,
         "final_eval": result_eval.to_dict(),
         "last_model_eval": final.to_dict(),
         "best_eval": None if best is None else best.to_dict(),
         "last_periodic_eval": last_eval.to_dict() if last_eval else None}, indent=2))
    logger.close()
    env.close()
    eval_env.close()
    plot_path = None
    if plot:
        from q_grasp.learning.plotting import plot_runs

        plot_path = plot_runs([run_dir], run_dir / "plots.png")
    return TrainResult(run_dir, result_path, result_eval, wall, plot_path)


def _progress_row(agent: Agent, step: int, elapsed: float, sps: float, returns: deque,
                  lengths: deque, success: deque, updates: list, eval_row: dict) -> dict:
    u = np.array(updates) if updates else None
    row = {"step": step, "episodes": agent.episodes, "updates": agent.learner.updates,
           "time_s": elapsed, "steps_per_s": sps, "epsilon": agent.exploration_value,
           "mean_return": float(np.mean(returns)) if returns else None,
           "mean_length": float(np.mean(lengths)) if lengths else None,
           "success_rate": float(np.mean(success)) if success else None,
           "loss": float(u[:, 0].mean()) if u is not None else None,
           "mean_q": float(u[:, 1].mean()) if u is not None else None,
           "mean_max_q": float(u[:, 2].mean()) if u is not None else None,
           "grad_norm": float(u[:, 3].mean()) if u is not None else None}
    row.update(eval_row)
    return row


def _progress_line(row: dict, total: int) -> str:
    def f(key: str, spec: str) -> str:
        v = row.get(key)
        return "-" if v is None or not np.isfinite(v) else format(v, spec)

    width = len(str(total))
    return (f"step {row['step']:>{width}}/{total} | ep {row['episodes']:>5} | success "
            f"{f('success_rate', '.2f')} | return {f('mean_return', '8.3f')} | len "
            f"{f('mean_length', '6.1f')} | loss {f('loss', '.4f')} | max-q "
            f"{f('mean_max_q', '.3f')} | eps {f('epsilon', '.3f')} | "
            f"{row['steps_per_s']:.0f} steps/s")


def _yaml_dump(cfg: ExperimentConfig) -> str:
    import yaml

    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
