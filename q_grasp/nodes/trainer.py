"""trainer: the learner. Transitions in on /q_grasp/transitions, weights out on
/q_grasp/weights, progress on /diagnostics and in output_dir/progress.csv.

The subscription callback only decodes and validates a blob (bad ones are logged, counted and
dropped: they never reach the replay buffer) and queues it; a training thread
(q_grasp.learning.trainer_loop) owns the replay buffer, the gradient updates, weight
publication and checkpoints. A restart, also after a
crash, resumes from the newest checkpoint in output_dir that loads (weights, target network,
optimizer, counters), the replay buffer saved at the last clean shutdown plus the segments
written every replay_flush_every_s since, and weights versions above every one published.

Topics: /q_grasp/transitions (std_msgs/UInt8MultiArray, reliable, deep queue) in;
/q_grasp/weights (std_msgs/UInt8MultiArray, reliable, transient local) and /diagnostics out.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import traceback
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import UInt8MultiArray

from q_grasp.learning.trainer_core import TrainerCore
from q_grasp.learning.trainer_loop import TrainingLoop
from q_grasp.messages import msg_to_blob
from q_grasp.node_params.trainer import DYNAMIC_PARAMETERS, TrainerConfig
from q_grasp.nodes import qos
from q_grasp.nodes.convert import blob_to_msg, node_authenticator
from q_grasp.nodes.diagnostics import ERROR, OK, WARN, Diagnostics
from q_grasp.nodes.params import declare_config
from q_grasp.nodes.runtime import run_node
from q_grasp.wire import (
    TRANSITIONS_SCHEMA,
    TRANSITIONS_TOPIC,
    WEIGHTS_SCHEMA,
    WEIGHTS_TOPIC,
    WireError,
)


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
        self.loop = TrainingLoop(self.core, self._config, publish_weights=self._publish_weights,
                                 report=self._report, flush_failed=self._flush_failed)
        self._weights_pub = self.create_publisher(UInt8MultiArray, WEIGHTS_TOPIC,
                                                  qos.WEIGHTS_QOS)
        # Transient local: the actors' last messages come, also those held before a restart.
        self._held = qos.HeldAtStart(self.core.streams.state())
        self.create_subscription(UInt8MultiArray, TRANSITIONS_TOPIC, self._on_transitions,
                                 qos.transitions_qos(self._config.transitions_qos_depth),
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self.context.on_shutdown(self.loop.stop)
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

    def _on_parameters_changed(self, config: TrainerConfig, names: list[str]) -> None:
        self._config = config
        self.loop.reconfigure(config)
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
        dropped = self.loop.offer(batch)
        if dropped:
            self.diagnostics.count("dropped_batches", dropped)

    # ----------------------------------------------------------------------------- learning

    def _publish_weights(self, blob: bytes) -> None:
        self._weights_pub.publish(blob_to_msg(self._auth.sign(blob), WEIGHTS_SCHEMA))
        self.diagnostics.count("weights_published")

    def _train_loop(self) -> None:
        try:
            self.loop.run()
        except Exception as exc:
            if self.loop.stopped.is_set() or not self.context.ok():
                return
            self.get_logger().error(f"training stopped: {exc}\n{traceback.format_exc()}")
            self.diagnostics.set_level(ERROR, f"training stopped: {exc}")

    def _flush_failed(self, exc: OSError) -> None:
        self.diagnostics.count("replay_flush_errors")
        self.get_logger().error(f"replay buffer not written to disk: {exc}",
                                throttle_duration_sec=30.0)

    def _report(self, updates_per_s: float) -> None:
        stats = self.core.stats()
        row = {**stats, "wall_time_s": round(time.monotonic(), 3),
               "updates_per_s": updates_per_s, "rejected": self.diagnostics.rejected_total(),
               "dropped_batches": self.diagnostics.counter("dropped_batches")}
        # Files first: whoever sees a number on /diagnostics finds it in progress.csv and tb/.
        self.loop.write_progress(row)
        self.diagnostics.set(**{k: v for k, v in row.items() if k != "wall_time_s"})
        if row["rejected"]:
            self.diagnostics.set_level(WARN, "rejected some transition blobs (see rejected.*)")
        else:
            self.diagnostics.set_level(OK, "training" if stats["updates"] else "collecting")
        loss = stats["loss"]
        self.get_logger().info(
            f"transitions {stats['transitions']}  buffer {stats['buffer_size']}  updates "
            f"{stats['updates']} ({updates_per_s:.1f}/s)  loss "
            f"{'-' if math.isnan(loss) else f'{loss:.4f}'}  weights v{stats['weights_version']}"
            f"  success {stats['success_rate']:.2f}")

    # ----------------------------------------------------------------------------- shutdown

    def destroy_node(self) -> None:
        """Stop training, write a final checkpoint (with the replay buffer) unless nothing
        arrived or was learned since the last one, then go."""
        self.loop.stop()
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
        self.loop.close()
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
