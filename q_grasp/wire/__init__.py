"""Safe, versioned wire format for transitions and weights (safetensors blobs, no rclpy).

Every decoder validates the whole blob and raises only :class:`WireError` (with a reason code
from :data:`REASONS`); never pickle, never ``torch.load``.
"""

from q_grasp.wire.auth import Authenticator, AuthKeyError, authenticator
from q_grasp.wire.errors import REASONS, WireError
from q_grasp.wire.transitions import (
    TRANSITIONS_SCHEMA,
    TRANSITIONS_SCHEMA_VERSION,
    TransitionBatch,
    TransitionLimits,
    decode_transitions,
    encode_transitions,
)
from q_grasp.wire.weights import (
    WEIGHTS_SCHEMA,
    WEIGHTS_SCHEMA_VERSION,
    WeightsLimits,
    WeightsMessage,
    decode_weights,
    encode_weights,
    network_config_of,
    state_dict_dtypes,
    state_dict_shapes,
)

TRANSITIONS_TOPIC = "/q_grasp/transitions"
"""ROS topic of the transition blobs (std_msgs/UInt8MultiArray), actors to the trainer."""
WEIGHTS_TOPIC = "/q_grasp/weights"
"""ROS topic of the weights blobs (std_msgs/UInt8MultiArray, latched), trainer to actors."""

__all__ = [
    "AuthKeyError",
    "Authenticator",
    "authenticator",
    "REASONS",
    "TRANSITIONS_SCHEMA",
    "TRANSITIONS_SCHEMA_VERSION",
    "TRANSITIONS_TOPIC",
    "WEIGHTS_SCHEMA",
    "WEIGHTS_SCHEMA_VERSION",
    "WEIGHTS_TOPIC",
    "TransitionBatch",
    "TransitionLimits",
    "WeightsLimits",
    "WeightsMessage",
    "WireError",
    "decode_transitions",
    "decode_weights",
    "encode_transitions",
    "encode_weights",
    "network_config_of",
    "state_dict_dtypes",
    "state_dict_shapes",
]
