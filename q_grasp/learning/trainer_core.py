"""The trainer node's logic without ROS: validated transition blobs in, replay buffer, DQN
updates at a fixed replay ratio, versioned weight blobs out, checkpoints and resume.

The network, spaces and experiment config come from ``q_grasp.tasks.load.load_task``, the same
function the policy node uses, so learner and actors agree on the architecture by
construction (and the weights' ``net_config`` lets each side check the other).
"""

from __future__ import annotations

import json
import math
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from q_grasp.learning.agent import Learner, make_buffer
from q_grasp.learning.checkpoint import (
    atomic_write_bytes,
    env_description,
    fsync_replace,
    load_checkpoint,
    save_checkpoint,
)
from q_grasp.learning.dqn import load_optimizer_state
from q_grasp.learning.replay_log import ReplayLog, Segment
from q_grasp.learning.schedules import make_schedule
from q_grasp.tasks.load import load_task
from q_grasp.wire import (
    TransitionBatch,
    TransitionLimits,
    decode_transitions,
    encode_weights,
    network_config_of,
)

CHECKPOINT_PATTERN = re.compile(r"^ckpt_(\d{9})\.safetensors$")
VERSION_BLOCK = 1000
"""Weights versions reserved on disk at a time (checkpoints/weights_version): a restart
continues above every version a crashed trainer may have published."""


@dataclass
class TrainerConfig:
    """Parameters of the trainer node (the learner)."""

    task: Literal["grasp", "grasp_clutter", "reacher"] = "grasp"
    """Task whose transitions arrive (sets the network and the expected observation shape)."""
    experiment_config: str = ""
    """Learning YAML (network, buffer, DQN, exploration); empty: the packaged default for the
    task, or the config stored in the checkpoint."""
    checkpoint: str = ""
    """Checkpoint to start from. Empty: the newest checkpoint in output_dir/checkpoints
    (resume after a restart), else fresh weights."""
    output_dir: str = "runs/ros_trainer"
    """Folder for checkpoints/, progress.csv and TensorBoard files (tb/)."""
    seed: int = 0
    """Seed of the network initialisation and replay sampling."""
    device: str = ""
    """Torch device ("cpu", "cuda", "cuda:1"); empty: the experiment's training.device. Set
    "cuda" to train on a GPU (weights are published from CPU copies either way)."""
    replay_ratio: float = 0.0
    """Gradient updates per received transition; 0: the experiment's gradient_steps /
    train_freq (the single-process loop's rhythm)."""
    learning_starts: int = -1
    """Transitions to collect before the first update; -1: the experiment's learning_starts."""
    max_updates_per_s: float = 0.0
    """Cap on gradient updates per wall-clock second (0: no cap) to leave CPU to actors."""
    publish_every_updates: int = 50
    """Publish the weights every this many updates (and once at start)."""
    checkpoint_every_updates: int = 500
    """Write a checkpoint every this many updates (and at shutdown)."""
    keep_checkpoints: int = 3
    """Newest periodic checkpoints kept in output_dir/checkpoints."""
    save_replay_buffer: bool = True
    """Keep the replay buffer on disk: new transitions go to output_dir/replay every
    replay_flush_every_s, the whole buffer to checkpoints/replay.safetensors at shutdown; a
    restart (also after a crash) reloads both."""
    replay_flush_every_s: float = 2.0
    """Write the transitions received since the last write this often (wall clock): what a
    crash of the trainer can lose of the replay buffer."""
    log_every_s: float = 5.0
    """Write a progress.csv row and a log line this often (wall clock)."""
    tensorboard: bool = True
    """Also write the progress.csv numbers as TensorBoard scalars in output_dir/tb (step:
    transitions received)."""
    queue_size: int = 256
    """Decoded transition batches waiting for the training thread; the oldest are dropped
    (and counted) beyond this."""
    transitions_qos_depth: int = 500
    """Depth of the reliable, transient-local /q_grasp/transitions subscription queue (at
    least the actors' transitions_queue_depth, so their whole history fits at a restart)."""
    max_blob_bytes: int = 64 * 1024 * 1024
    """Largest transitions blob accepted (bytes)."""
    max_batch_size: int = 4096
    """Most transitions in one blob."""
    auth_key_file: str = ""
    """File with the key that checks transitions and signs weights (HMAC-SHA256), shared by
    the nodes of one system; empty: $Q_GRASP_AUTH_KEY_FILE, else $Q_GRASP_AUTH_KEY, else
    none (not authenticated). bringup and the launch file make a fresh one per run."""
    success_window: int = 100
    """Finished episodes over which the success rate is reported."""

    def __post_init__(self) -> None:
        if not self.replay_ratio >= 0.0:
            raise ValueError(f"replay_ratio: must be >= 0 (0 = from the experiment), got "
                             f"{self.replay_ratio}")
        if self.learning_starts < -1:
            raise ValueError(f"learning_starts: must be >= -1, got {self.learning_starts}")
        if not self.max_updates_per_s >= 0.0:
            raise ValueError(f"max_updates_per_s: must be >= 0, got {self.max_updates_per_s}")
        for name in ("publish_every_updates", "checkpoint_every_updates", "keep_checkpoints",
                     "queue_size", "transitions_qos_depth", "max_blob_bytes",
                     "max_batch_size", "success_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not self.replay_flush_every_s > 0.0:
            raise ValueError(f"replay_flush_every_s: must be > 0 s, got "
                             f"{self.replay_flush_every_s}")
        if not self.log_every_s > 0.0:
            raise ValueError(f"log_every_s: must be > 0 s, got {self.log_every_s}")
        if not self.output_dir:
            raise ValueError("output_dir: must not be empty")
        if self.device and not (self.device == "cpu" or self.device.startswith(("cuda", "mps"))):
            raise ValueError(f"device: must be cpu, cuda[:N], mps or empty, got {self.device!r}")


def checkpoints_newest_first(output_dir: str | Path) -> list[Path]:
    """The periodic checkpoints in ``output_dir``/checkpoints, most updates first."""
    folder = Path(output_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = sorted((int(m.group(1)), p) for p in folder.iterdir()
                   if (m := CHECKPOINT_PATTERN.match(p.name)))
    return [p for _, p in reversed(found)]


def newest_checkpoint(output_dir: str | Path) -> Path | None:
    """The periodic checkpoint with the most updates in ``output_dir``/checkpoints."""
    found = checkpoints_newest_first(output_dir)
    return found[0] if found else None


MAX_STREAMS = 1024
"""(actor, run) streams whose sequence numbers are remembered; the least recently heard
beyond this are forgotten (a hostile sender cannot grow the table without bound)."""


class StreamGuard:
    """Per (actor, run): the next transition the stream owes. A batch that starts before it
    is a repeat (``duplicate`` when it starts where the last accepted batch started, else
    ``stale``); one that starts after it reveals lost transitions. Thread-safe."""

    def __init__(self, max_streams: int = MAX_STREAMS) -> None:
        self.max_streams = max_streams
        self._streams: OrderedDict[tuple[str, str], tuple[int, int]] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, batch: TransitionBatch) -> tuple[str | None, int]:
        """(reason to refuse or None, transitions lost before this batch)."""
        key = (batch.actor_id, batch.run_id)
        with self._lock:
            known = self._streams.get(key)
            lost = 0
            if known is not None:
                last_start, expected = known
                if batch.sequence < expected:
                    return ("duplicate" if batch.sequence == last_start else "stale"), 0
                lost = batch.sequence - expected
            self._streams[key] = (batch.sequence, batch.sequence + len(batch))
            self._streams.move_to_end(key)
            while len(self._streams) > self.max_streams:
                self._streams.popitem(last=False)
            return None, lost

    def state(self) -> str:
        """The table as JSON (stored with the replay buffer, so a restart keeps refusing)."""
        with self._lock:
            return json.dumps([[a, r, s, e] for (a, r), (s, e) in self._streams.items()])

    def load(self, text: str) -> None:
        """Restore :meth:`state`; ValueError if it is not one."""
        rows = json.loads(text)
        if not isinstance(rows, list) or not all(
                isinstance(r, list) and len(r) == 4 and all(isinstance(x, str) for x in r[:2])
                and all(isinstance(x, int) and x >= 0 for x in r[2:]) for r in rows):
            raise ValueError("not a list of [actor, run, start, end]")
        with self._lock:
            self._streams = OrderedDict(((a, r), (s, e))
                                        for a, r, s, e in rows[-self.max_streams:])


class TrainerCore:
    """Replay buffer + learner fed by transition blobs; thread-safe between one ingesting
    thread (decode) and one training thread (add, update, publish, checkpoint)."""

    def __init__(self, config: TrainerConfig, source: str = "trainer") -> None:
        self.config = config
        self.source = source
        self.run_id = secrets.token_hex(8)
        """This start of the trainer, in every weights blob it publishes."""
        self.streams = StreamGuard()
        """Sequence numbers of the batches received (the subscription thread admits them)."""
        self._ingested = StreamGuard()
        """Sequence numbers of the batches in the replay buffer (what is saved with it)."""
        self.output_dir = Path(config.output_dir).expanduser()
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.warnings: list[str] = []
        """Problems met while resuming (the node logs them): skipped files and why."""
        start, self.setup = self._load_start()
        exp = self.setup.experiment
        device = config.device or exp.training.device
        torch.manual_seed(config.seed)
        torch.set_num_threads(exp.training.torch_threads)
        buffer = make_buffer(exp, self.setup.spaces, seed=config.seed)
        self.learner = Learner(self.setup.q_net, buffer, exp, device)
        self.learner.q_net.train()
        self.net_config = network_config_of(self.learner.q_net)
        spaces = self.setup.spaces
        self.obs_dtype = spaces.observation_space.dtype
        self.limits = TransitionLimits(
            max_blob_bytes=config.max_blob_bytes, max_batch_size=config.max_batch_size,
            obs_shape=tuple(spaces.observation_space.shape),
            max_obs_elements=max(int(np.prod(spaces.observation_space.shape)), 1),
            num_actions=int(spaces.action_space.n), task=config.task)
        tcfg = exp.training
        self.replay_ratio = (config.replay_ratio if config.replay_ratio > 0
                             else tcfg.gradient_steps / tcfg.train_freq)
        self.learning_starts = (config.learning_starts if config.learning_starts >= 0
                                else tcfg.learning_starts)
        self.schedule = make_schedule(exp.exploration, tcfg.total_steps)
        self.transitions = 0
        self.episodes = 0
        self.weights_version = -1
        self.resumed_from = start
        self.last_loss = math.nan
        self.last_mean_max_q = math.nan
        self._successes: deque[bool] = deque(maxlen=config.success_window)
        self._rewards: deque[float] = deque(maxlen=1000)
        self._lock = threading.Lock()
        self.replay_log = (ReplayLog(self.output_dir / "replay", exp.buffer.capacity,
                                     buffer.codec, int(spaces.action_space.n))
                           if config.save_replay_buffer else None)
        if start:
            self._restore(start)
        self._version_ceiling = self._read_version_ceiling()
        self.weights_version = max(self.weights_version, self._version_ceiling)
        if self.replay_log is not None:
            self._replay_segments()
        self._saved_at = self._progress()
        self._replay_saved_at = self.transitions

    def _progress(self) -> tuple[int, int]:
        return self.transitions, self.learner.updates

    @property
    def unsaved(self) -> bool:
        """Whether transitions arrived or updates ran since the start or the last checkpoint
        (a trainer that saw nothing has nothing to save)."""
        # Periodic checkpoints leave the replay buffer to the segments: a transition since
        # the last whole-buffer save still asks for the final one.
        return (self._progress() != self._saved_at
                or (self.replay_log is not None and self.transitions != self._replay_saved_at))

    # ----------------------------------------------------------------------------- resume

    def _load_start(self) -> tuple[str, Any]:
        """The checkpoint to start from and the task set up from it. An explicit checkpoint
        must load; of the periodic ones the newest that loads is used, the others are skipped
        with a warning (a crash or a full disk may have left the newest one broken)."""
        cfg = self.config
        if cfg.checkpoint:
            candidates = [cfg.checkpoint]
        else:
            candidates = [str(p) for p in checkpoints_newest_first(self.output_dir)]
        for path in candidates:
            try:
                return path, load_task(cfg.task, experiment_config=cfg.experiment_config,
                                       checkpoint=path, seed=cfg.seed)
            except ValueError as exc:
                if cfg.checkpoint:
                    raise
                self.warnings.append(f"skipped checkpoint {path}: {exc}")
        return "", load_task(cfg.task, experiment_config=cfg.experiment_config,
                             checkpoint="", seed=cfg.seed)

    def _restore(self, path: str) -> None:
        ckpt = load_checkpoint(path)
        learner = self.learner
        if ckpt.target_net_state is not None:
            learner.target_net.load_state_dict(ckpt.target_net_state)
        else:
            learner.target_net.load_state_dict(ckpt.q_net_state)
        if ckpt.optimizer_state is not None:
            try:
                load_optimizer_state(learner.optimizer, ckpt.optimizer_state)
            except (ValueError, KeyError, RuntimeError) as exc:
                raise ValueError(f"checkpoint: optimizer state does not fit: {exc}") from None
        counters = ckpt.counters
        learner.updates = int(counters.get("updates", 0))
        self.transitions = int(counters.get("env_steps", 0))
        self.episodes = int(counters.get("episodes", 0))
        self.weights_version = int(counters.get("weights_version", learner.updates))

    def _replay_segments(self) -> None:
        """Reload the replay buffer: the file of the last clean shutdown, then the segments
        written after it; count the transitions the checkpoint had not seen yet."""
        from safetensors import SafetensorError, safe_open

        replay = self.checkpoint_dir / "replay.safetensors"
        through = 0
        streams = ""
        if replay.is_file():
            try:
                with safe_open(str(replay), "np") as f:
                    meta = f.metadata() or {}
                    state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
                self.learner.buffer.load_state_dict(state)
                through, streams = int(meta.get("through", 0)), meta.get("streams", "")
            except (SafetensorError, ValueError, KeyError, OSError) as exc:
                self.warnings.append(f"replay buffer {replay} not loaded: {exc}")
        counted = self.transitions
        for segment in self.replay_log.read(since=through):
            if not isinstance(segment, Segment):
                self.warnings.append(f"skipped replay segment {segment[0]}: {segment[1]}")
                continue
            streams = segment.state or streams
            done = segment["terminated"] | segment["truncated"]
            for i in range(len(segment)):
                self.learner.add_transition(
                    segment["observations"][i], int(segment["actions"][i]),
                    float(segment["rewards"][i]), segment["next_observations"][i],
                    bool(segment["terminated"][i]), bool(segment["truncated"][i]),
                    segment.streams[i])
            self.episodes += int(done[max(counted - segment.first, 0):].sum())
            self.transitions = max(self.transitions, segment.first + len(segment))
        if streams:
            try:
                self.streams.load(streams)
                self._ingested.load(streams)
            except ValueError as exc:
                self.warnings.append(f"sequence numbers of the actors not restored: {exc}")

    # ----------------------------------------------------------------------------- ingest

    def decode(self, blob: Any, authenticated: bool = False) -> TransitionBatch:
        """Validate a blob (WireError on any problem); nothing is stored yet.
        ``authenticated``: its authentication tag was checked (it may omit the checksum)."""
        return decode_transitions(blob, self.limits, authenticated=authenticated)

    def ingest(self, batch: TransitionBatch) -> int:
        """Add a validated batch to the replay buffer; returns the transitions added."""
        obs = batch.observations.astype(self.obs_dtype, copy=False)
        next_obs = batch.next_observations.astype(self.obs_dtype, copy=False)
        if batch.observations.dtype == np.uint8 and self.obs_dtype != np.uint8:
            obs = (obs / np.float32(255.0)).astype(self.obs_dtype, copy=False)
            next_obs = (next_obs / np.float32(255.0)).astype(self.obs_dtype, copy=False)
        stream = batch.actor_id or "actor"
        self._ingested.admit(batch)
        if self.replay_log is not None:
            self.replay_log.append(self.transitions, obs, batch.actions, batch.rewards,
                                   next_obs, batch.terminated, batch.truncated, stream)
        for i in range(len(batch)):
            self.learner.add_transition(obs[i], int(batch.actions[i]), float(batch.rewards[i]),
                                        next_obs[i], bool(batch.terminated[i]),
                                        bool(batch.truncated[i]), stream)
        done = batch.terminated | batch.truncated
        with self._lock:
            self.transitions += len(batch)
            self.episodes += int(done.sum())
            self._rewards.extend(float(r) for r in batch.rewards)
            if batch.is_success is not None:
                self._successes.extend(bool(s) for s in batch.is_success[done])
        return len(batch)

    # ----------------------------------------------------------------------------- training

    def updates_due(self) -> int:
        """Gradient updates owed at the replay ratio for the transitions received so far."""
        learner = self.learner
        if self.transitions < self.learning_starts or not learner.can_optimize():
            return 0
        owed = int((self.transitions - self.learning_starts) * self.replay_ratio) + 1
        return max(owed - learner.updates, 0)

    def training_progress(self) -> float:
        """Transitions received as a fraction of the experiment's step budget, in [0, 1]."""
        total = max(self.setup.experiment.training.total_steps, 1)
        return min(self.transitions / total, 1.0)

    def per_beta(self) -> float:
        """Prioritised-replay importance exponent, annealed like the single-process Agent."""
        beta_start = self.setup.experiment.buffer.beta_start
        return beta_start + self.training_progress() * (1.0 - beta_start)

    def update(self) -> float | None:
        """One gradient update; its loss (None while the buffer is too small). The learning
        rate follows the experiment's schedule over the transitions received, as the
        single-process Agent's follows its env steps."""
        self.learner.set_progress(self.training_progress())
        result = self.learner.optimize(beta=self.per_beta())
        if result is None:
            return None
        self.last_loss = float(result.loss)
        self.last_mean_max_q = float(result.mean_max_q)
        return self.last_loss

    @property
    def updates(self) -> int:
        """Gradient updates so far (restored on resume)."""
        return self.learner.updates

    def weights_blob(self) -> bytes:
        """The current weights as a wire blob; bumps the weights version."""
        self.weights_version = max(self.weights_version + 1, self.learner.updates)
        if self.weights_version > self._version_ceiling:
            # Reserved on disk before it is published: a restart starts above it.
            self._version_ceiling = self.weights_version + VERSION_BLOCK
            atomic_write_bytes(self.checkpoint_dir / "weights_version",
                               f"{self._version_ceiling}\n".encode())
        return encode_weights(self.learner.weights(), self.weights_version, self.net_config,
                              task=self.config.task, source=self.source,
                              num_updates=self.learner.updates, stamp_ns=time.time_ns(),
                              run_id=self.run_id)

    def _read_version_ceiling(self) -> int:
        path = self.checkpoint_dir / "weights_version"
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return -1
        except OSError as exc:
            self.warnings.append(f"{path} not read ({exc.strerror}): weights versions may "
                                 f"repeat ones published before")
            return -1
        if not text.isascii() or not text.isdigit() or len(text) > 18:
            self.warnings.append(f"{path} does not hold a version number: ignored")
            return -1
        return int(text)

    # ----------------------------------------------------------------------------- saving

    def flush_replay(self) -> int:
        """Write the transitions received since the last flush to disk; how many."""
        if self.replay_log is None:
            return 0
        pending = self.replay_log.pending
        self.replay_log.flush(self._ingested.state())
        return pending

    def save_checkpoint(self, *, replay: bool = False) -> Path:
        """Write checkpoints/ckpt_<updates>.safetensors (and the replay buffer if asked);
        keep the newest ``keep_checkpoints``."""
        exp = self.setup.experiment
        path = self.checkpoint_dir / f"ckpt_{self.learner.updates:09d}.safetensors"
        progress = self._progress()
        with self.learner.lock:
            save_checkpoint(
                path, self.learner.q_net, target_net=self.learner.target_net,
                optimizer=self.learner.optimizer, config=exp,
                env=env_description(self.setup.spaces, exp.env.id, exp.env.kwargs),
                counters={"env_steps": self.transitions, "episodes": self.episodes,
                          "updates": self.learner.updates,
                          "weights_version": max(self.weights_version, 0)},
                extra={"seed": self.config.seed, "source": self.source})
        if replay and self.replay_log is not None:
            from safetensors.numpy import save_file

            self.flush_replay()
            tmp = self.checkpoint_dir / "replay.safetensors.tmp"
            # "through": the transitions it holds; a restart adds the segments from there on.
            save_file(self.learner.buffer.state_dict(), str(tmp),
                      metadata={"through": str(self.transitions),
                                "streams": self._ingested.state()})
            fsync_replace(tmp, self.checkpoint_dir / "replay.safetensors")
            self._replay_saved_at = progress[0]
        old = sorted(p for p in self.checkpoint_dir.iterdir() if CHECKPOINT_PATTERN.match(p.name))
        for stale in old[:-self.config.keep_checkpoints]:
            stale.unlink(missing_ok=True)
        self._saved_at = progress
        return path

    # ----------------------------------------------------------------------------- metrics

    def stats(self) -> dict[str, Any]:
        """Numbers for diagnostics and progress.csv."""
        with self._lock:
            successes = list(self._successes)
            rewards = list(self._rewards)
        return {
            "transitions": self.transitions,
            "episodes": self.episodes,
            "buffer_size": len(self.learner.buffer),
            "updates": self.learner.updates,
            "loss": self.last_loss,
            "mean_max_q": self.last_mean_max_q,
            "epsilon": float(self.schedule(self.transitions)),
            "success_rate": float(np.mean(successes)) if successes else math.nan,
            "reward_mean": float(np.mean(rewards)) if rewards else math.nan,
            "weights_version": self.weights_version,
            "replay_persisted": self.replay_log.persisted if self.replay_log else 0,
        }
