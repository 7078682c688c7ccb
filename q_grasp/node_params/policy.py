"""Parameters of the policy (actor) node, without ROS: what it runs (task, checkpoint,
experiment), how it explores, and how it waits for the arm and the camera."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from q_grasp.config import check_each
from q_grasp.joint_feedback import RosArmConfig
from q_grasp.tasks.load import TASKS
from q_grasp.tasks.names import is_grasp_task

if TYPE_CHECKING:
    from q_grasp.learning.config import ExperimentConfig, ExplorationConfig


@dataclass
class PolicyConfig:
    """Parameters of the policy (actor) node."""

    task: Literal["grasp", "grasp_clutter", "reacher"] = "grasp"
    """Skill to run: top-down grasping (U-Net over the camera image; grasp_clutter: several
    objects per scene) or goal reaching (MLP over reach-joint angles and goal)."""
    train: bool = True
    """true: explore with the epsilon schedule and publish every transition for the trainer.
    false: evaluation - act with eval_epsilon, publish no transitions, apply no reward shaping."""
    checkpoint: str = ""
    """Checkpoint file (.safetensors, from `q-grasp train` or the trainer) giving the network
    and the task settings it was trained with; empty: a fresh network from experiment_config."""
    experiment_config: str = ""
    """Experiment YAML (the file `q-grasp train --config` reads) whose env.kwargs set the task
    (episode length, rewards, image size...) and whose network section sets the architecture;
    empty: the checkpoint's own, else the packaged config/<task>.yaml."""
    actor_id: str = ""
    """Name of this actor in transition blobs (empty: the node's fully qualified name)."""
    seed: int = 0
    """Seed of exploration, goal sampling and the fresh network's initialisation."""
    torch_threads: int = 1
    """torch.set_num_threads for the network's forward passes."""
    epsilon_schedule: Literal["experiment", "linear", "exponential", "constant"] = "experiment"
    """experiment: explore as the experiment config says (its exploration section: schedule,
    start, end, decay over its training steps, eval epsilon), like `q_grasp train`; linear,
    exponential, constant: epsilon_start, epsilon_end, epsilon_decay_steps and eval_epsilon."""
    epsilon_start: float = 1.0
    """Epsilon at step 0 (probability of a random action while training); not with
    epsilon_schedule experiment."""
    epsilon_end: float = 0.05
    """Final epsilon; not with epsilon_schedule experiment."""
    epsilon_decay_steps: int = 10000
    """linear: steps until epsilon_end is reached; exponential: time constant in steps; not with
    epsilon_schedule experiment."""
    eval_epsilon: float = 0.0
    """Epsilon when train is false (0: greedy); not with epsilon_schedule experiment."""
    resume_exploration: bool = True
    """With a checkpoint, continue the epsilon schedule from its env_steps counter."""
    goal_tolerance_m: float = 0.0
    """reacher: success distance (m) of the end effector to the goal; 0 keeps the task's."""
    start_pose: Literal["random", "current"] = "random"
    """reacher: "random" moves the arm to a start pose drawn like ReacherEnv.reset (the
    distribution the single-process env trains on); "current" starts every episode where the
    arm is (no repositioning, e.g. on a real arm)."""
    max_episodes: int = 0
    """Stop acting after this many episodes (0: never), e.g. for an evaluation run."""
    shutdown_when_done: bool = False
    """Shut the node down once max_episodes episodes are done."""
    success_window: int = 50
    """Episodes (and grasp attempts) over which success rates are reported."""
    transition_batch_size: int = 1
    """Transitions per /q_grasp/transitions message (an episode's end always sends)."""
    transitions_queue_depth: int = 500
    """Messages of /q_grasp/transitions kept for a slow or restarting trainer (reliable,
    transient local: a trainer that was down receives them when it is back)."""
    max_weights_bytes: int = 268435456
    """Largest weights blob accepted (bytes)."""
    auth_key_file: str = ""
    """File with the key that signs transitions and checks weights (HMAC-SHA256), shared by
    the nodes of one system; empty: $Q_GRASP_AUTH_KEY_FILE, else $Q_GRASP_AUTH_KEY, else
    none (not authenticated). bringup and the launch file make a fresh one per run."""
    reset_service: str = "sim_arm/reset_scene"
    """grasp: std_srvs/Trigger service that resets the scene at the start of every episode
    (relative: follows the namespace); empty: no reset (a person or another node resets)."""
    reset_timeout_s: float = 30.0
    """grasp: how long (wall clock; the simulator's clock stands still while it resets) to
    wait for the reset service."""
    settle_time_s: float = 0.25
    """grasp: time (arm clock) for objects to come to rest before an image is used: after a
    reset, from the request for the image; after a grasp attempt, from the end of its last
    motion (the env steps settle_steps = 60 physics steps of 1/240 s). The shipped
    sim_train_grasp.yaml has 0.1, sim_arm's still_time_s: its frame of the world at rest comes at
    least that long after the last motion, when nothing has moved for that long; raise it for a
    real arm whose objects take longer to come to rest."""
    frame_timeout_s: float = 5.0
    """grasp: longest wait (arm clock) for a camera frame taken after a given time..."""
    frame_timeout_min_wall_s: float = 0.5
    """grasp: ...but never shorter than this in wall-clock time: a simulator far faster than
    real time in a still world (sim_arm's still_real_time_factor, max_publish_rate_hz) sends
    frames seconds of its time apart."""
    max_stamp_skew_s: float = 0.02
    """grasp: colour and depth images whose stamps differ by at most this form one frame."""
    camera_position_m: list[float] = field(default_factory=list)
    """grasp: camera optical centre in the world frame (x, y, z; m); empty: the grasp task's
    camera (GraspConfig.camera_config()), which sim_arm uses in config/sim_train_grasp.yaml."""
    camera_target_m: list[float] = field(default_factory=list)
    """grasp: world point on the camera's optical axis (m); empty: the grasp task's."""
    camera_up_vector: list[float] = field(default_factory=list)
    """grasp: world direction that points up in the image; empty: the grasp task's."""
    empty_table_height_m: float = 0.005
    """grasp: the episode ends (terminated) when no pixel stands higher than this above the
    table (nothing left to grasp, as the camera sees it)."""
    terminate_on_success: bool = True
    """grasp: end the episode after a successful grasp. The gym env removes a grasped object,
    so its one-object scenes end there; over ROS the scene is reset at the next episode."""
    place_joint_positions: list[float] = field(default_factory=list)
    """grasp: arm joints (rad) to carry a held object to before the gripper opens (e.g. over
    a bin beside the table); empty: release it where it was lifted."""
    skip_release_before_reset: bool = False
    """grasp: after a successful grasp that ends the episode (terminate_on_success), while
    reset_service is available and without place_joint_positions, leave the object in the
    gripper and the arm lifted: the reset that starts the next episode (sim_arm's: arm home,
    gripper open, a new scene) undoes both, so the release, the move home and the settled frame
    after it (about a third of a successful attempt's physics) are skipped. False: release and
    go home first (a reset service that does not home the arm). The shipped
    sim_train_grasp*.yaml have true."""
    world_frame: str = "world"
    """Frame of markers and goal points (the URDF base is placed in it by robot.base_position)."""
    publish_q_map: bool = True
    """grasp: publish the Q-map heat map image (drawn only while someone subscribes to it)."""
    q_map_scale: int = 4
    """grasp: heat-map image pixels per camera pixel."""
    diagnostics_period_s: float = 1.0
    """Period (wall-clock time, also on simulated time) of /diagnostics."""
    log_every_s: float = 10.0
    """Period (wall clock) of the INFO summary line in the log; every episode is logged at
    DEBUG (--ros-args --log-level policy:=debug)."""
    feedback_warn_s: float = 2.0
    """/diagnostics goes to WARN when no joint state (grasp: or camera frame) arrived for this
    long (wall clock) after the first..."""
    feedback_error_s: float = 10.0
    """...and to ERROR after this long, with the reason."""
    arm: RosArmConfig = field(default_factory=RosArmConfig)
    """How motions are commanded and judged finished."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task: must be one of {list(TASKS)}, got {self.task!r}")
        check_each(self, ("epsilon_start", "epsilon_end", "eval_epsilon"),
                   lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]")
        for name, low in (("epsilon_decay_steps", 1), ("torch_threads", 1),
                          ("success_window", 1), ("transition_batch_size", 1),
                          ("transitions_queue_depth", 1), ("max_weights_bytes", 1024),
                          ("q_map_scale", 1), ("max_episodes", 0), ("seed", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name}: must be >= {low}, got {getattr(self, name)}")
        if not 0.0 <= self.goal_tolerance_m <= 0.1:
            raise ValueError(f"goal_tolerance_m: must be in [0, 0.1] m (0 = the task's), got "
                             f"{self.goal_tolerance_m}")
        if not 0.0 < self.feedback_warn_s < self.feedback_error_s:
            raise ValueError(f"feedback_warn_s, feedback_error_s: need 0 < warn < error, got "
                             f"{self.feedback_warn_s}, {self.feedback_error_s}")
        check_each(self, ("reset_timeout_s", "frame_timeout_s", "diagnostics_period_s",
                          "log_every_s"), lambda v: v > 0.0, "must be > 0 s")
        check_each(self, ("settle_time_s", "max_stamp_skew_s", "empty_table_height_m",
                          "frame_timeout_min_wall_s"), lambda v: v >= 0.0, "must be >= 0")
        for name in ("camera_position_m", "camera_target_m", "camera_up_vector"):
            value = getattr(self, name)
            if value and (len(value) != 3 or not all(math.isfinite(v) for v in value)):
                raise ValueError(f"{name}: must be empty or 3 finite numbers, got {value}")
        if not self.world_frame:
            raise ValueError("world_frame: must not be empty")

    def exploration(self, experiment: ExperimentConfig) -> tuple[ExplorationConfig, int]:
        """How to explore and over how many steps: the experiment's exploration and training
        steps (epsilon_schedule experiment), or epsilon from these parameters with the
        experiment's failed-grasp exclusion, reachability mask and exploration on objects (as
        the single-process loop acts)."""
        from q_grasp.learning.agent import exploration_config

        if self.epsilon_schedule == "experiment":
            if experiment.exploration.strategy != "epsilon_greedy":
                raise ValueError(
                    f"epsilon_schedule: experiment needs an epsilon_greedy experiment; this one "
                    f"explores with {experiment.exploration.strategy!r}: set epsilon_schedule "
                    f"to linear, exponential or constant")
            return experiment.exploration, experiment.training.total_steps
        return exploration_config(self.epsilon_schedule, self.epsilon_start, self.epsilon_end,
                                  self.eval_epsilon, self.epsilon_decay_steps,
                                  experiment.exploration.retry_exclusion_px,
                                  experiment.exploration.use_action_mask,
                                  experiment.exploration.min_height_m)


DYNAMIC_PARAMETERS = frozenset({"epsilon_schedule", "epsilon_start", "epsilon_end",
                                "epsilon_decay_steps", "eval_epsilon", "publish_q_map"})
"""Parameters that may change while the node runs (ros2 param set)."""


def policy_config_for_task(task: str) -> PolicyConfig:
    """The policy configuration shipped for ``task`` (its exploration is the experiment's)."""
    grasp = is_grasp_task(task)
    # sim_arm's frame of a world at rest comes >= its still_time_s (0.1 s) after the last
    # motion; its reset homes the arm and opens the gripper, so a success need not do it first
    return PolicyConfig(task=task,
                        settle_time_s=0.1 if grasp else PolicyConfig.settle_time_s,
                        skip_release_before_reset=grasp)
