"""Replay entries a trainer loses to SIGKILL: a trainer process (reacher) receives a steady
stream of transitions over DDS, is killed with SIGKILL at a random moment, and is restarted
from its output folder; its replay buffer is compared with what was published before the kill.
Learning is held off (learning_starts beyond the run) so that only persistence is measured.

    python benchmarks/bench_trainer_crash.py [--runs 3] [--seconds 8] [--rate-hz 50]

Prints a summary and writes benchmarks/results/trainer_crash.json.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results" / "trainer_crash.json"
BATCH = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0,
                        help="mean streaming time before the kill (uniform in 0.5x..1.5x)")
    parser.add_argument("--rate-hz", type=float, default=50.0, help="batches of 10 per second")
    args = parser.parse_args()

    import os

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import UInt8MultiArray

    from q_grasp.learning.tasks import default_config, make_env
    from q_grasp.node_processes import (
        start_node_process,
        stop_process,
        udp_localhost_env,
        unique_domain_id,
        wait_until,
    )
    from q_grasp.nodes import qos
    from q_grasp.nodes.convert import blob_to_msg
    from q_grasp.wire import TRANSITIONS_SCHEMA, TransitionBatch, encode_transitions

    domain = unique_domain_id()
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ.update(udp_localhost_env())  # SIGKILL + restart on one host
    obs_dim = make_env(default_config("q_grasp/Reacher-v0").env).observation_space.shape[0]
    rng = np.random.default_rng(0)

    def blob(sequence: int) -> bytes:
        return encode_transitions(TransitionBatch(
            observations=rng.random((BATCH, obs_dim), dtype=np.float32),
            next_observations=rng.random((BATCH, obs_dim), dtype=np.float32),
            actions=rng.integers(0, 8, BATCH), rewards=-rng.random(BATCH, dtype=np.float32),
            terminated=np.zeros(BATCH, bool), truncated=np.zeros(BATCH, bool), num_actions=8,
            task="reacher", actor_id="bench", run_id="bench-run", sequence=sequence))

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("crash_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    diag: dict[str, str] = {}

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith("trainer"):
                diag.update({kv.key: kv.value for kv in status.values})

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, qos.DEFAULT_QOS)
    pub = node.create_publisher(UInt8MultiArray, "/q_grasp/transitions",
                                qos.transitions_qos(100))

    def spin() -> None:
        executor.spin_once(timeout_sec=0.01)

    runs = []
    random.seed(1)
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            out = Path(tmp) / f"run{run}"
            params = ["-p", "task:=reacher", "-p", f"output_dir:={out}",
                      "-p", "learning_starts:=100000000", "-p", "log_every_s:=0.5"]
            proc = start_node_process("q_grasp.nodes.trainer", params, domain_id=domain,
                                      log_path=Path(tmp) / f"trainer{run}a.log")
            assert wait_until(lambda: pub.get_subscription_count() > 0, 60.0, spin)
            time.sleep(1.0)  # the trainer's subscription is matched both ways
            streamed_s = args.seconds * random.uniform(0.5, 1.5)
            published, start = 0, time.monotonic()
            while time.monotonic() - start < streamed_s:
                pub.publish(blob_to_msg(blob(published), TRANSITIONS_SCHEMA))
                published += BATCH
                deadline = start + published / BATCH / args.rate_hz
                while time.monotonic() < deadline:
                    spin()
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            stop_process(proc)
            diag.clear()
            proc = start_node_process("q_grasp.nodes.trainer", params, domain_id=domain,
                                      log_path=Path(tmp) / f"trainer{run}b.log")
            assert wait_until(lambda: "buffer_size" in diag, 60.0, spin)
            restored = int(diag["buffer_size"])
            stop_process(proc)
            lost = published - restored
            runs.append({"streamed_s": streamed_s, "published": published,
                         "restored": restored, "lost": lost,
                         "lost_s": lost / BATCH / args.rate_hz})
            print(f"run {run}: {published} transitions in {streamed_s:.1f} s, restored "
                  f"{restored}, lost {lost} ({runs[-1]['lost_s']:.2f} s of the stream)")
    node.destroy_node()
    rclpy.try_shutdown(context=context)
    result = {"date": time.strftime("%Y-%m-%d"), "rate_transitions_per_s": args.rate_hz * BATCH,
              "replay_flush_every_s": 2.0, "runs": runs,
              "max_lost_s": max(r["lost_s"] for r in runs)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"at most {result['max_lost_s']:.2f} s of transitions lost; wrote {RESULTS}")


if __name__ == "__main__":
    main()
