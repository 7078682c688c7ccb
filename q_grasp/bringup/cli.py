"""The command line of ``python -m q_grasp.nodes.bringup``: parse, validate, run."""


from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from q_grasp.bringup.config import EXECUTORS, LOG_LEVELS, TASKS, BringupConfig
from q_grasp.bringup.run import Bringup
from q_grasp.config import build

DESCRIPTION = """\
Train (and then evaluate) over ROS 2 topics without ``ros2 launch``: the pip-only twin of
``ros2 launch q_grasp sim_train.launch.py``.

  python -m q_grasp.nodes.bringup --task grasp                 # train, then greedy evaluation
  python -m q_grasp.nodes.bringup --task reacher --processes   # three node processes
  python -m q_grasp.nodes.bringup --task grasp --train false --checkpoint runs/x/ckpt.safetensors

It starts the launch file's three nodes (sim_arm, policy, trainer) with the same parameters
file (config/sim_train_<task>.yaml unless --config) and the same per-node overrides
(use_sim_time, task, checkpoint, train), either composed in this process on one executor
(default), the trainer in a child process (--trainer-process) or as three child processes
(--processes). Progress comes from
/diagnostics, as an operator would see it. At the budget (--max-transitions, default the
experiment's training.total_steps, the budget of ``python -m q_grasp train``; or --duration-s)
the actor stops, the trainer finishes the gradient updates it owes at its replay ratio and
writes its checkpoint, and a greedy policy (train:=false, the trainer's final checkpoint) is
evaluated on the same simulator. A summary goes to <out>/bringup_summary.json, the learning
curves to <out>/plots.png (TensorBoard scalars in <out>/tb).
"""
"""What --help says of bringup."""

def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    # Options not given stay out of the result: their defaults are BringupConfig's.
    parser = argparse.ArgumentParser(
        prog="python -m q_grasp.nodes.bringup", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS)
    parser.add_argument("--task", choices=TASKS,
                        help="skill to learn (default grasp)")
    parser.add_argument("--config",
                        help="node parameters file (default config/sim_train_<task>.yaml)")
    parser.add_argument("--namespace", help="namespace of sim_arm and policy")
    parser.add_argument("--use-sim", type=_bool, metavar="true|false",
                        help="start sim_arm (false: a real arm provides the topics)")
    parser.add_argument("--driver", choices=["none", "xarm", "xarm-fake"],
                        help="with --use-sim false: start xarm_driver for the NURO arm's board "
                             "(xarm) or its fake board (xarm-fake, no arm needed)")
    parser.add_argument("--use-sim-time", type=_bool, metavar="true|false",
                        help="run every node on sim_arm's /clock")
    parser.add_argument("--checkpoint",
                        help="initial weights (the trainer resumes from it); with --train "
                             "false, the policy to evaluate")
    parser.add_argument("--train", type=_bool, metavar="true|false",
                        help="train (default); false: only evaluate --checkpoint")
    parser.add_argument("--out",
                        help="trainer output folder (default: the params file's output_dir)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--max-transitions", type=int, metavar="N",
                        help="stop after N transitions in total (default: the experiment's "
                             "training.total_steps)")
    budget.add_argument("--duration-s", type=float, metavar="S",
                        help="stop after S seconds of training instead")
    # Not mutually exclusive: the last one given wins, so that `make run RUN_ARGS=...` can
    # override the Makefile's --trainer-process.
    layout = parser.add_argument_group("process layout (the last one given wins)")
    layout.add_argument("--composed", action="store_const", dest="mode", const="composed",
                        help="all three nodes composed in this process (the default)")
    layout.add_argument("--processes", action="store_const", dest="mode", const="processes",
                        help="run the three nodes as child processes, as ros2 launch does")
    layout.add_argument("--trainer-process", action="store_const", dest="mode",
                        const="trainer-process",
                        help="compose sim_arm and policy here and run the trainer as a child "
                             "process")
    parser.add_argument("--record", action="store_true",
                        help="record the run's topics (joint states, images, trajectories, "
                             "transitions, weights, diagnostics) as ROS 2 messages in "
                             "<out>/recording_<date>.mcap (read by ros2 bag, Foxglove and "
                             "python -m q_grasp replay-buffer)")
    parser.add_argument("--viewer", action="store_true",
                        help="show the run in Rerun (arm in 3D, camera, Q-map, grasps, goal, "
                             "learning curves): saved to <out>/run_<date>.rrd and served at "
                             "http://localhost:PORT (--viewer-port)")
    parser.add_argument("--viewer-port", type=int, metavar="PORT",
                        help="web viewer port of --viewer (default 9090; 0: only the .rrd)")
    parser.add_argument("--eval-episodes", type=int, metavar="N",
                        help="greedy evaluation episodes (default: the experiment's "
                             "final_eval_episodes; 0: none)")
    parser.add_argument("--eval-qmaps", type=int, metavar="N",
                        help="grasping: save the Q-map images of the first N evaluation "
                             "decisions in <out>/eval_qmaps/ (default 50; 0: none)")
    parser.add_argument("--progress-every-s", type=float, metavar="S",
                        help="progress line period (default 10 s)")
    parser.add_argument("--catch-up", type=_bool, metavar="true|false",
                        help="let the trainer finish the updates owed at its replay ratio "
                             "after the actor stops (default true)")
    parser.add_argument("--executor", choices=EXECUTORS,
                        help="composed mode's rclpy executor (default events; multi is "
                        "slower here and warns)")
    parser.add_argument("--node-log-level", choices=LOG_LEVELS,
                        help="console log level of the nodes after start-up (default warn)")
    parser.add_argument("--auth-key-file", metavar="PATH",
                        help="key file that authenticates transitions and weights (share it "
                             "to spread a system over machines); default: a fresh key per run")
    return parser


def config_from_args(argv: Sequence[str]) -> BringupConfig:
    """Parse the command line and validate it through the config core (ConfigError, a
    ValueError, names the bad option's field)."""
    given = vars(build_parser().parse_args(list(argv)))
    return build(BringupConfig, given, where="command line")


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit status 0 on success, 2 on invalid arguments, 1 if a node failed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (kill, timeout, a service manager) stops as cleanly as Ctrl-C: rclpy's own
        # handler shuts the context down and then calls this one.
        signal.signal(signal.SIGTERM, _terminate)
    try:
        cfg = config_from_args(argv)
        if not cfg.use_sim and cfg.use_sim_time:
            print("[bringup] warning: --use-sim false with --use-sim-time true needs another "
                  "/clock publisher; a real arm usually wants --use-sim-time false",
                  file=sys.stderr)
        bringup = Bringup(cfg, argv)
    except ValueError as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 2
    try:
        bringup.run()
    except ValueError as exc:  # a node refused its parameters
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 1
    return 0

