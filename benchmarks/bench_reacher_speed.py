"""Reacher simulation speed and IK quality on this machine: environment steps per second
(random actions, joint and Cartesian modes), inverse-kinematics solve time / success rate, and
the success of a greedy lookahead controller (how solvable the episodes are).

    python benchmarks/bench_reacher_speed.py [--steps 20000] [--ik-trials 1000]
    python benchmarks/bench_reacher_speed.py --baseline-tree /tmp/old [--rounds 2]

Prints one result line and writes benchmarks/results/reacher_speed.json. With
``--baseline-tree`` (another q_grasp source tree) it measures only the environment speeds,
this tree's and the other's in fresh processes, alternating round by round (the machine is
shared), with CPU seconds beside wall seconds, and writes
benchmarks/results/reacher_speed_vs_baseline.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# The tree whose q_grasp is measured: this one, or another for a side-by-side worker.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("Q_GRASP_BENCH_TREE", str(ROOT)))

from q_grasp.envs.reacher import ReacherEnv  # noqa: E402
from q_grasp.kinematics import KinematicChain  # noqa: E402
from q_grasp.robot_config import RobotConfig  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "reacher_speed.json"
RESULTS_VS = RESULTS.with_name("reacher_speed_vs_baseline.json")


def env_steps_per_s(env, steps: int, seed: int) -> dict:  # noqa: ANN001 (any gymnasium env)
    """Random-action steps per second, resets included (as in training)."""
    rng = np.random.default_rng(seed)
    actions = rng.integers(env.action_space.n, size=steps).tolist()
    env.reset(seed=seed)
    episodes = successes = 0
    start, cpu = time.perf_counter(), time.process_time()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            episodes += 1
            successes += bool(terminated)
            env.reset()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"steps": steps, "seconds": elapsed, "steps_per_s": steps / elapsed,
            "cpu_seconds": cpu, "steps_per_cpu_s": steps / cpu,
            "episodes": episodes, "random_policy_success_rate": successes / max(episodes, 1)}


def env_speeds(args) -> dict:
    """Joint-mode and Cartesian-mode random-action speeds of the q_grasp this process
    imports."""
    out = {}
    for name, kwargs, steps in (("reacher_joint", {}, args.steps),
                                ("reacher_cartesian", {"action_mode": "cartesian"},
                                 args.cartesian_steps)):
        with ReacherEnv(**kwargs) as env:
            out[name] = env_steps_per_s(env, steps, args.seed)
    return out


def side_by_side(args) -> None:
    """env_speeds of this tree and --baseline-tree, fresh processes, alternating rounds."""
    trees = [("baseline", args.baseline_tree.resolve()),
             ("new", ROOT)]
    rounds: dict[str, list[dict]] = {name: [] for name, _ in trees}
    for r in range(args.rounds):
        for name, tree in (trees if r % 2 == 0 else trees[::-1]):
            print(f"round {r + 1}/{args.rounds}: {name}", flush=True)
            cmd = [sys.executable, __file__, "--speed-worker", "--steps", str(args.steps),
                   "--cartesian-steps", str(args.cartesian_steps), "--seed", str(args.seed)]
            out = subprocess.run(cmd, env=dict(os.environ, Q_GRASP_BENCH_TREE=str(tree)),
                                 check=True, capture_output=True, text=True).stdout
            rounds[name].append(json.loads(out.strip().splitlines()[-1]))
    summary = {name: {part: {key: float(np.median([run[part][key] for run in runs]))
                             for key in ("steps_per_s", "steps_per_cpu_s")}
                      for part in runs[0]}
               for name, runs in rounds.items()}
    results = {
        "command": "python benchmarks/bench_reacher_speed.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "load_average": list(os.getloadavg())},
        "trees": {name: str(tree) for name, tree in trees},
        "rounds": rounds, "summary_median_of_rounds": summary}
    out_path = args.out if args.out != RESULTS else RESULTS_VS
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"-> {out_path}")


def greedy_action(env: ReacherEnv) -> int:
    """The joint step that brings the tool closest to the goal (one-step lookahead with FK)."""
    n = env.action_space.n
    Q = np.tile(env.joint_positions, (n, 1))
    lower, upper = env.chain.lower, env.chain.upper
    for a in range(n):
        j = a // 2
        step = env.config.dtheta_rad if a % 2 == 0 else -env.config.dtheta_rad
        Q[a, j] = min(max(Q[a, j] + step, lower[j]), upper[j])
    distances = np.linalg.norm(env.chain.fk_batch(Q)[:, :3, 3] - env.goal, axis=1)
    return int(np.argmin(distances))


def greedy_success(episodes: int, seed: int, **overrides) -> dict:
    """Success rate of the greedy lookahead controller: a yardstick for what a learned policy
    can reach under these episode settings (it gets stuck in local minima, so it is no bound)."""
    with ReacherEnv(**overrides) as env:
        successes, lengths = 0, []
        for episode in range(episodes):
            env.reset(seed=seed + episode)
            terminated = truncated = False
            length = 0
            while not (terminated or truncated):
                _, _, terminated, truncated, _ = env.step(greedy_action(env))
                length += 1
            successes += bool(terminated)
            lengths.append(length)
    return {"overrides": overrides, "episodes": episodes, "success_rate": successes / episodes,
            "mean_length": float(np.mean(lengths))}


def ik_stats(chain: KinematicChain, targets: np.ndarray, **ik_kwargs) -> dict:
    """Solve time (ms) and success / within-2-mm rates over ``targets``."""
    times, ok, within_2mm = [], 0, 0
    for target in targets:
        start = time.perf_counter()
        result = chain.ik(target, **ik_kwargs)
        times.append(time.perf_counter() - start)
        ok += result.success
        within_2mm += result.success and result.pos_error_m < 2e-3
    t = np.array(times) * 1e3
    return {"trials": len(targets), "success_rate": ok / len(targets),
            "within_2mm_rate": within_2mm / len(targets),
            "ms_median": float(np.median(t)), "ms_mean": float(t.mean()),
            "ms_p99": float(np.percentile(t, 99)), "ms_max": float(t.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000, help="env steps (joint mode)")
    parser.add_argument("--cartesian-steps", type=int, default=3000)
    parser.add_argument("--ik-trials", type=int, default=1000)
    parser.add_argument("--greedy-episodes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--baseline-tree", type=Path, default=None,
                        help="another q_grasp source tree: measure the env speeds of both, "
                             "side by side")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--speed-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if min(args.steps, args.cartesian_steps, args.rounds) < 1:
        parser.error("--steps, --cartesian-steps, --rounds: must be >= 1")
    if args.speed_worker:
        print(json.dumps(env_speeds(args)))
        return
    if args.baseline_tree is not None:
        if not (args.baseline_tree / "q_grasp").is_dir():
            parser.error(f"--baseline-tree: {args.baseline_tree} has no q_grasp package")
        side_by_side(args)
        return

    results: dict = {
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "processor": platform.processor()},
        "command": "python benchmarks/bench_reacher_speed.py " + " ".join(sys.argv[1:]),
    }
    start = time.perf_counter()
    env = ReacherEnv()
    results["env_construct_s"] = time.perf_counter() - start
    results["reacher_joint"] = env_steps_per_s(env, args.steps, args.seed)
    env.close()
    with ReacherEnv(action_mode="cartesian") as env:
        results["reacher_cartesian"] = env_steps_per_s(env, args.cartesian_steps, args.seed)
    try:
        import gymnasium

        import q_grasp.envs  # noqa: F401  (registers the ids)

        if "q_grasp/Reacher-v0" in gymnasium.registry:
            env = gymnasium.make("q_grasp/Reacher-v0")
            results["reacher_joint_gym_make"] = env_steps_per_s(env, args.steps, args.seed)
            env.close()
    except ImportError:
        pass

    results["greedy_oracle"] = [
        greedy_success(args.greedy_episodes, 1000),
        greedy_success(args.greedy_episodes, 1000, max_goal_steps=50),
    ]

    chain = KinematicChain.from_robot_config(RobotConfig())
    rng = np.random.default_rng(args.seed)
    targets = chain.fk_batch(chain.random_q(rng, args.ik_trials))[:, :3, 3]
    results["ik_position"] = ik_stats(chain, targets)
    results["ik_position_reach_joints"] = ik_stats(
        chain, targets, active_joints=RobotConfig().reach_joint_names)
    # Top-down grasps over the default grasp workspace, where the camera looks.
    n_td = max(args.ik_trials // 2, 1)
    td_targets = rng.uniform([0.09, -0.05, 0.01], [0.17, 0.05, 0.05], size=(n_td, 3))
    yaws = rng.uniform(-math.pi, math.pi, size=n_td)
    times, ok = [], 0
    for target, yaw in zip(td_targets, yaws):
        t0 = time.perf_counter()
        ok += chain.ik(target, yaw_rad=float(yaw)).success
        times.append(time.perf_counter() - t0)
    t = np.array(times) * 1e3
    results["ik_top_down_workspace"] = {
        "region_m": {"x": [0.09, 0.17], "y": [-0.05, 0.05], "z": [0.01, 0.05]},
        "trials": n_td, "success_rate": ok / n_td, "ms_median": float(np.median(t)),
        "ms_mean": float(t.mean()), "ms_p99": float(np.percentile(t, 99)),
        "ms_max": float(t.max())}
    unreachable = np.array([[1.0, 0.0, 0.1], [0.05, 0.0, 0.01], [0.3, 0.0, 0.05]])
    results["ik_unreachable_top_down"] = ik_stats(chain, unreachable, yaw_rad=0.0)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    j, c = results["reacher_joint"], results["reacher_cartesian"]
    ip, td = results["ik_position"], results["ik_top_down_workspace"]
    g = results["greedy_oracle"]
    print(f"reacher_speed: joint {j['steps_per_s']:.0f} steps/s, cartesian "
          f"{c['steps_per_s']:.0f} steps/s | IK position {ip['success_rate']:.1%} ok, "
          f"{ip['ms_median']:.2f} ms median ({ip['ms_p99']:.2f} p99) | IK top-down "
          f"{td['success_rate']:.1%} ok, {td['ms_median']:.2f} ms median | greedy success "
          f"{g[0]['success_rate']:.0%} (free goals), {g[1]['success_rate']:.0%} "
          f"(max_goal_steps=50) | -> {args.out}")


if __name__ == "__main__":
    main()
