"""viewer: a live Rerun view of the run without rviz: the arm in 3D (URDF + joint_states), the
colour and depth images, the Q-map heat map, each grasp's pose, approach and outcome and the
Reacher's goal (from the policy's markers), and the trainer's learning curves (from
/diagnostics), saved to an .rrd file (``rerun FILE.rrd`` reopens it) and, with web_port, served
to a browser at the address it logs (http://localhost:<web_port>/?url=...).

Its cost to the run is kept small: joint states and camera images are polled by a drawing
thread at a limited wall rate (the executor the run's nodes share never wakes for them, and a
message not drawn never reaches Python), unmoved joints are not logged again, and all Rerun
calls run in that thread.

A viewer that fails (port in use, unwritable file) logs the reason and stops viewing; the run
goes on.

  python -m q_grasp.nodes.viewer --ros-args -p rrd_path:=runs/x/run.rrd -p web_port:=9090
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image, JointState
from visualization_msgs.msg import MarkerArray

from q_grasp.messages import color_image_to_numpy, depth_image_to_numpy, stamp_s
from q_grasp.node_params.viewer import ViewerConfig
from q_grasp.nodes import qos
from q_grasp.nodes.params import declare_config
from q_grasp.nodes.runtime import OptionalOutputNode, run_node
from q_grasp.robot_config import RobotConfig
from q_grasp.viewer import MarkerDraws, trainer_curves

QUEUE_SIZE = 64
"""Draw calls waiting for the drawing thread; the oldest are dropped beyond this."""
RETRY_S = 0.05
"""A polled stream without a new message is looked at again after this long."""
CLOSE_TIMEOUT_S = 10.0
"""Longest wait for Rerun to finish the .rrd at shutdown before the node goes without it."""


def _draw_joints(out: Any, data: bytes) -> None:
    msg = deserialize_message(data, JointState)
    out.joints(list(msg.name), list(msg.position), stamp_s(msg))


def _image_drawer(entity: str, depth: bool = False) -> Any:
    convert = depth_image_to_numpy if depth else color_image_to_numpy

    def draw(out: Any, data: bytes) -> None:
        # Deserialized and converted in the drawing thread: an image the viewer cannot read
        # stops the viewer, never the executor that serves the run's nodes.
        msg = deserialize_message(data, Image)
        out.image(entity, convert(msg), stamp_s(msg), depth=depth)
    return draw


class _Stream:
    """A subscription the drawing thread polls at ``rate_hz`` (wall clock)."""

    def __init__(self, subscription: Any, rate_hz: float, draw: Any, doing: str) -> None:
        self.subscription, self.rate_hz, self.draw, self.doing = (subscription, rate_hz, draw,
                                                                  doing)
        self.next_s = 0.0

    def take_newest(self) -> bytes | None:
        """The newest serialized message not taken yet (None: none arrived)."""
        sub, newest = self.subscription, None
        try:
            # What rclpy's executors do to take a message, without their wait set.
            with sub.handle:
                while (taken := sub.handle.take_message(sub.msg_type, True)) is not None:
                    newest = taken[0]
        except Exception:  # the context is shutting down: nothing more to draw
            self.next_s = math.inf
        return newest


class ViewerNode(OptionalOutputNode):
    """Feeds a RunViewer from the run's topics."""

    def __init__(self, node_name: str = "viewer", **kwargs: Any) -> None:
        super().__init__(node_name, "viewer", **kwargs)
        self._config = declare_config(self, ViewerConfig).config
        # Rerun's logging can block (its send queue full while the machine is busy): it runs
        # in this thread, never in the executor's callbacks that the run's nodes share.
        self._queue: queue.Queue[tuple[Any, str] | None] = queue.Queue(QUEUE_SIZE)
        self._drawer = threading.Thread(target=self._draw_loop, name="viewer_draw",
                                        daemon=True)
        self.dropped = 0
        self._streams: list[_Stream] = []
        self._markers = MarkerDraws()
        self._streams_node: Node | None = None
        try:
            from q_grasp.viewer import RunViewer

            cfg = self._config
            self.output = RunViewer(Path(cfg.rrd_path).expanduser(),
                                    cfg.urdf_path or RobotConfig().urdf_path,
                                    web_port=cfg.web_port, grpc_port=cfg.grpc_port)
        except Exception as exc:  # ImportError, ViewerError, Rerun's own: view nothing
            self.fail(str(exc))
            return
        # The fast streams (hundreds of joint states a second) are polled by the drawing
        # thread at their draw rate, on a node of their own that no executor spins: the
        # executor that also serves sim_arm and the policy in bringup never wakes for them,
        # and a message nobody draws is replaced in DDS's history of one without any Python.
        cfg = self._config
        # (Its own name and this node's namespace: a launch file's __node remap would
        # otherwise give it this node's name.)
        self._streams_node = Node(f"{self.get_name()}_streams", namespace=self.get_namespace(),
                                  context=self.context, use_global_arguments=False,
                                  enable_rosout=False, start_parameter_services=False)
        newest_only = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                                 reliability=ReliabilityPolicy.BEST_EFFORT)
        self._streams = [
            _Stream(self._streams_node.create_subscription(
                msg_type, topic, lambda _: None, newest_only, raw=True), rate_hz, draw, doing)
            for msg_type, topic, rate_hz, draw, doing in (
                (JointState, "joint_states", cfg.joint_rate_hz, _draw_joints,
                 "drawing joint_states in"),
                (Image, "camera/color/image_raw", cfg.image_rate_hz,
                 _image_drawer("camera/color"), "drawing camera/color in"),
                (Image, "camera/depth/image_raw", cfg.image_rate_hz,
                 _image_drawer("camera/depth", depth=True), "drawing camera/depth in"))]
        # The Q-map comes once per grasp decision: every one is drawn.
        q_map = _image_drawer("q_map")
        self.create_subscription(
            Image, "q_grasp/q_map",
            lambda data: self._submit(lambda out: q_map(out, data), "drawing q_map in"),
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
        while True:
            due = min((stream.next_s for stream in self._streams), default=math.inf)
            try:
                item = self._queue.get(timeout=None if due == math.inf
                                       else max(0.0, due - time.monotonic()))
            except queue.Empty:
                item = ()
            if item is None:
                return
            if item:
                self.use_output(*item)
            self._poll_streams()

    def _poll_streams(self) -> None:
        now = time.monotonic()
        for stream in self._streams:
            if now < stream.next_s:
                continue
            data = stream.take_newest()
            if data is None:  # nothing new yet: look again soon (never, once shut down)
                if stream.next_s != math.inf:
                    stream.next_s = now + min(1.0 / stream.rate_hz, RETRY_S)
                continue
            stream.next_s = now + 1.0 / stream.rate_hz
            self.use_output(lambda out, s=stream, d=data: s.draw(out, d), stream.doing)

    def _draw(self, method: str, *args: Any, **kwargs: Any) -> None:
        self._submit(lambda out: getattr(out, method)(*args, **kwargs), f"drawing {method} in")

    # ----------------------------------------------------------------------------- topics

    def _on_markers(self, msg: MarkerArray) -> None:
        for marker in msg.markers:
            for method, args, kwargs in self._markers.draws(marker, stamp_s(marker)):
                self._draw(method, *args, **kwargs)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            curves = trainer_curves(status.name, {kv.key: kv.value for kv in status.values})
            if curves is not None:
                self._draw("curves", *curves)

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
        if self._streams_node is not None:
            self._streams_node.destroy_node()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``viewer``."""
    return run_node(ViewerNode, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
