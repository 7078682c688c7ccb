"""The trainer's replay buffer on disk as append-only segments, so a crash loses seconds of it.

Every ``flush`` writes the transitions added since the last one to a new file
``seg_<first index>_<count>.safetensors`` (temporary file, fsync, rename: a segment is whole or
absent). The first index is the trainer's running transition counter, which survives restarts,
so segments sort in arrival order. Segments older than the newest ``capacity`` transitions are
deleted: the ring buffer would have overwritten them, and disk use stays bounded by the buffer.
Observations are stored as the replay buffer stores them (its ObservationCodec: colour
channels as uint8, images' other channels as float16), so a segment takes the buffer's own
space and decodes to exactly what the buffer held. Reading a segment validates it like a wire
blob (names, dtypes, shapes, action range); a bad one is skipped with its reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from q_grasp.learning.buffer import ObservationCodec
from q_grasp.learning.checkpoint import fsync_replace

SEGMENT_PATTERN = re.compile(r"^seg_(\d{12})_(\d{1,9})\.safetensors$")
FORMAT = "q_grasp.replay_segment"
FORMAT_VERSION = "1"
_PER_STEP = {"actions": np.int64, "rewards": np.float32, "terminated": np.bool_,
             "truncated": np.bool_, "stream": np.int32}


@dataclass
class Segment:
    """Transitions ``first`` .. ``first + len - 1`` of the trainer's stream, in arrival order."""

    first: int
    arrays: dict[str, np.ndarray]
    """observations, actions, rewards, next_observations, terminated, truncated."""
    streams: list[str]
    """The actor of each transition."""
    state: str = ""
    """What the writer stored with it (the trainer: its stream table)."""

    def __len__(self) -> int:
        return len(self.streams)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


class ReplayLog:
    """Pending transitions in memory, written as one segment per ``flush``."""

    def __init__(self, folder: str | Path, capacity: int, codec: ObservationCodec,
                 num_actions: int) -> None:
        self.folder = Path(folder)
        self.capacity = int(capacity)
        self.codec = codec
        self.num_actions = int(num_actions)
        self._pending: list[tuple[int, tuple[np.ndarray, ...], str]] = []
        self.persisted = 0
        """Transitions written to segments by this process."""

    @property
    def pending(self) -> int:
        """Transitions added but not yet written."""
        return sum(len(arrays[1]) for _, arrays, _ in self._pending)

    def append(self, first: int, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
               next_obs: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
               stream: str) -> None:
        """Queue transitions ``first`` .. for the next flush (arrays as the buffer got them)."""
        self._pending.append((first, (obs, actions, rewards, next_obs, terminated, truncated),
                              stream))

    def flush(self, state: str = "") -> Path | None:
        """Write the pending transitions as one segment (with ``state``, a string the caller
        wants back with it) and prune old ones; the path, or None when nothing was pending."""
        from safetensors.numpy import save_file

        if not self._pending:
            return None
        pending, self._pending = self._pending, []
        first = pending[0][0]
        streams = sorted({stream for _, _, stream in pending})
        index = {s: i for i, s in enumerate(streams)}
        obs, actions, rewards, next_obs, terminated, truncated = (
            np.concatenate([arrays[i] for _, arrays, _ in pending]) for i in range(6))
        count = len(actions)
        tensors = {
            "actions": actions.astype(np.int64), "rewards": rewards.astype(np.float32),
            "terminated": terminated.astype(bool), "truncated": truncated.astype(bool),
            "stream": np.concatenate([np.full(len(arrays[1]), index[s], np.int32)
                                      for _, arrays, s in pending])}
        for prefix, values in (("obs", obs), ("next_obs", next_obs)):
            parts = self.codec.allocate(count)
            for i in range(count):
                self.codec.store(parts, i, values[i])
            tensors.update({f"{prefix}.{k}": v for k, v in parts.items()})
        tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"seg_{first:012d}_{count}.safetensors"
        tmp = path.with_name(path.name + ".tmp")
        try:
            save_file(tensors, str(tmp), metadata={
                "format": FORMAT, "format_version": FORMAT_VERSION, "first": str(first),
                "streams": json.dumps(streams), "state": state})
            fsync_replace(tmp, path)
        except Exception:  # a full disk: keep them for the next try
            self._pending = pending + self._pending
            raise
        self.persisted += count
        self.prune()
        return path

    def segments(self) -> list[tuple[int, int, Path]]:
        """(first, count, path) of every segment on disk, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), int(m.group(2)), p) for p in self.folder.iterdir()
                 if (m := SEGMENT_PATTERN.match(p.name))]
        return sorted(found)

    def prune(self) -> int:
        """Delete the segments the buffer's capacity has overwritten; how many went."""
        kept = 0
        removed = 0
        for _, count, path in reversed(self.segments()):
            if kept >= self.capacity:
                path.unlink(missing_ok=True)
                removed += 1
            else:
                kept += count
        return removed

    def read(self, since: int = 0) -> Iterator[Segment | tuple[Path, str]]:
        """The segments holding transitions >= ``since``, oldest first, each validated; a bad
        one comes as (path, reason) instead."""
        for first, count, path in self.segments():
            if first + count <= since:
                continue
            try:
                segment = self._load(path, first, count)
            except ValueError as exc:
                yield path, str(exc)
                continue
            if first < since:
                segment = Segment(since, {k: v[since - first:] for k, v in
                                          segment.arrays.items()},
                                  segment.streams[since - first:], segment.state)
            yield segment

    def _load(self, path: Path, first: int, count: int) -> Segment:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "np") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(f"not a readable safetensors file: {exc}") from None
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"not a {FORMAT} v{FORMAT_VERSION} file")
        layout = {f"{prefix}.{k}": v for prefix in ("obs", "next_obs")
                  for k, v in self.codec.allocate(count).items()}
        if set(tensors) != set(_PER_STEP) | set(layout):
            raise ValueError(f"tensors {sorted(tensors)}, expected "
                             f"{sorted(set(_PER_STEP) | set(layout))}")
        try:
            streams = json.loads(meta.get("streams", ""))
        except ValueError:
            streams = None
        if not (isinstance(streams, list) and all(isinstance(s, str) for s in streams)):
            raise ValueError("metadata 'streams' is not a list of strings")
        for name, like in layout.items():
            arr = tensors[name]
            if arr.shape != like.shape or arr.dtype != like.dtype:
                raise ValueError(f"{name} is {arr.dtype}{list(arr.shape)}, expected "
                                 f"{like.dtype}{list(like.shape)}")
        for name, dtype in _PER_STEP.items():
            arr = tensors[name]
            if arr.shape != (count,) or arr.dtype != dtype:
                raise ValueError(f"{name} is {arr.dtype}{list(arr.shape)}, expected "
                                 f"{np.dtype(dtype)}[{count}]")
        actions, ids = tensors["actions"], tensors["stream"]
        if count and (actions.min() < 0 or actions.max() >= self.num_actions):
            raise ValueError(f"actions outside [0, {self.num_actions})")
        if count and (ids.min() < 0 or ids.max() >= len(streams)):
            raise ValueError("stream index outside the streams list")
        for name in (*layout, "rewards"):
            arr = tensors[name]
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ValueError(f"{name} holds NaN or infinity")
        arrays = {name: tensors[name] for name in ("actions", "rewards", "terminated",
                                                   "truncated")}
        for prefix, field in (("obs", "observations"), ("next_obs", "next_observations")):
            arrays[field] = self.codec.decode({k.split(".", 1)[1]: v for k, v in
                                               tensors.items() if k.startswith(prefix + ".")})
        return Segment(first, arrays, [streams[i] for i in ids], meta.get("state", ""))
