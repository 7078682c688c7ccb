"""Replay buffer: circular storage, n-step returns at episode ends, compact images, PER and
augmentation."""

import numpy as np
import pytest
import torch

from q_grasp.learning.buffer import ImageAugmenter, ReplayBuffer, SumTree
from q_grasp.learning.config import AugmentConfig

torch.set_num_threads(1)


def _obs(i: float) -> np.ndarray:
    return np.array([i, -i], np.float32)


def _all(buf: ReplayBuffer):
    """Stored transitions in slot order as tuples (s0, a, r, s'0, term, trunc, n)."""
    idx = np.arange(len(buf))
    obs = buf.codec.load(buf.obs, idx)
    nxt = buf.codec.load(buf.next_obs, idx)
    return [(float(obs[i, 0]), int(buf.actions[i]), float(buf.rewards[i]), float(nxt[i, 0]),
             bool(buf.terminated[i]), bool(buf.truncated[i]), int(buf.steps[i])) for i in idx]


def test_wrap_around_replaces_oldest():
    buf = ReplayBuffer(3, (2,), seed=0)
    for i in range(5):
        buf.add(_obs(i), i, float(i), _obs(i + 1), False, False)
    assert len(buf) == 3 and buf.pos == 2 and buf.added == 5
    # Slots 0, 1 were overwritten by transitions 3, 4; slot 2 still holds transition 2.
    assert [t[1] for t in _all(buf)] == [3, 4, 2]
    batch = buf.sample(64)
    assert set(batch.actions.tolist()) <= {2, 3, 4}
    np.testing.assert_array_equal(batch.observations[:, 0], batch.actions.astype(np.float32))
    np.testing.assert_array_equal(batch.next_observations[:, 0], batch.actions + 1.0)


def test_one_step_keeps_terminated_and_truncated_apart():
    buf = ReplayBuffer(10, (2,))
    buf.add(_obs(0), 0, 1.0, _obs(1), False, True)
    buf.add(_obs(1), 1, 1.0, _obs(2), True, False)
    assert _all(buf) == [(0.0, 0, 1.0, 1.0, False, True, 1), (1.0, 1, 1.0, 2.0, True, False, 1)]


def test_n_step_returns_at_terminated_episode_end():
    g = 0.5
    buf = ReplayBuffer(20, (2,), n_steps=3, gamma=g)
    rewards = [1.0, 2.0, 3.0, 4.0]
    for t, r in enumerate(rewards):
        buf.add(_obs(t), t, r, _obs(t + 1), t == 3, False)
    # Full windows for t=0,1; at the terminal step the windows t=1..3 flush (t=1 already full
    # when step 3 arrived -> emitted as full window ending at s4 with terminated).
    got = _all(buf)
    expected = [
        (0.0, 0, 1 + g * 2 + g * g * 3, 3.0, False, False, 3),
        (1.0, 1, 2 + g * 3 + g * g * 4, 4.0, True, False, 3),
        (2.0, 2, 3 + g * 4, 4.0, True, False, 2),
        (3.0, 3, 4.0, 4.0, True, False, 1),
    ]
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a[:2] == b[:2] and a[3:] == b[3:]
        assert a[2] == pytest.approx(b[2])


def test_n_step_truncated_window_bootstraps_with_its_real_length():
    g = 0.9
    buf = ReplayBuffer(20, (2,), n_steps=3, gamma=g)
    buf.add(_obs(0), 0, 1.0, _obs(1), False, False)
    buf.add(_obs(1), 1, 1.0, _obs(2), False, True)  # time limit after two steps
    got = _all(buf)
    assert got[0][2] == pytest.approx(1 + g) and got[0][3:] == (2.0, False, True, 2)
    assert got[1][2] == pytest.approx(1.0) and got[1][3:] == (2.0, False, True, 1)
    # The next episode starts a fresh window.
    buf.add(_obs(10), 5, 7.0, _obs(11), True, False)
    assert _all(buf)[2] == (10.0, 5, 7.0, 11.0, True, False, 1)


def test_n_step_streams_do_not_mix():
    buf = ReplayBuffer(20, (2,), n_steps=2, gamma=1.0)
    buf.add(_obs(0), 0, 1.0, _obs(1), False, False, stream="a")
    buf.add(_obs(100), 9, 10.0, _obs(101), False, False, stream="b")
    buf.add(_obs(1), 1, 2.0, _obs(2), False, False, stream="a")
    buf.add(_obs(101), 9, 20.0, _obs(102), True, False, stream="b")
    got = _all(buf)
    assert (0.0, 0, 3.0, 2.0, False, False, 2) in got
    assert (100.0, 9, 30.0, 102.0, True, False, 2) in got
    buf.end_stream("a", last_obs=_obs(2))
    assert (1.0, 1, 2.0, 2.0, False, True, 1) in _all(buf)


def test_images_stored_compactly_and_decoded_exactly():
    names = ("r", "g", "b", "height")
    rng = np.random.default_rng(0)
    obs = np.zeros((4, 8, 6), np.float32)
    obs[:3] = rng.integers(0, 256, (3, 8, 6)) / 255.0
    obs[3] = rng.uniform(0, 0.05, (8, 6))
    buf = ReplayBuffer(4, obs.shape, channel_names=names)
    assert buf.obs["color"].dtype == np.uint8 and buf.obs["other"].dtype == np.float16
    buf.add(obs, 0, 0.0, obs, False, False)
    out = buf.sample(1).observations[0]
    np.testing.assert_array_equal(out[:3], obs[:3])  # multiples of 1/255 survive uint8
    np.testing.assert_allclose(out[3], obs[3], atol=5e-5)  # float16 height: < 0.05 mm error


def test_50k_rgbd_64x64_transitions_fit_in_about_2_gib():
    buf = ReplayBuffer(50_000, (4, 64, 64), channel_names=("r", "g", "b", "height"))
    per_obs = 64 * 64 * (3 * 1 + 1 * 2)  # uint8 colour + float16 height
    assert buf.nbytes < 50_000 * (2 * per_obs + 64)
    assert buf.nbytes / 2**30 < 2.0  # vs 6.1 GiB as float32


def test_sum_tree_sampling_follows_priorities():
    tree = SumTree(5)
    tree.set(np.arange(5), np.array([1.0, 0.0, 3.0, 0.0, 4.0]))
    assert tree.total == pytest.approx(8.0)
    np.testing.assert_array_equal(tree.find(np.array([0.5, 1.0, 3.99, 4.0, 7.99])),
                                  [0, 2, 2, 4, 4])
    tree.set(np.array([2, 2]), np.array([1.0, 1.0]))
    assert tree.total == pytest.approx(6.0)


def test_prioritized_sampling_and_weights():
    buf = ReplayBuffer(8, (2,), prioritized=True, alpha=1.0, priority_eps=1e-6, seed=0)
    for i in range(8):
        buf.add(_obs(i), i, 0.0, _obs(i), False, False)
    buf.update_priorities(np.arange(8), np.array([0, 0, 0, 0, 0, 0, 0, 10.0]))
    batch = buf.sample(32, beta=1.0)
    assert np.mean(batch.actions == 7) > 0.9
    assert batch.weights.max() == pytest.approx(1.0)
    low = batch.weights[batch.actions != 7]
    assert np.all(low >= batch.weights[batch.actions == 7].max() - 1e-6)


def test_state_dict_round_trip():
    buf = ReplayBuffer(5, (2,), seed=0)
    for i in range(7):
        buf.add(_obs(i), i, float(i), _obs(i + 1), i == 6, False)
    other = ReplayBuffer(5, (2,), seed=0)
    other.load_state_dict(buf.state_dict())
    assert _all(other) == _all(buf) and other.pos == buf.pos


def _marked(h, w, row, col):
    img = np.zeros((4, h, w), np.float32)
    img[:3, row, col] = 1.0
    img[3, row, col] = 0.04
    return img


@pytest.mark.parametrize("cfg,h,w", [(AugmentConfig(rotate90=True), 9, 9),
                                     (AugmentConfig(flip=True), 9, 9),
                                     (AugmentConfig(translate_px=3), 9, 9),
                                     (AugmentConfig(True, True, translate_px=2), 9, 9),
                                     (AugmentConfig(rotate90=True, flip=True), 6, 10)])
def test_augmentation_moves_image_and_pixel_action_together(cfg, h, w):
    rots = 4
    buf = ReplayBuffer(16, (4, h, w), channel_names=("r", "g", "b", "height"), augment=cfg,
                       n_actions=rots * h * w, seed=1)
    rng = np.random.default_rng(0)
    for _ in range(16):
        rot, row, col = (int(x) for x in rng.integers(0, [rots, h, w]))
        img = _marked(h, w, row, col)
        buf.add(img, rot * h * w + row * w + col, 0.0, img, False, False)
    seen_rot_change = False
    for _ in range(10):
        batch = buf.sample(16)
        for obs, nxt, a, i in zip(batch.observations, batch.next_observations, batch.actions,
                                  batch.indices):
            rot, rest = divmod(int(a), h * w)
            row, col = divmod(rest, w)
            assert obs[0, row, col] == 1.0 and nxt[0, row, col] == 1.0
            assert obs[3, row, col] == pytest.approx(0.04, abs=1e-4)
            seen_rot_change |= rot != int(buf.actions[i]) // (h * w)
    if cfg.rotate90 or cfg.flip:
        assert seen_rot_change


def test_rotation_index_remap_for_gripper_yaw():
    # R=4: yaw k*pi/4. A quarter turn adds pi/2 (index + 2); a mirror maps yaw -> -yaw.
    h = w = 5
    aug = ImageAugmenter(AugmentConfig(rotate90=True), (1, h, w), 4)
    assert aug.turns == [0, 1, 2, 3]
    parts = {"other": np.zeros((1, 1, h, w), np.float16)}
    nparts = {"other": np.zeros((1, 1, h, w), np.float16)}

    class Fixed:
        def __init__(self, k):
            self.k = k

        def choice(self, _):
            return self.k

        def random(self):
            return 1.0

    a = np.array([1 * h * w + 0 * w + 1])  # rot 1, row 0, col 1
    out = aug(parts, nparts, a, Fixed(1))
    rot, rest = divmod(int(out[0]), h * w)
    assert rot == 3 and divmod(rest, w) == (w - 1 - 1, 0)  # np.rot90: (r, c) -> (W-1-c, r)
    flip = ImageAugmenter(AugmentConfig(flip=True), (1, h, w), 4)

    class FlipH(Fixed):
        def __init__(self):
            super().__init__(0)
            self.calls = 0

        def random(self):
            self.calls += 1
            return 0.0 if self.calls == 1 else 1.0

    out = flip(parts, nparts, a, FlipH())
    rot, rest = divmod(int(out[0]), h * w)
    assert rot == 3 and divmod(rest, w) == (0, w - 1 - 1)
    # Non-square images or an odd number of rotations: only half turns are valid.
    assert ImageAugmenter(AugmentConfig(rotate90=True), (1, 4, 6), 4).turns == [0, 2]
    assert ImageAugmenter(AugmentConfig(rotate90=True), (1, 5, 5), 3).turns == [0, 2]


@pytest.mark.parametrize("augment", [None, AugmentConfig(rotate90=True, flip=True)])
def test_sample_without_next_observations_draws_the_same_batch(augment):
    """A gamma-0 learner samples without next observations: the same transitions, actions
    and augmentation draws as a full sample from the same seed, next_observations None."""
    rng = np.random.default_rng(3)
    bufs = [ReplayBuffer(32, (4, 6, 6), channel_names=("r", "g", "b", "height"),
                         augment=augment, n_actions=4 * 36, seed=7) for _ in range(2)]
    for k in range(20):
        obs, nxt = rng.random((4, 6, 6), np.float32), rng.random((4, 6, 6), np.float32)
        for buf in bufs:
            buf.add(obs, k * 7 % 144, float(k % 2), nxt, k % 3 == 0, False)
    for _ in range(3):
        full, lean = bufs[0].sample(8), bufs[1].sample(8, next_obs=False)
        assert lean.next_observations is None and full.next_observations is not None
        for name in ("observations", "actions", "rewards", "terminated", "indices"):
            np.testing.assert_array_equal(getattr(lean, name), getattr(full, name))
    torch_batch = lean.to_torch()
    assert torch_batch.next_observations is None and torch_batch.rewards.dtype == torch.float32
