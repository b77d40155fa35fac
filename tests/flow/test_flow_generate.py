"""generate(): text -> audio through a tiny random embedded prior."""

from __future__ import annotations

import pytest
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.flow import generate
from sds_audio.priors.embedded import EmbeddedPrior


@pytest.fixture(scope="module")
def prior(text_encoder):
    from sds_audio.codec import Codec, CodecConfig
    from sds_audio.flow import FlowConfig, FlowModel

    torch.manual_seed(0)
    codec = Codec(CodecConfig(patch_size=4, encoder_channels=4, decoder_channels=4, channel_mults=(1, 2, 2),
                              strides=(4, 8), dilations=(1,), latent_channels=8))
    flow = FlowModel(FlowConfig(latent_channels=8, latent_rate=22050 / 128, width=32, depth=2, heads=2,
                                time_features=16, duration_features=8, max_duration_s=0.5))
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.1)
    return EmbeddedPrior(codec, flow, text_encoder=text_encoder, codec_precision="float32")


def test_generate_shape_and_seed(prior):
    a = generate("kick drum", seconds=0.3, steps=3, cfg=3.0, seed=1, prior=prior, progress=False)
    assert a.shape == (1, 1, round(0.3 * 22050)) and a.dtype == torch.float32 and torch.isfinite(a).all()
    b = generate("kick drum", seconds=0.3, steps=3, cfg=3.0, seed=1, prior=prior, progress=False)
    c = generate("kick drum", seconds=0.3, steps=3, cfg=3.0, seed=2, prior=prior, progress=False)
    assert torch.equal(a, b) and not torch.equal(a, c)
    mid = generate("kick drum", seconds=0.3, steps=3, cfg=3.0, seed=1, method="midpoint", prior=prior,
                   progress=False)
    assert mid.shape == a.shape and not torch.equal(mid, a)
    full = generate("kick drum", steps=1, prior=prior, progress=False)
    assert full.shape[-1] == round(prior.max_duration_s * 22050)


def test_generate_matches_the_prior_chain(prior):
    """Uniform Euler steps from pure noise are exactly the prior's denoise from t = 1."""
    out = generate("snare", seconds=0.2, steps=4, cfg=2.0, seed=3, sway_coef=None, prior=prior, progress=False)
    n = prior.latent_length(round(0.2 * 22050))
    noise = torch.randn(1, 8, n, generator=torch.Generator().manual_seed(3))
    latents = prior.denoise(noise, torch.ones(1), prior.condition("snare", seconds=0.2), 2.0, steps=4)
    torch.testing.assert_close(out, prior.decode(latents)[..., :round(0.2 * 22050)], atol=1e-5, rtol=1e-5)


def test_generate_errors(prior):
    with pytest.raises(SDSAudioError, match="seconds"):
        generate("kick", seconds=5.0, prior=prior, progress=False)
    with pytest.raises(SDSAudioError, match="steps"):
        generate("kick", steps=0, prior=prior, progress=False)
    with pytest.raises(SDSAudioError, match="prompt is empty"):
        generate("  ", prior=prior, progress=False)
