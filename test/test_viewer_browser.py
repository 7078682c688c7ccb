"""The web viewer the viewer serves, opened in headless Chromium (Debian's `chromium` package,
`.ci/run` installs it), renders the run: a screenshot of the page shows the camera image and
the Q-map (their pixels, not only a loaded page). WebGL runs on Chromium's software
rasteriser (SwiftShader), which a machine without a GPU needs.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON
messages ending in NUL on file descriptors 3 and 4), so no websocket client is needed."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest

pytest.importorskip("rerun")
CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` on PATH (Debian: apt-get install "
                                                "-y chromium; .ci/run does)"),
]

RENDER_TIMEOUT_S = 45.0
CAMERA_RGB = (255, 0, 255)
Q_MAP_RGB = (0, 255, 255)
"""Colours found nowhere in Rerun's own interface, so pixels of them are the images."""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--remote-debugging-pipe", "--no-first-run",
                  "--window-size=1280,800", "--use-angle=swiftshader",
                  "--enable-unsafe-swiftshader", "--disable-dev-shm-usage"]
"""--no-sandbox: CI runs as root, where Chromium's sandbox refuses to start. SwiftShader must
be asked for explicitly since Chromium 139 to get WebGL without a GPU."""


class DevTools:
    """A headless Chromium and one page of it, over the DevTools pipe."""

    def __init__(self, profile_dir: str, log_path: str) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def pipes_on_3_and_4() -> None:  # runs in the child before exec
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        with open(log_path, "w") as log:
            # close_fds=False keeps 3 and 4; Python opens every other fd close-on-exec.
            self.proc = subprocess.Popen(  # noqa: S603 - a fixed command line
                [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
                preexec_fn=pipes_on_3_and_4, close_fds=False, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._id = 0
        self.session = ""

    def call(self, method: str, session: str = "", **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:  # events arrive between the replies: skipped
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the DevTools pipe during {method}")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url=url)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]

    def screenshot(self) -> np.ndarray:
        from PIL import Image

        png = base64.b64decode(self.call("Page.captureScreenshot", self.session,
                                         format="png")["data"])
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)


def pixels_of(shot: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    return int((np.abs(shot.astype(int) - rgb).max(axis=2) < tolerance).sum())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_served_web_viewer_renders_camera_and_q_map(tmp_path) -> None:
    from PIL import Image

    from q_grasp.robot_config import RobotConfig
    from q_grasp.viewer import RunViewer

    viewer = RunViewer(tmp_path / "run.rrd", RobotConfig().urdf_path, web_port=free_port(),
                       grpc_port=free_port())
    camera = np.zeros((48, 64, 3), np.uint8)
    camera[:] = CAMERA_RGB
    q_map = np.zeros((48, 64, 3), np.uint8)
    q_map[:] = Q_MAP_RGB
    viewer.image("camera/color", camera, 1.0)
    viewer.image("q_map", q_map, 1.0)
    viewer.rec.flush()
    browser = DevTools(str(tmp_path / "profile"), str(tmp_path / "chromium.log"))
    shot = np.zeros((1, 1, 3), np.uint8)
    try:
        # The page address bringup prints: it must lead to the run, not Rerun's welcome page.
        browser.open(viewer.url)
        deadline = time.monotonic() + RENDER_TIMEOUT_S
        while time.monotonic() < deadline:  # loading the viewer's wasm takes seconds
            shot = browser.screenshot()
            if pixels_of(shot, CAMERA_RGB) > 2000 and pixels_of(shot, Q_MAP_RGB) > 2000:
                break
            time.sleep(0.5)
    finally:
        browser.close()
        viewer.close()
    Image.fromarray(shot).save(tmp_path / "screenshot.png")  # kept for a failure's report
    camera_px, q_map_px = pixels_of(shot, CAMERA_RGB), pixels_of(shot, Q_MAP_RGB)
    assert camera_px > 2000 and q_map_px > 2000, (
        f"after {RENDER_TIMEOUT_S:g} s the page shows {camera_px} camera and {q_map_px} Q-map "
        f"pixels; screenshot {tmp_path / 'screenshot.png'}, log {tmp_path / 'chromium.log'}")
    # Two separate views of about the same size (the images are logged at the same size).
    assert 0.5 < camera_px / q_map_px < 2.0
