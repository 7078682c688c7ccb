"""Start joints for top-down IK: the closed-form pose of arms built like most small ones.

The iterative solver moves each joint at most 0.4 rad per step, so from a home pose with the
tool pointing sideways a top-down grasp takes it half a dozen steps. Two parts of an arm are
recognised from the chain's geometry at zero joints:

* a last joint turning about the tool's z axis with the tool point on it (a roll): it turns
  only the grasp yaw, so it is set from the yaw;
* a first joint turning about the vertical (a swing) followed by three joints about parallel
  horizontal axes (pitches) with every link in the plane they turn in, then the roll: the
  pose is then a planar three-link problem with the tool pointing down, solved in closed form
  (two swing directions times two elbow branches; the one within the limits and closest to
  the start wins).

The solver then only polishes (or verifies) the start. Other arms keep their start joints.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

_TWO_PI = 2.0 * math.pi
_PARALLEL = 1e-9
"""Tolerance of the geometric tests (unit vectors; m for offsets)."""
_MIN_DOWN = 0.5
"""The roll seed applies when the tool's z axis is this close to vertical (|z_z|)."""


class _Planar(NamedTuple):
    """A swing + three pitches + roll arm, at zero joints (angles in the pitch plane, whose
    axes are u (horizontal) and world up)."""

    swing: int
    """Joint index of the swing."""
    swing_sign: float
    """+1 when the swing axis points up."""
    axis_x: float
    axis_y: float
    """Where the swing axis meets the ground plane (m, world)."""
    u_azimuth: float
    """World azimuth (rad) of the plane's u axis."""
    shoulder_u: float
    shoulder_z: float
    """The first pitch's origin: its distance from the swing axis along u, its height (m)."""
    pitches: tuple[int, int, int]
    pitch_signs: tuple[float, float, float]
    """Joint indices; +1 when the joint turns counter-clockwise in (u, up)."""
    upper_len: float
    upper_angle: float
    fore_len: float
    fore_angle: float
    """The links between the pitches: length (m) and angle in the plane."""
    hand: tuple[float, float]
    """From the last pitch to the tool point (m, in the plane)."""
    tool_z_angle: float
    """Angle of the tool's z axis in the plane."""


def wrap_angle(a: float) -> float:
    """Angle wrapped into [-pi, pi)."""
    return (a + math.pi) % _TWO_PI - math.pi


class TopDownSeeder:
    """The recognised parts of a chain (see the module doc) and the seeds they give."""

    def __init__(self, forward_zero, revolute: list[bool], qidx: list[int],
                 lower: list[float], upper: list[float]) -> None:
        """``forward_zero``: (ee pose (4, 4), joint world axes (n, 3), origins (n, 3)) at zero
        joints, in chain order; ``qidx``: each chain joint's index in joint vectors."""
        T, axes, origins = forward_zero
        n = len(revolute)
        self.lower, self.upper = lower, upper
        self.roll: tuple[int, float] | None = None
        """(joint index, +1 when the roll axis is the tool's +z, else -1)."""
        self.planar: _Planar | None = None
        z_tool, p_tool = T[:3, 2], T[:3, 3]
        if n >= 2 and revolute[-1]:
            along = float(axes[-1] @ z_tool)
            if (abs(abs(along) - 1.0) <= _PARALLEL
                    and np.linalg.norm(np.cross(p_tool - origins[-1], axes[-1])) <= _PARALLEL):
                self.roll = (qidx[-1], math.copysign(1.0, along))
        if self.roll is None or n != 5 or not all(revolute):
            return
        if abs(abs(axes[0][2]) - 1.0) > _PARALLEL:
            return
        h = axes[1]
        if abs(h[2]) > _PARALLEL:
            return
        signs = [float(axes[k] @ h) for k in (1, 2, 3)]
        if any(abs(abs(s) - 1.0) > _PARALLEL for s in signs):
            return
        # Every point that the pitches move, and the swing axis, in one plane normal to h.
        o0, o1 = origins[0], origins[1]
        off_plane = [float((P - o1) @ h) for P in (o0, origins[2], origins[3], p_tool)]
        if max(map(abs, off_plane)) > _PARALLEL or abs(float(z_tool @ h)) > _PARALLEL:
            return
        # In-plane axes (u, up) with u x up = h: a pitch turns its links by sign * q there.
        u = np.cross([0.0, 0.0, 1.0], h)

        def planar(v: np.ndarray) -> tuple[float, float]:
            return float(v @ u), float(v[2])

        l1, l2, l3 = (planar(origins[2] - o1), planar(origins[3] - origins[2]),
                      planar(p_tool - origins[3]))
        if min(math.hypot(*l1), math.hypot(*l2)) <= _PARALLEL:
            return  # two pitches on one axis: no two-link triangle
        self.planar = _Planar(
            qidx[0], math.copysign(1.0, axes[0][2]), float(o0[0]), float(o0[1]),
            math.atan2(u[1], u[0]), float((o1 - o0) @ u), float(o1[2]),
            (qidx[1], qidx[2], qidx[3]), tuple(math.copysign(1.0, s) for s in signs),
            math.hypot(*l1), math.atan2(l1[1], l1[0]), math.hypot(*l2), math.atan2(l2[1], l2[0]),
            l3, math.atan2(*planar(z_tool)[::-1]))

    def pose(self, start: list[float], target: tuple[float, float, float],
             active: list[int]) -> list[float]:
        """``start`` with the swing and pitches of the closed-form top-down pose at
        ``target``: of the up to four, the one needing the least clamping into the limits,
        then the closest to ``start``. Unchanged when the arm was not recognised or one of
        those joints is not ``active``."""
        if self.planar is None or not all(i in active for i in (self.planar.swing,
                                                                  *self.planar.pitches)):
            return start
        (swing, s0, ox, oy, u_az, c_u, o1_z, pitches, signs, L1, a1, L2, a2, l3,
         z_angle) = self.planar
        dx, dy = target[0] - ox, target[1] - oy
        r, az = math.hypot(dx, dy), math.atan2(dy, dx)
        # Tool z down, i.e. at -pi/2 in the plane: the pitches' sum is fixed.
        total = -0.5 * math.pi - z_angle
        ct, st = math.cos(total), math.sin(total)
        best = None
        for reach, turn in ((r, az - u_az), (-r, az - u_az + math.pi)):
            wx = reach - c_u - (ct * l3[0] - st * l3[1])
            wy = target[2] - o1_z - (st * l3[0] + ct * l3[1])
            c = (wx * wx + wy * wy - L1 * L1 - L2 * L2) / (2.0 * L1 * L2)
            c = min(1.0, max(-1.0, c))
            for elbow in (1.0, -1.0):
                g = elbow * math.acos(c)
                first = math.atan2(wy, wx) - math.atan2(L2 * math.sin(g), L1 + L2 * math.cos(g))
                phi1 = first - a1
                phi2 = g - (a2 - a1)
                angles = ((swing, s0 * turn), (pitches[0], signs[0] * phi1),
                          (pitches[1], signs[1] * phi2),
                          (pitches[2], signs[2] * (total - phi1 - phi2)))
                q = list(start)
                miss = move = 0.0
                for i, a in angles:
                    v, m = self._in_limits(i, a, start[i])
                    q[i] = v
                    miss += m
                    move += abs(v - start[i])
                if best is None or (miss, move) < best[0]:
                    best = ((miss, move), q)
        return best[1]

    def _in_limits(self, i: int, angle: float, near: float) -> tuple[float, float]:
        """(angle + 2 pi k within joint i's limits and closest to ``near``, clamped when none
        is; how far it was clamped)."""
        lo, hi = self.lower[i], self.upper[i]
        a = near + wrap_angle(angle - near)
        best = None
        for v in (a - _TWO_PI, a, a + _TWO_PI):
            c = min(max(v, lo), hi)
            key = (abs(c - v), abs(c - near))
            if best is None or key < best[0]:
                best = (key, c)
        return best[1], best[0][0]

    def rolls(self, q: list[float], R: list[float], yaw: float,
              active: list[int]) -> list[tuple[list[float], float]]:
        """[(joints, yaw)] for yaw and yaw + pi with the roll of ``q`` (tool rotation R,
        column-major) turned to each, the one within the limits and turning less first; []
        when the arm has no active roll or its tool is far from pointing down."""
        if self.roll is None or self.roll[0] not in active or abs(R[8]) < _MIN_DOWN:
            return []
        j, sign = self.roll
        # A turn of the roll by d turns the tool about its z axis, i.e. the grasp yaw by
        # +-d as that axis points up or down.
        sign = 1.0 if sign * R[8] > 0.0 else -1.0
        now = math.atan2(R[4], R[3])
        keys, seeds = [], []
        for y in (yaw, yaw + math.pi):
            v, miss = self._in_limits(j, q[j] + sign * wrap_angle(y - now), q[j])
            qc = list(q)
            qc[j] = v
            keys.append((miss, abs(v - q[j])))
            seeds.append((qc, y))
        return seeds[::-1] if keys[1] < keys[0] else seeds
