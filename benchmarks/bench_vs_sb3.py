"""q_grasp's DQN against Stable-Baselines3's DQN on the same environments, runs alternating.

    reacher   q_grasp/Reacher-v0 as config/reacher.yaml makes it (env kwargs and its joint
              shaping: the training env q_grasp builds), 20,000 steps. SB3: its DQN defaults
              plus reacher.yaml's learning rate, gamma and buffer size.
    cartpole  CartPole-v1, 50,000 steps. SB3: RL-Zoo's tuned DQN hyperparameters.

Each run is a fresh process (imports, torch threads and RNGs do not leak between runs); the
order of the contenders rotates from seed to seed so that drifts of a shared machine hit all of
them. Both are judged by the same greedy evaluation: q_grasp's final-evaluation episodes (count
and env seeds from its config), deterministic actions; for q_grasp, of the policy that
`q_grasp train` reports as its result (the config's ``training.result``: config/cartpole.yaml
reports its best periodically evaluated model; the last weights' return is recorded beside).
Wall time is the training loop only: q_grasp's ``train_wall_s`` (periodic evaluations
included), SB3's ``model.learn``. Both run with the same number of torch threads (--threads).

SB3 is a benchmark-only dependency. Run the script from a separate venv that holds it and
q_grasp's requirements (torch pinned to the CPU build first, as in requirements.txt):

    python3 -m venv /tmp/sb3venv
    /tmp/sb3venv/bin/pip install torch==2.13.0
    /tmp/sb3venv/bin/pip install torch==2.13.0 stable-baselines3==2.9.2 -r requirements.txt
    /tmp/sb3venv/bin/python benchmarks/bench_vs_sb3.py [--tasks reacher,cartpole]
        [--seeds 0,1,2] [--baseline-tree /tmp/old] [--out benchmarks/results/vs_sb3.json]

--merge FILE... combines result files (e.g. one per seed, run side by side) into --out; a run
repeated in a later file replaces the earlier one.
--baseline-tree adds a third contender: another q_grasp checkout (its own code and configs),
e.g. an older commit unpacked with `git archive <commit> | tar -x -C /tmp/old`.
Writes one JSON file: per run greedy success / mean return / wall time, per task the medians
and the wall-time ratio q_grasp / SB3 (per seed and of the medians), and each run's CPU
seconds (whole process), which other jobs on a shared machine move far less than wall time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "vs_sb3.json"
TASKS = {
    # task: (q_grasp --task, config file, steps, SB3 hyperparameters beyond the env's)
    "reacher": ("reacher", "config/reacher.yaml", 20_000,
                "SB3 defaults + reacher.yaml's lr, gamma, buffer size"),
    "cartpole": ("CartPole-v1", "config/cartpole.yaml", 50_000, "RL-Zoo dqn.yml CartPole-v1"),
}
RL_ZOO_CARTPOLE = {
    "learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1000,
    "gamma": 0.99, "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128,
    "exploration_fraction": 0.16, "exploration_final_eps": 0.04,
    "policy_kwargs": {"net_arch": [256, 256]},
}


def run_sb3(task: str, seed: int, threads: int) -> dict:
    """One SB3 run in this process (the child of `main`)."""
    import numpy as np
    import torch
    from stable_baselines3 import DQN

    sys.path.insert(0, str(ROOT))
    from q_grasp.learning.config import ExperimentConfig
    from q_grasp.learning.tasks import add_shaping, make_env
    from q_grasp.learning.trainer import EVAL_SEED_BASE

    torch.set_num_threads(threads)
    _, cfg_file, steps, _ = TASKS[task]
    cfg = ExperimentConfig.from_yaml(ROOT / cfg_file)
    if task == "reacher":
        hyper = {"learning_rate": cfg.dqn.learning_rate, "gamma": cfg.dqn.gamma,
                 "buffer_size": cfg.buffer.capacity}
    else:
        hyper = dict(RL_ZOO_CARTPOLE)
    # The environments q_grasp's trainer builds: shaped for training, plain for evaluation.
    env = add_shaping(make_env(cfg.env), cfg.env, cfg.dqn.gamma)
    model = DQN("MlpPolicy", env, seed=seed, verbose=0, **hyper)
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - start
    eval_env = make_env(cfg.env)
    episodes = cfg.training.final_eval_episodes
    final_seed = EVAL_SEED_BASE + 10_000 * seed + 5_000
    returns, successes = [], []
    for i in range(episodes):
        obs, info = eval_env.reset(seed=final_seed + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, info = eval_env.step(int(action))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        successes.append(float(bool(info.get("is_success", False))))
    return {"train_wall_s": wall, "env_steps": int(model.num_timesteps),
            "updates": int(model._n_updates), "mean_return": float(np.mean(returns)),
            "success_rate": float(np.mean(successes)) if task == "reacher" else None,
            "eval_episodes": episodes, "hyperparameters": hyper}


def run_q_grasp(tree: Path, task: str, seed: int, threads: int) -> dict:
    """One `python -m q_grasp train` run of the checkout at `tree`, with its own config."""
    qg_task, _, steps, _ = TASKS[task]
    with tempfile.TemporaryDirectory(prefix="bench_vs_sb3_") as out:
        cmd = [sys.executable, "-m", "q_grasp", "train", "--task", qg_task, "--seed", str(seed),
               "--steps", str(steps), "--out", out, "--quiet", "--no-plot",
               "--set", f"training.torch_threads={threads}"]
        env = dict(os.environ, PYTHONPATH=str(tree), MPLBACKEND="Agg")
        done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} (in {tree}) failed:\n{done.stderr[-2000:]}")
        result = json.loads((Path(out) / "eval.json").read_text())
    # final_eval: the policy `q_grasp train` reports as its result (the config's
    # training.result: the last weights, or the best periodically evaluated model).
    final = result["final_eval"]
    last = result.get("last_model_eval") or final
    return {"train_wall_s": result["train_wall_s"], "env_steps": result["env_steps"],
            "updates": result["updates"], "mean_return": final["mean_return"],
            "success_rate": final["success_rate"] if task == "reacher" else None,
            "eval_episodes": final["episodes"], "result": result.get("result", "last"),
            "last_model_mean_return": last["mean_return"]}


def run_child(contender: str, task: str, seed: int, threads: int, tree: Path | None) -> dict:
    """One run in a fresh interpreter; its result dict plus the process's wall time."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", contender, task, str(seed),
           "--threads", str(threads)]
    if tree is not None:
        cmd += ["--baseline-tree", str(tree)]
    load_before = os.getloadavg()[0]
    start, cpu = time.perf_counter(), _children_cpu_s()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{contender} {task} seed {seed} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - start
    # CPU seconds of the whole run (imports, training, final evaluation): unlike wall time,
    # barely moved by other jobs on a shared machine.
    result["process_cpu_s"] = _children_cpu_s() - cpu
    # 1-minute load average before and after: how many other jobs shared the cores.
    result["loadavg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def summarise(runs: list[dict], contenders: list[str]) -> dict:
    summary = {}
    for task in sorted({r["task"] for r in runs}):
        rows = {c: sorted((r for r in runs if r["task"] == task and r["contender"] == c),
                          key=lambda r: r["seed"]) for c in contenders}
        per = {}
        for c, rs in rows.items():
            if not rs:
                continue
            per[c] = {"train_wall_s": [round(r["train_wall_s"], 2) for r in rs],
                      "median_train_wall_s": statistics.median(r["train_wall_s"] for r in rs),
                      "process_cpu_s": [round(r["process_cpu_s"], 2) for r in rs],
                      "median_process_cpu_s": statistics.median(r["process_cpu_s"] for r in rs),
                      "mean_return": [round(r["mean_return"], 3) for r in rs],
                      "success_rate": [r["success_rate"] for r in rs],
                      "updates": [r["updates"] for r in rs]}
        entry: dict = {"contenders": per}
        if per.get("q_grasp") and per.get("sb3"):
            q, s = rows["q_grasp"], rows["sb3"]
            entry["wall_ratio_q_grasp_over_sb3"] = [
                round(a["train_wall_s"] / b["train_wall_s"], 3) for a, b in zip(q, s)]
            entry["median_wall_ratio"] = round(per["q_grasp"]["median_train_wall_s"]
                                               / per["sb3"]["median_train_wall_s"], 3)
            entry["cpu_ratio_q_grasp_over_sb3"] = [
                round(a["process_cpu_s"] / b["process_cpu_s"], 3) for a, b in zip(q, s)]
        summary[task] = entry
    return summary


def merge(files: list[Path], out: Path) -> int:
    """One report from several result files of this script (their runs and a new summary)."""
    parts = []
    for f in files:
        try:
            parts.append(json.loads(f.read_text()))
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--merge {f}: not a readable result file ({exc})") from None
    # A run repeated in a later file (same task, seed and contender) replaces the earlier one.
    latest = {(r["task"], r["seed"], r["contender"]): r
              for part in parts for r in part.get("runs", [])}
    runs = list(latest.values())
    if not runs:
        raise SystemExit(f"--merge: no runs in {[str(f) for f in files]}")
    contenders = [c for c in ("q_grasp", "sb3", "baseline")
                  if any(r["contender"] == c for r in runs)]
    report = {
        "date": max(part["date"] for part in parts),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "complete": all(part.get("complete", True) for part in parts),
        "merged_from": [{"file": str(f), "command": part.get("command"), "date": part.get("date"),
                         "loadavg_start": part.get("loadavg_start"),
                         "loadavg_end": part.get("loadavg_end")}
                        for f, part in zip(files, parts)],
        "machine": parts[0].get("machine"), "threads": parts[0].get("threads"),
        "sb3_settings": {k: v for part in parts for k, v in part.get("sb3_settings", {}).items()},
        "summary": summarise(runs, contenders),
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report["summary"], indent=2))
    print(f"-> {out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="reacher,cartpole")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of every run (q_grasp's configs use 1)")
    parser.add_argument("--baseline-tree", type=Path, default=None,
                        help="another q_grasp checkout to run as the contender 'baseline'")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--merge", nargs="+", type=Path, default=None, metavar="FILE",
                        help="combine the runs of result files (e.g. one per seed, run side by "
                             "side) into --out, with the summary over all of them")
    parser.add_argument("--child", nargs=3, metavar=("CONTENDER", "TASK", "SEED"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        contender, task, seed = args.child[0], args.child[1], int(args.child[2])
        if contender == "sb3":
            result = run_sb3(task, seed, args.threads)
        else:
            tree = ROOT if contender == "q_grasp" else args.baseline_tree.resolve()
            result = run_q_grasp(tree, task, seed, args.threads)
        print(json.dumps(result))
        return 0

    if args.merge:
        return merge(args.merge, args.out)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f"--tasks: unknown {unknown}; known: {sorted(TASKS)}")
    try:
        import stable_baselines3
    except ImportError:
        parser.error("stable-baselines3 is not installed in this interpreter; see the "
                     "module docstring for its benchmark venv")
    seeds = [int(s) for s in args.seeds.split(",")]
    contenders = ["q_grasp", "sb3"] + (["baseline"] if args.baseline_tree else [])
    runs: list[dict] = []
    load_start = os.getloadavg()

    def write(complete: bool) -> dict:
        # Written after every run, so that an interrupted benchmark keeps what it measured.
        report = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "complete": complete,
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version(),
                        "stable_baselines3": stable_baselines3.__version__,
                        "baseline_tree": str(args.baseline_tree) if args.baseline_tree else None},
            "threads": args.threads,
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "sb3_settings": {t: TASKS[t][3] for t in tasks},
            "summary": summarise(runs, contenders),
            "runs": runs,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        return report

    for seed in seeds:
        # Who goes first rotates with the seed (also across instances run side by side).
        k = seed % len(contenders)
        order = contenders[k:] + contenders[:k]
        for task in tasks:
            for contender in order:
                r = run_child(contender, task, seed, args.threads, args.baseline_tree)
                r.update(task=task, seed=seed, contender=contender)
                runs.append(r)
                success = "" if r["success_rate"] is None else f"success {r['success_rate']:.3f} "
                print(f"{task:8s} seed {seed} {contender:8s} {success}return "
                      f"{r['mean_return']:.3f} train {r['train_wall_s']:.1f} s "
                      f"({r['updates']} updates), process CPU {r['process_cpu_s']:.1f} s, "
                      f"load {r['loadavg_1min'][0]:.1f}->{r['loadavg_1min'][1]:.1f}", flush=True)
                write(complete=False)
    report = write(complete=True)
    print(json.dumps(report["summary"], indent=2))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
