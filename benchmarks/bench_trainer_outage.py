"""Transitions lost across a trainer outage: sim_arm, policy and trainer run as three processes
with the shipped parameter file (config/sim_train_<task>.yaml) and a fresh authentication key,
as bringup starts them; the trainer is killed with SIGKILL, stays down for --outage-s seconds
while the policy keeps acting, and is restarted from its output folder. Once the policy has
been stopped and the trainer has caught up, the transitions the policy published (read from
the topic by this script) are compared with the trainer's count and its lost_transitions.

    python benchmarks/bench_trainer_outage.py [--task reacher] [--outage-s 30] [--runs 1]

The outage counted is from the kill until the new trainer's subscription appears (its start-up
included). Prints a summary and writes benchmarks/results/trainer_outage_<task>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = Path(__file__).resolve().parent.parent / "config"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("reacher", "grasp"), default="reacher")
    parser.add_argument("--outage-s", type=float, default=30.0)
    parser.add_argument("--before-s", type=float, default=10.0,
                        help="acting with the trainer up before the kill")
    parser.add_argument("--after-s", type=float, default=10.0,
                        help="acting after the restart before the policy is stopped")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import UInt8MultiArray

    from q_grasp.messages import msg_to_blob
    from q_grasp.node_processes import (
        start_node_process,
        stop_process,
        udp_localhost_env,
        unique_domain_id,
        wait_until,
    )
    from q_grasp.nodes import qos
    from q_grasp.wire import TRANSITIONS_SCHEMA, TransitionLimits, WireError, authenticator
    from q_grasp.wire.auth import new_key_file
    from q_grasp.wire.transitions import decode_transitions

    domain = unique_domain_id()
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ.update(udp_localhost_env())  # SIGKILL + restart on one host
    params = CONFIG / f"sim_train_{args.task}.yaml"
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("outage_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    diag: dict[str, dict[str, str]] = {"trainer": {}, "policy": {}}
    published: dict[str, int] = {}  # run id of the actor -> transitions it published
    sizes: list[int] = []

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            for name, values in diag.items():
                if status.name.endswith(name):
                    values.update({kv.key: kv.value for kv in status.values})

    key_file = new_key_file()
    auth = authenticator(str(key_file))
    limits = TransitionLimits(max_obs_elements=4 * 256 * 256)

    def on_transitions(msg: UInt8MultiArray) -> None:
        try:
            blob = auth.verify(msg_to_blob(msg, TRANSITIONS_SCHEMA))
            batch = decode_transitions(blob, limits, authenticated=True)
        except WireError as exc:
            print(f"probe: undecodable transitions ({exc})")
            return
        sizes.append(len(msg.data))
        published[batch.run_id] = max(published.get(batch.run_id, 0),
                                      batch.sequence + len(batch))

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, qos.DEFAULT_QOS)
    # As deep as anything the policy can hold, so this probe itself misses nothing.
    node.create_subscription(UInt8MultiArray, "/q_grasp/transitions", on_transitions,
                             qos.transitions_qos(10000))

    def spin_for(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.02)

    def spin() -> None:
        executor.spin_once(timeout_sec=0.05)

    def total() -> int:
        return sum(published.values())

    runs = []
    try:
        for run in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                common = ["--params-file", str(params), "-p", "use_sim_time:=true"]
                node_args = [*common, "-p", f"task:={args.task}",
                             "-p", f"auth_key_file:={key_file}"]
                trainer_args = [*node_args, "-p", f"output_dir:={folder / 'out'}"]
                published.clear()
                for values in diag.values():
                    values.clear()
                procs = {
                    "sim_arm": start_node_process("q_grasp.nodes.sim_arm", common,
                                                  domain_id=domain,
                                                  log_path=folder / "sim_arm.log"),
                    "trainer": start_node_process("q_grasp.nodes.trainer", trainer_args,
                                                  domain_id=domain,
                                                  log_path=folder / "trainer1.log"),
                }
                try:
                    assert wait_until(lambda: "buffer_size" in diag["trainer"], 120.0, spin), (
                        (folder / "trainer1.log").read_text()[-3000:])
                    procs["policy"] = start_node_process(
                        "q_grasp.nodes.policy", node_args, domain_id=domain,
                        log_path=folder / "policy.log")
                    assert wait_until(lambda: total() > 0, 180.0, spin), (
                        (folder / "policy.log").read_text()[-3000:])
                    spin_for(args.before_s)
                    before = int(diag["trainer"].get("transitions", 0))
                    procs["trainer"].send_signal(signal.SIGKILL)
                    procs["trainer"].wait(timeout=10)
                    stop_process(procs["trainer"])
                    at_kill = total()
                    killed = time.monotonic()
                    spin_for(args.outage_s)
                    at_restart = total()
                    diag["trainer"].clear()
                    procs["trainer"] = start_node_process(
                        "q_grasp.nodes.trainer", trainer_args, domain_id=domain,
                        log_path=folder / "trainer2.log")
                    # The outage lasts until the new trainer subscribes (its start-up included);
                    # this probe's own subscription is the other one on the topic.
                    assert wait_until(lambda: node.count_subscribers(
                        "/q_grasp/transitions") >= 2, 120.0, spin)
                    at_match = total()
                    outage_s = time.monotonic() - killed
                    assert wait_until(lambda: "buffer_size" in diag["trainer"], 120.0, spin), (
                        (folder / "trainer2.log").read_text()[-3000:])
                    spin_for(args.after_s)
                    stop_process(procs["policy"])
                    spin_for(2.0)  # the policy's last messages
                    final = total()

                    def caught_up(final: int = final) -> bool:
                        t = diag["trainer"]
                        return int(t.get("transitions", 0)) + int(
                            t.get("lost_transitions", 0)) >= final

                    wait_until(caught_up, 60.0, spin)
                    spin_for(1.5)  # one more /diagnostics period
                    t = diag["trainer"]
                    result = {
                        "published": final, "published_before_kill": at_kill,
                        "trainer_had_at_kill": before,
                        "published_while_down": at_restart - at_kill,
                        "published_during_start_up": at_match - at_restart,
                        "published_during_outage": at_match - at_kill,
                        "outage_s": round(outage_s, 1),
                        "actor_rate_per_s": round((at_match - at_kill) / outage_s, 1),
                        "trainer_transitions": int(t.get("transitions", 0)),
                        "lost_transitions": int(t.get("lost_transitions", 0)),
                        "redelivered_batches": int(t.get("redelivered_batches", 0)),
                        "dropped_batches": int(t.get("dropped_batches", 0)),
                        "rejected": int(t.get("rejected", 0)),
                        "actor_runs": len(published),
                        "mean_message_bytes": round(sum(sizes) / max(len(sizes), 1)),
                    }
                    result["missing"] = final - result["trainer_transitions"]
                    runs.append(result)
                    print(f"run {run}: {json.dumps(result)}")
                finally:
                    for proc in procs.values():
                        stop_process(proc)
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        key_file.unlink(missing_ok=True)
    out = RESULTS / f"trainer_outage_{args.task}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"date": time.strftime("%Y-%m-%d"), "task": args.task, "params_file": params.name,
               "outage_s": args.outage_s, "runs": runs,
               "max_missing": max(r["missing"] for r in runs)}
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"at most {summary['max_missing']} transitions missing; wrote {out}")


if __name__ == "__main__":
    main()
