"""pybullet without its banners on the console.

pybullet's C code prints ``pybullet build time: …`` (to stderr) when it is imported and
``argv[0]=`` (to stdout) when a client connects: every node's console output (an operator's
terminal, a launch log) would start with them. :func:`c_stdout_silenced` points descriptors 1
and 2 at /dev/null for the duration, flushing C stdio on both sides so that nothing buffered
leaks out later. Python exceptions raised inside are unaffected (they are not printed there).
Import pybullet (and pybullet_utils' bullet_client) from here, ``from q_grasp.sim.quiet import
pybullet``, so that the first import is the silenced one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Iterator

_LOCK = threading.Lock()
try:
    _fflush = ctypes.CDLL(None).fflush
except (OSError, AttributeError):  # no C library to flush (not Linux/macOS): redirect only
    _fflush = None


def _flush_c_stdio() -> None:
    if _fflush is not None:
        _fflush(None)


@contextlib.contextmanager
def c_stdout_silenced() -> Iterator[None]:
    """Discard what C code writes to file descriptors 1 and 2 inside the block (Python's
    ``sys.stdout``/``sys.stderr`` are flushed first, so nothing printed before is lost)."""
    with _LOCK:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, ValueError, OSError):
                pass
        _flush_c_stdio()
        saved: dict[int, int] = {}
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            for fd in (1, 2):
                try:
                    saved[fd] = os.dup(fd)
                except OSError:  # descriptor not open: nothing to protect
                    continue
                os.dup2(devnull, fd)
            yield
        finally:
            _flush_c_stdio()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            os.close(devnull)


with c_stdout_silenced():
    import pybullet  # noqa: E402
    from pybullet_utils import bullet_client  # noqa: E402 - imports pybullet

__all__ = ["bullet_client", "c_stdout_silenced", "pybullet"]
