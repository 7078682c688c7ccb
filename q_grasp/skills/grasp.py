"""The top-down grasp primitive, written once against an ArmInterface and a KinematicChain:
IK -> move above -> descend -> close -> lift -> judge success from the gripper aperture (what a
real robot senses) -> release and go home. The simulator and the ROS policy node both run it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from q_grasp.config import check_each
from q_grasp.skills.arm_interface import ArmInterface

if TYPE_CHECKING:
    from q_grasp.kinematics import IKResult, KinematicChain


@dataclass
class GraspSkillConfig:
    """Heights, depths and thresholds of the grasp motion (metres, world frame, z up)."""

    pre_grasp_height_m: float = 0.045
    """Height of the pre-grasp pose above the grasp pose. It must exceed descend_depth_m + 12 mm
    (the fingertips reach 12 mm below the tool centre point) to clear the target's top; more
    is not always reachable: the NURO arm's top-down reach shrinks quickly with height."""
    descend_depth_m: float = 0.02
    """How far below the surface point seen at the grasp pixel the tool centre point goes:
    the finger pads then overlap the object's top ``descend_depth_m`` + 12 mm."""
    min_grasp_height_m: float = 0.015
    """Lowest tool-centre-point height; the NURO fingertips reach 12 mm below it, so 15 mm keeps
    them just off the table when the pixel shows the table or a flat object."""
    lift_height_m: float = 0.06
    """How far the grasp pose is lifted before success is judged."""
    aperture_threshold_m: float = 0.006
    """Success when the gripper is still open wider than this after lifting (an object between
    the pads); an empty gripper closes to ~0."""
    descend_waypoints: int = 3
    """IK waypoints on the way down, so the joint-space motion stays close to a vertical line
    and the open fingers do not sweep objects aside."""
    lift_waypoints: int = 2
    """IK waypoints on the way up. Lifting solves position-only IK (a held object may tilt),
    which reaches higher than a top-down pose at the edge of the workspace."""
    teleport_free_space: bool = True
    """Let a simulator jump to the pre-grasp pose and back home without physics (a real arm
    ignores this and moves)."""
    ik_pos_tol_m: float = 0.002
    """Position tolerance (m) of the IK solutions."""
    ik_rot_tol_rad: float = 0.02
    """Orientation tolerance (rad) of top-down IK solutions; 0.02 rad tilts the fingertips by
    under 1 mm, and accepting it extends the reachable workspace at its edges."""

    def __post_init__(self) -> None:
        check_each(self, ("pre_grasp_height_m", "lift_height_m", "aperture_threshold_m",
                          "ik_pos_tol_m", "ik_rot_tol_rad"), lambda v: v > 0.0, "must be > 0 m")
        if self.descend_depth_m < 0.0:
            raise ValueError(f"descend_depth_m: must be >= 0 m, got {self.descend_depth_m}")
        for name in ("descend_waypoints", "lift_waypoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")


@dataclass
class GraspOutcome:
    """What happened in one grasp attempt."""

    success: bool
    """An object was held after lifting, judged from the gripper aperture."""
    ik_success: bool
    """IK found joint targets for every pose of the motion (False: the arm did not move)."""
    aperture_m: float
    """Gripper aperture (m) after lifting (0.0 when IK failed)."""
    message: str
    """Human-readable summary (why it failed)."""
    grasp_position_m: np.ndarray = field(default_factory=lambda: np.zeros(3))
    """Tool-centre-point target (m) at the bottom of the motion."""
    yaw_rad: float = 0.0
    """Grasp yaw (rad) the IK solution achieved (the requested yaw or yaw + pi)."""
    reached_grasp_pose: bool = False
    """The arm arrived at the grasp pose (False when something blocked the descent)."""


def grasp_pose_height(surface_z_m: float, config: GraspSkillConfig) -> float:
    """Tool-centre-point height for a grasp at a surface point of height ``surface_z_m``."""
    return max(float(surface_z_m) - config.descend_depth_m, config.min_grasp_height_m)


def _solve_line(
    chain: KinematicChain,
    xy: np.ndarray,
    heights: list[float],
    yaw_rad: float | None,
    q0: np.ndarray,
    params: GraspSkillConfig,
) -> tuple[list[np.ndarray], IKResult | None]:
    """IK for a vertical line of poses (top-down, or position only when ``yaw_rad`` is None),
    each seeded with the previous solution so that the wrist does not flip between waypoints.
    Returns the solutions and the first failure, if any."""
    solutions: list[np.ndarray] = []
    q = q0
    for z in heights:
        result = chain.ik(np.array([xy[0], xy[1], z]), yaw_rad=yaw_rad, q0=q,
                          pos_tol_m=params.ik_pos_tol_m, rot_tol_rad=params.ik_rot_tol_rad)
        if not result.success:
            return solutions, result
        q = result.q
        solutions.append(q)
    return solutions, None


@dataclass
class GraspPlan:
    """Joint targets of one grasp motion, or why there are none (IK only, nothing moves)."""

    success: bool
    """IK found every pose of the motion."""
    message: str
    """Why planning failed (empty on success)."""
    grasp_position_m: np.ndarray
    """Tool-centre-point target (m) at the bottom of the motion."""
    yaw_rad: float
    """Grasp yaw (rad) the IK solution achieved (the requested yaw or yaw + pi)."""
    descend: list[np.ndarray] = field(default_factory=list)
    """Arm joint targets from the pre-grasp pose down to (excluding) the grasp pose."""
    grasp: np.ndarray | None = None
    """Arm joint targets of the grasp pose."""
    lift: list[np.ndarray] = field(default_factory=list)
    """Arm joint targets on the way up."""


def plan_grasp(
    chain: KinematicChain,
    position_m: np.ndarray | list[float],
    yaw_rad: float,
    params: GraspSkillConfig | None = None,
    q_start: np.ndarray | None = None,
) -> GraspPlan:
    """Solve the IK of a top-down grasp at surface point ``position_m`` with yaw ``yaw_rad``:
    grasp pose, then a vertical line of waypoints up to the pre-grasp height, then the lift.
    ``q_start`` seeds the first solve (the arm's current joints). Nothing moves."""
    params = params if params is not None else GraspSkillConfig()
    position = np.asarray(position_m, dtype=float).reshape(-1)
    if position.shape != (3,) or not np.all(np.isfinite(position)):
        raise ValueError(f"position_m: expected 3 finite numbers (m), got {position_m!r}")
    if not np.isfinite(yaw_rad):
        raise ValueError(f"yaw_rad: must be finite, got {yaw_rad}")
    z_grasp = grasp_pose_height(position[2], params)
    target = np.array([position[0], position[1], z_grasp])
    tol = params.ik_pos_tol_m
    first = chain.ik(target, yaw_rad=float(yaw_rad), q0=q_start, pos_tol_m=tol,
                     rot_tol_rad=params.ik_rot_tol_rad)
    if not first.success:
        return GraspPlan(False, f"IK failed for the grasp pose: {first.message}", target,
                         float(yaw_rad))
    yaw = float(first.yaw_rad if first.yaw_rad is not None else yaw_rad)
    z_pre = z_grasp + params.pre_grasp_height_m
    # Down: from the pre-grasp height to the grasp pose; solved from the grasp pose upwards so
    # that every waypoint stays on the grasp solution's branch.
    n_down = params.descend_waypoints
    down_heights = [z_pre - (z_pre - z_grasp) * k / n_down for k in range(n_down)]
    up, fail = _solve_line(chain, target, down_heights[::-1], yaw, first.q, params)
    if fail is not None:
        return GraspPlan(False, f"IK failed for the pre-grasp path: {fail.message}", target, yaw)
    n_up = params.lift_waypoints
    lift_heights = [z_grasp + params.lift_height_m * k / n_up for k in range(1, n_up + 1)]
    lift, fail = _solve_line(chain, target, lift_heights, None, first.q, params)
    if fail is not None:
        return GraspPlan(False, f"IK failed for the lift: {fail.message}", target, yaw)
    return GraspPlan(True, "", target, yaw, up[::-1], first.q, lift)


def plans_exist(
    chain: KinematicChain,
    positions_m: np.ndarray,
    yaw_rad: float | np.ndarray,
    params: GraspSkillConfig | None = None,
) -> np.ndarray:
    """Bool (N,): whether ``plan_grasp`` (from the chain's default joints) succeeds at each
    surface point of ``positions_m`` (N, 3) with yaw ``yaw_rad`` (one or (N,)): the same
    solves, vectorised over the points with ``KinematicChain.ik_batch``."""
    params = params if params is not None else GraspSkillConfig()
    points = np.asarray(positions_m, dtype=float)
    if points.ndim != 2 or points.shape[1] != 3 or not np.all(np.isfinite(points)):
        raise ValueError(f"positions_m: expected finite points (N, 3) (m), got shape "
                         f"{points.shape}")
    n = len(points)
    yaws = np.broadcast_to(np.asarray(yaw_rad, dtype=float), (n,))
    tol = {"pos_tol_m": params.ik_pos_tol_m, "rot_tol_rad": params.ik_rot_tol_rad}
    z_grasp = np.maximum(points[:, 2] - params.descend_depth_m, params.min_grasp_height_m)
    targets = np.column_stack([points[:, :2], z_grasp])
    first = chain.ik_batch(targets, yaw_rad=yaws, **tol)
    alive = first.success.copy()
    yaw_reached = first.yaw_rad
    z_pre = z_grasp + params.pre_grasp_height_m
    n_down = params.descend_waypoints
    # plan_grasp's two lines: up from the grasp pose to the pre-grasp height (top-down), then
    # the lift (position only), each level seeded with the level before (see _solve_line).
    for yaw_line, steps in ((True, [z_pre - (z_pre - z_grasp) * k / n_down
                                    for k in range(n_down - 1, -1, -1)]),
                            (False, [z_grasp + params.lift_height_m * k / params.lift_waypoints
                                     for k in range(1, params.lift_waypoints + 1)])):
        q = first.q
        for z in steps:
            idx = np.flatnonzero(alive)
            if len(idx) == 0:
                return alive
            level = np.column_stack([targets[idx, :2], z[idx]])
            res = chain.ik_batch(level, yaw_rad=yaw_reached[idx] if yaw_line else None,
                                 q0=q[idx], **tol)
            alive[idx] = res.success
            q = q.copy()
            q[idx] = res.q
    return alive


def execute_grasp(
    arm: ArmInterface,
    chain: KinematicChain,
    position_m: np.ndarray | list[float],
    yaw_rad: float,
    params: GraspSkillConfig | None = None,
    *,
    home_joints: np.ndarray | list[float] | None = None,
    after_lift: Callable[[GraspOutcome], bool | None] | None = None,
) -> GraspOutcome:
    """Grasp top-down at a world surface point ``position_m`` (the point seen at the chosen
    pixel, turned into world coordinates by the caller) with gripper yaw ``yaw_rad``.

    Motion: IK for grasp, pre-grasp and lift poses (``plan_grasp``) -> open -> move above
    (teleport allowed) -> descend (physics; the waypoints as one ``move_arm_through``) -> close
    -> lift (likewise) -> success = aperture > threshold -> ``after_lift(outcome)`` (e.g. a
    simulator records ground truth and removes the object) -> open -> home (``home_joints``;
    stays put if None). When ``after_lift`` returns True the motion ends there instead (the
    gripper holding, the arm lifted: a scene reset that follows puts both back). When IK fails
    nothing moves.
    """
    params = params if params is not None else GraspSkillConfig()
    q_start = np.asarray(arm.read_arm_joints(), dtype=float)
    plan = plan_grasp(chain, position_m, yaw_rad, params, q_start)
    if not plan.success:
        return GraspOutcome(False, False, 0.0, plan.message, plan.grasp_position_m,
                            plan.yaw_rad)
    arm.set_gripper(False)
    arm.move_arm(plan.descend[0], teleport=params.teleport_free_space)
    reached = bool(arm.move_arm_through([*plan.descend[1:], plan.grasp]))
    arm.set_gripper(True)
    arm.move_arm_through(plan.lift)
    # Squeeze again and wait for the fingers to settle before reading them: an object that
    # slipped out during the lift otherwise leaves the fingers mid-travel, reading "open".
    aperture = float(arm.set_gripper(True))
    success = aperture > params.aperture_threshold_m
    message = (
        f"holding an object (aperture {aperture * 1000:.1f} mm)" if success
        else f"empty gripper after lifting (aperture {aperture * 1000:.1f} mm)"
    )
    outcome = GraspOutcome(success, True, aperture, message, plan.grasp_position_m,
                           plan.yaw_rad, reached)
    if after_lift is not None and after_lift(outcome):
        return outcome
    arm.set_gripper(False)
    if home_joints is not None:
        arm.move_arm(np.asarray(home_joints, dtype=float), teleport=params.teleport_free_space)
    return outcome


def table_plane_depth(camera, height: int, width: int, table_z_m: float = 0.0) -> np.ndarray:
    """Depth (m along the optical axis) of the table plane at every pixel of a camera with
    ``pixel_to_world(u, v, depth)``: what a camera without depth assumes it sees (objects'
    height unknown). NaN where a pixel's ray misses the plane."""
    v, u = np.mgrid[0:height, 0:width]
    z0 = camera.pixel_to_world(u, v, 0.0)[..., 2]
    dz = camera.pixel_to_world(u, v, 1.0)[..., 2] - z0
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(dz < -1e-9, (table_z_m - z0) / dz, np.nan)
    return depth.astype(np.float32)

