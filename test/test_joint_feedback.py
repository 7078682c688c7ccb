"""The ROS arm adapter without ROS (q_grasp.joint_feedback): joint states in, waits
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


class Controller:
    """A trajectory controller on the arm's clock for FeedbackArm, without ROS: a joint state
    every 0.02 s of arm time; a command takes effect ``delay_s`` of arm time after it was sent
    (it reaches the arm late) and is then followed linearly."""

    def __init__(self, robot, delay_s: float) -> None:
        self.names = [*robot.arm_joint_names, *robot.gripper_joint_names]
        self.q = np.r_[robot.home_positions, robot.gripper_open_positions].astype(float)
        self.delay_s, self.t = delay_s, 1.0
        self.pending = self.path = None
        self.taken_up = threading.Event()
        self.stop = threading.Event()
        self.feedback = None

    def send(self, controller, names, points, times_s) -> None:
        from q_grasp.motion import Trajectory

        columns = [self.names.index(n) for n in names]
        self.pending = (self.t + self.delay_s, columns,
                        Trajectory(tuple(names), np.array(times_s), np.array(points)))

    def run(self) -> None:
        while not self.stop.wait(0.0005):
            self.t += 0.02
            if self.pending is not None and self.t >= self.pending[0]:
                (_, columns, path), self.pending = self.pending, None
                self.path = (self.t, columns, path, self.q[columns].copy())
                self.taken_up.set()
            if self.path is not None:
                t0, columns, path, start = self.path
                self.q[columns] = path.sample(self.t - t0, start)
            self.feedback.update(self.names, self.q, [], self.t)


def test_a_move_that_reaches_the_arm_late_is_waited_for() -> None:
    """Arrival is judged once the joints leave where they were: an out-and-back path taken up
    1 s (arm time) late would otherwise "arrive" at once, its end being where the arm stands."""
    from q_grasp.joint_feedback import FeedbackArm
    from q_grasp.robot_config import RobotConfig

    robot = RobotConfig()
    config = RosArmConfig()
    controller = Controller(robot, delay_s=1.0)
    feedback = JointFeedback(config)
    controller.feedback = feedback
    arm = FeedbackArm(robot, config, feedback, controller.send)
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    try:
        assert feedback.wait_for_joints(controller.names, 10.0)
        home = arm.read_arm_joints()
        before = arm.arm_time_s()
        out = home + np.array([0.6, 0.0, 0.0, 0.0, 0.0])
        assert arm.move_arm_through([out, home])
        assert controller.taken_up.is_set()  # not before the arm even had the command
        assert arm.arm_time_s() - before >= 1.0 + 0.6  # the delay, then both 0.3 s segments
        np.testing.assert_allclose(arm.read_arm_joints(), home, atol=config.joint_tolerance_rad)
        assert arm.move_timeouts == 0
        assert arm.move_arm(home)  # already there: nothing to take up, arrives at once
    finally:
        controller.stop.set()
        thread.join(timeout=5.0)
