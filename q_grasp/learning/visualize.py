"""Pictures of a policy: episode GIFs and Q-maps drawn over the camera image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

COLOR_CHANNELS = ("r", "g", "b")


def save_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float = 10.0) -> Path:
    """Write uint8 (H, W, 3) frames as an animated GIF."""
    if not frames:
        raise ValueError("save_gif: no frames to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:],
                   duration=max(int(1000 / fps), 20), loop=0)
    return path


def camera_image(obs: np.ndarray, channel_names: Sequence[str] | None) -> np.ndarray:
    """uint8 (H, W, 3) picture of a (C, H, W) observation: RGB if present, else height as grey."""
    names = list(channel_names or [])
    if all(c in names for c in COLOR_CHANNELS):
        rgb = np.stack([obs[names.index(c)] for c in COLOR_CHANNELS], axis=-1)
        return np.clip(rgb * 255.0, 0, 255).astype(np.uint8)
    chan = obs[0]
    lo, hi = float(chan.min()), float(chan.max())
    grey = (chan - lo) / (hi - lo) if hi > lo else np.zeros_like(chan)
    return np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=-1)


def q_map_overlay(obs: np.ndarray, q_map: np.ndarray, channel_names: Sequence[str] | None,
                  action: tuple[int, int, int] | None = None, scale: int = 4,
                  closing_dir_px: tuple[float, float] | None = None,
                  reachable: np.ndarray | None = None) -> np.ndarray:
    """Max-over-rotations Q-map as a heat map over the camera image, the grasp marked.

    The grasp is drawn as a line along the finger closing direction: `closing_dir_px` (d_col,
    d_row) when the caller knows the camera (see `closing_direction_px`), else yaw = rot*pi/R
    drawn as if image x were world x. `reachable` (H, W bool): pixels outside it (grasps the
    arm cannot reach, never chosen) show the darkened camera image, and the colour scale
    spans the reachable pixels only.
    """
    base = camera_image(obs, channel_names)
    q_max = q_map.max(axis=0)
    inside = None if reachable is None or not np.any(reachable) else np.asarray(reachable, bool)
    shown = q_max if inside is None else q_max[inside]
    lo, hi = float(shown.min()), float(shown.max())
    norm = np.clip((q_max - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(q_max)
    heat = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    img = (0.5 * base + 0.5 * heat).astype(np.uint8)
    if inside is not None:
        img[~inside] = (0.35 * base[~inside]).astype(np.uint8)
    h, w = img.shape[:2]
    img = cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    if action is not None:
        rot, row, col = action
        centre = np.array([(col + 0.5) * scale, (row + 0.5) * scale])
        if closing_dir_px is None:
            yaw = rot * np.pi / q_map.shape[0]
            closing_dir_px = (np.cos(yaw), -np.sin(yaw))
        d = np.asarray(closing_dir_px, float)
        d = d / max(np.linalg.norm(d), 1e-9) * 3 * scale
        p1, p2 = (centre - d).astype(int), (centre + d).astype(int)
        img = np.ascontiguousarray(img)
        cv2.line(img, tuple(int(x) for x in p1), tuple(int(x) for x in p2), (255, 255, 255), 2)
        cv2.circle(img, tuple(int(x) for x in centre), scale, (255, 255, 255), 1)
    cv2.putText(img, f"Q {lo:.2f}..{hi:.2f}", (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (255, 255, 255), 1)
    return img


def save_png(img: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(img, np.uint8)).save(path)
    return path


def closing_direction_px(env, row: int, col: int, yaw_rad: float) -> tuple[float, float] | None:
    """(d_col, d_row) image direction of the world closing direction (cos yaw, sin yaw, 0) at a
    pixel, from a q_grasp grasp env's camera; None if the env has no such camera."""
    u = getattr(env, "unwrapped", env)
    camera = getattr(u, "camera", None)
    to_world = getattr(u, "pixel_to_world", None)
    if camera is None or to_world is None:
        return None
    try:
        p0 = np.asarray(to_world(row, col), float)
        p1 = p0 + 0.01 * np.array([np.cos(yaw_rad), np.sin(yaw_rad), 0.0])
        u0, v0, _ = camera.world_to_pixel(p0)
        u1, v1, _ = camera.world_to_pixel(p1)
    except (AttributeError, ValueError, IndexError):
        return None
    return float(u1 - u0), float(v1 - v0)
