"""Samplers against flows with closed-form solutions; the sway-sampling warp."""

from __future__ import annotations

import pytest
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.flow.samplers import SWAY_MAX, integrate, sway_warp, time_grid


def point_velocity(c: torch.Tensor):
    """Exact marginal velocity when every data point is ``c``: ``v(x, s) = (c - x) / (1 - s)``."""
    def v(x, s):
        return (c - x) / (1.0 - s).clamp_min(1e-12).reshape(-1, *([1] * (x.dim() - 1)))
    return v


def gaussian_velocity(mu: float, sigma: float):
    """Exact marginal velocity from N(0, 1) to N(mu, sigma^2) on the linear path (affine in x)."""
    def v(x, s):
        s = s.reshape(-1, *([1] * (x.dim() - 1))).to(x)
        var = (1 - s) ** 2 + s ** 2 * sigma ** 2
        return mu + (s * sigma ** 2 - (1 - s)) / var * (x - s * mu)
    return v


@pytest.mark.parametrize("steps", [1, 3, 8])
@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_point_target_reached_exactly(steps, method):
    c = torch.full((1, 4, 6), 0.7, dtype=torch.float64)
    x0 = torch.randn(5, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = integrate(point_velocity(c), x0, time_grid(steps).double(), method)
    torch.testing.assert_close(out, c.expand_as(out))


def test_midpoint_beats_euler_on_a_curved_flow():
    mu, sigma = 1.5, 0.1
    noise = torch.randn(64, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    exact = mu + sigma * noise  # the 1-D flow is the monotone (optimal-transport) map
    v = gaussian_velocity(mu, sigma)
    fine = integrate(v, noise, time_grid(2000).double(), "midpoint")
    torch.testing.assert_close(fine, exact, atol=1e-6, rtol=0)
    for steps in (4, 8):
        err_euler = float((integrate(v, noise, time_grid(steps).double(), "euler") - exact).abs().max())
        err_mid = float((integrate(v, noise, time_grid(steps).double(), "midpoint") - exact).abs().max())
        assert err_mid < 0.5 * err_euler, (steps, err_mid, err_euler)
    # Euler converges at first order: halving the step roughly halves the error
    e16 = float((integrate(v, noise, time_grid(16).double(), "euler") - exact).abs().max())
    e32 = float((integrate(v, noise, time_grid(32).double(), "euler") - exact).abs().max())
    assert 1.6 < e16 / e32 < 2.5


def test_midpoint_uses_two_evaluations_per_step():
    calls = []

    def v(x, s):
        calls.append(s.clone())
        return torch.zeros_like(x)

    integrate(v, torch.zeros(2, 1, 1), time_grid(5), "midpoint")
    assert len(calls) == 10
    torch.testing.assert_close(calls[1], torch.full((2,), 0.1))


@pytest.mark.parametrize("coef", [-1.0, -0.5, 0.3, 1.0, SWAY_MAX])
def test_sway_warp_endpoints_and_monotone(coef):
    u = torch.linspace(0, 1, 1001, dtype=torch.float64)
    w = sway_warp(u, coef)
    assert abs(float(w[0])) < 1e-12 and abs(float(w[-1]) - 1.0) < 1e-12
    assert bool((w[1:] - w[:-1] >= -1e-12).all())


def test_sway_negative_concentrates_steps_early():
    uniform = time_grid(8)
    swayed = time_grid(8, sway_coef=-1.0)
    assert float(swayed[1] - swayed[0]) < 0.5 * float(uniform[1] - uniform[0])
    assert float(swayed[-1] - swayed[-2]) > float(uniform[-1] - uniform[-2])
    with pytest.raises(SDSAudioError):
        sway_warp(u=torch.zeros(2), coef=2.0)


def test_time_grid_per_row_start():
    start = torch.tensor([0.0, 0.5, 0.9])
    grid = time_grid(4, start, 1.0, sway_coef=-0.5)
    assert grid.shape == (5, 3)
    torch.testing.assert_close(grid[0], start)
    torch.testing.assert_close(grid[-1], torch.ones(3))
    assert bool((grid[1:] >= grid[:-1]).all())
    # rows with different starts integrate independently: the point flow still lands on c
    c = torch.full((1, 2, 3), -0.3, dtype=torch.float64)
    x = torch.randn(3, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out = integrate(point_velocity(c), x, grid.double(), "euler")
    torch.testing.assert_close(out, c.expand_as(out))
    with pytest.raises(SDSAudioError):
        time_grid(0)
    with pytest.raises(SDSAudioError):
        integrate(point_velocity(c), x, grid, "rk4")
