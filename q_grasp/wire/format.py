"""Low-level safetensors blob handling shared by the transition and weight codecs.

A blob is a safetensors file held in memory: an 8-byte little-endian header length, a JSON
header (tensor dtypes, shapes, byte offsets and a ``__metadata__`` string map), then the tensor
bytes. Everything here treats the blob as hostile: sizes are checked against limits before
anything large is parsed, and every problem becomes a :class:`WireError`.
"""

from __future__ import annotations

import array
import hashlib
import json
import math
import secrets
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from q_grasp.wire.errors import (
    REASON_BAD_HEADER,
    REASON_CHECKSUM,
    REASON_CORRUPT,
    REASON_DTYPE,
    REASON_METADATA,
    REASON_SCHEMA,
    REASON_TOO_LARGE,
    REASON_TRUNCATED,
    REASON_TYPE,
    REASON_VERSION,
    WireError,
)

HEADER_LENGTH_BYTES = 8
"""Size of the little-endian u64 that starts every safetensors blob."""
MAX_TENSOR_NAME_CHARS = 256
"""Longest tensor name accepted (state-dict keys are far shorter)."""
MAX_TENSOR_RANK = 8
"""Highest tensor rank accepted."""
MAX_METADATA_VALUE_CHARS = 65536
"""Longest metadata string accepted (a network config JSON is a few hundred bytes)."""
MAX_RUN_ID_CHARS = 64
"""Longest run id accepted."""
PROCESS_RUN_ID = secrets.token_hex(8)
"""A fresh random run id per process start: what the encoders write unless given one."""

# safetensors dtype code -> (item size in bytes, numpy dtype or None where numpy has none).
DTYPE_ITEMSIZE: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}
"""Item size of every dtype code the safetensors format defines."""
FLOAT_CODES = frozenset({"F16", "BF16", "F32", "F64", "F8_E5M2", "F8_E4M3"})
"""Floating point dtype codes (checked for NaN and infinity)."""

_NUMPY_TO_CODE: dict[np.dtype, str] = {
    np.dtype(np.bool_): "BOOL", np.dtype(np.uint8): "U8", np.dtype(np.int8): "I8",
    np.dtype(np.int16): "I16", np.dtype(np.uint16): "U16", np.dtype(np.float16): "F16",
    np.dtype(np.int32): "I32", np.dtype(np.uint32): "U32", np.dtype(np.float32): "F32",
    np.dtype(np.int64): "I64", np.dtype(np.uint64): "U64", np.dtype(np.float64): "F64",
}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor as the header declares it (nothing loaded yet)."""

    name: str
    """Tensor name (state-dict key or transition field)."""
    dtype: str
    """safetensors dtype code, e.g. "F32"."""
    shape: tuple[int, ...]
    """Declared shape."""
    begin: int
    """Offset of the first byte, relative to the start of the data section."""
    end: int
    """Offset one past the last byte, relative to the start of the data section."""

    @property
    def numel(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class BlobHeader:
    """A validated safetensors header: metadata and tensor specs, payload not yet parsed."""

    metadata: dict[str, str]
    """The ``__metadata__`` string map."""
    tensors: dict[str, TensorSpec]
    """Tensor specs by name."""
    data_start: int
    """Byte offset of the data section within the blob."""


def numpy_dtype_code(dtype: np.dtype) -> str:
    """safetensors dtype code of a numpy dtype; WireError for dtypes the format lacks."""
    try:
        return _NUMPY_TO_CODE[np.dtype(dtype).newbyteorder("=")]
    except KeyError:
        raise WireError(REASON_DTYPE, f"numpy dtype {dtype} has no safetensors code") from None


def as_bytes(blob: Any) -> bytes | memoryview:
    """Accept the bytes-like things a message may carry; anything else is a WireError."""
    if isinstance(blob, (bytes, bytearray)):
        return blob
    if isinstance(blob, array.array):
        if blob.typecode != "B":
            raise WireError(REASON_TYPE, f"array.array typecode must be 'B', got {blob.typecode}")
        return memoryview(blob)
    if isinstance(blob, np.ndarray):
        if blob.dtype != np.uint8 or blob.ndim != 1:
            raise WireError(REASON_TYPE, f"numpy blob must be 1-D uint8, got {blob.dtype} "
                                         f"with shape {blob.shape}")
        return memoryview(np.ascontiguousarray(blob))
    if isinstance(blob, memoryview):
        if not blob.c_contiguous:
            raise WireError(REASON_TYPE, "memoryview is not contiguous")
        if blob.nbytes == 0:
            return b""
        if blob.ndim == 1 and blob.format == "B":
            return blob
        try:
            return blob.cast("B")
        except TypeError as exc:
            raise WireError(REASON_TYPE, f"memoryview is not castable to bytes: {exc}") from None
    raise WireError(REASON_TYPE, f"expected a bytes-like blob, got {type(blob).__name__}")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise WireError(REASON_BAD_HEADER, f"duplicate key {key!r} in header")
        result[key] = value
    return result


def _is_int(value: Any) -> bool:
    # bool is an int subclass in Python; a header with true/false in a shape is malformed.
    return isinstance(value, int) and not isinstance(value, bool)


def read_header(
    blob: bytes | memoryview, *, max_blob_bytes: int, max_header_bytes: int, max_tensors: int
) -> BlobHeader:
    """Check sizes, then parse and validate the JSON header. The tensor bytes are not touched.

    Sizes come first so that a blob claiming a multi-gigabyte header, or a gigabyte of
    tensors, is refused before any allocation or parsing proportional to those claims.
    """
    total = len(blob)
    if total > max_blob_bytes:
        raise WireError(REASON_TOO_LARGE, f"blob is {total} bytes, limit {max_blob_bytes}")
    if total < HEADER_LENGTH_BYTES:
        raise WireError(REASON_TRUNCATED, f"blob is {total} bytes, shorter than the 8-byte "
                                          "header length")
    (header_len,) = struct.unpack("<Q", bytes(blob[:HEADER_LENGTH_BYTES]))
    if header_len > max_header_bytes:
        raise WireError(REASON_TOO_LARGE, f"header declares {header_len} bytes, limit "
                                          f"{max_header_bytes}")
    data_start = HEADER_LENGTH_BYTES + header_len
    if data_start > total:
        raise WireError(REASON_TRUNCATED, f"header declares {header_len} bytes but only "
                                          f"{total - HEADER_LENGTH_BYTES} follow")
    try:
        text = bytes(blob[HEADER_LENGTH_BYTES:data_start]).decode("utf-8")
        raw = json.loads(text, object_pairs_hook=_reject_duplicates)
    except WireError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WireError(REASON_BAD_HEADER, f"header is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise WireError(REASON_BAD_HEADER, "header is not a JSON object")

    metadata = raw.pop("__metadata__", None)
    if not isinstance(metadata, dict):
        raise WireError(REASON_METADATA, "header has no __metadata__ map")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise WireError(REASON_METADATA, f"metadata {key!r} is not a string")
        if len(value) > MAX_METADATA_VALUE_CHARS:
            raise WireError(REASON_TOO_LARGE, f"metadata {key!r} is {len(value)} characters")
    if len(raw) > max_tensors:
        raise WireError(REASON_TOO_LARGE, f"{len(raw)} tensors, limit {max_tensors}")

    data_len = total - data_start
    tensors: dict[str, TensorSpec] = {}
    for name, entry in raw.items():
        tensors[name] = _tensor_spec(name, entry, data_len)
    # safetensors requires the tensors to tile the data section exactly: no gaps, no overlap,
    # nothing trailing. A hole or overlap would let two headers describe the same bytes.
    cursor = 0
    for spec in sorted(tensors.values(), key=lambda s: (s.begin, s.end)):
        if spec.begin != cursor:
            raise WireError(REASON_BAD_HEADER, f"tensor {spec.name!r} starts at byte "
                                               f"{spec.begin}, expected {cursor}")
        cursor = spec.end
    if cursor != data_len:
        raise WireError(REASON_TRUNCATED if cursor > data_len else REASON_BAD_HEADER,
                        f"tensors cover {cursor} bytes, data section has {data_len}")
    return BlobHeader(metadata=dict(metadata), tensors=tensors, data_start=data_start)


def _tensor_spec(name: str, entry: Any, data_len: int) -> TensorSpec:
    if not name or len(name) > MAX_TENSOR_NAME_CHARS:
        raise WireError(REASON_BAD_HEADER, f"tensor name of length {len(name)}")
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise WireError(REASON_BAD_HEADER, f"tensor {name!r}: malformed entry")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_ITEMSIZE:
        raise WireError(REASON_BAD_HEADER, f"tensor {name!r}: unknown dtype {dtype!r}")
    if (not isinstance(shape, list) or len(shape) > MAX_TENSOR_RANK
            or not all(_is_int(d) and d >= 0 for d in shape)):
        raise WireError(REASON_BAD_HEADER, f"tensor {name!r}: malformed shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(_is_int(o) for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
        raise WireError(REASON_BAD_HEADER, f"tensor {name!r}: malformed data_offsets")
    begin, end = offsets
    if end > data_len:
        raise WireError(REASON_TRUNCATED, f"tensor {name!r} ends at byte {end}, data section "
                                          f"has {data_len}")
    if end - begin != math.prod(shape) * DTYPE_ITEMSIZE[dtype]:
        raise WireError(REASON_BAD_HEADER, f"tensor {name!r}: {end - begin} bytes do not "
                                           f"match shape {shape} of {dtype}")
    return TensorSpec(name=name, dtype=dtype, shape=tuple(shape), begin=begin, end=end)


def check_schema(metadata: Mapping[str, str], name: str, supported_versions: Iterable[int]
                 ) -> int:
    """Check the schema name and version; return the version."""
    got = metadata.get("schema")
    if got != name:
        raise WireError(REASON_SCHEMA, f"schema is {got!r}, expected {name!r}")
    supported = tuple(supported_versions)
    version = metadata_int(metadata, "schema_version", minimum=0)
    if version not in supported:
        raise WireError(REASON_VERSION, f"schema_version {version} not in {supported}")
    return version


def metadata_int(metadata: Mapping[str, str], key: str, *, minimum: int | None = None,
                 maximum: int | None = None) -> int:
    """Read a decimal integer metadata field within [minimum, maximum]."""
    text = metadata.get(key)
    # Plain ASCII digits only: int() would also accept "1_000", " 7" or Unicode digits.
    body = text[1:] if text and text[0] == "-" else text
    if not body or len(body) > 20 or not body.isascii() or not body.isdigit():
        raise WireError(REASON_METADATA, f"metadata {key!r} is not an integer: {text!r}")
    value = int(text)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise WireError(REASON_METADATA, f"metadata {key!r} = {value} outside "
                                         f"[{minimum}, {maximum}]")
    return value


def metadata_str(metadata: Mapping[str, str], key: str, *, max_chars: int = 256) -> str:
    """Read a short string metadata field (printable ASCII, possibly empty)."""
    text = metadata.get(key)
    if text is None:
        raise WireError(REASON_METADATA, f"metadata {key!r} is missing")
    if len(text) > max_chars or not (text.isascii() and (text == "" or text.isprintable())):
        raise WireError(REASON_METADATA, f"metadata {key!r} must be printable ASCII of at "
                                         f"most {max_chars} characters")
    return text


def metadata_run_id(metadata: Mapping[str, str]) -> str:
    """The ``run_id`` field: 1 to MAX_RUN_ID_CHARS printable ASCII characters."""
    run_id = metadata_str(metadata, "run_id", max_chars=MAX_RUN_ID_CHARS)
    if not run_id:
        raise WireError(REASON_METADATA, "metadata 'run_id' is empty")
    return run_id


class Checksum:
    """sha256 over (name, dtype code, shape, raw little-endian bytes) of each tensor.

    Tensors are fed in sorted name order, so the digest is independent of how the safetensors
    writer laid the tensors out; names, dtypes and shapes are covered so a tampered header
    cannot re-label intact bytes.
    """

    PREFIX = "sha256:"

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def add(self, name: str, dtype_code: str, shape: tuple[int, ...], data: Any) -> None:
        """Feed one tensor; ``data`` is any buffer holding its raw bytes."""
        head = f"{name}\0{dtype_code}\0{','.join(map(str, shape))}\0".encode()
        self._hash.update(struct.pack("<I", len(head)))
        self._hash.update(head)
        self._hash.update(data)

    def hexdigest(self) -> str:
        """The digest as stored in the metadata: "sha256:<hex>"."""
        return self.PREFIX + self._hash.hexdigest()


def verify_checksum(blob: bytes | memoryview, header: BlobHeader) -> None:
    """Recompute the checksum from the blob's data section and compare with the metadata."""
    expected = header.metadata.get("checksum")
    if not isinstance(expected, str) or not expected.startswith(Checksum.PREFIX):
        raise WireError(REASON_METADATA, "metadata 'checksum' missing or not sha256")
    view = memoryview(blob)
    checksum = Checksum()
    for name in sorted(header.tensors):
        spec = header.tensors[name]
        begin = header.data_start + spec.begin
        checksum.add(name, spec.dtype, spec.shape, view[begin:header.data_start + spec.end])
    if checksum.hexdigest() != expected:
        raise WireError(REASON_CHECKSUM, "tensor bytes do not match the checksum")


def load_numpy(blob: bytes | memoryview) -> dict[str, np.ndarray]:
    """Parse the tensors with safetensors (after read_header has vetted the header)."""
    from safetensors.numpy import load

    try:
        return load(bytes(blob))
    except Exception as exc:  # the Rust parser raises its own types; normalise them all
        raise WireError(REASON_CORRUPT, f"safetensors rejected the payload: {exc}") from None


def canonical_json(value: Mapping[str, Any]) -> str:
    """JSON with sorted keys and no spaces, so equal configs give equal strings."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise WireError(REASON_METADATA, f"not JSON-serialisable: {exc}") from None
