"""The trainer's learning thread without ROS (q_grasp.learning.trainer_loop): a full queue drops
its oldest batches, and new parameter values end a throttle wait at once."""

from __future__ import annotations

import dataclasses
import threading

from q_grasp.learning.trainer_core import TrainerConfig
from q_grasp.learning.trainer_loop import TrainingLoop


def _loop(**config) -> TrainingLoop:
    # (no core: queueing and throttling do not touch it)
    return TrainingLoop(None, TrainerConfig(**config), publish_weights=lambda blob: None,
                        report=lambda rate: None, flush_failed=lambda exc: None)


def test_a_full_queue_drops_the_oldest_batches() -> None:
    loop = _loop(queue_size=2)
    assert loop.offer("a") == 0 and loop.offer("b") == 0
    assert loop.offer("c") == 1  # "a" made room
    assert [loop._queue.get_nowait() for _ in range(2)] == ["b", "c"]


def test_new_parameters_end_a_throttle_wait() -> None:
    loop = _loop(max_updates_per_s=1e-4)  # a pause of 10,000 s after each update
    waiter = threading.Thread(target=loop._throttle, daemon=True)
    waiter.start()
    waiter.join(timeout=0.2)
    assert waiter.is_alive()
    loop.reconfigure(dataclasses.replace(loop.config, max_updates_per_s=10.0))
    waiter.join(timeout=10.0)
    assert not waiter.is_alive()
