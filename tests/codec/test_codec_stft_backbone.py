"""The STFT (frame-rate ConvNeXt) backbone of the codec."""

from __future__ import annotations

import pytest
import torch

from sds_audio.codec import Codec, CodecConfig, load_codec, save_codec
from sds_audio.codec.losses import ReconstructionLoss
from sds_audio.errors import SDSAudioError

TINY = dict(backbone="stft", stft_n_fft=64, stft_frames_per_latent=2, encoder_channels=16, decoder_channels=16,
            encoder_blocks=1, decoder_blocks=2, latent_channels=4)


def test_hop_and_shapes():
    codec = Codec(CodecConfig(**TINY)).eval()
    assert codec.hop_length == 64 // 4 * 2 == 32
    for n in (32, 100, 1000):
        x = torch.randn(2, 1, n)
        z = codec.encode(x)
        assert z.shape == (2, 4, -(-n // 32))
        assert codec.decode(z).shape == (2, 1, z.shape[-1] * 32)
        assert codec.reconstruct(x).shape == x.shape


def test_stereo_and_default_hop_match_the_conv_codec():
    stereo = Codec(CodecConfig(**{**TINY, "channels": 2}))
    assert stereo.decode(stereo.encode(torch.randn(1, 2, 96))).shape == (1, 2, 96)
    assert CodecConfig(backbone="stft").hop_length == CodecConfig().hop_length == 512  # same latent rate


def test_decoder_gradient_matches_finite_differences():
    codec = Codec(CodecConfig(**TINY)).double().eval()
    z = torch.randn(1, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: codec.decode(v), (z,), eps=1e-6, atol=1e-5)


def test_encoder_gradient_reaches_the_audio_and_is_finite_on_silence():
    codec = Codec(CodecConfig(**TINY))
    x = torch.zeros(1, 1, 128, requires_grad=True)
    codec.encode(x).square().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_save_load_round_trip(tmp_path):
    codec = Codec(CodecConfig(**TINY)).eval()
    save_codec(codec, tmp_path / "c.safetensors")
    loaded = load_codec(tmp_path / "c.safetensors")
    assert loaded.config == codec.config
    x = torch.randn(1, 1, 256)
    torch.testing.assert_close(loaded.reconstruct(x), codec.reconstruct(x))


def test_old_configs_without_backbone_are_conv():
    data = CodecConfig().to_dict()
    for key in ("backbone", "stft_n_fft", "stft_frames_per_latent", "encoder_blocks", "decoder_blocks"):
        data.pop(key)
    assert CodecConfig.from_dict(data).backbone == "conv"


def test_bad_backbone_settings():
    with pytest.raises(SDSAudioError, match="backbone"):
        CodecConfig(backbone="mdct")
    with pytest.raises(SDSAudioError, match="stft_n_fft"):
        CodecConfig(backbone="stft", stft_n_fft=30)


def test_a_few_steps_learn_to_reconstruct():
    torch.manual_seed(0)
    codec = Codec(CodecConfig(**TINY))
    t = torch.arange(2048) / 22050
    x = (0.5 * torch.sin(2 * torch.pi * 880 * t) * torch.exp(-4 * t)).reshape(1, 1, -1)
    loss_fn = ReconstructionLoss(22050, stft_n_ffts=(64, 128), mel_scales=((128, 16),))
    opt = torch.optim.Adam(codec.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        out = codec(x, generator=torch.Generator().manual_seed(0))
        loss = loss_fn(out.audio[..., :x.shape[-1]], x)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
