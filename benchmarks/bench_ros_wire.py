"""Wire format and DDS transport costs on this machine: encode/decode time of transition and
weight blobs (the grasp U-Net and the reacher MLP), and over real DDS between two processes
the one-way latency publish -> received and validated (weights broadcast latency) and the
throughput of grasp transition blobs.

    python benchmarks/bench_ros_wire.py [--repeats 50] [--throughput-blobs 500]

Prints a summary and writes benchmarks/results/ros_wire.json. The DDS part runs in its own
ROS domain on localhost (a child process echoes what it decoded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results" / "ros_wire.json"
BLOB_TOPIC = "/bench/blob"
ACK_TOPIC = "/bench/ack"
COMMAND_TOPIC = "/bench/joint_trajectory"
STATE_TOPIC = "/bench/joint_states"


def grasp_batch(n: int, seed: int = 0):
    """n grasp transitions shaped like the default grasp task (4 x 64 x 64 float32)."""
    from q_grasp.wire import TransitionBatch

    rng = np.random.default_rng(seed)
    shape = (n, 4, 64, 64)
    return TransitionBatch(
        observations=rng.random(shape, dtype=np.float32),
        next_observations=rng.random(shape, dtype=np.float32),
        actions=rng.integers(0, 8 * 64 * 64, n).astype(np.int64),
        rewards=(rng.random(n) < 0.3).astype(np.float32), terminated=np.ones(n, bool),
        truncated=np.zeros(n, bool), is_success=np.zeros(n, bool), num_actions=8 * 64 * 64,
        task="grasp", actor_id="bench")


def reacher_batch(n: int, seed: int = 0):
    from q_grasp.wire import TransitionBatch

    rng = np.random.default_rng(seed)
    return TransitionBatch(
        observations=rng.random((n, 7), dtype=np.float32),
        next_observations=rng.random((n, 7), dtype=np.float32),
        actions=rng.integers(0, 8, n).astype(np.int64),
        rewards=-rng.random(n).astype(np.float32), terminated=np.zeros(n, bool),
        truncated=np.zeros(n, bool), num_actions=8, task="reacher", actor_id="bench")


def networks() -> dict:
    """The default networks of both tasks, built exactly as the nodes build them."""
    from q_grasp.tasks.load import load_task

    return {task: load_task(task).q_net for task in ("grasp", "reacher")}


def _time(fn, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times)}


def codec(repeats: int, nets: dict) -> dict:
    from q_grasp.wire import (
        TransitionLimits,
        WeightsLimits,
        decode_transitions,
        decode_weights,
        encode_transitions,
        encode_weights,
        network_config_of,
        state_dict_shapes,
    )

    out = {}
    for name, batch in (("grasp_transition_x1", grasp_batch(1)),
                        ("reacher_transitions_x50", reacher_batch(50))):
        blob = encode_transitions(batch)
        out[name] = {"bytes": len(blob),
                     "encode": _time(lambda b=batch: encode_transitions(b), repeats),
                     "decode": _time(lambda b=blob: decode_transitions(b, TransitionLimits()),
                                     repeats)}
    for task, net in nets.items():
        state = net.state_dict()
        config, shapes = network_config_of(net), state_dict_shapes(state)
        blob = encode_weights(state, 1, config)
        out[f"{task}_weights"] = {
            "bytes": len(blob), "parameters": int(sum(v.numel() for v in state.values())),
            "encode": _time(lambda s=state, c=config: encode_weights(s, 1, c), repeats),
            "decode": _time(lambda b=blob, c=config, sh=shapes: decode_weights(
                b, WeightsLimits(), c, expected_shapes=sh), repeats)}
    return out


# ----------------------------------------------------------------------------- DDS


def sink() -> int:
    """Child process: decode every blob, answer with "schema seq latency_ns"."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String, UInt8MultiArray
    from trajectory_msgs.msg import JointTrajectory

    from q_grasp.messages import msg_to_blob
    from q_grasp.nodes import qos
    from q_grasp.wire import (
        TRANSITIONS_SCHEMA,
        WEIGHTS_SCHEMA,
        TransitionLimits,
        WeightsLimits,
        decode_transitions,
        decode_weights,
    )

    rclpy.init()
    node = rclpy.create_node("bench_sink")
    ack = node.create_publisher(String, ACK_TOPIC, qos.transitions_qos(1000))
    state_pub = node.create_publisher(JointState, STATE_TOPIC, qos.JOINT_STATES_PUBLISHER_QOS)

    def on_command(msg: JointTrajectory) -> None:
        # What a driver does at the least on a command: answer with a joint state (its stamp
        # echoes the command's, so that the source can match them).
        state_pub.publish(JointState(header=msg.header, name=list(msg.joint_names),
                                     position=list(msg.points[0].positions)))

    node.create_subscription(JointTrajectory, COMMAND_TOPIC, on_command, qos.COMMAND_QOS)

    def on_blob(msg: UInt8MultiArray) -> None:
        label = msg.layout.dim[0].label
        if label == WEIGHTS_SCHEMA:
            decoded = decode_weights(msg_to_blob(msg, label), WeightsLimits())
            seq, stamp = decoded.version, decoded.stamp_ns
        else:
            decoded = decode_transitions(msg_to_blob(msg, TRANSITIONS_SCHEMA),
                                         TransitionLimits())
            seq, stamp = decoded.sequence, decoded.stamp_ns
        ack.publish(String(data=f"{label} {seq} {time.time_ns() - stamp}"))

    node.create_subscription(UInt8MultiArray, BLOB_TOPIC, on_blob, qos.transitions_qos(1000))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def dds(repeats: int, throughput_blobs: int, nets: dict) -> dict:
    import rclpy
    from std_msgs.msg import String, UInt8MultiArray

    from q_grasp.node_processes import stop_process, unique_domain_id, wait_until
    from q_grasp.nodes import qos
    from q_grasp.nodes.convert import blob_to_msg
    from q_grasp.wire import (
        TRANSITIONS_SCHEMA,
        WEIGHTS_SCHEMA,
        encode_transitions,
        encode_weights,
        network_config_of,
    )

    domain = unique_domain_id()
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    import subprocess

    from q_grasp.node_processes import ros_child_env

    child = subprocess.Popen([sys.executable, __file__, "--role", "sink"],
                             env=ros_child_env(domain), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    rclpy.init()
    node = rclpy.create_node("bench_source")
    acks: list[str] = []
    node.create_subscription(String, ACK_TOPIC, lambda m: acks.append(m.data),
                             qos.transitions_qos(1000))
    pub = node.create_publisher(UInt8MultiArray, BLOB_TOPIC, qos.transitions_qos(1000))

    def spin() -> None:
        rclpy.spin_once(node, timeout_sec=0.01)

    results: dict = {}
    try:
        assert wait_until(lambda: pub.get_subscription_count() > 0
                          and node.count_publishers(ACK_TOPIC) > 0, 30.0, spin)
        for task, net in nets.items():
            state, config = net.state_dict(), network_config_of(net)
            latencies = []
            for version in range(repeats):
                acks.clear()
                blob = encode_weights(state, version, config, stamp_ns=time.time_ns())
                pub.publish(blob_to_msg(blob, WEIGHTS_SCHEMA))
                assert wait_until(lambda: bool(acks), 10.0, spin)
                latencies.append(int(acks[-1].split()[2]) * 1e-6)
            results[f"{task}_weights_latency_ms"] = {
                "bytes": len(blob), "median": statistics.median(latencies),
                "p90": float(np.percentile(latencies, 90))}
        results["command_round_trip_ms"] = command_round_trips(node, spin, repeats * 4)
        batch = grasp_batch(1)
        acks.clear()
        start = time.perf_counter()
        for seq in range(throughput_blobs):
            batch.sequence, batch.stamp_ns = seq, time.time_ns()
            pub.publish(blob_to_msg(encode_transitions(batch), TRANSITIONS_SCHEMA))
            spin()
        assert wait_until(lambda: len(acks) >= throughput_blobs, 60.0, spin)
        elapsed = time.perf_counter() - start
        latencies = [int(a.split()[2]) * 1e-6 for a in acks]
        results["grasp_transitions_throughput"] = {
            "blobs": throughput_blobs, "seconds": elapsed,
            "blobs_per_s": throughput_blobs / elapsed,
            "mb_per_s": throughput_blobs * len(encode_transitions(batch)) / elapsed / 1e6,
            "latency_ms_median": statistics.median(latencies)}
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop_process(child)
    return results


def command_round_trips(node, spin, repeats: int) -> dict:
    """JointTrajectory published -> the child's JointState answer received: the floor of the
    round trip every arm command of the policy makes (command out, joint state back) over
    rclpy and DDS, with no simulator in between."""
    from builtin_interfaces.msg import Duration
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from q_grasp.node_processes import wait_until
    from q_grasp.nodes import qos

    answers: list[int] = []
    node.create_subscription(JointState, STATE_TOPIC,
                             lambda m: answers.append(m.header.stamp.nanosec),
                             qos.DEFAULT_QOS)
    pub = node.create_publisher(JointTrajectory, COMMAND_TOPIC, qos.COMMAND_QOS)
    assert wait_until(lambda: pub.get_subscription_count() > 0
                      and node.count_publishers(STATE_TOPIC) > 0, 30.0, spin)
    names = [f"joint_{i}" for i in range(5)]
    times_ms = []
    for i in range(repeats + 5):  # the first few warm up the matching
        msg = JointTrajectory(joint_names=names, points=[JointTrajectoryPoint(
            positions=[0.1 * i] * 5, time_from_start=Duration(sec=1))])
        msg.header.stamp.nanosec = i
        t0 = time.perf_counter()
        pub.publish(msg)
        assert wait_until(lambda i=i: bool(answers) and answers[-1] == i, 10.0, spin)
        if i >= 5:
            times_ms.append((time.perf_counter() - t0) * 1e3)
    return {"n": len(times_ms), "median": statistics.median(times_ms),
            "p90": float(np.percentile(times_ms, 90)), "min": min(times_ms)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--throughput-blobs", type=int, default=500)
    parser.add_argument("--role", choices=["main", "sink"], default="main",
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "sink":
        return sink()
    import torch

    torch.set_num_threads(1)
    nets = networks()
    result = {
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "command": "python benchmarks/bench_ros_wire.py " + " ".join(sys.argv[1:]),
        "codec": codec(args.repeats, nets),
        "dds": dds(max(args.repeats // 2, 5), args.throughput_blobs, nets),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for section in ("codec", "dds"):
        for name, values in result[section].items():
            print(f"{section:6s} {name:32s} {json.dumps(values)}")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
