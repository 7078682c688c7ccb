"""Inverse kinematics: q_grasp's solver (single and batched) against an older tree of q_grasp and
pybullet's calculateInverseKinematics, on the same targets of the NURO arm.

    python benchmarks/bench_ik.py [--baseline-tree /tmp/old] [--targets 1000] [--top-down 500]
                                  [--rounds 2] [--mask-seeds 20]

Targets: forward kinematics of uniform random joint vectors within limits (reachable by
construction; position only, from the arm's default joints), and top-down grasp poses (x
0.09-0.17 m, y +-0.05 m, z 0.01-0.05 m, uniform yaw) with the grasp skill's tolerances (2 mm,
0.02 rad). Every contender runs in fresh processes, alternating round by round (the machine is
shared); each reports success within 2 mm, orientation error, joint-limit violations, ms per
solve (median / p90) and CPU seconds. The q_grasp trees also report batched ms per target
(when they have ``ik_batch``), the grasp reachability table's build time, the grasp env's
action masks for ``--mask-seeds`` seeds (compared bit for bit between the trees; the pixels that
differ are judged by plan_grasp) and the Reacher env's resets with the IK observation (time,
and the observations compared between the trees).
Writes benchmarks/results/ik.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "ik.json"
TOP_DOWN_REGION_M = ((0.09, -0.05, 0.01), (0.17, 0.05, 0.05))
PYBULLET_CALLS = 50
"""Most calls of calculateInverseKinematics per target in the iterated pybullet variant."""
LIMIT_SLACK = 1e-9
"""A joint counts as outside its limits beyond this (rad)."""


def make_targets(chain, n_pos: int, n_td: int, seed: int):
    """Position targets (n_pos, 3) and top-down targets (n_td, 3) with yaws (n_td,)."""
    rng = np.random.default_rng(seed)
    pos = chain.fk_batch(chain.random_q(rng, n_pos))[:, :3, 3]
    td = rng.uniform(*TOP_DOWN_REGION_M, size=(n_td, 3))
    yaws = rng.uniform(-math.pi, math.pi, size=n_td)
    return pos, td, yaws


def summarise(chain, Q: np.ndarray, targets: np.ndarray, ms: np.ndarray,
              yaws: np.ndarray | None = None, reported: np.ndarray | None = None) -> dict:
    """Outcome figures of solutions Q (N, n) for targets, judged by q_grasp's FK."""
    from q_grasp.kinematics import rotation_vector, top_down_rotation

    T = chain.fk_batch(np.clip(Q, chain.lower, chain.upper))
    pos_err = np.linalg.norm(T[:, :3, 3] - targets, axis=1)
    out = {"trials": len(targets)}
    ok = pos_err <= 2e-3
    if yaws is not None:
        rot = np.array([min(np.linalg.norm(rotation_vector(top_down_rotation(y + k * math.pi)
                                                           @ R.T)) for k in (0, 1))
                        for y, R in zip(yaws, T[:, :3, :3])])
        ok &= rot <= 0.02
        out["rot_error_rad_median_of_successes"] = float(np.median(rot[ok])) if ok.any() else None
        out["within_2mm_and_0.02rad_rate"] = float(ok.mean())
    else:
        out["within_2mm_rate"] = float(ok.mean())
    if reported is not None:
        out["reported_success_rate"] = float(np.mean(reported))
    viol = (Q < chain.lower - LIMIT_SLACK) | (Q > chain.upper + LIMIT_SLACK)
    out["limit_violations"] = int(viol.any(axis=1).sum())
    out["pos_error_mm_median"] = float(np.median(pos_err) * 1e3)
    out["ms_median"] = float(np.median(ms))
    out["ms_p90"] = float(np.percentile(ms, 90))
    out["ms_mean"] = float(ms.mean())
    return out


def reacher_resets(n: int) -> dict:
    """ms per ReacherEnv reset with the "joints_goal_ee_ik" observation (its goal joints come
    from 9 IK solves), and a digest of the observations (the same seeds in every tree)."""
    from q_grasp.envs.reacher import ReacherConfig, ReacherEnv

    env = ReacherEnv(ReacherConfig(observation="joints_goal_ee_ik"))
    try:
        env.reset(seed=0)
        obs = []
        t0, c0 = time.perf_counter(), time.process_time()
        for seed in range(n):
            obs.append(env.reset(seed=seed)[0])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        env.close()
    return {"resets": n, "ms_per_reset": wall * 1e3 / max(n, 1),
            "cpu_ms_per_reset": cpu * 1e3 / max(n, 1),
            "observations": np.array(obs).round(6).tolist()}


def worker_qgrasp(args) -> dict:
    """Figures of the q_grasp tree this process imports (PYTHONPATH)."""
    from q_grasp.envs.grasp import GraspConfig, TopDownGraspEnv
    from q_grasp.kinematics import KinematicChain
    from q_grasp.robot_config import RobotConfig
    from q_grasp.skills.grasp import GraspSkillConfig
    from q_grasp.skills.reach import TopDownReach

    chain = KinematicChain.from_robot_config(RobotConfig())
    skill = GraspSkillConfig()
    td_kw = {"pos_tol_m": skill.ik_pos_tol_m, "rot_tol_rad": skill.ik_rot_tol_rad}
    pos, td, yaws = make_targets(chain, args.targets, args.top_down, args.seed)
    res: dict = {}
    cpu0 = time.process_time()
    for name, targets, kw_list in (("position", pos, [{}] * len(pos)),
                                   ("top_down", td, [dict(yaw_rad=float(y), **td_kw)
                                                     for y in yaws])):
        Q, ms, cpu_ms, ok = [], [], [], []
        for target, kw in zip(targets, kw_list):
            t0, c0 = time.perf_counter(), time.thread_time()
            r = chain.ik(target, **kw)
            cpu_ms.append((time.thread_time() - c0) * 1e3)
            ms.append((time.perf_counter() - t0) * 1e3)
            Q.append(r.q)
            ok.append(r.success)
        res[name] = summarise(chain, np.array(Q), targets, np.array(ms),
                              yaws if name == "top_down" else None, np.array(ok))
        res[name]["cpu_ms_median"] = float(np.median(cpu_ms))
        res[name]["cpu_ms_p90"] = float(np.percentile(cpu_ms, 90))
        if hasattr(chain, "ik_batch"):
            t0 = time.perf_counter()
            c0 = time.process_time()
            b = (chain.ik_batch(targets) if name == "position"
                 else chain.ik_batch(targets, yaw_rad=yaws, **td_kw))
            wall = time.perf_counter() - t0
            batch = summarise(chain, b.q, targets, np.full(len(targets), np.nan),
                              yaws if name == "top_down" else None, b.success)
            for key in ("ms_median", "ms_p90", "ms_mean"):
                batch.pop(key)
            batch["ms_per_target"] = wall * 1e3 / len(targets)
            batch["cpu_s"] = time.process_time() - c0
            res[name + "_batched"] = batch
    res["solve_cpu_s"] = time.process_time() - cpu0
    res["reacher_reset"] = reacher_resets(args.reacher_resets)
    grasp = GraspConfig()
    t0, c0 = time.perf_counter(), time.process_time()
    reach = TopDownReach(KinematicChain.from_robot_config(grasp.robot), grasp.skill)
    res["reach_table"] = {"build_s": time.perf_counter() - t0,
                          "build_cpu_s": time.process_time() - c0,
                          "r_min_m": [None if math.isnan(v) else v for v in reach.table.r_min_m],
                          "r_max_m": [None if math.isnan(v) else v for v in reach.table.r_max_m]}
    masks = []
    if args.mask_seeds:
        env = TopDownGraspEnv()
        try:
            for seed in range(args.mask_seeds):
                mask = np.asarray(env.reset(seed=seed)[1]["action_mask"], dtype=bool)
                masks.append(np.packbits(mask).tobytes().hex())
            res["mask_pixels"] = env.height * env.width
            res["mask_actions"] = int(env.action_space.n)
        finally:
            env.close()
    res["masks"] = masks
    return res


def worker_verify(args) -> dict:
    """plan_grasp at the given pixels of the grasp env's scenes, at every rotation's yaw:
    {seed: [number of yaws where it succeeds, per pixel]}."""
    from q_grasp.envs.grasp import TopDownGraspEnv
    from q_grasp.skills.grasp import plan_grasp

    pixels = json.loads(Path(args.verify).read_text())
    out = {}
    env = TopDownGraspEnv()
    try:
        for seed, flat in pixels.items():
            env.reset(seed=int(seed))
            points = env.surface_points().reshape(-1, 3)
            yaws = [env.rotation_yaw(r) for r in range(env.num_rotations)]
            out[seed] = [sum(plan_grasp(env.chain, points[i], y, env.task.config.skill).success
                             for y in yaws) for i in flat]
    finally:
        env.close()
    return out


def worker_pybullet(args) -> dict:
    """pybullet's damped least squares from the same start joints, with and without limits,
    one call per target and iterated (see PYBULLET_CALLS). Its solution is judged as returned
    for limit violations, and clipped into the limits for the errors."""
    import pybullet
    from pybullet_utils.bullet_client import BulletClient

    from q_grasp.kinematics import KinematicChain, top_down_rotation
    from q_grasp.robot_config import RobotConfig

    cfg = RobotConfig()
    chain = KinematicChain.from_robot_config(cfg)
    pos, td, yaws = make_targets(chain, args.targets, args.top_down, args.seed)
    client = BulletClient(connection_mode=pybullet.DIRECT)
    body = client.loadURDF(str(cfg.urdf_path), basePosition=list(cfg.base_position),
                           baseOrientation=client.getQuaternionFromEuler([0, 0, cfg.base_yaw_rad]),
                           useFixedBase=True)
    movable, by_name, ee = [], {}, None
    for i in range(client.getNumJoints(body)):
        info = client.getJointInfo(body, i)
        if info[2] != pybullet.JOINT_FIXED:
            movable.append(i)
        by_name[info[1].decode()] = i
        if info[12].decode() == cfg.ee_link:
            ee = i
    arm = [movable.index(by_name[name]) for name in chain.joint_names]
    lower, upper, rest = [], [], []
    for i in movable:
        info = client.getJointInfo(body, i)
        lower.append(info[8])
        upper.append(info[9])
    start = np.zeros(len(movable))
    start[arm] = chain.default_q
    rest = start.tolist()
    ranges = (np.array(upper) - np.array(lower)).tolist()
    res: dict = {}
    for iterated in (False, True):
        for limits in (False, True):
            kw = ({"lowerLimits": lower, "upperLimits": upper, "jointRanges": ranges,
                   "restPoses": rest} if limits else {})
            for name, targets in (("position", pos), ("top_down", td)):
                Q, ms, calls = [], [], []
                for i, target in enumerate(targets):
                    for j, q in zip(movable, start):
                        client.resetJointState(body, j, float(q))
                    extra = dict(kw)
                    if name == "top_down":
                        R = top_down_rotation(float(yaws[i]))
                        extra["targetOrientation"] = _quaternion(R)
                    t0 = time.perf_counter()
                    n_calls = 0
                    while n_calls < (PYBULLET_CALLS if iterated else 1):
                        n_calls += 1
                        sol = client.calculateInverseKinematics(body, ee, target.tolist(),
                                                                **extra)
                        if not iterated:
                            break
                        # The common "accurate IK" loop: restart from the last solution until
                        # the link is within 1 mm of the target (position only).
                        for j, q in zip(movable, sol):
                            client.resetJointState(body, j, float(q))
                        link = client.getLinkState(body, ee, computeForwardKinematics=True)[4]
                        if math.dist(link, target) < 1e-3:
                            break
                    ms.append((time.perf_counter() - t0) * 1e3)
                    calls.append(n_calls)
                    Q.append(np.array(sol)[arm])
                key = f"{name}{'_limits' if limits else ''}{'_iterated' if iterated else ''}"
                res[key] = summarise(chain, np.array(Q), targets, np.array(ms),
                                     yaws if name == "top_down" else None)
                res[key]["calls_median"] = float(np.median(calls))
    client.disconnect()
    return res


def _quaternion(R: np.ndarray) -> list[float]:
    """(x, y, z, w) of a rotation matrix."""
    w = math.sqrt(max(0.0, 1.0 + R[0, 0] + R[1, 1] + R[2, 2])) / 2.0
    x = math.copysign(math.sqrt(max(0.0, 1.0 + R[0, 0] - R[1, 1] - R[2, 2])) / 2.0,
                      R[2, 1] - R[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1.0 - R[0, 0] + R[1, 1] - R[2, 2])) / 2.0,
                      R[0, 2] - R[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1.0 - R[0, 0] - R[1, 1] + R[2, 2])) / 2.0,
                      R[1, 0] - R[0, 1])
    return [x, y, z, w]


def run_worker(kind: str, tree: Path, args, *extra: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, str(HERE / "bench_ik.py"), "--worker", kind,
           "--targets", str(args.targets), "--top-down", str(args.top_down),
           "--seed", str(args.seed), "--mask-seeds", str(args.mask_seeds),
           "--reacher-resets", str(args.reacher_resets), *extra]
    t0, c0 = time.perf_counter(), os.times()
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    c1 = os.times()
    res = json.loads(out.strip().splitlines()[-1])
    res["process_wall_s"] = time.perf_counter() - t0
    res["process_cpu_s"] = (c1.children_user - c0.children_user
                            + c1.children_system - c0.children_system)
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-tree", type=Path, default=None,
                        help="another q_grasp source tree to compare against (e.g. an older "
                             "commit: git archive <rev> | tar -x -C DIR)")
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--top-down", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mask-seeds", type=int, default=20)
    parser.add_argument("--reacher-resets", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", choices=("qgrasp", "pybullet", "verify"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--verify", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("targets", "top_down", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be >= 1")
    if args.mask_seeds < 0 or args.reacher_resets < 0:
        parser.error("--mask-seeds, --reacher-resets: must be >= 0")
    if args.worker:
        res = {"qgrasp": worker_qgrasp, "pybullet": worker_pybullet,
               "verify": worker_verify}[args.worker](args)
        print(json.dumps(res))
        return
    if args.baseline_tree is not None and not (args.baseline_tree / "q_grasp").is_dir():
        parser.error(f"--baseline-tree: {args.baseline_tree} has no q_grasp package")

    contenders = [("new", "qgrasp", ROOT)]
    if args.baseline_tree is not None:
        contenders.insert(0, ("baseline", "qgrasp", args.baseline_tree.resolve()))
    contenders.append(("pybullet", "pybullet", ROOT))
    rounds: dict[str, list[dict]] = {name: [] for name, _, _ in contenders}
    for r in range(args.rounds):
        order = contenders if r % 2 == 0 else contenders[::-1]
        for name, kind, tree in order:
            print(f"round {r + 1}/{args.rounds}: {name}", flush=True)
            rounds[name].append(run_worker(kind, tree, args))
    summary: dict = {}
    results: dict = {
        "command": "python benchmarks/bench_ik.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(),
                    "load_average": list(os.getloadavg())},
        "targets": {"position": args.targets, "top_down": args.top_down,
                    "top_down_region_m": TOP_DOWN_REGION_M, "seed": args.seed},
        "rounds": rounds,
    }
    for name, runs in rounds.items():
        s: dict = {}
        for part, fig in runs[0].items():
            if isinstance(fig, dict) and "trials" in fig:
                s[part] = dict(fig)
                for key in ("ms_median", "ms_p90", "ms_per_target"):
                    if key in fig:
                        s[part][key] = float(np.median([run[part][key] for run in runs]))
        if "reacher_reset" in runs[0]:
            for key in ("ms_per_reset", "cpu_ms_per_reset"):
                s["reacher_" + key] = float(np.median([x["reacher_reset"][key] for x in runs]))
        if "reach_table" in runs[0]:
            s["reach_table_build_s"] = float(np.median([x["reach_table"]["build_s"]
                                                        for x in runs]))
            s["reach_table_build_cpu_s"] = float(np.median([x["reach_table"]["build_cpu_s"]
                                                            for x in runs]))
        summary[name] = s
    if "baseline" in rounds:
        old, new = rounds["baseline"][0], rounds["new"][0]
        n_act, n_pix = new.get("mask_actions", 0), new.get("mask_pixels", 1)
        a = [np.unpackbits(np.frombuffer(bytes.fromhex(h), np.uint8))[:n_act]
             for h in old["masks"]]
        b = [np.unpackbits(np.frombuffer(bytes.fromhex(h), np.uint8))[:n_act]
             for h in new["masks"]]
        diff = [int((x != y).sum()) for x, y in zip(a, b)]
        # The pixels whose mask changed, judged by plan_grasp itself (the new tree's).
        changed = {}
        for seed, (x, y) in enumerate(zip(a, b)):
            flat = np.flatnonzero(x != y) % n_pix
            if len(flat):
                changed[str(seed)] = sorted({int(i) for i in flat})
        verify_path = args.out.with_suffix(".verify.json")
        verify_path.parent.mkdir(parents=True, exist_ok=True)
        verify_path.write_text(json.dumps(changed))
        verified = run_worker("verify", ROOT, args, "--verify", str(verify_path))
        verify_path.unlink()
        for key in ("process_wall_s", "process_cpu_s"):
            verified.pop(key)
        summary["action_masks"] = {
            "seeds": len(diff), "identical": sum(d == 0 for d in diff),
            "actions_differing_per_seed": diff,
            "actions_per_mask": int(len(a[0])) if a else 0,
            "reachable_baseline": [int(x.sum()) for x in a],
            "reachable_new": [int(x.sum()) for x in b],
            "changed_pixels": changed,
            "changed_pixels_plan_grasp_successes_of_all_yaws": verified,
            "newly_allowed_actions": int(sum(((y > x).sum()) for x, y in zip(a, b))),
            "newly_refused_actions": int(sum(((x > y).sum()) for x, y in zip(a, b))),
            "sha256_equal": (hashlib.sha256("".join(old["masks"]).encode()).hexdigest()
                             == hashlib.sha256("".join(new["masks"]).encode()).hexdigest())}
        lo = np.array(old["reach_table"]["r_min_m"], dtype=float)
        hi = np.array(old["reach_table"]["r_max_m"], dtype=float)
        lo2 = np.array(new["reach_table"]["r_min_m"], dtype=float)
        hi2 = np.array(new["reach_table"]["r_max_m"], dtype=float)
        summary["reach_table_edges_max_diff_mm"] = float(np.nanmax(np.abs(
            np.concatenate([lo2 - lo, hi2 - hi]))) * 1e3)
        summary["reach_table_same_rows"] = bool(np.array_equal(np.isnan(lo), np.isnan(lo2)))
        ra = np.array(old["reacher_reset"]["observations"])
        rb = np.array(new["reacher_reset"]["observations"])
        summary["reacher_observations_max_abs_diff"] = (float(np.abs(ra - rb).max())
                                                        if ra.shape == rb.shape and ra.size
                                                        else None)
    for runs in rounds.values():
        for run in runs:
            run.get("reacher_reset", {}).pop("observations", None)
    results["summary"] = summary
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
