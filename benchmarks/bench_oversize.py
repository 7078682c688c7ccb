"""What an oversized /q_grasp/transitions message costs the trainer before q_grasp can refuse
it, and whether a Fast DDS profile can refuse it earlier.

A trainer process (reacher) receives three valid transition blobs, then one message of
--megabytes of junk, then three valid blobs again. Its peak resident memory (VmHWM) is read
before and after the junk. Variants, each with a fresh trainer:

- ``default``: the UDP-localhost profile q_grasp ships (config/fastdds_udp_localhost.xml).
- ``preallocated``: the same plus RMW_FASTRTPS_USE_QOS_FROM_XML=1 and a data_reader profile
  for the topic with historyMemoryPolicy PREALLOCATED (payloads of the type's maximum size
  allocated up front, larger samples refused by Fast DDS), the only per-reader size bound
  Fast DDS 2.14 has.

    python benchmarks/bench_oversize.py [--megabytes 200]

Prints a summary and writes benchmarks/results/oversize.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results" / "oversize.json"
PREALLOCATED_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <profiles>
    <data_writer profile_name="default_writer" is_default_profile="true">
      <historyMemoryPolicy>PREALLOCATED_WITH_REALLOC</historyMemoryPolicy>
    </data_writer>
    <data_reader profile_name="default_reader" is_default_profile="true">
      <historyMemoryPolicy>PREALLOCATED_WITH_REALLOC</historyMemoryPolicy>
    </data_reader>
    <data_reader profile_name="/q_grasp/transitions">
      <historyMemoryPolicy>PREALLOCATED</historyMemoryPolicy>
    </data_reader>
  </profiles>
</dds>
"""


def vm_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def measure(name: str, env: dict[str, str], tmp: Path, blob, junk: np.ndarray) -> dict:
    """One trainer on its own domain: small blobs, the junk, small blobs again."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import UInt8MultiArray

    from q_grasp.node_processes import (
        start_node_process,
        stop_process,
        udp_localhost_env,
        unique_domain_id,
        wait_until,
    )
    from q_grasp.nodes import qos
    from q_grasp.nodes.convert import blob_to_msg
    from q_grasp.wire import TRANSITIONS_SCHEMA

    domain = unique_domain_id()
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ.update(udp_localhost_env())
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("oversize_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    diag: dict[str, str] = {}

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith("trainer"):
                diag.update({kv.key: kv.value for kv in status.values})

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, qos.DEFAULT_QOS)
    pub = node.create_publisher(UInt8MultiArray, "/q_grasp/transitions", qos.transitions_qos())

    def spin() -> None:
        executor.spin_once(timeout_sec=0.05)

    def counter(key: str) -> int:
        return int(diag.get(key, 0))

    log = tmp / f"trainer_{name}.log"
    proc = start_node_process(
        "q_grasp.nodes.trainer",
        ["-p", "task:=reacher", "-p", f"output_dir:={tmp / name}", "-p", "log_every_s:=0.3",
         "-p", "learning_starts:=100000000"],
        domain_id=domain, log_path=log, extra_env=env)
    try:
        up = wait_until(lambda: pub.get_subscription_count() > 0 and "buffer_size" in diag,
                        90.0, spin)
        assert up, log.read_text()[-3000:]
        for k in range(3):
            pub.publish(blob_to_msg(blob(10 * k), TRANSITIONS_SCHEMA))
        ok_before = wait_until(lambda: counter("buffer_size") >= 30, 20.0, spin)
        rss_before = vm_kb(proc.pid, "VmRSS")
        hwm_before = vm_kb(proc.pid, "VmHWM")
        msg = UInt8MultiArray()
        msg.data = junk
        start = time.monotonic()
        pub.publish(msg)
        refused = wait_until(lambda: counter("rejected") >= 1, 60.0, spin)
        refused_s = time.monotonic() - start
        for k in range(3, 6):
            pub.publish(blob_to_msg(blob(10 * k), TRANSITIONS_SCHEMA))
        ok_after = wait_until(lambda: counter("buffer_size") >= 60, 20.0, spin)
        hwm_after = vm_kb(proc.pid, "VmHWM")
        text = log.read_text()
        return {
            "small_blobs_before": ok_before, "small_blobs_after": ok_after,
            "buffer_size": counter("buffer_size"), "junk_counted_rejected": refused,
            "rejected_reasons": {k: v for k, v in diag.items() if k.startswith("rejected.")},
            "seconds_to_rejection": round(refused_s, 2) if refused else None,
            "rss_before_mb": round(rss_before / 1024),
            "peak_before_mb": round(hwm_before / 1024),
            "peak_after_mb": round(hwm_after / 1024),
            "peak_growth_mb": round((hwm_after - hwm_before) / 1024),
            "fast_dds_errors": [line for line in text.splitlines() if "Error" in line][:3],
            "alive": proc.poll() is None,
        }
    finally:
        stop_process(proc)
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=200.0)
    args = parser.parse_args()

    from q_grasp.learning.tasks import default_config, make_env
    from q_grasp.node_processes import UDP_LOCALHOST_PROFILE, udp_localhost_env
    from q_grasp.wire import TransitionBatch, encode_transitions

    obs_dim = make_env(default_config("q_grasp/Reacher-v0").env).observation_space.shape[0]

    def blob(sequence: int) -> bytes:
        rng = np.random.default_rng(sequence)
        return encode_transitions(TransitionBatch(
            observations=rng.random((10, obs_dim), dtype=np.float32),
            next_observations=rng.random((10, obs_dim), dtype=np.float32),
            actions=rng.integers(0, 8, 10), rewards=-rng.random(10, dtype=np.float32),
            terminated=np.zeros(10, bool), truncated=np.zeros(10, bool), num_actions=8,
            task="reacher", actor_id="bench", run_id="oversize", sequence=sequence))

    junk = np.zeros(int(args.megabytes * 1e6), np.uint8)
    junk[:8] = np.frombuffer((2**40).to_bytes(8, "little"), np.uint8)  # a huge header length
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        profile = Path(tmp) / "preallocated.xml"
        udp = UDP_LOCALHOST_PROFILE.read_text()
        # One file: the shipped participant profile plus the reader/writer profiles.
        extra = PREALLOCATED_PROFILE.split("<profiles>")[1].split("</profiles>")[0]
        profile.write_text(udp.replace("</profiles>", extra + "</profiles>"))
        variants = {
            "default": udp_localhost_env(),
            "preallocated": {**udp_localhost_env(), "FASTRTPS_DEFAULT_PROFILES_FILE": str(profile),
                             "RMW_FASTRTPS_USE_QOS_FROM_XML": "1"},
        }
        for name, env in variants.items():
            results[name] = measure(name, env, Path(tmp), blob, junk)
            print(f"{name}: {json.dumps(results[name])}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"),
                                   "megabytes": args.megabytes, "variants": results},
                                  indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
