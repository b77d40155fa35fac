"""The band (2-D, frequency x time) backbone of the codec."""

from __future__ import annotations

import pytest
import torch

from sds_audio.codec import Codec, CodecConfig, load_codec, save_codec
from sds_audio.codec.stft_backbone import spectrum_to_audio
from sds_audio.errors import SDSAudioError

# n_fft 128 -> 64 bins (Nyquist dropped) = 32 cells of 2 bins = 8 bands of 4 cells (8 bins);
# 2 latent channels per band; hop 32 per latent frame
TINY = dict(backbone="band", stft_n_fft=128, stft_frames_per_latent=1, encoder_channels=8, decoder_channels=8,
            encoder_blocks=1, decoder_blocks=1, band_fine_blocks=1, band_count=8, band_patch_bins=2,
            latent_channels=16)


def test_hop_and_shapes():
    codec = Codec(CodecConfig(**TINY)).eval()
    assert codec.hop_length == 128 // 4 == 32
    for n in (32, 100, 1000):
        x = torch.randn(2, 1, n)
        z = codec.encode(x)
        assert z.shape == (2, 16, -(-n // 32))
        assert codec.decode(z).shape == (2, 1, z.shape[-1] * 32)
        assert codec.reconstruct(x).shape == x.shape
    stereo = Codec(CodecConfig(**{**TINY, "channels": 2, "stft_frames_per_latent": 2}))
    assert stereo.decode(stereo.encode(torch.randn(1, 2, 256))).shape == (1, 2, 256)


def test_latent_rows_are_bands_and_the_decoder_is_local_in_frequency():
    """Row ``c * band_count + j`` holds band ``j``: the predicted magnitudes of bins far above band 0
    do not depend on band 0's rows at all, while its own bins do."""
    codec = Codec(CodecConfig(**TINY)).eval()
    z = torch.randn(1, 16, 6, requires_grad=True)
    logmag, _, _ = codec.decoder.spectrum(z)
    assert logmag.shape == (1, 64, 6)
    band0_rows = [0, 8]                                   # 2 channels per band x 8 bands
    # receptive field: inp 3x3 (+-1 band), one coarse block (kernel 5: +-2 bands) -> bands <= 3 = cells <= 15,
    # then the fine block (+-2 cells): bins < 2 * 18 = 36
    top = torch.autograd.grad(logmag[0, 40:].sum(), z, retain_graph=True)[0]
    own = torch.autograd.grad(logmag[0, :8].sum(), z)[0]
    assert top[0, band0_rows].abs().max() == 0
    assert own[0, band0_rows].abs().max() > 0
    assert top[0, [7, 15]].abs().max() > 0                # the top band's own rows do reach it


def test_encoder_is_local_in_frequency():
    """Band 0's rows of the encoder output do not depend on the input maps of the top bins."""
    codec = Codec(CodecConfig(**TINY)).eval()
    feats = codec.encoder.features(torch.randn(1, 1, 256)).requires_grad_()
    assert feats.shape == (1, 3, 64, 8)                   # log magnitude + phase 2-vector, Nyquist dropped
    h = codec.encoder.encode_features(feats)              # (1, 2 * 16, 8): mean and scale halves
    band0_rows = [0, 8, 16, 24]                           # mean and scale rows of band 0
    grad = torch.autograd.grad(h[0, band0_rows].sum(), feats)[0]
    # receptive field: fine block (+-2 cells), coarse block (+-2 bands): cells <= 11 + 2, bins < 28
    assert grad[0, :, 40:].abs().max() == 0
    assert grad[0, :, :4].abs().max() > 0


def test_decoder_gradient_matches_finite_differences():
    codec = Codec(CodecConfig(**TINY)).double().eval()
    z = torch.randn(1, 16, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: codec.decode(v), (z,), eps=1e-6, atol=1e-5)


def test_encoder_gradient_is_finite_on_silence():
    codec = Codec(CodecConfig(**TINY))
    x = torch.zeros(1, 1, 256, requires_grad=True)
    codec.encode(x).square().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_missing_top_bins_render_silent():
    """``spectrum_to_audio`` with fewer bins than ``n_fft / 2 + 1`` leaves the top ones silent: a steady
    partial predicted below them comes out steady and coherent, and nothing appears above."""
    n_fft, frames = 128, 40
    logmag = torch.full((1, 64, frames), -30.0)
    logmag[0, 10] = 0.0                                   # one partial at bin 10, magnitude 1
    re, im = torch.ones_like(logmag), torch.zeros_like(logmag)
    audio = spectrum_to_audio(logmag, re, im, n_fft, accumulate=True)
    assert audio.shape == (1, frames * 32)
    spec = torch.stft(audio[0], n_fft, 32, window=torch.hann_window(n_fft), return_complex=True).abs()
    mid = spec[:, 8:-8]
    assert mid.argmax(dim=0).eq(10).all()
    assert mid[10].std() < 0.01 * mid[10].mean()
    # coherent overlap-add of magnitude M: a cosine of amplitude (2M / N) * sum_m w / sum_m w^2 = (2M / N) * 2 / 1.5
    # (Hann, hop N / 4), which a Hann analysis reads back as amplitude * N / 4 = 2M / 3
    assert mid[10].mean() == pytest.approx(2 / 3, rel=0.01)
    assert mid[60:].max() < 1e-3 * mid[10].mean()


def test_save_load_round_trip(tmp_path):
    codec = Codec(CodecConfig(**TINY)).eval()
    save_codec(codec, tmp_path / "c.safetensors")
    loaded = load_codec(tmp_path / "c.safetensors")
    assert loaded.config == codec.config
    x = torch.randn(1, 1, 256)
    torch.testing.assert_close(loaded.reconstruct(x), codec.reconstruct(x))


def test_rvq_bottleneck_works_on_bands():
    codec = Codec(CodecConfig(**{**TINY, "bottleneck": "rvq", "n_codebooks": 2, "codebook_size": 8})).eval()
    codes = codec.codes(torch.randn(1, 1, 256))
    assert codes.shape == (1, 2, 8)
    assert codec.decode_codes(codes).shape == (1, 1, 256)


# 16 latent channels spread 5, 3, 2, 2, 1, 1, 1, 1 over the 8 bands, lowest first
UNEVEN = dict(TINY, band_latent_channels=(5, 3, 2, 2, 1, 1, 1, 1))


def test_uneven_bands_latent_rows_follow_the_allocation():
    """Per group, channel-major then band: channel 0 of all 8 bands, channel 1 of the 4 bands that have one..."""
    codec = Codec(CodecConfig(**UNEVEN)).eval()
    # the VAE encoder output: mean rows then scale rows, each 16 long
    widest, bands = 5, 8
    expected = [(g * widest + c) * bands + j for g in (0, 1) for c in range(5) for j in range(8)
                if c < (5, 3, 2, 2, 1, 1, 1, 1)[j]]
    assert codec.encoder.rows.tolist() == expected
    assert expected[:16] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 24, 32]
    x = torch.randn(2, 1, 320)
    z = codec.encode(x)
    assert z.shape == (2, 16, 10)
    assert codec.decode(z).shape == (2, 1, 320)
    # uniform bands keep the plain layout: the rows are the identity
    assert Codec(CodecConfig(**TINY)).encoder.rows.tolist() == list(range(32))


def test_uneven_bands_each_latent_row_reaches_its_own_band_only_nearby():
    """Band 0's latent rows are 0, 8 (channels 0, 1), 12 (channel 2; 13 is band 1's), 14 and 15 (channels 3,
    4): every one of them moves band 0's bins, and none the top ones."""
    codec = Codec(CodecConfig(**UNEVEN)).eval()
    z = torch.randn(1, 16, 6, requires_grad=True)
    logmag, _, _ = codec.decoder.spectrum(z)
    top = torch.autograd.grad(logmag[0, 40:].sum(), z, retain_graph=True)[0]
    own = torch.autograd.grad(logmag[0, :8].sum(), z)[0]
    band0_rows = [0, 8, 12, 14, 15]
    assert top[0, band0_rows].abs().max() == 0
    assert (own[0, band0_rows].abs().amax(dim=-1) > 0).all()


def test_uneven_bands_decoder_gradient_matches_finite_differences():
    codec = Codec(CodecConfig(**UNEVEN)).double().eval()
    z = torch.randn(1, 16, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: codec.decode(v), (z,), eps=1e-6, atol=1e-5)


def test_uneven_bands_save_load_round_trip(tmp_path):
    codec = Codec(CodecConfig(**UNEVEN)).eval()
    save_codec(codec, tmp_path / "c.safetensors")
    loaded = load_codec(tmp_path / "c.safetensors")
    assert loaded.config.band_latent_channels == (5, 3, 2, 2, 1, 1, 1, 1)
    x = torch.randn(1, 1, 256)
    torch.testing.assert_close(loaded.reconstruct(x), codec.reconstruct(x))


@pytest.mark.parametrize("overrides, field", [
    (dict(band_latent_channels=(4, 2, 2, 2, 2, 2, 2)), "codec.band_latent_channels"),     # 7 values, 8 bands
    (dict(band_latent_channels=(4, 4, 2, 2, 2, 2, 2, 2)), "codec.band_latent_channels"),  # sums to 20, not 16
    (dict(band_latent_channels=(9, 3, 2, 2, 0, 0, 0, 0)), "codec.band_latent_channels"),  # a band with none
    (dict(band_count=3), "codec.band_count"),             # 32 cells do not split into 3 bands
    (dict(band_patch_bins=5), "codec.band_count"),        # 64 bins do not split into cells of 5
    (dict(latent_channels=12), "codec.latent_channels"),  # not a multiple of 8 bands
    (dict(band_fine_blocks=0), "codec.band_fine_blocks"),
])
def test_bad_band_settings_name_the_field(overrides, field):
    with pytest.raises(SDSAudioError) as err:
        CodecConfig(**{**TINY, **overrides})
    assert err.value.field == field
