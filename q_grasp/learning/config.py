"""Configuration of a DQN experiment: one dataclass per component, loaded from YAML and validated.

Every field has a docstring (the string literal under it). Loading goes through the one
configuration core, `q_grasp.config`: unknown keys, wrong types and out-of-range values raise a
`ConfigError` (a `ValueError`) naming the field, e.g. ``dqn.gamma: must be in [0, 1], got 1.5``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from q_grasp.config import ConfigError, build, load_yaml


@dataclass
class EnvConfig:
    """Which gymnasium environment to train on, and its constructor arguments."""

    id: str = "CartPole-v1"
    """Gymnasium id (`q_grasp/Reacher-v0`, `q_grasp/TopDownGrasp-v0`, `CartPole-v1`, ...)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for `gymnasium.make` (for q_grasp envs: fields of the env's config)."""
    max_episode_steps: int | None = None
    """Override of the registered time limit (None: keep the registered one)."""
    distance_shaping: float = 0.0
    """Training only: potential-based shaping r + k (d - gamma d') per metre of the env's
    info['distance_m'] (Ng et al. 1999: optimal policies unchanged); 0 disables it."""
    joint_shaping: float = 0.0
    """Training only: r + k (d - d') per radian of info['goal_joint_distance_rad'], the sum
    of |goal joints - joints| that the Reacher reports with the "joints_goal_ee_ik"
    observation. Undiscounted (not gamma d'), so a step that changes nothing pays 0; 1 /
    dtheta_rad pays about +1 per step towards the goal joints. 0 disables it."""

    def validate(self) -> None:
        _check(bool(self.id.strip()), "env.id", "must be a non-empty gymnasium id", self.id)
        _check(self.distance_shaping >= 0, "env.distance_shaping", "must be >= 0",
               self.distance_shaping)
        _check(self.joint_shaping >= 0, "env.joint_shaping", "must be >= 0", self.joint_shaping)
        if self.max_episode_steps is not None:
            _check(self.max_episode_steps >= 1, "env.max_episode_steps", "must be >= 1",
                   self.max_episode_steps)


@dataclass
class NetworkConfig:
    """Q-network architecture; `kind: auto` picks the MLP for vectors, the U-Net for images."""

    kind: Literal["auto", "mlp", "unet"] = "auto"
    """`mlp` (QNetwork) for vector observations, `unet` (UNetQMap) for images, `auto` by shape."""
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64, 64])
    """MLP hidden layer widths."""
    activation: Literal["relu", "tanh", "elu", "gelu"] = "relu"
    """Hidden activation (MLP and U-Net)."""
    dueling: bool = False
    """MLP only: dueling head Q = V + A - mean(A) (Wang et al. 2016)."""
    normalize_inputs: bool = True
    """MLP: rescale observation dims with finite Box bounds to [-1, 1] inside the network."""
    unet_base_channels: int = 16
    """U-Net: channels after the first convolution (doubled at every down-sampling)."""
    unet_depth: int = 3
    """U-Net: number of stride-2 down-convolutions (image sides are padded to 2**depth)."""
    unet_up_mode: Literal["transpose", "upsample"] = "transpose"
    """U-Net: ConvTranspose2d(stride 2) or Upsample(x2) + Conv2d on the way up."""
    unet_coord_channels: bool = True
    """U-Net: append normalised (x, y) pixel-coordinate channels (position-aware Q-maps)."""
    unet_rotation_equivariant: bool = False
    """U-Net: one Q-map head applied to the image turned by each gripper yaw (and the map
    turned back), so what is learned at one yaw holds at all; costs one forward pass per
    rotation. For a camera looking straight down (image up = world +x)."""
    unet_select_smoothing_px: int = 1
    """U-Net, acting only: average each rotation's Q-map over this many pixels square (odd, 1 =
    off) before the argmax, so a grasp is chosen where its neighbours would succeed too (the
    single best pixel is the most over-estimated one). Training targets are unchanged."""
    unet_eval_smoothing_px: int = 0
    """U-Net: the same for greedy evaluation only (`q_grasp eval`, training's evaluations, the
    policy node with train false); 0 = unet_select_smoothing_px. A wider window judges a
    trained map more robustly, while a sharp one lets training exploit its first successes."""
    unet_head_bias_init: float = 0.0
    """U-Net: initial bias of the Q-map head. With gamma 0 and a 0/1 success reward, 1.0 is an
    optimistic start: every untried grasp looks like a success until tried."""
    unet_output: Literal["linear", "sigmoid"] = "linear"
    """U-Net: "sigmoid" bounds every Q-value to (0, 1), for Q-maps that are success
    probabilities (gamma 0 and 0/1 rewards, as for grasping); "linear" is the usual
    unbounded head. The head bias is then a logit (``unet_head_bias_init``)."""
    unet_precision: Literal["float32", "bfloat16", "auto"] = "float32"
    """U-Net: the dtype its convolutions run in. "bfloat16" runs them under torch.autocast
    (weights, optimizer, loss and Q-values stay float32; checkpoints are unchanged): TD updates
    and greedy actions ~1.3-1.5x faster where the CPU computes bfloat16 natively (AVX512-BF16
    or AMX; a bf16-capable GPU), slower where it does not. "auto": bfloat16 where the hardware
    computes it natively, float32 elsewhere."""
    height_scale_m: float = 0.05
    """U-Net: height/depth channels are divided by this (metres) so they are of order 1."""

    def validate(self) -> None:
        _check(len(self.hidden_sizes) >= 1 and all(h >= 1 for h in self.hidden_sizes),
               "network.hidden_sizes", "must be a non-empty list of positive ints",
               self.hidden_sizes)
        _check(1 <= self.unet_base_channels <= 1024, "network.unet_base_channels",
               "must be in [1, 1024]", self.unet_base_channels)
        _check(1 <= self.unet_depth <= 6, "network.unet_depth", "must be in [1, 6]",
               self.unet_depth)
        _check(self.height_scale_m > 0, "network.height_scale_m", "must be > 0",
               self.height_scale_m)
        _check(math.isfinite(self.unet_head_bias_init) and abs(self.unet_head_bias_init) <= 100,
               "network.unet_head_bias_init", "must be a finite number in [-100, 100]",
               self.unet_head_bias_init)
        _check(1 <= self.unet_select_smoothing_px <= 15 and self.unet_select_smoothing_px % 2,
               "network.unet_select_smoothing_px", "must be an odd integer in [1, 15]",
               self.unet_select_smoothing_px)
        _check(self.unet_eval_smoothing_px == 0 or (1 <= self.unet_eval_smoothing_px <= 15
                                                    and self.unet_eval_smoothing_px % 2),
               "network.unet_eval_smoothing_px", "must be 0 (as unet_select_smoothing_px) or "
               "an odd integer in [1, 15]", self.unet_eval_smoothing_px)


@dataclass
class AugmentConfig:
    """Random symmetries applied to sampled image transitions (image and pixel action together).

    Valid for a camera looking straight down with its image axes along the world axes: a 90
    degree image rotation then is a 90 degree turn of the scene, which adds pi/2 to the grasp
    yaw (rotation index + R/2), and a mirror maps yaw to -yaw (index -> -index mod R).
    """

    rotate90: bool = False
    """Random rotation by a multiple of 90 degrees (180 only when H != W or R is odd)."""
    flip: bool = False
    """Random horizontal/vertical mirror."""
    translate_px: int = 0
    """Random shift of up to this many pixels along each image axis (edge-padded)."""

    def validate(self) -> None:
        _check(0 <= self.translate_px <= 64, "buffer.augment.translate_px", "must be in [0, 64]",
               self.translate_px)

    @property
    def enabled(self) -> bool:
        return self.rotate90 or self.flip or self.translate_px > 0


@dataclass
class BufferConfig:
    """Replay buffer: capacity, n-step returns, prioritized replay, image augmentation."""

    capacity: int = 50_000
    """Number of transitions kept; the oldest is replaced when full."""
    n_steps: int = 1
    """n of n-step returns (1: plain one-step TD targets)."""
    prioritized: bool = False
    """Proportional prioritized replay (Schaul et al. 2015) with importance weights."""
    alpha: float = 0.6
    """PER: priority exponent (0: uniform sampling)."""
    beta_start: float = 0.4
    """PER: importance-weight exponent at the start, annealed linearly to 1 over training."""
    priority_eps: float = 1e-3
    """PER: added to |TD error| so that no transition gets zero priority."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Image augmentation (image observations only)."""
    her_k: int = 0
    """Hindsight replay: relabeled copies per transition with goals reached later in the
    episode (goal-reaching envs such as the Reacher; needs n_steps = 1); 0 disables it."""

    def validate(self) -> None:
        _check(self.capacity >= 1, "buffer.capacity", "must be >= 1", self.capacity)
        _check(1 <= self.n_steps <= 100, "buffer.n_steps", "must be in [1, 100]", self.n_steps)
        _check(0.0 <= self.alpha <= 1.0, "buffer.alpha", "must be in [0, 1]", self.alpha)
        _check(0.0 <= self.beta_start <= 1.0, "buffer.beta_start", "must be in [0, 1]",
               self.beta_start)
        _check(self.priority_eps > 0, "buffer.priority_eps", "must be > 0", self.priority_eps)
        _check(0 <= self.her_k <= 16, "buffer.her_k", "must be in [0, 16]", self.her_k)
        if self.her_k:
            _check(self.n_steps == 1, "buffer.n_steps", "must be 1 with hindsight replay "
                   "(buffer.her_k > 0)", self.n_steps)
        self.augment.validate()


@dataclass
class DQNConfig:
    """The TD update: discount, loss, optimizer, Double DQN, target network."""

    gamma: float = 0.98
    """Discount factor (gamma**k for a k-step return); 0 = contextual bandit (no bootstrap)."""
    learning_rate: float = 1e-3
    """Optimizer learning rate."""
    learning_rate_final: float | None = None
    """If set, the learning rate goes linearly to this value over training (steadier final
    policies); None keeps it constant."""
    optimizer: Literal["adam", "adamw"] = "adam"
    """Adam or AdamW."""
    weight_decay: float = 0.0
    """Weight decay (decoupled for AdamW)."""
    amsgrad: bool = False
    """Use the AMSGrad variant of Adam/AdamW."""
    batch_size: int = 64
    """Transitions per gradient step."""
    double_q: bool = True
    """Double DQN: pick a' with the online network, evaluate it with the target network."""
    loss: Literal["huber", "mse", "bce"] = "huber"
    """Huber (smooth L1) or mean squared TD error; or "bce", binary cross-entropy between the
    success probability and the 0/1 reward, for gamma 0 and a network with a sigmoid output
    (network.unet_output: sigmoid; the loss takes its logits)."""
    huber_delta: float = 1.0
    """Huber loss: quadratic within +-delta, linear outside."""
    max_grad_norm: float | None = 10.0
    """Clip the gradient to this global L2 norm (None: no clipping)."""
    target_update_interval: int = 1000
    """Update the target network every this many gradient steps."""
    tau: float = 1.0
    """Target update weight: 1.0 = hard copy, < 1 = Polyak averaging."""

    def validate(self) -> None:
        _check(0.0 <= self.gamma <= 1.0, "dqn.gamma", "must be in [0, 1]", self.gamma)
        _check(0.0 < self.learning_rate < 1.0, "dqn.learning_rate", "must be in (0, 1)",
               self.learning_rate)
        if self.learning_rate_final is not None:
            _check(0.0 <= self.learning_rate_final < 1.0, "dqn.learning_rate_final",
                   "must be in [0, 1) or null", self.learning_rate_final)
        _check(self.weight_decay >= 0.0, "dqn.weight_decay", "must be >= 0", self.weight_decay)
        _check(self.batch_size >= 1, "dqn.batch_size", "must be >= 1", self.batch_size)
        _check(self.huber_delta > 0, "dqn.huber_delta", "must be > 0", self.huber_delta)
        _check(self.loss != "bce" or self.gamma == 0.0, "dqn.loss",
               "bce needs gamma 0 (targets are the 0/1 rewards themselves)", self.loss)
        if self.max_grad_norm is not None:
            _check(self.max_grad_norm > 0, "dqn.max_grad_norm", "must be > 0 or null",
                   self.max_grad_norm)
        _check(self.target_update_interval >= 1, "dqn.target_update_interval", "must be >= 1",
               self.target_update_interval)
        _check(0.0 < self.tau <= 1.0, "dqn.tau", "must be in (0, 1]", self.tau)


@dataclass
class ExplorationConfig:
    """How the actor explores: epsilon-greedy or Boltzmann, with a decay schedule."""

    strategy: Literal["epsilon_greedy", "boltzmann"] = "epsilon_greedy"
    """epsilon-greedy (random action with prob. epsilon) or Boltzmann (softmax of Q / T)."""
    schedule: Literal["linear", "exponential", "constant"] = "linear"
    """How epsilon (or the temperature) goes from `start` to `end` over environment steps."""
    start: float = 1.0
    """Epsilon (or temperature) at step 0."""
    end: float = 0.05
    """Final epsilon (or temperature)."""
    fraction: float = 0.9
    """Linear: fraction of the training steps over which the value decays."""
    decay_steps: float = 5000.0
    """Exponential: time constant in steps of end + (start - end) exp(-step / decay_steps)."""
    eval_epsilon: float = 0.0
    """Epsilon used by evaluation (0: greedy)."""
    retry_exclusion_px: int = -1
    """Grasping (U-Net pixel actions): after a failed attempt, greedy choices skip its gripper
    rotation within this many pixels (Chebyshev distance) of its pixel until an attempt
    succeeds or the episode ends. A deterministic policy otherwise repeats a failed grasp on
    an unchanged scene until the episode ends. -1: off."""
    use_action_mask: bool = True
    """Act only on the actions the environment allows in ``info["action_mask"]`` (the
    gymnasium convention; TopDownGrasp lists the grasps the arm can reach there), both when
    exploring and when greedy. Environments without a mask are unaffected."""
    min_height_m: float = 0.0
    """Grasping (U-Net with a height channel): random exploratory grasps go only to pixels at
    least this high above the table (on an object) when any allowed pixel is; greedy choices
    are unaffected, so the network still learns that bare table fails. 0: explore anywhere
    allowed."""

    def validate(self) -> None:
        lo = "exploration.start"
        if self.strategy == "epsilon_greedy":
            _check(0.0 <= self.start <= 1.0, lo, "must be in [0, 1] for epsilon", self.start)
            _check(0.0 <= self.end <= 1.0, "exploration.end", "must be in [0, 1] for epsilon",
                   self.end)
        else:
            _check(self.start > 0, lo, "must be > 0 for a temperature", self.start)
            _check(self.end > 0, "exploration.end", "must be > 0 for a temperature", self.end)
        _check(0.0 < self.fraction <= 1.0, "exploration.fraction", "must be in (0, 1]",
               self.fraction)
        _check(self.decay_steps > 0, "exploration.decay_steps", "must be > 0", self.decay_steps)
        _check(0.0 <= self.eval_epsilon <= 1.0, "exploration.eval_epsilon", "must be in [0, 1]",
               self.eval_epsilon)
        _check(-1 <= self.retry_exclusion_px <= 64, "exploration.retry_exclusion_px",
               "must be in [-1, 64] (-1: off)", self.retry_exclusion_px)
        _check(0.0 <= self.min_height_m <= 0.05, "exploration.min_height_m",
               "must be in [0, 0.05] m (0: off)", self.min_height_m)


@dataclass
class TrainingConfig:
    """The training loop: budget, update rhythm, evaluation, logging, checkpoints."""

    total_steps: int = 20_000
    """Environment steps to train for (the CLI's --steps overrides it)."""
    learning_starts: int = 1000
    """Environment steps collected before the first gradient step."""
    train_freq: int = 1
    """Run `gradient_steps` gradient steps every this many environment steps."""
    gradient_steps: int = 1
    """Gradient steps per training round."""
    eval_interval: int = 5000
    """Greedy evaluation every this many steps (0: only at the end)."""
    eval_episodes: int = 20
    """Episodes per periodic evaluation."""
    final_eval_episodes: int = 100
    """Episodes of the greedy evaluation at the end of training."""
    keep_best: bool = False
    """Save `best.safetensors` at the best periodic evaluation (the final model is kept too;
    of equal scores the later model is kept)."""
    result: str = "last"
    """The policy a run reports as its result: "last" (the weights at the end) or "best" (the
    `keep_best` model, the weights at the end competing in one more periodic evaluation)."""
    log_interval: int = 1000
    """Print a progress line and write a metrics row every this many steps."""
    checkpoint_interval: int = 0
    """Save a checkpoint every this many steps (0: only at the end)."""
    save_replay_buffer: bool = True
    """Save the replay buffer next to the final checkpoint so that --resume continues it."""
    tensorboard: bool = True
    """Also write TensorBoard event files."""
    torch_threads: int = 1
    """torch.set_num_threads (small networks run fastest on one thread)."""
    device: str = "cpu"
    """Torch device for the networks."""

    def validate(self) -> None:
        _check(self.total_steps >= 1, "training.total_steps", "must be >= 1", self.total_steps)
        for name in ("learning_starts", "eval_interval", "checkpoint_interval"):
            _check(getattr(self, name) >= 0, f"training.{name}", "must be >= 0",
                   getattr(self, name))
        for name in ("train_freq", "gradient_steps", "eval_episodes", "final_eval_episodes",
                     "log_interval", "torch_threads"):
            _check(getattr(self, name) >= 1, f"training.{name}", "must be >= 1",
                   getattr(self, name))
        _check(self.result in ("last", "best"), "training.result", "must be last or best",
               self.result)
        _check(self.result == "last" or self.keep_best, "training.result",
               "best needs training.keep_best", self.result)
        _check(self.device == "cpu" or self.device.startswith(("cuda", "mps")),
               "training.device", "must be cpu, cuda[:N] or mps", self.device)


@dataclass
class ExperimentConfig:
    """A whole experiment: environment, network, buffer, update, exploration, training loop."""

    env: EnvConfig = field(default_factory=EnvConfig)
    """The environment."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    """The Q-network."""
    buffer: BufferConfig = field(default_factory=BufferConfig)
    """The replay buffer."""
    dqn: DQNConfig = field(default_factory=DQNConfig)
    """The TD update."""
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    """Exploration."""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    """The training loop."""

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()
        _check(self.dqn.loss != "bce" or (self.network.kind != "mlp"
                                           and self.network.unet_output == "sigmoid"),
               "dqn.loss", "bce needs a U-Net with network.unet_output sigmoid", self.dqn.loss)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ExperimentConfig:
        """Build and validate; raises ConfigError naming the offending field."""
        return build(cls, data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ExperimentConfig:
        """Load a YAML file (missing sections and fields take their defaults)."""
        return load_yaml(cls, path)

    def replace(self, **sections: Any) -> ExperimentConfig:
        return dataclasses.replace(self, **sections)


def _check(ok: bool, name: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{name}: {rule}, got {value!r}")
