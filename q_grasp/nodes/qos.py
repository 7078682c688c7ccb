"""QoS profiles per topic (DESIGN.md), chosen so that q_grasp interoperates with real drivers.

The rule behind the sensor profiles: a *reliable* publisher matches both reliable and
best-effort subscribers, and a *best-effort* subscriber matches both kinds of publishers. So
the simulator publishes sensor streams reliably (rviz, robot_state_publisher and ros2_control's
broadcasters all subscribe reliably by default), and the policy subscribes with the sensor-data
profile (best effort, shallow queue) so it also works with camera drivers that publish best
effort. Publishers created with :data:`QOS_OVERRIDES` let users change reliability, depth and
history per topic with ``qos_overrides./topic.publisher.*`` parameters.
"""

from __future__ import annotations

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


def transitions_qos(depth: int = 100) -> QoSProfile:
    """/q_grasp/transitions: reliable with a deep queue so a busy learner loses nothing.

    ``depth`` bounds the memory a publisher keeps for a slow learner (grasp transitions carry
    two images each, so thousands would cost gigabytes).
    """
    if depth < 1:
        raise ValueError(f"transitions queue depth: must be >= 1, got {depth}")
    return _profile(depth, ReliabilityPolicy.RELIABLE)
