"""The one arrival/settle check every arm judges its motions by (q_grasp.motion)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from q_grasp.motion import MotionTolerances
from q_grasp.sim.robot import SimRobotConfig


def test_arm_arrives_within_both_tolerances_only() -> None:
    tol = MotionTolerances(joint_tolerance_rad=0.01, velocity_tolerance_rad_s=0.05)
    target = np.array([0.5, -0.2])
    assert tol.arm_arrived(target + 0.009, [0.04, -0.04], target)
    assert not tol.arm_arrived(target + [0.0, 0.011], [0.0, 0.0], target)  # too far
    assert not tol.arm_arrived(target, [0.0, -0.06], target)  # still moving
    assert not tol.arm_arrived(target + [math.nan, 0.0], [0.0, 0.0], target)


def test_fingers_settle_below_their_speed_tolerance() -> None:
    tol = MotionTolerances(gripper_velocity_tolerance_m_s=0.002)
    assert tol.fingers_settled([0.0019, -0.001])
    assert not tol.fingers_settled([0.0, 0.003])
    assert not tol.fingers_settled([math.inf])  # a finger never reported


@pytest.mark.parametrize("name", ["max_joint_velocity_rad_s", "joint_tolerance_rad",
                                  "velocity_tolerance_rad_s", "gripper_velocity_tolerance_m_s"])
def test_tolerances_must_be_positive(name: str) -> None:
    from q_grasp.joint_feedback import RosArmConfig

    for cls in (SimRobotConfig, RosArmConfig):
        with pytest.raises(ValueError, match=f"{name}: must be > 0"):
            cls(**{name: 0.0})


def test_the_arms_share_one_set_of_tolerances() -> None:
    from q_grasp.joint_feedback import RosArmConfig

    fields = MotionTolerances.__dataclass_fields__
    assert "max_joint_velocity_rad_s" in fields  # the speed limit too, declared once
    for cls in (SimRobotConfig, RosArmConfig):
        assert issubclass(cls, MotionTolerances)
        assert not set(cls.__dict__.get("__annotations__", {})) & set(fields)  # no copies
        assert {n: f.default for n, f in fields.items()} == {
            n: cls.__dataclass_fields__[n].default for n in fields}


def test_a_trajectory_plays_as_timed_segments_from_where_the_joints_are() -> None:
    from q_grasp.motion import SegmentStream, Trajectory

    path = Trajectory(("a", "b"), np.array([0.5, 1.5]), np.array([[1.0, 0.0], [1.0, 2.0]]))
    stream = SegmentStream(path, np.zeros(2), t0=10.0)
    assert stream.next_due_s == 10.0 and stream.due(9.9) == []
    (target, duration), = stream.due(10.0)  # from the start to the first point
    assert target.tolist() == [1.0, 0.0] and duration == 0.5
    assert stream.next_due_s == 10.5 and not stream.done
    assert stream.setpoint(10.25).tolist() == [0.5, 0.0]
    (target, duration), = stream.due(11.0)
    assert target.tolist() == [1.0, 2.0] and duration == 1.0
    assert stream.done and stream.next_due_s == math.inf
    # a first point due at once is sent at once, with no ramp from the start, and the
    # segment after it starts with it
    now = SegmentStream(Trajectory(("a",), np.array([0.0, 1.0]), np.array([[2.0], [3.0]])),
                        np.zeros(1), t0=0.0)
    assert [(t.tolist(), d) for t, d in now.due(0.0)] == [([2.0], 0.0), ([3.0], 1.0)]
