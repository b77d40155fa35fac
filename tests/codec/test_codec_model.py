"""Codec shapes, determinism, differentiability, Snake, and the VAE's KL term."""

from __future__ import annotations

import math

import pytest
import torch

from sds_audio.codec import Codec, CodecConfig, gaussian_kl
from sds_audio.codec.layers import snake, snake_fast
from sds_audio.codec.model import fold_patches, unfold_patches
from sds_audio.errors import SDSAudioError


@pytest.mark.parametrize("n_samples", [1, 31, 32, 33, 100, 257])
def test_shapes_pad_to_hop(tiny_config, n_samples):
    torch.manual_seed(0)
    codec = Codec(tiny_config()).eval()
    assert codec.hop_length == 32
    audio = torch.randn(2, 1, n_samples)
    z = codec.encode(audio)
    n_frames = math.ceil(n_samples / 32)
    assert z.shape == (2, codec.latent_channels, n_frames)
    assert codec.n_latent_frames(n_samples) == n_frames
    assert codec.decode(z).shape == (2, 1, n_frames * 32)
    assert codec.reconstruct(audio).shape == audio.shape
    out = codec(audio)
    assert out.audio.shape == (2, 1, n_frames * 32)


def test_default_config_hop_and_compression():
    cfg = CodecConfig()
    assert cfg.hop_length == cfg.patch_size * math.prod(cfg.strides) == 512
    assert cfg.compression_factor == 512 / cfg.latent_channels
    assert cfg.latent_rate == pytest.approx(22050 / 512)


def test_padding_is_zero_padding(tiny_config):
    """Encoding a signal equals encoding it explicitly zero-padded to the hop."""
    torch.manual_seed(0)
    codec = Codec(tiny_config()).eval()
    audio = torch.randn(1, 1, 50)
    padded = torch.cat([audio, torch.zeros(1, 1, 14)], dim=-1)
    torch.testing.assert_close(codec.encode(audio), codec.encode(padded), rtol=0, atol=0)


def test_encode_deterministic_and_mean(tiny_config):
    torch.manual_seed(0)
    codec = Codec(tiny_config())
    audio = torch.randn(2, 1, 96)
    codec.train()  # even in training mode encode() returns the posterior mean
    z1, z2 = codec.encode(audio), codec.encode(audio)
    assert torch.equal(z1, z2)
    mean, std = codec.posterior(audio)
    assert torch.equal(z1, mean)
    assert (std > 0).all()
    # a training forward pass samples around the mean, with the generator's draws
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    out1, out2 = codec(audio, generator=g1), codec(audio, generator=g2)
    assert torch.equal(out1.latents, out2.latents)
    assert not torch.equal(out1.latents, mean)


def test_decode_differentiable(tiny_config):
    torch.manual_seed(0)
    codec = Codec(tiny_config()).eval()
    z = torch.randn(1, 4, 3, requires_grad=True)
    codec.decode(z).pow(2).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_decode_gradient_matches_finite_differences(tiny_config):
    torch.manual_seed(0)
    codec = Codec(tiny_config()).double().eval()
    z = torch.randn(1, 4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: codec.decode(v).sum(dim=-1), (z,), eps=1e-6, atol=1e-5)


def test_snake_fast_matches_reference_and_gradcheck():
    x = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    alpha = (torch.rand(1, 3, 1, dtype=torch.float64) + 0.3).requires_grad_()
    torch.testing.assert_close(snake_fast(x, alpha), snake(x, alpha))
    assert torch.autograd.gradcheck(snake_fast, (x, alpha))
    # against the closed form x + sin^2(a x) / a
    expected = x + torch.sin(alpha * x) ** 2 / alpha
    torch.testing.assert_close(snake(x, alpha), expected)


def test_fold_unfold_inverse():
    audio = torch.arange(24.0).view(1, 1, 24)
    folded = fold_patches(audio, 4)
    assert folded.shape == (1, 4, 6)
    assert folded[0, :, 1].tolist() == [4.0, 5.0, 6.0, 7.0]
    assert torch.equal(unfold_patches(folded, 4), audio)


def test_kl_closed_form():
    mean = torch.zeros(2, 3, 5)
    std = torch.ones(2, 3, 5)
    assert gaussian_kl(mean, std).item() == 0.0
    torch.manual_seed(0)
    mean = torch.randn(2, 3, 5, dtype=torch.float64)
    std = torch.rand(2, 3, 5, dtype=torch.float64) + 0.2
    # closed form with torch.distributions as the oracle
    oracle = torch.distributions.kl_divergence(torch.distributions.Normal(mean, std),
                                               torch.distributions.Normal(0.0, 1.0)).sum(dim=1).mean()
    kl = gaussian_kl(mean, std)
    torch.testing.assert_close(kl, oracle)
    assert kl.item() > 0
    # unit variance, mean m: KL = 0.5 * m^2 per element
    m = torch.full((1, 2, 1), 0.5)
    assert gaussian_kl(m, torch.ones_like(m)).item() == pytest.approx(2 * 0.5 * 0.25)


def test_forward_kl_matches_posterior(tiny_config):
    torch.manual_seed(0)
    codec = Codec(tiny_config())
    audio = torch.randn(2, 1, 64)
    out = codec(audio)
    mean, std = codec.posterior(audio)
    torch.testing.assert_close(out.kl, gaussian_kl(mean, std))
    assert out.commitment_loss.item() == 0.0 and out.codes is None


def test_bad_input_shapes_raise(tiny_config):
    codec = Codec(tiny_config())
    with pytest.raises(SDSAudioError, match="audio of shape"):
        codec.encode(torch.randn(1, 2, 64))
    with pytest.raises(SDSAudioError, match="latents of shape"):
        codec.decode(torch.randn(1, 5, 2))
    with pytest.raises(SDSAudioError, match="no codes"):
        codec.codes(torch.randn(1, 1, 64))


def test_config_validation():
    with pytest.raises(SDSAudioError, match="codec.channel_mults"):
        CodecConfig(strides=(2, 2), channel_mults=(1, 2))
    with pytest.raises(SDSAudioError, match="codec.bottleneck"):
        CodecConfig(bottleneck="fsq")
    with pytest.raises(SDSAudioError, match="unknown keys"):
        CodecConfig.from_dict({"hop": 3})
    cfg = CodecConfig(latent_channels=8)
    assert CodecConfig.from_json(cfg.to_json()) == cfg
