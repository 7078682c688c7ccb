"""viewer: a live Rerun view of the run without rviz: the arm in 3D (URDF + joint_states), the
colour and depth images, the Q-map heat map, each grasp's pose, approach and outcome and the
Reacher's goal (from the policy's markers), and the trainer's learning curves (from
/diagnostics), saved to an .rrd file (``rerun FILE.rrd`` reopens it) and, with web_port, served
to a browser at the address it logs (http://localhost:<web_port>/?url=...).

Its cost to the run is kept small: joint states and camera images are drawn at a limited wall
rate (the dropped ones are never deserialized), unmoved joints are not logged again, and all
Rerun calls run in a drawing thread of their own.

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
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image, JointState
from visualization_msgs.msg import Marker, MarkerArray

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


@dataclass
class ViewerConfig:
    """Parameters of the viewer node."""

    rrd_path: str = "run.rrd"
    """The .rrd file the view is saved to (its folder is created)."""
    web_port: int = 0
    """Serve the web viewer at http://localhost:<web_port> (0: only the file)."""
    grpc_port: int = 9876
    """Port of the gRPC server the web viewer reads the live data from (with web_port)."""
    joint_rate_hz: float = 10.0
    """Joint states are drawn at most this often (wall clock): they arrive at hundreds per
    second, far more than a person sees."""
    image_rate_hz: float = 2.0
    """Camera images (colour and depth, each) are drawn at most this often (wall clock). The
    Q-map comes once per grasp decision and is always drawn."""
    urdf_path: str = ""
    """Robot model; empty: the packaged arm's URDF (sim_arm's default)."""

    def __post_init__(self) -> None:
        if not self.rrd_path.strip():
            raise ValueError("rrd_path: must not be empty")
        for name in ("web_port", "grpc_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ValueError(f"{name}: must be a TCP port in [0, 65535], got "
                                 f"{getattr(self, name)}")
        for name in ("joint_rate_hz", "image_rate_hz"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")


def _stamp_s(msg: Any) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


class ViewerNode(OptionalOutputNode):
    """Feeds a RunViewer from the run's topics."""

    def __init__(self, node_name: str = "viewer", **kwargs: Any) -> None:
        super().__init__(node_name, "viewer", **kwargs)
        self._config = declare_config(self, ViewerConfig).config
        self._next_s: dict[str, float] = {}
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
        # The streams are taken raw: a message the rate limit drops is never turned into a
        # Python message, and the ones drawn are deserialized in the drawing thread.
        sensor = qos.SENSOR_SUBSCRIBER_QOS
        cfg = self._config
        self.create_subscription(JointState, "joint_states", self._on_joints, sensor, raw=True)
        for topic, entity, depth in (("camera/color/image_raw", "camera/color", False),
                                     ("camera/depth/image_raw", "camera/depth", True)):
            self.create_subscription(Image, topic,
                                     self._image_callback(entity, depth, cfg.image_rate_hz),
                                     sensor, raw=True)
        self.create_subscription(Image, "q_grasp/q_map", self._image_callback("q_map"),
                                 qos.DEFAULT_QOS, raw=True)
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

    def _due(self, stream: str, rate_hz: float) -> bool:
        """Whether ``stream`` may be drawn now at ``rate_hz`` (wall clock); the executor's
        thread only, so no lock."""
        now = time.monotonic()
        if now < self._next_s.get(stream, 0.0):
            return False
        self._next_s[stream] = now + 1.0 / rate_hz
        return True

    def _image_callback(self, entity: str, depth: bool = False,
                        rate_hz: float | None = None) -> Any:
        convert = depth_image_to_numpy if depth else color_image_to_numpy

        def draw(out: Any, data: bytes) -> None:
            # Deserialized and converted here, in the drawing thread: an image the viewer
            # cannot read stops the viewer, never the executor that serves the run's nodes.
            msg = deserialize_message(data, Image)
            out.image(entity, convert(msg), _stamp_s(msg), depth=depth)

        def on_image(data: bytes) -> None:
            if rate_hz is None or self._due(entity, rate_hz):
                self._submit(lambda out: draw(out, data), f"drawing {entity} in")
        return on_image

    # ----------------------------------------------------------------------------- topics

    def _on_joints(self, data: bytes) -> None:
        if not self._due("joints", self._config.joint_rate_hz):
            return

        def draw(out: Any) -> None:
            msg = deserialize_message(data, JointState)
            out.joints(list(msg.name), list(msg.position), _stamp_s(msg))
        self._submit(draw, "drawing joint_states in")

    def _on_markers(self, msg: MarkerArray) -> None:
        for marker in msg.markers:
            self._draw_marker(marker)

    def _draw_marker(self, marker: Marker) -> None:
        """The policy's markers (policy.py draws them for rviz): grasp pose, approach and
        outcome, the Reacher's goal (its size: the success tolerance), the end effector."""
        ns, t_s = marker.ns, _stamp_s(marker)
        p, o = marker.pose.position, marker.pose.orientation
        center = [p.x, p.y, p.z]
        color = tuple(int(round(255 * min(max(c, 0.0), 1.0)))
                      for c in (marker.color.r, marker.color.g, marker.color.b))
        entity = f"world/{ns}"
        if ns == "grasp" and marker.type == Marker.CUBE:
            half = [0.5 * marker.scale.x, 0.5 * marker.scale.y, 0.5 * marker.scale.z]
            self._draw("box", entity, center, half, [o.x, o.y, o.z, o.w], t_s, color)
        elif ns == "grasp_approach" and marker.type == Marker.ARROW and len(marker.points) == 2:
            a, b = marker.points
            self._draw("arrow", entity, [a.x, a.y, a.z], [b.x, b.y, b.z], t_s, color)
        elif ns == "grasp_outcome":
            self._draw("points", entity, center, t_s, color=color, radius=0.012,
                       label=marker.text)
            success = marker.text.startswith("success")
            self._draw("text", "grasp_outcomes", marker.text, t_s,
                       level="INFO" if success else "WARN")
        elif ns in ("goal", "end_effector") and marker.type == Marker.SPHERE:
            self._draw("points", entity, center, t_s, color=color,
                       radius=max(0.5 * marker.scale.x, 0.003))

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
