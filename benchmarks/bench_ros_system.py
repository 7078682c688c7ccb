"""The ROS 2 system's costs on this machine, measured with the real nodes over DDS:

(a) grasp transitions per second through ROS against the single-process loop doing the same
    work (TopDownGraspEnv: physics grasp, camera, IK, the same fresh U-Net's Q-map every
    attempt, the same epsilon-greedy choice among the reachable grasps). Like for like, the
    single-process loop moves with physics to the pre-grasp pose and back home as the ROS arm
    must (the env's default teleports there; measured too, and so is the loop without the
    reachability mask). ROS variants: sim_arm + policy
    composed in one process (bringup's default, EventsExecutor or MultiThreadedExecutor; also
    with /clock every tick and every camera frame rendered, with physics
    stepped while the world is still, at real-time factors 10 and 40 instead of 20, and with
    the arm stopping at every waypoint of a descent or lift as the env's arm does) and in
    two processes (as ros2 launch runs
    them; also with the simulator unpaced). The transitions are decoded in this process as
    the trainer would.
    Beside the rate: simulated seconds and CPU seconds (all processes summed) per transition,
    because the machine is shared and the loops need not spend the same simulated time.
(b) U-Net decision latency: camera frame received -> first trajectory command published, as the
    policy node marks it (U-Net forward, Q-map image, IK), per attempt from /diagnostics.
(c) weights broadcast latency: the trainer's weights blob (grasp U-Net) encoded and published
    -> the policy node has validated it and swapped it in (a policy subclass in its own process
    acknowledges each swap), while that policy is grasping.
(d) throughput of 1 and 2 sim_arm + policy pairs (namespaces arm0, arm1; only arm0's sim
    publishes /clock, the others stamp with their own simulated time: sim_time_stamps) feeding
    one trainer process that trains (each pair composed in one
    process, or with --pairs-mode processes in two).

    python benchmarks/bench_ros_system.py [--attempts 80] [--pairs-window-s 120] [--parts abcd]
        [--variants composed_events,processes] [--rounds 3]

Prints a summary and writes benchmarks/results/ros_system.json (parts not run are kept from
the previous file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results" / "ros_system.json"
CONFIG = Path(__file__).resolve().parent.parent / "config" / "sim_train_grasp.yaml"
ACK_TOPIC = "/bench/weights_swapped"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "median": statistics.median(values),
            "p90": float(np.percentile(values, 90)), "min": min(values), "max": max(values)}


# ----------------------------------------------------------------------------- (a) in-process


def single_process(attempts: int, epsilon: float, seed: int, teleport: bool,
                   mask: bool = True) -> dict[str, Any]:
    """The single-process grasp loop: env step (physics) + the U-Net's Q-map each attempt.

    ``teleport``: the env's default, jumping to the pre-grasp pose and back home without
    physics; False moves there with physics, as every motion over ROS does (like for like).
    ``mask``: explore among the reachable grasps (info["action_mask"]) as the policy node does
    with the shipped params; without it ~45% of random grasps fail IK and move nothing.
    """
    import dataclasses

    import torch

    from q_grasp.envs.grasp import TopDownGraspEnv
    from q_grasp.learning.agent import Actor, exploration_config
    from q_grasp.tasks.load import load_task

    torch.set_num_threads(1)
    setup = load_task("grasp", seed=seed)  # the env config and network the nodes use
    config = setup.env_config
    config = dataclasses.replace(config, skill=dataclasses.replace(
        config.skill, teleport_free_space=teleport))
    env = TopDownGraspEnv(config)
    sim = env.unwrapped.sim
    physics_steps = [0]
    step = sim.step

    def counting_step(n: int = 1) -> None:
        physics_steps[0] += int(n)
        step(n)

    sim.step = counting_step  # counts resets' settling too, as sim_arm's clock does
    net = setup.q_net
    exploration, total = exploration_config("constant", epsilon, epsilon, 0.0, 1)
    actor = Actor(net, exploration, total, seed=seed)

    info: dict[str, Any] = {}

    def attempt(obs: np.ndarray) -> tuple[np.ndarray, bool]:
        nonlocal info
        allowed = info["action_mask"].astype(bool) if mask else None
        action = actor.act_on_q_values(net.predict_q(obs), epsilon, allowed)
        obs, _, terminated, truncated, info = env.step(action)
        success = bool(info["is_success"])
        if terminated or truncated:
            obs, info = env.reset()
        return obs, success

    obs, info = env.reset(seed=seed)
    for _ in range(3):  # warm-up
        obs, _ = attempt(obs)
    physics_steps[0] = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    successes = 0
    for _ in range(attempts):
        obs, success = attempt(obs)
        successes += success
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    env.close()
    sim_s = physics_steps[0] * setup.env_config.physics.time_step_s
    return {"attempts": attempts, "successes": successes, "wall_s": wall,
            "transitions_per_s": attempts / wall, "cpu_s_per_transition": cpu / attempts,
            "sim_s_per_transition": sim_s / attempts}


# ----------------------------------------------------------------------------- ROS helpers


class Probe:
    """This process's node: decodes transitions (per actor), follows /clock, /diagnostics and
    the weights acknowledgements."""

    def __init__(self, context: Any) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import String, UInt8MultiArray

        from q_grasp.nodes import qos
        from q_grasp.tasks.load import load_task

        self.node = rclpy.create_node("bench_probe", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        setup = load_task("grasp")
        from q_grasp.wire import TransitionLimits

        self.limits = TransitionLimits(obs_shape=tuple(setup.spaces.observation_space.shape),
                                       num_actions=setup.q_net.n_actions, task="grasp")
        self.arrivals: list[tuple[float, str, int]] = []  # (monotonic, actor, n)
        self.clock_s = 0.0
        self.diag: dict[str, dict[str, str]] = {}
        self.latencies: dict[tuple[str, int], float] = {}
        self.acks: list[dict[str, Any]] = []
        self.weights_pub = None
        self.node.create_subscription(UInt8MultiArray, "/q_grasp/transitions",
                                      self._on_transitions, qos.transitions_qos(1000))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag,
                                      qos.DEFAULT_QOS)
        self.node.create_subscription(String, ACK_TOPIC,
                                      lambda m: self.acks.append(json.loads(m.data)),
                                      qos.transitions_qos(100))
        self.weights_pub = self.node.create_publisher(UInt8MultiArray, "/q_grasp/weights",
                                                      qos.WEIGHTS_QOS)

    def _on_transitions(self, msg: Any) -> None:
        from q_grasp.messages import msg_to_blob
        from q_grasp.wire import TRANSITIONS_SCHEMA, decode_transitions

        batch = decode_transitions(msg_to_blob(msg, TRANSITIONS_SCHEMA), self.limits)
        self.arrivals.append((time.monotonic(), batch.actor_id, len(batch)))

    def _on_diag(self, msg: Any) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            key = f"{status.name}@{status.hardware_id}"
            self.diag[key] = values
            if status.name == "q_grasp/sim_arm" and "sim_time_s" in values:
                self.clock_s = float(values["sim_time_s"])
            if status.name == "q_grasp/policy" and "decision_latency_ms" in values:
                self.latencies[(key, int(values.get("steps", 0)))] = float(
                    values["decision_latency_ms"])

    def count(self) -> int:
        return sum(n for _, _, n in self.arrivals)

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    def wait(self, predicate, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            self.executor.spin_once(timeout_sec=0.02)


class Session:
    """Node processes in one private ROS domain plus the probe; stops everything it started."""

    def __init__(self, folder: Path) -> None:
        import rclpy

        from q_grasp.node_processes import unique_domain_id

        self.folder = folder
        self.domain = unique_domain_id()
        os.environ["ROS_DOMAIN_ID"] = str(self.domain)
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        self.procs: dict[str, Any] = {}
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.probe = Probe(self.context)

    def start(self, name: str, module: str, args: list[str]) -> None:
        from q_grasp.node_processes import start_node_process

        self.procs[name] = start_node_process(module, args, domain_id=self.domain,
                                              log_path=self.folder / f"{name}.log")

    def start_script(self, name: str, args: list[str]) -> None:
        import subprocess

        from q_grasp.node_processes import ros_child_env

        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop_process
        proc = subprocess.Popen([sys.executable, __file__, *args],
                                env=ros_child_env(self.domain), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        proc._q_grasp_log = log  # type: ignore[attr-defined]
        self.procs[name] = proc

    def cpu(self) -> dict[str, float]:
        values = {name: cpu_seconds(proc.pid) for name, proc in self.procs.items()}
        values["bench_probe"] = time.process_time()
        return values

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                log = (self.folder / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{log}")

    def close(self) -> None:
        import rclpy

        from q_grasp.node_processes import stop_process

        try:
            self.probe.node.destroy_node()
            rclpy.try_shutdown(context=self.context)
        finally:
            for name in list(self.procs)[::-1]:
                stop_process(self.procs.pop(name), timeout_s=60.0)


def _sim_args(real_time_factor: float | None, extra: list[str] = ()) -> list[str]:
    args = ["--params-file", str(CONFIG), "-p", "use_sim_time:=true"]
    if real_time_factor is not None:
        args += ["-p", f"real_time_factor:={real_time_factor}"]
    return args + list(extra)


def _policy_args(epsilon: float, extra: list[str] = ()) -> list[str]:
    return ["--params-file", str(CONFIG), "-p", "use_sim_time:=true",
            "-p", "epsilon_schedule:=constant", "-p", f"epsilon_start:={epsilon}",
            "-p", f"epsilon_end:={epsilon}", *extra]


def measure_window(session: Session, transitions: int, warmup: int, timeout_s: float
                   ) -> dict[str, Any]:
    """Rate, CPU and simulated time over ``transitions`` after ``warmup`` have arrived."""
    probe = session.probe
    probe.wait(lambda: probe.count() >= warmup, timeout_s, f"{warmup} transitions")
    count0, wall0, sim0, cpu0 = probe.count(), time.monotonic(), probe.clock_s, session.cpu()
    deadline = wall0 + timeout_s
    while probe.count() < count0 + transitions:
        if time.monotonic() > deadline:
            break
        session.check_alive()
        probe.spin_for(0.5)
    count, wall, sim, cpu = (probe.count() - count0, time.monotonic() - wall0,
                             probe.clock_s - sim0, session.cpu())
    cpu_used = {k: cpu[k] - cpu0[k] for k in cpu}
    return {"transitions": count, "wall_s": wall, "transitions_per_s": count / wall,
            "sim_s_per_transition": sim / max(count, 1),
            "real_time_factor": sim / wall,
            "cpu_s_per_transition": sum(cpu_used.values()) / max(count, 1),
            "cpu_s_per_transition_by_process": {k: v / max(count, 1)
                                                for k, v in cpu_used.items()}}


def _policy_counts(session: Session) -> dict[str, Any]:
    """The policy's counters from its last /diagnostics: the whole run, warm-up included."""
    policy = next((v for k, v in session.probe.diag.items()
                   if k.startswith("q_grasp/policy")), {})
    return {"move_timeouts": int(float(policy.get("move_timeouts", 0))),
            "frame_timeouts": int(float(policy.get("frame_timeouts", 0))),
            "grasp_successes": int(float(policy.get("grasp_successes", 0))),
            "policy_steps": int(float(policy.get("steps", 0))),
            # the policy's own statistics over its last (up to 100) decisions: /diagnostics
            # comes once a wall-clock second, so the samples above miss most attempts
            "decision_latency_window_ms": {
                key: float(policy[f"decision_latency_ms_{key}"])
                for key in ("p50", "p90", "max") if f"decision_latency_ms_{key}" in policy}
            | {"decisions": int(float(policy.get("decision_latency_window", 0)))}}


def ros_actor(folder: Path, attempts: int, epsilon: float, real_time_factor: float | None,
              sim_extra: list[str] = (), policy_extra: list[str] = ()) -> dict[str, Any]:
    """sim_arm + policy processes with the shipped grasp params; this process decodes the
    transitions. Also returns the decision latencies seen on /diagnostics."""
    session = Session(folder)
    try:
        session.start("sim_arm", "q_grasp.nodes.sim_arm",
                      _sim_args(real_time_factor, list(sim_extra)))
        session.start("policy", "q_grasp.nodes.policy", _policy_args(epsilon, policy_extra))
        result = measure_window(session, attempts, warmup=3, timeout_s=60.0 + 10.0 * attempts)
        result.update(_policy_counts(session))
        result["decision_latency_ms"] = list(session.probe.latencies.values())
        return result
    finally:
        session.close()


# ----------------------------------------------------------------------------- (c) weights


def ack_policy_main(ros_args: list[str]) -> int:
    """Child: the policy node, acknowledging each weights swap with its wall-clock time."""
    from std_msgs.msg import String

    from q_grasp.nodes import qos
    from q_grasp.nodes.policy import PolicyNode
    from q_grasp.nodes.runtime import run_node

    class AckPolicy(PolicyNode):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._ack = self.create_publisher(String, ACK_TOPIC, qos.transitions_qos(100))

        def _on_weights(self, msg: Any) -> None:
            received_ns = time.time_ns()
            before = self.acting.weights_version
            super()._on_weights(msg)
            if self.acting.weights_version != before:
                self._ack.publish(String(data=json.dumps({
                    "version": self.acting.weights_version, "received_ns": received_ns,
                    "swapped_ns": time.time_ns()})))

    return run_node(AckPolicy, ["policy", "--ros-args", *ros_args])


def composed_actor_main(args: list[str]) -> int:
    """Child: sim_arm and policy composed in one process on one executor, as bringup runs
    them (args: executor kind, then the policy's -p overrides)."""
    import rclpy
    from rclpy.parameter import Parameter

    from q_grasp.nodes.policy import PolicyNode
    from q_grasp.nodes.runtime import make_executor
    from q_grasp.nodes.sim_arm import SimArmNode

    kind, overrides = args[0], args[1:]
    policy_params = [Parameter("use_sim_time", value=True)]
    sim_params = [Parameter("use_sim_time", value=True)]
    namespace = ""
    for item in overrides:
        name, _, value = item.partition(":=")
        if name == "namespace":
            namespace = value
        elif name.startswith("sim:"):
            sim_params.append(Parameter(name[4:], value=json.loads(value)))
        else:
            policy_params.append(Parameter(name, value=json.loads(value)))
    rclpy.init()
    cli = ["--ros-args", "--params-file", str(CONFIG)]
    sim = SimArmNode(cli_args=cli, parameter_overrides=sim_params, namespace=namespace)
    policy = PolicyNode(cli_args=cli, parameter_overrides=policy_params, namespace=namespace)
    executor = make_executor(kind, rclpy.get_default_context())
    executor.add_node(sim)
    executor.add_node(policy)
    try:
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, Exception):
        pass
    finally:
        policy.destroy_node()
        sim.destroy_node()
        rclpy.try_shutdown()
    return 0


PACED_RTF20 = {"real_time_factor": 20.0, "still_real_time_factor": 0.0,
               "max_publish_rate_hz": 0.0}
"""sim_arm paced at 20x with no caps on the streams: the reference the shipped pacing
(fast moves, a still world at its own factor, capped streams) is compared with."""


def ros_composed_actor(folder: Path, attempts: int, epsilon: float, executor: str,
                       sim_params: dict[str, Any] | None = None,
                       policy_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """sim_arm + policy composed in one child process (bringup's composed mode)."""
    session = Session(folder)
    try:
        overrides = [f"sim:{k}:={json.dumps(v)}" for k, v in (sim_params or {}).items()]
        overrides += [f"{k}:={json.dumps(v)}" for k, v in (policy_params or {}).items()]
        session.start_script("sim_arm+policy", [
            "--child", "composed-actor", executor, "epsilon_schedule:=\"constant\"",
            f"epsilon_start:={epsilon}", f"epsilon_end:={epsilon}", *overrides])
        result = measure_window(session, attempts, warmup=3, timeout_s=60.0 + 10.0 * attempts)
        result.update(_policy_counts(session))
        result["decision_latency_ms"] = list(session.probe.latencies.values())
        return result
    finally:
        session.close()


def weights_latency(folder: Path, repeats: int, period_s: float) -> dict[str, Any]:
    """Weights blobs from a grasp TrainerCore, published as the trainer node publishes them,
    to a grasping policy that acknowledges every swap."""
    from std_msgs.msg import UInt8MultiArray  # noqa: F401 - message type of the publisher

    from q_grasp.learning.trainer_core import TrainerConfig, TrainerCore
    from q_grasp.nodes.convert import blob_to_msg
    from q_grasp.wire import WEIGHTS_SCHEMA

    core = TrainerCore(TrainerConfig(task="grasp", output_dir=str(folder / "core")))
    session = Session(folder)
    try:
        session.start("sim_arm", "q_grasp.nodes.sim_arm", _sim_args(None))
        session.start_script("policy", ["--child", "ack-policy", "--params-file", str(CONFIG),
                                        "-p", "use_sim_time:=true"])
        probe = session.probe
        probe.wait(lambda: probe.weights_pub.get_subscription_count() > 0
                   and probe.node.count_publishers(ACK_TOPIC) > 0, 120.0, "the policy")
        probe.wait(lambda: probe.count() >= 2, 120.0, "the policy grasping")
        samples, encode_ms, receive_ms, swap_ms = [], [], [], []
        for _ in range(repeats):
            probe.acks.clear()
            # What TrainerNode._publish_weights does: encode the current weights, publish.
            t0 = time.time_ns()
            msg = blob_to_msg(core.weights_blob(), WEIGHTS_SCHEMA)
            t_encoded = time.time_ns()
            probe.weights_pub.publish(msg)
            probe.wait(lambda: bool(probe.acks), 30.0, "a weights acknowledgement")
            ack = probe.acks[-1]
            samples.append((ack["swapped_ns"] - t0) * 1e-6)
            encode_ms.append((t_encoded - t0) * 1e-6)
            receive_ms.append((ack["received_ns"] - t_encoded) * 1e-6)
            swap_ms.append((ack["swapped_ns"] - ack["received_ns"]) * 1e-6)
            probe.spin_for(period_s)
        return {"blob_bytes": len(msg.data), "repeats": repeats,
                "encode_to_swapped_ms": _stats(samples),
                "encode_ms": _stats(encode_ms),
                "publish_to_callback_ms": _stats(receive_ms),
                "decode_validate_swap_ms": _stats(swap_ms)}
    finally:
        session.close()


# ----------------------------------------------------------------------------- (d) pairs


def pairs(folder: Path, n_pairs: int, window_s: float, warmup: int, mode: str
          ) -> dict[str, Any]:
    """n sim_arm + policy pairs (arm0, arm1 ...) and one trainer process, as training runs
    them; each pair composed in one process (mode "composed", bringup's EventsExecutor) or
    in two (mode "processes")."""
    session = Session(folder)
    try:
        session.start("trainer", "q_grasp.nodes.trainer",
                      ["--params-file", str(CONFIG), "-p", "use_sim_time:=true",
                       "-p", f"output_dir:={folder / 'trainer'}", "-p", "log_every_s:=2.0"])
        for i in range(n_pairs):
            if mode == "composed":
                session.start_script(f"arm{i}", [
                    "--child", "composed-actor", "events", f"namespace:=/arm{i}",
                    f"sim:seed:={i}", f"seed:={i}"]
                    + ([] if i == 0 else ["sim:publish_clock:=false",
                                          "sim:sim_time_stamps:=true"]))
                continue
            ns = ["-r", f"__ns:=/arm{i}"]
            sim_extra = ["-p", f"seed:={i}"] + ([] if i == 0 else [
                "-p", "publish_clock:=false", "-p", "sim_time_stamps:=true"])
            session.start(f"sim_arm{i}", "q_grasp.nodes.sim_arm", ns + _sim_args(None, sim_extra))
            session.start(f"policy{i}", "q_grasp.nodes.policy",
                          ns + ["--params-file", str(CONFIG), "-p", "use_sim_time:=true",
                                "-p", f"seed:={i}"])
        probe = session.probe
        probe.wait(lambda: len({a for _, a, _ in probe.arrivals}) >= n_pairs
                   and probe.count() >= warmup, 180.0, f"transitions from {n_pairs} actors")
        start = len(probe.arrivals)
        wall0, cpu0 = time.monotonic(), session.cpu()
        trainer0 = dict(next((v for k, v in probe.diag.items()
                              if k.startswith("q_grasp/trainer")), {}))
        while time.monotonic() - wall0 < window_s:
            session.check_alive()
            probe.spin_for(0.5)
        wall = time.monotonic() - wall0
        cpu1 = session.cpu()
        trainer1 = next((v for k, v in probe.diag.items() if k.startswith("q_grasp/trainer")), {})
        per_actor: dict[str, int] = {}
        for _, actor, n in probe.arrivals[start:]:
            per_actor[actor] = per_actor.get(actor, 0) + n
        total = sum(per_actor.values())
        updates = float(trainer1.get("updates", 0)) - float(trainer0.get("updates", 0))
        return {"pairs": n_pairs, "window_s": wall, "transitions": total,
                "transitions_per_s": total / wall,
                "per_actor_per_s": {a: n / wall for a, n in sorted(per_actor.items())},
                "trainer_updates_per_s": updates / wall,
                "trainer_received": int(float(trainer1.get("transitions", 0))),
                "cpu_s_per_s_by_process": {k: (cpu1[k] - cpu0[k]) / wall for k in cpu1}}
    finally:
        session.close()


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["--child", "ack-policy"]:
        return ack_policy_main(argv[2:])
    if argv[:2] == ["--child", "composed-actor"]:
        return composed_actor_main(argv[2:])
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attempts", type=int, default=80,
                        help="grasp attempts per throughput measurement (a)")
    parser.add_argument("--epsilon", type=float, default=1.0,
                        help="exploration of the actors in (a)/(b) (1: uniformly random grasps, "
                             "the Q-map is computed either way)")
    parser.add_argument("--weights-repeats", type=int, default=20)
    parser.add_argument("--pairs-window-s", type=float, default=120.0)
    parser.add_argument("--pairs-mode", choices=["composed", "processes"], default="composed",
                        help="(d): each sim_arm + policy pair in one process or in two")
    parser.add_argument("--parts", default="abcd", help="which of a, b, c, d to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the ROS variants of (a) this many times, interleaved, with "
                             "the single-process loop again in every round; each variant "
                             "reports its round of median throughput, lists all, and the median "
                             "of its per-round cost against that round's single-process run")
    parser.add_argument("--variants", default="",
                        help="parts a/b: comma-separated ROS variants to run (default: all but "
                             "composed_events_custom)")
    parser.add_argument("--sim-param", action="append", default=[], metavar="NAME=JSON",
                        help="sim_arm parameter of the composed_events_custom variant "
                             "(repeatable), e.g. --sim-param real_time_factor=40")
    parser.add_argument("--out", default=str(RESULTS))
    custom: dict[str, Any] = {}
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds: must be >= 1, got {args.rounds}")
    for item in args.sim_param:
        name, sep, value = item.partition("=")
        try:
            custom[name] = json.loads(value)
        except json.JSONDecodeError:
            sep = ""
        if not sep or not name:
            parser.error(f"--sim-param: expected NAME=JSON (e.g. real_time_factor=40), got "
                         f"{item!r}")
    import torch

    torch.set_num_threads(1)
    load = os.getloadavg()
    result: dict[str, Any] = {
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "loadavg_at_start": load},
        "command": "python benchmarks/bench_ros_system.py " + " ".join(argv),
        "params_file": str(CONFIG.relative_to(CONFIG.parents[1])),
    }
    out = Path(args.out)
    if out.is_file():  # keep parts measured by an earlier run of other parts
        previous = json.loads(out.read_text())
        result.update({k: v for k, v in previous.items() if k not in result})
    with tempfile.TemporaryDirectory(prefix="bench_ros_system_") as tmp:
        folder = Path(tmp)
        if "a" in args.parts or "b" in args.parts:
            ros = {}
            paced_args = [a for k, v in PACED_RTF20.items() for a in ("-p", f"{k}:={v}")]
            runs = (("composed_events", lambda sub: ros_composed_actor(
                        sub, args.attempts, args.epsilon, "events")),
                    ("composed_events_paced_rtf20", lambda sub: ros_composed_actor(
                        sub, args.attempts, args.epsilon, "events", PACED_RTF20)),
                    ("composed_events_paced_rtf20_physics_every_tick",
                     lambda sub: ros_composed_actor(
                         sub, args.attempts, args.epsilon, "events",
                         {**PACED_RTF20, "skip_physics_when_still": False})),
                    ("composed_events_motion_paced_rtf20", lambda sub: ros_composed_actor(
                        sub, args.attempts, args.epsilon, "events", {"real_time_factor": 20.0})),
                    ("composed_events_no_cap", lambda sub: ros_composed_actor(
                        sub, args.attempts, args.epsilon, "events", {"max_publish_rate_hz": 0.0})),
                    ("composed_events_stop_at_waypoints", lambda sub: ros_composed_actor(
                        sub, args.attempts, args.epsilon, "events", None,
                        {"arm.blend_waypoints": False})),
                    ("composed_events_custom", lambda sub: ros_composed_actor(
                        sub, args.attempts, args.epsilon, "events", custom)),
                    ("composed_multi", lambda sub: ros_composed_actor(
                        sub, args.attempts, args.epsilon, "multi")),
                    ("processes", lambda sub: ros_actor(sub, args.attempts, args.epsilon, None)),
                    ("processes_paced_rtf20", lambda sub: ros_actor(
                        sub, args.attempts, args.epsilon, None, paced_args)))
            wanted = set(args.variants.split(",")) if args.variants else None
            unknown = (wanted or set()) - {label for label, _ in runs}
            if unknown:
                parser.error(f"--variants: unknown {sorted(unknown)}; choose from "
                             f"{[label for label, _ in runs]}")
            singles = {}
            for label, teleport, mask in (("physics_moves", False, True),
                                          ("physics_moves_no_mask", False, False),
                                          ("env_default_teleport", True, True)):
                single = singles[label] = single_process(args.attempts, args.epsilon,
                                                         args.seed, teleport, mask)
                print(f"(a) single process {label:21s}: {single['transitions_per_s']:.2f} "
                      f"transitions/s, {single['cpu_s_per_transition']:.3f} CPU-s and "
                      f"{single['sim_s_per_transition']:.2f} sim-s per transition", flush=True)
            single = singles["physics_moves"]
            chosen = [(label, run) for label, run in runs
                      if not ((wanted is None and label == "composed_events_custom")
                              or (wanted is not None and label not in wanted))]
            rounds: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in chosen}
            single_rounds = [single]
            for i in range(args.rounds):  # interleaved: the machine's speed drifts
                if i > 0:  # the like-for-like loop again, beside this round's ROS runs
                    single_rounds.append(single_process(args.attempts, args.epsilon,
                                                        args.seed, False, True))
                    print(f"(a) single process physics_moves, round {i}: "
                          f"{single_rounds[-1]['transitions_per_s']:.2f} transitions/s, "
                          f"{single_rounds[-1]['cpu_s_per_transition']:.3f} CPU-s",
                          flush=True)
                for label, run in chosen:
                    sub = folder / f"{label}_{i}"
                    sub.mkdir()
                    r = run(sub)
                    rounds[label].append(r)
                    print(f"(a) ROS {label:34s}: {r['transitions_per_s']:.2f} transitions/s, "
                          f"{r['cpu_s_per_transition']:.3f} CPU-s and "
                          f"{r['sim_s_per_transition']:.2f} sim-s per transition (real-time "
                          f"factor {r['real_time_factor']:.1f})", flush=True)
            for label, runs_of_label in rounds.items():
                # the round of median throughput stands for the variant; all rounds listed
                ordered = sorted(runs_of_label, key=lambda r: r["transitions_per_s"])
                ros[label] = dict(ordered[(len(ordered) - 1) // 2])
                ros[label]["rounds"] = [
                    {"transitions_per_s": r["transitions_per_s"],
                     "cpu_s_per_transition": r["cpu_s_per_transition"]} for r in runs_of_label]
                # per round, against that round's single-process run: the median of those
                costs = [(1 - r["transitions_per_s"] / one["transitions_per_s"],
                          r["cpu_s_per_transition"] / one["cpu_s_per_transition"] - 1)
                         for r, one in zip(runs_of_label, single_rounds)]
                ros[label]["ros_cost_per_round_wall"] = [c[0] for c in costs]
                ros[label]["ros_cost_per_round_cpu"] = [c[1] for c in costs]
                ros[label]["ros_cost_wall_median"] = statistics.median(c[0] for c in costs)
                ros[label]["ros_cost_cpu_median"] = statistics.median(c[1] for c in costs)
            singles["physics_moves"]["rounds"] = [
                {"transitions_per_s": r["transitions_per_s"],
                 "cpu_s_per_transition": r["cpu_s_per_transition"]} for r in single_rounds]
            latencies = {label: r.pop("decision_latency_ms") for label, r in ros.items()}
            best = max(ros.values(), key=lambda r: r["transitions_per_s"])
            result["a_throughput"] = {
                "epsilon": args.epsilon, "single_process": singles, "ros": ros,
                "compared": "ros_cost_*: the fastest ROS variant against the single-process "
                            "loop with physics for every move (physics_moves); per variant, "
                            "ros_cost_*_median compares each round with that round's "
                            "single-process run",
                "ros_cost_vs_single_process_wall": 1 - best["transitions_per_s"]
                / single["transitions_per_s"],
                "ros_cost_vs_single_process_cpu": best["cpu_s_per_transition"]
                / single["cpu_s_per_transition"] - 1}
            for label, r in ros.items():
                print(f"(a) ROS cost of {label}, median over rounds: "
                      f"{r['ros_cost_wall_median']:.0%} wall, "
                      f"{r['ros_cost_cpu_median']:+.0%} CPU per transition", flush=True)
            result["b_decision_latency_ms"] = {
                label: {**_stats(values), "policy_window": ros[label].get(
                    "decision_latency_window_ms", {})} for label, values in latencies.items()}
            print(f"(b) decision latency: {json.dumps(result['b_decision_latency_ms'])}",
                  flush=True)
        if "c" in args.parts:
            sub = folder / "weights"
            sub.mkdir()
            result["c_weights_broadcast"] = weights_latency(sub, args.weights_repeats, 1.0)
            print(f"(c) weights publish -> swapped: "
                  f"{json.dumps(result['c_weights_broadcast'])}", flush=True)
        if "d" in args.parts:
            key = f"d_pairs_{args.pairs_mode}"
            result[key] = {}
            for n in (1, 2):
                sub = folder / f"pairs{n}"
                sub.mkdir()
                r = pairs(sub, n, args.pairs_window_s, warmup=5 * n, mode=args.pairs_mode)
                result[key][str(n)] = r
                print(f"(d) {n} pair(s) ({args.pairs_mode}) + trainer: "
                      f"{r['transitions_per_s']:.2f} transitions/s "
                      f"({json.dumps(r['per_actor_per_s'])}), trainer "
                      f"{r['trainer_updates_per_s']:.2f} updates/s", flush=True)
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
