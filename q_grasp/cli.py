"""Single-process command line: `python -m q_grasp train | eval | plot | replay-buffer`.

  python -m q_grasp train --task reacher --seed 0 --out runs/reacher
  python -m q_grasp train --task CartPole-v1 --seeds 0,1,2 --steps 50000 --out runs/cartpole
  python -m q_grasp eval --checkpoint runs/reacher/model.safetensors --episodes 100 --video r.gif
  python -m q_grasp plot runs/reacher runs/other --out compare.png
  python -m q_grasp replay-buffer runs/grasp_ros/recording.mcap --task grasp --out runs/warm

Bad input (unknown task, invalid config, corrupt checkpoint) ends with one clear error line on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np

from q_grasp.config import apply_overrides

USAGE_ERROR = 2


class CliError(ValueError):
    """A command-line argument is wrong."""


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CliError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise CliError(f"--seeds: expected distinct comma-separated integers, got {text!r}")
    return seeds


def _load_config(args: argparse.Namespace):
    from q_grasp.learning.config import ExperimentConfig
    from q_grasp.learning.tasks import default_config, resolve_task

    env_id = resolve_task(args.task) if args.task else None
    if args.config:
        cfg = ExperimentConfig.from_yaml(args.config)
        if env_id is not None and cfg.env.id != env_id:
            if cfg.env.kwargs:
                raise CliError(f"--task {args.task} ({env_id}) differs from env.id {cfg.env.id!r}"
                               f" of {args.config}, whose env.kwargs are for that env")
            cfg.env.id = env_id
    elif env_id is not None:
        cfg = default_config(env_id)
    else:
        raise CliError("train: give --task (reacher, grasp, or a gymnasium id) or --config")
    return _overridden(cfg, args)


def _overridden(cfg, args: argparse.Namespace):
    """``cfg`` with --steps and the --set overrides applied (validated as a whole)."""
    from q_grasp.learning.config import ExperimentConfig

    data = cfg.to_dict()
    if args.steps is not None:
        data["training"]["total_steps"] = args.steps
    return ExperimentConfig.from_dict(apply_overrides(data, args.set or []))


def cmd_train(args: argparse.Namespace) -> int:
    from q_grasp.learning.checkpoint import load_checkpoint
    from q_grasp.learning.plotting import plot_runs
    from q_grasp.learning.trainer import run_training

    if args.resume:
        ckpt = load_checkpoint(args.resume)
        if args.config or args.task:
            cfg = _load_config(args)
        else:
            if ckpt.config is None:
                raise CliError(f"--resume {args.resume}: checkpoint holds no training config")
            cfg = _overridden(ckpt.config, args)
        seeds = [int(ckpt.extra.get("seed", 0)) if args.seed is None else args.seed]
        out = Path(args.out) if args.out else Path(args.resume).parent
    else:
        cfg = _load_config(args)
        if args.seeds and args.seed is not None:
            raise CliError("train: give either --seed or --seeds, not both")
        seeds = _parse_seeds(args.seeds) if args.seeds else [args.seed or 0]
        out = Path(args.out) if args.out else Path("runs") / cfg.env.id.split("/")[-1]
    if args.resume and args.seeds:
        raise CliError("train: --resume continues one run; --seeds does not apply")
    log = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, flush=True))
    results = []
    for seed in seeds:
        run_dir = out / f"seed_{seed}" if len(seeds) > 1 else out
        res = run_training(cfg, run_dir, seed=seed, resume=args.resume, log=log,
                           plot=not args.no_plot)
        results.append(res)
        print(f"[seed {seed}] greedy eval: {res.final_eval.summary()} "
              f"(trained {cfg.training.total_steps} steps in {res.wall_time_s:.0f} s)",
              flush=True)
    if len(results) > 1:
        plot = None if args.no_plot else plot_runs([out], out / "plots.png")
        rates = [r.final_eval.success_rate for r in results]
        rets = [r.final_eval.mean_return for r in results]
        summary = {"seeds": seeds, "median_success_rate": statistics.median(rates),
                   "median_mean_return": statistics.median(rets),
                   "per_seed": [r.final_eval.to_dict() for r in results]}
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"median over seeds {seeds}: success rate {summary['median_success_rate']:.3f}, "
              f"mean return {summary['median_mean_return']:.3f}")
        if plot:
            print(f"plots: {plot}")
    else:
        res = results[0]
        print(f"checkpoint: {res.checkpoint}")
        if res.plot:
            print(f"plots: {res.plot}")
        print(f"metrics: {res.run_dir / 'progress.csv'}, {res.run_dir / 'episodes.csv'}, "
              f"TensorBoard: {res.run_dir / 'tb'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from q_grasp.learning.agent import Actor
    from q_grasp.learning.checkpoint import load_checkpoint
    from q_grasp.learning.config import EnvConfig, ExplorationConfig
    from q_grasp.learning.networks import check_smoothing_px, image_channel_names
    from q_grasp.learning.tasks import make_env, resolve_task
    from q_grasp.learning.trainer import EVAL_SEED_BASE, evaluate
    from q_grasp.learning.visualize import (
        camera_image,
        closing_direction_px,
        q_map_overlay,
        save_gif,
        save_png,
    )

    if args.episodes < 1:
        raise CliError(f"--episodes: must be >= 1, got {args.episodes}")
    if not 0.0 <= args.epsilon <= 1.0:
        raise CliError(f"--epsilon: must be in [0, 1], got {args.epsilon}")
    if args.select_smoothing_px is not None:
        try:
            check_smoothing_px(args.select_smoothing_px, "--select-smoothing-px")
        except ValueError as exc:
            raise CliError(str(exc)) from None
    ckpt = load_checkpoint(args.checkpoint)
    env_info = ckpt.env or {}
    env_cfg = ckpt.config.env if ckpt.config else EnvConfig(id=env_info.get("id", ""))
    if args.task:
        env_cfg = EnvConfig(id=resolve_task(args.task))
    env_cfg = _eval_env_config(env_cfg, args)
    render_mode = None
    if args.video:
        probe = make_env(env_cfg)
        modes = probe.metadata.get("render_modes", [])
        probe.close()
        render_mode = "rgb_array" if "rgb_array" in modes else None
    env = make_env(env_cfg, render_mode=render_mode)
    ckpt.check_env(env)
    net = ckpt.build_network()
    if args.select_smoothing_px is not None:
        if net.kind != "unet":
            raise CliError("--select-smoothing-px: only for U-Net (image) policies")
        net.set_select_smoothing(args.select_smoothing_px)
    # Act as the run did (its reachability mask and failed-grasp memory), greedy or with
    # --epsilon.
    exploration = (dataclasses.replace(ckpt.config.exploration, eval_epsilon=args.epsilon)
                   if ckpt.config else ExplorationConfig(eval_epsilon=args.epsilon))
    actor = Actor(net, exploration, total_steps=1, seed=args.seed)
    frames: list = []
    channels = image_channel_names(env)
    qmap_dir = Path(args.qmap_dir) if args.qmap_dir else None
    count = {"n": 0}
    render_failed: list[str] = []

    def on_step(obs, action, info) -> None:
        if args.video and len(frames) < args.max_frames:
            frame = None
            if render_mode and not render_failed:
                try:
                    frame = env.render()
                except gym.error.DependencyNotInstalled as exc:
                    render_failed.append(str(exc))
            if frame is None and obs.ndim == 3:
                frame = camera_image(obs, channels)
            if frame is not None:
                frames.append(frame)
        if qmap_dir is not None and net.kind == "unet" and count["n"] < args.max_qmaps:
            q_map = net.predict_q_map(obs)
            rot, row, col = (int(x) for x in np.unravel_index(int(action), q_map.shape))
            direction = closing_direction_px(env, row, col, rot * np.pi / q_map.shape[0])
            mask = info.get("action_mask")
            reachable = None if mask is None else np.asarray(mask).reshape(q_map.shape)[0] > 0
            save_png(q_map_overlay(obs, q_map, channels, (rot, row, col),
                                   closing_dir_px=direction, reachable=reachable),
                     qmap_dir / f"qmap_{count['n']:04d}.png")
            count["n"] += 1

    result = evaluate(env, actor, args.episodes, seed=args.seed + EVAL_SEED_BASE,
                      on_step=on_step if (args.video or qmap_dir) else None)
    env.close()
    print(f"{env_cfg.id}: {result.summary()}")
    if result.successes is not None and (np.any(result.lengths > 1) or args.objects) and \
            net.kind == "unet":
        lo, hi = result.attempt_success_ci95()
        print(f"attempt success rate {result.attempt_success_rate:.3f} (95% CI {lo:.3f}-"
              f"{hi:.3f}, {result.attempt_successes}/{int(np.sum(result.lengths))} attempts)")
    if args.video:
        if frames:
            print(f"video: {save_gif(frames, args.video, fps=args.fps)} ({len(frames)} frames)")
        else:
            why = f" ({render_failed[0]})" if render_failed else ""
            print(f"video: the environment rendered no frames{why}; nothing written",
                  file=sys.stderr)
    if qmap_dir is not None:
        if net.kind == "unet":
            print(f"Q-maps: {count['n']} PNGs in {qmap_dir}")
        else:
            print("Q-maps: only for image (U-Net) policies; nothing written", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2))
    return 0


def _parse_num_objects(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.split("-")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or not 1 <= parts[0] <= parts[-1] <= 20:
        raise CliError(f"--num-objects: expected N or MIN-MAX within 1-20, got {text!r}")
    return parts[0], parts[-1]


def _eval_env_config(env_cfg, args: argparse.Namespace):
    """The evaluation env: the checkpoint's (or --task's) with --objects, --num-objects and
    --set env.kwargs... applied, validated by building its GraspConfig before any episode."""
    before = dict(env_cfg.kwargs)
    kwargs = dict(env_cfg.kwargs)
    if args.objects or args.num_objects:
        if "Grasp" not in env_cfg.id:
            raise CliError(f"--objects/--num-objects: only for the grasp tasks, not {env_cfg.id}")
        if args.objects:
            # The named set replaces the training objects; holding another set out is moot.
            kwargs.update(object_set=args.objects, object_files=[], held_out_set="")
        if args.num_objects:
            lo, hi = _parse_num_objects(args.num_objects)
            kwargs.update(min_objects=lo, max_objects=hi)
    data = {"kwargs": kwargs, "max_episode_steps": env_cfg.max_episode_steps}
    data = apply_overrides({"env": data}, args.set or [])["env"]
    env_cfg = dataclasses.replace(env_cfg, **data)
    env_cfg.validate()
    if "Grasp" in env_cfg.id:
        from q_grasp.envs import ENV_SPECS
        from q_grasp.envs._config import resolve_env_config
        from q_grasp.envs.grasp import GraspConfig

        # Bad objects or fields: one error line now, before the checkpoint's network is built.
        defaults = dict(ENV_SPECS.get(env_cfg.id, ("", {}))[1])
        trained = resolve_env_config(GraspConfig, None, {**defaults, **before}, "env.kwargs")
        resolve_env_config(GraspConfig, None, {**defaults, **env_cfg.kwargs}, "env.kwargs")
        if args.objects:
            held_out = ("held out from this checkpoint's training"
                        if trained.held_out_set == args.objects else
                        f"the checkpoint's training objects: {trained.object_set or 'primitives'}")
            print(f"objects: {args.objects} ({held_out})")
    return env_cfg


def cmd_plot(args: argparse.Namespace) -> int:
    from q_grasp.learning.plotting import plot_runs

    out = plot_runs(args.runs, args.out, window=args.window, title=args.title)
    print(f"plots: {out}")
    return 0


def cmd_replay_buffer(args: argparse.Namespace) -> int:
    import tempfile

    from q_grasp.learning.trainer_core import TrainerConfig, TrainerCore, newest_checkpoint
    from q_grasp.recording import fill_replay_buffer

    out = Path(args.out)
    if newest_checkpoint(out) is not None:
        raise CliError(f"--out {out}: already holds checkpoints; give a new folder")
    with tempfile.TemporaryDirectory() as scratch:  # never resume from anything: start empty
        core = TrainerCore(TrainerConfig(task=args.task, experiment_config=args.config or "",
                                         output_dir=scratch, seed=args.seed))
        added = fill_replay_buffer(core, args.recording)
    core.output_dir, core.checkpoint_dir = out, out / "checkpoints"
    core.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = core.save_checkpoint(replay=True)
    print(f"replay buffer: {len(core.learner.buffer)} of {added} recorded transitions "
          f"({core.episodes} episodes) from {args.recording}")
    print(f"trainer start: {checkpoint} + {core.checkpoint_dir / 'replay.safetensors'} (a "
          f"trainer with output_dir {out}, e.g. bringup --out {out}, resumes from them)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="q_grasp", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a DQN agent (single process)")
    t.add_argument("--task", help="reacher, grasp, grasp_clutter, cartpole or any gymnasium id")
    t.add_argument("--config", help="YAML config file (default: config/<task>.yaml)")
    t.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    t.add_argument("--seeds", help="comma-separated seeds: one run per seed in OUT/seed_N")
    t.add_argument("--steps", type=int, help="total environment steps (overrides the config)")
    t.add_argument("--out", help="run folder (default runs/<env name>)")
    t.add_argument("--resume", help="checkpoint to continue from (counters, schedules, buffer)")
    t.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE",
                   help="override one config field, e.g. --set dqn.learning_rate=5e-4")
    t.add_argument("--quiet", action="store_true", help="no progress lines")
    t.add_argument("--no-plot", action="store_true", help="skip the PNG plots at the end")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="greedy evaluation of a checkpoint")
    e.add_argument("--checkpoint", required=True, help="model .safetensors file")
    e.add_argument("--episodes", type=int, default=100)
    e.add_argument("--seed", type=int, default=0, help="seed of the evaluation episodes")
    e.add_argument("--epsilon", type=float, default=0.0, help="epsilon for evaluation")
    e.add_argument("--task", help="evaluate on this env instead of the checkpoint's")
    e.add_argument("--objects", help="grasping: evaluate on this object set (primitives, "
                   "train, held_out) instead of the checkpoint's objects")
    e.add_argument("--num-objects", metavar="N|MIN-MAX",
                   help="grasping: objects per scene (e.g. 1-5 for clutter)")
    e.add_argument("--set", action="append", metavar="env.kwargs.FIELD=VALUE",
                   help="override a field of the evaluation env, e.g. "
                   "--set env.kwargs.max_attempts=10")
    e.add_argument("--select-smoothing-px", type=int, metavar="K",
                   help="U-Net: act at the best KxK neighbourhood (odd, 1-15) instead of the "
                   "checkpoint's network.unet_eval_smoothing_px (or unet_select_smoothing_px)")
    e.add_argument("--video", help="write a GIF of the episodes here")
    e.add_argument("--fps", type=float, default=10.0)
    e.add_argument("--max-frames", type=int, default=600)
    e.add_argument("--qmap-dir", help="grasping: write Q-map-over-image PNGs here")
    e.add_argument("--max-qmaps", type=int, default=50)
    e.add_argument("--json", help="also write the result as JSON here")
    e.set_defaults(func=cmd_eval)

    p = sub.add_parser("plot", help="plot learning curves of run folders")
    p.add_argument("runs", nargs="+", help="run folders of `q_grasp train` or `make run` "
                   "(each: one curve; seeds averaged)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--window", type=int, default=50, help="moving-average window (episodes)")
    p.add_argument("--title")
    p.set_defaults(func=cmd_plot)

    r = sub.add_parser("replay-buffer", help="rebuild a replay buffer from an MCAP recording "
                       "(bringup --record) as the start of a new trainer run")
    r.add_argument("recording", help=".mcap file written by bringup --record or the recorder")
    r.add_argument("--task", choices=("grasp", "reacher"), required=True,
                   help="task of the trainer the buffer is for")
    r.add_argument("--config", help="the trainer's experiment YAML (default: the task's)")
    r.add_argument("--seed", type=int, default=0, help="seed of the fresh network")
    r.add_argument("--out", required=True, help="new trainer output folder: its checkpoints/ "
                   "gets fresh weights and the replay buffer")
    r.set_defaults(func=cmd_replay_buffer)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("q_grasp: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        # Our error types (ConfigError, CheckpointError, TaskError, ...) are ValueErrors whose
        # message names the problem; a traceback adds nothing for bad input.
        if args.debug:
            raise
        print(f"q_grasp {args.command}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
