"""trainer: the learner. Transitions in on /q_grasp/transitions, weights out on
/q_grasp/weights, progress on /diagnostics and in output_dir/progress.csv.

The subscription callback only decodes and validates a blob (bad ones are logged, counted and
dropped: they never reach the replay buffer) and queues it; a training thread owns the replay
buffer, the gradient updates, weight publication and checkpoints. A restart, also after a
crash, resumes from the newest checkpoint in output_dir that loads (weights, target network,
optimizer, counters), the replay buffer saved at the last clean shutdown plus the segments
written every replay_flush_every_s since, and weights versions above every one published.

Topics: /q_grasp/transitions (std_msgs/UInt8MultiArray, reliable, deep queue) in;
/q_grasp/weights (std_msgs/UInt8MultiArray, reliable, transient local) and /diagnostics out.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
import traceback
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import UInt8MultiArray

from q_grasp.learning.metrics import CsvLog, ScalarWriter
from q_grasp.nodes import qos
from q_grasp.nodes.convert import blob_to_msg, msg_to_blob, node_authenticator
from q_grasp.nodes.diagnostics import ERROR, OK, WARN, Diagnostics
from q_grasp.nodes.params import declare_config
from q_grasp.nodes.runtime import run_node
from q_grasp.nodes.trainer_core import TrainerConfig, TrainerCore
from q_grasp.wire import TRANSITIONS_SCHEMA, WEIGHTS_SCHEMA, TransitionBatch, WireError

TRANSITIONS_TOPIC = "/q_grasp/transitions"
WEIGHTS_TOPIC = "/q_grasp/weights"
PROGRESS_FIELDS = ("wall_time_s", "transitions", "episodes", "buffer_size", "updates",
                   "updates_per_s", "loss", "mean_max_q", "epsilon", "success_rate",
                   "reward_mean", "weights_version", "rejected", "dropped_batches")
DYNAMIC_PARAMETERS = frozenset({"max_updates_per_s", "publish_every_updates", "log_every_s"})
"""Parameters that may change while the node runs."""


class TrainerNode(Node):
    """The learner node."""

    def __init__(self, node_name: str = "trainer", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._params = declare_config(self, TrainerConfig, dynamic=DYNAMIC_PARAMETERS,
                                      on_change=self._on_parameters_changed)
        self._config = self._params.config
        self._auth = node_authenticator(self, self._config.auth_key_file)
        self.diagnostics = Diagnostics(self, f"q_grasp/{self.get_name()}")
        self.core = TrainerCore(self._config, source=self.get_fully_qualified_name())
        self.core.output_dir.mkdir(parents=True, exist_ok=True)
        for line in self.core.warnings:
            self.get_logger().warn(line)
        # Which start this is (monitors and tests tell a restarted trainer from its old self).
        self.diagnostics.set(resumed_from=self.core.resumed_from or "fresh")
        self._queue: queue.Queue[TransitionBatch] = queue.Queue(self._config.queue_size)
        self._weights_pub = self.create_publisher(UInt8MultiArray, WEIGHTS_TOPIC,
                                                  qos.WEIGHTS_QOS)
        # Transient local: the actors' last messages come, also those held before a restart.
        self._held = qos.HeldAtStart(self.core.streams.state())
        self.create_subscription(UInt8MultiArray, TRANSITIONS_TOPIC, self._on_transitions,
                                 qos.transitions_qos(self._config.transitions_qos_depth),
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self._stop = threading.Event()
        # Set by a parameter change or a stop: ends any wait a parameter controls, so that no
        # value of it (1e-6 updates/s) can wedge the loop until the next change.
        self._wake = threading.Event()
        self.context.on_shutdown(self._request_stop)
        self._progress: CsvLog | None = None
        self._scalars: ScalarWriter | None = None
        self._thread = threading.Thread(target=self._train_loop, name="trainer_learn",
                                        daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"trainer up: task {self._config.task}, network {self.core.learner.q_net.kind} "
            f"on {self.core.learner.device}, replay ratio {self.core.replay_ratio:g}, "
            f"learning starts at {self.core.learning_starts} transitions, "
            f"{'resumed from ' + self.core.resumed_from if self.core.resumed_from else 'fresh'}"
            f", {self.core.updates} updates so far")

    # ----------------------------------------------------------------------------- callbacks

    def _request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _on_parameters_changed(self, config: TrainerConfig, names: list[str]) -> None:
        self._config = config
        self._wake.set()
        self.get_logger().info(f"parameters changed: {', '.join(names)}")

    def _on_transitions(self, msg: UInt8MultiArray) -> None:
        try:
            blob = self._auth.verify(msg_to_blob(msg, TRANSITIONS_SCHEMA),
                                     self._config.max_blob_bytes)
            batch = self.core.decode(blob, authenticated=self._auth.enabled)
        except WireError as exc:
            self.diagnostics.reject("transitions", exc.reason, exc.detail)
            return
        refused, lost = self.core.streams.admit(batch)
        if refused and self._held.covers(batch.actor_id, batch.run_id, batch.sequence,
                                         len(batch)):
            self.diagnostics.count("redelivered_batches")  # held before a restart: expected
            return
        if refused:
            self.diagnostics.reject("transitions", refused, (
                f"batch of {len(batch)} from {batch.actor_id!r} (run {batch.run_id}) starts at "
                f"sequence {batch.sequence}, already received"))
            return
        if lost:
            self.diagnostics.count("lost_transitions", lost)
        self.diagnostics.count("received_batches")
        while True:
            try:
                self._queue.put_nowait(batch)
                return
            except queue.Full:
                try:  # drop the oldest: fresh experience is worth more than stale
                    self._queue.get_nowait()
                    self.diagnostics.count("dropped_batches")
                except queue.Empty:
                    pass

    # ----------------------------------------------------------------------------- learning

    def _publish_weights(self) -> None:
        blob = self._auth.sign(self.core.weights_blob())
        self._weights_pub.publish(blob_to_msg(blob, WEIGHTS_SCHEMA))
        self.diagnostics.count("weights_published")

    def _drain(self, timeout_s: float) -> int:
        added = 0
        try:
            batch = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return 0
        while True:
            added += self.core.ingest(batch)
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                return added

    def _throttle(self) -> None:
        """max_updates_per_s: the pause after an update, ended early by a parameter change."""
        self._wake.clear()
        # Read after the clear: a change from here on either shows in this value or wakes.
        rate = self._config.max_updates_per_s
        if rate > 0:
            self._wake.wait(1.0 / rate)

    def _train_loop(self) -> None:
        core = self.core
        last_publish = last_checkpoint = core.updates
        window = (time.monotonic(), core.updates)
        last_log = last_flush = time.monotonic()
        try:
            self._publish_weights()  # actors (latched subscription) start from these
            while not self._stop.is_set():
                cfg = self._config
                due = core.updates_due()
                self._drain(0.0 if due else 0.05)
                # A bounded chunk, so new transitions keep flowing into the buffer.
                for _ in range(min(core.updates_due(), 16)):
                    if self._stop.is_set():
                        break
                    core.update()
                    self._throttle()
                if core.updates - last_publish >= cfg.publish_every_updates:
                    self._publish_weights()
                    last_publish = core.updates
                if core.updates - last_checkpoint >= cfg.checkpoint_every_updates:
                    core.save_checkpoint()
                    last_checkpoint = core.updates
                now = time.monotonic()
                if now - last_flush >= cfg.replay_flush_every_s:
                    self._flush_replay()
                    last_flush = now
                if now - last_log >= cfg.log_every_s:
                    window = self._report(window)
                    last_log = now
        except Exception as exc:
            if self._stop.is_set() or not self.context.ok():
                return
            self.get_logger().error(f"training stopped: {exc}\n{traceback.format_exc()}")
            self.diagnostics.set_level(ERROR, f"training stopped: {exc}")

    def _flush_replay(self) -> None:
        try:
            self.core.flush_replay()
        except OSError as exc:  # kept in memory and tried again; training goes on
            self.diagnostics.count("replay_flush_errors")
            self.get_logger().error(f"replay buffer not written to disk: {exc}",
                                    throttle_duration_sec=30.0)

    def _report(self, window: tuple[float, int]) -> tuple[float, int]:
        now, updates = time.monotonic(), self.core.updates
        rate = (updates - window[1]) / max(now - window[0], 1e-9)
        stats = self.core.stats()
        row = {**stats, "wall_time_s": round(now, 3), "updates_per_s": rate,
               "rejected": self.diagnostics.rejected_total(),
               "dropped_batches": self.diagnostics.counter("dropped_batches")}
        # Files first: whoever sees a number on /diagnostics finds it in progress.csv and tb/.
        self._write_progress(row)
        self.diagnostics.set(**{k: v for k, v in row.items() if k != "wall_time_s"})
        if row["rejected"]:
            self.diagnostics.set_level(WARN, "rejected some transition blobs (see rejected.*)")
        else:
            self.diagnostics.set_level(OK, "training" if stats["updates"] else "collecting")
        loss = stats["loss"]
        self.get_logger().info(
            f"transitions {stats['transitions']}  buffer {stats['buffer_size']}  updates "
            f"{stats['updates']} ({rate:.1f}/s)  loss "
            f"{'-' if math.isnan(loss) else f'{loss:.4f}'}  weights v{stats['weights_version']}"
            f"  success {stats['success_rate']:.2f}")
        return now, updates

    def _write_progress(self, row: dict[str, Any]) -> None:
        if self._progress is None:
            out = self.core.output_dir
            self._progress = CsvLog(out / "progress.csv", PROGRESS_FIELDS, append=True)
            if self._config.tensorboard:
                self._scalars = ScalarWriter(out / "tb")
        self._progress.write(row)
        if self._scalars is not None:
            self._scalars.scalars("trainer", row, int(row["transitions"]),
                                  skip=("wall_time_s", "transitions"))
            self._scalars.flush()

    # ----------------------------------------------------------------------------- shutdown

    def destroy_node(self) -> None:
        """Stop training, write a final checkpoint (with the replay buffer) unless nothing
        arrived or was learned since the last one, then go."""
        self._request_stop()
        if self._thread.is_alive():
            self._thread.join(timeout=30.0)
        if not self.core.unsaved:
            level, line = "info", (f"no checkpoint written: no transitions received and no "
                                   f"updates since {self.core.resumed_from or 'the start'}")
        else:
            try:
                path = self.core.save_checkpoint(replay=self._config.save_replay_buffer)
                level, line = "info", (f"saved {path} ({self.core.transitions} transitions, "
                                       f"{self.core.updates} updates)")
            except Exception as exc:  # never lose the shutdown over a full disk; say so
                level, line = "error", f"final checkpoint failed: {exc}"
        if self._progress is not None:
            self._progress.close()
        if self._scalars is not None:
            self._scalars.close()
        logger = self.get_logger()
        super().destroy_node()
        # Logged once the node is gone: after Ctrl-C its /rosout publisher is already invalid
        # (rcl would print an error for the line); the console and log file still get it.
        getattr(logger, level)(line)


def main(args: list[str] | None = None) -> int:
    """Console script ``trainer``."""
    return run_node(TrainerNode, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
