"""What the viewer draws for the policy's markers and the trainer's diagnostics, without ROS
or Rerun (markers as plain objects with visualization_msgs/Marker's fields)."""

from __future__ import annotations

from types import SimpleNamespace

from q_grasp.viewer import ARROW, CUBE, SPHERE, TEXT_VIEW_FACING, MarkerDraws, trainer_curves


def fields(**values) -> SimpleNamespace:
    return SimpleNamespace(**values)


def marker(ns: str, kind: int, xyz=(0.1, 0.2, 0.3), scale=(0.02, 0.02, 0.02), rgb=(1, 0.5, 0),
           points=(), text: str = "") -> SimpleNamespace:
    return fields(ns=ns, type=kind, pose=fields(position=fields(x=xyz[0], y=xyz[1], z=xyz[2]),
                                        orientation=fields(x=0.0, y=0.0, z=0.0, w=1.0)),
              scale=fields(x=scale[0], y=scale[1], z=scale[2]),
              color=fields(r=rgb[0], g=rgb[1], b=rgb[2]),
              points=[fields(x=p[0], y=p[1], z=p[2]) for p in points], text=text)


def test_each_policy_marker_becomes_its_drawing_and_repeats_are_skipped() -> None:
    draws = MarkerDraws()
    grasp = marker("grasp", CUBE, scale=(0.06, 0.006, 0.006))
    assert draws.draws(grasp, 1.0) == [
        ("box", ("world/grasp", [0.1, 0.2, 0.3], [0.03, 0.003, 0.003], [0.0, 0.0, 0.0, 1.0],
                 1.0, (255, 128, 0)), {})]
    assert draws.draws(grasp, 2.0) == []  # unchanged: Rerun keeps the last one
    approach = marker("grasp_approach", ARROW, points=((0, 0, 0.1), (0, 0, 0)))
    assert draws.draws(approach, 1.0)[0][0] == "arrow"
    goal = draws.draws(marker("goal", SPHERE, scale=(0.04,) * 3), 1.0)
    assert goal == [("points", ("world/goal", [0.1, 0.2, 0.3], 1.0),
                     dict(color=(255, 128, 0), radius=0.02))]
    outcome = marker("grasp_outcome", TEXT_VIEW_FACING, text="failure: slipped")
    for _ in range(2):  # every outcome is drawn, also the same twice
        (method, _, kwargs), (log, args, level) = draws.draws(outcome, 3.0)
        assert (method, kwargs["label"], log, args[1], level) == (
            "points", "failure: slipped", "text", "failure: slipped", dict(level="WARN"))
    assert draws.draws(marker("unknown", CUBE), 1.0) == []


def test_only_complete_trainer_statuses_give_learning_curves() -> None:
    values = {"transitions": "120", "loss": "0.5", "epsilon": "0.3", "other": "x"}
    assert trainer_curves("q_grasp/trainer", values) == (120, {"loss": 0.5, "epsilon": 0.3})
    assert trainer_curves("q_grasp/policy", values) is None
    assert trainer_curves("q_grasp/trainer", {"loss": "0.5"}) is None
    assert trainer_curves("q_grasp/trainer", {"transitions": "many"}) is None
