"""The conditional flow-matching path and loss against direct computation."""

from __future__ import annotations

import math

import pytest
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.flow.path import (cfm_loss, clean_from_velocity, interpolate, noise_from_velocity, sample_time,
                                 target_velocity)


def test_path_endpoints_and_velocity():
    g = torch.Generator().manual_seed(0)
    noise, data = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g)
    assert torch.equal(interpolate(noise, data, torch.zeros(3)), noise)
    assert torch.equal(interpolate(noise, data, torch.ones(3)), data)
    s = torch.tensor([0.25, 0.5, 0.9])
    x = interpolate(noise, data, s)
    torch.testing.assert_close(x[1], 0.5 * (noise[1] + data[1]))
    # finite-difference derivative along s equals the target velocity
    h = 1e-3
    dx = (interpolate(noise, data, s + h) - interpolate(noise, data, s - h)) / (2 * h)
    torch.testing.assert_close(dx, target_velocity(noise, data), atol=1e-3, rtol=1e-3)
    # with the exact velocity one step reaches either end
    v = target_velocity(noise, data)
    torch.testing.assert_close(clean_from_velocity(x, s, v), data)
    torch.testing.assert_close(noise_from_velocity(x, s, v), noise)


def test_cfm_loss_matches_manual():
    g = torch.Generator().manual_seed(1)
    v, noise, data = (torch.randn(2, 3, 7, generator=g) for _ in range(3))
    manual = ((v - (data - noise)) ** 2).sum() / v.numel()
    torch.testing.assert_close(cfm_loss(v, noise, data), manual)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[0, :3] = True
    mask[1, :5] = True
    err = (v - (data - noise)) ** 2
    manual_masked = (err[0, :, :3].sum() + err[1, :, :5].sum()) / (3 * (3 + 5))
    torch.testing.assert_close(cfm_loss(v, noise, data, mask), manual_masked)
    assert float(cfm_loss(data - noise, noise, data)) == 0.0


def test_time_sampling():
    a = sample_time(20000, torch.Generator().manual_seed(3), "logit_normal")
    b = sample_time(20000, torch.Generator().manual_seed(3), "logit_normal")
    assert torch.equal(a, b)
    assert 0 < float(a.min()) and float(a.max()) < 1
    assert abs(float(a.mean()) - 0.5) < 0.01
    # logit-normal: logit(s) ~ N(0, 1)
    z = torch.log(a / (1 - a))
    assert abs(float(z.std()) - 1.0) < 0.03
    # the density concentrates in the middle: P(0.25 < s < 0.75) = P(|z| < log 3) ~ 0.727
    inside = float(((a > 0.25) & (a < 0.75)).float().mean())
    assert abs(inside - math.erf(math.log(3) / math.sqrt(2))) < 0.02
    u = sample_time(20000, torch.Generator().manual_seed(3), "uniform")
    assert abs(float(((u > 0.25) & (u < 0.75)).float().mean()) - 0.5) < 0.02
    with pytest.raises(SDSAudioError):
        sample_time(3, None, "cosine")
