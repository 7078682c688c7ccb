"""Starting and isolating ROS 2 node processes (bringup, tests and benchmarks) over real DDS.

Isolation: each run reserves its own ROS_DOMAIN_ID (a lock file per id, see unique_domain_id) and
keeps discovery on localhost, so parallel test runs on one machine do not hear each other.
Child processes get LD_LIBRARY_PATH and the ros-wheels-bootstrapper guard set, so they start
without the bootstrapper's re-exec.
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
UDP_LOCALHOST_PROFILE = REPO_ROOT / "config" / "fastdds_udp_localhost.xml"
"""Fast DDS profile: localhost over UDP only, without the shared-memory transport (see the file
for why: processes killed and restarted on one host)."""


def udp_localhost_env() -> dict[str, str]:
    """Environment that puts a process on ``UDP_LOCALHOST_PROFILE`` (this host, UDP only).

    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST would add shared memory back, so the range is left
    to the profile (SYSTEM_DEFAULT).
    """
    return {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SYSTEM_DEFAULT",
            "FASTRTPS_DEFAULT_PROFILES_FILE": str(UDP_LOCALHOST_PROFILE)}


DOMAIN_LOCK_DIR = Path(tempfile.gettempdir()) / "q_grasp_ros_domains"
"""Lock files (one per ROS_DOMAIN_ID) through which concurrent runs on this host reserve their
domains."""
MAX_HELD_DOMAINS = 16
"""Domains one process keeps reserved; reserving another releases the oldest (a test module's
domain is done with once the next module starts)."""
_held_domains: dict[int, int] = {}  # domain -> open lock file descriptor, oldest first


def unique_domain_id() -> int:
    """A ROS_DOMAIN_ID in [1, 100] that no other run on this host is using.

    Domain ids above 101 collide with the ephemeral port range on Linux; 0 is everyone's
    default, so both are avoided. Each id is reserved with an advisory lock on a file in
    ``DOMAIN_LOCK_DIR``, held until this process exits (or until it has reserved
    ``MAX_HELD_DOMAINS`` newer ones): two test runs or benchmarks that pick the same domain hear
    each other's nodes -- two simulators on one /joint_states topic, each obeying the other's
    commands -- and fail in ways that look like flaky timing. Falls back to a random id (with a
    warning) when every id is taken or the lock directory cannot be used.
    """
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    candidates = [d for d in range(1, 101) if d not in _held_domains]
    rng.shuffle(candidates)
    try:
        DOMAIN_LOCK_DIR.mkdir(mode=0o777, exist_ok=True)
    except OSError as exc:
        warnings.warn(f"cannot reserve a ROS domain ({exc}); picking one at random",
                      stacklevel=2)
        return candidates[0]
    for domain in candidates:
        try:
            fd = os.open(DOMAIN_LOCK_DIR / f"{domain}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            continue  # another user's lock file
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _held_domains[domain] = fd
        while len(_held_domains) > MAX_HELD_DOMAINS:
            release_domain_id(next(iter(_held_domains)))
        return domain
    warnings.warn("every ROS domain in [1, 100] is reserved by another run on this host; "
                  "picking one at random", stacklevel=2)
    return candidates[0]


def release_domain_id(domain: int) -> None:
    """Give back a domain reserved by :func:`unique_domain_id` (no-op if not held)."""
    fd = _held_domains.pop(domain, None)
    if fd is not None:
        os.close(fd)


def ros_library_path() -> str:
    """LD_LIBRARY_PATH that the ros-wheels-bootstrapper would set (empty on a ROS install)."""
    try:
        import ros_wheels_bootstrapper as bootstrapper
    except ImportError:
        return os.environ.get("LD_LIBRARY_PATH", "")
    paths = bootstrapper.get_ros_paths()
    if isinstance(paths, (list, tuple)):
        paths = os.pathsep.join(paths)
    current = os.environ.get("LD_LIBRARY_PATH", "")
    return os.pathsep.join(p for p in (str(paths), current) if p)


def ros_child_env(domain_id: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a child process running rclpy in ``domain_id`` on localhost only."""
    env = dict(os.environ)
    env.update({
        "ROS_DOMAIN_ID": str(domain_id),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "LD_LIBRARY_PATH": ros_library_path(),
        "_ROS_WHEELS_BOOTSTRAP_COMPLETE": "1",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),
        "RCUTILS_COLORIZED_OUTPUT": "0",
    })
    if extra:
        env.update(extra)
    return env


def start_node_process(module: str, ros_args: Sequence[str] = (), *, domain_id: int,
                       log_path: Path | str, extra_env: Mapping[str, str] | None = None
                       ) -> subprocess.Popen:
    """Run ``python -m <module> --ros-args ...`` in its own process group, output to a file."""
    log = open(log_path, "wb")  # noqa: SIM115 - the child owns it; closed in stop_process
    cmd = [sys.executable, "-m", module]
    if ros_args:
        cmd += ["--ros-args", *ros_args]
    proc = subprocess.Popen(cmd, env=ros_child_env(domain_id, extra_env), stdout=log,
                            stderr=subprocess.STDOUT, cwd=str(REPO_ROOT),
                            start_new_session=True)
    proc._q_grasp_log = log  # type: ignore[attr-defined]
    return proc


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0, name: str = "",
                 ) -> int | None:
    """SIGINT (clean shutdown) the process we started, then SIGKILL it if it hangs (saying so
    on stderr when it has a ``name``)."""
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                if name:
                    print(f"[bringup] {name} did not stop in {timeout_s:.0f} s; killing it",
                          file=sys.stderr)
                proc.kill()
                proc.wait(timeout=10.0)
        return proc.returncode
    finally:
        log = getattr(proc, "_q_grasp_log", None)
        if log is not None:
            log.close()


def wait_until(predicate: Callable[[], bool], timeout_s: float, spin_once: Callable[[], None],
               ) -> bool:
    """Call ``spin_once`` until ``predicate()`` holds or ``timeout_s`` (wall clock) passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        spin_once()
    return predicate()
