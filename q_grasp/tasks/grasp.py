"""The top-down grasp task: a U-Net's Q-map over pixels x gripper rotations; the chosen pixel's
surface point (camera model + depth) is grasped top-down at the rotation's yaw.

``GraspTask`` owns the observation (channels of a top-down RGB-D image), the action space and
its decoding into a grasp pose, the reachability mask, the reward and the episode's end. It
acts through an ``ArmInterface`` with ``q_grasp.skills.grasp.execute_grasp``: the gymnasium
TopDownGraspEnv drives the simulated arm, the policy node the ROS arm.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium import spaces

from q_grasp.kinematics import KinematicChain
from q_grasp.kinematics.camera import CameraModel
from q_grasp.skills.arm_interface import ArmInterface
from q_grasp.skills.grasp import GraspOutcome, execute_grasp, table_plane_depth

if TYPE_CHECKING:
    from q_grasp.envs.grasp import GraspConfig
    from q_grasp.skills.reach import TopDownReach

OBSERVATION_CHANNELS = {
    "rgb": ("r", "g", "b"),
    "depth": ("height",),
    "rgbd": ("r", "g", "b", "height"),
}


def grasp_observation(rgb: np.ndarray, heightmap: np.ndarray, channels: Sequence[str],
                      max_height_m: float) -> np.ndarray:
    """The observation (C, H, W) float32: r, g, b = uint8 / 255 and/or height above the table
    clipped to [0, max_height_m]. Pixels without a depth reading (NaN) read as the table
    (height 0), the least attractive place to grasp."""
    out = []
    if "r" in channels:
        out.extend(np.moveaxis(np.asarray(rgb), -1, 0).astype(np.float32) / 255.0)
    if "height" in channels:
        heights = np.nan_to_num(np.asarray(heightmap, np.float32), nan=0.0, posinf=max_height_m,
                                neginf=0.0)
        out.append(np.clip(heights, 0.0, max_height_m))
    return np.stack(out).astype(np.float32)


def table_looks_empty(heightmap: np.ndarray, min_object_height_m: float,
                      min_pixels: int = 2) -> bool:
    """True when fewer than ``min_pixels`` pixels stand ``min_object_height_m`` above the
    table: the camera sees nothing left to grasp (the robot's own view, not ground truth)."""
    heights = np.nan_to_num(np.asarray(heightmap, np.float32), nan=0.0)
    return int((heights > min_object_height_m).sum()) < min_pixels


@dataclass
class GraspTarget:
    """An action decoded into a grasp: Q-map cell, gripper yaw and the world point to grasp."""

    rotation: int
    row: int
    col: int
    yaw_rad: float
    """Gripper yaw (rad, world frame): rotation * pi / num_rotations."""
    point_m: np.ndarray
    """Surface point (m, world) seen at (row, col); NaN without a depth reading there."""

    @property
    def has_depth(self) -> bool:
        """Whether the pixel had a depth reading (else there is nothing to aim at)."""
        return bool(np.all(np.isfinite(self.point_m)))


class GraspTask:
    """Top-down grasping for one arm and GraspConfig (see TopDownGraspEnv for its spaces)."""

    def __init__(self, config: GraspConfig, chain: KinematicChain | None = None) -> None:
        self.config = config
        self.chain = (chain if chain is not None
                      else KinematicChain.from_robot_config(config.robot))
        self.channels: tuple[str, ...] = OBSERVATION_CHANNELS[config.observation]
        self.num_rotations = int(config.num_rotations)
        self.height, self.width = (int(s) for s in config.image_size)
        c = len(self.channels)
        low = np.zeros((c, self.height, self.width), dtype=np.float32)
        high = np.ones((c, self.height, self.width), dtype=np.float32)
        if "height" in self.channels:
            high[self.channels.index("height")] = config.camera_height_m
        self.observation_space = spaces.Box(low=low, high=high, dtype=np.float32)
        self.action_space = spaces.Discrete(self.num_rotations * self.height * self.width)
        self._reach: TopDownReach | None = None
        self._plane_depth: tuple[Any, np.ndarray] | None = None

    # ----------------------------------------------------------------------------- sensing
    def depth(self, camera: CameraModel, depth: np.ndarray | None) -> np.ndarray:
        """The depth image grasps are aimed with: the camera's, or with depth_source
        "table_plane" the table plane's (a colour-only camera; cached per camera)."""
        if getattr(self.config, "depth_source", "camera") != "table_plane":
            return depth
        if self._plane_depth is None or self._plane_depth[0] is not camera:
            self._plane_depth = (camera, table_plane_depth(camera, self.height, self.width))
        return self._plane_depth[1]

    def observation(self, rgb: np.ndarray, heightmap: np.ndarray) -> np.ndarray:
        """The observation from an RGB image and heights above the table (m)."""
        return grasp_observation(rgb, heightmap, self.channels, self.config.camera_height_m)

    @property
    def reach(self) -> TopDownReach:
        """Where this arm's top-down grasp can run (built on first use, cached per process)."""
        if self._reach is None:
            from q_grasp.skills.reach import TopDownReach

            self._reach = TopDownReach(self.chain, self.config.skill)
        return self._reach

    def action_mask(self, camera: CameraModel, depth: np.ndarray) -> np.ndarray:
        """Flat bool (R*H*W,): the grasps whose surface point the arm can reach top-down, and
        with ``min_grasp_height_m`` > 0 only on pixels that high above the table (an object:
        a policy that does not recognise an object must not fall back to grasping bare table;
        all False when nothing graspable is in view)."""
        points = camera.surface_points(depth)
        mask = self.reach.action_mask(points, self.num_rotations)
        floor = float(getattr(self.config, "min_grasp_height_m", 0.0))
        if floor > 0.0:
            on_object = np.nan_to_num(points[..., 2], nan=0.0) >= floor
            mask = mask & np.broadcast_to(on_object.reshape(-1), (self.num_rotations,
                                                                   on_object.size)).reshape(-1)
        return mask

    def nothing_graspable(self, camera: CameraModel, depth: np.ndarray,
                          mask: np.ndarray | None = None) -> bool:
        """Whether ``min_grasp_height_m`` is on and the action mask (``mask``, or computed)
        leaves nothing to grasp: the episode then ends (truncated) instead of grasping at the
        table."""
        if float(getattr(self.config, "min_grasp_height_m", 0.0)) <= 0.0:
            return False
        return not (self.action_mask(camera, depth) if mask is None else mask).any()

    # ----------------------------------------------------------------------------- actions
    def check_action(self, action: Any) -> int:
        """``action`` as an int, or ValueError when it is not one of the task's actions."""
        n = int(self.action_space.n)
        arr = np.asarray(action)
        if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"action: must be an integer in [0, {n - 1}], got {action!r}")
        a = int(arr.reshape(()))
        if not 0 <= a < n:
            raise ValueError(f"action: must be an integer in [0, {n - 1}], got {a}")
        return a

    def decode_action(self, action: Any) -> tuple[int, int, int]:
        """Action index -> (rotation index, row, col), C order of the (R, H, W) Q-map."""
        a = self.check_action(action)
        hw = self.height * self.width
        return a // hw, (a % hw) // self.width, a % self.width

    def encode_action(self, rot: int, row: int, col: int) -> int:
        """(rotation index, row, col) -> action index."""
        for name, value, n in (("rot", rot, self.num_rotations), ("row", row, self.height),
                               ("col", col, self.width)):
            if int(value) != value or not 0 <= value < n:
                raise ValueError(f"{name}: must be an integer in [0, {n - 1}], got {value}")
        return int(rot) * self.height * self.width + int(row) * self.width + int(col)

    def rotation_yaw(self, rot: int) -> float:
        """Gripper yaw (rad, world frame) of rotation index ``rot``."""
        return rot * math.pi / self.num_rotations

    def grasp_target(self, camera: CameraModel, depth: np.ndarray, action: Any) -> GraspTarget:
        """Where ``action`` grasps, seen by ``camera`` with ``depth`` (m along its axis)."""
        rot, row, col = self.decode_action(action)
        d = float(depth[row, col])
        point = (camera.pixel_to_world(col, row, d) if math.isfinite(d) and d > 0
                 else np.full(3, np.nan))
        return GraspTarget(rot, row, col, self.rotation_yaw(rot), point)

    def execute(self, arm: ArmInterface, target: GraspTarget, home_joints: np.ndarray,
                after_lift: Callable[[GraspOutcome], bool | None] | None = None) -> GraspOutcome:
        """Run the grasp on ``arm``; without a depth reading, an unsuccessful attempt.
        ``after_lift`` as in ``execute_grasp`` (True: end the motion lifted)."""
        if not target.has_depth:
            return GraspOutcome(False, False, 0.0, "no depth at the chosen pixel")
        return execute_grasp(arm, self.chain, target.point_m, target.yaw_rad, self.config.skill,
                             home_joints=home_joints, after_lift=after_lift)

    # ----------------------------------------------------------------------------- outcome
    @staticmethod
    def reward(outcome: GraspOutcome) -> float:
        """1 when the gripper holds an object after lifting, else 0."""
        return 1.0 if outcome.success else 0.0

    def episode_end(self, success: bool, scene_empty: bool, attempts: int,
                    terminate_on_success: bool = False, max_attempts: int | None = None
                    ) -> tuple[bool, bool]:
        """(terminated, truncated): terminated when nothing is left to grasp (or on a success
        with ``terminate_on_success``), truncated after max_attempts attempts."""
        limit = self.config.max_attempts if max_attempts is None else max_attempts
        terminated = (bool(success) and terminate_on_success) or bool(scene_empty)
        return terminated, (not terminated) and attempts >= limit
