"""Camera frames without ROS (q_grasp.frame_sync): colour, depth and intrinsics from separate
streams pair up by stamp, and a wait returns the first frame taken after the requested arm
time, gives up in arm time, or ends on a restart or a stop. The arm's clock is a fake that the
test sets, so nothing depends on the machine's speed."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from q_grasp.frame_sync import FrameSync, FrameTimeouts
from q_grasp.joint_feedback import ArmRestartedError, ArmStoppedError, ArmTimeoutError

HW = (4, 6)
K = np.array([[5.0, 0.0, 3.0], [0.0, 5.0, 2.0], [0.0, 0.0, 1.0]])
POSE = ((0.0, 0.0, 1.0), (0.0, 0.0, 0.0), (0.0, 1.0, 0.0))
NO_WALL_LIMIT = FrameTimeouts(timeout_s=1.0, min_wall_s=0.0, max_wall_s=60.0)


class FakeArm:
    def __init__(self, time_s: float = 0.0) -> None:
        self.time_s, self.restarts = time_s, 0

    def arm_time_s(self) -> float:
        return self.time_s

    def check_restart(self, restarts: int) -> None:
        if restarts != self.restarts:
            raise ArmRestartedError("clock went back")


class TickingArm(FakeArm):
    """An arm whose clock moves a second each time it is read."""

    def arm_time_s(self) -> float:
        self.time_s += 1.0
        return self.time_s


def _rgb(value: int) -> np.ndarray:
    return np.full((*HW, 3), value, np.uint8)


def _sync(**kwargs) -> FrameSync:
    sync = FrameSync(HW, POSE, max_skew_s=0.02, stop=kwargs.pop("stop", threading.Event()),
                     **kwargs)
    sync.set_intrinsics(K, HW[1], HW[0])
    return sync


def test_a_frame_pairs_colour_and_depth_stamped_after_the_requested_time() -> None:
    sync = _sync()
    sync.set_color(1_000_000_000, "old", _rgb(1), "cam")
    sync.set_depth(1_000_000_000, np.ones(HW, np.float32))
    sync.set_color(2_000_000_000, "new", _rgb(2), "cam")
    sync.set_depth(2_010_000_000, np.full(HW, 0.5, np.float32))  # within the skew
    frame = sync.wait(1.5, FakeArm(2.0), NO_WALL_LIMIT)
    assert (frame.stamp, frame.frame_id, frame.stamp_ns) == ("new", "cam", 2_000_000_000)
    assert frame.rgb[0, 0, 0] == 2 and frame.depth[0, 0] == 0.5
    assert frame.heightmap.shape == HW and frame.camera.fx == 5.0
    assert sync.last_color_monotonic is not None


def test_frames_too_old_or_unpaired_time_out_in_arm_time() -> None:
    sync = _sync()
    sync.set_color(1_000_000_000, None, _rgb(1), "cam")
    sync.set_depth(1_500_000_000, np.ones(HW, np.float32))  # beyond the skew: no pair
    with pytest.raises(ArmTimeoutError, match=r"of 4x6\) stamped after 0.50 s within 1.0 s"):
        sync.wait(0.5, TickingArm(5.0), NO_WALL_LIMIT)
    with pytest.raises(ArmTimeoutError):  # a wall-clock limit also ends it
        sync.wait(9.0, FakeArm(0.0), FrameTimeouts(1.0, 0.0, max_wall_s=0.0))


def test_a_colour_only_camera_takes_the_table_plane_as_depth() -> None:
    sync = _sync(table_depth=lambda camera: np.full(HW, 0.8, np.float32))
    sync.set_color(3_000_000_000, None, _rgb(3), "cam")
    frame = sync.wait(2.9, FakeArm(3.0), NO_WALL_LIMIT)
    assert frame.depth[0, 0] == pytest.approx(0.8)


def test_a_restart_or_a_stop_ends_the_wait() -> None:
    stop = threading.Event()
    sync = _sync(stop=stop)
    arm = FakeArm(1.0)
    arm.restarts = 1

    class Restarting(FakeArm):
        def check_restart(self, restarts: int) -> None:
            raise ArmRestartedError("the arm's clock went back")

    with pytest.raises(ArmRestartedError):
        sync.wait(0.5, Restarting(1.0), NO_WALL_LIMIT)
    stop.set()
    with pytest.raises(ArmStoppedError):
        sync.wait(0.5, arm, NO_WALL_LIMIT)


def test_new_intrinsics_replace_the_camera_model() -> None:
    sync = _sync()
    sync.set_color(1_000_000_000, None, _rgb(1), "cam")
    sync.set_depth(1_000_000_000, np.ones(HW, np.float32))
    first = sync.wait(0.0, FakeArm(1.0), NO_WALL_LIMIT).camera
    sync.set_intrinsics(K, HW[1], HW[0])  # the same K: the same model
    assert sync.wait(0.0, FakeArm(1.0), NO_WALL_LIMIT).camera is first
    sync.set_intrinsics(K * [[2.0], [2.0], [1.0]], HW[1], HW[0])
    assert sync.wait(0.0, FakeArm(1.0), NO_WALL_LIMIT).camera.fx == 10.0
