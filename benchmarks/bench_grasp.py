"""Grasp baselines and TopDownGrasp speed on this machine: success of the scripted and the
random policy over >= 200 attempts each, on single primitive objects and on 1-5 object clutter,
and grasp attempts per second (physics, rendering, IK and resets included) both per wall-clock
second and per CPU second of this process (the machine is shared; CPU time is what one env
costs when it has a core to itself).

    python benchmarks/bench_grasp.py [--attempts 200] [--seed 0]

Prints one line per run and writes benchmarks/results/grasp_baselines.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from q_grasp.baselines import run_baseline  # noqa: E402
from q_grasp.envs.grasp import GraspConfig  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "grasp_baselines.json"

SETTINGS = {
    # name: (policy, min objects, max objects, attempts per episode)
    "scripted_single": ("scripted", 1, 1, 5),
    "random_single": ("random", 1, 1, 5),
    "scripted_clutter_1to5": ("scripted", 1, 5, 10),
    "random_clutter_1to5": ("random", 1, 5, 10),
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attempts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--rotations", type=int, default=8)
    parser.add_argument("--only", choices=sorted(SETTINGS), nargs="*", default=None)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    results: dict = {
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "command": "python benchmarks/bench_grasp.py " + " ".join(sys.argv[1:]),
        "image_size": args.image_size, "num_rotations": args.rotations,
    }
    for name, (policy, lo, hi, max_attempts) in SETTINGS.items():
        if args.only and name not in args.only:
            continue
        config = GraspConfig(image_size=(args.image_size, args.image_size),
                             num_rotations=args.rotations, min_objects=lo, max_objects=hi,
                             max_attempts=max_attempts)
        r = run_baseline(policy, args.attempts, config, seed=args.seed)
        r["num_objects"] = [lo, hi]
        r["max_attempts_per_episode"] = max_attempts
        results[name] = r
        print(f"{name:24s} success {r['successes']:4d}/{r['attempts']} = "
              f"{100 * r['success_rate']:5.1f}%  IK failures {r['ik_failures']:3d}  "
              f"sensed==ground truth {100 * r['sensed_vs_ground_truth_agreement']:5.1f}%  "
              f"{r['attempts_per_s']:5.1f} attempts/s ({r['attempts_per_cpu_s']:5.1f} per CPU-s)  "
              f"{r['physics_steps_per_attempt']:5.0f} physics steps/attempt", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
