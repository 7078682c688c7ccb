"""Grasp baselines for TopDownGraspEnv: a scripted policy (grasp the centre of the top-most
object seen in depth, across its minor axis) and a uniformly random one, with a CLI:

    python -m q_grasp.baselines --policy scripted --attempts 200 --num-objects 1

The scripted policy uses only the observation and the camera model, so its success rate
checks the grasp motion, the IK and the camera calibration before any learning.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from q_grasp.envs.grasp import GraspConfig, TopDownGraspEnv
from q_grasp.skills.grasp import plan_grasp

POLICIES = ("scripted", "random")


@dataclass
class ScriptedGraspConfig:
    """Segmentation settings of the scripted grasp policy."""

    min_object_height_m: float = 0.006
    """Pixels higher than this above the table count as objects."""
    top_band_m: float = 0.008
    """The top face of the highest object: its pixels within this of its highest point."""
    min_blob_pixels: int = 3
    """Smaller blobs are ignored as noise."""
    max_candidates: int = 5
    """Objects (highest first) checked for a reachable grasp before taking the highest."""


class ScriptedGraspPolicy:
    """Grasp the top-most object in the height channel at the centre of its top face, with the
    fingers closing across the face's minor axis (PCA of the face pixels).

    Uses the observation, the camera model and the robot's own IK (``plan_grasp``): objects
    pushed out of reach are skipped for the highest reachable one, as a real robot would.
    """

    def __init__(self, env: TopDownGraspEnv, config: ScriptedGraspConfig | None = None) -> None:
        if "height" not in env.image_channels:
            raise ValueError(
                "observation: the scripted policy needs a height channel ('depth' or 'rgbd'), "
                f"got channels {env.image_channels}"
            )
        self.env = env
        self.config = config if config is not None else ScriptedGraspConfig()
        self._height_channel = env.image_channels.index("height")
        self.fallback_count = 0
        """Observations in which no object was found (a random action was taken)."""

    def candidates(self, heights: np.ndarray) -> list[tuple[int, int, int, float]]:
        """Grasp candidates (rot, row, col, top height), highest object first."""
        env, cfg = self.env, self.config
        mask = (heights > cfg.min_object_height_m).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        found = []
        for label in range(1, n):
            if stats[label, cv2.CC_STAT_AREA] < cfg.min_blob_pixels:
                continue
            blob = labels == label
            top = float(heights[blob].max())
            # The top face only: touching objects merge into one blob, but the highest face is
            # the one to grasp and its own outline gives the grasp axis.
            rows, cols = np.nonzero(blob & (heights >= top - cfg.top_band_m))
            row_c, col_c = rows.mean(), cols.mean()
            pts = np.stack([cols - col_c, rows - row_c], axis=1)
            minor = np.linalg.eigh(pts.T @ pts)[1][:, 0] if len(pts) >= 3 else np.array([1, 0])
            # Image direction -> world direction through the camera model.
            p0 = env.camera.pixel_to_world(col_c, row_c, 1.0)
            p1 = env.camera.pixel_to_world(col_c + minor[0], row_c + minor[1], 1.0)
            yaw = math.atan2(p1[1] - p0[1], p1[0] - p0[0]) % math.pi
            rot = int(round(yaw / (math.pi / env.num_rotations))) % env.num_rotations
            # The face pixel nearest to the centroid (the centroid of a convex face is on it).
            k = int(np.argmin((rows - row_c) ** 2 + (cols - col_c) ** 2))
            found.append((rot, int(rows[k]), int(cols[k]), top))
        found.sort(key=lambda c: -c[3])
        return found

    def surface_point(self, row: int, col: int, height_m: float) -> np.ndarray:
        """World point seen at a pixel whose height channel reads ``height_m``: the pixel's
        ray (camera model) cut with the plane z = height_m."""
        cam = self.env.camera
        origin = cam.position
        ray = cam.pixel_to_world(col, row, 1.0) - origin
        return origin + ray * (height_m - origin[2]) / ray[2]

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> int:
        env = self.env
        heights = np.asarray(obs[self._height_channel], dtype=np.float32)
        found = self.candidates(heights)
        if not found:
            self.fallback_count += 1
            return int(rng.integers(env.action_space.n))
        for rot, row, col, _ in found[: self.config.max_candidates]:
            point = self.surface_point(row, col, float(heights[row, col]))
            plan = plan_grasp(env.chain, point, env.rotation_yaw(rot), env.config.skill)
            if plan.success:
                return env.encode_action(rot, row, col)
        rot, row, col, _ = found[0]
        return env.encode_action(rot, row, col)


class RandomGraspPolicy:
    """A uniformly random action (pixel and rotation)."""

    def __init__(self, env: TopDownGraspEnv) -> None:
        self.env = env

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> int:
        return int(rng.integers(self.env.action_space.n))


def make_policy(name: str, env: TopDownGraspEnv) -> ScriptedGraspPolicy | RandomGraspPolicy:
    """A baseline policy by name ("scripted" or "random")."""
    if name == "scripted":
        return ScriptedGraspPolicy(env)
    if name == "random":
        return RandomGraspPolicy(env)
    raise ValueError(f"policy: must be one of {list(POLICIES)}, got {name!r}")


def run_baseline(
    policy: str, attempts: int, config: GraspConfig | None = None, seed: int = 0
) -> dict[str, Any]:
    """Run ``attempts`` grasp attempts of a baseline policy; return success statistics.

    Scenes are reset when cleared or truncated; the env and the policy draw from generators
    seeded with ``seed``, so a run repeats exactly.
    """
    if attempts < 1:
        raise ValueError(f"attempts: must be >= 1, got {attempts}")
    env = TopDownGraspEnv(config if config is not None else GraspConfig())
    try:
        agent = make_policy(policy, env)
        rng = np.random.default_rng(seed + 1_000_003)
        obs, _ = env.reset(seed=seed)
        successes = ik_failures = ground_truth = agree = episodes = cleared = 0
        start = time.perf_counter()
        cpu_start = time.process_time()
        steps0 = env.sim.step_count
        sim_steps = 0
        for _ in range(attempts):
            action = agent(obs, rng)
            obs, reward, terminated, truncated, info = env.step(action)
            successes += int(reward > 0)
            ik_failures += int(not info["ik_success"])
            ground_truth += int(info["object_lifted_ground_truth"])
            agree += int(info["is_success"] == info["object_lifted_ground_truth"])
            if terminated or truncated:
                episodes += 1
                cleared += int(terminated)
                sim_steps += env.sim.step_count - steps0
                obs, _ = env.reset()
                steps0 = env.sim.step_count
        sim_steps += env.sim.step_count - steps0
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
    finally:
        env.close()
    return {
        "policy": policy,
        "attempts": attempts,
        "successes": successes,
        "success_rate": successes / attempts,
        "ground_truth_lifts": ground_truth,
        "sensed_vs_ground_truth_agreement": agree / attempts,
        "ik_failures": ik_failures,
        "episodes_finished": episodes,
        "episodes_cleared": cleared,
        "fallback_random_actions": getattr(agent, "fallback_count", 0),
        "wall_time_s": elapsed,
        "attempts_per_s": attempts / elapsed,
        "cpu_time_s": cpu,
        "attempts_per_cpu_s": attempts / cpu,
        "physics_steps_per_attempt": sim_steps / attempts,
        "seed": seed,
    }


def _objects_range(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.split("-")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not 1 <= parts[0] <= parts[1]:
        raise argparse.ArgumentTypeError(
            f"--num-objects: expected N or MIN-MAX with 1 <= MIN <= MAX, got {text!r}"
        )
    return parts[0], parts[1]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m q_grasp.baselines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", choices=POLICIES, default="scripted")
    parser.add_argument("--attempts", type=int, default=200, help="grasp attempts (>= 1)")
    parser.add_argument("--num-objects", type=_objects_range, default=(1, 1),
                        help="objects per scene: N or MIN-MAX (default 1)")
    parser.add_argument("--max-attempts", type=int, default=None,
                        help="attempts per episode (default: 5, or 2*MAX with clutter)")
    parser.add_argument("--image-size", type=int, default=64, help="square image side (px)")
    parser.add_argument("--rotations", type=int, default=8, help="gripper rotations")
    parser.add_argument("--observation", choices=("rgb", "depth", "rgbd"), default="rgbd")
    parser.add_argument("--object-files", nargs="*", default=(),
                        help="URDF files or folders to use instead of primitive shapes")
    parser.add_argument("--scale-to-fit", action="store_true",
                        help="scale URDF objects to fit the gripper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)
    lo, hi = args.num_objects
    max_attempts = args.max_attempts if args.max_attempts is not None else max(5, 2 * hi)
    config = GraspConfig(
        observation=args.observation, image_size=(args.image_size, args.image_size),
        num_rotations=args.rotations, min_objects=lo, max_objects=hi,
        max_attempts=max_attempts, object_files=tuple(args.object_files),
        scale_to_fit=args.scale_to_fit,
    )
    result = run_baseline(args.policy, args.attempts, config, seed=args.seed)
    result["num_objects"] = [lo, hi]
    print(f"{args.policy} grasp baseline, {lo}-{hi} object(s): success "
          f"{result['successes']}/{args.attempts} = {100 * result['success_rate']:.1f}% "
          f"(IK failures {result['ik_failures']}, sensed/ground-truth agreement "
          f"{100 * result['sensed_vs_ground_truth_agreement']:.1f}%), "
          f"{result['attempts_per_s']:.1f} attempts/s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
