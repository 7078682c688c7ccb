"""Q-networks: an MLP for vector observations and a U-Net that maps an image to a Q-map.

Networks are plain `nn.Module`s that never own an optimizer. Each keeps its constructor
arguments as a JSON-able dict in `net.config`, so `build_network(kind, config)` rebuilds it from
a checkpoint alone. `predict` wrappers take numpy observations and return numpy actions (eval
mode, no gradients).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from q_grasp.learning.config import NetworkConfig

NETWORK_KINDS = ("mlp", "unet")
COLOR_CHANNELS = ("r", "g", "b")
MAX_Q_SAMPLES = 4
"""U-Net updates estimate the logged mean max-Q on this many batch samples: it needs full
Q-maps, which the update itself does not (and the equivariant net runs once per rotation)."""
_MODE_DEPENDENT = (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd)
_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU}
_ACTIVATION_FNS = {"relu": torch.relu, "tanh": torch.tanh, "elu": F.elu, "gelu": F.gelu}


class _Predictor(nn.Module):
    """numpy in, numpy out; eval mode and no_grad for acting."""

    config: dict[str, Any]
    kind: str

    @property
    def n_actions(self) -> int:
        raise NotImplementedError

    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, n_actions) Q-values in the env's flat action order."""
        return self(obs).flatten(1)

    def acting_q_values(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, n_actions) values that acting takes the argmax of (``predict``); the Q-values
        themselves unless a network says otherwise."""
        return self.q_values(obs)

    def q_taken_and_max(self, obs: torch.Tensor, actions: torch.Tensor, with_max: bool = True
                        ) -> tuple[torch.Tensor, float | None]:
        """Q(obs, action) (B,) with gradients, and the batch mean of max_a Q (no gradients;
        None unless ``with_max``, for networks where it costs extra passes): what a TD update
        needs."""
        q_all = self.q_values(obs)
        q_taken = q_all.gather(1, actions.long().unsqueeze(1)).squeeze(1)
        return q_taken, float(q_all.detach().max(dim=1).values.mean())

    def predict_q(self, obs: np.ndarray) -> np.ndarray:
        """The values acting takes the argmax of (``acting_q_values``: the Q-values, or the
        U-Net's smoothed Q-maps), (B, n_actions) for a numpy batch or (n_actions,) for one
        observation."""
        obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self._device())
        single = obs_t.dim() == len(self.obs_shape)
        if single:
            obs_t = obs_t.unsqueeze(0)
        if not self._mode_dependent():
            with torch.inference_mode():
                q = self.acting_q_values(obs_t).cpu().numpy()
            return q[0] if single else q
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                q = self.acting_q_values(obs_t).cpu().numpy()
        finally:
            self.train(was_training)
        return q[0] if single else q

    def _mode_dependent(self) -> bool:
        """Whether a submodule behaves differently in eval mode (dropout, batch norm): only then
        does acting flip the network to eval mode, a walk over every submodule per call."""
        cached = getattr(self, "_mode_dependent_cache", None)
        if cached is None:
            cached = any(isinstance(m, _MODE_DEPENDENT) for m in self.modules())
            self._mode_dependent_cache = cached
        return cached

    def predict(self, obs: np.ndarray) -> np.ndarray | int:
        """argmax_a Q(obs, a): an int for one observation, an int array for a batch."""
        q = self.predict_q(obs)
        if q.ndim == 1:
            return int(q.argmax())
        return q.argmax(axis=1)

    @property
    def obs_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def _device(self) -> torch.device:
        return next(self.parameters()).device


class QNetwork(_Predictor):
    """MLP Q(s, .) for a flat observation; optional dueling head and input normalisation."""

    kind = "mlp"

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: Sequence[int] = (64, 64, 64),
                 activation: str = "relu", dueling: bool = False,
                 obs_low: Sequence[float] | None = None,
                 obs_high: Sequence[float] | None = None) -> None:
        super().__init__()
        if obs_dim < 1:
            raise ValueError(f"obs_dim: must be >= 1, got {obs_dim}")
        if n_actions < 1:
            raise ValueError(f"n_actions: must be >= 1, got {n_actions}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation: must be one of {sorted(_ACTIVATIONS)}, "
                             f"got {activation!r}")
        self.config = {
            "obs_dim": int(obs_dim), "n_actions": int(n_actions),
            "hidden_sizes": [int(h) for h in hidden_sizes], "activation": activation,
            "dueling": bool(dueling),
            "obs_low": None if obs_low is None else [float(x) for x in obs_low],
            "obs_high": None if obs_high is None else [float(x) for x in obs_high],
        }
        offset, scale = _normalisation(obs_dim, obs_low, obs_high)
        # Buffers, not parameters: part of the state dict but never trained.
        self.register_buffer("obs_offset", torch.as_tensor(offset))
        self.register_buffer("obs_scale", torch.as_tensor(scale))
        layers: list[nn.Module] = []
        width = obs_dim
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
            width = h
        self.trunk = nn.Sequential(*layers)
        # forward runs the trunk as plain functional calls over these layers: for a network this
        # small, nn.Module's per-call dispatch costs about as much as the matrix products.
        self._hidden = [m for m in layers if isinstance(m, nn.Linear)]
        self._act = _ACTIVATION_FNS[activation]
        if dueling:
            self.value_head = nn.Linear(width, 1)
            self.advantage_head = nn.Linear(width, n_actions)
        else:
            self.q_head = nn.Linear(width, n_actions)

    @property
    def n_actions(self) -> int:
        return self.config["n_actions"]

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return (self.config["obs_dim"],)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = (obs.flatten(1) - self.obs_offset) * self.obs_scale
        act = self._act
        for layer in self._hidden:
            h = act(F.linear(h, layer.weight, layer.bias))
        if self.config["dueling"]:
            adv = F.linear(h, self.advantage_head.weight, self.advantage_head.bias)
            return (F.linear(h, self.value_head.weight, self.value_head.bias) + adv
                    - adv.mean(dim=1, keepdim=True))
        return F.linear(h, self.q_head.weight, self.q_head.bias)

    def _device(self) -> torch.device:
        return self.obs_offset.device


def _normalisation(obs_dim: int, low: Sequence[float] | None,
                   high: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale) mapping finite, sensible Box bounds to [-1, 1]; identity elsewhere."""
    offset = np.zeros(obs_dim, np.float32)
    scale = np.ones(obs_dim, np.float32)
    if low is None or high is None:
        return offset, scale
    low_a = np.asarray(low, np.float64).reshape(-1)
    high_a = np.asarray(high, np.float64).reshape(-1)
    if len(low_a) != obs_dim or len(high_a) != obs_dim:
        raise ValueError(f"obs_low/obs_high: expected {obs_dim} values each, got "
                         f"{len(low_a)} and {len(high_a)}")
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        span = high_a - low_a
        ok = np.isfinite(low_a) & np.isfinite(high_a) & (span > 0) & (span < 1e6)
        offset[ok] = ((high_a + low_a) / 2)[ok]
        scale[ok] = (2.0 / span)[ok]
    return offset, scale


class _ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, act: type[nn.Module], stride: int = 1) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), act(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), act())


class _Up(nn.Module):
    """Up-sample x2, concatenate the skip connection on channels, convolve."""

    def __init__(self, c_in: int, c_out: int, mode: str, act: type[nn.Module]) -> None:
        super().__init__()
        if mode == "transpose":
            self.up = nn.ConvTranspose2d(c_in, c_out, 2, stride=2)
        else:
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                    nn.Conv2d(c_in, c_out, 3, padding=1))
        self.act = act()
        self.conv = _ConvBlock(2 * c_out, c_out, act)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.act(self.up(x)), skip], dim=1))


class UNetQMap(_Predictor):
    """Fully-convolutional Q-map: (B, C, H, W) image -> (B, rotations, H, W) Q-values.

    Any H, W >= 1 works: the image is edge-padded to a multiple of 2**depth and the Q-map
    cropped back, so the output always has the input's resolution. Flattening the output in C
    order gives the env's action index rot*H*W + row*W + col.
    """

    kind = "unet"

    def __init__(self, in_channels: int, n_rotations: int, height: int, width: int,
                 base_channels: int = 16, depth: int = 3, up_mode: str = "transpose",
                 activation: str = "relu", coord_channels: bool = True,
                 channel_scale: Sequence[float] | None = None,
                 channel_names: Sequence[str] | None = None,
                 rotation_equivariant: bool = False, select_smoothing_px: int = 1,
                 head_bias_init: float = 0.0, output: str = "linear",
                 eval_smoothing_px: int = 0, precision: str = "float32") -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels: must be >= 1, got {in_channels}")
        if n_rotations < 1:
            raise ValueError(f"n_rotations: must be >= 1, got {n_rotations}")
        if height < 1 or width < 1:
            raise ValueError(f"height/width: must be >= 1 pixel, got {height}x{width}")
        if not 1 <= depth <= 6:
            raise ValueError(f"depth: must be in [1, 6], got {depth}")
        if up_mode not in ("transpose", "upsample"):
            raise ValueError(f"up_mode: must be 'transpose' or 'upsample', got {up_mode!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation: must be one of {sorted(_ACTIVATIONS)}, "
                             f"got {activation!r}")
        check_smoothing_px(select_smoothing_px)
        if eval_smoothing_px:
            check_smoothing_px(eval_smoothing_px, "eval_smoothing_px")
        if output not in ("linear", "sigmoid"):
            raise ValueError(f"output: must be 'linear' or 'sigmoid', got {output!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision: must be one of {', '.join(PRECISIONS)}, "
                             f"got {precision!r}")
        try:
            head_bias_init = float(head_bias_init)
        except (TypeError, ValueError):
            head_bias_init = math.nan
        if not math.isfinite(head_bias_init):
            raise ValueError("head_bias_init: must be a finite number")
        scale = [1.0] * in_channels if channel_scale is None else [float(s) for s in
                                                                   channel_scale]
        if len(scale) != in_channels:
            raise ValueError(f"channel_scale: expected {in_channels} values, got {len(scale)}")
        self.config = {
            "in_channels": int(in_channels), "n_rotations": int(n_rotations),
            "height": int(height), "width": int(width), "base_channels": int(base_channels),
            "depth": int(depth), "up_mode": up_mode, "activation": activation,
            "coord_channels": bool(coord_channels), "channel_scale": scale,
            "channel_names": None if channel_names is None else list(channel_names),
            "rotation_equivariant": bool(rotation_equivariant),
            "select_smoothing_px": int(select_smoothing_px),
            "head_bias_init": float(head_bias_init),
            "output": output,
            "eval_smoothing_px": int(eval_smoothing_px),
            "precision": precision,
        }
        act = _ACTIVATIONS[activation]
        self.register_buffer("channel_scale", torch.tensor(scale).view(1, -1, 1, 1))
        widths = [min(base_channels * 2 ** i, 512) for i in range(depth + 1)]
        c_in = in_channels + (2 if coord_channels else 0)
        self.stem = _ConvBlock(c_in, widths[0], act)
        self.down = nn.ModuleList(
            _ConvBlock(widths[i], widths[i + 1], act, stride=2) for i in range(depth))
        self.up = nn.ModuleList(
            _Up(widths[i + 1], widths[i], up_mode, act) for i in reversed(range(depth)))
        # Equivariant: one Q-map head (grasps at yaw 0), applied to the image turned by -yaw_k
        # for every rotation k and turned back (see forward).
        self.head = nn.Conv2d(widths[0], 1 if rotation_equivariant else n_rotations, 1)
        if head_bias_init:  # optimistic start: untried grasps look good until tried
            nn.init.constant_(self.head.bias, float(head_bias_init))

    @property
    def n_actions(self) -> int:
        c = self.config
        return c["n_rotations"] * c["height"] * c["width"]

    @property
    def obs_shape(self) -> tuple[int, ...]:
        c = self.config
        return (c["in_channels"], c["height"], c["width"])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        self._check_obs(obs)
        if not self.config["rotation_equivariant"]:
            return self._output(self._q_maps(obs))
        # Rotation k scores grasps at yaw theta_k = k*pi/R. Turning the image by -theta_k turns
        # such a grasp into a yaw-0 grasp, which the single head scores; the map is turned
        # back by +theta_k. So a turned scene gives the same Q-values at the turned pixel and
        # yaw (up to interpolation), and every attempt teaches all rotations at once (the
        # rotate-the-input design of Zeng et al. 2018). Costs R forward passes per image.
        batch, n_rot = obs.shape[0], self.config["n_rotations"]
        yaws = torch.arange(n_rot, device=obs.device, dtype=obs.dtype) * (math.pi / n_rot)
        yaws = yaws.repeat(batch)
        turned = rotate_images(obs.repeat_interleave(n_rot, dim=0), -yaws, "zeros")
        q = rotate_images(self._q_maps(turned), yaws, "border")
        return self._output(q.view(batch, n_rot, *obs.shape[-2:]))

    def _check_obs(self, obs: torch.Tensor) -> None:
        if obs.dim() != 4 or obs.shape[1] != self.config["in_channels"]:
            raise ValueError(f"UNetQMap expects (B, {self.config['in_channels']}, H, W) images, "
                             f"got shape {tuple(obs.shape)}")

    def set_select_smoothing(self, select_smoothing_px: int) -> None:
        """Act at the best ``select_smoothing_px`` square neighbourhood from now on, in training
        and evaluation (acting only: the weights and training targets do not depend on it)."""
        check_smoothing_px(select_smoothing_px)
        self.config["select_smoothing_px"] = int(select_smoothing_px)
        self.config["eval_smoothing_px"] = int(select_smoothing_px)

    def use_eval_smoothing(self) -> None:
        """Act as greedy evaluation does (``eval_smoothing_px``, when set) from now on."""
        if self.config.get("eval_smoothing_px"):
            self.config["select_smoothing_px"] = self.config["eval_smoothing_px"]

    @contextmanager
    def evaluation_smoothing(self) -> Iterator[None]:
        """Greedy evaluation's smoothing inside the block, training's restored after it."""
        saved = self.config["select_smoothing_px"]
        self.use_eval_smoothing()
        try:
            yield
        finally:
            self.config["select_smoothing_px"] = saved

    def acting_q_values(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-maps averaged over select_smoothing_px x select_smoothing_px pixels (per rotation,
        inside the image) before the argmax: a grasp is chosen where its neighbours would
        succeed too, rather than at the single highest -- and most over-estimated -- pixel,
        which tends to sit at an object's edge. Training targets use the plain Q-values."""
        q = self(obs)
        k = self.config["select_smoothing_px"]
        if k > 1:
            batch, n_rot, height, width = q.shape
            q = F.avg_pool2d(q.reshape(batch * n_rot, 1, height, width), k, stride=1,
                             padding=k // 2, count_include_pad=False).view_as(q)
        return q.flatten(1)

    def q_taken_and_max(self, obs: torch.Tensor, actions: torch.Tensor, with_max: bool = True,
                        logits: bool = False) -> tuple[torch.Tensor, float | None]:
        """Q(obs, action) with gradients, from the decoder evaluated only around the taken
        pixel: the loss depends on one pixel per sample, and the decoder's high-resolution
        levels are most of a full Q-map's cost (forward and backward). The encoder still runs
        on the whole image (the bottleneck sees all of it). The batch mean of max_a Q needs
        full Q-maps, so it is computed only ``with_max``, on MAX_Q_SAMPLES samples.
        ``logits``: the head's values before the sigmoid of ``output: sigmoid`` (what a
        cross-entropy loss takes; the same values for a linear head)."""
        self._check_obs(obs)
        c = self.config
        if c["up_mode"] != "transpose":  # the windowed decoder follows transposed up-sampling
            q_taken, q_max = self._q_taken_and_max_full(obs, actions, with_max)
            return (q_taken if logits else self._output(q_taken)), q_max
        height, width = obs.shape[-2:]
        # Window positions are integer bookkeeping on B numbers: numpy, not a dozen tensor ops.
        rot, pixel = np.divmod(actions.detach().cpu().numpy().astype(np.int64), height * width)
        row, col = np.divmod(pixel, width)
        if not c["rotation_equivariant"]:
            q_win = self._q_windows(obs, row, col, 1)
            rot_t = torch.from_numpy(rot).to(obs.device)
            q_taken = q_win.flatten(1).gather(1, rot_t.unsqueeze(1)).squeeze(1)
        else:
            # Only the taken rotation needs a pass: the image turned by -yaw, and the Q-map
            # turned back by +yaw as rotate_images does (bilinear, border padding), at one pixel.
            rot_t, row_t, col_t = (torch.from_numpy(a).to(obs.device) for a in (rot, row, col))
            yaws = rot_t.to(obs.dtype) * (math.pi / c["n_rotations"])
            turned = rotate_images(obs, -yaws, "zeros")
            src_x, src_y = _turned_source(row_t, col_t, yaws, height, width)
            x0, y0 = src_x.floor(), src_y.floor()
            fx, fy = (src_x - x0).unsqueeze(1), (src_y - y0).unsqueeze(1)
            q_win = self._q_windows(turned, y0.long().cpu().numpy(), x0.long().cpu().numpy(),
                                    2)[:, 0]
            q_taken = ((1 - fy) * ((1 - fx) * q_win[:, 0, 0:1] + fx * q_win[:, 0, 1:2])
                       + fy * ((1 - fx) * q_win[:, 1, 0:1] + fx * q_win[:, 1, 1:2])).squeeze(1)
        return (q_taken if logits else self._output(q_taken),
                self._mean_max_q(obs) if with_max else None)

    def _q_taken_and_max_full(self, obs: torch.Tensor, actions: torch.Tensor, with_max: bool
                              ) -> tuple[torch.Tensor, float | None]:
        """Like q_taken_and_max from full Q-maps; the taken values before ``_output``."""
        c = self.config
        hw = c["height"] * c["width"]
        rot, pixel = actions.long() // hw, actions.long() % hw
        if not c["rotation_equivariant"]:
            q_map = self._q_maps(obs).flatten(1)
            q_taken = q_map.gather(1, actions.long().unsqueeze(1)).squeeze(1)
        else:
            yaws = rot.to(obs.dtype) * (math.pi / c["n_rotations"])
            q_map = rotate_images(self._q_maps(rotate_images(obs, -yaws, "zeros")), yaws,
                                  "border")
            q_taken = q_map.flatten(1).gather(1, pixel.unsqueeze(1)).squeeze(1)
        return q_taken, self._mean_max_q(obs) if with_max else None

    def _mean_max_q(self, obs: torch.Tensor) -> float:
        with torch.no_grad():
            return float(self(obs[:MAX_Q_SAMPLES]).flatten(1).max(dim=1).values.mean())

    def _encode(self, obs: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's feature maps, full resolution first (padded to a multiple of
        2**depth); channels-last, which oneDNN's convolutions run ~1.7x faster in."""
        height, width = obs.shape[-2:]
        x = obs * self.channel_scale
        if self.config["coord_channels"]:
            x = torch.cat([x, _coord_channels(x)], dim=1)
        mult = 2 ** self.config["depth"]
        pad_h, pad_w = (-height) % mult, (-width) % mult
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        skips = [self.stem(x.contiguous(memory_format=torch.channels_last))]
        for block in self.down:
            skips.append(block(skips[-1]))
        return skips

    def _q_maps(self, obs: torch.Tensor) -> torch.Tensor:
        height, width = obs.shape[-2:]
        with self._autocast(obs):
            skips = self._encode(obs)
            h = skips.pop()
            for block in self.up:
                h = block(h, skips.pop())
            q = self.head(h)
        return q[:, :, :height, :width].float().contiguous()

    def _autocast(self, x: torch.Tensor) -> torch.autocast | nullcontext:
        """The convolutions' precision (``precision``) on ``x``'s device; the caller turns
        the result back to float32."""
        if not uses_bfloat16(self.config.get("precision", "float32"), x.device.type):
            return nullcontext()
        return torch.autocast(x.device.type, dtype=torch.bfloat16)

    def _output(self, q: torch.Tensor) -> torch.Tensor:
        """The head's values (logits for ``output: sigmoid``) as Q-values. A success
        probability (gamma 0, 0/1 rewards) cannot leave [0, 1]; a linear head's never-tried
        pixels drift above 1 and then win the argmax."""
        return torch.sigmoid(q) if self.config["output"] == "sigmoid" else q

    def _q_windows(self, obs: torch.Tensor, top: np.ndarray, left: np.ndarray, size: int
                   ) -> torch.Tensor:
        """The head's output (B, heads, size, size) on a size x size window per sample, top-left
        at (``top``, ``left``) (B,) in image pixels; equal to the full Q-map's pixels there.

        Each decoder level is evaluated on the window its output needs (two 3x3 convolutions:
        2 pixels more each side; a 2x2 transposed convolution: half the window one level
        down), with unpadded convolutions and zeros outside the image wherever the full
        network zero-pads. Window pixels outside the image are not meaningful.
        """
        with self._autocast(obs):
            return self._q_windows_of(obs, top, left, size).float()

    def _q_windows_of(self, obs: torch.Tensor, top: np.ndarray, left: np.ndarray, size: int
                      ) -> torch.Tensor:
        skips = self._encode(obs)
        depth = self.config["depth"]
        top, left = np.asarray(top, np.int64), np.asarray(left, np.int64)
        plan = []  # the window of up-block output at level i, for i = 0 .. depth-1
        for _ in range(depth):
            plan.append((top, left, size))
            top, left, size = (top - 2) // 2, (left - 2) // 2, (size + 4) // 2 + 1
        h = _take_windows(skips[depth], top, left, size)
        for level, block in zip(reversed(range(depth)), self.up, strict=True):
            w_top, w_left, w_size = plan[level]
            up = block.act(block.up(h))  # 2x the window one level down, from 2 * (top, left)
            up = _take_windows(up, w_top - 2 - 2 * top, w_left - 2 - 2 * left, w_size + 4)
            skip = _take_windows(skips[level], w_top - 2, w_left - 2, w_size + 4)
            height, width = skips[level].shape[-2:]
            x = torch.cat([up, skip], dim=1) * _inside(w_top - 2, w_left - 2, w_size + 4,
                                                       height, width, h)
            conv1, act1, conv2, act2 = block.conv
            x = act1(F.conv2d(x, conv1.weight, conv1.bias))
            x = x * _inside(w_top - 1, w_left - 1, w_size + 2, height, width, h)
            h = act2(F.conv2d(x, conv2.weight, conv2.bias))
            top, left = w_top, w_left
        return self.head(h)

    def predict_pixel(self, obs: np.ndarray) -> tuple[int, int, int]:
        """Greedy (rotation, row, col) for one observation (C, H, W)."""
        a = int(self.predict(obs))
        c = self.config
        rot, rest = divmod(a, c["height"] * c["width"])
        row, col = divmod(rest, c["width"])
        return rot, row, col

    def predict_q_map(self, obs: np.ndarray) -> np.ndarray:
        """Q-map (R, H, W) for one observation (C, H, W)."""
        c = self.config
        return self.predict_q(obs).reshape(c["n_rotations"], c["height"], c["width"])


PRECISIONS = ("float32", "bfloat16", "auto")


@functools.cache
def native_bfloat16(device_type: str) -> bool:
    """Whether ``device_type`` ("cpu", "cuda") computes bfloat16 convolutions natively: a CPU
    with AVX512-BF16 or AMX (oneDNN), a GPU of compute capability 8 or more. Elsewhere bf16 is
    emulated and slower than float32."""
    if device_type == "cpu":
        try:
            return bool(torch.backends.mkldnn.is_available()
                        and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a torch build without the probe
            return False
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return False


def uses_bfloat16(precision: str, device_type: str) -> bool:
    """Whether a U-Net of ``precision`` runs its convolutions in bfloat16 on ``device_type``."""
    if precision == "bfloat16":
        return True
    return precision == "auto" and native_bfloat16(device_type)


def check_smoothing_px(value: Any, name: str = "select_smoothing_px") -> None:
    """ValueError naming ``name`` unless ``value`` is an odd integer in [1, 15]."""
    if (isinstance(value, bool) or int(value) != value or not 1 <= value <= 15
            or value % 2 == 0):
        raise ValueError(f"{name}: must be an odd integer in [1, 15], got {value!r}")


def rotate_images(x: torch.Tensor, angles_rad: torch.Tensor, padding_mode: str = "zeros",
                  ) -> torch.Tensor:
    """Turn every image of ``x`` (B, C, H, W) counter-clockwise as displayed (rows down) by
    ``angles_rad`` (B,) about its centre, bilinearly, keeping square pixels when H != W.

    For q_grasp's top-down camera (image up = world +x, image left = world +y) a
    counter-clockwise turn of the image is a turn of the scene by +angle about world z.
    Pixels from outside the frame are zero (``padding_mode="zeros"``) or the nearest edge
    value ("border").
    """
    _, _, height, width = x.shape
    cos, sin = torch.cos(angles_rad), torch.sin(angles_rad)
    # Output pixel p (x right, y down, from the centre) samples the input at M^-1 p, where M
    # turns (x, y_down) counter-clockwise as displayed; normalised coordinates scale x by
    # 2/W and y by 2/H, hence the aspect factors.
    theta = torch.stack([
        torch.stack([cos, -sin * (height / width), torch.zeros_like(cos)], dim=-1),
        torch.stack([sin * (width / height), cos, torch.zeros_like(cos)], dim=-1),
    ], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode,
                         align_corners=False)


def _take_windows(x: torch.Tensor, top: np.ndarray, left: np.ndarray, size: int
                  ) -> torch.Tensor:
    """(B, C, size, size) windows of ``x`` (B, C, H, W), top-left at (``top``, ``left``) (B,);
    indices outside the image are clamped to its edge (callers mask them)."""
    batch, channels, height, width = x.shape
    steps = np.arange(size)
    rows = np.clip(top[:, None] + steps, 0, height - 1)
    cols = np.clip(left[:, None] + steps, 0, width - 1)
    flat = ((np.arange(batch)[:, None, None] * height + rows[:, :, None]) * width
            + cols[:, None, :])
    # Rows of the (B*H*W, C) pixel table, a view of channels-last x: the result and, in
    # backward, the gradient added back into x's shape (index_add) stay channels-last like x
    # (mixed memory formats cost ~30x in element-wise ops).
    pixels = x.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
    index = torch.from_numpy(flat.reshape(-1)).to(x.device)
    return pixels.index_select(0, index).view(batch, size, size, channels).permute(0, 3, 1, 2)


def _inside(top: np.ndarray, left: np.ndarray, size: int, height: int, width: int,
            like: torch.Tensor) -> torch.Tensor:
    """(B, 1, size, size), dtype and device of ``like``: 1 where a window's pixel lies inside
    the height x width image."""
    steps = np.arange(size)
    rows, cols = top[:, None] + steps, left[:, None] + steps
    rows_in = (rows >= 0) & (rows < height)
    cols_in = (cols >= 0) & (cols < width)
    inside = rows_in[:, None, :, None] & cols_in[:, None, None, :]
    return torch.from_numpy(inside).to(device=like.device, dtype=like.dtype)


def _turned_source(row: torch.Tensor, col: torch.Tensor, angles_rad: torch.Tensor, height: int,
                   width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (x, y) input pixel coordinates that ``rotate_images(.., angles_rad, "border")``
    samples for output pixel (row, col): its affine grid, unnormalised and clamped as
    grid_sample does (align_corners=False, border padding)."""
    cos, sin = torch.cos(angles_rad), torch.sin(angles_rad)
    x_n = (2 * col.to(cos.dtype) + 1) / width - 1
    y_n = (2 * row.to(cos.dtype) + 1) / height - 1
    g_x = cos * x_n - sin * (height / width) * y_n
    g_y = sin * (width / height) * x_n + cos * y_n
    src_x = (((g_x + 1) * width - 1) / 2).clamp(0, width - 1)
    src_y = (((g_y + 1) * height - 1) / 2).clamp(0, height - 1)
    return src_x, src_y


def _coord_channels(x: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).unsqueeze(0).expand(b, -1, -1, -1)


def build_network(kind: str, config: dict[str, Any]) -> QNetwork | UNetQMap:
    """Rebuild a network from its `kind` and `config` dict (as stored in a checkpoint)."""
    if kind == "mlp":
        cls: type = QNetwork
    elif kind == "unet":
        cls = UNetQMap
    else:
        raise ValueError(f"network kind: must be one of {', '.join(NETWORK_KINDS)}, "
                         f"got {kind!r}")
    if not isinstance(config, dict):
        raise ValueError(f"network config: expected a mapping, got {type(config).__name__}")
    try:
        return cls(**config)
    except TypeError as exc:
        raise ValueError(f"network config for {kind!r} does not fit the constructor: "
                         f"{exc}") from None


def image_channel_names(env: gym.Env) -> tuple[str, ...] | None:
    """The env's `image_channels` names (q_grasp image envs), or None."""
    names = getattr(env.unwrapped, "image_channels", None)
    return tuple(names) if names is not None else None


def is_image_space(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3


def network_spec_for_env(env: gym.Env, cfg: NetworkConfig) -> tuple[str, dict[str, Any]]:
    """(kind, config) of the Q-network `cfg` describes for `env`'s spaces."""
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(act_space, gym.spaces.Discrete):
        raise ValueError(f"env {env.spec.id if env.spec else env}: DQN needs a Discrete action "
                         f"space, got {act_space}")
    if not isinstance(obs_space, gym.spaces.Box):
        raise ValueError(f"env {env.spec.id if env.spec else env}: DQN needs a Box observation "
                         f"space, got {obs_space}")
    kind = cfg.kind
    if kind == "auto":
        kind = "unet" if is_image_space(obs_space) else "mlp"
    n_actions = int(act_space.n)
    if kind == "mlp":
        dim = int(np.prod(obs_space.shape))
        low = obs_space.low.reshape(-1).tolist() if cfg.normalize_inputs else None
        high = obs_space.high.reshape(-1).tolist() if cfg.normalize_inputs else None
        return kind, QNetwork(dim, n_actions, cfg.hidden_sizes, cfg.activation, cfg.dueling,
                              low, high).config
    if not is_image_space(obs_space):
        raise ValueError(f"network.kind: unet needs (C, H, W) image observations, got shape "
                         f"{obs_space.shape}")
    c, h, w = obs_space.shape
    if n_actions % (h * w):
        raise ValueError(f"network.kind: unet needs Discrete(R*H*W) actions for {h}x{w} images, "
                         f"got Discrete({n_actions})")
    names = image_channel_names(env)
    if names is not None and len(names) != c:
        raise ValueError(f"env image_channels {names} do not match {c} observation channels")
    scale = [1.0 if (names is None or n in COLOR_CHANNELS) else 1.0 / cfg.height_scale_m
             for n in (names or [None] * c)]
    net = UNetQMap(c, n_actions // (h * w), h, w, cfg.unet_base_channels, cfg.unet_depth,
                   cfg.unet_up_mode, cfg.activation, cfg.unet_coord_channels, scale, names,
                   cfg.unet_rotation_equivariant, cfg.unet_select_smoothing_px,
                   cfg.unet_head_bias_init, cfg.unet_output, cfg.unet_eval_smoothing_px,
                   cfg.unet_precision)
    return kind, net.config


def check_network_matches_env(net: QNetwork | UNetQMap, env: gym.Env) -> None:
    """Raise ValueError when `net` cannot act in `env` (observation shape or action count)."""
    obs_shape = tuple(env.observation_space.shape or ())
    n_actions = getattr(env.action_space, "n", None)
    env_name = env.spec.id if env.spec else type(env.unwrapped).__name__
    want_obs = net.obs_shape
    flat_ok = net.kind == "mlp" and math.prod(obs_shape) == want_obs[0]
    if not (obs_shape == want_obs or flat_ok):
        raise ValueError(f"network ({net.kind}) expects observations of shape {want_obs}, but env "
                         f"{env_name} has {obs_shape}")
    if n_actions is None or int(n_actions) != net.n_actions:
        raise ValueError(f"network ({net.kind}) has {net.n_actions} actions, but env {env_name} "
                         f"has action space {env.action_space}")
