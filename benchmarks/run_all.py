"""Run every benchmark of BENCHMARKS.md in turn (one at a time: the machine has 2 cores).

    python benchmarks/run_all.py                 # simulator, IK, baselines, wire, ROS system
    python benchmarks/run_all.py --learning      # + the learning targets (hours on 2 cores)

Each script prints its figures and writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK = ["bench_reacher_speed.py", "bench_ik.py", "bench_grasp.py", "bench_ros_wire.py",
         "bench_ros_system.py", "bench_recorder_viewer.py"]
LEARNING = [["bench_learning.py", "--only", "reacher,cartpole,grasp", "--seeds", "0,1,2"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learning", action="store_true",
                        help="also run the learning benchmarks (long)")
    args = parser.parse_args(argv)
    jobs = [[name] for name in QUICK] + (LEARNING if args.learning else [])
    failed = []
    for job in jobs:
        print(f"== {' '.join(job)}", flush=True)
        start = time.monotonic()
        rc = subprocess.call([sys.executable, str(HERE / job[0]), *job[1:]])
        print(f"== {job[0]}: exit {rc} after {time.monotonic() - start:.0f} s", flush=True)
        if rc != 0:
            failed.append(job[0])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
