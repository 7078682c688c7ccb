"""Transition batches (actor -> learner) as validated safetensors blobs.

The policy node encodes what it experienced; the trainer decodes and validates every blob
before anything reaches the replay buffer. The schema is ``q_grasp/transitions`` version 2:

======================  =========================  ==============================
tensor                  dtype                      shape
======================  =========================  ==============================
``observations``        float32, float16 or uint8  (N, *obs_shape)
``next_observations``   same as observations       (N, *obs_shape)
``actions``             int64                      (N,), each in [0, num_actions)
``rewards``             float32                    (N,)
``terminated``          bool                       (N,)
``truncated``           bool                       (N,)
``is_success``          bool (optional)            (N,)
======================  =========================  ==============================

Metadata: schema, schema_version, task, actor_id, run_id, sequence, weights_version,
num_actions, stamp_ns, checksum. ``run_id`` names one start of the actor; ``sequence`` is the
number of transitions the actor published in that run before this batch, so a receiver can
refuse repeats (an old sequence number) and count gaps as lost transitions. Version 1 blobs
(before run ids) are refused with reason ``version``: without a run id a repeat cannot be told
from an actor that restarted. ``checksum`` is ``sha256:<hex>`` over the tensors, or ``none``
in a blob that travels authenticated (q_grasp.wire.auth: its HMAC covers every byte, so a
second hash would only double the cost); a decoder accepts ``none`` only when told that the
blob was authenticated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from q_grasp.wire.errors import (
    REASON_DTYPE,
    REASON_METADATA,
    REASON_MISSING_KEY,
    REASON_NON_FINITE,
    REASON_RANGE,
    REASON_SCHEMA,
    REASON_SHAPE,
    REASON_TOO_LARGE,
    REASON_UNEXPECTED_KEY,
    WireError,
)
from q_grasp.wire.format import (
    PROCESS_RUN_ID,
    Checksum,
    check_schema,
    load_numpy,
    metadata_int,
    metadata_run_id,
    metadata_str,
    numpy_dtype_code,
    read_header,
    verify_checksum,
)

TRANSITIONS_SCHEMA = "q_grasp/transitions"
"""Schema name in the blob metadata and in UInt8MultiArray.layout.dim[0].label."""
TRANSITIONS_SCHEMA_VERSION = 2
"""Version written by this encoder."""
SUPPORTED_TRANSITIONS_VERSIONS = (2,)
"""Versions this decoder reads."""

OBSERVATION_DTYPES = ("F32", "F16", "U8")
"""safetensors codes allowed for observations (uint8 keeps camera images 4x smaller)."""
_PER_STEP = {
    "actions": "I64", "rewards": "F32", "terminated": "BOOL", "truncated": "BOOL",
    "is_success": "BOOL",
}
_REQUIRED = ("observations", "next_observations", "actions", "rewards", "terminated",
             "truncated")
_OPTIONAL = ("is_success",)
MAX_INT64_METADATA = 2**63 - 1
NO_CHECKSUM = "none"
"""The checksum of a blob whose integrity an authentication tag guarantees."""
MAX_TRANSITION_TENSORS = 16
"""More tensors than any schema version has; unknown names are then reported by name."""


@dataclass
class TransitionBatch:
    """N transitions from one actor, arrays indexed by transition along axis 0.

    Arrays returned by :func:`decode_transitions` are fresh copies the caller may keep.
    """

    observations: np.ndarray
    """Observations s, (N, *obs_shape), float32/float16/uint8."""
    actions: np.ndarray
    """Discrete actions a, (N,) int64 in [0, num_actions)."""
    rewards: np.ndarray
    """Rewards r, (N,) float32."""
    next_observations: np.ndarray
    """Next observations s', same dtype and shape as observations."""
    terminated: np.ndarray
    """True where s' is terminal (no bootstrapping), (N,) bool."""
    truncated: np.ndarray
    """True where the episode was cut off by a time limit (bootstrap from s'), (N,) bool."""
    num_actions: int
    """Size of the discrete action space the actions index into."""
    is_success: np.ndarray | None = None
    """Optional per-transition task success flag (for success-rate diagnostics), (N,) bool."""
    task: str = ""
    """Task name, e.g. "grasp" or "reacher"."""
    actor_id: str = ""
    """Which actor produced the batch (namespace or node name)."""
    sequence: int = 0
    """Transitions this actor published in this run before this batch, so the learner can
    see gaps and repeats."""
    run_id: str = PROCESS_RUN_ID
    """Which start of the actor (fresh per start; sequences count from 0 in each run)."""
    weights_version: int = -1
    """Version of the weights the actor acted with (-1: initial/untrained weights)."""
    stamp_ns: int = 0
    """Creation time in nanoseconds (actor's clock), for latency measurements; 0 = unset."""

    def __len__(self) -> int:
        return int(self.actions.shape[0])


@dataclass
class TransitionLimits:
    """What a receiver accepts; a blob outside these limits is refused before it is parsed."""

    max_blob_bytes: int = 64 * 1024 * 1024
    """Largest blob accepted, in bytes."""
    max_header_bytes: int = 64 * 1024
    """Largest safetensors JSON header accepted, in bytes."""
    max_batch_size: int = 4096
    """Most transitions in one blob."""
    max_obs_elements: int = 4 * 256 * 256
    """Most elements in one observation (product of obs_shape)."""
    obs_shape: tuple[int, ...] | None = None
    """Required observation shape (without the batch axis); None accepts any shape."""
    num_actions: int | None = None
    """Required action-space size; None accepts the num_actions the blob declares."""
    task: str | None = None
    """Required task name; None accepts any."""
    max_abs_reward: float = 1e6
    """Largest |reward| accepted; larger values indicate a bug on the sending side."""
    allowed_obs_dtypes: tuple[str, ...] = field(default=OBSERVATION_DTYPES)
    """safetensors dtype codes accepted for observations."""

    def __post_init__(self) -> None:
        for name in ("max_blob_bytes", "max_header_bytes", "max_batch_size",
                     "max_obs_elements"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.obs_shape is not None:
            self.obs_shape = tuple(int(d) for d in self.obs_shape)
            if any(d < 1 for d in self.obs_shape):
                raise ValueError(f"obs_shape: every dimension must be >= 1, got "
                                 f"{self.obs_shape}")
        if self.num_actions is not None and int(self.num_actions) < 1:
            raise ValueError(f"num_actions: must be >= 1 or None, got {self.num_actions}")
        if not self.max_abs_reward > 0:
            raise ValueError(f"max_abs_reward: must be > 0, got {self.max_abs_reward}")
        bad = [c for c in self.allowed_obs_dtypes if c not in OBSERVATION_DTYPES]
        if bad:
            raise ValueError(f"allowed_obs_dtypes: must be a subset of {OBSERVATION_DTYPES}, "
                             f"got {bad}")


def _as_array(name: str, value: object) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise WireError(REASON_DTYPE, f"{name} must be a numpy array, got "
                                      f"{type(value).__name__}")
    return value


def _check_batch(arrays: Mapping[str, tuple[str, tuple[int, ...]]], num_actions: int,
                 limits: TransitionLimits | None) -> None:
    """Dtype and shape rules shared by encoder and decoder (before any value is looked at).

    ``arrays`` maps tensor name -> (dtype code, shape).
    """
    for key in _REQUIRED:
        if key not in arrays:
            raise WireError(REASON_MISSING_KEY, f"tensor {key!r} is missing")
    for key in arrays:
        if key not in _REQUIRED and key not in _OPTIONAL:
            raise WireError(REASON_UNEXPECTED_KEY, f"unknown tensor {key!r}")
    obs_code, obs_shape = arrays["observations"]
    allowed = limits.allowed_obs_dtypes if limits is not None else OBSERVATION_DTYPES
    if obs_code not in allowed:
        raise WireError(REASON_DTYPE, f"observations dtype {obs_code} not in {allowed}")
    if len(obs_shape) < 1:
        raise WireError(REASON_SHAPE, "observations need a batch axis")
    next_code, next_shape = arrays["next_observations"]
    if next_code != obs_code or next_shape != obs_shape:
        raise WireError(REASON_SHAPE, f"next_observations {next_code}{list(next_shape)} differ "
                                      f"from observations {obs_code}{list(obs_shape)}")
    n = obs_shape[0]
    if n < 1:
        raise WireError(REASON_SHAPE, "empty batch")
    for key, code in _PER_STEP.items():
        if key not in arrays:
            continue
        got_code, got_shape = arrays[key]
        if got_code != code:
            raise WireError(REASON_DTYPE, f"{key} dtype {got_code}, expected {code}")
        if got_shape != (n,):
            raise WireError(REASON_SHAPE, f"{key} shape {list(got_shape)}, expected [{n}] "
                                          "(one per transition)")
    if num_actions < 1:
        raise WireError(REASON_RANGE, f"num_actions {num_actions} < 1")
    if limits is None:
        return
    if n > limits.max_batch_size:
        raise WireError(REASON_TOO_LARGE, f"batch of {n}, limit {limits.max_batch_size}")
    if limits.obs_shape is not None and tuple(obs_shape[1:]) != limits.obs_shape:
        raise WireError(REASON_SHAPE, f"observation shape {list(obs_shape[1:])}, expected "
                                      f"{list(limits.obs_shape)}")
    obs_elements = math.prod(obs_shape[1:])
    if obs_elements > limits.max_obs_elements:
        raise WireError(REASON_TOO_LARGE, f"observation of {obs_elements} elements, limit "
                                          f"{limits.max_obs_elements}")
    if limits.num_actions is not None and num_actions != limits.num_actions:
        raise WireError(REASON_RANGE, f"num_actions {num_actions}, expected "
                                      f"{limits.num_actions}")


def _check_values(tensors: Mapping[str, np.ndarray], num_actions: int,
                  limits: TransitionLimits | None) -> None:
    for key in ("observations", "next_observations", "rewards"):
        arr = tensors[key]
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise WireError(REASON_NON_FINITE, f"{key} contains NaN or infinity")
    actions = tensors["actions"]
    if actions.size and (actions.min() < 0 or actions.max() >= num_actions):
        raise WireError(REASON_RANGE, f"actions must lie in [0, {num_actions}), got "
                                      f"[{actions.min()}, {actions.max()}]")
    max_abs_reward = limits.max_abs_reward if limits is not None else math.inf
    if np.abs(tensors["rewards"]).max() > max_abs_reward:
        raise WireError(REASON_RANGE, f"|reward| exceeds {max_abs_reward}")


def encode_transitions(batch: TransitionBatch, *, checksum: bool = True) -> bytes:
    """Serialise a batch; raises WireError (a ValueError) if the batch itself is invalid.

    The encoder applies the same rules as the decoder (except receiver limits), so a blob that
    leaves an actor is one a learner with matching limits accepts. ``checksum`` False: for a
    blob that will be signed (see the module docstring).
    """
    from safetensors.numpy import save

    tensors = {
        "observations": _as_array("observations", batch.observations),
        "next_observations": _as_array("next_observations", batch.next_observations),
        "actions": _as_array("actions", batch.actions),
        "rewards": _as_array("rewards", batch.rewards),
        "terminated": _as_array("terminated", batch.terminated),
        "truncated": _as_array("truncated", batch.truncated),
    }
    if batch.is_success is not None:
        tensors["is_success"] = _as_array("is_success", batch.is_success)
    # Little-endian, C-contiguous: the byte layout safetensors stores and the checksum covers.
    tensors = {k: np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<"))
               for k, v in tensors.items()}
    specs = {k: (numpy_dtype_code(v.dtype), tuple(v.shape)) for k, v in tensors.items()}
    num_actions = int(batch.num_actions)
    _check_batch(specs, num_actions, None)
    _check_values(tensors, num_actions, None)
    for key, value in (("sequence", batch.sequence), ("stamp_ns", batch.stamp_ns)):
        if not 0 <= int(value) <= MAX_INT64_METADATA:
            raise WireError(REASON_METADATA, f"{key} must be in [0, 2**63), got {value}")
    if int(batch.weights_version) < -1:
        raise WireError(REASON_METADATA, f"weights_version must be >= -1, got "
                                    f"{batch.weights_version}")

    digest = NO_CHECKSUM
    if checksum:
        hasher = Checksum()
        for name in sorted(tensors):
            code, shape = specs[name]
            hasher.add(name, code, shape, tensors[name].reshape(-1).view(np.uint8))
        digest = hasher.hexdigest()
    metadata = {
        "schema": TRANSITIONS_SCHEMA,
        "schema_version": str(TRANSITIONS_SCHEMA_VERSION),
        "task": batch.task,
        "actor_id": batch.actor_id,
        "run_id": batch.run_id,
        "sequence": str(int(batch.sequence)),
        "weights_version": str(int(batch.weights_version)),
        "num_actions": str(num_actions),
        "stamp_ns": str(int(batch.stamp_ns)),
        "checksum": digest,
    }
    for key in ("task", "actor_id"):
        metadata_str(metadata, key)
    metadata_run_id(metadata)
    return save(tensors, metadata=metadata)


def decode_transitions(blob: object, limits: TransitionLimits, *,
                       authenticated: bool = False) -> TransitionBatch:
    """Validate and parse a transitions blob. Any problem raises :class:`WireError`.
    ``authenticated``: the blob's authentication tag was checked (checksum may be none)."""
    from q_grasp.wire.format import as_bytes

    data = as_bytes(blob)
    header = read_header(data, max_blob_bytes=limits.max_blob_bytes,
                         max_header_bytes=limits.max_header_bytes,
                         max_tensors=MAX_TRANSITION_TENSORS)
    meta = header.metadata
    check_schema(meta, TRANSITIONS_SCHEMA, SUPPORTED_TRANSITIONS_VERSIONS)
    task = metadata_str(meta, "task")
    if limits.task is not None and task != limits.task:
        raise WireError(REASON_SCHEMA, f"task {task!r}, expected {limits.task!r}")
    num_actions = metadata_int(meta, "num_actions", minimum=1, maximum=2**31 - 1)
    _check_batch({k: (s.dtype, s.shape) for k, s in header.tensors.items()}, num_actions, limits)
    actor_id = metadata_str(meta, "actor_id")
    run_id = metadata_run_id(meta)
    sequence = metadata_int(meta, "sequence", minimum=0, maximum=MAX_INT64_METADATA)
    weights_version = metadata_int(meta, "weights_version", minimum=-1,
                                   maximum=MAX_INT64_METADATA)
    stamp_ns = metadata_int(meta, "stamp_ns", minimum=0, maximum=MAX_INT64_METADATA)
    # Only now, with every declared size within limits, touch the payload.
    if meta.get("checksum") == NO_CHECKSUM:
        if not authenticated:
            raise WireError(REASON_METADATA, "checksum 'none' is only valid in an "
                                             "authenticated blob")
    else:
        verify_checksum(data, header)
    tensors = load_numpy(data)
    _check_values(tensors, num_actions, limits)
    return TransitionBatch(
        observations=tensors["observations"],
        actions=tensors["actions"],
        rewards=tensors["rewards"],
        next_observations=tensors["next_observations"],
        terminated=tensors["terminated"],
        truncated=tensors["truncated"],
        is_success=tensors.get("is_success"),
        num_actions=num_actions,
        task=task,
        actor_id=actor_id,
        run_id=run_id,
        sequence=sequence,
        weights_version=weights_version,
        stamp_ns=stamp_ns,
    )
