"""Learner throughput: TD updates per second of the shipped configs' learners (U-Net plain and
rotation-equivariant for grasping, the Reacher and CartPole MLPs; their networks and batches)
and greedy actions per second, this checkout side by side with another one (the old code).

    python benchmarks/bench_learner_updates.py [--baseline-tree /tmp/old] [--updates 60]
        [--rounds 3] [--configs plain,equivariant,reacher,cartpole,trainer] [--threads N]
        [--out benchmarks/results/learner_updates.json]

Each measurement is a fresh process: the replay buffer is filled with observations drawn from
the env's observation space (the update's cost does not depend on what the images show),
then `--updates` TD updates and as many greedy actions are timed, wall and CPU. Contenders
alternate round by round; the medians over rounds are reported. `--threads` overrides the
configs' training.torch_threads (1).

`trainer` is the ROS trainer's learning core (TrainerCore, task grasp, its config/grasp.yaml) with
its weight broadcast: `--updates` updates without publishing, then as many with a weights blob
built and wrapped in a ROS message every publish_every_updates (50) as the trainer's learning
thread does (`updates_per_s` with it, `quiet_updates_per_s` without; `blob_cpu_ms` per
broadcast).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "learner_updates.json"
CONFIGS = {"plain": ("config/grasp_plain.yaml", "config/grasp.yaml"),
           "equivariant": ("config/grasp.yaml", "config/grasp_equivariant.yaml"),
           "reacher": ("config/reacher.yaml",), "cartpole": ("config/cartpole.yaml",),
           "trainer": ("config/grasp.yaml",)}
"""Per learner, its config file: the first of these a tree has that sets the learner's network
(older trees named the plain config grasp.yaml and the equivariant one grasp_equivariant.yaml)."""


def config_file(tree: Path, config: str) -> Path:
    for name in CONFIGS[config]:
        path = tree / name
        if not path.is_file():
            continue
        equivariant = "unet_rotation_equivariant: true" in path.read_text()
        if config not in ("plain", "equivariant") or equivariant == (config == "equivariant"):
            return path
    raise FileNotFoundError(f"{tree}: no config file for the {config} learner among "
                            f"{list(CONFIGS[config])}")


def measure(tree: Path, config: str, updates: int, threads: int = 0) -> dict:
    """In this process, with the code of `tree`."""
    sys.path.insert(0, str(tree))
    import numpy as np
    import torch

    from q_grasp.learning.agent import Agent
    from q_grasp.learning.config import ExperimentConfig
    from q_grasp.learning.tasks import make_env

    if config == "trainer":
        return measure_trainer(updates, threads)
    cfg = ExperimentConfig.from_yaml(config_file(tree, config))
    threads = threads or cfg.training.torch_threads
    torch.set_num_threads(threads)
    env = make_env(cfg.env)
    agent = Agent(env, cfg, seed=0)
    space = env.observation_space
    space.seed(0)
    rng = np.random.default_rng(0)
    for _ in range(4 * cfg.dqn.batch_size):
        agent.observe(_sample(space), int(rng.integers(env.action_space.n)),
                      float(rng.random() < 0.5), _sample(space), True, False)
    for _ in range(3):  # warm-up: allocator, lazy kernels
        agent.optimize()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(updates):
        agent.optimize()
    update_wall, update_cpu = time.perf_counter() - wall, time.process_time() - cpu
    obs = [_sample(space) for _ in range(updates)]
    wall, cpu = time.perf_counter(), time.process_time()
    for o in obs:
        agent.act(o, greedy=True)
    act_wall, act_cpu = time.perf_counter() - wall, time.process_time() - cpu
    env.close()
    return {"updates_per_s": updates / update_wall, "update_cpu_ms": 1e3 * update_cpu / updates,
            "acts_per_s": updates / act_wall, "act_cpu_ms": 1e3 * act_cpu / updates,
            "batch_size": cfg.dqn.batch_size, "torch_threads": threads}


def measure_trainer(updates: int, threads: int) -> dict:
    """The ROS trainer's core: updates/s without and with its weight broadcast."""
    import tempfile

    import numpy as np
    import torch

    from q_grasp.learning.trainer_core import TrainerConfig, TrainerCore
    from q_grasp.nodes.convert import blob_to_msg
    from q_grasp.wire import WEIGHTS_SCHEMA

    with tempfile.TemporaryDirectory() as out:
        config = TrainerConfig(task="grasp", output_dir=out, tensorboard=False,
                               save_replay_buffer=False)
        core = TrainerCore(config)
        exp = core.setup.experiment
        threads = threads or exp.training.torch_threads
        torch.set_num_threads(threads)
        learner = core.learner
        space, n_actions = core.setup.spaces.observation_space, core.setup.spaces.action_space.n
        space.seed(0)
        rng = np.random.default_rng(0)
        for _ in range(4 * exp.dqn.batch_size):
            learner.add_transition(_sample(space), int(rng.integers(n_actions)),
                                   float(rng.random() < 0.5), _sample(space), True, False)
        for _ in range(3):
            core.update()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(updates):
            core.update()
        quiet_wall, quiet_cpu = time.perf_counter() - wall, time.process_time() - cpu
        blob_cpu, blob_bytes, published = 0.0, 0, 0
        wall, cpu = time.perf_counter(), time.process_time()
        for k in range(1, updates + 1):
            core.update()
            if k % config.publish_every_updates == 0 or k == updates:
                start = time.process_time()
                msg = blob_to_msg(core.weights_blob(), WEIGHTS_SCHEMA)
                blob_cpu += time.process_time() - start
                blob_bytes, published = len(msg.data), published + 1
        busy_wall, busy_cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"updates_per_s": updates / busy_wall, "update_cpu_ms": 1e3 * busy_cpu / updates,
            "quiet_updates_per_s": updates / quiet_wall,
            "quiet_update_cpu_ms": 1e3 * quiet_cpu / updates,
            "blob_cpu_ms": 1e3 * blob_cpu / max(published, 1), "blob_bytes": blob_bytes,
            "broadcasts": published, "batch_size": exp.dqn.batch_size,
            "torch_threads": threads}


def _sample(space):  # noqa: ANN001, ANN202 (a gymnasium Box)
    """An observation inside the space, finite where the space is unbounded."""
    import numpy as np

    return np.nan_to_num(space.sample(), posinf=1.0, neginf=-1.0).astype(space.dtype)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-tree", type=Path, default=None)
    parser.add_argument("--updates", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (default: the config's training.torch_threads)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=2, metavar=("TREE", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), args.child[1], args.updates,
                                 args.threads)))
        return 0

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"--configs: unknown {unknown}; known: {sorted(CONFIGS)}")
    trees = {"q_grasp": ROOT}
    if args.baseline_tree:
        trees["baseline"] = args.baseline_tree.resolve()
    rows: dict[str, dict[str, list[dict]]] = {c: {n: [] for n in trees} for c in configs}
    for k in range(args.rounds):
        names = list(trees)[k % len(trees):] + list(trees)[:k % len(trees)]
        for config in configs:
            for name in names:
                env = dict(os.environ, PYTHONPATH=str(trees[name]), MPLBACKEND="Agg")
                done = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--child", str(trees[name]),
                     config, "--updates", str(args.updates), "--threads", str(args.threads)],
                    capture_output=True, text=True, env=env, cwd=trees[name])
                if done.returncode:
                    raise RuntimeError(f"{name} {config}: {done.stderr[-2000:]}")
                r = json.loads(done.stdout.strip().splitlines()[-1])
                rows[config][name].append(r)
                if "acts_per_s" in r:
                    rest = f"{r['acts_per_s']:6.1f} acts/s ({r['act_cpu_ms']:.1f} ms CPU)"
                else:
                    rest = (f"{r['quiet_updates_per_s']:6.1f} updates/s without broadcast "
                            f"({r['quiet_update_cpu_ms']:.0f} ms CPU), {r['blob_cpu_ms']:.1f} "
                            f"ms CPU per broadcast")
                print(f"round {k} {config:11s} {name:8s} {r['updates_per_s']:6.1f} updates/s "
                      f"({r['update_cpu_ms']:.0f} ms CPU each), {rest}", flush=True)
    summary = {
        config: {name: {key: statistics.median(r[key] for r in rs)
                        for key in rs[0] if key.endswith(("_per_s", "_ms"))}
                 for name, rs in by_tree.items()}
        for config, by_tree in rows.items()}
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "baseline_tree": str(args.baseline_tree) if args.baseline_tree else None,
              "cpu_count": os.cpu_count(), "summary": summary, "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
