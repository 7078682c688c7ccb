"""Cost of the MCAP recorder and the Rerun viewer on the main job's throughput.

    python benchmarks/bench_recorder_viewer.py [--rounds 2] [--transitions 200]

Runs `python -m q_grasp.nodes.bringup --task grasp --trainer-process --max-transitions N
--eval-episodes 0 --catch-up false` with neither, with --record and with --viewer, alternating
(each in a fresh output folder and its own ROS domain), so that the load of other jobs on the
machine falls on all three alike. Reports transitions/s over the training phase and the CPU
seconds per transition of the bringup process (sim_arm, policy and the recorder or viewer;
the trainer child, which trains as fast as its core allows, is left out). Writes
benchmarks/results/recorder_viewer.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from q_grasp.nodes.testing import ros_child_env, unique_domain_id

RESULTS = Path(__file__).resolve().parent / "results" / "recorder_viewer.json"
MODES = {"off": [], "record": ["--record"], "viewer": ["--viewer", "--viewer-port", "29090"]}


def own_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` itself (all its threads, no children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(out: Path, transitions: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "q_grasp.nodes.bringup", "--task", "grasp",
           "--trainer-process", "--max-transitions", str(transitions), "--eval-episodes", "0",
           "--catch-up", "false", "--out", str(out), *extra]
    load = os.getloadavg()[0]
    with open(f"{out}.log", "w") as log:
        proc = subprocess.Popen(cmd, env=ros_child_env(unique_domain_id()), stdout=log,
                                stderr=subprocess.STDOUT)
        actor_cpu_s = 0.0
        while proc.poll() is None:  # the last sample before exit (at most 0.2 s short)
            try:
                actor_cpu_s = own_cpu_s(proc.pid)
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.2)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}; see {out}.log")
    summary = json.loads((out / "bringup_summary.json").read_text())
    n = summary["transitions"]
    written = summary.get("recording") or summary.get("viewer_rrd") or ""
    return {"transitions": n, "train_wall_s": round(summary["train_wall_s"], 1),
            "transitions_per_s": round(n / summary["train_wall_s"], 2),
            "actor_cpu_s_per_transition": round(actor_cpu_s / n, 3),
            "updates": summary["updates"], "load_at_start": round(load, 2),
            "file_mib": round(os.path.getsize(written) / 2**20, 1) if written else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--transitions", type=int, default=200)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(args.rounds):
            for mode, extra in MODES.items():
                row = {"mode": mode, "round": i + 1,
                       **run_once(Path(scratch) / f"{mode}_{i}", args.transitions, extra)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    means = {}
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        means[mode] = {k: round(sum(r[k] for r in mine) / len(mine), 3)
                       for k in ("transitions_per_s", "actor_cpu_s_per_transition")}
    print(json.dumps(means))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "runs": rows,
                                   "means": means}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
