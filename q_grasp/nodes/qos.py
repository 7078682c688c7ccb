"""QoS profiles per topic, chosen so that q_grasp interoperates with real drivers.

The rule behind the sensor profiles: a *reliable* publisher matches both reliable and
best-effort subscribers, and a *best-effort* subscriber matches both kinds of publishers. So
the simulator publishes sensor streams reliably (rviz, robot_state_publisher and ros2_control's
broadcasters all subscribe reliably by default), and the policy subscribes with the sensor-data
profile (best effort, shallow queue) so it also works with camera drivers that publish best
effort. Publishers created with :data:`QOS_OVERRIDES` let users change reliability, depth and
history per topic with ``qos_overrides./topic.publisher.*`` parameters.
"""

from __future__ import annotations

import json

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.qos_overriding_options import QoSOverridingOptions


def _profile(depth: int, reliability: ReliabilityPolicy,
             durability: DurabilityPolicy = DurabilityPolicy.VOLATILE) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=durability)


SENSOR_SUBSCRIBER_QOS: QoSProfile = qos_profile_sensor_data
"""Camera and joint-state subscriptions: best effort, keep last 5 (matches any publisher)."""

IMAGE_PUBLISHER_QOS = _profile(5, ReliabilityPolicy.RELIABLE)
"""Camera images and camera_info from the simulator: reliable, keep last 5."""

JOINT_STATES_PUBLISHER_QOS = _profile(10, ReliabilityPolicy.RELIABLE)
"""/joint_states from the simulator: reliable, keep last 10 (what joint_state_broadcaster uses,
so robot_state_publisher's reliable subscription matches)."""

COMMAND_QOS = _profile(10, ReliabilityPolicy.RELIABLE)
"""Trajectory commands: reliable, keep last 10 (JointTrajectoryController's system default)."""

LATCHED_QOS = _profile(1, ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL)
"""/robot_description and other latched state: reliable, transient local, keep last 1, so a
subscriber that starts later still receives the last message."""

WEIGHTS_QOS = LATCHED_QOS
"""/q_grasp/weights: latched, so a policy that (re)starts gets the newest weights at once."""

CLOCK_QOS = _profile(1, ReliabilityPolicy.BEST_EFFORT)
"""/clock: best effort, keep last 1, as rclcpp's ClockQoS and rclpy's TimeSource expect."""

DEFAULT_QOS = _profile(10, ReliabilityPolicy.RELIABLE)
"""Visualisation and /diagnostics: reliable, keep last 10."""

QOS_OVERRIDES = QoSOverridingOptions.with_default_policies()
"""Pass as ``qos_overriding_options`` to make a publisher's QoS overridable by parameters."""


TRANSITIONS_DEPTH = 500
"""Default depth of /q_grasp/transitions on both sides: 30 s of a grasp actor at its fastest
(~16 transitions/s, one per message), 66 MB of 132 KB grasp blobs kept by each actor."""


def transitions_qos(depth: int = TRANSITIONS_DEPTH) -> QoSProfile:
    """/q_grasp/transitions: reliable, transient local, keep last ``depth``.

    Transient local on the actor's publisher and on the trainer's subscription: a trainer that
    (re)starts receives the last ``depth`` messages of every actor, so what was published while
    it was down (or killed before it reached the disk) is not lost; the trainer refuses the
    ones it already holds by their sequence numbers. Volatile subscribers (a recorder, ``ros2
    topic echo``) still match the actors; a volatile *publisher* does not match the trainer
    (its subscription asks for transient local). Memory: each publisher keeps its last
    ``depth`` messages at all times, and the trainer's queue holds up to ``depth`` while it
    catches up (grasp blobs are 132 KB each); the trainer's depth should be at least the
    actors' so that a whole history fits.
    """
    if depth < 1:
        raise ValueError(f"transitions queue depth: must be >= 1, got {depth}")
    return _profile(depth, ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL)


class HeldAtStart:
    """Which transition batches a trainer already held when it started, so that the copies a
    transient-local subscription brings again from the actors' history (published before a
    restart) are told from repeats of batches first received in this run.

    Both are refused; only the count differs: ``redelivered_batches`` is what transient local
    is expected to cause, ``rejected.transitions.duplicate`` / ``stale`` is someone replaying.
    ``streams_state`` is the trainer's table of received sequence numbers as restored from
    disk (JSON rows ``[actor, run, first, end]``: end is the next transition the stream owes).
    """

    def __init__(self, streams_state: str) -> None:
        rows = json.loads(streams_state) if streams_state else []
        self._held = {(str(a), str(r)): int(end) for a, r, _, end in rows}

    def covers(self, actor_id: str, run_id: str, sequence: int, length: int) -> bool:
        """Whether transitions [sequence, sequence + length) of this stream were held."""
        return sequence + length <= self._held.get((actor_id, run_id), 0)
