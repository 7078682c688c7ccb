"""Cost of the MCAP recorder and the Rerun viewer on the main job's throughput.

    python benchmarks/bench_recorder_viewer.py [--rounds 2] [--transitions 200]
        [--modes off record viewer] [--baseline DIR] [--out FILE]

Runs `python -m q_grasp.nodes.bringup --task grasp --trainer-process --max-transitions N
--eval-episodes 0 --catch-up false` with neither, with --record and with --viewer, alternating
(each in a fresh output folder and its own ROS domain), so that the load of other jobs on the
machine falls on all three alike. Reports transitions/s over the training phase and the CPU
seconds per transition of the bringup process (sim_arm, policy and the recorder or viewer;
the trainer child, which trains as fast as its core allows, is left out), over the whole run
and over its steady state (from the progress line with 20 transitions to the budget: no
start-up work such as imports, the policy's reach table or the viewer's URDF). It also reports
the viewer's own CPU per transition: its drawing thread plus Rerun's native threads (each
thread's CPU from /proc; the runs name their Python threads through a sitecustomize), a figure
that, unlike the whole process's, does not move with how long the actor waits on a loaded
machine. Writes benchmarks/results/recorder_viewer.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from q_grasp.node_processes import ros_child_env, unique_domain_id  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "recorder_viewer.json"
MODES = {"off": [], "record": ["--record"], "viewer": ["--viewer", "--viewer-port", "29090"]}
PROGRESS = re.compile(r"\[\s*\d+:\d+\] transitions (\d+)/")
STEADY_FROM = 20
VIEWER_THREADS = ("viewer_draw", "ChunkBatcher", "file_writer", "tokio-rt-worker",
                  "RecordingStream", "message_proxy", "jemalloc_bg_thd")
"""Threads of the viewer: its drawing thread, then Rerun's (batcher, .rrd writer, gRPC server,
its allocator); the others' names are in the results (threads_cpu_s)."""
NAME_THREADS = """import ctypes, threading
_prctl, _start = ctypes.CDLL(None).prctl, threading.Thread._bootstrap_inner
def _named(self):
    _prctl(15, self.name[:15].encode(), 0, 0, 0)  # PR_SET_NAME: /proc/<pid>/task/<tid>/comm
    _start(self)
threading.Thread._bootstrap_inner = _named
"""
"""sitecustomize.py for the runs: Python threads get their names at the OS level, so the CPU of
each (the viewer's drawing thread among them) can be read from /proc."""
"""Transitions after which the steady-state window begins."""


def own_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` itself (all its threads, no children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def native_threads_cpu_s(pid: int, seen: dict[str, tuple[str, float]]) -> None:
    """Update ``seen`` (thread id -> (name, CPU s)) with the threads of ``pid``."""
    tck = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        seen[tid] = (name, (int(fields[11]) + int(fields[12])) / tck)


def run_once(out: Path, transitions: int, extra: list[str], code: str | None = None) -> dict:
    """One bringup run; ``code``: a folder whose q_grasp package runs instead of this one."""
    site = out.parent / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(NAME_THREADS)
    cmd = [sys.executable, "-m", "q_grasp.nodes.bringup", "--task", "grasp",
           "--trainer-process", "--max-transitions", str(transitions), "--eval-episodes", "0",
           "--catch-up", "false", "--out", str(out), *extra]
    load = os.getloadavg()[0]
    log_path = Path(f"{out}.log")
    with open(log_path, "w") as log:
        env = ros_child_env(unique_domain_id())
        env["PYTHONPATH"] = os.pathsep.join([code or env["PYTHONPATH"], str(site)])
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        actor_cpu_s = 0.0
        steady: list[tuple[float, float, int]] = []  # (wall, CPU s, transitions) samples
        read = 0
        threads: dict[str, tuple[str, float]] = {}
        while proc.poll() is None:  # the last sample before exit (at most 0.2 s short)
            try:
                actor_cpu_s = own_cpu_s(proc.pid)
                native_threads_cpu_s(proc.pid, threads)
            except (OSError, IndexError, ValueError):
                pass
            text = log_path.read_text()
            for line in text[read:text.rfind("\n") + 1].splitlines():
                # Progress lines every 10 s; the window starts once STEADY_FROM transitions
                # are in (start-up: imports, the reach table, the viewer's URDF) and ends at
                # the budget.
                match = PROGRESS.match(line)
                if match and int(match[1]) >= STEADY_FROM:
                    steady.append((time.monotonic(), actor_cpu_s, int(match[1])))
            read = text.rfind("\n") + 1
            time.sleep(0.2)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}; see {out}.log")
    (t0, cpu0, n0), (t1, cpu1, n1) = (steady[0], steady[-1]) if steady else ((0, 0, 0),) * 2
    summary = json.loads((out / "bringup_summary.json").read_text())
    # The viewer's own work: its drawing thread and Rerun's native threads.
    viewer_cpu_s = sum(cpu for name, cpu in threads.values() if name.startswith(VIEWER_THREADS))
    n = summary["transitions"]
    written = summary.get("recording") or summary.get("viewer_rrd") or ""
    return {"transitions": n, "train_wall_s": round(summary["train_wall_s"], 1),
            "transitions_per_s": round(n / summary["train_wall_s"], 2),
            "actor_cpu_s_per_transition": round(actor_cpu_s / n, 3),
            "steady_transitions_per_s": round((n1 - n0) / (t1 - t0), 2) if n1 > n0 else None,
            "steady_cpu_s_per_transition": (round((cpu1 - cpu0) / (n1 - n0), 4) if n1 > n0
                                            else None),
            "viewer_cpu_s_per_transition": round(viewer_cpu_s / n, 4),
            "threads_cpu_s": {name: round(sum(c for m, c in threads.values() if m == name), 2)
                              for name in sorted({m for m, _ in threads.values()})},
            "updates": summary["updates"], "load_at_start": round(load, 2),
            "file_mib": round(os.path.getsize(written) / 2**20, 1) if written else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--transitions", type=int, default=200)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--baseline", metavar="DIR",
                        help="also run --viewer with the q_grasp of DIR (an older version, e.g. "
                        "`git archive COMMIT | tar -x -C DIR`) as mode viewer_baseline")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help=f"result file (default {RESULTS.relative_to(RESULTS.parents[2])})")
    args = parser.parse_args()
    if args.rounds < 1 or args.transitions < 1:
        parser.error("--rounds and --transitions must be >= 1")
    modes = {m: (MODES[m], None) for m in args.modes}
    if args.baseline:
        if not (Path(args.baseline) / "q_grasp" / "nodes" / "viewer.py").is_file():
            parser.error(f"--baseline {args.baseline}: holds no q_grasp/nodes/viewer.py")
        modes["viewer_baseline"] = (MODES["viewer"], str(Path(args.baseline).resolve()))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(args.rounds):
            for mode, (extra, code) in modes.items():
                row = {"mode": mode, "round": i + 1,
                       **run_once(Path(scratch) / f"{mode}_{i}", args.transitions, extra, code)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    means = {}
    for mode in modes:
        mine = [r for r in rows if r["mode"] == mode]
        means[mode] = {k: round(sum(r[k] for r in mine) / len(mine), 3)
                       for k in ("transitions_per_s", "actor_cpu_s_per_transition",
                                 "steady_transitions_per_s", "steady_cpu_s_per_transition",
                                 "viewer_cpu_s_per_transition")
                       if all(r[k] is not None for r in mine)}
    print(json.dumps(means))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "runs": rows,
                                    "means": means}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
