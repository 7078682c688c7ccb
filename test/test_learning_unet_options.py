"""U-Net options: the rotation-equivariant Q-map (image turning, the equivariance it promises,
that its turning direction is the gripper yaw direction of q_grasp's top-down camera, and its
cheaper update) and the smoothed Q-map that acting takes the argmax of."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from q_grasp.envs.grasp import GraspConfig
from q_grasp.learning.agent import Actor
from q_grasp.learning.config import ExperimentConfig, ExplorationConfig
from q_grasp.learning.networks import (
    UNetQMap,
    build_network,
    native_bfloat16,
    rotate_images,
    uses_bfloat16,
)
from q_grasp.learning.trainer import evaluate
from q_grasp.sim.camera import PinholeCamera


def test_rotate_images_turns_counter_clockwise_as_displayed() -> None:
    image = torch.zeros(1, 1, 9, 9)
    image[0, 0, 1, 4] = 1.0  # above the centre
    turned = rotate_images(image, torch.tensor([math.pi / 2]))
    assert (turned[0, 0] > 0.5).nonzero().tolist() == [[4, 1]]  # left of the centre
    back = rotate_images(turned, torch.tensor([-math.pi / 2]))
    assert torch.allclose(back, image, atol=1e-5)


def test_rotate_images_keeps_square_pixels_on_wide_images() -> None:
    image = torch.zeros(1, 1, 8, 16)
    image[0, 0, 3:5, 10] = 1.0  # 2.5 px right of the centre (row 3.5, column 7.5)
    turned = rotate_images(image, torch.tensor([math.pi / 2]))
    rows, cols = (turned[0, 0] > 0.3).nonzero().T.tolist()
    # A quarter turn sends it 2.5 px up (to row 1), not 2.5 px scaled by the aspect ratio.
    assert set(rows) == {1} and set(cols) == {7, 8}


@pytest.mark.parametrize("h, w", [(32, 32), (24, 40)])
def test_equivariant_q_map_turns_with_the_image(h: int, w: int) -> None:
    torch.manual_seed(0)
    net = UNetQMap(4, 8, h, w, base_channels=4, depth=2, coord_channels=False,
                   rotation_equivariant=True)
    obs = torch.rand(2, 4, h, w)
    q = net(obs)
    assert q.shape == (2, 8, h, w)
    if h != w:
        return
    # A quarter turn of the image is a quarter turn of the scene, which adds pi/2 to the yaw:
    # channel k (yaw k*pi/8) of the turned image is channel k + 4 turned, exactly, for the
    # yaws both maps hold (k < 4).
    q_quarter = net(torch.rot90(obs, 1, dims=(2, 3)))
    assert torch.allclose(q_quarter[:, 4:], torch.rot90(q[:, :4], 1, dims=(2, 3)), atol=1e-5)
    # A plain U-Net has no such symmetry (the check above is not vacuous).
    plain = UNetQMap(4, 8, h, w, base_channels=4, depth=2, coord_channels=False)
    p = plain(obs)
    assert not torch.allclose(plain(torch.rot90(obs, 1, dims=(2, 3)))[:, 4:],
                              torch.rot90(p[:, :4], 1, dims=(2, 3)), atol=1e-3)


def test_image_turn_direction_is_the_gripper_yaw_direction() -> None:
    """A world direction at yaw phi (from +x towards +y) appears in the grasp camera's image at
    phi counter-clockwise from "up", so turning the image by -yaw_k aligns a yaw_k grasp with
    yaw 0, as UNetQMap's equivariant forward assumes."""
    camera = PinholeCamera(GraspConfig().camera_config())
    centre = np.array([0.13, 0.0, 0.0])
    for phi in (0.3, 1.2, 2.5):
        tip = centre + 0.02 * np.array([math.cos(phi), math.sin(phi), 0.0])
        (u0, v0, _), (u1, v1, _) = camera.world_to_pixel(centre), camera.world_to_pixel(tip)
        # Displayed angle counter-clockwise from up, with rows (v) growing downwards.
        shown = math.atan2(-(u1 - u0), -(v1 - v0))
        assert shown == pytest.approx(phi, abs=1e-6)


def test_equivariant_option_from_config_and_checkpoint_config() -> None:
    cfg = ExperimentConfig.from_dict({"network": {"kind": "unet",
                                                  "unet_rotation_equivariant": True}})
    assert cfg.network.unet_rotation_equivariant is True
    net = UNetQMap(4, 2, 16, 16, base_channels=4, depth=2, rotation_equivariant=True)
    rebuilt = build_network("unet", net.config)
    rebuilt.load_state_dict(net.state_dict())
    obs = torch.rand(1, 4, 16, 16)
    assert torch.equal(rebuilt(obs), net(obs))
    # Configs written before the option existed rebuild the plain network.
    old = {k: v for k, v in net.config.items() if k != "rotation_equivariant"}
    assert build_network("unet", old).config["rotation_equivariant"] is False


@pytest.mark.parametrize("equivariant", [False, True])
@pytest.mark.parametrize("height,width,depth,coords,output", [
    (16, 16, 2, False, "linear"), (13, 10, 2, True, "sigmoid"), (20, 12, 1, False, "linear")])
def test_taken_pixel_update_matches_the_full_q_map(equivariant: bool, height: int, width: int,
                                                   depth: int, coords: bool,
                                                   output: str) -> None:
    """The update evaluates the decoder only around each taken pixel (and the equivariant net
    only the taken rotation); it must give the same Q (and gradients) as gathering from the
    full R-rotation Q-map, at the image's corners and edges and for padded sizes too."""
    torch.manual_seed(1)
    net = UNetQMap(4, 8, height, width, base_channels=4, depth=depth, coord_channels=coords,
                   rotation_equivariant=equivariant, output=output)
    for p in net.parameters():  # weights large enough that every pixel's value differs
        torch.nn.init.normal_(p, std=0.3)
    n = 8 * height * width
    obs = torch.rand(12, 4, height, width)
    actions = torch.tensor([0, width - 1, (height - 1) * width, height * width - 1, n - 1,
                            n - width, 3 * height * width + width - 1, 300 % n, 1030 % n,
                            777 % n, 5 * height * width + height // 2 * width + 1, 2047 % n])
    q_taken, q_max = net.q_taken_and_max(obs, actions)
    q_full = net(obs).flatten(1)
    expected = q_full.gather(1, actions.unsqueeze(1)).squeeze(1)
    assert torch.allclose(q_taken, expected, rtol=1e-5, atol=1e-5)
    assert q_max == pytest.approx(float(q_full.detach()[:4].max(dim=1).values.mean()), abs=1e-5)
    q_taken.sum().backward()
    fast = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    expected.sum().backward()
    for g_fast, p in zip(fast, net.parameters(), strict=True):
        assert torch.allclose(g_fast, p.grad, rtol=1e-4, atol=1e-4 * float(p.grad.abs().max()))
    assert net.q_taken_and_max(obs, actions, with_max=False)[1] is None


def test_select_smoothing_prefers_a_plateau_to_a_lone_spike() -> None:
    net = UNetQMap(1, 2, 12, 12, base_channels=4, depth=2, select_smoothing_px=3)
    q = torch.zeros(1, 2, 12, 12)
    q[0, 0, 2, 2] = 1.0          # one over-estimated pixel
    q[0, 1, 7:10, 6:9] = 0.8     # a region where every grasp is good
    net.forward = lambda obs: q  # the Q-map under test, whatever the weights
    rot, row, col = net.predict_pixel(np.zeros((1, 12, 12), np.float32))
    assert (rot, row, col) == (1, 8, 7)
    # Training sees the plain Q-values, not the smoothed ones.
    torch.manual_seed(0)
    real = UNetQMap(1, 2, 12, 12, base_channels=4, depth=2, select_smoothing_px=3)
    obs, action = torch.rand(1, 1, 12, 12), torch.tensor([0 * 144 + 2 * 12 + 2])
    taken = real.q_taken_and_max(obs, action)[0].detach()
    assert torch.allclose(taken, real(obs).flatten(1)[:, action[0]], atol=1e-6)
    assert not torch.allclose(taken, real.acting_q_values(obs)[:, action[0]], atol=1e-6)
    plain = UNetQMap(1, 2, 12, 12, base_channels=4, depth=2)
    plain.forward = lambda obs: q
    assert plain.predict_pixel(np.zeros((1, 12, 12), np.float32)) == (0, 2, 2)
    # A trained net's acting smoothing can be changed afterwards (q_grasp eval
    # --select-smoothing-px); its weights and config round-trip stay valid.
    plain.set_select_smoothing(3)
    assert plain.predict_pixel(np.zeros((1, 12, 12), np.float32)) == (1, 8, 7)
    assert plain.config["select_smoothing_px"] == 3
    with pytest.raises(ValueError, match="select_smoothing_px"):
        plain.set_select_smoothing(4)
    assert plain.config["select_smoothing_px"] == 3


def test_evaluation_smoothing_applies_only_to_greedy_evaluation() -> None:
    q = torch.zeros(1, 2, 12, 12)
    q[0, 0, 2, 2] = 1.0
    q[0, 1, 7:10, 6:9] = 0.8
    obs = np.zeros((1, 12, 12), np.float32)
    net = UNetQMap(1, 2, 12, 12, base_channels=4, depth=2, eval_smoothing_px=3)
    net.forward = lambda obs: q
    assert net.predict_pixel(obs) == (0, 2, 2)          # training acts on single pixels
    with net.evaluation_smoothing():
        assert net.predict_pixel(obs) == (1, 8, 7)      # evaluation on 3x3 windows
    assert net.predict_pixel(obs) == (0, 2, 2)
    actor = Actor(net, ExplorationConfig(use_action_mask=False, retry_exclusion_px=-1), 1)
    env = _OneStepEnv(obs)
    evaluate(env, actor, 1)
    assert env.actions == [1 * 144 + 8 * 12 + 7]
    assert net.predict_pixel(obs) == (0, 2, 2)
    net.use_eval_smoothing()                            # the policy node evaluating
    assert net.predict_pixel(obs) == (1, 8, 7)
    # Unset (older checkpoints): evaluation acts as training does.
    plain = UNetQMap(1, 2, 12, 12, base_channels=4, depth=2)
    plain.forward = lambda obs: q
    with plain.evaluation_smoothing():
        assert plain.predict_pixel(obs) == (0, 2, 2)
    with pytest.raises(ValueError, match="eval_smoothing_px"):
        UNetQMap(1, 1, 8, 8, base_channels=4, depth=2, eval_smoothing_px=4)
    with pytest.raises(ValueError, match="network.unet_eval_smoothing_px"):
        ExperimentConfig.from_dict({"network": {"unet_eval_smoothing_px": 2}})
    assert ExperimentConfig.from_dict({"network": {"unet_eval_smoothing_px": 0}})


class _OneStepEnv:
    """A one-step episode on a fixed observation; records the actions taken."""

    def __init__(self, obs: np.ndarray) -> None:
        self.obs, self.actions = obs, []

    def reset(self, seed=None):
        return self.obs, {}

    def step(self, action):
        self.actions.append(int(action))
        return self.obs, 1.0, True, False, {"is_success": True}


@pytest.mark.parametrize("bad", [0, 2, 17, 2.5, True])
def test_select_smoothing_must_be_a_small_odd_integer(bad) -> None:
    with pytest.raises(ValueError, match="select_smoothing_px"):
        UNetQMap(1, 1, 8, 8, base_channels=4, depth=2, select_smoothing_px=bad)
    if not isinstance(bad, float):
        with pytest.raises(ValueError, match="network.unet_select_smoothing_px"):
            ExperimentConfig.from_dict({"network": {"unet_select_smoothing_px": bad}})


def test_head_bias_init_starts_the_q_map_optimistic() -> None:
    torch.manual_seed(0)
    optimistic = UNetQMap(4, 2, 16, 16, base_channels=4, depth=2, head_bias_init=1.0)
    plain = UNetQMap(4, 2, 16, 16, base_channels=4, depth=2)
    obs = torch.rand(3, 4, 16, 16)
    with torch.no_grad():
        assert float(optimistic(obs).mean()) > 0.8 > float(plain(obs).mean().abs())
    assert build_network("unet", optimistic.config).config["head_bias_init"] == 1.0
    with pytest.raises(ValueError, match="head_bias_init: must be a finite number"):
        build_network("unet", {**optimistic.config, "head_bias_init": "high"})
    with pytest.raises(ValueError, match="network.unet_head_bias_init"):
        ExperimentConfig.from_dict({"network": {"unet_head_bias_init": float("nan")}})


def test_sigmoid_output_bounds_the_q_map_and_still_learns_a_success_probability() -> None:
    torch.manual_seed(0)
    net = UNetQMap(1, 1, 8, 8, base_channels=4, depth=1, output="sigmoid",
                   head_bias_init=5.0)
    obs = torch.rand(4, 1, 8, 8) * 50.0
    with torch.no_grad():
        q = net(obs)
    assert float(q.min()) > 0.0 and float(q.max()) < 1.0
    # Regress one pixel towards 0 and another towards 1: both move, neither leaves (0, 1).
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    x = torch.ones(1, 1, 8, 8)
    for _ in range(150):
        out = net(x).flatten()
        loss = (out[0] - 0.0) ** 2 + (out[63] - 1.0) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = net(x).flatten()
    assert float(out[0]) < 0.2 and float(out[63]) > 0.8
    rebuilt = build_network("unet", net.config)
    assert rebuilt.config["output"] == "sigmoid"
    with pytest.raises(ValueError, match="output: must be 'linear' or 'sigmoid'"):
        UNetQMap(1, 1, 8, 8, output="tanh")
    with pytest.raises(ValueError, match="network.unet_output"):
        ExperimentConfig.from_dict({"network": {"unet_output": "relu"}})


@pytest.mark.parametrize("equivariant", [False, True])
def test_bfloat16_precision_keeps_float32_weights_and_q_values_near_float32(
        equivariant: bool) -> None:
    """network.unet_precision bfloat16 runs the convolutions under autocast: Q-values come back
    in float32 within bf16's rounding of the float32 network's, the taken-pixel update still
    matches the full map, and the weights (what checkpoints and broadcasts carry) stay
    float32 through an optimizer step."""
    torch.manual_seed(3)
    ref = UNetQMap(4, 8, 16, 16, base_channels=4, depth=2, coord_channels=False,
                   rotation_equivariant=equivariant)
    net = build_network("unet", {**ref.config, "precision": "bfloat16"})
    net.load_state_dict(ref.state_dict())
    obs = torch.rand(6, 4, 16, 16)
    actions = torch.tensor([0, 15, 255, 1000, 2047, 777])
    with torch.no_grad():
        q_ref, q_bf = ref(obs), net(obs)
    assert q_bf.dtype == torch.float32
    scale = float(q_ref.abs().max())
    assert float((q_bf - q_ref).abs().max()) <= 0.02 * scale + 1e-3
    assert not torch.equal(q_bf, q_ref)  # the convolutions really ran in bfloat16
    q_taken, _ = net.q_taken_and_max(obs, actions, with_max=False)
    expected = q_bf.flatten(1).gather(1, actions.unsqueeze(1)).squeeze(1)
    assert q_taken.dtype == torch.float32
    assert torch.allclose(q_taken, expected, atol=1e-5)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in net.parameters()]
    ((q_taken - 1.0) ** 2).mean().backward()
    opt.step()
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))
    with torch.no_grad():
        q_after, _ = net.q_taken_and_max(obs, actions, with_max=False)
    assert float((q_after - 1.0).abs().mean()) < float((q_taken.detach() - 1.0).abs().mean())


def test_precision_option_is_checked_and_old_configs_mean_float32() -> None:
    old = {k: v for k, v in UNetQMap(4, 8, 8, 8, depth=1).config.items() if k != "precision"}
    assert build_network("unet", old).config["precision"] == "float32"
    with pytest.raises(ValueError, match="precision: must be one of float32, bfloat16, auto"):
        UNetQMap(4, 8, 8, 8, depth=1, precision="float16")
    with pytest.raises(ValueError, match="network.unet_precision"):
        ExperimentConfig.from_dict({"network": {"unet_precision": "half"}})
    assert ExperimentConfig.from_dict(
        {"network": {"unet_precision": "auto"}}).network.unet_precision == "auto"
    assert uses_bfloat16("bfloat16", "cpu") and not uses_bfloat16("float32", "cpu")
    assert uses_bfloat16("auto", "cpu") == native_bfloat16("cpu")
    assert not uses_bfloat16("auto", "meta")


def test_bce_loss_is_the_cross_entropy_of_the_logits_and_learns_the_success_rate() -> None:
    """dqn.loss bce: binary cross-entropy between the sigmoid head's probability (taken from
    its logit) and the 0/1 reward. One grasp that succeeded 3 times in 4 ends near 0.75."""
    from torch.nn import functional as F

    from q_grasp.learning.buffer import ReplayBatch
    from q_grasp.learning.config import DQNConfig
    from q_grasp.learning.dqn import dqn_update, make_optimizer

    torch.manual_seed(0)
    net = UNetQMap(1, 2, 8, 8, base_channels=4, depth=2, output="sigmoid",
                   rotation_equivariant=True)
    cfg = DQNConfig(gamma=0.0, loss="bce", learning_rate=0.01, batch_size=4)
    opt = make_optimizer(net.parameters(), cfg)
    obs = torch.rand(1, 1, 8, 8).repeat(4, 1, 1, 1)
    actions = torch.full((4,), 64 + 27)
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0])
    batch = ReplayBatch(obs, actions, rewards, None, torch.ones(4), torch.zeros(4),
                        torch.ones(4, dtype=torch.int64), torch.ones(4), torch.arange(4))
    logit, _ = net.q_taken_and_max(obs, actions, with_max=False, logits=True)
    q_taken, _ = net.q_taken_and_max(obs, actions, with_max=False)
    assert torch.allclose(torch.sigmoid(logit), q_taken, atol=1e-6)
    expected = float(F.binary_cross_entropy_with_logits(logit, rewards))
    first = dqn_update(net, net, opt, batch, cfg)
    assert first.loss == pytest.approx(expected, rel=1e-5)
    assert first.mean_q == pytest.approx(float(q_taken.mean()), abs=1e-6)
    for _ in range(200):
        result = dqn_update(net, net, opt, batch, cfg)
    assert result.mean_q == pytest.approx(0.75, abs=0.02)
    assert result.loss == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)),
                                        abs=0.01)


def test_bce_loss_needs_gamma_zero_and_a_sigmoid_u_net() -> None:
    sigmoid_unet = {"kind": "unet", "unet_output": "sigmoid"}
    ExperimentConfig.from_dict({"network": sigmoid_unet, "dqn": {"gamma": 0.0, "loss": "bce"}})
    with pytest.raises(ValueError, match="dqn.loss: bce needs gamma 0"):
        ExperimentConfig.from_dict({"network": sigmoid_unet,
                                    "dqn": {"gamma": 0.9, "loss": "bce"}})
    with pytest.raises(ValueError, match="dqn.loss: bce needs a U-Net with network.unet_output "
                                         "sigmoid"):
        ExperimentConfig.from_dict({"network": {"kind": "unet"},
                                    "dqn": {"gamma": 0.0, "loss": "bce"}})
