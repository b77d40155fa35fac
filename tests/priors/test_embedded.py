"""EmbeddedPrior on a tiny random codec + tiny random flow model + the real (local) MiniLM."""

from __future__ import annotations

import pytest
import torch

from sds_audio.codec import save_codec
from sds_audio.errors import SDSAudioError
from sds_audio.flow import FlowCondition, FlowConfig, FlowModel, save_flow
from sds_audio.flow.latents import latent_space_fingerprint
from sds_audio.priors.base import Prior
from sds_audio.priors.embedded import EmbeddedPrior, load_embedded_prior

from tiny_embedded import HOP, TINY_FLOW, build_parts  # tests/ is on pytest's pythonpath


@pytest.fixture(scope="module")
def text_encoder():
    from sds_audio.text import TextEncoder

    return TextEncoder()


@pytest.fixture(scope="module")
def prior(text_encoder) -> EmbeddedPrior:
    codec, flow = build_parts()
    return EmbeddedPrior(codec, flow, text_encoder=text_encoder, codec_precision="float32")


def _x(prior, batch=2, frames=20, seed=0):
    return torch.randn(batch, prior.latent_channels, frames, generator=torch.Generator().manual_seed(seed))


def test_protocol_and_layout(prior):
    assert isinstance(prior, Prior)
    assert prior.sample_rate == 22050 and prior.channels == 1 and prior.latent_channels == 8
    assert prior.latent_rate == pytest.approx(22050 / HOP) and prior.max_duration_s == 0.5
    audio = torch.randn(2, 1, 3000, generator=torch.Generator().manual_seed(0)) * 0.1
    z = prior.encode(audio)
    assert z.shape == (2, 8, prior.latent_length(3000)) == (2, 8, 24)
    torch.testing.assert_close(z, prior.flow.normalize(prior.codec.encode(audio)))
    # decode is differentiable
    z = z.clone().requires_grad_(True)
    out = prior.decode(z)
    assert out.shape == (2, 1, 24 * HOP)
    out.pow(2).sum().backward()
    assert z.grad is not None and float(z.grad.abs().sum()) > 0


def test_encode_is_differentiable_for_latent_sds(prior):
    g = torch.Generator().manual_seed(3)
    audio = (0.1 * torch.randn(1, 1, 600, generator=g)).requires_grad_(True)
    direction = 0.1 * torch.randn(1, 1, 600, generator=g)
    z = prior.encode(audio)
    assert z.requires_grad
    probe = torch.randn(z.shape, generator=g)
    (grad,) = torch.autograd.grad((z * probe).sum(), audio)
    with torch.no_grad():                      # directional derivative against a central difference
        h = 1e-2
        fd = ((prior.encode(audio + h * direction) - prior.encode(audio - h * direction)) * probe).sum() / (2 * h)
    assert float((grad * direction).sum()) == pytest.approx(float(fd), rel=2e-2)
    assert float(fd) != 0.0


def test_latent_sds_runs_on_the_embedded_prior(prior):
    from sds_audio.sds import SDSConfig, SDSObjective

    audio = (0.1 * torch.randn(2, 1, 3000, generator=torch.Generator().manual_seed(5))).requires_grad_(True)
    sds = SDSObjective(prior, "kick drum", SDSConfig(objective="latent", denoise_steps=2))
    result = sds(audio, prior.sample_rate, generator=torch.Generator().manual_seed(6))
    result.loss.backward()
    assert torch.isfinite(audio.grad).all() and float(audio.grad.abs().sum()) > 0
    assert torch.isfinite(result.grad_norm).all() and (result.grad_norm > 0).all()


def test_add_noise_and_noise_from_x0_are_consistent(prior):
    x0, noise = _x(prior, seed=1), _x(prior, seed=2)
    t = torch.tensor([0.3, 0.9])
    xt = prior.add_noise(x0, noise, t)
    torch.testing.assert_close(xt[0], 0.3 * noise[0] + 0.7 * x0[0])
    torch.testing.assert_close(prior.noise_from_x0(xt, x0, t), noise, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(prior.sigma(t), t)
    torch.testing.assert_close(prior.add_noise(x0, noise, torch.ones(2)), noise)


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_one_step_denoise_is_the_flow_formula(prior, text_encoder, scale):
    xt = _x(prior, seed=3)
    t = torch.tensor([0.4, 0.8])
    cond = prior.condition("kick drum, punchy")
    # independent computation: separate conditional and unconditional forwards
    tokens, mask, pooled = text_encoder.encode(["kick drum, punchy"])
    window_s = xt.shape[-1] / prior.latent_rate
    c = FlowCondition.from_text(tokens, mask, pooled, window_s).expand_to(2)
    u = FlowCondition.unconditional(2, window_s, 384)
    s = 1.0 - t
    with torch.no_grad():
        v_c, v_u = prior.flow(xt, s, c), prior.flow(xt, s, u)
    v = v_u + scale * (v_c - v_u)  # v = dx/ds, s = 1 - t
    expected = xt + t[:, None, None] * v  # = x_t - t * dx/dt
    got = prior.denoise(xt, t, cond, guidance_scale=scale, steps=1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(prior.velocity(xt, t, cond, scale), v, atol=1e-5, rtol=1e-5)
    # the implied noise estimate is consistent with the same velocity: eps = x_s - s * v
    eps = prior.noise_from_x0(xt, got, t)
    torch.testing.assert_close(eps, xt - s[:, None, None] * v, atol=1e-4, rtol=1e-4)


def test_multi_step_denoise(prior):
    xt = _x(prior, seed=4)
    t = torch.tensor([0.5, 1.0])
    cond = prior.condition("a bright bell")
    out = prior.denoise(xt, t, cond, guidance_scale=3.0, steps=4)
    assert out.shape == xt.shape and torch.isfinite(out).all()
    # manual 4-step Euler chain, row by row (each row has its own grid)
    for i in range(2):
        x = xt[i:i + 1]
        grid = torch.linspace(float(1 - t[i]), 1.0, 5)
        for k in range(4):
            v = prior.velocity(x, torch.tensor([1 - float(grid[k])]), cond, 3.0)
            x = x + (grid[k + 1] - grid[k]) * v
        torch.testing.assert_close(out[i:i + 1], x, atol=1e-4, rtol=1e-4)
    assert float((out - prior.denoise(xt, t, cond, 3.0, steps=1)).abs().max()) > 1e-3
    # t = 0 is already clean
    torch.testing.assert_close(prior.denoise(xt, torch.zeros(2), cond, 3.0, steps=3), xt)


def test_cfg_is_one_batched_forward(prior):
    xt = _x(prior, seed=5)
    cond = prior.condition("snare drum")
    sizes = []
    handle = prior.flow.register_forward_hook(lambda m, args, out: sizes.append(args[0].shape[0]))
    prior.denoise(xt, torch.tensor([0.5, 0.5]), cond, guidance_scale=5.0, steps=2)
    handle.remove()
    assert sizes == [4, 4]


def test_condition_cache_negative_prompt_and_duration(prior, text_encoder):
    a = prior.condition("glass bottle tapped")
    n = text_encoder.cache_size
    b = prior.condition("glass bottle tapped", seconds=0.05)  # shorter than the 20-frame window
    assert text_encoder.cache_size == n and b.tensors["cond"] is a.tensors["cond"]
    assert b.seconds == 0.05 and a.seconds == prior.max_duration_s
    xt = _x(prior, seed=6)
    t = torch.tensor([0.6, 0.6])
    plain = prior.denoise(xt, t, a, 4.0)
    shorter = prior.denoise(xt, t, b, 4.0)
    assert float((plain - shorter).abs().max()) > 1e-3  # duration conditioning acts
    neg = prior.condition("glass bottle tapped", negative="noise")
    assert float((prior.denoise(xt, t, neg, 4.0) - plain).abs().max()) > 1e-3
    # negative == prompt: both branches agree, so the guidance scale no longer matters
    same = prior.condition("glass bottle tapped", negative="glass bottle tapped")
    torch.testing.assert_close(prior.denoise(xt, t, same, 9.0), prior.denoise(xt, t, a, 1.0), atol=1e-4, rtol=1e-4)
    with pytest.raises(SDSAudioError):
        prior.condition("")
    with pytest.raises(SDSAudioError):
        prior.condition("kick", seconds=0)


def test_load_from_assets_dir(tmp_path, prior, text_encoder):
    with pytest.raises(SDSAudioError, match="codec.safetensors.*sds-audio train codec"):
        load_embedded_prior(assets_dir=tmp_path, text_encoder=text_encoder)
    save_codec(prior.codec, tmp_path / "codec.safetensors")
    with pytest.raises(SDSAudioError, match="flow.safetensors.*sds-audio train flow"):
        load_embedded_prior(assets_dir=tmp_path, text_encoder=text_encoder)
    save_flow(prior.flow, tmp_path / "flow.safetensors", dtype=torch.float32,
              extra_metadata={"codec_latent_sha256": latent_space_fingerprint(prior.codec)})
    loaded = load_embedded_prior(assets_dir=tmp_path, text_encoder=text_encoder)
    xt = _x(prior, seed=7)
    t = torch.tensor([0.5, 0.7])
    torch.testing.assert_close(loaded.denoise(xt, t, loaded.condition("kick drum"), 3.0, 2),
                               prior.denoise(xt, t, prior.condition("kick drum"), 3.0, 2))
    # a codec whose decoder alone changed (decoder-only fine-tuning) keeps the latent space: accepted
    tuned, _ = build_parts(seed=0)
    with torch.no_grad():
        for p in tuned.decoder.parameters():
            p.add_(0.01)
    save_codec(tuned, tmp_path / "codec.safetensors")
    assert load_embedded_prior(assets_dir=tmp_path, text_encoder=text_encoder).codec is not None
    # a flow file trained on another codec is refused
    other, _ = build_parts(seed=1)
    save_codec(other, tmp_path / "codec.safetensors")
    with pytest.raises(SDSAudioError, match="another codec"):
        load_embedded_prior(assets_dir=tmp_path, text_encoder=text_encoder)
    # broken files name the file
    (tmp_path / "flow.safetensors").write_bytes(b"broken")
    with pytest.raises(SDSAudioError, match="flow.safetensors.*sds-audio train flow"):
        load_embedded_prior(assets_dir=tmp_path, text_encoder=text_encoder)
    (tmp_path / "codec.safetensors").write_bytes(b"broken")
    with pytest.raises(SDSAudioError, match="codec.safetensors"):
        load_embedded_prior(assets_dir=tmp_path, text_encoder=text_encoder)


def test_registry_finds_the_embedded_prior(tmp_path, monkeypatch):
    from sds_audio.priors import registry

    monkeypatch.setattr("sds_audio.priors.embedded.default_assets_dir", lambda: tmp_path)
    with pytest.raises(SDSAudioError, match="codec.safetensors"):
        registry.load_prior("embedded")


def test_mismatched_parts_are_refused(text_encoder):
    codec, _ = build_parts()
    flow = FlowModel(FlowConfig(**{**TINY_FLOW, "latent_channels": 4}))
    with pytest.raises(SDSAudioError, match="latent channels"):
        EmbeddedPrior(codec, flow, text_encoder=text_encoder)


def test_codec_precision(text_encoder):
    codec, flow = build_parts()
    with pytest.raises(SDSAudioError, match="codec_precision"):
        EmbeddedPrior(codec, flow, text_encoder=text_encoder, codec_precision="half")
    exact = EmbeddedPrior(codec, flow, text_encoder=text_encoder, codec_precision="float32")
    fast = EmbeddedPrior(codec, flow, text_encoder=text_encoder, codec_precision="bfloat16")
    assert exact.codec_autocast is None and fast.codec_autocast is torch.bfloat16
    # "auto" follows the CPU; a float16 / bfloat16 prior never autocasts its codec
    auto = EmbeddedPrior(codec, flow, text_encoder=text_encoder)
    from sds_audio.priors.embedded import cpu_has_amx_bf16

    assert auto.codec_autocast is (torch.bfloat16 if cpu_has_amx_bf16() else None)
    assert EmbeddedPrior(*build_parts(), text_encoder=text_encoder, dtype=torch.bfloat16,  # own copies: .to()
                         codec_precision="bfloat16").codec_autocast is None                 # moves modules
    # bfloat16 keeps the prior's dtype and stays differentiable (how close it stays to float32 is
    # checked on the shipped codec in tests/codec/test_shipped_codec.py: random tiny weights say nothing)
    audio = torch.randn(2, 1, 3000, generator=torch.Generator().manual_seed(3)) * 0.1
    z32, zbf = exact.encode(audio), fast.encode(audio)
    assert zbf.dtype == torch.float32 and zbf.shape == z32.shape and not torch.equal(zbf, z32)
    z = z32.clone().requires_grad_(True)
    y32, ybf = exact.decode(z32), fast.decode(z)
    assert ybf.dtype == torch.float32 and ybf.shape == y32.shape and not torch.equal(ybf.detach(), y32)
    ybf.square().sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and float(z.grad.abs().sum()) > 0


def test_registry_passes_codec_precision_and_anchor_only_to_the_embedded_prior(monkeypatch):
    from sds_audio.priors import registry

    seen = {}
    monkeypatch.setattr("sds_audio.priors.embedded.load_embedded_prior",
                        lambda **kw: seen.setdefault("embedded", kw) and "embedded-prior")
    assert registry.load_prior("embedded", codec_precision="float32", anchor="caption") == "embedded-prior"
    assert seen["embedded"]["codec_precision"] == "float32" and seen["embedded"]["anchor"] == "caption"
    monkeypatch.setitem(registry.PRIORS, "stable-audio-open",
                        ("x", lambda source, device, dtype, **kw: seen.setdefault("sao", kw) and "sao-prior"))
    assert registry.load_prior("stable-audio-open", codec_precision="float32", anchor="off",
                               token="t") == "sao-prior"
    assert seen["sao"] == {"token": "t"}
