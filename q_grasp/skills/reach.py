"""Where the top-down grasp primitive can run: a reachability table of the arm, from its IK.

A grasp at a surface point runs three IK solves (``plan_grasp``: the grasp pose, the vertical
pre-grasp line above it and the lift). For an arm whose base turns about a vertical axis and
whose wrist rotates the gripper, whether that plan exists depends on the point's distance from
the base axis and its height, not on the direction or the gripper yaw (checked against
``plan_grasp`` in the tests). So ``TopDownReach`` stores, per grasp height, the interval of
radii where ``plan_grasp`` succeeds (found by bisection, once per arm and grasp settings), and
answers "which of these points can be grasped?" for a whole image in microseconds. A policy
that knows this never spends an attempt on a pixel the arm cannot reach, as a real robot's
controller would refuse such a target anyway.
"""

from __future__ import annotations

import math
import threading
from dataclasses import astuple, dataclass

import numpy as np

from q_grasp.kinematics import KinematicChain
from q_grasp.skills.grasp import GraspSkillConfig, grasp_pose_height, plans_exist

_RADIUS_SEARCH_M = (0.0, 0.6)
"""Radii scanned for a first reachable grasp at each height; both ends must be unreachable."""
_COARSE_STEP_M = 0.01
_BISECT_TOL_M = 5e-4


@dataclass(frozen=True)
class ReachTable:
    """Per tool-centre-point height, the radii (m, from the base axis) of feasible grasps."""

    heights_m: np.ndarray
    """Tool-centre-point heights (m, world z), ascending, evenly spaced."""
    r_min_m: np.ndarray
    """Smallest reachable radius at each height (NaN: nothing reachable)."""
    r_max_m: np.ndarray
    """Largest reachable radius at each height (NaN: nothing reachable)."""


class TopDownReach:
    """Which surface points a top-down grasp of ``plan_grasp`` can reach (see the module doc).

    ``margin_m`` shrinks every interval so that points within it of the edge count as
    unreachable (numerical IK is least reliable there, and the table interpolates linearly
    between heights). Above the highest reachable row nothing is reachable.
    """

    def __init__(self, chain: KinematicChain, params: GraspSkillConfig | None = None, *,
                 max_surface_height_m: float = 0.12, height_step_m: float = 0.005,
                 margin_m: float = 0.002) -> None:
        if not max_surface_height_m > 0.0:
            raise ValueError(f"max_surface_height_m: must be > 0 m, got {max_surface_height_m}")
        if not height_step_m > 0.0:
            raise ValueError(f"height_step_m: must be > 0 m, got {height_step_m}")
        if not margin_m >= 0.0:
            raise ValueError(f"margin_m: must be >= 0 m, got {margin_m}")
        self.chain = chain
        self.params = params if params is not None else GraspSkillConfig()
        self.margin_m = float(margin_m)
        base = chain.world_T_base
        self.base_xy = base[:2, 3].copy()
        self.base_yaw = math.atan2(base[1, 0], base[0, 0])
        self.base_limits = (float(chain.lower[0]), float(chain.upper[0]))
        z_lo = grasp_pose_height(0.0, self.params)
        z_hi = grasp_pose_height(max_surface_height_m, self.params)
        n = max(int(math.ceil((z_hi - z_lo) / height_step_m)) + 1, 2)
        self.table = _cached_table(chain, self.params, z_lo, z_lo + (n - 1) * height_step_m, n)

    def _radius_bounds(self, tcp_z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reachable radius interval at each tool-centre-point height (NaN where none)."""
        t = self.table
        step = t.heights_m[1] - t.heights_m[0]
        pos = (tcp_z - t.heights_m[0]) / step
        lo = np.clip(np.floor(pos).astype(int), 0, len(t.heights_m) - 1)
        hi = np.clip(np.ceil(pos).astype(int), 0, len(t.heights_m) - 1)
        w = np.clip(pos - lo, 0.0, 1.0)
        r_min = (1.0 - w) * t.r_min_m[lo] + w * t.r_min_m[hi]
        r_max = (1.0 - w) * t.r_max_m[lo] + w * t.r_max_m[hi]
        outside = (pos < -1e-6) | (pos > len(t.heights_m) - 1 + 1e-6)
        bad = outside | np.isnan(t.r_min_m[lo]) | np.isnan(t.r_min_m[hi])
        return np.where(bad, np.nan, r_min), np.where(bad, np.nan, r_max)

    def reachable(self, points_m: np.ndarray) -> np.ndarray:
        """Bool array (...) for surface points (..., 3) (world, m): can the grasp run there?"""
        pts = np.asarray(points_m, dtype=float)
        if pts.shape[-1:] != (3,):
            raise ValueError(f"points_m: expected shape (..., 3), got {pts.shape}")
        dx = pts[..., 0] - self.base_xy[0]
        dy = pts[..., 1] - self.base_xy[1]
        radius = np.hypot(dx, dy)
        tcp_z = np.maximum(pts[..., 2] - self.params.descend_depth_m,
                           self.params.min_grasp_height_m)
        r_min, r_max = self._radius_bounds(tcp_z)
        with np.errstate(invalid="ignore"):
            ok = (radius >= r_min + self.margin_m) & (radius <= r_max - self.margin_m)
        angle = _wrap(np.arctan2(dy, dx) - self.base_yaw)
        lo, hi = self.base_limits
        ok &= (angle >= lo) & (angle <= hi)
        return ok & np.isfinite(pts).all(axis=-1)

    def action_mask(self, points_m: np.ndarray, n_rotations: int) -> np.ndarray:
        """Flat bool mask (n_rotations * H * W,) of grasp actions (rotation-major, as
        TopDownGrasp encodes them) whose surface point (H, W, 3) is reachable; the yaw does
        not change reachability, so every rotation shares the pixel mask."""
        ok = self.reachable(points_m)
        if ok.ndim != 2:
            raise ValueError(f"points_m: expected an image of points (H, W, 3), got "
                             f"{np.shape(points_m)}")
        return np.broadcast_to(ok, (int(n_rotations), *ok.shape)).reshape(-1)


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


_CACHE: dict[tuple, ReachTable] = {}
_CACHE_LOCK = threading.Lock()


def _cached_table(chain: KinematicChain, params: GraspSkillConfig, z_lo: float, z_hi: float,
                  n: int) -> ReachTable:
    """The reach table of this arm and these grasp settings (computed once per process)."""
    # The arm's identity: its joints, limits, base pose and where two poses put the tool.
    probe = chain.clip(np.full(chain.n_joints, 0.3))
    key = (chain.model.name, tuple(chain.joint_names), tuple(chain.lower), tuple(chain.upper),
           chain.world_T_base.tobytes(), chain.fk(chain.default_q).tobytes(),
           chain.fk(probe).tobytes(), astuple(params), round(z_lo, 6), round(z_hi, 6), n)
    with _CACHE_LOCK:
        table = _CACHE.get(key)
        if table is None:
            table = build_reach_table(chain, params, np.linspace(z_lo, z_hi, n))
            _CACHE[key] = table
    return table


def build_reach_table(chain: KinematicChain, params: GraspSkillConfig,
                      heights_m: np.ndarray) -> ReachTable:
    """For each tool-centre-point height, the radius interval where ``plan_grasp`` succeeds,
    probed along the base's forward direction: a 1 cm scan of all heights and radii, then
    bisection of both edges to 0.5 mm, every step one vectorised batch of plans
    (``plans_exist``). Assumes the feasible radii form one interval."""
    heights = np.asarray(heights_m, dtype=float)
    base = chain.world_T_base
    forward = base[:3, 0].copy()
    forward[2] = 0.0
    forward /= np.linalg.norm(forward)
    origin = base[:3, 3]

    def feasible(radius: np.ndarray, tcp_z: np.ndarray) -> np.ndarray:
        # plans_exist takes surface points; pick the ones whose grasp height is tcp_z.
        points = origin + radius[:, None] * forward
        points[:, 2] = tcp_z + params.descend_depth_m
        return plans_exist(chain, points, 0.0, params)

    radii = np.arange(*_RADIUS_SEARCH_M, _COARSE_STEP_M)
    H, R = len(heights), len(radii)
    grid = feasible(np.tile(radii, H), np.repeat(heights, R)).reshape(H, R)
    # The reach only shrinks higher up (checked by the tests): stop at the first empty row.
    rows = np.flatnonzero(~grid.any(axis=1))
    n_ok = H if len(rows) == 0 else int(rows[0])
    r_min = np.full(H, np.nan)
    r_max = np.full(H, np.nan)
    if n_ok == 0:
        return ReachTable(heights, r_min, r_max)
    grid = grid[:n_ok]
    first = np.argmax(grid, axis=1)
    last = R - 1 - np.argmax(grid[:, ::-1], axis=1)
    # Brackets (inside, outside) of both edges of every row, bisected together.
    inside = np.concatenate([radii[first], radii[last]])
    outside = np.concatenate([np.maximum(radii[first] - _COARSE_STEP_M, _RADIUS_SEARCH_M[0]),
                              np.minimum(radii[last] + _COARSE_STEP_M, _RADIUS_SEARCH_M[1])])
    z = np.tile(heights[:n_ok], 2)
    while np.max(np.abs(outside - inside)) > _BISECT_TOL_M:
        mid = 0.5 * (inside + outside)
        ok = feasible(mid, z)
        inside = np.where(ok, mid, inside)
        outside = np.where(ok, outside, mid)
    r_min[:n_ok], r_max[:n_ok] = inside[:n_ok], inside[n_ok:]
    return ReachTable(heights, r_min, r_max)
