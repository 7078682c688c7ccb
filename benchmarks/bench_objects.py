"""Unseen objects: a checkpoint's greedy attempt and episode success on the held-out object set
(q_grasp.sim.object_sets), single object and clutter of 1-5, with Wilson 95% intervals; with
and without the bare-table mask (env min_grasp_height_m), so its effect is measured on the same
scenes. Trains config/grasp_objects.yaml (the "train" set) first unless --checkpoint is given.

    python benchmarks/bench_objects.py [--checkpoint X] [--steps 400] [--seed 0] \\
        [--episodes 200] [--eval-seed 7] [--rows heldout_single,heldout_clutter]

Each row is `python -m q_grasp eval --checkpoint X --objects held_out ... --episodes N --seed S`.
Writes benchmarks/results/objects.json (or --out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from q_grasp.cli import main as q_grasp_main  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "objects.json"
CONFIG = Path(__file__).resolve().parent.parent / "config" / "grasp_objects.yaml"
MASK = 0.002
"""min_grasp_height_m of config/grasp_objects.yaml."""

ROWS = {
    # name: extra `q_grasp eval` arguments
    "heldout_single": ["--num-objects", "1", "--set", "env.kwargs.max_attempts=5"],
    "heldout_clutter": ["--num-objects", "1-5", "--set", "env.kwargs.max_attempts=10"],
}


def run_row(checkpoint: str, name: str, mask: float, episodes: int, seed: int,
            scratch: Path) -> dict:
    out = scratch / f"{name}_{mask}.json"
    argv = ["eval", "--checkpoint", checkpoint, "--objects", "held_out", *ROWS[name],
            "--set", f"env.kwargs.min_grasp_height_m={mask}", "--episodes", str(episodes),
            "--seed", str(seed), "--json", str(out)]
    t0, c0 = time.monotonic(), time.process_time()
    if q_grasp_main(argv) != 0:
        raise SystemExit(f"bench_objects: {' '.join(argv)} failed")
    result = json.loads(out.read_text())
    result.update(command="python -m q_grasp " + " ".join(argv[:-2]),
                  wall_s=time.monotonic() - t0, cpu_s=time.process_time() - c0)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="evaluate this checkpoint instead of training one")
    parser.add_argument("--steps", type=int, default=400, help="training attempts")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--eval-seed", type=int, default=7)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--masks", default=f"0,{MASK}",
                        help="min_grasp_height_m values to compare (0: no mask)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"--rows: unknown {unknown}; known: {list(ROWS)}")
    masks = [float(m) for m in args.masks.split(",") if m]
    report: dict = {"date": datetime.date.today().isoformat(), "rows": {}}
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = args.checkpoint
        if not checkpoint:
            run = Path(scratch) / "train"
            t0, c0 = time.monotonic(), time.process_time()
            train = ["train", "--config", str(CONFIG), "--seed", str(args.seed), "--steps",
                     str(args.steps), "--out", str(run), "--quiet", "--no-plot",
                     "--set", "training.final_eval_episodes=1"]
            if q_grasp_main(train) != 0:
                raise SystemExit("bench_objects: training failed")
            checkpoint = str(run / "model.safetensors")
            report["training"] = {"command": "python -m q_grasp " + " ".join(train),
                                  "wall_s": time.monotonic() - t0,
                                  "cpu_s": time.process_time() - c0}
        report["checkpoint"] = checkpoint
        for name in rows:
            for mask in masks:
                key = f"{name}_mask{mask:g}"
                res = run_row(checkpoint, name, mask, args.episodes, args.eval_seed,
                              Path(scratch))
                report["rows"][key] = res
                lo, hi = res["attempt_success_ci95"]
                print(f"{key}: attempt success {res['attempt_success_rate']:.3f} "
                      f"[{lo:.3f}, {hi:.3f}] ({res['attempt_successes']}/{res['attempts']}), "
                      f"episode success {res['success_rate']:.3f}", flush=True)
                # After every row: a long run stopped early keeps what it measured.
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
