"""The single exception type the wire codec raises, with machine-readable reason codes."""

from __future__ import annotations

# Reason codes: short, stable strings that nodes count in their diagnostics (one counter per
# code), so an operator sees *why* blobs are rejected without reading the logs.
REASON_TYPE = "type"
"""The blob is not bytes-like."""
REASON_TOO_LARGE = "too_large"
"""The blob, its header, a tensor or the batch exceeds a configured limit."""
REASON_TRUNCATED = "truncated"
"""The blob is shorter than its own header says."""
REASON_BAD_HEADER = "bad_header"
"""The safetensors header is not valid JSON of the expected structure."""
REASON_SCHEMA = "schema"
"""Wrong schema name (e.g. a weights blob on the transitions topic)."""
REASON_VERSION = "version"
"""Unsupported schema version."""
REASON_METADATA = "metadata"
"""A metadata field is missing or malformed."""
REASON_MISSING_KEY = "missing_key"
"""A required tensor is missing."""
REASON_UNEXPECTED_KEY = "unexpected_key"
"""A tensor that the schema does not know (or the receiver's model does not have)."""
REASON_DTYPE = "dtype"
"""A tensor has the wrong dtype."""
REASON_SHAPE = "shape"
"""A tensor has the wrong shape, or shapes disagree with each other."""
REASON_NON_FINITE = "non_finite"
"""NaN or infinity in a floating point tensor."""
REASON_RANGE = "range"
"""A value is outside its allowed range (e.g. an action index >= num_actions)."""
REASON_CHECKSUM = "checksum"
"""The tensor bytes do not match the checksum in the metadata."""
REASON_NET_CONFIG = "net_config"
"""The weights were made for a different network configuration."""
REASON_CORRUPT = "corrupt"
"""The safetensors parser itself rejected the payload."""
REASON_UNAUTHENTICATED = "unauthenticated"
"""No authentication tag, or not the system key's tag over this blob (q_grasp.wire.auth)."""

REASONS: tuple[str, ...] = (
    REASON_TYPE, REASON_TOO_LARGE, REASON_TRUNCATED, REASON_BAD_HEADER, REASON_SCHEMA,
    REASON_VERSION, REASON_METADATA, REASON_MISSING_KEY, REASON_UNEXPECTED_KEY, REASON_DTYPE,
    REASON_SHAPE, REASON_NON_FINITE, REASON_RANGE, REASON_CHECKSUM, REASON_NET_CONFIG,
    REASON_CORRUPT, REASON_UNAUTHENTICATED,
)
"""Every reason code a WireError can carry."""


class WireError(ValueError):
    """A blob (or a value to encode) is invalid. ``reason`` is one of :data:`REASONS`.

    Subclasses ValueError so that encoding bad values follows the project rule "invalid values
    raise ValueError", while receivers can catch exactly this type around decoding.
    """

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"WireError reason: must be one of {REASONS}, got {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
