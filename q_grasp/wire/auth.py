"""Authenticated blobs: HMAC-SHA256 over the whole blob, keyed by a secret the nodes of one
system share, so that another process on the same ROS domain cannot inject transitions or
weights (the Fast DDS of the PyPI ROS wheels has no DDS Security; see docs/ros_system.md).

A signed blob is ``blob + MAGIC + tag`` (8 + 32 bytes more). The key comes from a file: the
node's ``auth_key_file`` parameter, else the file the environment variable
``Q_GRASP_AUTH_KEY_FILE`` names; else the environment variable ``Q_GRASP_AUTH_KEY`` holds the
key itself. Without any key blobs are neither signed nor checked. The key never travels in a
parameter. All nodes of a system use the same key, or none.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from q_grasp.wire.errors import REASON_TOO_LARGE, REASON_UNAUTHENTICATED, WireError

MAGIC = b"QGHMAC1\0"
"""Marks the trailer of a signed blob."""
TAG_BYTES = 32
"""HMAC-SHA256 tag size."""
MIN_KEY_BYTES = 16
"""Shortest key accepted."""
MAX_KEY_BYTES = 4096
"""Longest key file read."""
KEY_FILE_ENV = "Q_GRASP_AUTH_KEY_FILE"
"""Environment variable naming the key file (when the parameter is empty)."""
KEY_ENV = "Q_GRASP_AUTH_KEY"
"""Environment variable holding the key itself (when no file is named)."""


class AuthKeyError(ValueError):
    """The key file is missing, unreadable or unusable (one line naming the file)."""


class Authenticator:
    """Signs and checks blobs with one key; with ``key`` None it does neither."""

    def __init__(self, key: bytes | None, origin: str = "") -> None:
        if key is not None and len(key) < MIN_KEY_BYTES:
            raise AuthKeyError(f"auth key{' from ' + origin if origin else ''}: {len(key)} bytes,"
                            f" at least {MIN_KEY_BYTES} needed")
        self._key = key
        self.origin = origin
        """Where the key came from (a file or an environment variable), for log lines."""

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def _tag(self, blob: bytes | memoryview) -> bytes:
        return hmac.new(self._key, blob, hashlib.sha256).digest()

    def sign(self, blob: bytes) -> bytes:
        """``blob`` with its tag appended (unchanged without a key)."""
        if self._key is None:
            return blob
        return b"".join((blob, MAGIC, self._tag(blob)))

    def verify(self, signed: bytes | memoryview, max_blob_bytes: int | None = None
               ) -> bytes | memoryview:
        """The blob without its tag; WireError("unauthenticated") unless the tag is this key's
        over exactly this blob. Without a key: ``signed`` as it is. A blob over
        ``max_blob_bytes`` is refused (too_large) before any hashing."""
        if self._key is None:
            return signed
        view = memoryview(signed)
        trailer = len(MAGIC) + TAG_BYTES
        if max_blob_bytes is not None and len(view) > max_blob_bytes + trailer:
            raise WireError(REASON_TOO_LARGE, f"blob is {len(view) - trailer} bytes, limit "
                                              f"{max_blob_bytes}")
        if len(view) < trailer or bytes(view[-trailer:-TAG_BYTES]) != MAGIC:
            raise WireError(REASON_UNAUTHENTICATED, "no authentication tag (sender without "
                                                    "the system's key)")
        blob = view[:-trailer]
        if not hmac.compare_digest(self._tag(blob), bytes(view[-TAG_BYTES:])):
            raise WireError(REASON_UNAUTHENTICATED, "authentication tag does not match (another"
                                                    " key, or the blob was altered)")
        return blob


def strip_tag(signed: bytes | memoryview) -> tuple[bytes | memoryview, bool]:
    """(the blob without its authentication trailer, whether it had one), the tag NOT checked:
    for blobs read back from a file the user chose (a recording of a finished run, whose
    fresh key is gone), never for blobs from the network."""
    view = memoryview(signed)
    trailer = len(MAGIC) + TAG_BYTES
    if len(view) >= trailer and bytes(view[-trailer:-TAG_BYTES]) == MAGIC:
        return view[:-trailer], True
    return signed, False


def read_key_file(path: str | Path) -> bytes:
    """The key in ``path`` (surrounding whitespace removed); AuthKeyError names the file."""
    path = Path(path).expanduser()
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_BYTES + 1)
    except FileNotFoundError:
        raise AuthKeyError(f"auth key file {str(path)!r}: no such file") from None
    except OSError as exc:
        raise AuthKeyError(f"auth key file {str(path)!r}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_KEY_BYTES:
        raise AuthKeyError(f"auth key file {str(path)!r}: larger than {MAX_KEY_BYTES} bytes")
    key = data.strip()
    if len(key) < MIN_KEY_BYTES:
        raise AuthKeyError(f"auth key file {str(path)!r}: {len(key)} bytes, at least "
                        f"{MIN_KEY_BYTES} needed")
    return key


def authenticator(key_file: str = "") -> Authenticator:
    """The Authenticator of a node whose ``auth_key_file`` parameter is ``key_file`` (see the
    module docstring for the order); AuthKeyError if the named file is unusable."""
    path = key_file or os.environ.get(KEY_FILE_ENV, "")
    if path:
        return Authenticator(read_key_file(path), origin=str(path))
    key = os.environ.get(KEY_ENV, "").strip()
    if key:
        return Authenticator(key.encode(), origin=f"${KEY_ENV}")
    return Authenticator(None)


def new_key_file(directory: str | Path | None = None) -> Path:
    """A fresh random key in a new file only this user can read (the caller removes it)."""
    fd, name = tempfile.mkstemp(prefix="q_grasp_auth_", suffix=".key", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
    finally:
        os.close(fd)
    return Path(name)
