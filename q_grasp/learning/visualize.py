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
                  action: tuple[int, int, int] | None = None, scale: int = 4) -> np.ndarray:
    """Max-over-rotations Q-map as a heat map over the camera image, the grasp marked.

    The grasp is drawn as a line along the finger closing direction (yaw = rot * pi / R,
    drawn in image axes, which match the world axes for an axis-aligned top-down camera).
    """
    base = camera_image(obs, channel_names)
    q_max = q_map.max(axis=0)
    lo, hi = float(q_max.min()), float(q_max.max())
    norm = (q_max - lo) / (hi - lo) if hi > lo else np.zeros_like(q_max)
    heat = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    img = (0.5 * base + 0.5 * heat).astype(np.uint8)
    h, w = img.shape[:2]
    img = cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    if action is not None:
        rot, row, col = action
        centre = np.array([(col + 0.5) * scale, (row + 0.5) * scale])
        yaw = rot * np.pi / q_map.shape[0]
        d = np.array([np.cos(yaw), -np.sin(yaw)]) * 3 * scale
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
