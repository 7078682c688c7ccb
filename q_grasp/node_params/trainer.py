"""Parameters of the trainer node, without ROS: the learner's config (TrainerConfig, beside
its core in q_grasp.learning.trainer_core) and which of its fields may change at run time."""

from q_grasp.learning.trainer_core import TrainerConfig

DYNAMIC_PARAMETERS = frozenset({"max_updates_per_s", "publish_every_updates", "log_every_s"})
"""Parameters that may change while the node runs."""

__all__ = ["DYNAMIC_PARAMETERS", "TrainerConfig"]
