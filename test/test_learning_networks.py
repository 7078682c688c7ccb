"""Q-networks: shapes (MLP, dueling, U-Net at many image sizes), predict wrappers, rebuild."""

import numpy as np
import pytest
import torch

from q_grasp.learning.networks import QNetwork, UNetQMap, build_network

torch.set_num_threads(1)


def test_mlp_shapes_and_predict():
    net = QNetwork(7, 8)
    assert [m.out_features for m in net.trunk if hasattr(m, "out_features")] == [64, 64, 64]
    assert net(torch.zeros(5, 7)).shape == (5, 8)
    obs = np.random.default_rng(0).normal(size=(3, 7)).astype(np.float32)
    acts = net.predict(obs)
    assert acts.shape == (3,) and np.all(acts == net.predict_q(obs).argmax(1))
    assert isinstance(net.predict(obs[0]), int)
    assert net.training  # predict restores the mode


def test_dueling_head_mean_advantage_is_zero():
    net = QNetwork(4, 3, hidden_sizes=[16], dueling=True)
    x = torch.randn(6, 4)
    h = net.trunk(x)
    adv = net.advantage_head(h)
    np.testing.assert_allclose((net(x) - net.value_head(h)).detach().numpy(),
                               (adv - adv.mean(1, keepdim=True)).detach().numpy(), atol=1e-6)


def test_input_normalisation_uses_finite_bounds_only():
    net = QNetwork(3, 2, obs_low=[0.0, -np.inf, -2.0], obs_high=[1.0, np.inf, 2.0])
    np.testing.assert_allclose(net.obs_offset.numpy(), [0.5, 0.0, 0.0])
    np.testing.assert_allclose(net.obs_scale.numpy(), [2.0, 1.0, 0.5])


@pytest.mark.parametrize("h,w", [(64, 64), (32, 48), (17, 23), (50, 31), (8, 8), (5, 3)])
@pytest.mark.parametrize("up_mode", ["transpose", "upsample"])
def test_unet_output_matches_input_resolution(h, w, up_mode):
    net = UNetQMap(4, 3, h, w, base_channels=4, depth=3, up_mode=up_mode)
    out = net(torch.rand(2, 4, h, w))
    assert out.shape == (2, 3, h, w)
    assert net.q_values(torch.rand(1, 4, h, w)).shape == (1, 3 * h * w)


def test_unet_predict_returns_rotation_row_col():
    h, w = 12, 20
    net = UNetQMap(1, 2, h, w, base_channels=4, depth=2)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
        net.head.bias[1] = 1.0  # rotation 1 is best everywhere; argmax = first pixel of it
    obs = np.zeros((1, h, w), np.float32)
    assert net.predict_pixel(obs) == (1, 0, 0)
    assert net.predict(obs) == 1 * h * w
    assert net.predict_q_map(obs).shape == (2, h, w)


def test_unet_rejects_wrong_channel_count():
    net = UNetQMap(4, 1, 16, 16, base_channels=4, depth=2)
    with pytest.raises(ValueError, match=r"expects \(B, 4, H, W\)"):
        net(torch.zeros(1, 3, 16, 16))


def test_build_network_rebuilds_from_config():
    for net in (QNetwork(5, 4, hidden_sizes=[8, 8], dueling=True, obs_low=[0] * 5,
                         obs_high=[1] * 5),
                UNetQMap(4, 2, 10, 14, base_channels=4, depth=2, channel_scale=[1, 1, 1, 20])):
        twin = build_network(net.kind, net.config)
        twin.load_state_dict(net.state_dict())
        x = torch.rand(2, *net.obs_shape)
        assert torch.equal(net(x), twin(x))
    with pytest.raises(ValueError, match="network kind"):
        build_network("transformer", {})
    with pytest.raises(ValueError, match="does not fit the constructor"):
        build_network("mlp", {"obs_dim": 3, "n_actions": 2, "bogus": 1})
