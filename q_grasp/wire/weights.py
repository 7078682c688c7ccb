"""Network weights (learner -> actors) as validated, versioned safetensors blobs.

Schema ``q_grasp/weights`` version 2: one tensor per state-dict entry; metadata schema,
schema_version, version (weights version, growing within a run), run_id (one start of the
learner: a receiver refuses a version that goes back within a run), net_config (canonical JSON
of the network's constructor arguments, so receivers can refuse weights for a different
network), task, source, num_updates, stamp_ns, checksum. Version 1 blobs (no run id) are
refused with reason ``version``. torch is imported lazily so that the transition
codec works without it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from q_grasp.wire.errors import (
    REASON_CORRUPT,
    REASON_DTYPE,
    REASON_METADATA,
    REASON_MISSING_KEY,
    REASON_NET_CONFIG,
    REASON_NON_FINITE,
    REASON_RANGE,
    REASON_SCHEMA,
    REASON_SHAPE,
    REASON_TOO_LARGE,
    REASON_UNEXPECTED_KEY,
    WireError,
)
from q_grasp.wire.format import (
    FLOAT_CODES,
    PROCESS_RUN_ID,
    Checksum,
    as_bytes,
    canonical_json,
    check_schema,
    metadata_int,
    metadata_run_id,
    metadata_str,
    read_header,
    verify_checksum,
)

if TYPE_CHECKING:
    import torch

WEIGHTS_SCHEMA = "q_grasp/weights"
"""Schema name in the blob metadata and in UInt8MultiArray.layout.dim[0].label."""
WEIGHTS_SCHEMA_VERSION = 2
"""Version written by this encoder."""
SUPPORTED_WEIGHTS_VERSIONS = (2,)
"""Versions this decoder reads."""
WEIGHT_DTYPES = ("F32", "F16", "BF16", "F64", "I64", "I32", "U8", "BOOL")
"""dtype codes a state dict may hold (floats for parameters; ints/bools for buffers such as
BatchNorm's num_batches_tracked)."""
MAX_INT64_METADATA = 2**63 - 1


@dataclass
class WeightsLimits:
    """What a receiver accepts; a blob outside these limits is refused before it is parsed."""

    max_blob_bytes: int = 256 * 1024 * 1024
    """Largest blob accepted, in bytes."""
    max_header_bytes: int = 1024 * 1024
    """Largest safetensors JSON header accepted, in bytes."""
    max_tensors: int = 4096
    """Most tensors (state-dict entries) in one blob."""
    max_tensor_elements: int = 64 * 1024 * 1024
    """Most elements in one tensor."""
    task: str | None = None
    """Required task name; None accepts any."""

    def __post_init__(self) -> None:
        for name in ("max_blob_bytes", "max_header_bytes", "max_tensors",
                     "max_tensor_elements"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")


@dataclass
class WeightsMessage:
    """A decoded weights blob."""

    state_dict: dict[str, torch.Tensor]
    """Tensors by state-dict key (CPU, fresh memory the caller may keep)."""
    version: int
    """Weights version, increasing with every publication by one learner."""
    net_config: dict[str, Any]
    """The network's constructor arguments."""
    task: str = ""
    """Task name."""
    source: str = ""
    """Who published the weights (learner node name)."""
    num_updates: int = 0
    """Gradient updates behind these weights."""
    stamp_ns: int = 0
    """Publication time in nanoseconds (learner's clock); 0 = unset."""
    run_id: str = ""
    """Which start of the learner published them."""
    metadata: dict[str, str] = field(default_factory=dict)
    """The raw metadata map."""


def _torch_code(tensor: torch.Tensor) -> str:
    import torch

    codes = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8",
             torch.bool: "BOOL"}
    try:
        return codes[tensor.dtype]
    except KeyError:
        raise WireError(REASON_DTYPE, f"tensor dtype {tensor.dtype} is not allowed") from None


def encode_weights(state_dict: Mapping[str, torch.Tensor], version: int,
                   net_config: Mapping[str, Any], *, task: str = "", source: str = "",
                   num_updates: int = 0, stamp_ns: int = 0,
                   run_id: str = PROCESS_RUN_ID) -> bytes:
    """Serialise a state dict; raises WireError (a ValueError) on NaN or invalid arguments."""
    import torch
    from safetensors.torch import save

    if not 0 <= int(version) <= MAX_INT64_METADATA:
        raise WireError(REASON_METADATA, f"version must be in [0, 2**63), got {version}")
    tensors: dict[str, torch.Tensor] = {}
    checksum_items = []
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise WireError(REASON_DTYPE, f"{name!r} is not a tensor")
        # detach + cpu + contiguous + clone: safetensors refuses shared or strided storage.
        tensor = value.detach().to("cpu").contiguous().clone()
        code = _torch_code(tensor)
        if code in FLOAT_CODES and not bool(torch.isfinite(tensor).all()):
            raise WireError(REASON_NON_FINITE, f"{name!r} contains NaN or infinity")
        tensors[name] = tensor
        checksum_items.append((name, code, tuple(tensor.shape)))
    checksum = Checksum()
    for name, code, shape in sorted(checksum_items):
        checksum.add(name, code, shape, tensors[name].reshape(-1).view(torch.uint8).numpy())
    metadata = {
        "schema": WEIGHTS_SCHEMA,
        "schema_version": str(WEIGHTS_SCHEMA_VERSION),
        "version": str(int(version)),
        "run_id": run_id,
        "net_config": canonical_json(dict(net_config)),
        "task": task,
        "source": source,
        "num_updates": str(int(num_updates)),
        "stamp_ns": str(int(stamp_ns)),
        "checksum": checksum.hexdigest(),
    }
    for key in ("task", "source"):
        metadata_str(metadata, key)
    metadata_run_id(metadata)
    return save(tensors, metadata=metadata)


def decode_weights(blob: object, limits: WeightsLimits,
                   expected_net_config: Mapping[str, Any] | None = None, *,
                   expected_shapes: Mapping[str, tuple[int, ...]] | None = None,
                   expected_dtypes: Mapping[str, str] | None = None) -> WeightsMessage:
    """Validate and parse a weights blob. Any problem raises :class:`WireError`.

    ``expected_net_config``: refuse weights made for another network configuration.
    ``expected_shapes``: the receiver's own state-dict shapes (``{k: tuple(v.shape)}``); when
    given, the blob must have exactly these keys and shapes, checked before the payload is
    parsed, so a mismatched blob can never reach ``load_state_dict``.
    ``expected_dtypes``: the receiver's own dtype codes (:func:`state_dict_dtypes`); a tensor
    of another dtype (float64 for a float32 network: twice the memory, and not what any
    learner of this network publishes) is refused before the payload is parsed.
    Weights whose floating-point tensors are all zero are refused (``range``): no network a
    learner trains or initialises is, and such a network picks the same action everywhere.
    """
    data = as_bytes(blob)
    header = read_header(data, max_blob_bytes=limits.max_blob_bytes,
                         max_header_bytes=limits.max_header_bytes,
                         max_tensors=limits.max_tensors)
    meta = header.metadata
    check_schema(meta, WEIGHTS_SCHEMA, SUPPORTED_WEIGHTS_VERSIONS)
    version = metadata_int(meta, "version", minimum=0, maximum=MAX_INT64_METADATA)
    run_id = metadata_run_id(meta)
    task = metadata_str(meta, "task")
    if limits.task is not None and task != limits.task:
        raise WireError(REASON_SCHEMA, f"task {task!r}, expected {limits.task!r}")
    source = metadata_str(meta, "source")
    num_updates = metadata_int(meta, "num_updates", minimum=0, maximum=MAX_INT64_METADATA)
    stamp_ns = metadata_int(meta, "stamp_ns", minimum=0, maximum=MAX_INT64_METADATA)
    try:
        net_config = json.loads(meta.get("net_config", ""))
    except (ValueError, RecursionError):
        raise WireError(REASON_METADATA, "metadata 'net_config' is not JSON") from None
    if not isinstance(net_config, dict):
        raise WireError(REASON_METADATA, "metadata 'net_config' is not a JSON object")
    if expected_net_config is not None and canonical_json(net_config) != canonical_json(
            dict(expected_net_config)):
        raise WireError(REASON_NET_CONFIG, f"weights for network {canonical_json(net_config)}, "
                                           f"expected {canonical_json(dict(expected_net_config))}")
    if not header.tensors:
        raise WireError(REASON_MISSING_KEY, "no tensors")
    for name, spec in header.tensors.items():
        if spec.dtype not in WEIGHT_DTYPES:
            raise WireError(REASON_DTYPE, f"{name!r} has dtype {spec.dtype}")
        if spec.numel > limits.max_tensor_elements:
            raise WireError(REASON_TOO_LARGE, f"{name!r} has {spec.numel} elements, limit "
                                              f"{limits.max_tensor_elements}")
    if expected_shapes is not None:
        missing = sorted(set(expected_shapes) - set(header.tensors))
        if missing:
            raise WireError(REASON_MISSING_KEY, f"missing tensors {missing[:5]}")
        extra = sorted(set(header.tensors) - set(expected_shapes))
        if extra:
            raise WireError(REASON_UNEXPECTED_KEY, f"unexpected tensors {extra[:5]}")
        for name, shape in expected_shapes.items():
            if header.tensors[name].shape != tuple(shape):
                raise WireError(REASON_SHAPE, f"{name!r} has shape "
                                              f"{list(header.tensors[name].shape)}, expected "
                                              f"{list(shape)}")
    if expected_dtypes is not None:
        for name, spec in header.tensors.items():
            want = expected_dtypes.get(name)
            if want is not None and spec.dtype != want:
                raise WireError(REASON_DTYPE, f"{name!r} has dtype {spec.dtype}, the network's "
                                              f"is {want}")
    verify_checksum(data, header)
    state_dict = _load_torch(data)
    import torch

    floats = [t for t in state_dict.values() if t.is_floating_point()]
    for name, tensor in state_dict.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WireError(REASON_NON_FINITE, f"{name!r} contains NaN or infinity")
    if floats and not any(bool(t.any()) for t in floats):
        raise WireError(REASON_RANGE, "every weight is zero")
    return WeightsMessage(state_dict=state_dict, version=version, run_id=run_id,
                          net_config=net_config,
                          task=task, source=source, num_updates=num_updates,
                          stamp_ns=stamp_ns, metadata=dict(meta))


def _load_torch(data: bytes | memoryview) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    try:
        return load(bytes(data))
    except Exception as exc:  # the Rust parser raises its own types; normalise them all
        raise WireError(REASON_CORRUPT, f"safetensors rejected the payload: {exc}") from None


RUNTIME_NET_KEYS = frozenset({"select_smoothing_px", "eval_smoothing_px", "precision"})
"""Constructor arguments that change how a network acts or computes, not what its weights mean:
a learner and an actor may differ in them."""


def network_config_of(net: Any) -> dict[str, Any]:
    """The ``net_config`` a learner publishes and an actor expects for a q_grasp network: its
    constructor arguments (``net.config``, what checkpoints store) less the runtime ones
    (``RUNTIME_NET_KEYS``), so both sides compare what the weights mean. The architecture kind
    is implied: the state-dict keys and shapes differ."""
    return {k: v for k, v in net.config.items() if k not in RUNTIME_NET_KEYS}


def state_dict_shapes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a state dict, for ``decode_weights(expected_shapes=...)``."""
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def state_dict_dtypes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """``{key: dtype code}`` of a state dict, for ``decode_weights(expected_dtypes=...)``."""
    return {k: _torch_code(v) for k, v in state_dict.items()}
