"""LatentSynth with a small ConvTranspose1d decoder of our own."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sds_audio.errors import SDSAudioError
from sds_audio.synths import SYNTH_TYPES, LatentSynth

C, L, HOP = 4, 12, 8


def _decoder(out_channels: int = 1, dtype: torch.dtype = torch.float64) -> nn.Module:
    torch.manual_seed(0)
    dec = nn.Sequential(nn.ConvTranspose1d(C, 8, HOP * 2, stride=HOP, padding=HOP // 2), nn.Tanh(),
                        nn.Conv1d(8, out_channels, 3, padding=1))
    return dec.to(dtype).eval().requires_grad_(False)


def test_renders_each_source_through_the_decoder_and_fits_length():
    dec = _decoder()
    synth = LatentSynth(dec, (C, L), n_sources=3, sample_rate=8000, channels=2).double()
    synth.randomize_(torch.Generator().manual_seed(0))
    latents = synth.controls()["latents"]
    assert latents.shape == (3, C, L)
    decoded = dec(latents)
    with torch.no_grad():
        short = synth(50)
        long = synth(decoded.shape[-1] + 30)
    assert short.shape == (3, 2, 50)
    torch.testing.assert_close(short[:, 0], decoded[:, 0, :50])      # mono decoder duplicated to stereo
    torch.testing.assert_close(short[:, 0], short[:, 1])
    assert (long[..., decoded.shape[-1]:] == 0).all()                # zero-padded tail


def test_gradients_match_finite_differences(fd_errors, fd_close):
    gen = torch.Generator().manual_seed(1)
    synth = LatentSynth(_decoder(2), (C, L), n_sources=2, latent_range=3.0, sample_rate=8000).double()
    synth.randomize_(gen)
    weights = torch.randn(2, 2, 80, generator=gen, dtype=torch.float64)
    errors = fd_errors(synth, lambda: (synth(80) * weights).sum(), gen)
    fd_close(errors)
    assert abs(errors["latents"][1]) > 1e-6


def test_init_latents_from_an_encoding_and_ranges():
    synth = LatentSynth(_decoder(dtype=torch.float32), (C, L), n_sources=2, latent_range=2.0, sample_rate=8000)
    enc = torch.linspace(-1.5, 1.5, C * L).view(C, L)
    synth.init_latents(enc)
    torch.testing.assert_close(synth.controls()["latents"], enc.expand(2, C, L), rtol=1e-5, atol=1e-5)
    synth.init_latents(10 * enc)                                       # out of range: clipped
    assert synth.controls()["latents"].abs().max() <= 2.0
    with pytest.raises(SDSAudioError):
        synth.init_latents(torch.zeros(3, C, L))
    with pytest.raises(SDSAudioError):
        synth.init_latents(torch.full((C, L), float("nan")))
    opt = torch.optim.Adam(synth.unconstrained_parameters(), lr=1.0)
    for _ in range(50):
        opt.zero_grad()
        synth(40).sum().backward()
        opt.step()
    assert synth.param_specs["latents"].contains(synth.controls()["latents"].detach())


def test_select_and_batch_consistency():
    synth = LatentSynth(_decoder(dtype=torch.float32), (C, L), n_sources=3, sample_rate=8000)
    synth.randomize_(torch.Generator().manual_seed(2))
    with torch.no_grad():
        together = synth(64)
        one = synth.select(1)
        assert one.n_sources == 1 and one.decoder is synth.decoder
        torch.testing.assert_close(one(64), together[1:2])


def test_config_and_errors():
    dec = _decoder()
    synth = LatentSynth(dec, (C, L), n_sources=2)
    assert synth.config()["decoder"] is dec
    assert list(synth.parameters()) == [synth.raw["latents"]]          # the decoder is not a submodule
    synth.float()
    assert next(dec.parameters()).dtype == torch.float64
    assert "latent" not in SYNTH_TYPES                                 # not a preset type
    with pytest.raises(SDSAudioError):
        LatentSynth(dec, (C, L), n_sources=2, batch_size=3)
    with pytest.raises(SDSAudioError):
        LatentSynth("not callable", (C, L))
    with pytest.raises(SDSAudioError):
        LatentSynth(dec, (C,))
    bad = LatentSynth(lambda z: z.sum(1), (C, L), n_sources=2)
    with pytest.raises(SDSAudioError, match="decoder returned"):
        bad(10)
