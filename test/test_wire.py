"""Wire codec: round trips, and hostile blobs that must all end in WireError (never a crash)."""

from __future__ import annotations

import array
import json
import struct

import numpy as np
import pytest
import torch
from safetensors.numpy import save as np_save

from q_grasp.wire import (
    REASONS,
    TransitionBatch,
    TransitionLimits,
    WeightsLimits,
    WireError,
    decode_transitions,
    decode_weights,
    encode_transitions,
    encode_weights,
    network_config_of,
    state_dict_dtypes,
    state_dict_shapes,
)
from q_grasp.wire.format import Checksum, numpy_dtype_code

torch.set_num_threads(1)

OBS_SHAPE = (4, 8, 8)
NUM_ACTIONS = 2 * 8 * 8


def make_batch(n: int = 3, obs_dtype: type = np.float32, seed: int = 0,
               with_success: bool = True) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    obs = rng.random((n, *OBS_SHAPE))
    nxt = rng.random((n, *OBS_SHAPE))
    if obs_dtype == np.uint8:
        obs, nxt = (obs * 255).astype(np.uint8), (nxt * 255).astype(np.uint8)
    else:
        obs, nxt = obs.astype(obs_dtype), nxt.astype(obs_dtype)
    return TransitionBatch(
        observations=obs,
        actions=rng.integers(0, NUM_ACTIONS, n).astype(np.int64),
        rewards=rng.random(n).astype(np.float32),
        next_observations=nxt,
        terminated=rng.random(n) < 0.5,
        truncated=np.zeros(n, bool),
        is_success=(rng.random(n) < 0.5) if with_success else None,
        num_actions=NUM_ACTIONS,
        task="grasp",
        actor_id="/arm0/policy",
        sequence=17,
        weights_version=4,
        stamp_ns=123456789,
    )


def batch_tensors(batch: TransitionBatch) -> dict[str, np.ndarray]:
    tensors = {
        "observations": batch.observations, "next_observations": batch.next_observations,
        "actions": batch.actions, "rewards": batch.rewards, "terminated": batch.terminated,
        "truncated": batch.truncated,
    }
    if batch.is_success is not None:
        tensors["is_success"] = batch.is_success
    return tensors


def transition_meta(**overrides: str) -> dict[str, str]:
    meta = {
        "schema": "q_grasp/transitions", "schema_version": "2", "task": "grasp",
        "actor_id": "a", "run_id": "r1", "sequence": "0", "weights_version": "-1",
        "num_actions": str(NUM_ACTIONS), "stamp_ns": "0",
    }
    meta.update(overrides)
    return meta


def craft(tensors: dict[str, np.ndarray], metadata: dict[str, str],
          checksum: bool = True) -> bytes:
    """A well-formed safetensors blob with arbitrary content and (by default) a valid checksum,
    so that a test reaches the check it is aimed at rather than the checksum."""
    meta = dict(metadata)
    if checksum:
        digest = Checksum()
        for name in sorted(tensors):
            arr = np.ascontiguousarray(tensors[name])
            raw = arr.reshape(-1).view(np.uint8)
            digest.add(name, numpy_dtype_code(arr.dtype), arr.shape, raw)
        meta["checksum"] = digest.hexdigest()
    return np_save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=meta)


def raw_blob(header: object, data: bytes = b"", header_len: int | None = None) -> bytes:
    """A blob from a header object (JSON-encoded) or raw header bytes, and raw data bytes."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    length = len(text) if header_len is None else header_len
    return struct.pack("<Q", length) + text + data


def reason_of(blob: object, limits: TransitionLimits | None = None) -> str:
    with pytest.raises(WireError) as info:
        decode_transitions(blob, limits or TransitionLimits())
    assert info.value.reason in REASONS
    return info.value.reason


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("obs_dtype", [np.float32, np.float16, np.uint8])
@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("with_success", [True, False])
def test_transitions_round_trip(obs_dtype: type, n: int, with_success: bool) -> None:
    batch = make_batch(n, obs_dtype, with_success=with_success)
    out = decode_transitions(encode_transitions(batch),
                             TransitionLimits(obs_shape=OBS_SHAPE, num_actions=NUM_ACTIONS,
                                              task="grasp"))
    for key, value in batch_tensors(batch).items():
        got = getattr(out, key)
        assert got.dtype == value.dtype and got.shape == value.shape
        np.testing.assert_array_equal(got, value)
    assert out.is_success is None if not with_success else out.is_success is not None
    assert (out.task, out.actor_id, out.sequence, out.weights_version, out.stamp_ns,
            out.num_actions) == ("grasp", "/arm0/policy", 17, 4, 123456789, NUM_ACTIONS)
    assert len(out) == n
    out.rewards[0] = 5.0  # decoded arrays are the caller's to keep and modify


def test_encoding_is_deterministic() -> None:
    # safetensors writes the metadata map in hash order, so compare the parsed header.
    def split(blob: bytes) -> tuple[dict, bytes]:
        n = struct.unpack("<Q", blob[:8])[0]
        return json.loads(blob[8:8 + n]), blob[8 + n:]

    assert split(encode_transitions(make_batch())) == split(encode_transitions(make_batch()))


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview,
                                  lambda b: array.array("B", b),
                                  lambda b: np.frombuffer(b, np.uint8)])
def test_transitions_accepts_bytes_like(wrap) -> None:
    blob = encode_transitions(make_batch())
    assert decode_transitions(wrap(blob), TransitionLimits()).sequence == 17


def test_weights_round_trip_state_dict() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3), torch.nn.BatchNorm2d(8),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 3))
    state = net.state_dict()
    net_config = {"kind": "unet", "channels": [8, 16], "in_channels": 4}
    blob = encode_weights(state, 7, net_config, task="grasp", source="trainer",
                          num_updates=700, stamp_ns=42)
    msg = decode_weights(blob, WeightsLimits(task="grasp"), {"in_channels": 4,
                         "channels": [8, 16], "kind": "unet"},
                         expected_shapes=state_dict_shapes(state))
    assert (msg.version, msg.task, msg.source, msg.num_updates, msg.stamp_ns) == (
        7, "grasp", "trainer", 700, 42)
    assert msg.net_config == net_config
    for key, value in state.items():
        assert msg.state_dict[key].dtype == value.dtype
        assert torch.equal(msg.state_dict[key], value)
    clone = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3), torch.nn.BatchNorm2d(8),
                                torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 3))
    clone.load_state_dict(msg.state_dict)


def test_actor_takes_weights_from_a_learner_that_differs_only_at_run_time() -> None:
    """Acting window and precision are the actor's own business; the weights' meaning (the
    architecture) must match."""
    from q_grasp.learning.networks import UNetQMap
    learner = UNetQMap(4, 8, 16, 16, base_channels=4, depth=2, select_smoothing_px=5,
                       precision="bfloat16")
    actor = UNetQMap(4, 8, 16, 16, base_channels=4, depth=2, select_smoothing_px=7,
                     eval_smoothing_px=9, precision="float32")
    other = UNetQMap(4, 8, 16, 16, base_channels=4, depth=2, output="sigmoid")
    assert "precision" not in network_config_of(learner)
    blob = encode_weights(learner.state_dict(), 3, network_config_of(learner), task="grasp")
    msg = decode_weights(blob, WeightsLimits(task="grasp"), network_config_of(actor),
                         expected_shapes=state_dict_shapes(actor.state_dict()))
    actor.load_state_dict(msg.state_dict)
    with pytest.raises(WireError) as err:
        decode_weights(blob, WeightsLimits(task="grasp"), network_config_of(other))
    assert err.value.reason == "net_config"


def test_weights_other_dtypes_and_views() -> None:
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state = {"bf": torch.ones(3, dtype=torch.bfloat16), "half": torch.ones(2).half(),
             "strided": base.t(), "shared_a": base, "shared_b": base[0],
             "flag": torch.tensor(True), "scalar": torch.tensor(2.5)}
    msg = decode_weights(encode_weights(state, 0, {}), WeightsLimits())
    for key, value in state.items():
        assert torch.equal(msg.state_dict[key], value)


# ----------------------------------------------------------------------------- encoder refuses


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: setattr(b, "observations", b.observations.astype(np.float64)), "dtype"),
    (lambda b: setattr(b, "actions", b.actions.astype(np.int32)), "dtype"),
    (lambda b: setattr(b, "rewards", b.rewards.astype(np.float64)), "dtype"),
    (lambda b: setattr(b, "terminated", b.terminated.astype(np.uint8)), "dtype"),
    (lambda b: setattr(b, "observations", b.observations.tolist()), "dtype"),
    (lambda b: setattr(b, "rewards", b.rewards[:2]), "shape"),
    (lambda b: setattr(b, "next_observations", b.next_observations[:, :2]), "shape"),
    (lambda b: b.observations.__setitem__((0, 0, 0, 0), np.nan), "non_finite"),
    (lambda b: b.rewards.__setitem__(1, np.inf), "non_finite"),
    (lambda b: b.actions.__setitem__(0, NUM_ACTIONS), "range"),
    (lambda b: b.actions.__setitem__(0, -1), "range"),
    (lambda b: setattr(b, "num_actions", 0), "range"),
    (lambda b: setattr(b, "sequence", -1), "metadata"),
    (lambda b: setattr(b, "weights_version", -2), "metadata"),
    (lambda b: setattr(b, "task", "é"), "metadata"),
    (lambda b: setattr(b, "actor_id", "x" * 300), "metadata"),
])
def test_encoder_refuses_invalid_batches(mutate, reason: str) -> None:
    batch = make_batch()
    mutate(batch)
    with pytest.raises(WireError) as info:
        encode_transitions(batch)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_weights_encoder_refuses_nan_and_bad_dtypes() -> None:
    with pytest.raises(WireError, match="non_finite"):
        encode_weights({"w": torch.tensor([1.0, float("nan")])}, 1, {})
    with pytest.raises(WireError, match="dtype"):
        encode_weights({"w": torch.ones(2, dtype=torch.complex64)}, 1, {})
    with pytest.raises(WireError, match="metadata"):
        encode_weights({"w": torch.ones(2)}, -1, {})
    with pytest.raises(WireError, match="metadata"):
        encode_weights({"w": torch.ones(2)}, 1, {"x": float("nan")})


# ----------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize("value", ["text", None, 12, [1, 2, 3], {"a": 1},
                                   array.array("i", [1, 2]), np.zeros(4, np.float32),
                                   np.zeros((2, 2), np.uint8),
                                   memoryview(np.zeros((4, 4), np.uint8)[:, ::2])])
def test_non_bytes_is_type_error(value: object) -> None:
    assert reason_of(value) == "type"


@pytest.mark.parametrize("value", [b"", bytearray(), memoryview(b""), array.array("B"),
                                   np.zeros(0, np.uint8), memoryview(np.zeros((0, 3), np.float32)),
                                   memoryview(np.zeros((2, 3), np.float32))])
def test_empty_or_odd_buffers_are_rejected(value: object) -> None:
    assert reason_of(value) in ("truncated", "bad_header")


def test_every_truncation_is_rejected() -> None:
    blob = encode_transitions(make_batch(2))
    header_end = 8 + struct.unpack("<Q", blob[:8])[0]
    lengths = sorted(set(range(0, header_end + 16)) | set(range(header_end, len(blob), 97)))
    for length in lengths:
        reason = reason_of(blob[:length])
        assert reason in ("truncated", "bad_header"), (length, reason)


def test_trailing_bytes_are_rejected() -> None:
    assert reason_of(encode_transitions(make_batch()) + b"\0") == "bad_header"


@pytest.mark.parametrize("header_len", [2**64 - 1, 2**63, 2**40, 64 * 1024 + 1])
def test_huge_declared_header_is_refused_before_parsing(header_len: int) -> None:
    assert reason_of(struct.pack("<Q", header_len) + b"{}") == "too_large"


def test_header_longer_than_blob_is_truncated() -> None:
    assert reason_of(struct.pack("<Q", 1000) + b"{}") == "truncated"


def test_blob_over_size_limit() -> None:
    blob = encode_transitions(make_batch(8))
    assert reason_of(blob, TransitionLimits(max_blob_bytes=len(blob) - 1)) == "too_large"
    assert decode_transitions(blob, TransitionLimits(max_blob_bytes=len(blob))).sequence == 17


def test_huge_declared_tensor_is_refused_without_allocation() -> None:
    header = {"__metadata__": transition_meta(),
              "observations": {"dtype": "F32", "shape": [2**40, 1],
                               "data_offsets": [0, 2**42]}}
    assert reason_of(raw_blob(header, b"\0" * 16)) == "truncated"


def test_random_bytes_seeded() -> None:
    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(0, 400))
        blob = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        reason_of(blob)
    # Random bytes behind a plausible (small) header length: exercises the JSON parser.
    for _ in range(300):
        n = int(rng.integers(1, 200))
        blob = struct.pack("<Q", n) + rng.integers(0, 256, n + 10, dtype=np.uint8).tobytes()
        reason_of(blob)


VALID_ENTRY = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}


@pytest.mark.parametrize("header, data, reason", [
    (b"\xff\xfe{not utf8", b"", "bad_header"),
    (b"{not json", b"", "bad_header"),
    (b"[1, 2, 3]", b"", "bad_header"),
    (b"\"just a string\"", b"", "bad_header"),
    (b"{\"a\": 1, \"a\": 2}", b"", "bad_header"),
    (b"[" * 100000 + b"]" * 100000, b"", "too_large"),
    (b"[" * 30000 + b"]" * 30000, b"", "bad_header"),
    ({"x": VALID_ENTRY}, b"\0" * 4, "metadata"),
    ({"__metadata__": [1], "x": VALID_ENTRY}, b"\0" * 4, "metadata"),
    ({"__metadata__": {"schema": 1}, "x": VALID_ENTRY}, b"\0" * 4, "metadata"),
    ({"__metadata__": transition_meta(), "x": {"dtype": "F32", "shape": [1]}}, b"\0" * 4,
     "bad_header"),
    ({"__metadata__": transition_meta(), "x": {**VALID_ENTRY, "dtype": "Q99"}}, b"\0" * 4,
     "bad_header"),
    ({"__metadata__": transition_meta(), "x": {**VALID_ENTRY, "shape": [True]}}, b"\0" * 4,
     "bad_header"),
    ({"__metadata__": transition_meta(), "x": {**VALID_ENTRY, "shape": [-1]}}, b"\0" * 4,
     "bad_header"),
    ({"__metadata__": transition_meta(), "x": {**VALID_ENTRY, "shape": [1.0]}}, b"\0" * 4,
     "bad_header"),
    ({"__metadata__": transition_meta(), "x": {**VALID_ENTRY, "shape": [1] * 9}}, b"\0" * 4,
     "bad_header"),
    ({"__metadata__": transition_meta(), "x": {**VALID_ENTRY, "data_offsets": [4, 0]}},
     b"\0" * 4, "bad_header"),
    ({"__metadata__": transition_meta(), "x": {**VALID_ENTRY, "data_offsets": [0, 8]}},
     b"\0" * 8, "bad_header"),
    ({"__metadata__": transition_meta(), "x": {**VALID_ENTRY, "data_offsets": [0, "4"]}},
     b"\0" * 4, "bad_header"),
    ({"__metadata__": transition_meta(), "x": VALID_ENTRY, "y": VALID_ENTRY}, b"\0" * 4,
     "bad_header"),
    ({"__metadata__": transition_meta(), "x": {**VALID_ENTRY, "data_offsets": [4, 8]}},
     b"\0" * 8, "bad_header"),
    ({"__metadata__": transition_meta(), "": VALID_ENTRY}, b"\0" * 4, "bad_header"),
    ({"__metadata__": transition_meta(), "x" * 300: VALID_ENTRY}, b"\0" * 4, "bad_header"),
    ({"__metadata__": {**transition_meta(), "big": "x" * 70000}, "x": VALID_ENTRY},
     b"\0" * 4, "too_large"),
    ({"__metadata__": transition_meta(), **{f"t{i}": {"dtype": "F32", "shape": [0],
                                                      "data_offsets": [0, 0]}
                                            for i in range(17)}}, b"", "too_large"),
])
def test_malformed_headers(header, data: bytes, reason: str) -> None:
    limits = TransitionLimits(max_header_bytes=300_000) if reason != "too_large" or \
        not isinstance(header, bytes) else TransitionLimits()
    assert reason_of(raw_blob(header, data), limits) == reason


def _valid_tensors() -> dict[str, np.ndarray]:
    return batch_tensors(make_batch(3))


def _with(**changes: np.ndarray | None) -> dict[str, np.ndarray]:
    tensors = _valid_tensors()
    for key, value in changes.items():
        if value is None:
            tensors.pop(key)
        else:
            tensors[key] = value
    return tensors


NAN_OBS = np.full((3, *OBS_SHAPE), np.nan, np.float32)
INF_NEXT = np.full((3, *OBS_SHAPE), -np.inf, np.float32)


@pytest.mark.parametrize("tensors, meta, reason", [
    (_with(), transition_meta(schema="q_grasp/weights"), "schema"),
    (_with(), transition_meta(schema="other"), "schema"),
    (_with(), {k: v for k, v in transition_meta().items() if k != "schema"}, "schema"),
    (_with(), transition_meta(schema_version="1"), "version"),  # before run ids
    (_with(), transition_meta(schema_version="3"), "version"),
    (_with(), transition_meta(run_id=""), "metadata"),
    (_with(), {k: v for k, v in transition_meta().items() if k != "run_id"}, "metadata"),
    (_with(), transition_meta(run_id="r" * 65), "metadata"),
    (_with(), transition_meta(schema_version="one"), "metadata"),
    (_with(), transition_meta(sequence="abc"), "metadata"),
    (_with(), transition_meta(sequence="-1"), "metadata"),
    (_with(), transition_meta(sequence=" 7"), "metadata"),
    (_with(), transition_meta(sequence="1_000"), "metadata"),
    (_with(), transition_meta(sequence="9" * 30), "metadata"),
    (_with(), transition_meta(weights_version="-2"), "metadata"),
    (_with(), transition_meta(stamp_ns="1.5"), "metadata"),
    (_with(), transition_meta(num_actions="0"), "metadata"),
    (_with(), transition_meta(num_actions="10"), "range"),
    (_with(), transition_meta(task="\x00bad"), "metadata"),
    (_with(), {k: v for k, v in transition_meta().items() if k != "actor_id"}, "metadata"),
    (_with(rewards=None), transition_meta(), "missing_key"),
    (_with(observations=None), transition_meta(), "missing_key"),
    (_with(extra=np.zeros(3, np.float32)), transition_meta(), "unexpected_key"),
    (_with(observations=np.zeros((3, *OBS_SHAPE), np.float64),
           next_observations=np.zeros((3, *OBS_SHAPE), np.float64)), transition_meta(), "dtype"),
    (_with(observations=np.zeros((3, *OBS_SHAPE), np.int16),
           next_observations=np.zeros((3, *OBS_SHAPE), np.int16)), transition_meta(), "dtype"),
    (_with(next_observations=np.zeros((3, *OBS_SHAPE), np.float16)), transition_meta(),
     "shape"),
    (_with(actions=np.zeros(3, np.int32)), transition_meta(), "dtype"),
    (_with(actions=np.zeros(3, np.float32)), transition_meta(), "dtype"),
    (_with(rewards=np.zeros(3, np.float64)), transition_meta(), "dtype"),
    (_with(terminated=np.zeros(3, np.uint8)), transition_meta(), "dtype"),
    (_with(is_success=np.zeros(3, np.float32)), transition_meta(), "dtype"),
    (_with(rewards=np.zeros(4, np.float32)), transition_meta(), "shape"),
    (_with(truncated=np.zeros((3, 1), bool)), transition_meta(), "shape"),
    (_with(actions=np.zeros(2, np.int64)), transition_meta(), "shape"),
    (_with(next_observations=np.zeros((3, 4, 8, 9), np.float32)), transition_meta(), "shape"),
    (_with(observations=np.zeros((3, 4, 8, 9), np.float32),
           next_observations=np.zeros((3, 4, 8, 9), np.float32)), transition_meta(), "shape"),
    (_with(observations=np.zeros(3, np.float32), next_observations=np.zeros(3, np.float32)),
     transition_meta(), "shape"),
    (_with(observations=np.zeros((0, *OBS_SHAPE), np.float32),
           next_observations=np.zeros((0, *OBS_SHAPE), np.float32),
           actions=np.zeros(0, np.int64), rewards=np.zeros(0, np.float32),
           terminated=np.zeros(0, bool), truncated=np.zeros(0, bool),
           is_success=np.zeros(0, bool)), transition_meta(), "shape"),
    (_with(observations=NAN_OBS), transition_meta(), "non_finite"),
    (_with(next_observations=INF_NEXT), transition_meta(), "non_finite"),
    (_with(rewards=np.array([0, np.nan, 0], np.float32)), transition_meta(), "non_finite"),
    (_with(rewards=np.array([0, 1e9, 0], np.float32)), transition_meta(), "range"),
    (_with(actions=np.array([0, NUM_ACTIONS, 1])), transition_meta(), "range"),
    (_with(actions=np.array([0, -1, 1])), transition_meta(), "range"),
    (_with(actions=np.array([0, 2**62, 1])), transition_meta(), "range"),
])
def test_crafted_blobs_rejected(tensors, meta, reason: str) -> None:
    limits = TransitionLimits(obs_shape=OBS_SHAPE, num_actions=NUM_ACTIONS)
    assert reason_of(craft(tensors, meta), limits) == reason


def test_limits_applied_before_payload() -> None:
    blob = encode_transitions(make_batch(6))
    assert reason_of(blob, TransitionLimits(max_batch_size=5)) == "too_large"
    assert reason_of(blob, TransitionLimits(max_obs_elements=100)) == "too_large"
    assert reason_of(blob, TransitionLimits(obs_shape=(3, 8, 8))) == "shape"
    assert reason_of(blob, TransitionLimits(num_actions=7)) == "range"
    assert reason_of(blob, TransitionLimits(task="reacher")) == "schema"
    assert reason_of(blob, TransitionLimits(allowed_obs_dtypes=("U8",))) == "dtype"
    assert reason_of(blob, TransitionLimits(max_header_bytes=64)) == "too_large"


def test_checksum_detects_flipped_payload_bytes() -> None:
    blob = bytearray(encode_transitions(make_batch(2, np.uint8)))
    header_end = 8 + struct.unpack("<Q", blob[:8])[0]
    rng = np.random.default_rng(3)
    for pos in rng.integers(header_end, len(blob), 30):
        mutated = bytearray(blob)
        mutated[pos] ^= 0x01
        assert reason_of(bytes(mutated)) in ("checksum", "range", "non_finite")


def test_checksum_missing_or_wrong() -> None:
    assert reason_of(craft(_valid_tensors(), transition_meta(), checksum=False)) == "metadata"
    bad = craft(_valid_tensors(), {**transition_meta(), "checksum": "sha256:" + "0" * 64},
                checksum=False)
    assert reason_of(bad) == "checksum"
    # Relabelling intact bytes (swap two same-shaped tensors in the header) is caught too.
    blob = encode_transitions(make_batch(2))
    n = struct.unpack("<Q", blob[:8])[0]
    header = blob[8:8 + n].replace(b'"terminated"', b'"TMP"').replace(
        b'"truncated"', b'"terminated"').replace(b'"TMP"', b'"truncated"')
    swapped = blob[:8] + header[:n].ljust(n) + blob[8 + n:]
    assert len(swapped) == len(blob)
    assert reason_of(swapped) == "checksum"


def test_weights_blob_on_transitions_topic_and_back() -> None:
    weights = encode_weights({"w": torch.ones(2)}, 1, {})
    assert reason_of(weights) in ("schema", "too_large")
    assert reason_of(weights, TransitionLimits(max_header_bytes=1 << 20)) == "schema"
    with pytest.raises(WireError) as info:
        decode_weights(encode_transitions(make_batch()), WeightsLimits())
    assert info.value.reason == "schema"


# ----------------------------------------------------------------------------- weights hostile


def weights_reason(blob: object, limits: WeightsLimits | None = None, **kwargs) -> str:
    with pytest.raises(WireError) as info:
        decode_weights(blob, limits or WeightsLimits(), **kwargs)
    assert info.value.reason in REASONS
    return info.value.reason


def weights_meta(**overrides: str) -> dict[str, str]:
    meta = {"schema": "q_grasp/weights", "schema_version": "2", "version": "3", "run_id": "t1",
            "net_config": '{"kind":"mlp"}', "task": "reacher", "source": "t",
            "num_updates": "0", "stamp_ns": "0"}
    meta.update(overrides)
    return meta


GOOD_W = {"w": np.ones((2, 3), np.float32), "b": np.zeros(2, np.float32)}


@pytest.mark.parametrize("tensors, meta, kwargs, reason", [
    ({"w": np.array([1, np.nan], np.float32)}, weights_meta(), {}, "non_finite"),
    ({"w": np.array([np.inf], np.float16)}, weights_meta(), {}, "non_finite"),
    ({"w": np.ones(2, np.uint16)}, weights_meta(), {}, "dtype"),
    ({}, weights_meta(), {}, "missing_key"),
    (GOOD_W, weights_meta(schema="q_grasp/transitions"), {}, "schema"),
    (GOOD_W, weights_meta(schema_version="0"), {}, "version"),
    (GOOD_W, weights_meta(schema_version="1"), {}, "version"),  # before run ids
    (GOOD_W, weights_meta(run_id=""), {}, "metadata"),
    (GOOD_W, weights_meta(run_id="\n"), {}, "metadata"),
    (GOOD_W, weights_meta(version="-1"), {}, "metadata"),
    (GOOD_W, weights_meta(version="x"), {}, "metadata"),
    (GOOD_W, weights_meta(net_config="{bad"), {}, "metadata"),
    (GOOD_W, weights_meta(net_config="[1]"), {}, "metadata"),
    (GOOD_W, weights_meta(num_updates=""), {}, "metadata"),
    (GOOD_W, weights_meta(), {"expected_net_config": {"kind": "unet"}}, "net_config"),
    (GOOD_W, weights_meta(), {"expected_shapes": {"w": (2, 3)}}, "unexpected_key"),
    (GOOD_W, weights_meta(), {"expected_shapes": {"w": (2, 3), "b": (2,), "c": (1,)}},
     "missing_key"),
    (GOOD_W, weights_meta(), {"expected_shapes": {"w": (3, 2), "b": (2,)}}, "shape"),
    # float64 where the network has float32, even with the right keys and shapes.
    ({"w": np.ones((2, 3), np.float64), "b": np.zeros(2, np.float32)}, weights_meta(),
     {"expected_shapes": {"w": (2, 3), "b": (2,)}, "expected_dtypes": {"w": "F32", "b": "F32"}},
     "dtype"),
    ({"w": np.zeros((2, 3), np.float32), "b": np.zeros(2, np.float32)}, weights_meta(), {},
     "range"),  # every weight zero
])
def test_crafted_weights_rejected(tensors, meta, kwargs, reason: str) -> None:
    assert weights_reason(craft(tensors, meta), **kwargs) == reason


def test_weights_dtypes_of_the_receivers_network() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    dtypes = state_dict_dtypes(net.state_dict())
    assert dtypes["0.weight"] == "F32" and dtypes["1.num_batches_tracked"] == "I64"
    blob = encode_weights(net.state_dict(), 1, {})
    assert decode_weights(blob, WeightsLimits(), expected_dtypes=dtypes).version == 1
    doubled = encode_weights(net.double().state_dict(), 2, {})
    assert weights_reason(doubled, expected_dtypes=dtypes) == "dtype"


def test_weights_limits() -> None:
    blob = craft(GOOD_W, weights_meta())
    assert decode_weights(blob, WeightsLimits()).version == 3
    assert weights_reason(blob, WeightsLimits(max_blob_bytes=len(blob) - 1)) == "too_large"
    assert weights_reason(blob, WeightsLimits(max_tensors=1)) == "too_large"
    assert weights_reason(blob, WeightsLimits(max_tensor_elements=5)) == "too_large"
    assert weights_reason(blob, WeightsLimits(task="grasp")) == "schema"
    many = craft({f"t{i}": np.zeros(1, np.float32) for i in range(50)}, weights_meta())
    assert weights_reason(many, WeightsLimits(max_tensors=49)) == "too_large"


def test_limits_validate_their_own_fields() -> None:
    with pytest.raises(ValueError, match="max_blob_bytes"):
        TransitionLimits(max_blob_bytes=0)
    with pytest.raises(ValueError, match="obs_shape"):
        TransitionLimits(obs_shape=(0, 3))
    with pytest.raises(ValueError, match="allowed_obs_dtypes"):
        TransitionLimits(allowed_obs_dtypes=("F64",))
    with pytest.raises(ValueError, match="max_tensors"):
        WeightsLimits(max_tensors=0)


# ----------------------------------------------------------------------------- seeded fuzzing


def _mutate(blob: bytes, rng: np.random.Generator) -> bytes:
    data = bytearray(blob)
    header_end = 8 + struct.unpack("<Q", blob[:8])[0]
    kind = int(rng.integers(0, 7))
    if kind == 0:  # flip bits anywhere
        for pos in rng.integers(0, len(data), int(rng.integers(1, 8))):
            data[pos] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # flip bytes inside the header (JSON and length)
        for pos in rng.integers(0, header_end, int(rng.integers(1, 4))):
            data[pos] = int(rng.integers(0, 256))
    elif kind == 2:  # truncate
        data = data[:int(rng.integers(0, len(data)))]
    elif kind == 3:  # insert junk
        pos = int(rng.integers(0, len(data)))
        data[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
    elif kind == 4:  # delete a run
        pos = int(rng.integers(0, len(data)))
        del data[pos:pos + int(rng.integers(1, 16))]
    elif kind == 5:  # rewrite the declared header length
        data[:8] = struct.pack("<Q", int(rng.integers(0, 2**63)) >> int(rng.integers(0, 63)))
    else:  # replace a digit in the header (shapes, offsets, metadata numbers)
        digits = [i for i in range(8, header_end) if chr(data[i]).isdigit()]
        if digits:
            data[int(rng.choice(digits))] = ord(str(int(rng.integers(0, 10))))
    return bytes(data)


@pytest.mark.parametrize("seed", range(4))
def test_fuzz_transitions_only_wire_error(seed: int) -> None:
    rng = np.random.default_rng(seed)
    blobs = [encode_transitions(make_batch(int(n), dtype, seed=int(n)))
             for n, dtype in ((1, np.float32), (3, np.uint8), (2, np.float16))]
    limits = TransitionLimits()
    accepted = 0
    for _ in range(500):
        mutated = _mutate(blobs[int(rng.integers(0, len(blobs)))], rng)
        try:
            batch = decode_transitions(mutated, limits)
        except WireError as exc:
            assert exc.reason in REASONS
            continue
        # A mutation that survived (e.g. a flipped digit in the stamp) must still be valid.
        accepted += 1
        assert len(batch.rewards) == len(batch.actions) == batch.observations.shape[0]
        assert np.isfinite(batch.rewards).all()
        assert ((batch.actions >= 0) & (batch.actions < batch.num_actions)).all()
    assert accepted < 250


def test_fuzz_weights_only_wire_error() -> None:
    rng = np.random.default_rng(11)
    net = torch.nn.Sequential(torch.nn.Linear(7, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    shapes = state_dict_shapes(net.state_dict())
    blob = encode_weights(net.state_dict(), 2, {"kind": "mlp"})
    for _ in range(800):
        mutated = _mutate(blob, rng)
        try:
            msg = decode_weights(mutated, WeightsLimits(), {"kind": "mlp"},
                                 expected_shapes=shapes)
        except WireError as exc:
            assert exc.reason in REASONS
            continue
        net.load_state_dict(msg.state_dict)


# ----------------------------------------------------------------------------- authentication


def test_signed_blobs_verify_only_with_the_same_key(tmp_path, monkeypatch) -> None:
    from q_grasp.wire import Authenticator, AuthKeyError, authenticator

    blob = encode_transitions(make_batch())
    auth = Authenticator(b"k" * 32)
    signed = auth.sign(blob)
    assert bytes(auth.verify(signed)) == blob
    altered = bytearray(signed)
    altered[len(blob) // 2] ^= 1
    refused = {"unsigned": blob, "other key": Authenticator(b"x" * 32).sign(blob),
               "altered": bytes(altered), "cut": signed[:-1], "empty": b""}
    for what, candidate in refused.items():
        with pytest.raises(WireError) as info:
            auth.verify(candidate)
        assert info.value.reason == "unauthenticated", what
    with pytest.raises(WireError, match="too_large"):
        auth.verify(signed, max_blob_bytes=len(blob) - 1)
    off = Authenticator(None)
    assert off.sign(blob) is blob and off.verify(blob) is blob
    # A signed blob may leave out the sha256 checksum (its tag covers every byte); an
    # unauthenticated one may not.
    bare = encode_transitions(make_batch(), checksum=False)
    limits = TransitionLimits()
    with pytest.raises(WireError, match="metadata: checksum 'none'"):
        decode_transitions(bare, limits)
    decoded = decode_transitions(auth.verify(auth.sign(bare)), limits, authenticated=True)
    assert decoded.sequence == make_batch().sequence
    # The key: the parameter's file, else $Q_GRASP_AUTH_KEY_FILE's, else $Q_GRASP_AUTH_KEY.
    monkeypatch.delenv("Q_GRASP_AUTH_KEY_FILE", raising=False)
    monkeypatch.delenv("Q_GRASP_AUTH_KEY", raising=False)
    assert not authenticator("").enabled
    key_file = tmp_path / "key"
    key_file.write_text("k" * 32 + "\n")
    assert bytes(authenticator(str(key_file)).verify(signed)) == blob
    monkeypatch.setenv("Q_GRASP_AUTH_KEY", "k" * 32)
    assert bytes(authenticator("").verify(signed)) == blob
    monkeypatch.setenv("Q_GRASP_AUTH_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(AuthKeyError, match="missing'?: no such file"):
        authenticator("")
    key_file.write_text("short")
    with pytest.raises(AuthKeyError, match="at least 16"):
        authenticator(str(key_file))
