"""Serial kinematic chain from a URDF: forward kinematics, geometric Jacobian and damped
least-squares inverse kinematics (position, or position + top-down grasp orientation).

Numpy and plain Python only, so the same code runs in the simulator, the ROS policy node and
on a real arm. ``ik`` solves one target on Python floats (``_scalar``); ``ik_batch`` runs the same
iteration vectorised over many targets and restarts (the grasp reachability table, benchmarks).
Top-down solves of arms whose geometry has a closed form start from it (``_top_down``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from q_grasp.kinematics._scalar import ScalarChain, lm_scalar
from q_grasp.kinematics._top_down import TopDownSeeder
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


@dataclass
class IKBatchResult:
    """Outcome of KinematicChain.ik_batch: arrays over N targets; ``result(i)`` is the
    IKResult that ``ik`` returns for target i."""

    success: np.ndarray
    """(N,) bool: reached within pos_tol_m (and rot_tol_rad for top-down)."""
    q: np.ndarray
    """(N, n_joints) solutions (or best attempts), always within the joint limits."""
    pos_error_m: np.ndarray
    """(N,) distance (m) between reached and target positions."""
    rot_error_rad: np.ndarray
    """(N,) orientation error (rad); 0.0 for position-only IK."""
    iterations: np.ndarray
    """(N,) iterations over the attempts run; restarts run side by side here, so this can
    exceed what ``ik`` counts for the same target."""
    attempts: np.ndarray
    """(N,) starts tried (0 when the target was rejected before solving)."""
    yaw_rad: np.ndarray | None
    """(N,) grasp yaw achieved (the requested yaw or yaw + pi; NaN where not converged),
    None for position-only IK."""
    reason: np.ndarray
    """(N,) int8: 0 converged, 1 did not converge, 2 below min_z_m, 3 farther than the reach."""
    detail: np.ndarray
    """(N,) the target z (reason 2) or its distance (m) from the first joint (reason 3)."""
    max_reach_m: float
    restarts: int
    pos_tol_m: float
    rot_tol_rad: float
    min_z_m: float | None

    def __len__(self) -> int:
        return len(self.success)

    def result(self, i: int) -> IKResult:
        """Target i's outcome as the IKResult of ``KinematicChain.ik``, with its message."""
        reason, attempts = int(self.reason[i]), int(self.attempts[i])
        yaw = None if self.yaw_rad is None or not self.success[i] else float(self.yaw_rad[i])
        if reason == _IK_OK:
            message = f"converged after {attempts} start(s)"
        elif reason == _IK_BELOW_MIN_Z:
            message = (f"unreachable: target z {self.detail[i]:.4f} m is below min_z_m "
                       f"{self.min_z_m:.4f} m")
        elif reason == _IK_TOO_FAR:
            message = (f"unreachable: target is {self.detail[i]:.3f} m from the first joint, "
                       f"the chain reaches at most {self.max_reach_m:.3f} m")
        else:
            what = "position" if self.yaw_rad is None else "top-down pose"
            message = (f"did not converge: best {what} error {self.pos_error_m[i] * 1000:.2f} "
                       f"mm, {self.rot_error_rad[i]:.3f} rad after {self.restarts + 1} start(s) "
                       f"(tolerance {self.pos_tol_m * 1000:.2f} mm, {self.rot_tol_rad:.3f} "
                       "rad); the target is probably outside the reachable workspace or joint "
                       "limits")
        return IKResult(bool(self.success[i]), self.q[i].copy(), float(self.pos_error_m[i]),
                        float(self.rot_error_rad[i]), int(self.iterations[i]), message, yaw,
                        attempts)


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
        # The batched IK folds the base pose into the first joint's constant terms, and maps
        # joint indices to chain positions once.
        self._W0, self._W1, self._W2 = self._P0.copy(), self._P1.copy(), self._P2.copy()
        if n_mov:
            for W in (self._W0, self._W1, self._W2):
                W[0] = self.world_T_base @ W[0]
        self._chain_pos = np.argsort(self._qidx)
        self._scalar = ScalarChain(self.world_T_base, self._pre, axes, revolute, qidx,
                                   self._tail)

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

        self._no_frames = [False] * n
        self._lower_f, self._upper_f = self._lower.tolist(), self._upper.tolist()
        self._setups: dict[tuple[str, ...] | None, tuple] = {}
        T0, axes0, origins0, _ = self._forward(np.zeros(len(joint_names)))
        self._seeder = TopDownSeeder((T0, axes0, origins0), revolute, qidx, self._lower_f,
                                     self._upper_f)

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
        generator seeded with ``seed``, so results are deterministic. One solve runs on
        Python floats (``_scalar.lm_scalar``), which for a handful of joints beats numpy's
        per-call cost several times over.

        ``yaw_rad`` None: position only. Otherwise the ee frame's z axis must point straight
        down and its y axis (finger closing direction) along (cos yaw, sin yaw, 0); yaw and
        yaw + pi are the same grasp and both are tried; on an arm of a swing, three pitches
        and a roll (``_top_down``) the first attempt starts at the closed-form pose closest
        to q0, which usually needs no iteration. ``active_joints`` (names) may move,
        the others stay at q0. ``min_z_m`` rejects targets below that height (e.g. the table).
        Returns success False with a reason when the target is unreachable or not reached.
        ``ik_batch`` solves many targets at once with the same result per target (up to
        rounding).
        """
        target = np.asarray(target_pos, dtype=float)
        # One sum instead of an elementwise test: NaN and inf propagate.
        if target.shape != (3,) or not math.isfinite(target.sum()):
            raise ValueError(f"target_pos: expected 3 finite numbers (m), got {target_pos!r}")
        if yaw_rad is not None and not math.isfinite(yaw_rad):
            raise ValueError(f"yaw_rad: must be finite or None, got {yaw_rad}")
        q_start = self.default_q if q0 is None else self._check_q(q0, "q0")
        _check_ik_args(pos_tol_m, rot_tol_rad, max_iterations, restarts, min_z_m)
        active, act, want, col_of_active, lo, hi = self._active_setup(active_joints)
        dist = math.dist(target, self._first_joint_pos)
        if (min_z_m is not None and target[2] < min_z_m) or dist > self.max_reach_m + pos_tol_m:
            return self._ik_checked(target[None], None if yaw_rad is None else
                                    np.array([yaw_rad]), q_start[None], active, pos_tol_m,
                                    rot_tol_rad, max_iterations, restarts, seed,
                                    min_z_m).result(0)
        # On floats (lm_scalar: the iteration of _lm_batch without numpy's per-call cost),
        # attempt after attempt as ik_batch orders them.
        q_list = [min(max(v, a), b) for v, a, b in zip(q_start.tolist(), self._lower_f,
                                                         self._upper_f)]
        sc = self._scalar
        t = (float(target[0]), float(target[1]), float(target[2]))
        best = None
        iterations = 0
        draws = None
        for attempt in range(restarts + 1):
            start = list(q_list)
            if attempt > 0:
                if draws is None:
                    draws = np.random.default_rng(seed).uniform(
                        self._sample_lo[active], self._sample_hi[active],
                        size=(restarts, len(act))).tolist()
                for i, v in zip(act, draws[attempt - 1]):
                    start[i] = v
            seeds: list[tuple[list[float], float | None]] = [(start, None)]
            if yaw_rad is not None and attempt == 0:
                # From q0 both yaws, the likelier first (see _top_down_seeds).
                seeds = self._top_down_seeds(start, t, yaw_rad, act)
            elif yaw_rad is not None:
                # A random restart already varies the wrist: it tries only the yaw closer to
                # its start orientation, halving the cost of unreachable targets.
                R0 = sc.forward(start, self._no_frames)[1]
                flip = _top_down_angle(yaw_rad + math.pi, R0) < _top_down_angle(yaw_rad, R0)
                seeds = [(start, yaw_rad + math.pi if flip else yaw_rad)]
            for start, yaw in seeds:
                R_t = None if yaw is None else _top_down_cols(yaw)
                ok, q, pos_err, rot_err, its = lm_scalar(
                    sc, start, t, R_t, act, want, col_of_active, lo, hi, pos_tol_m,
                    rot_tol_rad, max_iterations, ROT_ERROR_WEIGHT_M_PER_RAD, _LAMBDA_INIT,
                    _LAMBDA_MIN, _LAMBDA_MAX, _MAX_STEP_RAD, _STALL_WINDOW, _STALL_RATIO)
                iterations += its
                if ok:
                    return IKResult(True, np.array(q), pos_err, rot_err, iterations,
                                    f"converged after {attempt + 1} start(s)", yaw,
                                    attempt + 1)
                score = pos_err + ROT_ERROR_WEIGHT_M_PER_RAD * rot_err
                if best is None or score < best[0]:
                    best = (score, q, pos_err, rot_err)
        assert best is not None
        out = self._new_result(1, yaw_rad is not None, restarts, pos_tol_m, rot_tol_rad, min_z_m)
        out.q[0], out.pos_error_m[0], out.rot_error_rad[0] = best[1], best[2], best[3]
        out.iterations[0], out.attempts[0], out.reason[0] = iterations, restarts + 1, \
            _IK_NOT_CONVERGED
        return out.result(0)

    def _top_down_seeds(self, start: list[float], target: tuple[float, float, float],
                        yaw: float, active: list[int]) -> list[tuple[list[float], float]]:
        """The first two attempts of a top-down solve from joints ``start``: [(joints, yaw)]
        for yaw and yaw + pi, the likelier first. Where ``_top_down.TopDownSeeder`` knows the
        arm, the joints are its closed-form pose and roll; otherwise both start at ``start``,
        the yaw closer to its orientation first."""
        q = self._seeder.pose(start, target, active)
        R = self._scalar.forward(q, self._no_frames)[1]
        seeds = self._seeder.rolls(q, R, yaw, active)
        if seeds:
            return seeds
        flip = _top_down_angle(yaw + math.pi, R) < _top_down_angle(yaw, R)
        return [(q, yaw + math.pi), (q, yaw)] if flip else [(q, yaw), (q, yaw + math.pi)]

    def ik_batch(
        self,
        target_pos: np.ndarray,
        *,
        yaw_rad: float | np.ndarray | None = None,
        q0: np.ndarray | None = None,
        active_joints: Sequence[str] | None = None,
        pos_tol_m: float = 1e-3,
        rot_tol_rad: float = 1e-2,
        max_iterations: int = 100,
        restarts: int = 10,
        seed: int = 0,
        min_z_m: float | None = None,
    ) -> IKBatchResult:
        """``ik`` for N targets ``target_pos`` (N, 3) at once, vectorised over targets and
        restarts: row i of the result is what ``ik(target_pos[i], ...)`` returns (the same
        iteration, starts and restarts from ``seed``; equal up to rounding). ``yaw_rad``:
        None, one yaw for all or (N,) yaws; ``q0``: None (default_q), one start (n_joints,)
        or one per target (N, n_joints)."""
        targets = np.asarray(target_pos, dtype=float)
        if targets.ndim != 2 or targets.shape[1] != 3:
            raise ValueError(f"target_pos: expected shape (N, 3) (m), got {targets.shape}")
        if not np.all(np.isfinite(targets)):
            raise ValueError("target_pos: targets must be finite numbers (m)")
        n = targets.shape[0]
        yaws = None
        if yaw_rad is not None:
            yaws = np.asarray(yaw_rad, dtype=float)
            if yaws.ndim == 0:
                yaws = np.full(n, float(yaws))
            if yaws.shape != (n,) or not np.all(np.isfinite(yaws)):
                raise ValueError(f"yaw_rad: expected None, one finite yaw or {n} finite yaws "
                                 f"(rad), got shape {yaws.shape}")
        if q0 is None:
            Q0 = np.tile(self.default_q, (n, 1))
        else:
            Q0 = np.asarray(q0, dtype=float)
            if Q0.ndim == 1:
                Q0 = np.tile(self._check_q(Q0, "q0"), (n, 1))
            if Q0.shape != (n, self.n_joints):
                raise ValueError(f"q0: expected shape ({self.n_joints},) or ({n}, "
                                 f"{self.n_joints}), got {Q0.shape}")
            if not np.all(np.isfinite(Q0)):
                raise ValueError("q0: joint positions must be finite")
        return self._ik_checked(targets, yaws, Q0, active_joints, pos_tol_m, rot_tol_rad,
                                max_iterations, restarts, seed, min_z_m)

    def _active_setup(self, active_joints: Sequence[str] | None) -> tuple:
        """What the float path of ``ik`` needs of ``active_joints`` (validated): (indices
        array, indices, which chain frames give Jacobian columns, each active joint's column
        among them, lower and upper limits), computed once per set of joints."""
        key = None if active_joints is None else tuple(active_joints)
        setup = self._setups.get(key)
        if setup is None:
            active = self._active_index(active_joints)
            want = [False] * len(self._pre)
            for i in active:
                want[self._chain_pos[i]] = True
            ranks = np.cumsum(want) - 1
            setup = (active, active.tolist(), want,
                     [int(ranks[self._chain_pos[i]]) for i in active],
                     self._lower[active].tolist(), self._upper[active].tolist())
            if len(self._setups) < _MAX_SETUPS:
                self._setups[key] = setup
        return setup

    def _active_index(self, active_joints: Sequence[str] | None) -> np.ndarray:
        if active_joints is None:
            return np.arange(self.n_joints)
        unknown = [j for j in active_joints if j not in self._joint_names]
        if unknown or not active_joints:
            raise ValueError(f"active_joints: must be a non-empty subset of "
                             f"{self._joint_names}, got {list(active_joints)}")
        return np.array(sorted({self._joint_names.index(j) for j in active_joints}))

    def _ik_checked(self, targets: np.ndarray, yaws: np.ndarray | None, Q0: np.ndarray,
                    active_joints, pos_tol_m: float, rot_tol_rad: float, max_iterations: int,
                    restarts: int, seed: int, min_z_m: float | None) -> IKBatchResult:
        """The IK of ``ik`` and ``ik_batch`` for validated targets (N, 3), yaws (N,) or None
        and starts (N, n)."""
        _check_ik_args(pos_tol_m, rot_tol_rad, max_iterations, restarts, min_z_m)
        active = (active_joints if isinstance(active_joints, np.ndarray)
                  else self._active_index(active_joints))
        n = targets.shape[0]
        Q_start = np.clip(Q0, self._lower, self._upper)
        out = self._new_result(n, yaws is not None, restarts, pos_tol_m, rot_tol_rad, min_z_m)
        out.q[:] = Q_start
        dist = np.linalg.norm(targets - self._first_joint_pos, axis=1)
        low = (targets[:, 2] < min_z_m) if min_z_m is not None else np.zeros(n, dtype=bool)
        far = ~low & (dist > self.max_reach_m + pos_tol_m)
        out.reason[low], out.detail[low] = _IK_BELOW_MIN_Z, targets[low, 2]
        out.reason[far], out.detail[far] = _IK_TOO_FAR, dist[far]
        skip = low | far
        if skip.any():
            p = self._fk_points(Q_start[skip])
            out.pos_error_m[skip] = np.linalg.norm(p - targets[skip], axis=1)
        todo = np.flatnonzero(~skip)
        if len(todo) == 0:
            return out
        out.reason[todo] = _IK_NOT_CONVERGED
        tol = (pos_tol_m, rot_tol_rad, max_iterations)
        # First attempt from q0; for a top-down pose both yaw and yaw + pi, the one closer to
        # the start orientation first (a wrist limit may block it).
        if yaws is None:
            rows_yaw = None
            rows_q = Q_start[todo]
            k0 = 1
        else:
            # The same seeds as ik, row by row (microseconds each, beside the solve).
            act = active.tolist()
            seeds = [s for q, t, y in zip(Q_start[todo].tolist(), targets[todo].tolist(),
                                          yaws[todo].tolist())
                     for s in self._top_down_seeds(q, tuple(t), y, act)]
            rows_q = np.array([q for q, _ in seeds])
            rows_yaw = np.array([y for _, y in seeds])
            k0 = 2
        self._ik_attempts(out, todo, rows_q, targets[todo], rows_yaw, k0, active, tol,
                          attempt_number=np.ones(k0, dtype=int))
        failed = todo[~out.success[todo]]
        if restarts > 0 and len(failed):
            self._ik_restarts(out, failed, Q_start[failed], targets[failed],
                              None if yaws is None else yaws[failed], active, tol, restarts, seed)
        if out.yaw_rad is not None:
            out.yaw_rad[~out.success] = np.nan
        return out

    def _new_result(self, n: int, top_down: bool, restarts: int, pos_tol_m: float,
                    rot_tol_rad: float, min_z_m: float | None) -> IKBatchResult:
        return IKBatchResult(
            success=np.zeros(n, dtype=bool), q=np.zeros((n, self.n_joints)),
            pos_error_m=np.zeros(n), rot_error_rad=np.zeros(n),
            iterations=np.zeros(n, dtype=int), attempts=np.zeros(n, dtype=int),
            yaw_rad=np.full(n, np.nan) if top_down else None,
            reason=np.zeros(n, dtype=np.int8), detail=np.zeros(n), max_reach_m=self.max_reach_m,
            restarts=restarts, pos_tol_m=pos_tol_m, rot_tol_rad=rot_tol_rad, min_z_m=min_z_m)

    def _ik_restarts(self, out: IKBatchResult, failed: np.ndarray, Q_start: np.ndarray,
                     targets: np.ndarray, yaws: np.ndarray | None, active: np.ndarray,
                     tol: tuple[float, float, int], restarts: int, seed: int) -> None:
        """The random restarts of targets ``failed`` (starts Q_start, targets, yaws: theirs),
        the same draws from ``seed`` for every target, in waves of _RESTART_WAVE restarts:
        a target leaves once it converged, so few restarts run beyond the one that wins."""
        rng = np.random.default_rng(seed)
        draws = rng.uniform(self._sample_lo[active], self._sample_hi[active],
                            size=(restarts, len(active)))
        left = np.arange(len(failed))
        first = 0
        while first < restarts:
            # Few rows cost a pass the same as one: then all the remaining restarts at once.
            k = restarts - first
            if len(left) * k > _SMALL_BATCH:
                k = min(_RESTART_WAVE, k)
            rows_q = np.repeat(Q_start[left], k, axis=0)
            rows_q[:, active] = np.tile(draws[first:first + k], (len(left), 1))
            rows_yaw = None
            if yaws is not None:
                # A random restart already varies the wrist: it tries only the closer yaw,
                # halving the cost of unreachable targets.
                y = np.repeat(yaws[left], k)
                flip = self._closer_yaw_is_flipped(self._fk_rotations(rows_q), y)
                rows_yaw = np.where(flip, y + math.pi, y)
            self._ik_attempts(out, failed[left], rows_q, targets[left], rows_yaw, k, active,
                              tol, attempt_number=np.arange(first + 2, first + k + 2))
            left = left[~out.success[failed[left]]]
            first += k
            if len(left) == 0:
                break

    def _closer_yaw_is_flipped(self, R0: np.ndarray, yaws: np.ndarray) -> np.ndarray:
        """Whether top-down yaw + pi is closer than yaw to orientations R0 (N, 3, 3)."""
        a = _rotation_angles(_top_down_rotations(yaws) @ R0.transpose(0, 2, 1))
        b = _rotation_angles(_top_down_rotations(yaws + math.pi) @ R0.transpose(0, 2, 1))
        return b < a

    def _ik_attempts(self, out: IKBatchResult, idx: np.ndarray, rows_q: np.ndarray,
                     targets: np.ndarray, rows_yaw: np.ndarray | None, k: int,
                     active: np.ndarray, tol: tuple[float, float, int],
                     attempt_number: np.ndarray) -> None:
        """Run k starts per target ``idx`` (rows_q (len(idx) * k, n), target-major) and merge
        them into ``out``: the first converged start in order wins; if none, the best."""
        R_t = None if rows_yaw is None else _top_down_rotations(rows_yaw)
        ok, Q, pos, rot, iters = self._lm_batch(rows_q, np.repeat(targets, k, axis=0), R_t,
                                                active, *tol, group=k)
        G = len(idx)
        ok, pos, rot, iters = (a.reshape(G, k) for a in (ok, pos, rot, iters))
        Q = Q.reshape(G, k, -1)
        score = pos + ROT_ERROR_WEIGHT_M_PER_RAD * rot
        won = ok.any(axis=1)
        pick = np.where(won, np.argmax(ok, axis=1), np.argmin(score, axis=1))
        g = np.arange(G)
        had = out.attempts[idx] > 0
        best_before = out.pos_error_m[idx] + ROT_ERROR_WEIGHT_M_PER_RAD * out.rot_error_rad[idx]
        # A failed target keeps an earlier attempt's best unless this round did strictly better.
        take = won | ~had | (score[g, pick] < best_before)
        sel = idx[take]
        out.q[sel] = Q[g, pick][take]
        out.pos_error_m[sel] = pos[g, pick][take]
        out.rot_error_rad[sel] = rot[g, pick][take]
        if out.yaw_rad is not None and rows_yaw is not None:
            out.yaw_rad[sel] = rows_yaw.reshape(G, k)[g, pick][take]
        out.success[idx[won]] = True
        out.reason[idx[won]] = _IK_OK
        out.iterations[idx] += iters.sum(axis=1)
        last = np.where(won, attempt_number[pick], attempt_number[-1])
        out.attempts[idx] = last

    def _fk_points(self, Q: np.ndarray) -> np.ndarray:
        """ee_link positions (N, 3) for joint vectors Q (N, n)."""
        return self._fk_frames(Q)[0][:, :3, 3]

    def _fk_rotations(self, Q: np.ndarray) -> np.ndarray:
        return self._fk_frames(Q)[0][:, :3, :3]

    def _fk_frames(self, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ee_link poses (B, 4, 4) and each movable joint's world frame (B, n, 4, 4)."""
        if not len(self._pre):
            T = self.world_T_base @ self._tail
            return np.broadcast_to(T, (len(Q), 4, 4)).copy(), np.empty((len(Q), 0, 4, 4))
        M = self._motions_world(Q)
        frames = np.empty_like(M)
        T = M[:, 0]
        frames[:, 0] = T
        for k in range(1, M.shape[1]):
            T = T @ M[:, k]
            frames[:, k] = T
        return T @ self._tail, frames

    def _motions_world(self, Q: np.ndarray) -> np.ndarray:
        """Like _motions for joint vectors Q (B, n), with the base pose folded into joint 0."""
        Qs = Q[:, self._qidx]
        a = np.sin(Qs)
        b = 1.0 - np.cos(Qs)
        if self._any_prismatic:
            a[:, self._prismatic] = Qs[:, self._prismatic]
            b[:, self._prismatic] = 0.0
        M = a[:, :, None, None] * self._W1
        M += self._W0
        M += b[:, :, None, None] * self._W2
        return M

    def _evaluate(self, Q: np.ndarray, targets: np.ndarray, R_t: np.ndarray | None,
                  cols: np.ndarray):
        """Error vectors (B, 3 or 6), position and rotation errors (B,) and the weighted
        Jacobian (B, 3 or 6, len(cols)) of the chain columns ``cols`` at joint vectors Q."""
        T, frames = self._fk_frames(Q)
        p = T[:, :3, 3]
        F = frames[:, cols]
        axes = (F[:, :, :3, :3] @ self._axes_local[cols])[..., 0]
        d = p[:, None, :] - F[:, :, :3, 3]
        lin = axes[..., _C1] * d[..., _C2] - axes[..., _C2] * d[..., _C1]
        e_pos = targets - p
        pos_err = np.sqrt(np.einsum("ij,ij->i", e_pos, e_pos))
        if self._any_prismatic:
            pris = self._prismatic[cols]
            lin[:, pris] = axes[:, pris]
            axes[:, pris] = 0.0
        if R_t is None:
            return e_pos, pos_err, np.zeros(len(Q)), lin.transpose(0, 2, 1)
        rv = _rotation_vectors(R_t @ T[:, :3, :3].transpose(0, 2, 1))
        rot_err = np.sqrt(np.einsum("ij,ij->i", rv, rv))
        e = np.concatenate([e_pos, ROT_ERROR_WEIGHT_M_PER_RAD * rv], axis=1)
        J = np.concatenate([lin, ROT_ERROR_WEIGHT_M_PER_RAD * axes], axis=2).transpose(0, 2, 1)
        return e, pos_err, rot_err, J

    def _lm_batch(self, Q: np.ndarray, targets: np.ndarray, R_t: np.ndarray | None,
                  active: np.ndarray, pos_tol: float, rot_tol: float, max_iterations: int,
                  group: int = 1):
        """Levenberg-Marquardt runs from each row of Q (B, n), vectorised over rows: (ok, Q,
        pos_err, rot_err, iterations), each (B, ...). Rows form consecutive groups of
        ``group`` starts of one target; a group stops once its first start (in order) that
        has not failed converges, as starting them one after the other would."""
        Q = Q.copy()
        B, n_act = Q.shape[0], len(active)
        cols = self._chain_pos[active]
        lo, hi = self._lower[active], self._upper[active]
        e, pos_err, rot_err, J = self._evaluate(Q, targets, R_t, cols)
        cost = np.einsum("ij,ij->i", e, e)
        lam = np.full(B, _LAMBDA_INIT)
        its = np.zeros(B, dtype=int)
        history = np.empty((B, max_iterations + 1))
        history[:, 0] = cost
        state = np.zeros(B, dtype=np.int8)  # _RUN, _DONE_OK, _DONE_FAIL, _STOPPED
        rows, m = e.shape[1], min(e.shape[1], n_act)
        joint_space = rows > n_act  # solve the smaller of J J^T and J^T J
        eye = np.eye(m)
        run = np.arange(B)
        while True:
            conv = (pos_err[run] <= pos_tol) & (rot_err[run] <= rot_tol)
            state[run[conv]] = _DONE_OK
            it = its[run]
            back = history[run, np.maximum(it - _STALL_WINDOW, 0)]
            # Creeping along a limit or into a local minimum: a fresh start is cheaper.
            stall = ~conv & (((it >= _STALL_WINDOW) & (cost[run] > _STALL_RATIO * back))
                             | (it >= max_iterations))
            state[run[stall]] = _DONE_FAIL
            if group > 1:
                self._stop_decided_groups(state, group)
            run = np.flatnonzero(state == _RUN)
            if len(run) == 0:
                break
            Jr, er, lr = J[run], e[run], lam[run]
            dq = _damped_step(Jr, er, lr, eye, joint_space)
            qa = Q[run][:, active]
            # Joints pinned at a limit and pushed further out are frozen for this step, so
            # the remaining joints solve for the whole error instead of stalling.
            blocked = ((qa <= lo) & (dq < 0.0)) | ((qa >= hi) & (dq > 0.0))
            nb = blocked.sum(axis=1)
            redo = np.flatnonzero((nb > 0) & (nb < n_act))
            if len(redo):
                Jf = Jr[redo] * ~blocked[redo][:, None, :]
                dq[redo] = _damped_step(Jf, er[redo], lr[redo], eye, joint_space)
            step = np.abs(dq).max(axis=1)
            dq *= np.minimum(1.0, _MAX_STEP_RAD / np.maximum(step, 1e-300))[:, None]
            Qn = Q[run]
            Qn[:, active] = np.clip(qa + dq, lo, hi)
            e_n, pos_n, rot_n, J_n = self._evaluate(Qn, targets[run],
                                                    None if R_t is None else R_t[run], cols)
            cost_n = np.einsum("ij,ij->i", e_n, e_n)
            better = cost_n < cost[run]
            acc = run[better]
            if len(acc):
                Q[acc], e[acc], J[acc] = Qn[better], e_n[better], J_n[better]
                pos_err[acc], rot_err[acc], cost[acc] = pos_n[better], rot_n[better], \
                    cost_n[better]
                lam[acc] = np.maximum(lam[acc] * 0.3, _LAMBDA_MIN)
                its[acc] += 1
                history[acc, its[acc]] = cost[acc]
            rej = run[~better]
            if len(rej):
                lam[rej] *= 10.0
                # No descent even with heavy damping: a local minimum or a limit stall.
                gone = rej[lam[rej] > _LAMBDA_MAX]
                state[gone] = _DONE_FAIL
                its[gone] += 1
            run = run[state[run] == _RUN]
        ok = state == _DONE_OK
        return ok, Q, pos_err, rot_err, its

    @staticmethod
    def _stop_decided_groups(state: np.ndarray, group: int) -> None:
        """Stop the remaining starts of groups whose outcome is known: the first start that
        has not failed converged."""
        S = state.reshape(-1, group)
        alive = S != _DONE_FAIL
        first = np.argmax(alive, axis=1)
        decided = S[np.arange(len(S)), first] == _DONE_OK
        S[decided[:, None] & (S == _RUN)] = _STOPPED


_RUN, _DONE_OK, _DONE_FAIL, _STOPPED = 0, 1, 2, 3
_MAX_SETUPS = 64
"""Sets of active joints whose ik set-up a chain keeps (callers use one or two)."""
_RESTART_WAVE = 2
"""Restarts per target run side by side in ik_batch (more waste work on a converged target,
fewer passes of the batch)."""
_SMALL_BATCH = 64
"""Rows up to which a numpy pass costs about the same however many there are."""


def _check_ik_args(pos_tol_m: float, rot_tol_rad: float, max_iterations: int, restarts: int,
                   min_z_m: float | None) -> None:
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


def _top_down_cols(yaw: float) -> list[float]:
    """top_down_rotation(yaw) as 9 floats, column-major (for lm_scalar)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return [-s, c, 0.0, c, s, 0.0, 0.0, 0.0, -1.0]


def _top_down_angle(yaw: float, R: list[float]) -> float:
    """Angle (rad) between top_down_rotation(yaw) and a rotation stored column-major."""
    Rt = _top_down_cols(yaw)
    trace = sum(a * b for a, b in zip(Rt, R))
    return math.acos(min(1.0, max(-1.0, (trace - 1.0) * 0.5)))
_C1 = np.array([1, 2, 0])
_C2 = np.array([2, 0, 1])
_IK_OK, _IK_NOT_CONVERGED, _IK_BELOW_MIN_Z, _IK_TOO_FAR = 0, 1, 2, 3


def _damped_step(J: np.ndarray, e: np.ndarray, lam: np.ndarray, eye: np.ndarray,
                 joint_space: bool) -> np.ndarray:
    """Damped least-squares steps J^T (J J^T + lam I)^-1 e (B, n) for Jacobians J (B, r, n),
    solved as (J^T J + lam I)^-1 J^T e when that system is the smaller one."""
    Jt = J.transpose(0, 2, 1)
    if joint_space:
        A = Jt @ J + lam[:, None, None] * eye
        return np.linalg.solve(A, (Jt @ e[:, :, None]))[..., 0]
    A = J @ Jt + lam[:, None, None] * eye
    return (Jt @ np.linalg.solve(A, e[:, :, None]))[..., 0]


def _top_down_rotations(yaws: np.ndarray) -> np.ndarray:
    """top_down_rotation for each of yaws (N,): (N, 3, 3)."""
    c, s = np.cos(yaws), np.sin(yaws)
    R = np.zeros((len(yaws), 3, 3))
    R[:, 0, 0], R[:, 0, 1] = -s, c
    R[:, 1, 0], R[:, 1, 1] = c, s
    R[:, 2, 2] = -1.0
    return R


def _rotation_angles(R: np.ndarray) -> np.ndarray:
    """Rotation angles (N,) of rotation matrices (N, 3, 3)."""
    tr = R[:, 0, 0] + R[:, 1, 1] + R[:, 2, 2]
    return np.arccos(np.clip((tr - 1.0) * 0.5, -1.0, 1.0))


def _rotation_vectors(R: np.ndarray) -> np.ndarray:
    """rotation_vector for each of R (N, 3, 3): (N, 3)."""
    angle = _rotation_angles(R)
    vee = np.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0],
                    R[:, 1, 0] - R[:, 0, 1]], axis=1)
    small = angle < 1e-6
    factor = np.where(small, 0.5, angle / (2.0 * np.sin(np.where(small, 1.0, angle))))
    out = factor[:, None] * vee
    near_pi = angle >= math.pi - 1e-3
    if near_pi.any():  # rare: the skew part vanishes, rotation_vector takes the other branch
        for i in np.flatnonzero(near_pi):
            out[i] = rotation_vector(R[i])
    return out
