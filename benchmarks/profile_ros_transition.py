"""Where a grasp transition's wall time goes over ROS: sim_arm and the policy composed in this
process (bringup's composed mode, EventsExecutor, the shipped config/sim_train_grasp.yaml,
epsilon 1), instrumented from outside (wrappers around their methods; nothing in the nodes
changes). Over a window of wall time it reports, per transition:

- wall and CPU time, and CPU by thread (physics, executor, policy, transition sender);
- physics steps and their thread CPU (the single-process loop's are in bench_ros_system.py);
- per phase of the policy: arm moves, gripper motions, waiting for the settled frame, Q-values,
  reachability mask, IK plan, recording, scene resets (wall time, calls, physics steps);
- reaction latencies: a command published -> sim_arm's callback -> taken up on a control tick,
  and a goal reached (the tick) -> the joint-state callback -> the policy's wait returns;
- messages published per topic; sim_arm's and the policy's diagnostics counters.

    python benchmarks/profile_ros_transition.py [--seconds 20] [--sim-param NAME=JSON]
        [--policy-param NAME=JSON] [--out FILE.json]

Runs of the same code differ by several percent from one minute to the next on a shared
machine: compare variants in alternating runs (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONFIG = Path(__file__).resolve().parent.parent / "config" / "sim_train_grasp.yaml"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Counters:
    """Wall time, calls and physics steps per label; reaction latencies."""

    def __init__(self) -> None:
        self.time: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self.steps: collections.Counter[str] = collections.Counter()
        self.published: collections.Counter[str] = collections.Counter()
        self.physics = {"steps": 0, "cpu_s": 0.0}
        self.events: dict[str, float | None] = {"command": None, "goal": None}

    def snapshot(self) -> dict[str, Any]:
        return {"time": dict(self.time), "calls": dict(self.calls), "steps": dict(self.steps),
                "published": dict(self.published), "physics": dict(self.physics)}


def instrument(c: Counters) -> None:
    """Wrap the methods whose time is measured (before the nodes exist)."""
    import rclpy.publisher

    import q_grasp.skills.grasp as grasp
    from q_grasp.nodes.policy import PolicyNode
    from q_grasp.nodes.ros_arm import RosArm
    from q_grasp.nodes.sim_arm import SimArmNode
    from q_grasp.sim.arm_loop import SimArmLoop
    from q_grasp.sim.bullet import BulletSim
    from q_grasp.sim.controller import TrajectoryFollower
    from q_grasp.tasks.acting import Acting

    step = BulletSim.step

    def counted_step(self, n: int = 1) -> None:
        t = time.thread_time()
        step(self, n)
        c.physics["cpu_s"] += time.thread_time() - t
        c.physics["steps"] += int(n)

    BulletSim.step = counted_step
    publish = rclpy.publisher.Publisher.publish

    def counted_publish(self, msg) -> None:
        c.published[self.topic_name] += 1
        return publish(self, msg)

    rclpy.publisher.Publisher.publish = counted_publish

    def timed(owner: Any, name: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            t, s0 = time.monotonic(), c.physics["steps"]
            try:
                return original(*args, **kwargs)
            finally:
                c.time[name] += time.monotonic() - t
                c.calls[name] += 1
                c.steps[name] += c.physics["steps"] - s0

        setattr(owner, name, wrapper)

    for name in ("move_arm_through", "set_gripper"):
        timed(RosArm, name)
    for name in ("settled_frame", "q_values", "reachable_actions", "record"):
        timed(Acting, name)
    timed(PolicyNode, "reset_scene")
    timed(grasp, "plan_grasp")

    def latency(label: str, since: str, clear: bool) -> None:
        t0 = c.events[since]
        if t0 is not None:
            c.time[label] += time.monotonic() - t0
            c.calls[label] += 1
            if clear:
                c.events[since] = None

    arm_publish = RosArm._publish

    def marked_publish(self, *args) -> None:
        c.events["command"] = time.monotonic()
        arm_publish(self, *args)

    RosArm._publish = marked_publish
    on_trajectory = SimArmNode._on_trajectory

    def marked_on_trajectory(self, *args) -> None:
        latency("latency: command -> sim_arm callback", "command", clear=False)
        on_trajectory(self, *args)

    SimArmNode._on_trajectory = marked_on_trajectory
    update = TrajectoryFollower.update

    def marked_update(self, now_s: float) -> bool:
        changed = update(self, now_s)
        if self.started:
            latency("latency: command -> taken up", "command", clear=True)
        return changed

    TrajectoryFollower.update = marked_update
    check_goals = SimArmLoop._check_goals

    def marked_check_goals(self, *args) -> None:
        before = self._goal_reported
        check_goals(self, *args)
        if self._goal_reported and not before:
            c.events["goal"] = time.monotonic()

    SimArmLoop._check_goals = marked_check_goals
    motion_wait = RosArm._motion_wait

    def marked_motion_wait(self, *args) -> bool:
        arrived = motion_wait(self, *args)
        latency("latency: goal reached -> policy's wait returns", "goal", clear=True)
        return arrived

    RosArm._motion_wait = marked_motion_wait


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds of each thread of this process, by Python thread name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: collections.Counter[str] = collections.Counter()
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[names.get(int(tid), "other (DDS, torch)")] += (int(fields[11]) + int(fields[12])
                                                           ) / CLK_TCK
    return dict(out)


def _params(items: list[str], flag: str) -> dict[str, Any]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"{flag}: expected NAME=JSON, got {item!r}")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{flag} {name}: not JSON ({exc}): {value!r}") from None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument("--warmup", type=int, default=5, help="transitions before it")
    parser.add_argument("--sim-param", action="append", default=[], metavar="NAME=JSON")
    parser.add_argument("--policy-param", action="append", default=[], metavar="NAME=JSON")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if not args.seconds > 0 or args.warmup < 1:
        parser.error("--seconds must be > 0 and --warmup >= 1")
    sim_params = _params(args.sim_param, "--sim-param")
    policy_params = {"epsilon_schedule": "constant", "epsilon_start": 1.0, "epsilon_end": 1.0,
                     **_params(args.policy_param, "--policy-param")}

    from q_grasp.node_processes import unique_domain_id

    os.environ["ROS_DOMAIN_ID"] = str(unique_domain_id())
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    counters = Counters()
    instrument(counters)
    import rclpy
    from rclpy.parameter import Parameter

    from q_grasp.nodes.policy import PolicyNode
    from q_grasp.nodes.runtime import make_executor
    from q_grasp.nodes.sim_arm import SimArmNode

    rclpy.init()
    cli = ["--ros-args", "--params-file", str(CONFIG)]
    sim = SimArmNode(cli_args=cli, parameter_overrides=[
        Parameter(k, value=v) for k, v in {"use_sim_time": True, **sim_params}.items()])
    policy = PolicyNode(cli_args=cli, parameter_overrides=[
        Parameter(k, value=v) for k, v in {"use_sim_time": True, **policy_params}.items()])
    executor = make_executor("events", rclpy.get_default_context())
    executor.add_node(sim)
    executor.add_node(policy)

    def transitions() -> int:
        return counters.published["/q_grasp/transitions"]

    start = time.monotonic()
    try:
        while transitions() < args.warmup:
            if time.monotonic() - start > 300.0:
                raise SystemExit("no transitions within 300 s")
            executor.spin_once(timeout_sec=0.1)
        wall0, n0, cpu0, threads0 = time.monotonic(), transitions(), time.process_time(), \
            thread_cpu_s()
        before = counters.snapshot()
        print(f"warm-up done ({n0} transitions); measuring {args.seconds:.0f} s", flush=True)
        while time.monotonic() < wall0 + args.seconds:
            executor.spin_once(timeout_sec=0.1)
        wall, n = time.monotonic() - wall0, transitions() - n0
        cpu, threads, after = time.process_time() - cpu0, thread_cpu_s(), counters.snapshot()
        sim_counts = dict(sim.diagnostics._counters)
        policy_counts = dict(policy.diagnostics._counters)
    finally:
        policy.destroy_node()
        sim.destroy_node()
        rclpy.try_shutdown()
    if n == 0:
        raise SystemExit("no transitions in the window")

    def per(section: str, key: str) -> float:
        return (after[section].get(key, 0) - before[section].get(key, 0)) / n

    steps = per("physics", "steps")
    result = {
        "transitions": n, "wall_s": wall, "transitions_per_s": n / wall,
        "ms_per_transition": 1e3 * wall / n, "cpu_ms_per_transition": 1e3 * cpu / n,
        "cpu_ms_per_transition_by_thread": {
            k: round(1e3 * (v - threads0.get(k, 0.0)) / n, 2) for k, v in threads.items()},
        "physics_steps_per_transition": steps,
        "physics_step_cpu_ms_per_transition": 1e3 * per("physics", "cpu_s"),
        "phases": {k: {"ms_per_transition": round(1e3 * per("time", k), 2),
                       "calls_per_transition": round(per("calls", k), 2),
                       "physics_steps_per_transition": round(per("steps", k), 1)}
                   for k in sorted(after["time"])},
        "published_per_transition": {k: round(per("published", k), 2)
                                     for k in sorted(after["published"])},
        "sim_arm_counters_whole_run": sim_counts,
        "policy_counters_whole_run": policy_counts,
        "sim_params": sim_params, "policy_params": policy_params,
    }
    print(f"{n} transitions in {wall:.1f} s: {n / wall:.2f}/s, {1e3 * wall / n:.1f} ms and "
          f"{1e3 * cpu / n:.1f} CPU-ms each; {steps:.0f} physics steps "
          f"({result['physics_step_cpu_ms_per_transition']:.1f} CPU-ms)")
    print("CPU ms per transition by thread:", result["cpu_ms_per_transition_by_thread"])
    for name, values in result["phases"].items():
        print(f"  {name:48s} {values['ms_per_transition']:6.2f} ms over "
              f"{values['calls_per_transition']:.2f} calls, "
              f"{values['physics_steps_per_transition']:.0f} steps")
    print("published per transition:", result["published_per_transition"])
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
