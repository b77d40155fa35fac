"""StableAudioToolsPrior against the real stable-audio-tools package (extra ``sat``).

Skipped where stable-audio-tools is not importable (the core environment). In an
environment with the extra, tiny randomly initialised ``diffusion_cond`` models
are built with the package's own factory (Oobleck VAE pretransform, DiT, T5 +
number conditioners), saved as ``model_config.json`` + ``model.safetensors`` and
loaded back through :func:`sds_audio.priors.registry.load_prior`. The T5
conditioner calls ``from_pretrained(name)``; here that returns a tiny random T5
encoder and the word-level tokenizer of ``conftest.py``, so nothing is downloaded.

The oracles are the package's own code: k-diffusion's ``VDenoiser`` and
DPM-Solver++(2M) sampler (what stable-audio-tools samples ``v`` models with), and
stable-audio-tools' rectified-flow Euler and ping-pong samplers. They run on the
latents they are given, so the prior under test denoises the clip's frames only
(``window="clip"``); the full-window default is checked against the same samplers
on the prior's padded window.
"""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("stable_audio_tools")

import transformers  # noqa: E402
from huggingface_hub import constants as hub_constants  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import T5Config, T5EncoderModel  # noqa: E402

from sds_audio.errors import SDSAudioError  # noqa: E402
from sds_audio.priors.registry import load_prior  # noqa: E402
from sds_audio.priors.stable_audio_tools import StableAudioToolsPrior  # noqa: E402
from sds_audio.sds import SDSConfig, SDSObjective, prepare_audio, spectral_emphasis_loss  # noqa: E402

RATE = 4000        # Hz
HOP = 8            # Oobleck strides 2 x 4
LATENT = 4         # latent channels
SCALE = 1.5        # pretransform scale (latents are divided by it)
MAX_S = 2.0        # sample_size / sample_rate
OBJECTIVES = ("v", "rf_denoiser")


def tiny_config(objective: str, model_half: bool = False) -> dict:
    """A stable-audio-tools ``diffusion_cond`` config shaped like Stable Audio Open's, at toy sizes."""
    oobleck = {"channels": 4, "c_mults": [1, 2], "strides": [2, 4], "use_snake": True}
    autoencoder = {"encoder": {"type": "oobleck", "config": {**oobleck, "in_channels": 2, "latent_dim": 2 * LATENT}},
                   "decoder": {"type": "oobleck", "config": {**oobleck, "out_channels": 2, "latent_dim": LATENT,
                                                             "final_tanh": False}},
                   "bottleneck": {"type": "vae"}, "latent_dim": LATENT, "downsampling_ratio": HOP, "io_channels": 2}
    # dim_heads = embed_dim / num_heads = 32; the conditioning width must be a multiple of it
    # (key/value heads) and the rotary embedding needs dim_heads >= 32.
    dit = {"io_channels": LATENT, "embed_dim": 64, "depth": 1, "num_heads": 2, "cond_token_dim": 32,
           "global_cond_dim": 32, "project_cond_tokens": False, "transformer_type": "continuous_transformer",
           "attn_kwargs": {"qk_norm": "ln"}}
    return {
        "model_type": "diffusion_cond", "sample_rate": RATE, "sample_size": int(MAX_S * RATE), "audio_channels": 2,
        "model": {
            "pretransform": {"type": "autoencoder", "config": autoencoder, "scale": SCALE, "model_half": model_half},
            "conditioning": {"cond_dim": 32, "configs": [
                {"id": "prompt", "type": "t5", "config": {"t5_model_name": "t5-small", "max_length": 12}},
                {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 4}}]},
            "diffusion": {"type": "dit", "diffusion_objective": objective, "config": dit,
                          "cross_attention_cond_ids": ["prompt", "seconds_total"],
                          "global_cond_ids": ["seconds_total"]},
            "io_channels": LATENT,
        },
    }


@pytest.fixture(scope="module")
def fake_t5(tiny_builder):
    """Patch transformers' ``from_pretrained`` (as the T5 conditioner calls it) to return tiny random parts.

    Records each requested name and whether the hub was in offline mode at that moment.
    """
    tokenizer = tiny_builder["tokenizer"](12)
    torch.manual_seed(1)
    # "t5-small" fixes the conditioner's input width at 512 (stable-audio-tools' table).
    encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=512, d_kv=8, d_ff=16, num_layers=1,
                                      num_heads=2, decoder_start_token_id=0, pad_token_id=0))
    state = {"calls": [], "fail": False, "offline_before": hub_constants.HF_HUB_OFFLINE}

    def load_tokenizer(name, *args, **kwargs):
        state["calls"].append((name, hub_constants.HF_HUB_OFFLINE))
        if state["fail"]:
            raise OSError(f"{name} is not in the local cache")
        return tokenizer

    def load_encoder(name, *args, **kwargs):
        state["calls"].append((name, hub_constants.HF_HUB_OFFLINE))
        return encoder

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(transformers.AutoTokenizer, "from_pretrained", staticmethod(load_tokenizer))
        mp.setattr(transformers.T5EncoderModel, "from_pretrained", staticmethod(load_encoder))
        yield state


def build_model(objective: str, seed: int = 0, model_half: bool = False) -> torch.nn.Module:
    """The package's factory on the tiny config; the DiT's zero-initialised weights made random."""
    from stable_audio_tools.models.factory import create_model_from_config

    torch.manual_seed(seed)
    model = create_model_from_config(tiny_config(objective, model_half))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # Output projections start at zero, which would make the DiT ignore its conditioning.
        for name, p in model.named_parameters():
            if name.startswith("model.") and not p.abs().sum():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval().requires_grad_(False)


def save_model(model: torch.nn.Module, objective: str, directory, model_half: bool = False) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model_config.json").write_text(json.dumps(tiny_config(objective, model_half)))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / "model.safetensors"))


@pytest.fixture(scope="module", params=OBJECTIVES)
def sat_prior(request, fake_t5, tmp_path_factory):
    """(objective, the reference model, the prior loaded from disk through the registry, clip window)."""
    objective = request.param
    model = build_model(objective)
    directory = tmp_path_factory.mktemp(f"sat-{objective}")
    save_model(model, objective, directory)
    fake_t5["calls"].clear()
    prior = load_prior(str(directory), device="cpu", window="clip")
    return objective, model, prior


def batch_cond(model, prompts, seconds):
    """Conditioning inputs built by the package itself for a batch of metadata items."""
    meta = [{"prompt": p, "seconds_total": s} for p, s in zip(prompts, seconds)]
    return model.get_conditioning_inputs(model.conditioner(meta, "cpu"))


def latents(batch: int, n: int = 12, seed: int = 3) -> torch.Tensor:
    return torch.randn(batch, LATENT, n, generator=torch.Generator().manual_seed(seed))


# -- loading -------------------------------------------------------------------------


def test_load_prior_builds_the_model_offline(sat_prior, fake_t5):
    objective, model, prior = sat_prior
    assert isinstance(prior, StableAudioToolsPrior)
    assert prior.form == ("v" if objective == "v" else "flow")
    assert (prior.sample_rate, prior.channels, prior.latent_channels, prior.hop_length) == (RATE, 2, LATENT, HOP)
    assert prior.latent_rate == RATE / HOP and prior.max_duration_s == MAX_S
    # the T5 conditioner asked for the config's checkpoint, with the hub held offline
    assert fake_t5["calls"] and all(c == ("t5-small", True) for c in fake_t5["calls"])
    assert hub_constants.HF_HUB_OFFLINE == fake_t5["offline_before"]  # restored after loading
    saved, loaded = model.state_dict(), prior.model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert not any(p.requires_grad for p in prior.model.parameters())


def test_missing_t5_and_bad_weights_raise_library_errors(fake_t5, tmp_path):
    model = build_model("v")
    directory = tmp_path / "m"
    save_model(model, "v", directory)
    fake_t5["fail"] = True
    try:
        with pytest.raises(SDSAudioError, match=r"t5-small.*allow_download=True"):
            StableAudioToolsPrior.from_pretrained(directory, device="cpu")
    finally:
        fake_t5["fail"] = False
    weights = {k: v.contiguous() for k, v in model.state_dict().items() if "postprocess_conv" not in k}
    save_file(weights, str(directory / "model.safetensors"))
    with pytest.raises(SDSAudioError, match="model.safetensors does not hold weights"):
        StableAudioToolsPrior.from_pretrained(directory, device="cpu")


# -- autoencoder -----------------------------------------------------------------------


def test_encode_is_the_vae_mean_and_decode_round_trips(sat_prior, monkeypatch):
    _, model, prior = sat_prior
    audio = 0.3 * torch.randn(2, 2, 100, generator=torch.Generator().manual_seed(0))
    z = prior.encode(audio)
    assert z.shape == (2, LATENT, 13) and z.dtype == torch.float32 and torch.isfinite(z).all()
    assert prior.latent_length(100) == 13
    # oracle: the package's own encode (which samples the VAE posterior) with its noise switched off
    padded = torch.nn.functional.pad(audio, (0, 13 * HOP - 100))
    with monkeypatch.context() as mp:
        mp.setattr(torch, "randn_like", torch.zeros_like)
        expected = model.pretransform.encode(padded)
    torch.testing.assert_close(z, expected, rtol=1e-5, atol=1e-6)
    assert z.abs().max() > 1e-3  # not a degenerate all-zero encoder
    y = prior.decode(z)
    assert y.shape == (2, 2, 13 * HOP) and torch.isfinite(y).all()
    torch.testing.assert_close(y, model.pretransform.decode(z))   # decode multiplies the scale back
    torch.testing.assert_close(prior.encode(y), prior.encode(y))  # deterministic
    # differentiable with respect to the audio (latent SDS goes through it)
    leaf = audio.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(prior.encode(leaf).square().sum(), leaf)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    with pytest.raises(ValueError, match="encode expects"):
        prior.encode(audio[:, :1])


def test_a_half_precision_pretransform_config_keeps_the_prior_dtype(fake_t5, tmp_path):
    """``model_half`` would recast the autoencoder to float16 on the first decode and break encode."""
    directory = tmp_path / "half"
    save_model(build_model("rf_denoiser", model_half=True), "rf_denoiser", directory, model_half=True)
    prior = StableAudioToolsPrior.from_pretrained(directory, device="cpu")
    audio = 0.3 * torch.randn(1, 2, 64, generator=torch.Generator().manual_seed(1))
    first = prior.encode(audio)
    y = prior.decode(first)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    torch.testing.assert_close(prior.encode(audio), first)  # still float32 after a decode
    assert all(p.dtype == torch.float32 for p in prior.model.pretransform.parameters())


# -- noise -----------------------------------------------------------------------------


def test_add_noise_and_noise_from_x0_follow_the_training_formula(sat_prior):
    from stable_audio_tools.inference.sampling import get_alphas_sigmas

    objective, _, prior = sat_prior
    z, eps = latents(4), latents(4, seed=4)
    t = torch.tensor([0.1, 0.4, 0.7, 0.95])
    z_t = prior.add_noise(z, eps, t)
    if objective == "v":
        # EDM form x0 + tan(pi t / 2) noise; scaled by c_in it is the package's alpha x0 + sigma noise
        alpha, sigma = get_alphas_sigmas(t)
        c_in = prior.edm.c_in(prior.sigma(t)).reshape(-1, 1, 1)
        torch.testing.assert_close(c_in * z_t, alpha.reshape(-1, 1, 1) * z + sigma.reshape(-1, 1, 1) * eps)
    else:
        torch.testing.assert_close(z_t, (1 - t).reshape(-1, 1, 1) * z + t.reshape(-1, 1, 1) * eps)
    torch.testing.assert_close(prior.noise_from_x0(z_t, z, t), eps, rtol=1e-4, atol=1e-4)
    shared = prior.add_noise(z, eps, torch.tensor([0.4]))  # one level for the whole batch
    torch.testing.assert_close(shared, prior.add_noise(z, eps, torch.full((4,), 0.4)))
    with pytest.raises(SDSAudioError, match=r"\(0, 1\]"):
        prior.add_noise(z, eps, torch.tensor([0.0, 0.4, 0.7, 1.2]))


# -- denoising ---------------------------------------------------------------------------


def one_step_oracle(objective, model, prior, x, t, cond_inputs, g):
    """The package's own clean estimate at per-item levels ``t``."""
    kwargs = dict(cond_inputs, cfg_scale=g, batch_cfg=True)
    with torch.no_grad():
        if objective == "v":
            from k_diffusion.external import VDenoiser

            return VDenoiser(model.model)(x, prior.sigma(t), **kwargs)
        return x - t.reshape(-1, 1, 1) * model.model(x, t, **kwargs)


@pytest.mark.parametrize("g", [1.0, 4.0])
def test_one_step_denoise_is_the_models_own_estimate(sat_prior, g):
    objective, model, prior = sat_prior
    t = torch.tensor([0.2, 0.5, 0.9])
    x = prior.add_noise(latents(3), latents(3, seed=5), t)
    cond = prior.condition("kick drum", seconds=1.0)
    got = prior.denoise(x, t, cond, guidance_scale=g, steps=1)
    want = one_step_oracle(objective, model, prior, x, t, batch_cond(model, ["kick drum"] * 3, [1.0] * 3), g)
    assert got.shape == x.shape and torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # and through the package's samplers, with one level shared by the batch
    kwargs = dict(batch_cond(model, ["kick drum"] * 3, [1.0] * 3), cfg_scale=g, batch_cfg=True)
    with torch.no_grad():
        if objective == "v":
            from k_diffusion.external import VDenoiser
            from k_diffusion.sampling import sample_dpmpp_2m

            s = prior.sigma(torch.tensor(0.5))
            sampled = sample_dpmpp_2m(VDenoiser(model.model), x * 1.0, torch.stack([s, torch.tensor(0.0)]),
                                      extra_args=kwargs, disable=True)
        else:
            from stable_audio_tools.inference.sampling import sample_flow_pingpong

            sampled = sample_flow_pingpong(model.model, x * 1.0, sigmas=torch.tensor([0.5, 0.0]), **kwargs)
    torch.testing.assert_close(prior.denoise(x, torch.tensor([0.5]), cond, g, steps=1), sampled,
                               rtol=1e-4, atol=1e-4)


def test_multi_step_chain_matches_the_package_sampler(sat_prior):
    objective, model, prior = sat_prior
    t, g, k = 0.7, 3.0, 3
    x = prior.add_noise(latents(2), latents(2, seed=6), torch.tensor([t]))
    cond = prior.condition("snare", seconds=1.5)
    got = prior.denoise(x, torch.tensor([t, t]), cond, guidance_scale=g, steps=k)
    kwargs = dict(batch_cond(model, ["snare"] * 2, [1.5] * 2), cfg_scale=g, batch_cfg=True)
    with torch.no_grad():
        if objective == "v":
            from k_diffusion.external import VDenoiser
            from k_diffusion.sampling import sample_dpmpp_2m

            sigmas = prior.edm.chain_sigmas(torch.tensor([t]), k)[:, 0]
            want = sample_dpmpp_2m(VDenoiser(model.model), x * 1.0, sigmas, extra_args=kwargs, disable=True)
        else:
            from stable_audio_tools.inference.sampling import sample_discrete_euler

            want = sample_discrete_euler(model.model, x * 1.0, sigmas=torch.linspace(t, 0.0, k + 1),
                                         disable_tqdm=True, **kwargs)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    one = prior.denoise(x, torch.tensor([t, t]), cond, guidance_scale=g, steps=1)
    assert (got - one).abs().max() > 1e-3  # the extra steps change the estimate


def test_full_window_chain_matches_the_package_sampler_on_the_padded_window(sat_prior):
    objective, model, clip_prior = sat_prior
    prior = StableAudioToolsPrior(model, tiny_config(objective), device="cpu")  # window="full", the default
    assert prior.window.mode == "full" and prior.window.n_frames == int(MAX_S * RATE) // HOP
    t, g, k = 0.6, 3.0, 3
    x = prior.add_noise(latents(2), latents(2, seed=10), torch.tensor([t]))
    window = prior.window_latents(x, torch.tensor([t, t]))
    assert window.shape == (2, LATENT, prior.window.n_frames) and torch.equal(window[..., :12], x)
    cond = prior.condition("snare", seconds=0.5)
    got = prior.denoise(x, torch.tensor([t, t]), cond, guidance_scale=g, steps=k)
    kwargs = dict(batch_cond(model, ["snare"] * 2, [0.5] * 2), cfg_scale=g, batch_cfg=True)
    with torch.no_grad():
        if objective == "v":
            from k_diffusion.external import VDenoiser
            from k_diffusion.sampling import sample_dpmpp_2m

            sigmas = prior.edm.chain_sigmas(torch.tensor([t]), k)[:, 0]
            want = sample_dpmpp_2m(VDenoiser(model.model), window * 1.0, sigmas, extra_args=kwargs, disable=True)
        else:
            from stable_audio_tools.inference.sampling import sample_discrete_euler

            want = sample_discrete_euler(model.model, window * 1.0, sigmas=torch.linspace(t, 0.0, k + 1),
                                         disable_tqdm=True, **kwargs)
    torch.testing.assert_close(got, want[..., :12], rtol=1e-4, atol=1e-4)
    short = clip_prior.denoise(x, torch.tensor([t, t]), clip_prior.condition("snare", seconds=0.5), g, steps=k)
    assert (got - short).abs().max() > 1e-3  # the window changes the estimate


def test_cfg_batching_equals_separate_branches(sat_prior):
    objective, model, prior = sat_prior
    t, g = torch.tensor([0.3, 0.8]), 5.0
    x = prior.add_noise(latents(2), latents(2, seed=7), t)
    cond = prior.condition("metal bell", seconds=1.0)
    guided = prior.denoise(x, t, cond, guidance_scale=g)
    conditional = prior.denoise(x, t, cond, guidance_scale=1.0)  # no CFG: the conditional branch alone
    # unconditional branch as the DiT defines it: cross-attention tokens zeroed, duration kept
    inputs = batch_cond(model, ["metal bell"] * 2, [1.0] * 2)
    inputs["cross_attn_cond"] = torch.zeros_like(inputs["cross_attn_cond"])
    unconditional = one_step_oracle(objective, model, prior, x, t, inputs, 1.0)
    torch.testing.assert_close(guided, unconditional + g * (conditional - unconditional), rtol=1e-4, atol=1e-4)
    assert (guided - conditional).abs().max() > 1e-2  # guidance changes the estimate
    # with a negative prompt the unconditional branch is that prompt's conditional branch
    negative = prior.condition("metal bell", negative="soft pad", seconds=1.0)
    other = prior.denoise(x, t, prior.condition("soft pad", seconds=1.0), guidance_scale=1.0)
    torch.testing.assert_close(prior.denoise(x, t, negative, guidance_scale=g), other + g * (conditional - other),
                               rtol=1e-4, atol=1e-4)


def test_a_batch_equals_its_items(sat_prior):
    _, _, prior = sat_prior
    t = torch.tensor([0.25, 0.6, 0.9])
    x = prior.add_noise(latents(3), latents(3, seed=8), t)
    cond = prior.condition("low kick", seconds=0.5)
    together = prior.denoise(x, t, cond, guidance_scale=3.0, steps=2)
    alone = torch.cat([prior.denoise(x[i:i + 1], t[i:i + 1], cond, guidance_scale=3.0, steps=2) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)


def test_seconds_conditioning_reaches_the_model(sat_prior):
    _, model, prior = sat_prior
    short, long = prior.condition("kick drum", seconds=0.5), prior.condition("kick drum", seconds=1.5)
    assert prior.condition("kick drum", seconds=0.5) is short  # cached
    with torch.no_grad():
        embed = model.conditioner.conditioners["seconds_total"]([1.5], "cpu")[0]  # (1, 1, 32)
    torch.testing.assert_close(long.tensors["global_cond"], embed[:, 0])
    torch.testing.assert_close(long.tensors["cross_attn_cond"][:, -1], embed[:, 0])  # last token: the duration
    assert (short.tensors["global_cond"] - long.tensors["global_cond"]).abs().max() > 1e-3
    t = torch.tensor([0.5, 0.5])
    x = prior.add_noise(latents(2), latents(2, seed=9), t)
    gap = (prior.denoise(x, t, short, 3.0) - prior.denoise(x, t, long, 3.0)).abs().max()
    assert gap > 1e-3
    with pytest.raises(SDSAudioError, match="outside"):
        prior.condition("kick drum", seconds=MAX_S + 0.5)


# -- SDS -------------------------------------------------------------------------------


def render(params: dict, n_samples: int, rate: int) -> torch.Tensor:
    """A decaying sine, mono ``(2, 1, T)`` (two candidates), differentiable in its parameters."""
    time_s = torch.arange(n_samples) / rate
    f0_hz, gain, decay_s = params["f0_hz"].reshape(-1, 1), params["gain"].reshape(-1, 1), params["decay_s"]
    wave = gain * torch.exp(-time_s / decay_s.reshape(-1, 1)) * torch.sin(2 * torch.pi * f0_hz * time_s)
    return wave.unsqueeze(1)


@pytest.mark.parametrize("objective_kind", ["decoder", "latent"])
def test_an_sds_step_gives_finite_gradients_on_a_render(sat_prior, objective_kind):
    _, _, prior = sat_prior
    rate = 8000  # the render runs at twice the prior's rate and in mono: SDS resamples and upmixes
    params = {"f0_hz": torch.tensor([300.0, 500.0], requires_grad=True),
              "gain": torch.tensor([0.5, 0.3], requires_grad=True),
              "decay_s": torch.tensor([0.1, 0.2], requires_grad=True)}
    config = SDSConfig(objective=objective_kind, guidance_scale=3.0, denoise_steps=2, n_draws=1,
                       n_ffts=(64, 128), seed=1)
    sds = SDSObjective(prior, "kick drum", config)
    audio = render(params, 4000, rate)  # 0.5 s
    result = sds(audio, rate, progress=0.3)
    result.loss.backward()
    grads = torch.cat([p.grad for p in params.values()])
    assert torch.isfinite(grads).all() and grads.abs().sum() > 0
    assert torch.isfinite(result.item_loss).all() and (result.grad_norm > 0).all()
    assert result.x_hat.shape == (2, 2, 2000) and result.sample_rate == RATE
    if objective_kind == "decoder":
        # the update is the gradient of the spectral loss towards the prior's decoded estimate
        leaf = audio.detach().requires_grad_(True)
        x = prepare_audio(leaf, rate, prior)
        loss = spectral_emphasis_loss(sds.emphasis(x), [s.detach() for s in sds.emphasis(result.x_hat)])
        (want,) = torch.autograd.grad(loss.sum(), leaf)
        leaf2 = audio.detach().requires_grad_(True)
        sds2 = SDSObjective(prior, "kick drum", config)
        (got,) = torch.autograd.grad(sds2(leaf2, rate, progress=0.3).loss, leaf2)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
