"""FlowModel: shapes, zero init, conditioning paths (text, null text, duration), masking, batching."""

from __future__ import annotations

import torch

from sds_audio.flow import FlowCondition, FlowConfig, FlowModel
from sds_audio.flow.embeddings import apply_rotary, rotary_cos_sin


def test_shapes_and_zero_init(make_flow, make_condition):
    model = make_flow(random_weights=False)
    x = torch.randn(2, 8, 13)  # odd length: padded to the patch and cropped back
    v = model(x, torch.tensor([0.2, 0.7]), make_condition(2))
    assert v.shape == x.shape
    assert float(v.detach().abs().max()) == 0.0  # adaLN-Zero gates and the output layer start at zero
    randomized = make_flow()
    v = randomized(x, torch.tensor([0.2, 0.7]), make_condition(2)).detach()
    assert v.shape == x.shape and torch.isfinite(v).all() and float(v.std()) > 1e-3


@torch.no_grad()
def test_conditioning_changes_output(make_flow, make_condition):
    model = make_flow()
    x = torch.randn(1, 8, 12, generator=torch.Generator().manual_seed(0))
    s = torch.tensor([0.4])
    base = model(x, s, make_condition(1, seconds=0.4))
    other_duration = model(x, s, make_condition(1, seconds=0.1))
    other_text = model(x, s, make_condition(1, seed=5))
    other_time = model(x, torch.tensor([0.6]), make_condition(1))
    for other in (other_duration, other_text, other_time):
        assert float((other - base).abs().max()) > 1e-3


@torch.no_grad()
def test_dropped_rows_ignore_their_text(make_flow, make_condition):
    model = make_flow()
    x = torch.randn(1, 8, 10, generator=torch.Generator().manual_seed(1))
    a = model(x, 0.5, make_condition(1, n_tokens=3, seed=1, drop=True))
    b = model(x, 0.5, make_condition(1, n_tokens=7, seed=2, drop=True))
    torch.testing.assert_close(a, b)
    kept = model(x, 0.5, make_condition(1, n_tokens=3, seed=1, drop=False))
    assert float((kept - a).abs().max()) > 1e-3
    # the null condition helper gives the same as any dropped row
    null = FlowCondition.unconditional(1, 0.4, 384)
    torch.testing.assert_close(model(x, 0.5, null), a)


@torch.no_grad()
def test_masked_tokens_do_not_matter_and_batching_is_exact(make_flow, make_condition):
    model = make_flow()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 8, 10, generator=g)
    cond = make_condition(2, n_tokens=6)
    cond.mask[1, 4:] = False
    v = model(x, torch.tensor([0.3, 0.8]), cond)
    cond2 = make_condition(2, n_tokens=6)
    cond2.mask[1, 4:] = False
    cond2.tokens[1, 4:] = 100.0  # garbage behind the mask
    torch.testing.assert_close(model(x, torch.tensor([0.3, 0.8]), cond2), v)
    # row 1 alone (tokens cut to its length) equals row 1 of the batch
    alone = FlowCondition(cond.tokens[1:, :4], cond.mask[1:, :4], cond.pooled[1:], cond.seconds[1:], cond.drop[1:])
    torch.testing.assert_close(model(x[1:], torch.tensor([0.8]), alone), v[1:], atol=1e-5, rtol=1e-5)


def test_normalize_roundtrip(make_flow):
    model = make_flow()
    model.latent_mean.copy_(torch.linspace(-1, 1, 8))
    model.latent_std.copy_(torch.linspace(0.5, 2, 8))
    z = torch.randn(3, 8, 5)
    torch.testing.assert_close(model.denormalize(model.normalize(z)), z)
    torch.testing.assert_close(model.normalize(z)[:, 0], (z[:, 0] + 1) / 0.5)


def test_rotary_is_relative():
    cos, sin = rotary_cos_sin(20, 8, 10000.0)
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(1, 1, 1, 8, generator=g), torch.randn(1, 1, 1, 8, generator=g)

    def score(i, j):
        return float((apply_rotary(q, cos[i], sin[i]) * apply_rotary(k, cos[j], sin[j])).sum())

    assert abs(score(3, 1) - score(10, 8)) < 1e-5
    assert abs(score(3, 1) - score(3, 2)) > 1e-4
    torch.testing.assert_close(apply_rotary(q, cos[5], sin[5]).norm(), q.norm())


def test_gradients_reach_every_parameter(make_flow, make_condition):
    model = make_flow()
    cond = make_condition(2)
    cond.drop[1] = True
    v = model(torch.randn(2, 8, 8), torch.tensor([0.1, 0.9]), cond)
    v.pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert all(float(p.grad.abs().sum()) > 0 for p in model.parameters())


def test_default_size_fits_the_budget():
    model = FlowModel(FlowConfig())
    assert 5e6 <= model.n_params <= 17.5e6  # <= ~35 MB in float16


@torch.no_grad()
def test_pooled_only_model_reads_the_pooled_embedding_alone(make_flow, make_condition, tmp_path):
    from sds_audio.flow.weights import load_flow, save_flow

    model = make_flow(cross_attention=False)
    assert not any("cross" in name or "text_proj" in name for name, _ in model.named_parameters())
    assert model.n_params < make_flow().n_params
    x = torch.randn(2, 8, 10, generator=torch.Generator().manual_seed(4))
    cond = make_condition(2, n_tokens=4, seed=1)
    v = model(x, 0.5, cond)
    # the tokens do not matter, the pooled embedding does
    other_tokens = FlowCondition(torch.randn(2, 9, 384), torch.ones(2, 9, dtype=torch.bool), cond.pooled,
                                 cond.seconds, cond.drop)
    torch.testing.assert_close(model(x, 0.5, other_tokens), v)
    other_pooled = make_condition(2, n_tokens=4, seed=7)
    assert float((model(x, 0.5, other_pooled) - v).abs().max()) > 1e-3
    # dropped rows use the null embedding, whatever their text
    dropped = model(x, 0.5, make_condition(2, seed=2, drop=True))
    torch.testing.assert_close(dropped, model(x, 0.5, FlowCondition.unconditional(2, 0.4, 384)))
    assert float((dropped - v).abs().max()) > 1e-3
    # the setting survives a save / load
    save_flow(model, tmp_path / "pooled.safetensors", dtype=torch.float32)
    loaded = load_flow(tmp_path / "pooled.safetensors")
    assert loaded.config.cross_attention is False
    torch.testing.assert_close(loaded(x, 0.5, cond), v)


def test_tanh_gelu_is_torchs_tanh_gelu_with_and_without_autograd():
    from sds_audio.flow.dit import TanhGELU

    x = torch.randn(4, 7, 64, generator=torch.Generator().manual_seed(0)) * 3
    reference = torch.nn.functional.gelu(x, approximate="tanh")
    with torch.no_grad():
        fast = TanhGELU()(x)
    torch.testing.assert_close(fast, reference, atol=2e-6, rtol=1e-5)
    assert not torch.equal(fast, torch.nn.functional.gelu(x))          # not the exact (erf) GELU
    xg = x.clone().requires_grad_(True)
    TanhGELU()(xg).sum().backward()
    xr = x.clone().requires_grad_(True)
    torch.nn.functional.gelu(xr, approximate="tanh").sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad)
