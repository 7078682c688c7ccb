"""The main job, timed as a user runs it: `make run`'s bringup (grasp, sim_arm and policy composed,
trainer in its own process), from the start of the process to the end of its greedy evaluation,
once per seed (sim_arm's, the policy's and the trainer's seed all set to it); `--task
grasp_clutter` times the clutter bringup (config/sim_train_grasp_clutter.yaml) the same way.

    python benchmarks/bench_make_run.py [--task grasp] [--seeds 0,1,2] [--eval-episodes 200]
        [--baseline-tree DIR] [--out benchmarks/results/make_run.json] [-- BRINGUP ARGS...]

Per run it reports the wall time of the whole process (start-up, acting, trainer catch-up,
evaluation), the bringup's own phase times, the greedy evaluation's attempt and episode success
over its scenes (with Wilson 95% intervals) and the machine's load average; then the medians
over seeds. ``--baseline-tree`` runs another checkout (e.g. `git archive <commit> | tar -x -C
DIR`) with its own code and parameter file as a second contender, alternating with this one
seed by seed, so both see the same drifts of a shared machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from q_grasp.learning.trainer import wilson_interval  # noqa: E402
from q_grasp.node_processes import ros_child_env, unique_domain_id  # noqa: E402

SEEDED_NODES = ("sim_arm", "policy", "trainer")


def params_file(tree: Path, task: str) -> Path:
    """The tree's shipped node parameters for ``task``."""
    return tree / "config" / f"sim_train_{task}.yaml"


def seeded_params(tree: Path, task: str, seed: int, folder: Path) -> Path:
    """A copy of the tree's config/sim_train_<task>.yaml with every node's seed set."""
    data = yaml.safe_load(params_file(tree, task).read_text())
    for node in SEEDED_NODES:
        data[f"/**/{node}"]["ros__parameters"]["seed"] = seed
    path = folder / f"params_seed{seed}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_once(tree: Path, task: str, seed: int, folder: Path, eval_episodes: int,
             extra: list[str]) -> dict:
    out = folder / f"seed_{seed}"
    params = seeded_params(tree, task, seed, folder)
    cmd = [sys.executable, "-m", "q_grasp.nodes.bringup", "--task", task, "--trainer-process",
           "--config", str(params), "--out", str(out), "--eval-episodes", str(eval_episodes),
           *extra]
    env = ros_child_env(unique_domain_id())
    env["PYTHONPATH"] = str(tree)
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(f"{out}.log", "w") as log:
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tree,
                              check=False)
    wall = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # The bringup and its trainer child (waited for) together: what the run cost the machine.
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}; see {out}.log")
    summary = json.loads((out / "bringup_summary.json").read_text())
    ev = summary.get("eval", {})
    attempts, hits = int(ev.get("attempts", 0)), int(ev.get("grasp_successes", 0))
    episodes = int(ev.get("episodes", 0))
    ep_hits = round(float(ev.get("episode_success_rate", 0.0)) * episodes)
    return {"seed": seed, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "train_wall_s": round(summary["train_wall_s"], 1),
            "catch_up_wall_s": round(summary["catch_up_wall_s"], 1),
            "eval_wall_s": round(float(ev.get("wall_s", 0.0)), 1),
            "transitions": summary["transitions"], "updates": summary["updates"],
            "eval_episodes": episodes, "eval_attempts": attempts,
            "attempt_success": round(hits / attempts, 4) if attempts else None,
            "attempt_success_ci95": [round(x, 4) for x in wilson_interval(hits, attempts)],
            "episode_success": round(ep_hits / episodes, 4) if episodes else None,
            "episode_success_ci95": [round(x, 4) for x in wilson_interval(ep_hits, episodes)],
            "load_at_start": round(load, 2), "load_at_end": round(os.getloadavg()[0], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["grasp", "grasp_clutter"], default="grasp",
                        help="bringup task (its config/sim_train_<task>.yaml)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--eval-episodes", type=int, default=200)
    parser.add_argument("--baseline-tree", type=Path, default=None,
                        help="another q_grasp checkout run as a second contender")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                        "make_run.json")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="keep the runs (checkpoints, logs) in DIR instead of a temporary "
                             "folder")
    parser.add_argument("bringup_args", nargs=argparse.REMAINDER,
                        help="after --: extra bringup arguments for every run")
    args = parser.parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds: comma-separated integers, got {args.seeds!r}")
    if not seeds:
        parser.error("--seeds: give at least one seed")
    if args.eval_episodes < 1:
        parser.error("--eval-episodes: must be >= 1")
    trees = {"q_grasp": ROOT}
    if args.baseline_tree is not None:
        if not params_file(args.baseline_tree, args.task).is_file():
            parser.error(f"--baseline-tree {args.baseline_tree}: no "
                         f"config/sim_train_{args.task}.yaml")
        trees["baseline"] = args.baseline_tree.resolve()
    extra = [a for a in args.bringup_args if a != "--"]
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="bench_make_run_") as scratch:
        tmp = args.keep or scratch
        for i, seed in enumerate(seeds):
            order = list(trees) if i % 2 == 0 else list(reversed(trees))
            for name in order:
                folder = Path(tmp) / name
                folder.mkdir(parents=True, exist_ok=True)
                result = run_once(trees[name], args.task, seed, folder, args.eval_episodes,
                                  extra)
                runs[name].append(result)
                print(f"{name} seed {seed}: {result['wall_s']} s, attempt success "
                      f"{result['attempt_success']} over {result['eval_attempts']} attempts "
                      f"({result['eval_episodes']} episodes), load {result['load_at_start']}",
                      flush=True)
    summary = {name: {key: statistics.median(r[key] for r in rs)
                      for key in ("wall_s", "cpu_s", "train_wall_s", "catch_up_wall_s",
                                  "eval_wall_s", "attempt_success", "episode_success")}
               for name, rs in runs.items()}
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join(["python", "benchmarks/bench_make_run.py", *sys.argv[1:]]),
              "task": args.task, "cpu_count": os.cpu_count(), "seeds": seeds,
              "median": summary, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
