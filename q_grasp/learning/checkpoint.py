"""Checkpoints as safetensors files: weights plus everything needed to rebuild and resume.

Tensors: `q_net.*` (online network), optionally `target_net.*`, `optim.<param>.<key>` (optimizer
state) and `rng.torch`. String metadata (JSON): format name and version, network kind and
constructor config, env id/kwargs/spaces, the experiment config, counters, optimizer
param_groups, numpy RNG state. `load_checkpoint` validates all of it and raises
`CheckpointError` (a ValueError) with a readable reason; it never unpickles anything.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from q_grasp import __version__
from q_grasp.learning.config import ConfigError, ExperimentConfig
from q_grasp.learning.networks import (
    QNetwork,
    UNetQMap,
    build_network,
    check_network_matches_env,
    image_channel_names,
)

FORMAT = "q_grasp.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, foreign or does not fit the environment."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: network description, state dicts and metadata."""

    network_kind: str
    network_config: dict[str, Any]
    q_net_state: dict[str, torch.Tensor]
    target_net_state: dict[str, torch.Tensor] | None = None
    optimizer_state: dict[str, Any] | None = None
    config: ExperimentConfig | None = None
    env: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    def build_network(self) -> QNetwork | UNetQMap:
        """The online network with its weights, rebuilt from the file alone."""
        try:
            net = build_network(self.network_kind, self.network_config)
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {self.source}: cannot rebuild the network: "
                                  f"{exc}") from None
        _load_state(net, self.q_net_state, f"checkpoint {self.source} (q_net)")
        return net

    def check_env(self, env: gym.Env) -> None:
        """Raise CheckpointError if the network cannot act in `env`."""
        net = build_network(self.network_kind, self.network_config)
        try:
            check_network_matches_env(net, env)
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {self.source} does not fit the environment: "
                                  f"{exc}") from None


def env_description(env: gym.Env, env_id: str | None = None,
                    kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON-able summary of an env (stored in checkpoints and checked on load)."""
    return {
        "id": env_id or (env.spec.id if env.spec else type(env.unwrapped).__name__),
        "kwargs": kwargs or {},
        "observation_shape": list(env.observation_space.shape or ()),
        "n_actions": int(getattr(env.action_space, "n", -1)),
        "image_channels": list(image_channel_names(env) or []) or None,
    }


def checkpoint_bytes(q_net: QNetwork | UNetQMap, *, target_net: torch.nn.Module | None = None,
                     optimizer: torch.optim.Optimizer | None = None,
                     config: ExperimentConfig | None = None, env: dict[str, Any] | None = None,
                     counters: dict[str, int] | None = None, rng: dict[str, Any] | None = None,
                     extra: dict[str, Any] | None = None) -> bytes:
    """Serialise a checkpoint to safetensors bytes (also the payload of a weights message)."""
    tensors = {f"q_net.{k}": v.detach().cpu().contiguous() for k, v in
               q_net.state_dict().items()}
    if target_net is not None:
        tensors.update({f"target_net.{k}": v.detach().cpu().contiguous()
                        for k, v in target_net.state_dict().items()})
    meta: dict[str, str] = {
        "format": FORMAT, "format_version": str(FORMAT_VERSION), "q_grasp_version": __version__,
        "created_unix_s": f"{time.time():.0f}", "network_kind": q_net.kind,
        "network_config": json.dumps(q_net.config),
        "env": json.dumps(env or {}), "counters": json.dumps(counters or {}),
        "extra": json.dumps(extra or {}),
    }
    if config is not None:
        meta["config"] = config.to_json()
    if optimizer is not None:
        opt = optimizer.state_dict()
        for pid, state in opt["state"].items():
            for key, value in state.items():
                t = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"optim.{pid}.{key}"] = t.detach().cpu().contiguous()
        meta["optimizer_param_groups"] = json.dumps(opt["param_groups"])
    if rng:
        if "torch" in rng:
            tensors["rng.torch"] = rng["torch"]
        meta["rng"] = json.dumps({k: v for k, v in rng.items() if k != "torch"})
    return st_save(tensors, metadata=meta)


def fsync_replace(tmp: str | Path, path: str | Path) -> Path:
    """Make the written file ``tmp`` durable and rename it to ``path``: after a crash or a
    power cut ``path`` holds either its old content or all of the new one, never a part."""
    tmp, path = Path(tmp), Path(path)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    tmp.replace(path)
    try:  # the rename itself is durable once the folder is synced (not possible everywhere)
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    return fsync_replace(tmp, path)


def save_checkpoint(path: str | Path, q_net: QNetwork | UNetQMap, **kwargs: Any) -> Path:
    """Write a checkpoint file atomically (temp file, fsync, rename); see `checkpoint_bytes`."""
    return atomic_write_bytes(path, checkpoint_bytes(q_net, **kwargs))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint file (raises CheckpointError with the reason)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(path)!r}: no such file") from None
    except OSError as exc:
        raise CheckpointError(f"checkpoint {str(path)!r}: cannot read ({exc.strerror})") from None
    return load_checkpoint_bytes(data, source=repr(str(path)))


def load_checkpoint_bytes(data: bytes, source: str = "<memory>") -> Checkpoint:
    """Parse and validate checkpoint bytes."""
    try:
        tensors = st_load(data)
        meta = _read_metadata(data)
    except (SafetensorError, ValueError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {source}: not a readable safetensors file (corrupt or "
                              f"truncated?): {exc}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {source}: not a q_grasp checkpoint (metadata format="
                              f"{meta.get('format')!r}, expected {FORMAT!r})")
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError:
        version = -1
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {source}: format version {meta.get('format_version')!r}"
                              f" is not supported (this q_grasp reads version {FORMAT_VERSION})")

    def js(key: str, default: Any = None) -> Any:
        if key not in meta:
            return default
        try:
            return json.loads(meta[key])
        except json.JSONDecodeError:
            raise CheckpointError(f"checkpoint {source}: metadata {key!r} is not valid JSON") \
                from None

    kind = meta.get("network_kind", "")
    net_config = js("network_config")
    if not isinstance(net_config, dict):
        raise CheckpointError(f"checkpoint {source}: metadata network_config is missing")
    config = None
    if "config" in meta:
        try:
            config = ExperimentConfig.from_dict(js("config"))
        except ConfigError as exc:
            raise CheckpointError(f"checkpoint {source}: stored experiment config is invalid: "
                                  f"{exc}") from None
    ckpt = Checkpoint(
        network_kind=kind, network_config=net_config,
        q_net_state=_prefixed(tensors, "q_net."),
        target_net_state=_prefixed(tensors, "target_net.") or None,
        config=config, env=js("env", {}), counters=js("counters", {}), rng=js("rng", {}),
        extra=js("extra", {}), source=source)
    if "rng.torch" in tensors:
        ckpt.rng["torch"] = tensors["rng.torch"]
    if "optimizer_param_groups" in meta:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for name, t in tensors.items():
            if name.startswith("optim."):
                _, pid, key = name.split(".", 2)
                state.setdefault(int(pid), {})[key] = t
        ckpt.optimizer_state = {"state": state, "param_groups": js("optimizer_param_groups")}
    if not ckpt.q_net_state:
        raise CheckpointError(f"checkpoint {source}: holds no q_net weights")
    ckpt.build_network()  # validates kind, config and weights together
    return ckpt


def _read_metadata(data: bytes) -> dict[str, str]:
    if len(data) < 8:
        raise ValueError("file too short")
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or 8 + n > len(data):
        raise ValueError("bad header length")
    header = json.loads(data[8: 8 + n])
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise ValueError("bad metadata")
    return meta


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _load_state(net: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{what}: weights do not match the network config (missing "
                              f"{missing[:3]}, unexpected {unexpected[:3]})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(f"{what}: weight {k!r} has shape {tuple(v.shape)}, the network "
                                  f"config needs {tuple(own[k].shape)}")
    net.load_state_dict(state)
