"""The trainer node's learning thread without ROS: batches of transitions queued (drop-oldest)
by whoever receives them, ingested into a TrainerCore, gradient updates at its replay ratio
(throttled by max_updates_per_s), weights published, checkpoints, replay-log flushes and
progress rows (progress.csv, TensorBoard) at their periods."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from q_grasp.learning.metrics import CsvLog, ScalarWriter
from q_grasp.learning.trainer_core import TrainerConfig, TrainerCore
from q_grasp.wire import TransitionBatch

PROGRESS_FIELDS = ("wall_time_s", "transitions", "episodes", "buffer_size", "updates",
                   "updates_per_s", "loss", "mean_max_q", "epsilon", "success_rate",
                   "reward_mean", "weights_version", "rejected", "dropped_batches")
"""Columns of progress.csv."""

MAX_UPDATES_PER_CHUNK = 16
"""Updates between two looks at the queue, so new transitions keep flowing into the buffer."""


class TrainingLoop:
    """Runs the learner on ``core`` until :meth:`stop` (call :meth:`run` in its own thread).

    ``publish_weights(blob)`` sends a weights blob to the actors; ``report(updates_per_s)`` is
    called every ``log_every_s`` (it builds the progress row and passes it to
    :meth:`write_progress`); ``flush_failed(exc)`` hears of a replay log that could not be
    written (kept in memory and tried again).
    """

    def __init__(self, core: TrainerCore, config: TrainerConfig, *,
                 publish_weights: Callable[[bytes], None],
                 report: Callable[[float], None],
                 flush_failed: Callable[[OSError], None]) -> None:
        self.core = core
        self.config = config
        self._publish_weights = publish_weights
        self._report = report
        self._flush_failed = flush_failed
        self._queue: queue.Queue[TransitionBatch] = queue.Queue(config.queue_size)
        self.stopped = threading.Event()
        # Set by a parameter change or a stop: ends any wait a parameter controls, so that no
        # value of it (1e-6 updates/s) can wedge the loop until the next change.
        self._wake = threading.Event()
        self._progress: CsvLog | None = None
        self._scalars: ScalarWriter | None = None

    # ----------------------------------------------------------------------------- any thread

    def offer(self, batch: TransitionBatch) -> int:
        """Queue ``batch`` for the learner; the number of older batches dropped for it (a full
        queue drops the oldest: fresh experience is worth more than stale)."""
        dropped = 0
        while True:
            try:
                self._queue.put_nowait(batch)
                return dropped
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    dropped += 1
                except queue.Empty:
                    pass

    def reconfigure(self, config: TrainerConfig) -> None:
        """Take up new parameter values; ends a throttle wait computed from the old ones."""
        self.config = config
        self._wake.set()

    def stop(self) -> None:
        self.stopped.set()
        self._wake.set()

    # ----------------------------------------------------------------------------- the thread

    def run(self) -> None:
        """The learning loop; exceptions propagate to the caller."""
        core = self.core
        last_publish = last_checkpoint = core.updates
        window = (time.monotonic(), core.updates)
        last_log = last_flush = time.monotonic()
        self._publish_weights(core.weights_blob())  # actors (latched) start from these
        while not self.stopped.is_set():
            cfg = self.config
            due = core.updates_due()
            self._drain(0.0 if due else 0.05)
            for _ in range(min(core.updates_due(), MAX_UPDATES_PER_CHUNK)):
                if self.stopped.is_set():
                    break
                core.update()
                self._throttle()
            if core.updates - last_publish >= cfg.publish_every_updates:
                self._publish_weights(core.weights_blob())
                last_publish = core.updates
            if core.updates - last_checkpoint >= cfg.checkpoint_every_updates:
                core.save_checkpoint()
                last_checkpoint = core.updates
            now = time.monotonic()
            if now - last_flush >= cfg.replay_flush_every_s:
                try:
                    core.flush_replay()
                except OSError as exc:
                    self._flush_failed(exc)
                last_flush = now
            if now - last_log >= cfg.log_every_s:
                updates = core.updates
                self._report((updates - window[1]) / max(now - window[0], 1e-9))
                window = (now, updates)
                last_log = now

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
        rate = self.config.max_updates_per_s
        if rate > 0:
            self._wake.wait(1.0 / rate)

    # ----------------------------------------------------------------------------- progress

    def write_progress(self, row: dict[str, Any]) -> None:
        """One row of progress.csv (and TensorBoard scalars when ``tensorboard``)."""
        if self._progress is None:
            out = Path(self.core.output_dir)
            self._progress = CsvLog(out / "progress.csv", PROGRESS_FIELDS, append=True)
            if self.config.tensorboard:
                self._scalars = ScalarWriter(out / "tb")
        self._progress.write(row)
        if self._scalars is not None:
            self._scalars.scalars("trainer", row, int(row["transitions"]),
                                  skip=("wall_time_s", "transitions"))
            self._scalars.flush()

    def close(self) -> None:
        """Close the progress files."""
        if self._progress is not None:
            self._progress.close()
        if self._scalars is not None:
            self._scalars.close()
