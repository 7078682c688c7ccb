"""The ROS arm adapter's feedback without ROS (q_grasp.joint_feedback): joint states in, waits
measured in the arm's clock, restarts and stop requests out. States come from a feeder thread
that answers each wait, so no assertion depends on how fast the machine is."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from q_grasp.joint_feedback import (
    ArmRestartedError,
    ArmStoppedError,
    ArmTimeoutError,
    JointFeedback,
    RosArmConfig,
)

NAMES = ["a", "b"]


class Feeder:
    """Sends ``states`` (positions, stamp) one at a time, each once the wait has looked at the
    one before (the wait's predicate, wrapped by :meth:`watch`, says when)."""

    def __init__(self, feedback: JointFeedback, states: list[tuple[list[float], float]]) -> None:
        self.looked = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(feedback, states), daemon=True)
        self.thread.start()

    def _run(self, feedback: JointFeedback, states: list[tuple[list[float], float]]) -> None:
        for positions, stamp in states:
            self.looked.wait()
            self.looked.clear()
            feedback.update(NAMES, positions, [], stamp)

    def watch(self, done):
        def check() -> bool:
            self.looked.set()
            return done()
        return check


def test_updates_estimate_velocities_and_reject_bad_values() -> None:
    rejected = []
    feedback = JointFeedback(RosArmConfig(), reject=lambda *why: rejected.append(why[:2]))
    with pytest.raises(ArmTimeoutError, match=r"no joint state yet for \['a', 'b'\]"):
        feedback.read(NAMES)
    feedback.update(NAMES, [0.0, 1.0], [], 1.0)
    feedback.update(NAMES, [0.5, 1.0], [], 1.5)
    assert feedback.read(NAMES, velocities=True) == pytest.approx([1.0, 0.0])
    feedback.update(NAMES, [0.6, math.nan], [0.2, 0.0], 2.0)  # given velocities win
    assert feedback.read(NAMES) == pytest.approx([0.6, 1.0])
    assert feedback.read(["a"], velocities=True) == pytest.approx([0.2])
    feedback.update(NAMES, [0.0], [], 3.0)
    assert rejected == [("joint_states", "non_finite"), ("joint_states", "size_mismatch")]
    assert feedback.arm_time_s() == 2.0 and feedback.seq == 3


def test_wait_ends_on_arrival_or_at_the_arm_time_deadline() -> None:
    cfg = RosArmConfig()
    feedback = JointFeedback(cfg)
    feedback.update(NAMES, [0.0, 0.0], [0.0, 0.0], 10.0)
    target = np.array([1.0, 0.5])
    feeder = Feeder(feedback, [([0.5, 0.2], 10.1), ([1.0, 0.5], 10.2), ([1.0, 0.5], 10.3)])
    assert feedback.motion_wait(
        feeder.watch(lambda: feedback.arm_arrived(NAMES, target, 10.0)), 20.0)
    assert feedback.motion_end_s == pytest.approx(10.3)  # still only once it stopped moving
    # arrival is not judged before ``since_s``; the deadline is in arm time
    feeder = Feeder(feedback, [([1.0, 0.5], 10.4), ([1.0, 0.5], 10.6)])
    assert not feedback.wait(feeder.watch(lambda: feedback.arm_arrived(NAMES, target, 11.0)),
                             10.5)
    assert feedback.arm_time_s() == pytest.approx(10.6)


def test_the_arm_clock_going_back_and_a_stop_end_a_wait() -> None:
    warnings: list[str] = []
    stop = threading.Event()
    feedback = JointFeedback(RosArmConfig(), stop=stop, warn=warnings.append)
    feedback.update(NAMES, [0.0, 0.0], [], 5.0)
    restarts = feedback.restarts
    feeder = Feeder(feedback, [([0.0, 0.0], 0.1)])  # a restarted simulator
    with pytest.raises(ArmRestartedError, match="went back to 0.100 s"):
        feedback.wait(feeder.watch(lambda: False), 100.0)
    with pytest.raises(ArmRestartedError):
        feedback.check_restart(restarts)
    assert feedback.stamps_backwards == 1 and "went back in time" in warnings[0]
    stop.set()
    with pytest.raises(ArmStoppedError):
        feedback.wait(lambda: True, 100.0)


def test_fingers_done_at_the_target_or_stopped_on_an_object_after_moving() -> None:
    cfg = RosArmConfig()
    feedback = JointFeedback(cfg)
    start, target = np.array([0.02, 0.02]), np.array([0.0, 0.0])
    feedback.update(NAMES, [0.02, 0.02], [0.0, 0.0], 1.0)
    with feedback.cond:
        assert not feedback.fingers_done(NAMES, target, start, 0.5, must_move=True)  # not moved
        assert feedback.fingers_done(NAMES, target, start, 0.5, must_move=False)  # re-squeeze
        assert not feedback.fingers_done(NAMES, target, start, 2.0, must_move=False)  # too soon
    feedback.update(NAMES, [0.01, 0.01], [0.0, 0.0], 1.1)  # stopped on an object
    with feedback.cond:
        assert feedback.fingers_done(NAMES, target, start, 0.5, must_move=True)


def test_path_times_give_each_segment_its_largest_joint_distance_at_the_speed_limit() -> None:
    cfg = RosArmConfig(max_joint_velocity_rad_s=2.0, min_move_duration_s=0.05)
    points = [np.array([1.0, 0.0]), np.array([1.0, 0.01]), np.array([0.0, -1.0])]
    assert cfg.path_times_s(np.zeros(2), points) == pytest.approx([0.5, 0.55, 1.055])
