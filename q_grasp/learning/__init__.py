"""Learning core (no ROS): Q-networks, replay buffer, DQN update, schedules, agent, checkpoints.

Public API for wrappers (CLI, ROS trainer/policy nodes):
  ExperimentConfig (+ component configs), Actor, Learner, Agent, ReplayBuffer, ReplayBatch,
  QNetwork, UNetQMap, build_network, network_spec_for_env, dqn_update, update_target,
  save_checkpoint, load_checkpoint, checkpoint_bytes, load_checkpoint_bytes.
"""

from q_grasp.learning.agent import Actor, Agent, Learner, make_buffer
from q_grasp.learning.buffer import ReplayBatch, ReplayBuffer
from q_grasp.learning.checkpoint import (
    Checkpoint,
    CheckpointError,
    checkpoint_bytes,
    load_checkpoint,
    load_checkpoint_bytes,
    save_checkpoint,
)
from q_grasp.learning.config import (
    AugmentConfig,
    BufferConfig,
    ConfigError,
    DQNConfig,
    EnvConfig,
    ExperimentConfig,
    ExplorationConfig,
    NetworkConfig,
    TrainingConfig,
)
from q_grasp.learning.dqn import UpdateResult, dqn_update, td_target, update_target
from q_grasp.learning.networks import (
    QNetwork,
    UNetQMap,
    build_network,
    check_network_matches_env,
    network_spec_for_env,
)

__all__ = [
    "Actor", "Agent", "AugmentConfig", "BufferConfig", "Checkpoint", "CheckpointError",
    "ConfigError", "DQNConfig", "EnvConfig", "ExperimentConfig", "ExplorationConfig", "Learner",
    "NetworkConfig", "QNetwork", "ReplayBatch", "ReplayBuffer", "TrainingConfig", "UNetQMap",
    "UpdateResult", "build_network", "check_network_matches_env", "checkpoint_bytes",
    "dqn_update", "load_checkpoint", "load_checkpoint_bytes", "make_buffer",
    "network_spec_for_env", "save_checkpoint", "td_target", "update_target",
]
