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


def _steady_partial_decoder(phase: str, n_fft: int = 64, bin_index: int = 5, magnitude: float = 8.0):
    """A decoder whose output conv ignores the latents: one partial of constant magnitude at ``bin_index``."""
    cfg = CodecConfig(**{**TINY, "stft_n_fft": n_fft, "stft_phase": phase})
    decoder = Codec(cfg).double().decoder
    bins = n_fft // 2 + 1
    with torch.no_grad():
        decoder.out.weight.zero_()
        bias = decoder.out.bias.view(1, cfg.stft_frames_per_latent, 3, bins)
        bias[:, :, 0] = -30.0                                  # silent bins ...
        bias[:, :, 0, bin_index] = torch.log(torch.tensor(magnitude, dtype=torch.float64))
        bias[:, :, 1] = 1.0                                   # angle of (1, 0) = 0
        bias[:, :, 2] = 0.0
    return decoder


def _coherent_amplitude(n_fft: int, magnitude: float) -> float:
    """Overlap-add of in-phase frames, each a cosine of amplitude 2 M / n_fft (one bin of an inverse rFFT)
    windowed by Hann, divided by the summed squared windows: ``2 M / n_fft * sum(w) / sum(w^2)`` per hop."""
    w = torch.hann_window(n_fft, dtype=torch.float64)
    return 2 * magnitude / n_fft * float(w.sum()) / float(w.square().sum())


def test_accumulated_phase_renders_a_steady_partial_at_full_level():
    """Constant predictions -> a cosine at the bin's centre frequency, every frame adding in phase."""
    n_fft, k, magnitude = 64, 5, 8.0
    decoder = _steady_partial_decoder("accumulated", n_fft, k, magnitude)
    audio = decoder(torch.zeros(1, 4, 40, dtype=torch.float64))[0, 0]
    middle = audio[n_fft:-n_fft]
    expected_amplitude = _coherent_amplitude(n_fft, magnitude)
    assert abs(float(middle.abs().max()) / expected_amplitude - 1) < 0.02
    spectrum = torch.fft.rfft(middle * torch.hann_window(middle.numel(), dtype=torch.float64)).abs()
    freq_cycles_per_sample = float(spectrum.argmax()) / middle.numel()
    assert abs(freq_cycles_per_sample - k / n_fft) < 1.5 / middle.numel()


def test_free_phase_cancels_the_same_steady_partial():
    """The failure the accumulated phase fixes: a constant absolute phase for an odd bin (true advance pi / 2
    per hop) puts the four overlapping frames at 0, 90, 180, 270 degrees to each other: 6 dB lost."""
    n_fft, k, magnitude = 64, 5, 8.0
    audio = _steady_partial_decoder("free", n_fft, k, magnitude)(torch.zeros(1, 4, 40, dtype=torch.float64))[0, 0]
    assert float(audio[n_fft:-n_fft].abs().max()) < 0.55 * _coherent_amplitude(n_fft, magnitude)


def test_accumulated_decoder_gradient_matches_finite_differences():
    codec = Codec(CodecConfig(**{**TINY, "stft_phase": "accumulated"})).double().eval()
    z = torch.randn(1, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: codec.decode(v), (z,), eps=1e-6, atol=1e-5)


def test_phase_advance_feature_measures_the_offset_from_the_bin_centre():
    """A cosine 0.25 bins above bin 10 turns pi/8 per hop (hop = n_fft / 4) beyond the bin's centre."""
    from sds_audio.codec.stft_backbone import phase_advance_features

    n_fft, hop = 256, 64
    t = torch.arange(8192, dtype=torch.float64)
    for offset_bins in (0.0, 0.25, -0.4):
        x = torch.cos(2 * torch.pi * (10 + offset_bins) / n_fft * t)
        spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft, dtype=torch.float64), return_complex=True)
        u = phase_advance_features(spec, n_fft, hop)        # (2, bins, frames)
        angle = torch.atan2(u[1, 10, 5:-5], u[0, 10, 5:-5])
        expected = 2 * torch.pi * offset_bins * hop / n_fft
        torch.testing.assert_close(angle, torch.full_like(angle, expected), atol=1e-4, rtol=0)  # negative-frequency leakage
        assert torch.allclose(u[:, 10, 5:-5].square().sum(0), torch.ones(1, dtype=torch.float64), atol=1e-6)
        assert torch.equal(u[:, :, 0], torch.zeros_like(u[:, :, 0]))  # no previous frame


def test_configs_saved_before_stft_phase_load_as_free_phase(tmp_path):
    data = CodecConfig(**{**TINY, "stft_phase": "free"}).to_dict()
    data.pop("stft_phase")
    assert CodecConfig.from_dict(data).stft_phase == "free"
    assert CodecConfig(**TINY).stft_phase == "accumulated"
    with pytest.raises(SDSAudioError, match="stft_phase"):
        CodecConfig(**{**TINY, "stft_phase": "random"})
    free = Codec(CodecConfig(**{**TINY, "stft_phase": "free"})).eval()
    save_codec(free, tmp_path / "free.safetensors")
    x = torch.randn(1, 1, 256)
    torch.testing.assert_close(load_codec(tmp_path / "free.safetensors").reconstruct(x), free.reconstruct(x))
