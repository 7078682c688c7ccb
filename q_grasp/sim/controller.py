"""The simulator's joint trajectory controller: one controller's trajectory turned into motor
setpoints over simulated time, as ros2_control's JointTrajectoryController does."""

from __future__ import annotations

import threading

import numpy as np

from q_grasp.motion import PathSampler, Trajectory


class TrajectoryFollower:
    """Holds one controller's trajectory and turns it into setpoints over simulated time.

    Like ros2_control's JointTrajectoryController: a new trajectory replaces the current one and
    starts at once from the last setpoints; joints it does not name keep their setpoints; after
    the last point the final setpoints are held. ``submit`` may be called from any thread.
    """

    def __init__(self, joint_names: list[str], initial: np.ndarray) -> None:
        self.joint_names = list(joint_names)
        self.setpoints = np.asarray(initial, np.float64).copy()
        self._index = {name: i for i, name in enumerate(self.joint_names)}
        self._pending: Trajectory | None = None
        self._active: _FollowedPath | None = None
        self._lock = threading.Lock()
        self.started = False
        """Set by the update that took up a new trajectory; the caller clears it."""

    def submit(self, trajectory: Trajectory) -> None:
        """Queue a trajectory (any thread); it starts at the next control tick."""
        with self._lock:
            self._pending = trajectory

    def cancel(self, setpoints: np.ndarray) -> None:
        """Drop queued and running trajectories and hold ``setpoints``."""
        with self._lock:
            self._pending = None
            self._active = None
            self.setpoints = np.asarray(setpoints, np.float64).copy()

    @property
    def active(self) -> bool:
        """True while a trajectory is queued or running."""
        with self._lock:
            return self._pending is not None or self._active is not None

    def update(self, now_s: float) -> bool:
        """Advance to simulated time ``now_s``; True when the setpoints changed."""
        with self._lock:
            if self._pending is not None:
                traj = self._pending
                columns = [self._index[n] for n in traj.joint_names]
                start = self.setpoints[columns].copy()
                self._active = _FollowedPath(traj.starting_from(start), now_s, columns,
                                             len(self.joint_names))
                self._pending = None
                self.started = True
            path = self._active
            if path is None:
                return False
            elapsed = now_s - path.t0
            if path.columns is None:
                self.setpoints[:] = path.sampler.at(elapsed)
            else:
                self.setpoints[path.columns] = path.sampler.at(elapsed)
            if elapsed >= path.sampler.duration_s:
                self._active = None
            return True


class _FollowedPath:
    """A trajectory being followed: its sampler, when it started, the columns it drives."""

    __slots__ = ("t0", "columns", "sampler")

    def __init__(self, padded: Trajectory, t0: float, columns: list[int], n_joints: int) -> None:
        self.t0 = t0
        # (None: every joint in order, assigned without fancy indexing)
        self.columns = None if columns == list(range(n_joints)) else columns
        self.sampler = PathSampler(padded)
