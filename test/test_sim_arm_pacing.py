"""sim_arm's physics loop (q_grasp.sim.arm_loop) iterated on a fake clock: a still world at
``still_real_time_factor`` lets many ticks pass per iteration while each stream keeps to its cap
per wall-clock second; a command ends the long wait of a still world at once; joint states report
a command taken up, a goal reached and fingers settled; a goal hold stands time still until the
next command. The fake clock moves only by the loop's own pacing waits, so every count is exact
whatever the machine's load."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest

from q_grasp.motion import Trajectory
from q_grasp.node_params.sim_arm import SimArmConfig
from q_grasp.sim.arm_loop import Messages, SimArmLoop
from q_grasp.sim.pacing import Pacer, WallClock


class FakeClock:
    """Wall time that passes only in waits; ``during_wait(timeout_s)`` runs at the start of
    each wait (a command arriving meanwhile)."""

    def __init__(self) -> None:
        self.t = 100.0
        self.during_wait: Callable[[float], None] | None = None

    def now(self) -> float:
        return self.t

    def wait(self, wake: threading.Event, timeout_s: float) -> bool:
        if self.during_wait is not None:
            self.during_wait(timeout_s)
        if wake.is_set():
            return True
        self.t += timeout_s
        return False


class Rig:
    """A SimArmLoop on a FakeClock with every message and count it produced."""

    def __init__(self, **overrides) -> None:
        cfg = SimArmConfig(**{"publish_clock": True, "camera_rate_hz": 0.0, **overrides})
        self.clock = FakeClock()
        self.sent: list[tuple[float, Messages]] = []  # (wall s, messages)
        self.counts: Counter[str] = Counter()
        self.loop = SimArmLoop(cfg, publish=lambda m: self.sent.append((self.clock.t, m)),
                               count=lambda name: self.counts.update([name]),
                               publish_clock=cfg.publish_clock, clock=self.clock)
        self.loop.spawn()

    def run_until(self, done: Callable[[], bool], max_iterations: int = 20000) -> None:
        for _ in range(max_iterations):
            if done():
                return
            self.loop.iteration()
        raise AssertionError("condition not reached")

    def run_for(self, wall_s: float) -> int:
        """Iterate for ``wall_s`` of fake wall time; the iterations it took."""
        end, n = self.clock.t + wall_s, 0
        while self.clock.t < end:
            self.loop.iteration()
            n += 1
            assert n < 100000, "the loop never waits"
        return n

    def settle(self) -> None:
        self.run_until(lambda: self.loop.skipping)

    def joint_states(self, since: int = 0) -> list[tuple[float, Messages]]:
        return [(w, m) for w, m in self.sent[since:] if m.joints is not None]

    def base_move(self, delta_rad: float, duration_s: float) -> Trajectory:
        target = self.loop.robot.home_positions.copy()
        target[0] += delta_rad
        names = tuple(self.loop.config.robot.arm_joint_names)
        return Trajectory(names, np.array([duration_s]), target[None, :])


def test_still_world_runs_at_its_own_factor_with_capped_streams() -> None:
    rig = Rig(real_time_factor=2.0, still_real_time_factor=40.0, max_publish_rate_hz=25.0,
              joint_state_rate_hz=60.0)
    rig.settle()
    rig.run_for(0.3)
    t0, skipped0, n0 = rig.loop.sim_time_s, rig.loop.ticks_skipped, len(rig.sent)
    rig.run_for(2.0)
    advanced = rig.loop.sim_time_s - t0
    # The still factor (40), not the moving one (2)...
    assert advanced / 2.0 == pytest.approx(40.0, rel=0.05)
    assert rig.loop.ticks_skipped - skipped0 >= 0.99 * advanced * rig.loop.config.tick_rate_hz
    # ...while joint states keep to 25 per wall-clock second (60 Hz of simulated time at
    # factor 40 would be 2,400 per second), each newer than the last.
    got = rig.joint_states(n0)
    assert 25 * 2.0 - 2 <= len(got) <= 25 * 2.0 + 1, len(got)
    stamps = [m.sim_time_s for _, m in got]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert rig.loop.skipping  # nothing woke physics meanwhile


def test_a_command_ends_the_wait_of_a_still_world_at_once() -> None:
    # At 0.2 Hz the still loop waits ~5 s between messages; a command must not wait for that.
    rig = Rig(real_time_factor=1.0, joint_state_rate_hz=0.2, clock_rate_hz=0.2)
    rig.settle()
    rig.run_for(0.5)
    waits: list[float] = []

    def command_arrives(timeout_s: float) -> None:
        waits.append(timeout_s)
        if len(waits) == 1:
            rig.loop.submit(rig.loop.arm, rig.base_move(0.2, 0.2))

    rig.clock.during_wait = command_arrives
    t0 = rig.clock.t
    rig.run_until(lambda: bool(waits))
    assert waits[0] > 1.0  # the long wait of a still world...
    assert rig.clock.t == t0  # ...ended when the command came
    rig.loop.iteration()
    assert not rig.loop.skipping and rig.loop.arm.active  # the next tick runs physics


@pytest.mark.parametrize("events", [True, False], ids=["events", "no_events"])
def test_joint_states_report_a_command_taken_up_and_its_goal_reached(events: bool) -> None:
    # The stream is due every 5 s; with joint_states_on_events the command's start and the
    # arm's arrival are reported on their ticks, before the joint state of the world at rest.
    rig = Rig(real_time_factor=1.0, joint_state_rate_hz=0.2, clock_rate_hz=0.2,
              joint_states_on_events=events)
    rig.settle()
    rig.run_for(0.5)
    move = rig.base_move(0.2, 0.2)
    n0, sent_s = len(rig.sent), rig.loop.sim_time_s
    rig.loop.submit(rig.loop.arm, move)
    rig.run_until(lambda: not rig.loop.skipping)
    rig.settle()
    got = rig.joint_states(n0)
    rest_stamp = got[-1][1].sim_time_s
    base = rig.loop.arm_columns[0]
    if events:
        assert len(got) == 3, got  # taken up, goal reached, at rest
        taken_up, arrived = got[0][1], got[1][1]
        assert taken_up.sim_time_s - sent_s <= 2.0 / rig.loop.config.tick_rate_hz + 1e-9
        goal = move.positions[0, 0]
        assert abs(arrived.joints[1][base] - goal) < rig.loop.config.motors.joint_tolerance_rad
        assert (taken_up.sim_time_s < arrived.sim_time_s
                < rest_stamp - rig.loop.config.still_time_s + 1e-6)
    else:
        assert len(got) == 1, got  # only the world at rest


@pytest.mark.parametrize("cap", [4.0, 0.0], ids=["capped", "uncapped"])
def test_camera_frames_of_a_moving_world_keep_to_their_wall_cap(cap: float) -> None:
    rig = Rig(real_time_factor=1.0, camera_rate_hz=60.0, camera_moving_max_rate_hz=cap)
    rig.settle()
    started, frames0 = rig.clock.t, rig.counts["camera_frames_while_moving"]
    rig.loop.submit(rig.loop.arm, rig.base_move(0.8, 1.0))
    rig.run_until(lambda: not rig.loop.skipping)
    rig.settle()
    moving_s = rig.clock.t - started
    frames = rig.counts["camera_frames_while_moving"] - frames0
    assert moving_s > 1.0
    if cap > 0:
        assert cap * moving_s - 1 <= frames <= cap * moving_s + 1, (frames, moving_s)
    else:  # 60 Hz of simulated time at real time: the cap above is what makes it fewer
        assert frames >= 55 * moving_s, (frames, moving_s)


def test_clock_keeps_to_its_own_wall_cap() -> None:
    rig = Rig(real_time_factor=2.0, still_real_time_factor=40.0, max_publish_rate_hz=50.0,
              clock_max_rate_hz=10.0, joint_state_rate_hz=60.0, clock_rate_hz=0.0)
    rig.settle()
    rig.run_for(0.5)
    n0 = len(rig.sent)
    rig.run_for(2.0)
    clocks = [m.sim_time_s for _, m in rig.sent[n0:] if m.clock]
    joints = rig.joint_states(n0)
    # /clock every tick of simulated time (120 Hz at factor 40) would be 4,800 a second; the
    # joint states keep to max_publish_rate_hz (50), /clock to its own 10.
    assert 10 * 2.0 - 1 <= len(clocks) <= 10 * 2.0 + 1, len(clocks)
    assert 50 * 2.0 - 2 <= len(joints) <= 50 * 2.0 + 1, len(joints)
    assert all(b > a for a, b in zip(clocks, clocks[1:]))


def test_still_world_frames_keep_to_their_cap() -> None:
    rig = Rig(real_time_factor=1.0, still_real_time_factor=40.0, max_publish_rate_hz=50.0,
              camera_rate_hz=60.0, camera_still_max_rate_hz=5.0)
    rig.settle()
    rig.run_for(0.5)
    n0, t0 = len(rig.sent), rig.loop.sim_time_s
    loops = rig.run_for(2.0)
    frames = sum(m.frame is not None for _, m in rig.sent[n0:])
    joints = len(rig.joint_states(n0))
    advanced = rig.loop.sim_time_s - t0
    # 60 Hz of simulated time at factor 40, capped at 50/s for the joint states, 5/s for frames
    assert 5 * 2.0 - 1 <= frames <= 5 * 2.0 + 1, frames
    assert joints >= 50 * 2.0 - 2, joints
    # ...and a frame held back by its cap is not due to the pacing, which waits until a stream
    # is: no more loop iterations than the caps let messages out (50 joint states, 50 clocks,
    # 5 frames per second), far below one per tick (4,800 per second)
    assert advanced / 2.0 == pytest.approx(40.0, rel=0.05)
    assert loops <= 1.1 * 2.0 * (50 + 50 + 5), loops
    assert rig.loop.skipping


def test_gripper_settle_report_is_one_a_ros_arm_may_take() -> None:
    # A RosArm counts gripper_min_settle_s from the first joint state after its command (the
    # "taken up" report). sim_arm's settle report must come no earlier than that after it, or
    # the policy waits for a later joint state (here the stream is due every 5 s).
    rig = Rig(real_time_factor=1.0, joint_state_rate_hz=0.2, clock_rate_hz=0.2)
    loop = rig.loop
    rig.settle()
    # The fingers' present positions: they stay where they are, still from the first tick.
    fingers = loop.robot.joint_states()[1][loop.gripper_columns]
    names = tuple(loop.config.robot.gripper_joint_names)
    n0 = len(rig.sent)
    loop.submit(loop.gripper, Trajectory(names, np.array([0.0]), fingers[None, :]))
    rig.run_until(lambda: len(rig.joint_states(n0)) >= 3)
    (_, taken_up), (_, settled), _ = rig.joint_states(n0)[:3]  # taken up, settled, at rest
    min_settle_s = loop.config.motors.gripper_min_steps * loop.sim.time_step_s
    tick_s = 1.0 / loop.config.tick_rate_hz
    assert (min_settle_s - 1e-6 <= settled.sim_time_s - taken_up.sim_time_s
            < min_settle_s + tick_s + 1e-6), (taken_up, settled)


@pytest.mark.parametrize("at_home", [True, False], ids=["hold_at_home", "no_hold_at_home"])
def test_goal_hold_stands_time_still_until_the_next_command(at_home: bool) -> None:
    # goal_hold_wall_s: after the joint state of a goal reached, simulated time waits for the
    # next command (up to 0.5 s of wall time here); one that comes meanwhile starts on the next
    # tick, so the policy's reaction took no simulated time. At the home pose it holds only
    # with goal_hold_at_home (a grasping policy waits for a camera frame there).
    rig = Rig(real_time_factor=1.0, joint_state_rate_hz=0.2, clock_rate_hz=0.2,
              goal_hold_wall_s=0.5, goal_hold_at_home=at_home)
    loop = rig.loop
    rig.settle()
    rig.run_for(0.3)
    holds: list[tuple[float, float]] = []  # (wall s, sim s) at each hold

    def policy_answers(timeout_s: float) -> None:
        if timeout_s == loop.config.goal_hold_wall_s:
            holds.append((rig.clock.t, loop.sim_time_s))
            if len(holds) == 1:  # the first goal: the policy sends the arm back home
                loop.submit(loop.arm, rig.base_move(0.0, 0.2))

    rig.clock.during_wait = policy_answers
    n0 = len(rig.sent)
    loop.submit(loop.arm, rig.base_move(0.2, 0.2))
    rig.run_until(lambda: len(rig.joint_states(n0)) >= 5)
    got = rig.joint_states(n0)[:5]  # taken up, goal, taken up, goal (home), at rest
    (goal_wall, goal), (taken_wall2, taken_up2) = got[1], got[2]
    (goal2_wall, goal2), (rest_wall, rest) = got[3], got[4]
    assert holds[0] == (pytest.approx(goal_wall), goal.sim_time_s)
    # The command that came within the hold was taken up on the next tick: no time passed.
    assert taken_up2.sim_time_s - goal.sim_time_s <= 1.0 / loop.config.tick_rate_hz + 1e-6
    assert taken_wall2 - goal_wall <= 1.0 / loop.config.tick_rate_hz + 1e-6  # not the 0.5 s
    # No command after the second goal: time goes on after the 0.5 s hold (none at home
    # without goal_hold_at_home) and the world comes to rest.
    assert rest.sim_time_s > goal2.sim_time_s
    if at_home:
        assert rest_wall - goal2_wall >= 0.5
    else:
        assert rest_wall - goal2_wall < 0.5
    assert rig.counts["goal_holds"] == (2 if at_home else 1)
    assert rig.counts["goal_hold_timeouts"] == (1 if at_home else 0)


def test_waking_ends_a_real_pacing_wait() -> None:
    """On the real clock, setting the wake event (a command, a parameter change) ends a pacing
    wait at once, however far off its due time."""
    wake = threading.Event()
    pacer = Pacer(WallClock(), wake)
    pacer.pace(0.0, 1e-3)  # anchors simulated time 0 at now
    sleeper = threading.Thread(target=pacer.pace, args=(1.0, 1e-3), daemon=True)
    sleeper.start()  # simulated second 1 at a factor of 1e-3: due in 1,000 s
    sleeper.join(timeout=0.2)
    assert sleeper.is_alive()
    wake.set()
    sleeper.join(timeout=10.0)
    assert not sleeper.is_alive()


def test_fast_time_without_a_message_cap_is_warned_of() -> None:
    assert SimArmConfig().uncapped_warning() == ""  # real time
    assert "set max_publish_rate_hz" in SimArmConfig(real_time_factor=0.0).uncapped_warning()
    assert "set max_publish_rate_hz" in SimArmConfig(still_real_time_factor=200.0
                                                     ).uncapped_warning()
    assert SimArmConfig(real_time_factor=0.0, max_publish_rate_hz=100.0).uncapped_warning() == ""


def test_the_rate_report_measures_the_real_time_factor_on_the_loops_clock() -> None:
    rig = Rig(real_time_factor=2.0, still_real_time_factor=40.0, max_publish_rate_hz=25.0)
    rig.loop.rate_report()  # the window starts now
    rig.loop.submit(rig.loop.arm, rig.base_move(0.5, 10.0))  # moving: paced at 2x
    rig.run_for(2.0)
    values, slow = rig.loop.rate_report()
    assert values["real_time_factor"] == pytest.approx(2.0, rel=0.05) and not slow
    assert values["real_time_factor_target"] == 2.0 and values["arm_trajectory_active"]
    rig.loop.reconfigure(SimArmConfig(publish_clock=True, camera_rate_hz=0.0,
                                      real_time_factor=5.0, max_publish_rate_hz=25.0))
    rig.clock.t += 1.0  # a second of wall time in which the loop did not run: too slow
    values, slow = rig.loop.rate_report()
    assert values["real_time_factor"] == 0.0 and slow


def test_clock_rate_is_decoupled_from_the_control_tick() -> None:
    """clock_rate_hz 40: /clock every 25 ms of simulated time while joint states (60 Hz by
    default) keep their own rate; the stamps in simulated time, whatever the machine's load."""
    rig = Rig(real_time_factor=3.0, clock_rate_hz=40.0)
    rig.run_for(0.5)
    n0 = len(rig.sent)
    rig.run_for(1.0)
    clock = np.diff([m.sim_time_s for _, m in rig.sent[n0:] if m.clock])
    joints = np.diff([m.sim_time_s for _, m in rig.joint_states(n0)])
    assert len(clock) >= 20 and len(joints) >= 20, (len(clock), len(joints))
    assert np.median(clock) == pytest.approx(1.0 / 40.0, abs=0.006)
    assert np.median(joints) == pytest.approx(1.0 / rig.loop.config.joint_state_rate_hz,
                                              abs=0.006)
    assert clock.min() > 0 and joints.min() > 0
