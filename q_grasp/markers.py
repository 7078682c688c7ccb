"""What the policy draws for people (rviz, the Rerun viewer), without ROS: the Reacher's goal
and end effector, each grasp's pose, approach and outcome, as visualization_msgs/Marker
contents that the policy node publishes and the viewer reads back."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

ARROW, CUBE, SPHERE, TEXT_VIEW_FACING = 0, 1, 2, 9
"""visualization_msgs/Marker types the policy draws."""
APPROACH_M = 0.06
"""Length of the grasp's approach arrow, which ends at the grasp point from above."""


@dataclass
class MarkerSpec:
    """One marker: namespace, type, pose (position, yaw about z), size, colour, and the points
    of an arrow or the text of a label."""

    ns: str
    kind: int
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: tuple[float, float, float] = (0.01, 0.01, 0.01)
    rgba: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    yaw: float = 0.0
    points: tuple[tuple[float, float, float], ...] = ()
    text: str = ""

    @property
    def quaternion(self) -> tuple[float, float, float, float]:
        """Orientation (x, y, z, w): the yaw about the world's z axis."""
        return 0.0, 0.0, math.sin(self.yaw / 2.0), math.cos(self.yaw / 2.0)


def _xyz(point: Any) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in np.asarray(point, float)[:3])
    return x, y, z


def policy_markers(*, goal: Any = None, tolerance: float = 0.01, ee: Any = None,
                   grasp: tuple[Any, float] | None = None,
                   outcome: tuple[Any, Any] | None = None) -> list[MarkerSpec]:
    """The markers of a goal (a sphere as large as its success tolerance), the end effector,
    a grasp (point, yaw) and its outcome (point, GraspOutcome)."""
    markers = []
    if goal is not None:
        size = 2.0 * max(tolerance, 0.005)
        markers.append(MarkerSpec("goal", SPHERE, _xyz(goal), (size,) * 3, (0.1, 0.8, 0.2, 0.6)))
    if ee is not None:
        markers.append(MarkerSpec("end_effector", SPHERE, _xyz(ee), (0.01,) * 3,
                                  (0.2, 0.4, 1.0, 0.9)))
    if grasp is not None:
        point, yaw = _xyz(grasp[0]), grasp[1]
        # The bar lies along the finger closing direction (cos yaw, sin yaw, 0), the arrow
        # shows the top-down approach ending at the grasp point.
        markers.append(MarkerSpec("grasp", CUBE, point, (0.06, 0.006, 0.006),
                                  (1.0, 0.5, 0.0, 0.9), float(yaw)))
        above = (point[0], point[1], point[2] + APPROACH_M)
        markers.append(MarkerSpec("grasp_approach", ARROW, scale=(0.004, 0.008, 0.01),
                                  rgba=(1.0, 0.5, 0.0, 0.9), points=(above, point)))
    if outcome is not None:  # text over the grasp point: "success: ..." or "failure: ..."
        point, result = outcome
        markers.append(MarkerSpec(
            "grasp_outcome", TEXT_VIEW_FACING, _xyz(point), (0.02,) * 3,
            (0.1, 0.8, 0.2, 0.9) if result.success else (0.9, 0.1, 0.1, 0.9),
            text=f"{'success' if result.success else 'failure'}: {result.message}"))
    return markers
