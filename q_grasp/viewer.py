"""A Rerun view of a run (for pip-only users, where rviz is not installable): the arm in 3D
from its URDF, camera images, the Q-map, grasp and goal markers, and learning curves, saved to
an .rrd file and optionally served to a local browser. No rclpy here: the viewer node hands in
arrays.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from q_grasp.markers import ARROW, CUBE, SPHERE

SIM_TIME = "sim_time"
"""Timeline of the robot's messages (their header stamps)."""
TRANSITIONS = "transitions"
"""Timeline of the learning curves (transitions the trainer received)."""


JOINT_TOLERANCE = 0.01
"""Joint motion (rad or m) below which a joint's transform is not logged again."""


class ViewerError(ValueError):
    """The viewer cannot start as asked (the message names the file or port)."""


def port_in_use(port: int) -> bool:
    """Whether a TCP port on this host is taken (so the error can name it before Rerun's
    servers fail deep inside)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104 - where Rerun's servers bind
        except OSError:
            return True
    return False


class RunViewer:
    """Logs a run to Rerun: always to ``rrd_path``; with ``web_port`` also to a gRPC server
    that the web viewer served at http://localhost:<web_port> reads."""

    def __init__(self, rrd_path: str | Path, urdf_path: str | Path, *, web_port: int = 0,
                 grpc_port: int = 9876) -> None:
        import rerun as rr
        from rerun.urdf import UrdfTree

        self.rr = rr
        self.path = Path(rrd_path)
        if web_port:
            for name, port in (("web port", web_port), ("gRPC port", grpc_port)):
                if port_in_use(port):
                    raise ViewerError(f"viewer {name} {port} is in use (choose another or "
                                      f"stop what holds it)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
        except OSError as exc:
            raise ViewerError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self.url = ""
        self.rec = rr.RecordingStream("q_grasp")
        if web_port:
            # The gRPC server is itself a sink beside the file (the web viewer reads from it).
            self.rec.set_sinks(rr.GrpcServerSink(port=grpc_port, server_memory_limit="256MiB"),
                               rr.FileSink(str(self.path)))
            # Rerun passes connect_to only to a browser it opens itself: the page is told where
            # the data is by its ?url= query, or it opens on Rerun's welcome screen.
            source = f"rerun+http://127.0.0.1:{grpc_port}/proxy"
            rr.serve_web_viewer(web_port=web_port, open_browser=False, connect_to=source)
            self.url = f"http://localhost:{web_port}/?url={quote(source, safe=':/')}"
        else:
            self.rec.set_sinks(rr.FileSink(str(self.path)))
        self.tree = UrdfTree.from_file_path(str(urdf_path))
        self.tree.log_urdf_to_recording(self.rec)
        self._joints = {j.name: j for j in self.tree.joints() if j.joint_type != "fixed"}
        self._joint_values: dict[str, float] = {}

    def _sim_time(self, t_s: float) -> None:
        self.rec.set_time(SIM_TIME, duration=t_s)

    def joints(self, names: Sequence[str], positions: Sequence[float], t_s: float) -> int:
        """Move the URDF model's joints (unknown names are ignored); returns how many were
        logged. A joint within JOINT_TOLERANCE of its last logged value is not logged again:
        Rerun keeps the latest value, and each transform costs the run's process ~0.2 ms (one
        Transform3D per joint: Rerun's viewer does not resolve several frames in one row)."""
        self._sim_time(t_s)
        logged = 0
        for name, value in zip(names, positions):
            joint = self._joints.get(name)
            if joint is None or not np.isfinite(value):
                continue
            last = self._joint_values.get(name)
            if last is not None and abs(value - last) < JOINT_TOLERANCE:
                continue
            self._joint_values[name] = float(value)
            self.rec.log("robot/joints", joint.compute_transform(float(value), clamp=False))
            logged += 1
        return logged

    def image(self, entity: str, image: np.ndarray, t_s: float, depth: bool = False) -> None:
        """An RGB image, or a depth image in metres."""
        self._sim_time(t_s)
        rr = self.rr
        self.rec.log(entity, rr.DepthImage(image, meter=1.0) if depth else rr.Image(image))

    def points(self, entity: str, xyz: np.ndarray, t_s: float,
               color: Sequence[int] = (255, 200, 0), radius: float = 0.01,
               label: str | None = None) -> None:
        """Markers (goal, end effector, a grasp's outcome) as points in the world frame."""
        self._sim_time(t_s)
        self.rec.log(entity, self.rr.Points3D(np.atleast_2d(xyz), colors=[color],
                                              radii=radius,
                                              labels=None if label is None else [label]))

    def box(self, entity: str, center: Sequence[float], half_size: Sequence[float],
            xyzw: Sequence[float], t_s: float, color: Sequence[int]) -> None:
        """An oriented box in the world frame (the grasp: a bar along the closing fingers)."""
        self._sim_time(t_s)
        rr = self.rr
        self.rec.log(entity, rr.Boxes3D(centers=[center], half_sizes=[half_size],
                                        quaternions=[rr.Quaternion(xyzw=xyzw)],
                                        colors=[color]))

    def arrow(self, entity: str, start: Sequence[float], end: Sequence[float], t_s: float,
              color: Sequence[int]) -> None:
        """An arrow in the world frame (the grasp's top-down approach)."""
        self._sim_time(t_s)
        self.rec.log(entity, self.rr.Arrows3D(origins=[start],
                                              vectors=[np.subtract(end, start)],
                                              colors=[color]))

    def text(self, entity: str, text: str, t_s: float, level: str = "INFO") -> None:
        """A line in a text log (grasp outcomes)."""
        self._sim_time(t_s)
        self.rec.log(entity, self.rr.TextLog(text, level=level))

    def curves(self, transitions: int, values: Mapping[str, float]) -> None:
        """Learning-curve points at ``transitions`` (finite values only)."""
        self.rec.set_time(TRANSITIONS, sequence=int(transitions))
        for key, value in values.items():
            if np.isfinite(value):
                self.rec.log(f"curves/{key}", self.rr.Scalars(float(value)))

    def close(self) -> None:
        """Flush and finish the .rrd file."""
        self.rec.flush()
        self.rec.disconnect()


CURVES = ("success_rate", "loss", "mean_max_q", "epsilon", "updates_per_s", "weights_version")
"""Trainer diagnostics drawn as learning curves (against transitions)."""

Draw = tuple[str, tuple, dict]
"""A RunViewer call: method name, positional and keyword arguments."""


def trainer_curves(name: str, values: Mapping[str, str]) -> tuple[int, dict[str, float]] | None:
    """(transitions, learning curves) of a trainer's /diagnostics status (its name and
    key/values as text); None for other nodes' statuses and incomplete ones."""
    if not name.endswith("/trainer"):
        return None
    try:
        return int(values["transitions"]), {k: float(values[k]) for k in CURVES if k in values}
    except (KeyError, ValueError):
        return None


class MarkerDraws:
    """The RunViewer calls that draw the policy's markers (q_grasp.markers, for rviz):
    grasp pose, approach and outcome, the Reacher's goal (its size: the success tolerance) and
    the end effector. Markers read as visualization_msgs/Marker fields (ns, type, pose, scale,
    color, points, text)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple] = {}

    def draws(self, marker: Any, t_s: float) -> list[Draw]:
        """What to draw for ``marker`` stamped ``t_s`` (nothing for a repeat)."""
        ns, p, o = marker.ns, marker.pose.position, marker.pose.orientation
        center = [p.x, p.y, p.z]
        color = tuple(int(round(255 * min(max(c, 0.0), 1.0)))
                      for c in (marker.color.r, marker.color.g, marker.color.b))
        entity = f"world/{ns}"
        if ns != "grasp_outcome":
            # The policy repeats markers (a grasp before and after the attempt, the Reacher's
            # goal at every step): Rerun keeps the last one, so only changes are logged.
            shape = (marker.type, *center, o.x, o.y, o.z, o.w, marker.scale.x, marker.scale.y,
                     marker.scale.z, *color, *((q.x, q.y, q.z) for q in marker.points))
            if self._last.get(ns) == shape:
                return []
            self._last[ns] = shape
        if ns == "grasp" and marker.type == CUBE:
            half = [0.5 * marker.scale.x, 0.5 * marker.scale.y, 0.5 * marker.scale.z]
            return [("box", (entity, center, half, [o.x, o.y, o.z, o.w], t_s, color), {})]
        if ns == "grasp_approach" and marker.type == ARROW and len(marker.points) == 2:
            a, b = marker.points
            return [("arrow", (entity, [a.x, a.y, a.z], [b.x, b.y, b.z], t_s, color), {})]
        if ns == "grasp_outcome":
            level = "INFO" if marker.text.startswith("success") else "WARN"
            return [("points", (entity, center, t_s),
                     dict(color=color, radius=0.012, label=marker.text)),
                    ("text", ("grasp_outcomes", marker.text, t_s), dict(level=level))]
        if ns in ("goal", "end_effector") and marker.type == SPHERE:
            return [("points", (entity, center, t_s),
                     dict(color=color, radius=max(0.5 * marker.scale.x, 0.003)))]
        return []


def recorded_entities(rrd_path: str | Path) -> set[str]:
    """Entity paths of the recording in an .rrd file (to check what a run logged)."""
    from rerun.chunk import RrdReader

    reader = RrdReader(str(rrd_path))
    return set(reader.store().schema().entity_paths())


def recorded_values(rrd_path: str | Path, entity: str, column: str,
                    timeline: str = SIM_TIME) -> list:
    """The values of one column (such as ``Boxes3D:half_sizes``) of an entity in an .rrd
    file, one entry per logged row, in the order of ``timeline`` (rows without it first)."""
    from rerun.chunk import RrdReader

    rows: list = []
    for chunk in RrdReader(str(rrd_path)).store().stream():
        if chunk.entity_path != entity:
            continue
        batch = chunk.to_record_batch()
        if column not in batch.schema.names:
            continue
        times = (batch.column(timeline).cast("int64").to_pylist()
                 if timeline in batch.schema.names else [None] * batch.num_rows)
        rows.extend(zip(times, batch.column(column).to_pylist()))
    rows.sort(key=lambda row: -1 if row[0] is None else row[0])  # stable: same time, as read
    return [value for _, value in rows]
