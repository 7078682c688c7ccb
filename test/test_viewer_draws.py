"""What the viewer draws for the policy's markers and the trainer's diagnostics, without ROS
or Rerun (markers as plain objects with visualization_msgs/Marker's fields)."""

from __future__ import annotations

from types import SimpleNamespace

from q_grasp.markers import ARROW, CUBE, SPHERE, TEXT_VIEW_FACING
from q_grasp.viewer import MarkerDraws, trainer_curves


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


def test_the_policys_markers_are_what_the_viewer_draws() -> None:
    from q_grasp.markers import policy_markers

    outcome = type("Outcome", (), {"success": True, "message": "lifted"})()
    specs = policy_markers(goal=[0.1, 0.0, 0.05], tolerance=0.02, ee=[0.2, 0.0, 0.1],
                           grasp=([0.15, 0.05, 0.02], 0.5), outcome=([0.15, 0.05, 0.02], outcome))
    assert [s.ns for s in specs] == ["goal", "end_effector", "grasp", "grasp_approach",
                                     "grasp_outcome"]
    draws = MarkerDraws()
    drawn = []
    for spec in specs:  # as the policy node fills visualization_msgs/Marker
        x, y, z, w = spec.quaternion
        msg = fields(ns=spec.ns, type=spec.kind, text=spec.text,
                     pose=fields(position=fields(x=spec.position[0], y=spec.position[1],
                                                 z=spec.position[2]),
                                 orientation=fields(x=x, y=y, z=z, w=w)),
                     scale=fields(x=spec.scale[0], y=spec.scale[1], z=spec.scale[2]),
                     color=fields(r=spec.rgba[0], g=spec.rgba[1], b=spec.rgba[2]),
                     points=[fields(x=p[0], y=p[1], z=p[2]) for p in spec.points])
        drawn += [method for method, _, _ in draws.draws(msg, 1.0)]
    assert drawn == ["points", "points", "box", "arrow", "points", "text"]
    arrow = specs[3]
    assert arrow.points[1] == (0.15, 0.05, 0.02) and arrow.points[0][2] > 0.02  # from above
    assert specs[0].scale[0] == 0.04 and specs[4].text == "success: lifted"
