"""Encoders and the actor-critic: shapes, channels-last images, distributions against torch's, predict()."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from srwm_rl.nn.cores import CoreConfig
from srwm_rl.nn.encoders import ImpalaCNN, NatureCNN, make_encoder
from srwm_rl.nn.distributions import Categorical, DiagGaussian
from srwm_rl.nn.policy import ActorCritic, PolicyConfig

IMG = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
SMALL = CoreConfig(kind="srwm", hidden_size=16, num_heads=2, num_layers=1)


def test_impala_cnn_shapes_and_channels_last_input_without_copy():
    enc = ImpalaCNN(IMG)
    x = torch.randint(0, 255, (5, 64, 64, 3), dtype=torch.uint8)
    assert enc(x).shape == (5, 256)
    assert enc.stages[0].weight.is_contiguous(memory_format=torch.channels_last)
    nchw = x.permute(0, 3, 1, 2)
    assert nchw.is_contiguous(memory_format=torch.channels_last)   # a view: no layout copy
    # the same result as a plain channels-first pass
    enc_cf = ImpalaCNN(IMG)
    enc_cf.load_state_dict(enc.state_dict())
    enc_cf.to(memory_format=torch.contiguous_format)
    z_cf = torch.relu(enc_cf.fc(torch.relu(enc_cf.stages(nchw.contiguous().float() / 255)).flatten(1)))
    torch.testing.assert_close(enc(x), z_cf, rtol=1e-4, atol=1e-5)
    assert NatureCNN(IMG)(x).shape == (5, 512)


def test_encoder_registry_errors():
    with pytest.raises(ValueError, match="needs image observations"):
        make_encoder("impala", gym.spaces.Box(-1, 1, (4,)), PolicyConfig())
    with pytest.raises(ValueError, match="policy.encoder='mlp' on image observations"):
        make_encoder("mlp", IMG, PolicyConfig())


def test_distributions_match_torch():
    logits = torch.randn(3, 4, 5)
    a = torch.randint(0, 5, (3, 4))
    ref = torch.distributions.Categorical(logits=logits)
    d = Categorical(logits)
    torch.testing.assert_close(d.log_prob(a), ref.log_prob(a))
    torch.testing.assert_close(d.entropy(), ref.entropy())
    mean, log_std = torch.randn(3, 2), torch.randn(2)
    x = torch.randn(3, 2)
    ref = torch.distributions.Independent(torch.distributions.Normal(mean, log_std.exp()), 1)
    g = DiagGaussian(mean, log_std)
    torch.testing.assert_close(g.log_prob(x), ref.log_prob(x))
    torch.testing.assert_close(g.entropy(), ref.entropy())


def test_categorical_sampling_frequencies():
    torch.manual_seed(0)
    d = Categorical(torch.log(torch.tensor([[0.7, 0.2, 0.1]])).expand(20000, 3))
    freq = torch.bincount(d.sample(), minlength=3).float() / 20000
    torch.testing.assert_close(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.015, rtol=0)


def dict_space():
    return gym.spaces.Dict({"obs": gym.spaces.Box(-1, 1, (3,), np.float32), "prev_action": gym.spaces.Discrete(4),
                            "prev_reward": gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)})


def test_forward_shapes_with_extras_and_box_actions():
    pol = ActorCritic(dict_space(), gym.spaces.Box(-1, 1, (2,), np.float32), PolicyConfig(), SMALL)
    T, B = 5, 3
    obs = {"obs": torch.randn(T, B, 3), "prev_action": torch.randn(T, B, 2), "prev_reward": torch.randn(T, B, 1)}
    pol_d = ActorCritic(dict_space(), gym.spaces.Discrete(4), PolicyConfig(), SMALL)
    obs_d = {"obs": torch.randn(T, B, 3), "prev_action": torch.randint(0, 4, (T, B)), "prev_reward": torch.randn(T, B, 1)}
    dist, v, state = pol_d(obs_d, pol_d.initial_state(B), torch.zeros(T, B, dtype=torch.bool))
    assert dist.logits.shape == (T, B, 4) and v.shape == (T, B)
    space_box = gym.spaces.Dict({**dict_space().spaces, "prev_action": gym.spaces.Box(-1, 1, (2,), np.float32)})
    pol = ActorCritic(space_box, gym.spaces.Box(-1, 1, (2,), np.float32), PolicyConfig(), SMALL)
    dist, v, _ = pol(obs, pol.initial_state(B), torch.zeros(T, B, dtype=torch.bool))
    assert dist.sample().shape == (T, B, 2) and dist.log_prob(dist.mode()).shape == (T, B)


def test_predict_follows_sb3_recurrent_convention():
    torch.manual_seed(0)
    pol = ActorCritic(gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(4),
                      PolicyConfig(prev_action=False, prev_reward=False), SMALL)
    obs = np.random.default_rng(0).standard_normal((6, 2, 3)).astype(np.float32)
    starts = np.zeros((6, 2), bool)
    starts[0] = True
    starts[3, 1] = True
    state, actions = None, []
    for t in range(6):
        a, state = pol.predict(obs[t], state, starts[t], deterministic=True)
        actions.append(a)
    # the same as one whole-sequence forward with `first` = episode starts
    with torch.no_grad():
        dist, _, _ = pol(torch.as_tensor(obs), pol.initial_state(2), torch.as_tensor(starts))
    np.testing.assert_array_equal(np.stack(actions), dist.mode().numpy())


def test_extras_follow_the_config():
    only_reward = ActorCritic(dict_space(), gym.spaces.Discrete(4), PolicyConfig(prev_action=False), SMALL)
    assert only_reward.extras == ["prev_reward"]
    both = ActorCritic(dict_space(), gym.spaces.Discrete(4), PolicyConfig(), SMALL)
    assert both.extras == ["prev_action", "prev_reward"]
    assert both.core.input_size == only_reward.core.input_size + 4
