"""Top-down grasping as a gymnasium env: observe a top-down RGB-D image, choose a pixel and a
gripper rotation, and the simulated NURO arm grasps there (pixel -> world -> IK -> pre-grasp ->
descend -> close -> lift, with physics). Reward 1 when an object is held after lifting.
The env drives ``q_grasp.tasks.grasp.GraspTask`` (the code the policy node runs) on the
simulated arm and camera, and adds what only a simulator knows (scene resets, ground truth).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np

from q_grasp.envs._config import check_render_mode, resolve_env_config
from q_grasp.robot_config import RobotConfig
from q_grasp.sim.bullet import BulletSim, BulletSimConfig
from q_grasp.sim.camera import CameraConfig, PinholeCamera
from q_grasp.sim.object_sets import object_set, overlap
from q_grasp.sim.robot import SimRobot, SimRobotConfig
from q_grasp.sim.scene import PRIMITIVE_SHAPES, Scene, SceneConfig, resolve_object_files
from q_grasp.skills.grasp import GraspOutcome, GraspSkillConfig
from q_grasp.skills.reach import TopDownReach
from q_grasp.tasks.grasp import OBSERVATION_CHANNELS, GraspTask

LIFTED_CLEARANCE_M = 0.005
"""Ground truth counts an object as lifted when its lowest point is this far above the table
(and it touches a finger). An object held by one corner may hang low, so this is small."""
MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 512


@dataclass
class GraspConfig:
    """Parameters of the top-down grasping task (TopDownGraspEnv)."""

    observation: str = "rgbd"
    """Image channels: "rgb" (r, g, b in [0, 1]), "depth" (height above the table in metres) or
    "rgbd" (r, g, b, height)."""
    randomize_lighting: bool = False
    """Domain randomisation: a new light direction, colour and strength every episode."""
    table_color_jitter: float = 0.0
    """Domain randomisation: each table colour channel moves by up to this (0..1) per episode."""
    camera_pose_noise_m: float = 0.0
    """Domain randomisation: the rendering camera moves by up to this (m) per axis every
    episode, while grasps are aimed with the nominal camera (a calibration that is off)."""
    camera_angle_noise_deg: float = 0.0
    """Domain randomisation: ... and its viewing direction turns by up to this (degrees)."""
    depth_source: str = "camera"
    """Where a chosen pixel's grasp point comes from: "camera" (the depth image) or
    "table_plane" (the pixel's ray meets the table: a colour-only camera such as the NURO kit's
    webcam; needs observation "rgb")."""
    image_size: tuple[int, int] = (64, 64)
    """Observation size (height, width) in pixels, 16..512 each."""
    num_rotations: int = 8
    """Gripper rotations R: action rotation k means yaw k*pi/R (1 = plain pixel actions)."""
    min_objects: int = 1
    """Fewest objects in a new scene."""
    max_objects: int = 1
    """Most objects in a new scene."""
    shapes: tuple[str, ...] = PRIMITIVE_SHAPES
    """Primitive shapes to spawn: any of "cube", "cuboid", "cylinder"."""
    object_files: tuple[str, ...] = ()
    """URDF files or folders of them; when given, objects come from these instead of shapes."""
    scale_to_fit: bool = False
    """Scale URDF objects so that the gripper (6 cm aperture) can close across them."""
    object_set: str = ""
    """A named object set (``q_grasp.sim.object_sets``: primitives, train, held_out) instead of
    shapes/object_files; its meshes are scaled to fit the gripper."""
    held_out_set: str = ""
    """A named set kept for evaluation: objects of this config that are in it are an error
    (so a training run never sees them)."""
    min_grasp_height_m: float = 0.0
    """When > 0: the action mask also leaves out pixels less than this high above the table
    (bare table: nothing to grasp there), and an episode ends (truncated, info
    ``nothing_graspable``) when no reachable pixel is left. Needs heights (not table_plane)."""
    max_attempts: int = 5
    """Grasp attempts per episode before it is truncated."""
    workspace_x_m: tuple[float, float] = (0.10, 0.16)
    """Range (m) of object centres along world x (forward from the robot)."""
    workspace_y_m: tuple[float, float] = (-0.05, 0.05)
    """Range (m) of object centres along world y."""
    camera_height_m: float = 0.25
    """Height (m) of the top-down camera above the workspace centre."""
    view_margin_m: float = 0.03
    """The camera sees the workspace plus this margin (m) on every side (objects near an edge
    stick out of the workspace by up to half their size)."""
    remove_objects_out_of_view: bool = True
    """Objects pushed out of the camera's view are removed (they can no longer be grasped)."""
    remove_objects_outside_workspace_m: float | None = 0.01
    """Objects whose centre is pushed more than this (m) outside the workspace are removed
    after an attempt, as if they fell off a tray: the workspace is what the arm reaches
    top-down, so they could not be grasped again. None keeps them."""
    action_mask: bool = True
    """Put ``info["action_mask"]`` (int8, one entry per action, 1 = allowed; the gymnasium
    convention) in every reset and step: the grasps whose surface point the arm can reach
    top-down (``q_grasp.skills.reach.TopDownReach``, built from the project's IK once per
    process, a few seconds). Agents that honour it never waste an attempt out of reach."""
    settle_steps: int = 60
    """Physics steps after each attempt so that dropped or pushed objects come to rest."""
    render_size: tuple[int, int] = (240, 320)
    """Size (height, width) of render() frames."""
    seed: int | None = None
    """Seed used by the first reset() when none is passed to it."""
    gui: bool = False
    """Open pybullet's GUI window (for watching; images are rendered the same way)."""
    robot: RobotConfig = field(default_factory=RobotConfig)
    """The arm."""
    skill: GraspSkillConfig = field(default_factory=GraspSkillConfig)
    """Heights, depths and the success threshold of the grasp motion."""
    physics: BulletSimConfig = field(default_factory=BulletSimConfig)
    """Simulator time step and solver settings."""
    motors: SimRobotConfig = field(default_factory=SimRobotConfig)
    """How the simulator drives the arm and gripper."""
    object_width_m: tuple[float, float] = (0.015, 0.04)
    """Range of the width the gripper closes across (cube side, cuboid width, cylinder
    diameter; URDF objects with scale_to_fit)."""
    object_height_m: tuple[float, float] = (0.02, 0.045)
    """Range of cuboid and cylinder heights (m)."""
    cuboid_length_m: tuple[float, float] = (0.04, 0.075)
    """Range of cuboid lengths (m); those longer than the 6 cm aperture must be grasped
    across, which makes the rotation part of the action matter."""

    def __post_init__(self) -> None:
        if self.observation not in OBSERVATION_CHANNELS:
            raise ValueError(f"observation: must be one of {list(OBSERVATION_CHANNELS)}, got "
                             f"{self.observation!r}")
        for name, high in (("table_color_jitter", 0.5), ("camera_pose_noise_m", 0.05),
                           ("camera_angle_noise_deg", 10.0)):
            if not 0.0 <= getattr(self, name) <= high:
                raise ValueError(f"{name}: must be in [0, {high}], got {getattr(self, name)}")
        if self.depth_source not in ("camera", "table_plane"):
            raise ValueError(f"depth_source: must be 'camera' or 'table_plane', got "
                             f"{self.depth_source!r}")
        if self.depth_source == "table_plane" and self.observation != "rgb":
            raise ValueError(f"depth_source: 'table_plane' knows no heights: needs observation "
                             f"'rgb', got {self.observation!r}")
        size = tuple(self.image_size) if np.ndim(self.image_size) else (self.image_size,) * 2
        if len(size) != 2:
            raise ValueError(f"image_size: expected (height, width), got {self.image_size!r}")
        for s in size:
            if int(s) != s or not MIN_IMAGE_SIZE <= s <= MAX_IMAGE_SIZE:
                raise ValueError(f"image_size: must be >= {MIN_IMAGE_SIZE} and <= "
                                 f"{MAX_IMAGE_SIZE} pixels, got {s}")
        self.image_size = (int(size[0]), int(size[1]))
        if int(self.num_rotations) != self.num_rotations or not 1 <= self.num_rotations <= 64:
            raise ValueError(f"num_rotations: must be an integer in [1, 64], got "
                             f"{self.num_rotations}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"min_objects/max_objects: need 1 <= min_objects <= max_objects, "
                             f"got {self.min_objects}, {self.max_objects}")
        if self.max_objects > 20:
            raise ValueError(f"max_objects: must be <= 20, got {self.max_objects}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts: must be >= 1, got {self.max_attempts}")
        if not 0.05 <= self.camera_height_m <= 2.0:
            raise ValueError(f"camera_height_m: must be in [0.05, 2.0] m, got "
                             f"{self.camera_height_m}")
        if not 0.0 <= self.view_margin_m <= 0.5:
            raise ValueError(f"view_margin_m: must be in [0, 0.5] m, got {self.view_margin_m}")
        margin = self.remove_objects_outside_workspace_m
        if margin is not None and not 0.0 <= margin <= 1.0:
            raise ValueError(f"remove_objects_outside_workspace_m: must be None or in [0, 1] m,"
                             f" got {margin}")
        if self.settle_steps < 0:
            raise ValueError(f"settle_steps: must be >= 0, got {self.settle_steps}")
        if len(self.render_size) != 2 or min(self.render_size) < 1:
            raise ValueError(f"render_size: expected (height, width) >= 1 pixel, got "
                             f"{self.render_size!r}")
        self.shapes = tuple(self.shapes)
        self.object_files = tuple(self.object_files)
        if not 0.0 <= self.min_grasp_height_m <= 0.05:
            raise ValueError(f"min_grasp_height_m: must be in [0, 0.05] m, got "
                             f"{self.min_grasp_height_m}")
        if self.min_grasp_height_m > 0.0 and self.depth_source == "table_plane":
            raise ValueError("min_grasp_height_m: needs heights; depth_source 'table_plane' has "
                             "none")
        # Validates workspace, shapes, sizes, object_set and object_files.
        scene = self.scene_config().resolved()
        if self.held_out_set:
            held_out = object_set(self.held_out_set).files
            if self.held_out_set == self.object_set:
                raise ValueError(f"held_out_set: {self.held_out_set!r} is also the object_set")
            both = overlap(resolve_object_files(scene.object_files), held_out)
            if both:
                raise ValueError(f"object_files: {len(both)} file(s) of the training objects are "
                                 f"in held_out_set {self.held_out_set!r}, e.g. {both[0]}")

    def scene_config(self) -> SceneConfig:
        """The SceneConfig these parameters describe."""
        return SceneConfig(
            workspace_x_m=tuple(self.workspace_x_m), workspace_y_m=tuple(self.workspace_y_m),
            num_objects=(self.min_objects, self.max_objects), shapes=self.shapes,
            width_m=tuple(self.object_width_m), height_m=tuple(self.object_height_m),
            cuboid_length_m=tuple(self.cuboid_length_m), object_set=self.object_set,
            object_files=self.object_files, scale_to_fit=self.scale_to_fit,
        )

    def camera_config(self) -> CameraConfig:
        """A camera looking straight down at the workspace centre, image up = world +x, with a
        field of view that covers the workspace plus view_margin_m."""
        h, w = self.image_size
        cx = 0.5 * (self.workspace_x_m[0] + self.workspace_x_m[1])
        cy = 0.5 * (self.workspace_y_m[0] + self.workspace_y_m[1])
        half_x = 0.5 * (self.workspace_x_m[1] - self.workspace_x_m[0]) + self.view_margin_m
        half_y = 0.5 * (self.workspace_y_m[1] - self.workspace_y_m[0]) + self.view_margin_m
        # Image rows run along world x, columns along world y.
        tan_half = max(half_x, half_y * h / w) / self.camera_height_m
        return CameraConfig(
            width=w, height=h, fov_y_deg=math.degrees(2.0 * math.atan(tan_half)),
            position=(cx, cy, self.camera_height_m), target=(cx, cy, 0.0),
            up_vector=(1.0, 0.0, 0.0), near_m=0.05, far_m=self.camera_height_m + 0.25,
        )


class TopDownGraspEnv(gymnasium.Env):
    """Top-down grasping with the simulated NURO arm.

    Observation: float32 (C, H, W), channels ``image_channels`` (see GraspConfig.observation).
    Action: Discrete(R*H*W), index = rot*H*W + row*W + col; rotation k is gripper yaw k*pi/R.
    The chosen pixel's surface point (camera model + depth) is the grasp target; the arm runs
    ``q_grasp.skills.grasp.execute_grasp``. Reward 1 when the gripper aperture after lifting says
    an object is held; that object is then removed. Terminated when the scene is empty,
    truncated after ``max_attempts`` attempts. Construct with a GraspConfig, keyword overrides
    of its fields, or both: ``TopDownGraspEnv(image_size=(32, 32), num_rotations=4)``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, config: GraspConfig | None = None, render_mode: str | None = None,
                 **overrides: Any) -> None:
        config = resolve_env_config(GraspConfig, config, overrides, "TopDownGraspEnv")
        check_render_mode(render_mode, self.metadata)
        self.config = config
        self.render_mode = render_mode
        self.task = GraspTask(config)
        self.image_channels: tuple[str, ...] = self.task.channels
        self.num_rotations = self.task.num_rotations
        self.height, self.width = self.task.height, self.task.width

        self.camera = PinholeCamera(config.camera_config())
        # What renders the observation: the nominal camera, or a perturbed one per episode.
        self._render_camera = self.camera
        self._lighting: dict | None = None
        rh, rw = config.render_size
        self.render_camera = PinholeCamera(CameraConfig(
            width=int(rw), height=int(rh), fov_y_deg=45.0, position=(0.32, -0.24, 0.22),
            target=(0.09, 0.0, 0.05), up_vector=(0.0, 0.0, 1.0), near_m=0.02, far_m=3.0,
        ))
        self.chain = self.task.chain
        self.sim = BulletSim(gui=config.gui, seed=config.seed, config=config.physics)
        self.robot = SimRobot(self.sim, config.robot, config.motors)
        self.scene = Scene(self.sim, config.scene_config())
        self.observation_space = self.task.observation_space
        self.action_space = self.task.action_space

        self._rgb = np.zeros((self.height, self.width, 3), dtype=np.uint8)
        self._depth = np.zeros((self.height, self.width), dtype=np.float32)
        self._heightmap = np.zeros((self.height, self.width), dtype=np.float32)
        self._attempts = 0
        self._needs_reset = True
        self._first_reset = True

    # ----------------------------------------------------------------------------- actions
    def decode_action(self, action: int | np.integer) -> tuple[int, int, int]:
        """Action index -> (rotation index, row, col)."""
        return self.task.decode_action(action)

    def encode_action(self, rot: int, row: int, col: int) -> int:
        """(rotation index, row, col) -> action index."""
        return self.task.encode_action(rot, row, col)

    def rotation_yaw(self, rot: int) -> float:
        """Gripper yaw (rad, world frame) of rotation index ``rot``."""
        return self.task.rotation_yaw(rot)

    def pixel_to_world(self, row: int, col: int) -> np.ndarray:
        """World point (m) of the surface seen at pixel (row, col) of the current observation."""
        return self.camera.pixel_to_world(col, row, float(self._depth[row, col]))

    @property
    def reach(self) -> TopDownReach:
        """Where this arm's top-down grasp can run (built on first use, cached per process)."""
        return self.task.reach

    def surface_points(self) -> np.ndarray:
        """World points (H, W, 3) (m) of the surface seen at every pixel of the observation."""
        return self.camera.surface_points(self._depth)

    def action_mask(self) -> np.ndarray:
        """int8 (R*H*W,): 1 for the actions of the current observation the arm can reach."""
        return self.task.action_mask(self.camera, self._depth).astype(np.int8)

    def _add_action_mask(self, info: dict[str, Any]) -> None:
        if self.config.action_mask:
            info["action_mask"] = self.action_mask()

    # ----------------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None and self._first_reset:
            seed = self.config.seed
        self._first_reset = False
        super().reset(seed=seed)
        options = options or {}
        # A fresh physics world every episode: a scene's outcome then depends only on the seed,
        # not on what earlier episodes left in pybullet's caches.
        self.sim.reset()
        self.robot.load()
        self.scene.forget()
        num = options.get("num_objects")
        if num is not None and not 1 <= int(num) <= 50:
            raise ValueError(f"options['num_objects']: must be in [1, 50], got {num}")
        objects = self.scene.spawn(self.np_random, None if num is None else int(num))
        self._randomize_appearance()
        self._attempts = 0
        self._needs_reset = False
        obs = self._observe()
        info: dict[str, Any] = {"num_objects": len(objects)}
        self._add_action_mask(info)
        return obs, info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError("step() called before reset() or after the episode ended")
        target = self.task.grasp_target(self.camera, self._depth, action)
        lifted: list[int] = []

        def after_lift(outcome: GraspOutcome) -> None:
            lifted.extend(self._lifted_objects())
            if outcome.success:
                # The robot would put a held object away; here it leaves the scene.
                for body in lifted:
                    self.scene.remove(body)

        outcome = self.task.execute(self.robot, target, self.robot.home_positions, after_lift)
        if outcome.ik_success:
            self.sim.step(self.config.settle_steps)
        removed = self._remove_lost_objects()
        self._attempts += 1
        obs = self._observe()
        reward = self.task.reward(outcome)
        terminated, truncated = self.task.episode_end(
            outcome.success, scene_empty=len(self.scene.objects) == 0, attempts=self._attempts)
        # Objects left, but none that the camera shows within reach: stop instead of grasping
        # at the table (the policy's own view decides, as on a real arm).
        mask = self.action_mask() if self.config.action_mask else None
        nothing = not terminated and self.task.nothing_graspable(self.camera, self._depth, mask)
        truncated = truncated or nothing
        self._needs_reset = terminated or truncated
        row, col, rot, point = target.row, target.col, target.rotation, target.point_m
        info = {
            "is_success": bool(outcome.success),
            "grasp_pixel": (int(row), int(col)),
            "grasp_rotation": int(rot),
            "grasp_yaw_rad": float(outcome.yaw_rad),
            "grasp_position_m": point,
            "tcp_target_m": outcome.grasp_position_m,
            "ik_success": bool(outcome.ik_success),
            "aperture_m": float(outcome.aperture_m),
            "object_lifted_ground_truth": len(lifted) > 0,
            "lifted_object_ids": list(lifted),
            "objects_removed_out_of_reach": removed,
            "num_objects": len(self.scene.objects),
            "attempts": self._attempts,
            "message": outcome.message,
            "nothing_graspable": nothing,
        }
        if self.config.action_mask:
            info["action_mask"] = mask
        return obs, reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """An RGB frame (H, W, 3) uint8 from a camera beside the robot (render_mode
        "rgb_array"); None without a render mode."""
        if self.render_mode != "rgb_array":
            return None
        rgb, _ = self.render_camera.render(self.sim)
        return rgb

    def close(self) -> None:
        if getattr(self, "sim", None) is not None:
            self.sim.close()
            self.sim = None

    # ----------------------------------------------------------------------------- internals
    @property
    def heightmap(self) -> np.ndarray:
        """Height above the table (m) per pixel of the current observation."""
        return self._heightmap

    @property
    def rgb_image(self) -> np.ndarray:
        """RGB image (H, W, 3) uint8 of the current observation."""
        return self._rgb

    def _randomize_appearance(self) -> None:
        """The domain randomisation options, drawn once per episode from the env's stream."""
        cfg, rng = self.config, self.np_random
        if cfg.randomize_lighting:
            direction = rng.normal(size=3)
            direction[2] = abs(direction[2]) + 0.5  # from above the table
            self._lighting = {
                "lightDirection": (direction / np.linalg.norm(direction)).tolist(),
                "lightColor": rng.uniform(0.8, 1.0, 3).tolist(),
                "lightAmbientCoeff": float(rng.uniform(0.4, 0.8)),
                "lightDiffuseCoeff": float(rng.uniform(0.3, 0.7)),
                "lightSpecularCoeff": float(rng.uniform(0.0, 0.1))}
        if cfg.table_color_jitter > 0.0:
            base = np.asarray(self.sim.config.table_rgba[:3])
            color = np.clip(base + rng.uniform(-1, 1, 3) * cfg.table_color_jitter, 0.0, 1.0)
            self.sim.client.changeVisualShape(self.sim.table_id, -1,
                                              rgbaColor=[*color.tolist(), 1.0])
        if cfg.camera_pose_noise_m > 0.0 or cfg.camera_angle_noise_deg > 0.0:
            nominal = cfg.camera_config()
            position = np.asarray(nominal.position) + rng.uniform(-1, 1, 3) * (
                cfg.camera_pose_noise_m)
            axis = np.asarray(nominal.target) - np.asarray(nominal.position)
            tilt = np.radians(cfg.camera_angle_noise_deg) * rng.uniform(-1, 1, 2)
            target = position + axis + np.linalg.norm(axis) * np.array([*np.tan(tilt), 0.0])
            self._render_camera = PinholeCamera(dataclasses.replace(
                nominal, position=tuple(position.tolist()), target=tuple(target.tolist())))

    def _observe(self) -> np.ndarray:
        self._rgb, self._depth = self._render_camera.render(self.sim, self._lighting)
        self._depth = self.task.depth(self.camera, self._depth)
        heights = self.camera.heightmap(self._depth)
        self._heightmap = np.clip(heights, 0.0, self.config.camera_height_m)
        return self.task.observation(self._rgb, heights)

    def _lifted_objects(self) -> list[int]:
        """Ground truth (simulator only): objects touching a finger and clear of the table."""
        c = self.sim.client
        fingers = set(self.robot.finger_link_indices)
        lifted = []
        for body in self.scene.object_ids:
            lo, _ = self.scene.object_aabb(body)
            if lo[2] < LIFTED_CLEARANCE_M or c.getContactPoints(bodyA=self.sim.table_id,
                                                                bodyB=body):
                continue
            contacts = c.getContactPoints(bodyA=self.robot.body_id, bodyB=body)
            if any(contact[3] in fingers for contact in contacts):
                lifted.append(body)
        return lifted

    def _remove_lost_objects(self) -> list[int]:
        """Remove objects pushed out of view, off the table or out of the workspace."""
        cfg = self.config
        margin = cfg.remove_objects_outside_workspace_m
        removed = []
        for body, (pos, _) in self.scene.object_poses().items():
            u, v, d = self.camera.world_to_pixel(pos)
            in_view = d > 0 and -0.5 <= u <= self.width - 0.5 and -0.5 <= v <= self.height - 0.5
            lost = pos[2] < -0.05 or (cfg.remove_objects_out_of_view and not in_view)
            if margin is not None:
                (x0, x1), (y0, y1) = cfg.workspace_x_m, cfg.workspace_y_m
                lost = lost or not (x0 - margin <= pos[0] <= x1 + margin
                                    and y0 - margin <= pos[1] <= y1 + margin)
            if lost:
                self.scene.remove(body)
                removed.append(body)
        return removed
