"""Acting at the best KxK neighbourhood of a U-Net Q-map (network.unet_select_smoothing_px): the
greedy attempt success of trained checkpoints on the same scenes for each K, so the choice is
measured on the same weights (K changes acting only).

    python benchmarks/bench_select_smoothing.py RUN_OR_CKPT [RUN_OR_CKPT ...] [--ks 1,5,7,9,13]
        [--episodes 200] [--seed 0] [--out benchmarks/results/select_smoothing.json]

Each argument is a checkpoint (.safetensors) or a run folder of `make run` / bringup (its
bringup_summary.json names the checkpoint). Each evaluation is `q_grasp eval --checkpoint X
--episodes N --seed S --select-smoothing-px K` on the checkpoint's own task and objects.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from q_grasp.cli import main as q_grasp_main  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "select_smoothing.json"


def checkpoint_of(path: Path) -> Path:
    if path.is_dir():
        summary = path / "bringup_summary.json"
        if not summary.is_file():
            raise SystemExit(f"{path}: no bringup_summary.json (pass the checkpoint file)")
        return Path(json.loads(summary.read_text())["checkpoint"])
    return path


def evaluate(ckpt: Path, k: int, episodes: int, seed: int, scratch: Path) -> dict:
    out = scratch / f"eval_{k}.json"
    t0 = time.perf_counter()
    rc = q_grasp_main(["eval", "--checkpoint", str(ckpt), "--episodes", str(episodes),
                       "--seed", str(seed), "--select-smoothing-px", str(k),
                       "--json", str(out)])
    if rc != 0:
        raise SystemExit(f"q_grasp eval failed on {ckpt} (K={k})")
    res = json.loads(out.read_text())
    return {"attempts": res["attempts"], "successes": res["attempt_successes"],
            "attempt_success": round(res["attempt_success_rate"], 4),
            "episode_success": res["success_rate"], "wall_s": round(time.perf_counter() - t0, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="checkpoints or run folders")
    parser.add_argument("--ks", default="1,5,7,9,13")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation episodes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            ckpt = checkpoint_of(run)
            row = {"run": str(run), "checkpoint": str(ckpt), "by_k": {}}
            for k in ks:
                row["by_k"][str(k)] = evaluate(ckpt, k, args.episodes, args.seed, Path(tmp))
                r = row["by_k"][str(k)]
                print(f"{run}  K={k:2d}  {100 * r['attempt_success']:5.1f}% "
                      f"({r['successes']}/{r['attempts']})  {r['wall_s']} s", flush=True)
            rows.append(row)
    summary = {str(k): {"mean_attempt_success": round(statistics.mean(
        r["by_k"][str(k)]["attempt_success"] for r in rows), 4),
        "min_attempt_success": min(r["by_k"][str(k)]["attempt_success"] for r in rows)}
        for k in ks}
    for k, s in summary.items():
        print(f"K={int(k):2d}: mean {100 * s['mean_attempt_success']:.1f}%, "
              f"lowest {100 * s['min_attempt_success']:.1f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/bench_select_smoothing.py " + " ".join(sys.argv[1:]),
        "episodes": args.episodes, "eval_seed": args.seed, "summary": summary, "runs": rows,
    }, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
