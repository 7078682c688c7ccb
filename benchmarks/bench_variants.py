"""Variants of one learning config side by side: single-process training runs with each
variant's overrides, seed by seed, then each run's greedy evaluation. Single-process training is
deterministic per seed, so several runs go at once (``--jobs``) without changing the results,
only the wall times.

    python benchmarks/bench_variants.py --config config/grasp_plain.yaml \
        --variant float32:network.unet_precision=float32 \
        --variant bfloat16:network.unet_precision=bfloat16 [--seeds 0,1,2,3,4,5]
        [--eval-episodes 200] [--steps N] [--jobs 2] [--keep DIR] [--out FILE]

A variant is NAME:FIELD=VALUE[,FIELD=VALUE...] (``NAME:`` alone: the config as it is). Each run
is `python -m q_grasp train --config CFG --seed S --set FIELD=VALUE ... --set
training.final_eval_episodes=N --no-plot --quiet`; the row keeps its greedy attempt success (and
Wilson 95% interval), episode success, training wall time and the process's CPU seconds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_variant(text: str) -> tuple[str, list[str]]:
    """NAME:FIELD=VALUE[,FIELD=VALUE...] -> (NAME, ["FIELD=VALUE", ...])."""
    name, _, sets = text.partition(":")
    overrides = [s.strip() for s in sets.split(",") if s.strip()]
    if not name or any("=" not in s or "." not in s.partition("=")[0] for s in overrides):
        raise ValueError(f"--variant {text!r}: expected NAME:SECTION.FIELD=VALUE[,...]")
    return name, overrides


def train(config: Path, seed: int, variant: tuple[str, list[str]], episodes: int, out: Path,
          steps: int | None) -> dict:
    name, overrides = variant
    cmd = [sys.executable, "-m", "q_grasp", "train", "--config", str(config), "--seed", str(seed),
           "--out", str(out), *(["--steps", str(steps)] if steps else []),
           *(a for o in overrides for a in ("--set", o)),
           "--set", f"training.final_eval_episodes={episodes}", "--no-plot", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    # CPU seconds of this child alone: wait4 on its pid (other runs go on in parallel).
    out.mkdir(parents=True, exist_ok=True)
    log = out / "train.log"
    with log.open("w") as log_file:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed}, {name}: q_grasp train failed (exit "
                         f"{proc.returncode}):\n{log.read_text()[-2000:]}")
    res = json.loads((out / "eval.json").read_text())
    ev = res["final_eval"]
    return {"seed": seed, "variant": name, "overrides": overrides,
            "attempt_success": round(ev["attempt_success_rate"], 4),
            "attempt_success_ci95": [round(x, 4) for x in ev["attempt_success_ci95"]],
            "attempts": ev["attempts"], "episode_success": ev["success_rate"],
            "train_wall_s": round(res["train_wall_s"], 1), "process_wall_s": round(wall, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--variant", action="append", required=True,
                        help="NAME:SECTION.FIELD=VALUE[,...] (repeat for each variant)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--eval-episodes", type=int, default=200)
    parser.add_argument("--steps", type=int, default=None,
                        help="training attempts (default: the config's total_steps)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="keep the run folders in DIR (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not args.config.is_file():
        parser.error(f"--config {args.config}: no such file")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: expected comma-separated integers")
    try:
        variants = [parse_variant(v) for v in args.variant]
    except ValueError as exc:
        parser.error(str(exc))
    if len({name for name, _ in variants}) != len(variants):
        parser.error("--variant: the names must differ")
    if args.eval_episodes < 1 or args.jobs < 1 or (args.steps is not None and args.steps < 1):
        parser.error("--eval-episodes, --jobs and --steps must be >= 1")
    out = args.out or (ROOT / "benchmarks" / "results" / "learning" /
                       f"variants_{args.config.stem}.json")
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        jobs = [(s, v) for s in seeds for v in variants]
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(train, args.config.resolve(), s, v, args.eval_episodes,
                                   base / f"{v[0]}_seed_{s}", args.steps) for s, v in jobs]
            rows = []
            for fut in futures:
                rows.append(fut.result())
                r = rows[-1]
                print(f"seed {r['seed']} {r['variant']:8s}: {100 * r['attempt_success']:5.1f}% "
                      f"attempt success ({r['attempts']} attempts), train {r['train_wall_s']} s, "
                      f"{r['cpu_s']} CPU-s", flush=True)
    summary = {}
    for p, _ in variants:
        mine = [r for r in rows if r["variant"] == p]
        summary[p] = {
            "mean_attempt_success": round(statistics.mean(r["attempt_success"] for r in mine), 4),
            "median_attempt_success": round(statistics.median(r["attempt_success"]
                                                              for r in mine), 4),
            "median_train_wall_s": round(statistics.median(r["train_wall_s"] for r in mine), 1),
            "median_cpu_s": round(statistics.median(r["cpu_s"] for r in mine), 1)}
        s = summary[p]
        print(f"{p}: mean {100 * s['mean_attempt_success']:.1f}% / median "
              f"{100 * s['median_attempt_success']:.1f}% attempt success, median train "
              f"{s['median_train_wall_s']} s, {s['median_cpu_s']} CPU-s")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/bench_variants.py " + " ".join(sys.argv[1:]),
        "config": str(args.config), "variants": dict(variants), "rows": rows,
        "summary": summary}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
