"""Serial kinematic chain from a URDF: forward kinematics, geometric Jacobian and damped
least-squares inverse kinematics (position, or position + top-down grasp orientation).

Numpy only, so the same code runs in the simulator, the ROS policy node and on a real arm.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from q_grasp.kinematics.urdf import MOVABLE_JOINT_TYPES, UrdfModel, parse_urdf

if TYPE_CHECKING:
    from q_grasp.robot_config import RobotConfig

ROT_ERROR_WEIGHT_M_PER_RAD = 0.1
"""Weight of orientation error against position error in IK: 0.01 rad counts like 1 mm."""
_MAX_STEP_RAD = 0.4
"""Largest joint change per IK iteration; keeps linearisation valid far from the target."""
_LAMBDA_INIT = 1e-4
_LAMBDA_MIN = 1e-7
_LAMBDA_MAX = 1e1
"""Bounds of the adaptive Levenberg-Marquardt damping (units m^2, as J J^T)."""
_STALL_WINDOW = 8
_STALL_RATIO = 0.5
"""An IK attempt stops when its squared error did not halve over the last 8 iterations."""
_CONTINUOUS_RANGE_RAD = math.pi
"""Continuous joints are sampled in [-pi, pi] for random IK restarts and random poses."""


@dataclass
class IKResult:
    """Outcome of KinematicChain.ik. ``success`` is never True with an error above tolerance."""

    success: bool
    """True when the pose was reached within pos_tol_m (and rot_tol_rad for top-down)."""
    q: np.ndarray
    """Joint positions (n_joints,) in joint_names order: the solution, or the best attempt."""
    pos_error_m: float
    """Euclidean distance (m) between the reached and target positions."""
    rot_error_rad: float
    """Angle (rad) between reached and target orientation; 0.0 for position-only IK."""
    iterations: int
    """Total iterations over all attempts."""
    message: str
    """Why it failed (empty-ish summary on success)."""
    yaw_rad: float | None = None
    """Grasp yaw actually achieved (the requested yaw or yaw + pi); None for position-only."""
    attempts: int = 0
    """Number of starts tried (first from q0, then random restarts)."""


def top_down_rotation(yaw_rad: float) -> np.ndarray:
    """World rotation (3, 3) of a top-down grasp frame: z down, y = (cos yaw, sin yaw, 0)."""
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    # Columns are the frame's x, y, z axes; x = y cross z keeps the frame right-handed.
    return np.array([[-s, c, 0.0], [c, s, 0.0], [0.0, 0.0, -1.0]])


def rotation_vector(R: np.ndarray) -> np.ndarray:
    """Axis-angle vector (3,) of a rotation matrix (the SO(3) logarithm), stable near 0 and pi."""
    cos_angle = min(1.0, max(-1.0, (R[0, 0] + R[1, 1] + R[2, 2] - 1.0) * 0.5))
    vee = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    angle = math.acos(cos_angle)
    if angle < 1e-6:
        return 0.5 * vee
    if angle < math.pi - 1e-3:
        return (angle / (2.0 * math.sin(angle))) * vee
    # Near pi the skew part vanishes; the axis comes from the symmetric part (R + I) / 2.
    B = 0.5 * (R + np.eye(3))
    i = int(np.argmax(np.diag(B)))
    axis = B[:, i] / math.sqrt(max(B[i, i], 1e-12))
    axis /= np.linalg.norm(axis)
    if axis @ vee < 0.0:
        axis = -axis
    return angle * axis


def _pose(position: Sequence[float], yaw_rad: float) -> np.ndarray:
    T = np.eye(4)
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    T[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    T[:3, 3] = position
    return T


class KinematicChain:
    """The joints from ``base_link`` to ``ee_link`` of a URDF, placed in the world.

    Joint vectors are ordered as ``joint_names`` (all movable joints on the path); fixed joints
    are folded into constant transforms. Poses are world-frame (4, 4) homogeneous matrices.
    """

    def __init__(
        self,
        model: UrdfModel,
        base_link: str,
        ee_link: str,
        joint_names: Sequence[str] | None = None,
        base_position: Sequence[float] = (0.0, 0.0, 0.0),
        base_yaw_rad: float = 0.0,
        default_q: Sequence[float] | None = None,
    ) -> None:
        for key, link in (("base_link", base_link), ("ee_link", ee_link)):
            if link not in model.links:
                raise ValueError(f"{key}: unknown link {link!r}; the URDF has {model.links}")
        base_position = np.asarray(base_position, dtype=float)
        if base_position.shape != (3,) or not np.all(np.isfinite(base_position)):
            raise ValueError(f"base_position: expected 3 finite numbers, got {base_position}")
        if not math.isfinite(base_yaw_rad):
            raise ValueError(f"base_yaw_rad: must be finite, got {base_yaw_rad}")
        self.model = model
        self.base_link = base_link
        self.ee_link = ee_link
        self.world_T_base = _pose(base_position, base_yaw_rad)

        path = self._path(base_link, ee_link)
        chain_names = [j.name for j in path if j.movable]
        if joint_names is None:
            joint_names = chain_names
        joint_names = list(joint_names)
        if sorted(joint_names) != sorted(chain_names) or len(set(joint_names)) != len(joint_names):
            raise ValueError(f"joint_names: must list each movable joint from {base_link!r} to "
                             f"{ee_link!r} once, i.e. a permutation of {chain_names}; "
                             f"got {joint_names}")
        self._joint_names = joint_names
        index = {name: i for i, name in enumerate(joint_names)}

        # Fold fixed joints into the constant transform in front of the next movable joint.
        # Joint k then contributes M_k(q) = pre_k @ motion(q) = P0_k + a_k P1_k + b_k P2_k with
        # (a, b) = (sin q, 1 - cos q) for revolute joints (Rodrigues) and (q, 0) for prismatic
        # ones, so a whole chain is evaluated with a few vectorised numpy calls.
        self._pre: list[np.ndarray] = []
        P1: list[np.ndarray] = []
        P2: list[np.ndarray] = []
        axes: list[np.ndarray] = []
        revolute: list[bool] = []
        qidx: list[int] = []
        self._link_frame: dict[str, tuple[int, np.ndarray]] = {base_link: (-1, np.eye(4))}
        acc = np.eye(4)
        for joint in path:
            if not joint.movable:
                acc = acc @ joint.origin
                self._link_frame[joint.child] = (len(self._pre) - 1, acc.copy())
                continue
            pre = acc @ joint.origin
            ax = joint.axis
            E1, E2 = np.zeros((4, 4)), np.zeros((4, 4))
            if joint.joint_type == "prismatic":
                E1[:3, 3] = ax
            else:
                K = np.array([[0.0, -ax[2], ax[1]], [ax[2], 0.0, -ax[0]], [-ax[1], ax[0], 0.0]])
                E1[:3, :3] = K
                E2[:3, :3] = K @ K
            self._pre.append(pre)
            P1.append(pre @ E1)
            P2.append(pre @ E2)
            axes.append(ax.copy())
            revolute.append(joint.joint_type != "prismatic")
            qidx.append(index[joint.name])
            acc = np.eye(4)
            self._link_frame[joint.child] = (len(self._pre) - 1, np.eye(4))
        self._tail = acc
        n_mov = len(self._pre)
        self._P0 = np.array(self._pre).reshape(n_mov, 4, 4)
        self._P1 = np.array(P1).reshape(n_mov, 4, 4)
        self._P2 = np.array(P2).reshape(n_mov, 4, 4)
        self._axes_local = np.array(axes).reshape(n_mov, 3, 1)
        self._revolute = np.array(revolute, dtype=bool)
        self._prismatic = ~self._revolute
        self._any_prismatic = bool(self._prismatic.any())
        self._qidx = np.array(qidx, dtype=int)

        by_name = {j.name: j for j in path}
        lower, upper = [], []
        for name in joint_names:
            joint = by_name[name]
            lower.append(joint.lower)
            upper.append(joint.upper)
        self._lower = np.array(lower)
        self._upper = np.array(upper)
        finite_lo = np.where(np.isfinite(self._lower), self._lower, -_CONTINUOUS_RANGE_RAD)
        finite_hi = np.where(np.isfinite(self._upper), self._upper, _CONTINUOUS_RANGE_RAD)
        self._sample_lo, self._sample_hi = finite_lo, finite_hi
        if default_q is None:
            default_q = np.clip(np.zeros(len(joint_names)), self._lower, self._upper)
        self.default_q = self._check_q(default_q, "default_q")

        # A cheap upper bound of how far the end effector can get from the first joint.
        n = len(self._pre)
        if n:
            self._first_joint_pos = (self.world_T_base @ self._pre[0])[:3, 3]
            reach = sum(float(np.linalg.norm(T[:3, 3])) for T in self._pre[1:])
            reach += float(np.linalg.norm(self._tail[:3, 3]))
            for j in np.flatnonzero(self._prismatic):
                reach += max(abs(finite_lo[self._qidx[j]]), abs(finite_hi[self._qidx[j]]))
            self.max_reach_m = reach
        else:
            self._first_joint_pos = self.world_T_base[:3, 3].copy()
            self.max_reach_m = float(np.linalg.norm(self._tail[:3, 3]))

    # ----------------------------------------------------------------------------- building
    @classmethod
    def from_urdf(
        cls,
        urdf_path: str | os.PathLike[str],
        base_link: str,
        ee_link: str,
        joint_names: Sequence[str] | None = None,
        base_position: Sequence[float] = (0.0, 0.0, 0.0),
        base_yaw_rad: float = 0.0,
        default_q: Sequence[float] | None = None,
    ) -> KinematicChain:
        """Parse ``urdf_path`` and build the chain from ``base_link`` to ``ee_link``."""
        return cls(parse_urdf(urdf_path), base_link, ee_link, joint_names,
                   base_position, base_yaw_rad, default_q)

    @classmethod
    def from_robot_config(cls, cfg: RobotConfig) -> KinematicChain:
        """Chain of a q_grasp RobotConfig: base_link to ee_link over arm_joint_names, with the
        base placed at base_position / base_yaw_rad and home_positions as the default q."""
        return cls.from_urdf(cfg.urdf_path, cfg.base_link, cfg.ee_link,
                             joint_names=cfg.arm_joint_names,
                             base_position=cfg.base_position, base_yaw_rad=cfg.base_yaw_rad,
                             default_q=cfg.home_positions)

    def _path(self, base_link: str, ee_link: str) -> list:
        path = []
        link = ee_link
        while link != base_link:
            joint = self.model.parent_joint(link)
            if joint is None:
                raise ValueError(f"ee_link: {ee_link!r} is not below base_link {base_link!r} "
                                 "in the URDF tree")
            if joint.joint_type not in MOVABLE_JOINT_TYPES and joint.joint_type != "fixed":
                raise ValueError(f"urdf: joint {joint.name!r} of type {joint.joint_type!r} "
                                 "is not supported in a kinematic chain")
            path.append(joint)
            link = joint.parent
        return path[::-1]

    # --------------------------------------------------------------------------- properties
    @property
    def joint_names(self) -> list[str]:
        """Movable joints of the chain, in the order of every joint vector."""
        return list(self._joint_names)

    @property
    def n_joints(self) -> int:
        """Number of movable joints."""
        return len(self._joint_names)

    @property
    def lower(self) -> np.ndarray:
        """Lower joint limits (rad or m); -inf for continuous joints."""
        return self._lower.copy()

    @property
    def upper(self) -> np.ndarray:
        """Upper joint limits (rad or m); +inf for continuous joints."""
        return self._upper.copy()

    @property
    def link_names(self) -> list[str]:
        """Links whose pose link_pose can compute (on the chain or fixed to it)."""
        return [link for link in self.model.links if self._resolve_link(link, False) is not None]

    def clip(self, q: np.ndarray) -> np.ndarray:
        """``q`` clamped into the joint limits."""
        return np.clip(q, self._lower, self._upper)

    def random_q(self, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
        """Uniform random joint vector(s) within limits ([-pi, pi] for continuous joints)."""
        shape = (self.n_joints,) if size is None else (size, self.n_joints)
        return rng.uniform(self._sample_lo, self._sample_hi, size=shape)

    # ------------------------------------------------------------------------ validation
    def _check_q(self, q, name: str = "q") -> np.ndarray:
        arr = np.asarray(q, dtype=float)
        if arr.shape != (self.n_joints,):
            raise ValueError(f"{name}: expected shape ({self.n_joints},) for joints "
                             f"{self._joint_names}, got shape {arr.shape}")
        # One sum instead of an elementwise test: NaN/inf propagate (fk sits in env.step).
        if not math.isfinite(arr.sum()):
            raise ValueError(f"{name}: joint positions must be finite, got {arr}")
        return arr

    def _resolve_link(self, link_name: str, strict: bool = True):
        """(movable frame index, fixed offset) of a link on the chain or rigidly fixed to it."""
        if link_name in self._link_frame:
            return self._link_frame[link_name]
        if link_name not in self.model.links:
            if strict:
                raise ValueError(f"link_name: unknown link {link_name!r}; links: "
                                 f"{self.model.links}")
            return None
        offset = np.eye(4)
        link = link_name
        while link not in self._link_frame:
            joint = self.model.parent_joint(link)
            if joint is None or joint.joint_type != "fixed":
                if strict:
                    why = ("it is not below base_link" if joint is None else
                           f"it moves with joint {joint.name!r}, which is not in the chain")
                    raise ValueError(f"link_name: cannot compute the pose of {link_name!r}: "
                                     f"{why}")
                return None
            offset = joint.origin @ offset
            link = joint.parent
        k, chain_offset = self._link_frame[link]
        return k, chain_offset @ offset

    # ---------------------------------------------------------------------------- forward
    def _motions(self, Qs: np.ndarray, n: int | None = None) -> np.ndarray:
        """M_k(q) of the first n movable joints for values Qs (..., n) in chain order:
        shape (..., n, 4, 4)."""
        n = len(self._pre) if n is None else n
        a = np.sin(Qs)
        b = 1.0 - np.cos(Qs)
        if self._any_prismatic:
            pris = self._prismatic[:n]
            a[..., pris] = Qs[..., pris]
            b[..., pris] = 0.0
        M = a[..., None, None] * self._P1[:n]
        M += self._P0[:n]
        M += b[..., None, None] * self._P2[:n]
        return M

    def _forward(self, q: np.ndarray, keep_frames: bool = False):
        """World pose of ee_link plus each movable joint's world axis and origin (for J)."""
        M = self._motions(q[self._qidx])
        frames = np.empty_like(M)
        T = self.world_T_base
        for k in range(M.shape[0]):
            T = T @ M[k]
            frames[k] = T
        # A joint's axis and origin do not move under the joint's own motion, so the frames
        # after the motion give them directly.
        axes = (frames[:, :3, :3] @ self._axes_local)[:, :, 0]
        origins = frames[:, :3, 3]
        all_frames = [self.world_T_base, *frames] if keep_frames else None
        return T @ self._tail, axes, origins, all_frames

    def fk(self, q: np.ndarray | Sequence[float]) -> np.ndarray:
        """World pose (4, 4) of ee_link at joint positions ``q`` (n_joints,)."""
        M = self._motions(self._check_q(q)[self._qidx])
        T = self.world_T_base
        for k in range(M.shape[0]):
            T = T @ M[k]
        return T @ self._tail

    def link_pose(self, q: np.ndarray | Sequence[float], link_name: str) -> np.ndarray:
        """World pose (4, 4) of ``link_name`` (on the chain, or fixed to a chain link)."""
        q = self._check_q(q)
        k, offset = self._resolve_link(link_name)
        frames = self._forward(q, keep_frames=True)[3]
        return frames[k + 1] @ offset

    def fk_batch(self, Q: np.ndarray, link_name: str | None = None) -> np.ndarray:
        """World poses (N, 4, 4) of ee_link (or ``link_name``) for joint vectors Q (N, n).

        Vectorised over N with numpy; equal to fk / link_pose in a loop.
        """
        return self.link_poses_batch(Q, [self.ee_link if link_name is None else link_name])[:, 0]

    def link_poses_batch(self, Q: np.ndarray, link_names: Sequence[str]) -> np.ndarray:
        """World poses (N, L, 4, 4) of several links for joint vectors Q (N, n), in one pass."""
        Q = np.asarray(Q, dtype=float)
        if Q.ndim != 2 or Q.shape[1] != self.n_joints:
            raise ValueError(f"Q: expected shape (N, {self.n_joints}), got {Q.shape}")
        if not np.all(np.isfinite(Q)):
            raise ValueError("Q: joint positions must be finite")
        wanted = [self._resolve_link(name) for name in link_names]
        stop = max((k for k, _ in wanted), default=-1)
        N = Q.shape[0]
        frames = [np.broadcast_to(self.world_T_base, (N, 4, 4))]
        if stop >= 0:
            M = self._motions(Q[:, self._qidx[: stop + 1]], stop + 1)
            for k in range(stop + 1):
                frames.append(frames[-1] @ M[:, k])
        out = np.empty((N, len(wanted), 4, 4))
        for i, (k, offset) in enumerate(wanted):
            out[:, i] = frames[k + 1] @ offset
        return out

    def _jacobian_from(self, T_ee: np.ndarray, axes: np.ndarray, origins: np.ndarray):
        d = T_ee[:3, 3] - origins
        lin = np.empty_like(axes)
        lin[:, 0] = axes[:, 1] * d[:, 2] - axes[:, 2] * d[:, 1]
        lin[:, 1] = axes[:, 2] * d[:, 0] - axes[:, 0] * d[:, 2]
        lin[:, 2] = axes[:, 0] * d[:, 1] - axes[:, 1] * d[:, 0]
        ang = axes.copy()
        if self._any_prismatic:
            lin[self._prismatic] = axes[self._prismatic]
            ang[self._prismatic] = 0.0
        J = np.empty((6, self.n_joints))
        J[:3, self._qidx] = lin.T
        J[3:, self._qidx] = ang.T
        return J

    def jacobian(self, q: np.ndarray | Sequence[float]) -> np.ndarray:
        """Geometric Jacobian (6, n) of ee_link in the world frame: rows linear velocity of the
        ee_link origin, then angular velocity; columns in joint_names order."""
        T, axes, origins, _ = self._forward(self._check_q(q))
        return self._jacobian_from(T, axes, origins)

    # ---------------------------------------------------------------------------- inverse
    def ik(
        self,
        target_pos: np.ndarray | Sequence[float],
        *,
        yaw_rad: float | None = None,
        q0: np.ndarray | Sequence[float] | None = None,
        active_joints: Sequence[str] | None = None,
        pos_tol_m: float = 1e-3,
        rot_tol_rad: float = 1e-2,
        max_iterations: int = 100,
        restarts: int = 10,
        seed: int = 0,
        min_z_m: float | None = None,
    ) -> IKResult:
        """Joint positions that put ee_link at ``target_pos`` (world, m).

        Damped least squares (Levenberg-Marquardt with adaptive damping), joints clamped to
        their limits every iteration. The first attempt starts at ``q0`` (default_q if None);
        if it fails, up to ``restarts`` more start from random joint vectors drawn by a
        generator seeded with ``seed``, so results are deterministic.

        ``yaw_rad`` None: position only. Otherwise the ee frame's z axis must point straight
        down and its y axis (finger closing direction) along (cos yaw, sin yaw, 0); yaw and
        yaw + pi are the same grasp and both are tried. ``active_joints`` (names) may move,
        the others stay at q0. ``min_z_m`` rejects targets below that height (e.g. the table).
        Returns success False with a reason when the target is unreachable or not reached.
        """
        target = np.asarray(target_pos, dtype=float)
        if target.shape != (3,) or not np.all(np.isfinite(target)):
            raise ValueError(f"target_pos: expected 3 finite numbers (m), got {target_pos!r}")
        if yaw_rad is not None and not math.isfinite(yaw_rad):
            raise ValueError(f"yaw_rad: must be finite or None, got {yaw_rad}")
        if not (pos_tol_m > 0.0):
            raise ValueError(f"pos_tol_m: must be > 0 m, got {pos_tol_m}")
        if not (rot_tol_rad > 0.0):
            raise ValueError(f"rot_tol_rad: must be > 0 rad, got {rot_tol_rad}")
        if max_iterations < 1:
            raise ValueError(f"max_iterations: must be >= 1, got {max_iterations}")
        if restarts < 0:
            raise ValueError(f"restarts: must be >= 0, got {restarts}")
        if min_z_m is not None and not math.isfinite(min_z_m):
            raise ValueError(f"min_z_m: must be finite or None, got {min_z_m}")
        q_start = self.clip(self.default_q if q0 is None else self._check_q(q0, "q0"))
        if active_joints is None:
            active = np.arange(self.n_joints)
        else:
            unknown = [j for j in active_joints if j not in self._joint_names]
            if unknown or not active_joints:
                raise ValueError(f"active_joints: must be a non-empty subset of "
                                 f"{self._joint_names}, got {list(active_joints)}")
            active = np.array(sorted({self._joint_names.index(j) for j in active_joints}))

        def fail(message: str, q: np.ndarray, pos_err: float, rot_err: float, iters: int,
                 attempts: int) -> IKResult:
            return IKResult(False, q, pos_err, rot_err, iters, message, None, attempts)

        if min_z_m is not None and target[2] < min_z_m:
            p = self.fk(q_start)[:3, 3]
            return fail(f"unreachable: target z {target[2]:.4f} m is below min_z_m "
                        f"{min_z_m:.4f} m", q_start, float(np.linalg.norm(p - target)), 0.0, 0, 0)
        dist = float(np.linalg.norm(target - self._first_joint_pos))
        if dist > self.max_reach_m + pos_tol_m:
            p = self.fk(q_start)[:3, 3]
            return fail(f"unreachable: target is {dist:.3f} m from the first joint, the chain "
                        f"reaches at most {self.max_reach_m:.3f} m", q_start,
                        float(np.linalg.norm(p - target)), 0.0, 0, 0)

        yaws: list[float | None] = [None] if yaw_rad is None else [yaw_rad, yaw_rad + math.pi]
        rng = np.random.default_rng(seed)
        best: tuple[float, np.ndarray, float, float] | None = None
        total_iters = 0
        for attempt in range(restarts + 1):
            start = q_start.copy()
            if attempt > 0:
                start[active] = rng.uniform(self._sample_lo[active], self._sample_hi[active])
            order = yaws
            if len(yaws) == 2:
                # Try the yaw closest to the start orientation first. From q0 the other one is
                # the fallback (a wrist limit may block the first); a random restart already
                # varies the wrist, so it tries only the closer one, halving the cost of
                # unreachable targets.
                R0 = self._forward(start)[0][:3, :3]
                errs = [np.linalg.norm(rotation_vector(top_down_rotation(y) @ R0.T))
                        for y in yaws]
                order = yaws if errs[0] <= errs[1] else yaws[::-1]
                if attempt > 0:
                    order = order[:1]
            for yaw in order:
                R_t = None if yaw is None else top_down_rotation(yaw)
                ok, q, pos_err, rot_err, iters = self._solve(
                    start, target, R_t, active, pos_tol_m, rot_tol_rad, max_iterations)
                total_iters += iters
                if ok:
                    return IKResult(True, q, pos_err, rot_err, total_iters,
                                    f"converged after {attempt + 1} start(s)", yaw, attempt + 1)
                score = pos_err + ROT_ERROR_WEIGHT_M_PER_RAD * rot_err
                if best is None or score < best[0]:
                    best = (score, q, pos_err, rot_err)
        assert best is not None
        _, q, pos_err, rot_err = best
        what = "position" if yaw_rad is None else "top-down pose"
        return fail(f"did not converge: best {what} error {pos_err * 1000:.2f} mm, "
                    f"{rot_err:.3f} rad after {restarts + 1} start(s) (tolerance "
                    f"{pos_tol_m * 1000:.2f} mm, {rot_tol_rad:.3f} rad); the target is probably "
                    "outside the reachable workspace or joint limits", q, pos_err, rot_err,
                    total_iters, restarts + 1)

    def _solve(self, q: np.ndarray, target: np.ndarray, R_t: np.ndarray | None,
               active: np.ndarray, pos_tol: float, rot_tol: float, max_iterations: int):
        """One Levenberg-Marquardt run from ``q``: (ok, q, pos_err, rot_err, iterations)."""
        lo, hi = self._lower[active], self._upper[active]
        w = ROT_ERROR_WEIGHT_M_PER_RAD
        rows = 3 if R_t is None else 6

        def evaluate(q: np.ndarray):
            T, axes, origins, _ = self._forward(q)
            e_pos = target - T[:3, 3]
            if R_t is None:
                return T, axes, origins, e_pos, float(np.linalg.norm(e_pos)), 0.0
            e_rot = rotation_vector(R_t @ T[:3, :3].T)
            e = np.concatenate([e_pos, w * e_rot])
            return T, axes, origins, e, float(np.linalg.norm(e_pos)), float(np.linalg.norm(e_rot))

        T, axes, origins, e, pos_err, rot_err = evaluate(q)
        cost = float(e @ e)
        lam = _LAMBDA_INIT
        eye = np.eye(rows)
        history = [cost]
        for it in range(max_iterations):
            if pos_err <= pos_tol and rot_err <= rot_tol:
                return True, q, pos_err, rot_err, it
            if it >= _STALL_WINDOW and cost > _STALL_RATIO * history[it - _STALL_WINDOW]:
                # Creeping along a limit or into a local minimum: a fresh start is cheaper.
                return False, q, pos_err, rot_err, it
            J = self._jacobian_from(T, axes, origins)[:rows, active]
            if rows == 6:
                J[3:] *= w
            # One SVD per iteration makes every damping retry below a few small products:
            # J^T (J J^T + lam I)^-1 e = V diag(s / (s^2 + lam)) U^T e.
            U, S, Vt = np.linalg.svd(J, full_matrices=False)
            Ute = U.T @ e
            while True:
                dq = Vt.T @ (S / (S * S + lam) * Ute)
                # Joints pinned at a limit and pushed further out are frozen for this step,
                # so the remaining joints solve for the whole error instead of stalling.
                qa = q[active]
                blocked = ((qa <= lo) & (dq < 0.0)) | ((qa >= hi) & (dq > 0.0))
                if blocked.any() and not blocked.all():
                    Jf = J.copy()
                    Jf[:, blocked] = 0.0
                    dq = Jf.T @ np.linalg.solve(Jf @ Jf.T + lam * eye, e)
                step = float(np.max(np.abs(dq)))
                if step > _MAX_STEP_RAD:
                    dq *= _MAX_STEP_RAD / step
                q_new = q.copy()
                q_new[active] = np.clip(qa + dq, lo, hi)
                T_n, axes_n, origins_n, e_n, pos_n, rot_n = evaluate(q_new)
                cost_n = float(e_n @ e_n)
                if cost_n < cost:
                    q, T, axes, origins, e, pos_err, rot_err, cost = (
                        q_new, T_n, axes_n, origins_n, e_n, pos_n, rot_n, cost_n)
                    lam = max(lam * 0.3, _LAMBDA_MIN)
                    history.append(cost)
                    break
                lam *= 10.0
                if lam > _LAMBDA_MAX:
                    # No descent even with heavy damping: a local minimum or a limit stall.
                    return False, q, pos_err, rot_err, it + 1
        ok = pos_err <= pos_tol and rot_err <= rot_tol
        return ok, q, pos_err, rot_err, max_iterations
