"""Learning benchmarks of issue 3: greedy success/return after a fixed budget, median of seeds.

  python benchmarks/bench_learning.py --only reacher,cartpole --seeds 0,1,2
  python benchmarks/bench_learning.py --only grasp --seeds 0

Targets (greedy evaluation, median over seeds):
  reacher        q_grasp/Reacher-v0, random goals, 1 cm      >= 95% success, <= 20,000 steps
  cartpole       CartPole-v1                                >= 475 mean return, <= 100,000 steps
  grasp          q_grasp/TopDownGrasp-v0, 1 object          >= 95% grasp success, <= 1,000 attempts
                 (config/grasp.yaml: the rotation-equivariant U-Net)
  grasp_plain    the same with the plain U-Net (config/grasp_plain.yaml)
  grasp_clutter  q_grasp/TopDownGraspClutter-v0, 1-5, R=8   >= 90% grasp success, <= 2,000 attempts
                 (plain U-Net); grasp_clutter_equivariant: with the equivariant U-Net
  grasp_rgb      grasp_plain from colour only (no depth; grasp points on the table plane)
  grasp_rgb_dr   ... with the rendering randomised (light, table colour, camera pose)
  grasp_clutter_equivariant_lr_decay: ... and the learning rate decaying to 1e-4 over training
Each run folder, a learning-curve PNG per benchmark and results.json land in --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from q_grasp.learning.agent import Actor  # noqa: E402
from q_grasp.learning.checkpoint import load_checkpoint  # noqa: E402
from q_grasp.learning.config import ExperimentConfig  # noqa: E402
from q_grasp.learning.plotting import plot_runs  # noqa: E402
from q_grasp.learning.tasks import default_config, make_env  # noqa: E402
from q_grasp.learning.trainer import EVAL_SEED_BASE, evaluate, run_training  # noqa: E402

PLAIN = {"unet_rotation_equivariant": False}
"""The network section of config/grasp_plain.yaml over config/grasp.yaml's."""

BENCHMARKS = {
    # name: (env id, config overrides, metric, target, budget)
    "reacher": ("q_grasp/Reacher-v0", {}, "success_rate", 0.95, 20_000),
    "cartpole": ("CartPole-v1", {}, "mean_return", 475.0, 100_000),
    # config/grasp.yaml: the rotation-equivariant U-Net
    "grasp": ("q_grasp/TopDownGrasp-v0", {}, "attempt_success_rate", 0.95, 1_000),
    # the plain U-Net (config/grasp_plain.yaml): one output channel per rotation
    "grasp_plain": ("q_grasp/TopDownGrasp-v0", {"network": PLAIN},
                    "attempt_success_rate", 0.95, 1_000),
    # grasp_plain from colour only, grasp points on the table plane (config/grasp_rgb.yaml)
    "grasp_rgb": ("q_grasp/TopDownGrasp-v0",
                  {"env": {"kwargs": {"observation": "rgb", "depth_source": "table_plane"}},
                   "network": PLAIN},
                  "attempt_success_rate", 0.95, 1_000),
    # ... with domain randomisation of the rendering (light, table colour, camera pose)
    "grasp_rgb_dr": ("q_grasp/TopDownGrasp-v0",
                     {"env": {"kwargs": {"observation": "rgb", "depth_source": "table_plane",
                                         "randomize_lighting": True, "table_color_jitter": 0.15,
                                         "camera_pose_noise_m": 0.005,
                                         "camera_angle_noise_deg": 1.0}},
                      "network": PLAIN},
                     "attempt_success_rate", 0.95, 1_000),
    # clutter with the plain U-Net
    "grasp_clutter": ("q_grasp/TopDownGraspClutter-v0",
                      {"env": {"kwargs": {"min_objects": 1, "max_objects": 5, "max_attempts": 10,
                                          "num_rotations": 8}},
                       "network": PLAIN, "training": {"total_steps": 2_000}},
                      "attempt_success_rate", 0.90, 2_000),
    # the clutter benchmark with the rotation-equivariant U-Net
    "grasp_clutter_equivariant": ("q_grasp/TopDownGraspClutter-v0",
                                  {"env": {"kwargs": {"min_objects": 1, "max_objects": 5,
                                                      "max_attempts": 10, "num_rotations": 8}},
                                   "network": {"unet_rotation_equivariant": True},
                                   "training": {"total_steps": 2_000}},
                                  "attempt_success_rate", 0.90, 2_000),
    # ... and with the learning rate going linearly to 1e-4 over training (steadier final weights)
    "grasp_clutter_equivariant_lr_decay": (
        "q_grasp/TopDownGraspClutter-v0",
        {"env": {"kwargs": {"min_objects": 1, "max_objects": 5, "max_attempts": 10,
                            "num_rotations": 8}},
         "network": {"unet_rotation_equivariant": True},
         "dqn": {"learning_rate_final": 1e-4},
         "training": {"total_steps": 2_000}},
        "attempt_success_rate", 0.90, 2_000),
}


def _merge(base: dict, over: dict) -> dict:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def config_for(name: str, steps: int | None) -> ExperimentConfig:
    env_id, overrides, _, _, budget = BENCHMARKS[name]
    base_id = "q_grasp/TopDownGrasp-v0" if name.startswith("grasp") else env_id
    data = default_config(base_id).to_dict()
    data["env"]["id"] = env_id
    _merge(data, overrides)
    # The packaged config's budget, capped at the target's budget.
    data["training"]["total_steps"] = steps or min(data["training"]["total_steps"], budget)
    data["training"]["tensorboard"] = False
    data["training"]["save_replay_buffer"] = False
    return ExperimentConfig.from_dict(data)


def reevaluate(run_dir: Path, cfg: ExperimentConfig, seed: int, episodes: int,
               eval_on: str = "") -> dict:
    """Greedy evaluation of run_dir/model.safetensors on `episodes` episodes, starting at the
    trainer's final-evaluation seed, with the run's exploration settings (action mask,
    failed-grasp memory), in the run's env or, with `eval_on`, in that benchmark's env;
    cached in run_dir/eval_<episodes>[_<eval_on>].json."""
    cache = run_dir / (f"eval_{episodes}_{eval_on}.json" if eval_on else f"eval_{episodes}.json")
    model = run_dir / "model.safetensors"
    if cache.is_file() and cache.stat().st_mtime >= model.stat().st_mtime:
        return json.loads(cache.read_text())
    ckpt = load_checkpoint(model)
    env = make_env(config_for(eval_on, None).env if eval_on else cfg.env)
    try:
        ckpt.check_env(env)
        actor = Actor(ckpt.build_network(), cfg.exploration, cfg.training.total_steps, seed=seed)
        result = evaluate(env, actor, episodes, seed=EVAL_SEED_BASE + 10_000 * seed + 5_000)
    finally:
        env.close()
    cache.write_text(json.dumps(result.to_dict(), indent=2))
    return result.to_dict()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="reacher,cartpole",
                        help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, help="override the budget (quick checks)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "learning"))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "bench_learning"),
                        help="where the run folders go")
    parser.add_argument("--collect", action="store_true",
                        help="do not train: rebuild the results from existing run folders")
    parser.add_argument("--eval-episodes", type=int, default=0,
                        help="judge each run's final model on this many greedy episodes (the "
                             "trainer's final-evaluation scenes and more; kept in the run folder "
                             "as eval_N.json) instead of the trainer's own final evaluation")
    parser.add_argument("--eval-on", default="", metavar="BENCHMARK",
                        help="with --eval-episodes: judge the models in another benchmark's env "
                             "(e.g. a policy trained without domain randomisation on "
                             "grasp_rgb_dr's scenes); results go to results_on_<BENCHMARK>.json")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.eval_on and (args.eval_on not in BENCHMARKS or not args.eval_episodes):
        parser.error("--eval-on needs a benchmark name and --eval-episodes")
    results_path = out / (f"results_on_{args.eval_on}.json" if args.eval_on else "results.json")
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for name in args.only.split(","):
        if name not in BENCHMARKS:
            parser.error(f"--only: unknown benchmark {name!r}; choose from {list(BENCHMARKS)}")
        env_id, _, metric, target, budget = BENCHMARKS[name]
        cfg = config_for(name, args.steps)
        per_seed = []
        for seed in seeds:
            run_dir = Path(args.runs) / name / f"seed_{seed}"
            t0 = time.perf_counter()
            if not args.collect:
                run_training(cfg, run_dir, seed=seed, log=lambda m: print(m, flush=True),
                             plot=False)
            saved = json.loads((run_dir / "eval.json").read_text())
            ev = saved["final_eval"]
            if args.eval_episodes:
                ev = reevaluate(run_dir, cfg, seed, args.eval_episodes, args.eval_on)
            best = saved.get("best_eval")
            per_seed.append({"seed": seed, "value": ev[metric], "final_eval": ev,
                             "best_model_value": None if not best else best[metric],
                             "env_steps": saved["env_steps"],
                             "train_wall_s": round(saved["train_wall_s"], 1),
                             "total_wall_s": round(time.perf_counter() - t0, 1)})
            print(f"[{name} seed {seed}] {metric} = {ev[metric]:.3f} "
                  f"({saved['train_wall_s']:.0f} s training)", flush=True)
        median = statistics.median(p["value"] for p in per_seed)
        bests = [p["best_model_value"] for p in per_seed if p["best_model_value"] is not None]
        best_median = statistics.median(bests) if len(bests) == len(per_seed) else None
        png = plot_runs([Path(args.runs) / name], out / f"{name}_curves.png",
                        title=f"{name}: {env_id}, {cfg.training.total_steps} steps, "
                              f"seeds {seeds}")
        # Re-read: another benchmark process may have written its entry meanwhile.
        results = json.loads(results_path.read_text()) if results_path.is_file() else {}
        results[name] = {
            "env_id": env_id, "metric": metric, "target": target, "budget_steps": budget,
            "steps": per_seed[0]["env_steps"], "seeds": seeds, "median": median,
            "eval_episodes": args.eval_episodes or cfg.training.final_eval_episodes,
            "evaluated_on": args.eval_on or name,
            "met": bool(median >= target and per_seed[0]["env_steps"] <= budget),
            "median_best_model": best_median,
            "per_seed": per_seed, "curves_png": png.name, "config": cfg.to_dict(),
            "machine": f"{platform.machine()} {platform.processor() or ''} "
                       f"({__import__('os').cpu_count()} CPUs, shared)",
        }
        results_path.write_text(json.dumps(results, indent=2))
        print(f"== {name}: median {metric} {median:.3f} (target {target}) over seeds {seeds}; "
              f"wall-clock per seed {[p['train_wall_s'] for p in per_seed]} s; curves {png}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
