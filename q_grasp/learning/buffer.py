"""Replay buffer on preallocated circular arrays, with n-step returns and prioritized replay.

Transitions (s, a, r, s', terminated, truncated) arrive one environment step at a time, per
actor stream. With n > 1 a per-stream window turns them into n-step transitions before they are
stored: R = sum_k gamma^k r_k over at most n steps, s' = the state after the window, `n_steps` =
its real length. A terminated episode stops bootstrapping; a truncated one (time limit) closes
the window early but still bootstraps from its last state.

Image observations are stored compactly: colour channels (named r, g, b by the env's
`image_channels`) as uint8, other channels (height, depth) as float16.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from q_grasp.learning.config import AugmentConfig

COLOR_CHANNELS = ("r", "g", "b")


class ReplayBatch(NamedTuple):
    """A sampled batch (numpy arrays, leading dimension = batch size)."""

    observations: np.ndarray
    """float32 (B, *obs_shape)."""
    actions: np.ndarray
    """int64 (B,)."""
    rewards: np.ndarray
    """float32 (B,): discounted sum of the n-step window's rewards."""
    next_observations: np.ndarray | None
    """float32 (B, *obs_shape): the state after the window (None when sampled without it)."""
    terminated: np.ndarray
    """float32 (B,): 1 where the episode terminated inside the window (no bootstrapping)."""
    truncated: np.ndarray
    """float32 (B,): 1 where a time limit cut the episode inside the window."""
    n_steps: np.ndarray
    """int64 (B,): the window's length k (bootstrap with gamma**k)."""
    weights: np.ndarray
    """float32 (B,): importance weights (all ones without prioritized replay)."""
    indices: np.ndarray
    """int64 (B,): buffer slots, for `update_priorities`."""

    def to_torch(self, device: torch.device | str = "cpu") -> ReplayBatch:
        """The same batch as torch tensors on `device`."""
        return ReplayBatch(*(None if x is None else torch.as_tensor(x, device=device)
                             for x in self))


class ObservationCodec:
    """Stores observations compactly and decodes them back to float32."""

    def __init__(self, shape: Sequence[int], dtype: Any = np.float32,
                 channel_names: Sequence[str] | None = None) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.color_idx: list[int] = []
        self.other_idx: list[int] = list(range(self.shape[0])) if self.shape else []
        self.is_image = len(self.shape) == 3
        if self.is_image and channel_names is not None:
            if len(channel_names) != self.shape[0]:
                raise ValueError(f"channel_names: expected {self.shape[0]} names, got "
                                 f"{list(channel_names)}")
            self.color_idx = [i for i, n in enumerate(channel_names) if n in COLOR_CHANNELS]
            self.other_idx = [i for i, n in enumerate(channel_names) if n not in COLOR_CHANNELS]
        self.raw_dtype = np.dtype(dtype)
        if self.is_image:
            self.other_dtype = np.dtype(np.uint8 if self.raw_dtype == np.uint8 else np.float16)
        else:
            self.other_dtype = np.dtype(np.uint8 if self.raw_dtype == np.uint8 else np.float32)

    def allocate(self, capacity: int) -> dict[str, np.ndarray]:
        parts = {}
        if not self.is_image:
            parts["other"] = np.zeros((capacity, *self.shape), self.other_dtype)
            return parts
        h, w = self.shape[1:]
        if self.color_idx:
            parts["color"] = np.zeros((capacity, len(self.color_idx), h, w), np.uint8)
        if self.other_idx:
            parts["other"] = np.zeros((capacity, len(self.other_idx), h, w), self.other_dtype)
        return parts

    def store(self, parts: dict[str, np.ndarray], idx: int, obs: np.ndarray) -> None:
        obs = np.asarray(obs)
        if obs.shape != self.shape:
            raise ValueError(f"observation: expected shape {self.shape}, got {obs.shape}")
        if not self.is_image:
            parts["other"][idx] = obs
            return
        if self.color_idx:
            color = obs[self.color_idx]
            if color.dtype != np.uint8:
                color = np.clip(np.rint(color * 255.0), 0, 255)
            parts["color"][idx] = color
        if self.other_idx:
            parts["other"][idx] = obs[self.other_idx]

    def load(self, parts: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
        if not self.is_image:
            return parts["other"][idx].astype(np.float32)
        return self.decode({k: v[idx] for k, v in parts.items()})

    def decode(self, sub: dict[str, np.ndarray]) -> np.ndarray:
        """Float32 (B, C, H, W) from gathered parts (possibly augmented)."""
        any_part = next(iter(sub.values()))
        out = np.empty((len(any_part), *self.shape[:1], *any_part.shape[2:]), np.float32)
        if self.color_idx:
            color = sub["color"].astype(np.float32)
            # Divide (not multiply by 1/255) to reproduce the env's x / 255 bit for bit.
            out[:, self.color_idx] = color if self.raw_dtype == np.uint8 else color / 255.0
        if self.other_idx:
            out[:, self.other_idx] = sub["other"].astype(np.float32)
        return out


class SumTree:
    """Binary sum tree over priorities: O(log N) update and prefix-sum sampling (vectorised)."""

    def __init__(self, capacity: int) -> None:
        self.size = 1 << max(0, int(capacity - 1).bit_length())
        self.tree = np.zeros(2 * self.size, np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def set(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        nodes = np.asarray(indices, np.int64) + self.size
        self.tree[nodes] = priorities
        nodes = np.unique(nodes // 2)
        while nodes[0] >= 1:
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]
            if nodes[0] == 1:
                break
            nodes = np.unique(nodes // 2)

    def get(self, indices: np.ndarray) -> np.ndarray:
        return self.tree[np.asarray(indices, np.int64) + self.size]

    def find(self, values: np.ndarray) -> np.ndarray:
        """Leaf index whose prefix-sum interval contains each value in [0, total)."""
        values = np.array(values, np.float64)
        nodes = np.ones(len(values), np.int64)
        while nodes[0] < self.size:
            left = 2 * nodes
            go_right = values >= self.tree[left]
            values -= np.where(go_right, self.tree[left], 0.0)
            nodes = left + go_right
        return nodes - self.size


class ImageAugmenter:
    """Random rotation (multiples of 90 deg), mirror and shift of image + pixel action together.

    Actions index a (R, H, W) Q-map: a = rot*H*W + row*W + col, rotation k = grasp yaw k*pi/R.
    With the camera looking straight down and its image axes along world axes, an image rotated
    by 90 deg shows the scene turned by 90 deg about the vertical, so the same grasp has yaw
    + pi/2 (index + R/2, mod R since yaw is mod pi); a mirror maps yaw to -yaw (index -> -index).
    """

    def __init__(self, cfg: AugmentConfig, image_shape: Sequence[int], n_rotations: int) -> None:
        self.cfg = cfg
        _, self.height, self.width = (int(s) for s in image_shape)
        self.n_rotations = int(n_rotations)
        # Odd quarter turns change the image shape unless square, and need yaw + pi/2 to be one
        # of the discrete rotations.
        quarter_ok = self.height == self.width and (self.n_rotations % 2 == 0)
        self.turns = [0, 1, 2, 3] if (cfg.rotate90 and quarter_ok) else (
            [0, 2] if cfg.rotate90 else [0])

    def __call__(self, parts: dict[str, np.ndarray], next_parts: dict[str, np.ndarray],
                 actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment gathered (B, c, H, W) parts in place; returns the remapped actions."""
        h, w, r_count = self.height, self.width, self.n_rotations
        actions = actions.copy()
        for i in range(len(actions)):
            rot, rest = divmod(int(actions[i]), h * w)
            row, col = divmod(rest, w)
            k = int(rng.choice(self.turns))
            flip_h = bool(self.cfg.flip and rng.random() < 0.5)
            flip_v = bool(self.cfg.flip and rng.random() < 0.5)

            def transform(img: np.ndarray, dy: int, dx: int, k=k, flip_h=flip_h,
                          flip_v=flip_v) -> np.ndarray:
                if k:
                    img = np.rot90(img, k, axes=(1, 2))
                if flip_h:
                    img = img[:, :, ::-1]
                if flip_v:
                    img = img[:, ::-1, :]
                if dy or dx:
                    img = _shift(img, dy, dx)
                return np.ascontiguousarray(img)

            # Same geometry on the pixel action (np.rot90 turns counter-clockwise as displayed:
            # old (row, col) -> new (W-1-col, row)).
            cur_w = w
            for _ in range(k):
                row, col = cur_w - 1 - col, row
                cur_w = h if cur_w == w else w
            if k % 2:
                rot = (rot + r_count // 2) % r_count
            if flip_h:
                col = w - 1 - col
                rot = (-rot) % r_count
            if flip_v:
                row = h - 1 - row
                rot = (-rot) % r_count
            dy = dx = 0
            if self.cfg.translate_px:
                # Shift only so far that the grasp pixel stays in the image.
                t = self.cfg.translate_px
                dy = int(rng.integers(max(-t, -row), min(t, h - 1 - row) + 1))
                dx = int(rng.integers(max(-t, -col), min(t, w - 1 - col) + 1))
            for store in (parts, next_parts):
                for key in store:
                    store[key][i] = transform(store[key][i], dy=dy, dx=dx)
            actions[i] = rot * h * w + (row + dy) * w + (col + dx)
        return actions


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift (c, H, W) content by (dy, dx) pixels, filling with the edge values."""
    _, h, w = img.shape
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    return img[:, rows][:, :, cols]


class ReplayBuffer:
    """Circular replay memory of n-step transitions; thread-safe add/sample/update.

    `add` takes one environment step of one actor `stream` (the ROS trainer passes the actor id),
    `sample` returns a `ReplayBatch`. With `prioritized=True`, sampling is proportional to
    (|td error| + eps)^alpha and `update_priorities` must be called with the batch's TD errors.
    """

    def __init__(self, capacity: int, obs_shape: Sequence[int], obs_dtype: Any = np.float32, *,
                 n_steps: int = 1, gamma: float = 0.99, prioritized: bool = False,
                 alpha: float = 0.6, priority_eps: float = 1e-3,
                 channel_names: Sequence[str] | None = None,
                 augment: AugmentConfig | None = None, n_actions: int | None = None,
                 seed: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: must be >= 1, got {capacity}")
        if n_steps < 1:
            raise ValueError(f"n_steps: must be >= 1, got {n_steps}")
        self.capacity = int(capacity)
        self.n_steps = int(n_steps)
        self.gamma = float(gamma)
        self.prioritized = bool(prioritized)
        self.alpha = float(alpha)
        self.priority_eps = float(priority_eps)
        self.codec = ObservationCodec(obs_shape, obs_dtype, channel_names)
        self.obs = self.codec.allocate(self.capacity)
        self.next_obs = self.codec.allocate(self.capacity)
        self.actions = np.zeros(self.capacity, np.int64)
        self.rewards = np.zeros(self.capacity, np.float32)
        self.terminated = np.zeros(self.capacity, np.bool_)
        self.truncated = np.zeros(self.capacity, np.bool_)
        self.steps = np.ones(self.capacity, np.int16)
        self.pos = 0
        self.size = 0
        self.added = 0
        self.rng = np.random.default_rng(seed)
        self.tree = SumTree(self.capacity) if self.prioritized else None
        self.max_priority = 1.0
        self._pending: dict[Any, deque] = {}
        self._lock = threading.Lock()
        self.augmenter = None
        if augment is not None and augment.enabled:
            if not self.codec.is_image:
                raise ValueError("buffer.augment: needs image observations (C, H, W)")
            hw = self.codec.shape[1] * self.codec.shape[2]
            if n_actions is None or n_actions % hw:
                raise ValueError(f"buffer.augment: needs Discrete(R*H*W) pixel actions, got "
                                 f"n_actions={n_actions} for {self.codec.shape[1:]} images")
            self.augmenter = ImageAugmenter(augment, self.codec.shape, n_actions // hw)

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        """Bytes held by the preallocated arrays."""
        arrays = [*self.obs.values(), *self.next_obs.values(), self.actions, self.rewards,
                  self.terminated, self.truncated, self.steps]
        total = sum(a.nbytes for a in arrays)
        return total + (self.tree.tree.nbytes if self.tree is not None else 0)

    def add(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray,
            terminated: bool, truncated: bool, stream: Any = 0) -> None:
        """Add one environment step of actor `stream` (stores 0..n n-step transitions)."""
        with self._lock:
            if self.n_steps == 1:
                self._store(obs, action, reward, next_obs, terminated, truncated, 1)
                return
            window = self._pending.setdefault(stream, deque())
            window.append((np.array(obs, copy=True), int(action), float(reward)))
            if terminated or truncated:
                while window:
                    self._emit(window, next_obs, terminated, truncated)
                return
            if len(window) == self.n_steps:
                self._emit(window, next_obs, False, False)

    def end_stream(self, stream: Any = 0, last_obs: np.ndarray | None = None) -> None:
        """An actor stopped mid-episode: store its open windows as truncated (or drop them)."""
        with self._lock:
            window = self._pending.pop(stream, None)
            while window and last_obs is not None:
                self._emit(window, last_obs, False, True)

    def _emit(self, window: deque, next_obs: np.ndarray, terminated: bool,
              truncated: bool) -> None:
        ret = 0.0
        for k, (_, _, r) in enumerate(window):
            ret += (self.gamma ** k) * r
        obs, action, _ = window[0]
        self._store(obs, action, ret, next_obs, terminated, truncated, len(window))
        window.popleft()

    def _store(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray,
               terminated: bool, truncated: bool, n: int) -> None:
        i = self.pos
        self.codec.store(self.obs, i, obs)
        self.codec.store(self.next_obs, i, next_obs)
        self.actions[i] = action
        self.rewards[i] = reward
        self.terminated[i] = terminated
        self.truncated[i] = truncated
        self.steps[i] = n
        if self.tree is not None:
            self.tree.set(np.array([i]), np.array([self.max_priority]))
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.added += 1

    def sample(self, batch_size: int, beta: float = 1.0, next_obs: bool = True) -> ReplayBatch:
        """Uniform (or prioritized, importance weights with exponent `beta`) sample;
        ``next_obs=False`` leaves next_observations None (nothing bootstraps at gamma 0, and
        decoding them is a third of the sample's cost)."""
        with self._lock:
            if self.size == 0:
                raise ValueError("sample: the replay buffer is empty")
            if self.tree is None:
                idx = self.rng.integers(0, self.size, size=batch_size)
                weights = np.ones(batch_size, np.float32)
            else:
                total = self.tree.total
                # Stratified: one draw per equal slice of the priority mass.
                bounds = (np.arange(batch_size) + self.rng.random(batch_size)) / batch_size
                idx = np.minimum(self.tree.find(bounds * total), self.size - 1)
                probs = self.tree.get(idx) / total
                weights = (self.size * np.maximum(probs, 1e-12)) ** (-beta)
                weights = (weights / weights.max()).astype(np.float32)
            actions = self.actions[idx]
            if self.augmenter is None:
                obs = self.codec.load(self.obs, idx)
                next_batch = self.codec.load(self.next_obs, idx) if next_obs else None
            else:
                parts = {k: v[idx] for k, v in self.obs.items()}
                next_parts = ({k: v[idx] for k, v in self.next_obs.items()} if next_obs
                              else {})  # the same random draws either way
                actions = self.augmenter(parts, next_parts, actions, self.rng)
                obs = self.codec.decode(parts)
                next_batch = self.codec.decode(next_parts) if next_obs else None
            return ReplayBatch(
                obs, actions.astype(np.int64), self.rewards[idx].copy(), next_batch,
                self.terminated[idx].astype(np.float32), self.truncated[idx].astype(np.float32),
                self.steps[idx].astype(np.int64), weights, idx.astype(np.int64))

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Set priorities (|td| + eps)^alpha of sampled slots (no-op without PER)."""
        if self.tree is None:
            return
        prio = (np.abs(np.asarray(td_errors, np.float64)) + self.priority_eps) ** self.alpha
        with self._lock:
            # Keep the last value for a slot sampled twice (np.unique keeps the first).
            order = np.arange(len(indices))[::-1]
            uniq, first = np.unique(np.asarray(indices)[order], return_index=True)
            self.tree.set(uniq, prio[order][first])
            self.max_priority = max(self.max_priority, float(prio.max()))

    # Persistence (safetensors-friendly flat dict of arrays) for resuming a run.
    def state_dict(self) -> dict[str, np.ndarray]:
        with self._lock:
            state = {f"obs.{k}": v[: self.size] for k, v in self.obs.items()}
            state.update({f"next_obs.{k}": v[: self.size] for k, v in self.next_obs.items()})
            for name in ("actions", "rewards", "terminated", "truncated", "steps"):
                state[name] = getattr(self, name)[: self.size]
            state["counters"] = np.array([self.pos, self.size, self.added], np.int64)
            if self.tree is not None:
                state["priorities"] = self.tree.get(np.arange(self.size))
                state["max_priority"] = np.array([self.max_priority])
            return {k: np.ascontiguousarray(v) for k, v in state.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        with self._lock:
            pos, size, added = (int(x) for x in state["counters"])
            if size > self.capacity:
                raise ValueError(f"replay buffer state holds {size} transitions, more than the "
                                 f"capacity {self.capacity}")
            for prefix, store in (("obs", self.obs), ("next_obs", self.next_obs)):
                for k, v in store.items():
                    src = state[f"{prefix}.{k}"]
                    if src.shape[1:] != v.shape[1:]:
                        raise ValueError(f"replay buffer state: {prefix}.{k} has shape "
                                         f"{src.shape[1:]}, expected {v.shape[1:]}")
                    v[:size] = src
            for name in ("actions", "rewards", "terminated", "truncated", "steps"):
                getattr(self, name)[:size] = state[name]
            self.pos, self.size, self.added = pos % self.capacity, size, added
            if self.tree is not None:
                prio = state.get("priorities")
                self.tree.set(np.arange(size), prio if prio is not None else np.ones(size))
                self.max_priority = float(state.get("max_priority", np.ones(1))[0])
