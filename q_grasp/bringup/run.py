"""One bringup run: start the nodes, train to the budget, let the trainer catch up, stop in
order, evaluate greedily, write bringup_summary.json and plots.png."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from q_grasp.bringup.config import (
    IN_PROCESS,
    SIM_IDLE_PARAMETERS,
    BringupConfig,
    default_params_file,
    node_config,
    node_overrides,
    training_plan,
)
from q_grasp.bringup.monitor import Monitor, as_number, elapsed_text, progress_line
from q_grasp.bringup.processes import Backend
from q_grasp.tasks.names import is_grasp_task
from q_grasp.wire.auth import new_key_file, read_key_file


@dataclass
class RunSummary:
    """What a bringup run did (also written to <out>/bringup_summary.json)."""

    task: str
    mode: str
    command: str
    params_file: str
    output_dir: str
    resumed_from: str = ""
    budget: str = ""
    train_wall_s: float = 0.0
    catch_up_wall_s: float = 0.0
    transitions: int = 0
    episodes: int = 0
    train_successes: int = 0
    updates: int = 0
    weights_version: int = -1
    checkpoint: str = ""
    progress_csv: str = ""
    plots: str = ""
    recording: str = ""
    viewer_rrd: str = ""
    eval: dict[str, Any] = field(default_factory=dict)
    total_wall_s: float = 0.0


class Bringup:
    """Runs one bringup: start, train to the budget, stop in order, evaluate, summarise."""

    def __init__(self, cfg: BringupConfig, argv: Sequence[str] = (),
                 print_fn: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.print = print_fn or (lambda line: print(line, flush=True))
        self.params_file = Path(cfg.config).expanduser() if cfg.config else (
            default_params_file(cfg.task))
        if not self.params_file.is_file():
            raise ValueError(f"config: no such parameters file: {self.params_file}")
        if cfg.checkpoint and not Path(cfg.checkpoint).expanduser().is_file():
            raise ValueError(f"checkpoint: no such file: {cfg.checkpoint}")
        if cfg.auth_key_file:
            read_key_file(cfg.auth_key_file)  # AuthKeyError (a ValueError) names the file
        self.plan = training_plan(cfg, self.params_file)
        self.out = self.plan.output_dir
        self.argv = list(argv)
        self._stop_requested = False

    # ------------------------------------------------------------------ helpers

    def _budget(self) -> tuple[int, float]:
        cfg = self.cfg
        if cfg.duration_s:
            return 0, cfg.duration_s
        return (cfg.max_transitions or self.plan.total_steps), 0.0

    def _eval_episodes(self) -> int:
        if self.cfg.eval_episodes >= 0:
            return self.cfg.eval_episodes
        return max(self.plan.final_eval_episodes, 1)

    def _wait(self, backend: Any, done: Callable[[], bool], timeout_s: float,
              report: Callable[[], None] | None = None) -> bool:
        deadline = time.monotonic() + timeout_s
        next_report = time.monotonic() + self.cfg.progress_every_s
        while time.monotonic() < deadline:
            if done():
                return True
            if not backend.context.ok():  # Ctrl-C: rclpy's handler shut the context down
                raise KeyboardInterrupt
            failure = backend.failed()
            if failure:
                raise RuntimeError(failure)
            backend.spin(0.2)
            if report is not None and time.monotonic() >= next_report:
                report()
                next_report += self.cfg.progress_every_s
        return done()

    # ------------------------------------------------------------------ phases

    def run(self) -> RunSummary:
        fresh_key = None
        if not self.cfg.auth_key_file:
            fresh_key = new_key_file()
            self.cfg = dataclasses.replace(self.cfg, auth_key_file=str(fresh_key))
        try:
            return self._run()
        finally:
            if fresh_key is not None:
                fresh_key.unlink(missing_ok=True)

    def _run(self) -> RunSummary:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        summary = RunSummary(task=cfg.task, mode=cfg.mode,
                             command=" ".join(["python -m q_grasp.nodes.bringup", *self.argv]),
                             params_file=str(self.params_file), output_dir=str(self.out),
                             resumed_from=self.plan.resume_from)
        t_start = time.monotonic()
        backend = Backend(cfg, self.params_file, self.out / "logs", IN_PROCESS[cfg.mode])
        try:
            if cfg.record:
                summary.recording = self._start_recorder(backend)
            if cfg.viewer:
                summary.viewer_rrd = self._start_viewer(backend)
            if cfg.use_sim:
                backend.start("sim_arm", node_overrides(cfg, "sim_arm", self.plan))
            elif cfg.driver != "none":
                backend.start("xarm_driver", node_overrides(cfg, "xarm_driver", self.plan))
            if cfg.train:
                self._train(backend, summary)
            if self._eval_episodes() > 0 and not self._stop_requested:
                self._evaluate(backend, summary)
        except KeyboardInterrupt:
            self.print("[bringup] interrupted: stopping the nodes (the trainer saves a "
                       "checkpoint)")
            self._stop_requested = True
            if cfg.train and not summary.train_wall_s:
                summary.train_wall_s = time.monotonic() - t_start
                self._record_training(summary, backend.monitor)
        finally:
            backend.close()
        summary.total_wall_s = time.monotonic() - t_start
        if cfg.train:
            from q_grasp.learning.trainer_core import newest_checkpoint

            newest = newest_checkpoint(self.out)
            summary.checkpoint = str(newest) if newest else summary.checkpoint
            summary.progress_csv = str(self.out / "progress.csv")
            summary.plots = self._plot()
        path = self.out / "bringup_summary.json"
        path.write_text(json.dumps(asdict(summary), indent=2) + "\n")
        self._print_summary(summary, path)
        return summary

    def _start_recorder(self, backend: Backend) -> str:
        """Start the recorder before the other nodes, so that it hears their first messages;
        the path it writes ("" when it could not start: the run goes on without it)."""
        path = self.out / f"recording_{time.strftime('%Y%m%d_%H%M%S')}.mcap"
        try:
            backend.start("recorder", {"output_path": str(path)})
        except Exception as exc:  # a recorder never stops the run
            print(f"[bringup] not recording: {exc}", file=sys.stderr)
            return ""
        node = backend.nodes.get("recorder")
        if node is not None and node.error:
            return ""  # it logged why
        self.print(f"[bringup] recording the run's topics to {path}")
        return str(path)

    def _start_viewer(self, backend: Backend) -> str:
        """Start the Rerun viewer node before the others; the .rrd it writes ("" when it could
        not start: the run goes on without it)."""
        path = self.out / f"run_{time.strftime('%Y%m%d_%H%M%S')}.rrd"
        try:
            backend.start("viewer", {"rrd_path": str(path), "web_port": self.cfg.viewer_port})
        except Exception as exc:  # a viewer never stops the run
            print(f"[bringup] no viewer: {exc}", file=sys.stderr)
            return ""
        node = backend.nodes.get("viewer")
        if node is not None:
            if node.error:
                print(f"[bringup] no viewer: {node.error}", file=sys.stderr)
                return ""
            if node.url:
                self.print(f"[bringup] viewer: open {node.url} in a browser")
        self.print(f"[bringup] viewer: saving to {path} (reopen with: rerun {path})")
        return str(path)

    def _plot(self) -> str:
        """The trainer's learning curves as <out>/plots.png ("" with a printed reason when
        there is nothing to draw: the run ends either way)."""
        from q_grasp.learning.plotting import PlotError, plot_runs

        try:
            return str(plot_runs([self.out], self.out / "plots.png",
                                 title=f"{self.cfg.task} over ROS 2 topics ({self.out})"))
        except (PlotError, OSError) as exc:
            print(f"[bringup] no plots: {exc}", file=sys.stderr)
            return ""

    def _train(self, backend: Any, summary: RunSummary) -> None:
        cfg, plan = self.cfg, self.plan
        max_transitions, duration_s = self._budget()
        budget = f"/{max_transitions}" if max_transitions else ""
        summary.budget = (f"{max_transitions} transitions" if max_transitions
                          else f"{duration_s:g} s")
        self.print(
            f"[bringup] {cfg.task}: sim_arm + policy + trainer "
            f"({cfg.mode}), params "
            f"{self.params_file}, budget {summary.budget}, replay ratio {plan.replay_ratio:g}, "
            f"learning starts at {plan.learning_starts}, output {self.out}"
            + (f", resuming from {plan.resume_from}" if plan.resume_from else ""))
        backend.start("trainer", node_overrides(cfg, "trainer", plan))
        monitor_node = backend.monitor_node

        def trainer_listens() -> bool:  # the trainer's subscription, not the recorder's
            return any(info.node_name == "trainer" for info in
                       monitor_node.get_subscriptions_info_by_topic("/q_grasp/transitions"))

        # The actor's transitions are transient local: a trainer that subscribes late still
        # receives the actor's last transitions_queue_depth messages. When the whole budget fits
        # in that history, acting starts at once instead of after the trainer's start-up;
        # otherwise once the learner listens (what came before would be lost).
        if not self._history_holds_budget(max_transitions):
            if "policy" in IN_PROCESS[cfg.mode] and is_grasp_task(cfg.task):
                self._prebuild_reach_table()
            if not self._wait(backend, trainer_listens, 300.0):
                raise RuntimeError("the trainer did not subscribe to /q_grasp/transitions "
                                   "within 300 s")
        backend.start("policy", node_overrides(cfg, "policy", plan))
        monitor = backend.monitor
        t0 = time.monotonic()
        window = [t0, 0]

        def steps() -> int:
            return int(as_number(monitor.snapshot()[1], "steps", 0))

        def report() -> None:
            trainer, policy, _ = monitor.snapshot()
            now, count = time.monotonic(), int(as_number(policy, "steps", 0))
            rate = (count - window[1]) / max(now - window[0], 1e-9) if window[1] else 0.0
            window[:] = [now, count]
            self.print(progress_line(cfg.task, now - t0, budget, trainer, policy, rate))
            for error in monitor.errors():
                self.print(f"[bringup] ERROR {error}")

        def budget_reached() -> bool:
            if duration_s:
                return time.monotonic() - t0 >= duration_s
            return steps() >= max_transitions

        self._wait(backend, budget_reached, math.inf, report)
        summary.train_wall_s = time.monotonic() - t0
        report()
        backend.stop("policy")
        self._record_training(summary, monitor)
        self.print(f"[bringup] budget reached after {summary.train_wall_s:.0f} s: actor "
                   f"stopped at {summary.transitions} transitions")
        t_catch = time.monotonic()
        if cfg.catch_up:
            # Nobody acts now: the simulator would only burn the CPU that the trainer needs.
            # Slow it to real time without camera frames meanwhile -- unless the trainer runs
            # on this process's EventsExecutor, whose sim-time timers stop firing after a
            # clock rate change: the composed layout keeps the simulator at full rate.
            paused = (cfg.use_sim and "trainer" not in backend.nodes
                      and backend.set_parameters("sim_arm", SIM_IDLE_PARAMETERS))
            self._catch_up(backend, summary.transitions)
            if paused:
                backend.set_parameters("sim_arm", self._sim_parameters(list(SIM_IDLE_PARAMETERS)))
        summary.catch_up_wall_s = time.monotonic() - t_catch
        self._record_training(summary, monitor)
        backend.stop("trainer", timeout_s=cfg.catch_up_timeout_s)
        monitor.forget_policy()

    def _history_holds_budget(self, max_transitions: int) -> bool:
        """Whether a budget of ``max_transitions`` (0: a duration) fits in both the actor's
        and the trainer's transient-local history of /q_grasp/transitions (messages hold at
        least one transition each), so that none is lost before the trainer subscribes."""
        from q_grasp.learning.trainer_core import TrainerConfig
        from q_grasp.node_params.policy import PolicyConfig

        if max_transitions <= 0:
            return False
        policy = node_config(self.params_file, "policy", PolicyConfig,
                             node_overrides(self.cfg, "policy", self.plan))
        trainer = node_config(self.params_file, "trainer", TrainerConfig,
                              node_overrides(self.cfg, "trainer", self.plan))
        return max_transitions <= min(policy.transitions_queue_depth,
                                      trainer.transitions_qos_depth)

    def _prebuild_reach_table(self) -> threading.Thread:
        """Build the policy's reachability table (seconds of IK; cached per process) in a
        thread while the trainer's process starts, so that the policy, composed in this
        process, acts at once. A failure is left for the policy to report."""
        from q_grasp.node_params.policy import PolicyConfig
        from q_grasp.tasks.load import load_task, make_task

        policy = node_config(self.params_file, "policy", PolicyConfig,
                             node_overrides(self.cfg, "policy", self.plan))

        def build() -> None:
            try:
                setup = load_task(policy.task, experiment_config=policy.experiment_config,
                                  checkpoint=policy.checkpoint, seed=policy.seed)
                if setup.experiment.exploration.use_action_mask:
                    _ = make_task(policy.task, setup.env_config).reach
            except Exception:  # the policy builds it again and says why
                pass

        thread = threading.Thread(target=build, name="reach_table", daemon=True)
        thread.start()
        return thread

    def _sim_parameters(self, names: Sequence[str]) -> dict[str, Any]:
        """sim_arm's values of these parameters as started (params file, else defaults)."""
        from q_grasp.node_params.sim_arm import SimArmConfig

        sim = node_config(self.params_file, "sim_arm", SimArmConfig,
                          node_overrides(self.cfg, "sim_arm", self.plan))
        return {k: getattr(sim, k) for k in names}

    @staticmethod
    def _record_training(summary: RunSummary, monitor: Monitor) -> None:
        trainer, policy, _ = monitor.snapshot()
        if policy.get("mode", "train") == "train":
            summary.transitions = int(as_number(policy, "steps", summary.transitions))
            summary.episodes = int(as_number(policy, "episodes", summary.episodes))
            summary.train_successes = int(as_number(policy, "grasp_successes",
                                                  summary.train_successes))
        summary.updates = int(as_number(trainer, "updates", summary.updates))
        summary.weights_version = int(as_number(trainer, "weights_version",
                                              summary.weights_version))

    def _catch_up(self, backend: Any, transitions: int) -> None:
        """Wait until the trainer holds every transition the actor sent (or none arrive for
        a while: dropped by a full queue) and has done the updates owed for them."""
        plan, monitor = self.plan, backend.monitor
        last = [-1, time.monotonic()]  # received count, when it last changed

        def received() -> int:
            return int(as_number(monitor.snapshot()[0], "transitions", 0))

        def owed() -> int:
            count = received()
            if count < plan.learning_starts:
                return 0
            return int((count - plan.learning_starts) * plan.replay_ratio) + 1

        def all_received() -> bool:
            count = received()
            if count != last[0]:
                last[:] = [count, time.monotonic()]
            return count >= transitions or time.monotonic() - last[1] > 30.0

        def caught_up() -> bool:
            return all_received() and int(as_number(monitor.snapshot()[0], "updates", 0)) >= owed()

        def report() -> None:
            trainer = monitor.snapshot()[0]
            self.print(f"[bringup] trainer catching up: {int(as_number(trainer, 'updates', 0))}"
                       f"/{owed()} updates for {received()} transitions "
                       f"({as_number(trainer, 'updates_per_s', 0.0):.1f}/s)")

        if not caught_up():
            report()
            if not self._wait(backend, caught_up, self.cfg.catch_up_timeout_s, report):
                self.print("[bringup] catch-up timed out; stopping the trainer as it is")

    def _evaluate(self, backend: Any, summary: RunSummary) -> None:
        from q_grasp.learning.trainer_core import newest_checkpoint

        cfg = self.cfg
        episodes = self._eval_episodes()
        checkpoint = cfg.checkpoint
        if cfg.train:
            newest = newest_checkpoint(self.out)
            if newest is None:
                self.print("[bringup] no checkpoint was written; skipping the evaluation")
                return
            checkpoint = str(newest)
        overrides = node_overrides(cfg, "policy", None)
        overrides.update(train=False, checkpoint=checkpoint, max_episodes=episodes,
                         success_window=episodes, shutdown_when_done=False)
        self.print(f"[bringup] greedy evaluation: {episodes} episodes with {checkpoint}")
        monitor = backend.monitor
        monitor.forget_policy()
        qmaps = (self._save_eval_qmaps(backend) if is_grasp_task(cfg.task) and cfg.eval_qmaps
                 else None)
        t0 = time.monotonic()
        backend.start("policy", overrides)

        def finished() -> bool:
            policy = monitor.snapshot()[1]
            return (policy.get("mode") == "evaluate"
                    and int(as_number(policy, "episodes", 0)) >= episodes)

        def report() -> None:
            policy = monitor.snapshot()[1]
            if policy.get("mode") == "evaluate":
                self.print(f"[{elapsed_text(time.monotonic() - t0)}] evaluating: episode "
                           f"{int(as_number(policy, 'episodes', 0))}/{episodes}, "
                           f"{int(as_number(policy, 'steps', 0))} steps")

        ok = self._wait(backend, finished, max(600.0, 60.0 * episodes), report)
        policy = monitor.snapshot()[1]
        backend.stop("policy")
        if qmaps is not None:
            backend.monitor_node.destroy_subscription(qmaps[0])
        steps = int(as_number(policy, "steps", 0))
        result: dict[str, Any] = {
            "checkpoint": checkpoint, "episodes": int(as_number(policy, "episodes", 0)),
            "steps": steps, "episode_success_rate": as_number(policy, "success_rate"),
            "mean_return": as_number(policy, "mean_return"),
            "wall_s": time.monotonic() - t0, "complete": ok}
        if is_grasp_task(cfg.task):
            successes = int(as_number(policy, "grasp_successes", 0))
            result.update(attempts=steps, grasp_successes=successes,
                          attempt_success_rate=successes / steps if steps else math.nan)
        if qmaps is not None:
            result.update(qmaps=qmaps[1]["saved"], qmap_dir=str(self.out / "eval_qmaps"))
        summary.eval = result

    def _save_eval_qmaps(self, backend: Backend) -> tuple[Any, dict[str, int]]:
        """Subscribe to the evaluating policy's Q-map images (it draws them only while someone
        listens) and save the first eval_qmaps as PNGs; (subscription, {"saved": count})."""
        from sensor_msgs.msg import Image

        from q_grasp.learning.visualize import save_png
        from q_grasp.messages import color_image_to_numpy
        from q_grasp.nodes.qos import DEFAULT_QOS

        folder = self.out / "eval_qmaps"
        for stale in folder.glob("qmap_*.png"):  # an earlier evaluation's
            stale.unlink()
        count = {"saved": 0}

        def on_q_map(msg: Any) -> None:
            if count["saved"] >= self.cfg.eval_qmaps:
                return
            try:
                save_png(color_image_to_numpy(msg), folder / f"qmap_{count['saved']:04d}.png")
            except (OSError, ValueError) as exc:  # the evaluation matters more than pictures
                print(f"[bringup] Q-map image not saved: {exc}", file=sys.stderr)
                return
            count["saved"] += 1

        topic = backend._namespace("policy").rstrip("/") + "/q_grasp/q_map"
        return backend.monitor_node.create_subscription(Image, topic, on_q_map,
                                                        DEFAULT_QOS), count

    def _print_summary(self, summary: RunSummary, path: Path) -> None:
        lines = ["[bringup] done in " + f"{summary.total_wall_s:.0f} s"]
        if self.cfg.train:
            lines.append(
                f"  training: {summary.transitions} transitions ({summary.train_successes} "
                f"successful grasps) in {summary.train_wall_s:.0f} s + "
                f"{summary.catch_up_wall_s:.0f} s trainer catch-up, {summary.updates} "
                f"updates, weights v{summary.weights_version}")
        result = summary.eval
        if result:
            if is_grasp_task(self.cfg.task):
                lines.append(
                    f"  greedy evaluation: grasp success {result['grasp_successes']}/"
                    f"{result['attempts']} attempts = {100 * result['attempt_success_rate']:.1f}%"
                    f", episodes ending in a grasp {100 * result['episode_success_rate']:.1f}% "
                    f"of {result['episodes']}")
                if result.get("qmaps"):
                    lines.append(f"  Q-maps of the evaluation: {result['qmaps']} PNGs in "
                                 f"{result['qmap_dir']}")
            else:
                lines.append(f"  greedy evaluation: success "
                             f"{100 * result['episode_success_rate']:.1f}% of "
                             f"{result['episodes']} episodes, mean return "
                             f"{result['mean_return']:.3f}")
        if summary.checkpoint:
            lines.append(f"  checkpoint: {summary.checkpoint}")
        if summary.progress_csv:
            tb = self.out / "tb"
            lines.append(f"  metrics: {summary.progress_csv}"
                         + (f", TensorBoard: {tb}" if tb.is_dir() else ""))
        if summary.plots:
            lines.append(f"  plots: {summary.plots}")
        if summary.recording:
            size = Path(summary.recording).stat().st_size if Path(
                summary.recording).is_file() else 0
            lines.append(f"  recording: {summary.recording} ({size / 2**20:.1f} MiB)")
        if summary.viewer_rrd:
            lines.append(f"  viewer: {summary.viewer_rrd}")
        lines.append(f"  summary: {path}")
        for line in lines:
            self.print(line)
