"""viewer: a live Rerun view of the run without rviz: the arm in 3D (URDF + joint_states), the
colour and depth images, the Q-map heat map, the grasp pose and the Reacher's goal (from the
policy's markers), and the trainer's learning curves (from /diagnostics), saved to an .rrd file
(``rerun FILE.rrd`` reopens it) and, with web_port, served to a browser at
http://localhost:<web_port>.

A viewer that fails (port in use, unwritable file) logs the reason and stops viewing; the run
goes on.

  python -m q_grasp.nodes.viewer --ros-args -p rrd_path:=runs/x/run.rrd -p web_port:=9090
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from visualization_msgs.msg import MarkerArray

from q_grasp.nodes import qos
from q_grasp.nodes.convert import color_image_to_numpy, depth_image_to_numpy
from q_grasp.nodes.params import declare_config
from q_grasp.nodes.runtime import OptionalOutputNode, run_node
from q_grasp.robot_config import RobotConfig

CURVES = ("success_rate", "loss", "mean_max_q", "epsilon", "updates_per_s", "weights_version")
"""Trainer diagnostics drawn as learning curves (against transitions)."""
QUEUE_SIZE = 64
"""Draw calls waiting for the drawing thread; the oldest are dropped beyond this."""
CLOSE_TIMEOUT_S = 10.0
"""Longest wait for Rerun to finish the .rrd at shutdown before the node goes without it."""
MARKER_COLORS = {"grasp": (255, 140, 0), "goal": (0, 200, 0), "end_effector": (0, 120, 255)}


@dataclass
class ViewerConfig:
    """Parameters of the viewer node."""

    rrd_path: str = "run.rrd"
    """The .rrd file the view is saved to (its folder is created)."""
    web_port: int = 0
    """Serve the web viewer at http://localhost:<web_port> (0: only the file)."""
    grpc_port: int = 9876
    """Port of the gRPC server the web viewer reads the live data from (with web_port)."""
    joint_rate_hz: float = 15.0
    """Joint states are drawn at most this often (wall clock): they arrive at hundreds per
    second, far more than a person sees."""
    urdf_path: str = ""
    """Robot model; empty: the packaged arm's URDF (sim_arm's default)."""

    def __post_init__(self) -> None:
        if not self.rrd_path.strip():
            raise ValueError("rrd_path: must not be empty")
        for name in ("web_port", "grpc_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ValueError(f"{name}: must be a TCP port in [0, 65535], got "
                                 f"{getattr(self, name)}")
        if not self.joint_rate_hz > 0.0:
            raise ValueError(f"joint_rate_hz: must be > 0, got {self.joint_rate_hz}")


def _stamp_s(msg: Any) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


class ViewerNode(OptionalOutputNode):
    """Feeds a RunViewer from the run's topics."""

    def __init__(self, node_name: str = "viewer", **kwargs: Any) -> None:
        super().__init__(node_name, "viewer", **kwargs)
        self._config = declare_config(self, ViewerConfig).config
        self._next_joints = 0.0
        # Rerun's logging can block (its send queue full while the machine is busy): it runs
        # in this thread, never in the executor's callbacks that the run's nodes share.
        self._queue: queue.Queue[tuple[Any, str] | None] = queue.Queue(QUEUE_SIZE)
        self._drawer = threading.Thread(target=self._draw_loop, name="viewer_draw",
                                        daemon=True)
        self.dropped = 0
        try:
            from q_grasp.viewer import RunViewer

            cfg = self._config
            self.output = RunViewer(Path(cfg.rrd_path).expanduser(),
                                    cfg.urdf_path or RobotConfig().urdf_path,
                                    web_port=cfg.web_port, grpc_port=cfg.grpc_port)
        except Exception as exc:  # ImportError, ViewerError, Rerun's own: view nothing
            self.fail(str(exc))
            return
        sensor = qos.SENSOR_SUBSCRIBER_QOS
        self.create_subscription(JointState, "joint_states", self._on_joints, sensor)
        self.create_subscription(Image, "camera/color/image_raw", self._on_color, sensor)
        self.create_subscription(Image, "camera/depth/image_raw", self._on_depth, sensor)
        self.create_subscription(Image, "q_grasp/q_map", self._on_q_map, qos.DEFAULT_QOS)
        self.create_subscription(MarkerArray, "q_grasp/markers", self._on_markers,
                                 qos.DEFAULT_QOS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                 qos.DEFAULT_QOS)
        self._drawer.start()
        where = f", live at {self.output.url}" if self.output.url else ""
        self.get_logger().info(f"viewing the run in {self.output.path}{where}")

    @property
    def url(self) -> str:
        """The web viewer's address ("" when not served)."""
        return self.output.url if self.output is not None else ""

    @property
    def path(self) -> Path | None:
        """The .rrd file (None once viewing failed)."""
        return self.output.path if self.output is not None else None

    def _submit(self, action: Any, doing: str) -> None:
        """Queue a draw call for the drawing thread (dropping the oldest when it lags)."""
        self._put((action, doing))

    def _put(self, item: tuple[Any, str] | None) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _draw_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            self.use_output(*item)

    def _draw(self, method: str, *args: Any, **kwargs: Any) -> None:
        self._submit(lambda out: getattr(out, method)(*args, **kwargs), f"drawing {method} in")

    def _draw_image(self, entity: str, msg: Image, depth: bool = False) -> None:
        # Converted in the drawing thread: an image the viewer cannot read stops the viewer,
        # never the executor that also serves the run's nodes.
        convert = depth_image_to_numpy if depth else color_image_to_numpy
        self._submit(lambda out: out.image(entity, convert(msg), _stamp_s(msg), depth=depth),
                     f"drawing {entity} in")

    # ----------------------------------------------------------------------------- topics

    def _on_joints(self, msg: JointState) -> None:
        now = time.monotonic()
        if now < self._next_joints:
            return
        self._next_joints = now + 1.0 / self._config.joint_rate_hz
        self._draw("joints", list(msg.name), list(msg.position), _stamp_s(msg))

    def _on_color(self, msg: Image) -> None:
        self._draw_image("camera/color", msg)

    def _on_depth(self, msg: Image) -> None:
        self._draw_image("camera/depth", msg, depth=True)

    def _on_q_map(self, msg: Image) -> None:
        self._draw_image("q_map", msg)

    def _on_markers(self, msg: MarkerArray) -> None:
        for marker in msg.markers:
            if marker.ns in MARKER_COLORS:
                p = marker.pose.position
                self._draw("points", f"world/{marker.ns}", [p.x, p.y, p.z], _stamp_s(marker),
                           color=MARKER_COLORS[marker.ns])

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if not status.name.endswith("/trainer"):
                continue
            values = {kv.key: kv.value for kv in status.values}
            try:
                transitions = int(values["transitions"])
                curves = {k: float(values[k]) for k in CURVES if k in values}
            except (KeyError, ValueError):
                continue
            self._draw("curves", transitions, curves)


    def destroy_node(self) -> None:
        """Let the drawing thread finish and the .rrd be completed, for CLOSE_TIMEOUT_S at
        most: a Rerun that hangs is left behind, the node goes anyway."""
        if self._drawer.is_alive():
            self._put(None)  # the end: draw what is queued, then stop
            self._drawer.join(timeout=CLOSE_TIMEOUT_S)
            if self._drawer.is_alive():  # blocked inside Rerun, holding the output's lock
                self.get_logger().error(f"viewer: Rerun did not finish within "
                                        f"{CLOSE_TIMEOUT_S:g} s; its .rrd may lack the end")
                Node.destroy_node(self)
                return
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``viewer``."""
    return run_node(ViewerNode, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
