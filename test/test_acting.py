"""The policy's acting core (q_grasp.tasks.acting) without ROS: Reacher episodes on a kinematic
arm, the transitions and statistics it hands its host, and the weights it takes."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch

from q_grasp.node_params.policy import policy_config_for_task
from q_grasp.tasks.acting import Acting
from q_grasp.tasks.load import load_task
from q_grasp.tasks.reach import KinematicArm
from q_grasp.wire.weights import WeightsMessage


class ClockedArm(KinematicArm):
    """A kinematic arm with the clock and decision mark acting reads."""

    first_command_monotonic = None
    motion_end_s = None

    def arm_time_s(self) -> float:
        return 0.0

    def mark_decision(self) -> None:
        pass


class View:
    """Records what acting hands its host."""

    def __init__(self) -> None:
        self.batches, self.reports, self.summaries, self.goals = [], [], [], []

    def count(self, key: str) -> None:
        pass

    def reset_scene(self) -> float | None:
        return None

    def can_reset(self) -> bool:
        return False

    def send(self, batch) -> None:
        self.batches.append(batch)

    def report(self, values, summary) -> None:
        self.reports.append(values)
        if summary is not None:
            self.summaries.append(summary)

    def show_goal(self, point, tolerance) -> None:
        self.goals.append((np.asarray(point), tolerance))

    def show_markers(self, **markers) -> None:
        pass

    def show_q_map(self, *args) -> None:
        pass

    def debug(self, line: str) -> None:
        pass


@pytest.fixture(scope="module")
def reacher_setup():
    return load_task("reacher", seed=0)


def make_acting(setup, **overrides) -> tuple[Acting, View, ClockedArm]:
    cfg = dataclasses.replace(policy_config_for_task("reacher"), **overrides)
    robot = setup.env_config.robot
    arm = ClockedArm(robot.arm_joint_names, np.asarray(robot.home_positions, float))
    view = View()
    return (Acting(setup, lambda: cfg, arm, view, actor_id="test", stop=threading.Event()),
            view, arm)


def test_a_reacher_episode_sends_every_transition_and_one_summary(reacher_setup) -> None:
    acting, view, _ = make_acting(reacher_setup, transition_batch_size=4)
    acting.reach_episode()
    steps = acting.stats.steps
    assert acting.stats.episodes == 1 and 1 <= steps <= reacher_setup.max_episode_steps
    assert sum(len(b) for b in view.batches) == steps  # the episode's end flushes the batch
    assert all(len(b) <= 4 for b in view.batches)
    assert [b.sequence for b in view.batches] == list(
        np.cumsum([0] + [len(b) for b in view.batches[:-1]]))
    assert len(view.reports) == steps and len(view.summaries) == 1
    assert view.batches[-1].terminated[-1] or view.batches[-1].truncated[-1]
    goal, tolerance = view.goals[0]
    assert goal.shape == (3,) and tolerance == acting.task.config.goal_tolerance_m


def test_evaluation_sends_nothing_and_uses_the_evaluation_epsilon(reacher_setup) -> None:
    acting, view, _ = make_acting(reacher_setup, train=False, eval_epsilon=0.0)
    acting.reach_episode()
    assert view.batches == [] and acting.stats.episodes == 1
    assert {r["epsilon"] for r in view.reports} == {0.0}


def test_a_goal_tolerance_parameter_overrides_the_experiments(reacher_setup) -> None:
    setup = load_task("reacher", seed=0)
    acting, _, _ = make_acting(setup, goal_tolerance_m=0.05)
    assert acting.task.config.goal_tolerance_m == 0.05


def test_weights_are_taken_in_version_order_within_a_run(reacher_setup) -> None:
    acting, _, _ = make_acting(reacher_setup)
    net = acting.actor.q_net
    zeros = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}

    def weights(version: int, run: str) -> WeightsMessage:
        return WeightsMessage(state_dict=zeros, version=version, net_config={}, run_id=run)

    assert acting.take_weights(weights(3, "a")) == ""
    assert acting.weights_version == 3
    assert all(float(v.abs().sum()) == 0.0 for v in net.state_dict().values())
    assert "not newer than the version 3" in acting.take_weights(weights(3, "a"))
    assert acting.take_weights(weights(1, "b")) == ""  # a new trainer run starts over
    assert (acting.weights_version, acting.weights_run) == (1, "b")


def test_the_oldest_silent_input_is_named(reacher_setup) -> None:
    acting, _, _ = make_acting(reacher_setup)
    assert acting.feedback_age(10.0, None) is None
    assert acting.feedback_age(10.0, 7.5) == ("joint states", 2.5)


def test_the_first_frame_after_a_reset_is_stamped_after_it(reacher_setup) -> None:
    # Joint states seen before a reset's answer may all predate it: the frame the episode
    # starts from must be stamped settle_time_s after the reset, not after them.
    acting, _, _ = make_acting(reacher_setup)
    asked = []

    class AskedError(Exception):
        pass

    def wait_for_frame(after_s: float):
        asked.append(after_s)
        raise AskedError

    acting.wait_for_frame = wait_for_frame
    for not_before_s in (5.0, -3.0):
        with pytest.raises(AskedError):
            acting.settled_frame(not_before_s=not_before_s)
    settle_s = acting.config().settle_time_s
    assert asked == [5.0 + settle_s, 0.0 + settle_s]  # the arm's clock reads 0.0


def test_a_grasp_evaluation_acts_with_the_evaluation_smoothing() -> None:
    setup = load_task("grasp", seed=0)  # config/grasp.yaml: 5x5 in training, 7x7 evaluating
    net = setup.q_net
    assert (net.config["select_smoothing_px"], net.config["eval_smoothing_px"]) == (5, 7)
    cfg = dataclasses.replace(policy_config_for_task("grasp"), train=True)
    robot = setup.env_config.robot
    arm = ClockedArm(robot.arm_joint_names, np.asarray(robot.home_positions, float))
    Acting(setup, lambda: cfg, arm, View(), actor_id="t", stop=threading.Event())
    assert net.config["select_smoothing_px"] == 5
    cfg = dataclasses.replace(cfg, train=False)
    Acting(setup, lambda: cfg, arm, View(), actor_id="e", stop=threading.Event())
    assert net.config["select_smoothing_px"] == 7
