"""Classifier-free guidance: scale 1 / 0 limits, batched forward equals separate ones."""

from __future__ import annotations

import torch

from sds_audio.flow import FlowCondition
from sds_audio.flow.guidance import cfg_combine, guided_velocity


def _setup(make_flow, make_condition):
    model = make_flow()
    x = torch.randn(2, 8, 9, generator=torch.Generator().manual_seed(0))
    s = torch.tensor([0.25, 0.6])
    cond = make_condition(2, n_tokens=4)
    uncond = FlowCondition.unconditional(2, cond.seconds, 384)
    return model, x, s, cond, uncond


@torch.no_grad()
def test_scale_one_is_conditional_and_zero_unconditional(make_flow, make_condition):
    model, x, s, cond, uncond = _setup(make_flow, make_condition)
    v_cond, v_uncond = model(x, s, cond), model(x, s, uncond)
    torch.testing.assert_close(guided_velocity(model, cond, None, 1.0)(x, s), v_cond)
    torch.testing.assert_close(guided_velocity(model, cond, None, 0.0)(x, s), v_uncond, atol=1e-5, rtol=1e-5)
    assert float((v_cond - v_uncond).abs().max()) > 1e-3


@torch.no_grad()
def test_batched_equals_separate_forwards(make_flow, make_condition):
    model, x, s, cond, uncond = _setup(make_flow, make_condition)
    expected = cfg_combine(model(x, s, cond), model(x, s, uncond), 3.5)
    torch.testing.assert_close(guided_velocity(model, cond, uncond, 3.5)(x, s), expected, atol=1e-5, rtol=1e-5)
    calls = []
    handle = model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    guided_velocity(model, cond, uncond, 3.5)(x, s)
    handle.remove()
    assert calls == [4]  # one forward over cond + uncond


@torch.no_grad()
def test_negative_prompt_replaces_the_unconditional_branch(make_flow, make_condition):
    model, x, s, cond, _ = _setup(make_flow, make_condition)
    negative = make_condition(1, n_tokens=2, seed=9)
    expected = cfg_combine(model(x, s, cond), model(x, s, negative.expand_to(2)), 2.0)
    torch.testing.assert_close(guided_velocity(model, cond, negative, 2.0)(x, s), expected, atol=1e-5, rtol=1e-5)
    # negative == positive: guidance has nothing to push against, any scale gives the conditional velocity
    torch.testing.assert_close(guided_velocity(model, cond, cond, 6.0)(x, s), model(x, s, cond), atol=1e-4,
                               rtol=1e-4)


@torch.no_grad()
def test_cfg_combine_formula():
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0])
    torch.testing.assert_close(cfg_combine(a, b, 3.0), b + 3.0 * (a - b))
