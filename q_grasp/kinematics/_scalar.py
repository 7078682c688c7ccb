"""One Levenberg-Marquardt IK run on Python floats, for single solves.

numpy spends microseconds on every call however small its arrays, and one iteration of a 5-joint
solve needs dozens of them; the same iteration on plain floats, with each joint's constant
transform and axis unpacked once (the usual URDF case of joints about x, y or z after an origin
without rotation costing a few multiplications), is several times faster. The algorithm is the
one of ``KinematicChain._lm_batch`` (batched over rows with numpy), step for step.
"""

from __future__ import annotations

import math
from operator import mul

import numpy as np

_EPS_IDENTITY = 1e-15


class ScalarChain:
    """A chain's joints unpacked into floats: forward kinematics, errors and Jacobian of one
    joint vector, and the damped least-squares iteration on top of them."""

    def __init__(self, world_T_base: np.ndarray, pre: list[np.ndarray], axes: list[np.ndarray],
                 revolute: list[bool], qidx: list[int], tail: np.ndarray) -> None:
        self.base_R = _cols(world_T_base)
        self.base_t = [float(v) for v in world_T_base[:3, 3]]
        self.joints = []
        for P, axis, rev, qi in zip(pre, axes, revolute, qidx):
            R = P[:3, :3]
            rot = None if np.all(np.abs(R - np.eye(3)) <= _EPS_IDENTITY) else _cols(P)
            aligned = [i for i in range(3) if abs(abs(axis[i]) - 1.0) <= _EPS_IDENTITY]
            a_idx = aligned[0] if aligned else -1
            sign = float(np.sign(axis[a_idx])) if aligned else 1.0
            # Offsets of the two columns a turn about coordinate axis a_idx mixes.
            j, k = (3 * ((a_idx + 1) % 3), 3 * ((a_idx + 2) % 3)) if aligned else (0, 0)
            self.joints.append((rot, [float(v) for v in P[:3, 3]], a_idx, sign, j, k,
                                [float(v) for v in axis], bool(rev), int(qi)))
        self.tail_rot = None if np.all(np.abs(tail[:3, :3] - np.eye(3)) <= _EPS_IDENTITY) \
            else _cols(tail)
        self.tail_t = [float(v) for v in tail[:3, 3]]

    def forward(self, q: list[float], want: list[bool]):
        """(position, rotation (column-major 9), [(axis, origin, revolute)] of the joints
        flagged in ``want`` (chain order))."""
        R = list(self.base_R)
        tx, ty, tz = self.base_t
        frames = []
        for (rot, pt, a_idx, sign, j, k, axis, rev, qi), w in zip(self.joints, want):
            # F <- F @ pre: translation first (uses the old rotation), then rotation.
            px, py, pz = pt
            tx, ty, tz = (tx + R[0] * px + R[3] * py + R[6] * pz,
                          ty + R[1] * px + R[4] * py + R[7] * pz,
                          tz + R[2] * px + R[5] * py + R[8] * pz)
            if rot is not None:
                R = _mul_cols(R, rot)
            q_k = q[qi]
            if rev:
                if a_idx >= 0:
                    # About a coordinate axis i: columns j, k = i+1, i+2 (cyclic) turn.
                    c, s = math.cos(sign * q_k), math.sin(sign * q_k)
                    x0, y0, z0, x1, y1, z1 = R[j], R[j + 1], R[j + 2], R[k], R[k + 1], R[k + 2]
                    R[j], R[j + 1], R[j + 2] = c * x0 + s * x1, c * y0 + s * y1, c * z0 + s * z1
                    R[k], R[k + 1], R[k + 2] = c * x1 - s * x0, c * y1 - s * y0, c * z1 - s * z0
                    if w:
                        i = 3 * a_idx
                        frames.append(((sign * R[i], sign * R[i + 1], sign * R[i + 2]),
                                       (tx, ty, tz), True))
                else:
                    if w:
                        frames.append((_rotate(R, axis), (tx, ty, tz), True))
                    R = _mul_cols(R, _cols(_rodrigues(axis, q_k)))
            else:
                wx, wy, wz = _rotate(R, axis)
                if w:
                    frames.append(((wx, wy, wz), (tx, ty, tz), False))
                tx, ty, tz = tx + q_k * wx, ty + q_k * wy, tz + q_k * wz
        px, py, pz = self.tail_t
        p = (tx + R[0] * px + R[3] * py + R[6] * pz, ty + R[1] * px + R[4] * py + R[7] * pz,
             tz + R[2] * px + R[5] * py + R[8] * pz)
        if self.tail_rot is not None:
            R = _mul_cols(R, self.tail_rot)
        return p, R, frames


def lm_scalar(sc: ScalarChain, q: list[float], target: tuple[float, float, float],
              R_t: list[float] | None, active: list[int], cols_want: list[bool],
              col_of_active: list[int], lo: list[float], hi: list[float], pos_tol: float,
              rot_tol: float, max_iterations: int, weight: float, lam_init: float,
              lam_min: float, lam_max: float, max_step: float, stall_window: int,
              stall_ratio: float):
    """One Levenberg-Marquardt run from ``q``: (ok, q, pos_err, rot_err, iterations)."""
    na = len(active)
    top_down = R_t is not None

    def evaluate(q):
        p, R, frames = sc.forward(q, cols_want)
        ex, ey, ez = target[0] - p[0], target[1] - p[1], target[2] - p[2]
        pos_err = math.sqrt(ex * ex + ey * ey + ez * ez)
        # Jacobian columns (active joints, in active order): rows x, y, z (, weighted w).
        cols = []
        for f in col_of_active:
            (wx, wy, wz), (ox, oy, oz), rev = frames[f]
            if rev:
                dx, dy, dz = p[0] - ox, p[1] - oy, p[2] - oz
                col = [wy * dz - wz * dy, wz * dx - wx * dz, wx * dy - wy * dx]
                if top_down:
                    col += [weight * wx, weight * wy, weight * wz]
            else:
                col = [wx, wy, wz] + ([0.0, 0.0, 0.0] if top_down else [])
            cols.append(col)
        if not top_down:
            return [ex, ey, ez], pos_err, 0.0, cols
        rv = _rotation_vector_cols(R_t, R)
        rot_err = math.sqrt(rv[0] * rv[0] + rv[1] * rv[1] + rv[2] * rv[2])
        return ([ex, ey, ez, weight * rv[0], weight * rv[1], weight * rv[2]], pos_err, rot_err,
                cols)

    e, pos_err, rot_err, cols = evaluate(q)
    cost = sum(map(mul, e, e))
    lam = lam_init
    history = [cost]
    rows = len(e)
    joint_space = rows > na
    for it in range(max_iterations):
        if pos_err <= pos_tol and rot_err <= rot_tol:
            return True, q, pos_err, rot_err, it
        if it >= stall_window and cost > stall_ratio * history[it - stall_window]:
            return False, q, pos_err, rot_err, it
        qa = [q[i] for i in active]
        normal = _normal_matrix(cols, joint_space)
        rhs = [sum(map(mul, c, e)) for c in cols] if joint_space else e
        while True:
            dq = _damped(cols, normal, rhs, lam, joint_space)
            blocked = [(a <= lo_k and d < 0.0) or (a >= hi_k and d > 0.0)
                       for a, d, lo_k, hi_k in zip(qa, dq, lo, hi)]
            nb = sum(blocked)
            if 0 < nb < na:
                if joint_space:
                    # Zeroing J's blocked columns zeroes their rows and columns of J^T J.
                    free = [not b for b in blocked]
                    normal_f = [[v if fi and fj else 0.0 for v, fj in zip(row, free)]
                                for row, fi in zip(normal, free)]
                    rhs_f = [v if fi else 0.0 for v, fi in zip(rhs, free)]
                    dq = _spd_solve(normal_f, rhs_f, lam)
                else:
                    cf = [[0.0] * rows if b else c for c, b in zip(cols, blocked)]
                    dq = _damped(cf, _normal_matrix(cf, False), e, lam, False)
            step = max(map(abs, dq))
            if step > max_step:
                scale = max_step / step
                dq = [v * scale for v in dq]
            q_new = list(q)
            for i, a, d, lo_k, hi_k in zip(active, qa, dq, lo, hi):
                v = a + d
                q_new[i] = lo_k if v < lo_k else hi_k if v > hi_k else v
            e_n, pos_n, rot_n, cols_n = evaluate(q_new)
            cost_n = sum(map(mul, e_n, e_n))
            if cost_n < cost:
                q, e, pos_err, rot_err, cols, cost = q_new, e_n, pos_n, rot_n, cols_n, cost_n
                lam = max(lam * 0.3, lam_min)
                history.append(cost)
                break
            lam *= 10.0
            if lam > lam_max:
                return False, q, pos_err, rot_err, it + 1
    ok = pos_err <= pos_tol and rot_err <= rot_tol
    return ok, q, pos_err, rot_err, max_iterations


def _normal_matrix(cols: list[list[float]], joint_space: bool) -> list[list[float]]:
    """J^T J (joint space) or J J^T for a Jacobian given by its columns."""
    if joint_space:
        n = len(cols)
        A = [[0.0] * n for _ in range(n)]
        for i, ci in enumerate(cols):
            Ai = A[i]
            for j in range(i + 1):
                Ai[j] = A[j][i] = sum(map(mul, ci, cols[j]))
        return A
    if len(cols[0]) == 3:
        a00 = a01 = a02 = a11 = a12 = a22 = 0.0
        for x, y, z in cols:
            a00 += x * x
            a01 += x * y
            a02 += x * z
            a11 += y * y
            a12 += y * z
            a22 += z * z
        return [[a00, a01, a02], [a01, a11, a12], [a02, a12, a22]]
    m = len(cols[0])
    return [[sum(c[r] * c[k] for c in cols) for k in range(m)] for r in range(m)]


def _damped(cols, normal, rhs, lam, joint_space) -> list[float]:
    """J^T (J J^T + lam I)^-1 e, or (J^T J + lam I)^-1 J^T e in joint space."""
    x = _spd_solve(normal, rhs, lam)
    if joint_space:
        return x
    return [sum(map(mul, c, x)) for c in cols]


def _spd_solve(A: list[list[float]], b: list[float], lam: float) -> list[float]:
    """(A + lam I)^-1 b for a small symmetric positive semi-definite A."""
    m = len(b)
    if m == 3:  # adjugate of the symmetric 3x3 matrix
        (a, d, e), (_, f, g), (_, _, h) = A
        a, f, h = a + lam, f + lam, h + lam
        c00, c01, c02 = f * h - g * g, e * g - d * h, d * g - e * f
        c11, c12, c22 = a * h - e * e, d * e - a * g, a * f - d * d
        det = a * c00 + d * c01 + e * c02
        b0, b1, b2 = b
        return [(c00 * b0 + c01 * b1 + c02 * b2) / det, (c01 * b0 + c11 * b1 + c12 * b2) / det,
                (c02 * b0 + c12 * b1 + c22 * b2) / det]
    L: list[list[float]] = []  # Cholesky factor, row by row
    for i in range(m):
        Ai, row = A[i], []
        for j in range(i):
            Lj = L[j]
            row.append((Ai[j] - sum(map(mul, row, Lj))) / Lj[j])
        d = Ai[i] + lam - sum(map(mul, row, row))
        row.append(math.sqrt(d) if d > 0.0 else 1e-300)
        L.append(row)
    y = []
    for i in range(m):
        Li = L[i]
        y.append((b[i] - sum(map(mul, Li, y))) / Li[i])
    x = [0.0] * m
    for i in range(m - 1, -1, -1):
        s = y[i]
        for k in range(i + 1, m):
            s -= L[k][i] * x[k]
        x[i] = s / L[i][i]
    return x


def _cols(T: np.ndarray) -> list[float]:
    """The rotation of T as 9 floats, column-major."""
    return [float(v) for v in np.asarray(T)[:3, :3].T.reshape(-1)]


def _mul_cols(A: list[float], B: list[float]) -> list[float]:
    """A @ B for rotations stored column-major."""
    out = []
    for j in range(3):
        b0, b1, b2 = B[3 * j], B[3 * j + 1], B[3 * j + 2]
        out += [A[0] * b0 + A[3] * b1 + A[6] * b2, A[1] * b0 + A[4] * b1 + A[7] * b2,
                A[2] * b0 + A[5] * b1 + A[8] * b2]
    return out


def _rotate(R: list[float], v: list[float]) -> tuple[float, float, float]:
    return (R[0] * v[0] + R[3] * v[1] + R[6] * v[2], R[1] * v[0] + R[4] * v[1] + R[7] * v[2],
            R[2] * v[0] + R[5] * v[1] + R[8] * v[2])


def _rodrigues(axis: list[float], angle: float) -> np.ndarray:
    x, y, z = axis
    K = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * K + (1.0 - math.cos(angle)) * (K @ K)


def _rotation_vector_cols(R_t: list[float], R: list[float]) -> list[float]:
    """rotation_vector(E = R_t @ R^T) for rotations stored column-major (entry (r, c) of
    such a matrix M is M[3c + r], so E[i][j] = sum_k R_t[3k + i] R[3k + j])."""
    a0, a1, a2, a3, a4, a5, a6, a7, a8 = R_t
    b0, b1, b2, b3, b4, b5, b6, b7, b8 = R
    trace = a0 * b0 + a1 * b1 + a2 * b2 + a3 * b3 + a4 * b4 + a5 * b5 + a6 * b6 + a7 * b7 \
        + a8 * b8
    e01, e10 = a0 * b1 + a3 * b4 + a6 * b7, a1 * b0 + a4 * b3 + a7 * b6
    e02, e20 = a0 * b2 + a3 * b5 + a6 * b8, a2 * b0 + a5 * b3 + a8 * b6
    e12, e21 = a1 * b2 + a4 * b5 + a7 * b8, a2 * b1 + a5 * b4 + a8 * b7
    vx, vy, vz = e21 - e12, e02 - e20, e10 - e01
    cos_angle = min(1.0, max(-1.0, (trace - 1.0) * 0.5))
    angle = math.acos(cos_angle)
    if angle < 1e-6:
        return [0.5 * vx, 0.5 * vy, 0.5 * vz]
    if angle < math.pi - 1e-3:
        f = angle / (2.0 * math.sin(angle))
        return [f * vx, f * vy, f * vz]
    from q_grasp.kinematics.chain import rotation_vector

    M = np.array(R_t).reshape(3, 3).T @ np.array(R).reshape(3, 3)
    return [float(v) for v in rotation_vector(M)]
