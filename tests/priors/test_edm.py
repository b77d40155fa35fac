"""EDM parameterisation (read from scheduler configs) and the deterministic DPM-Solver++ chain."""

from __future__ import annotations

import math

import pytest
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.priors.edm import EDMParameterization, dpm_solver_chain

COSINE_CONFIG = {"_class_name": "CosineDPMSolverMultistepScheduler", "sigma_min": 0.3, "sigma_max": 500.0,
                 "sigma_data": 1.0, "prediction_type": "v_prediction", "solver_order": 2}


def test_config_is_read_not_class():
    edm = EDMParameterization.from_scheduler_config(COSINE_CONFIG)
    assert (edm.sigma_max, edm.sigma_data, edm.noise_conditioning, edm.solver_order) == (500.0, 1.0, "atan", 2)
    edm2 = EDMParameterization.from_scheduler_config({**COSINE_CONFIG, "_class_name": "EDMDPMSolverMultistepScheduler",
                                                      "sigma_data": 0.5, "prediction_type": "epsilon"})
    assert (edm2.noise_conditioning, edm2.sigma_data, edm2.prediction_type) == ("log", 0.5, "epsilon")
    with pytest.raises(SDSAudioError, match="not an EDM scheduler"):
        EDMParameterization.from_scheduler_config({**COSINE_CONFIG, "_class_name": "DDIMScheduler"})
    with pytest.raises(SDSAudioError):
        EDMParameterization.from_scheduler_config({**COSINE_CONFIG, "prediction_type": "sample"})


@pytest.mark.parametrize("scheduler_name", ["CosineDPMSolverMultistepScheduler", "EDMDPMSolverMultistepScheduler"])
@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
def test_preconditioning_matches_diffusers_scheduler(scheduler_name, prediction_type):
    import diffusers

    config = {"sigma_min": 0.3, "sigma_max": 500.0, "sigma_data": 0.7, "prediction_type": prediction_type}
    scheduler = getattr(diffusers, scheduler_name)(**config)
    edm = EDMParameterization.from_scheduler_config({**config, "_class_name": scheduler_name})
    gen = torch.Generator().manual_seed(0)
    x, out = torch.randn(1, 3, 5, generator=gen), torch.randn(1, 3, 5, generator=gen)
    for s in (0.05, 0.3, 1.0, 7.5, 400.0):
        sigma = torch.tensor([s])
        assert torch.allclose(edm.c_in(sigma) * x, scheduler.precondition_inputs(x, sigma), rtol=1e-6)
        assert torch.allclose(edm.c_noise(sigma), scheduler.precondition_noise(sigma), rtol=1e-6)
        assert torch.allclose(edm.x0_from_output(x, out, sigma), scheduler.precondition_outputs(x, out, sigma),
                              rtol=1e-5, atol=1e-6)


def test_t_to_sigma_map():
    edm = EDMParameterization(sigma_data=1.0, sigma_max=500.0)
    t = torch.tensor([0.1, 0.5, 0.9])
    assert torch.allclose(edm.sigma(t), torch.tan(0.5 * math.pi * t), rtol=1e-5)
    assert edm.sigma(torch.tensor([0.5])).item() == pytest.approx(1.0, rel=1e-6)
    assert edm.sigma(torch.tensor([1.0])).item() == pytest.approx(500.0, rel=1e-4)
    assert torch.allclose(edm.t_of_sigma(edm.sigma(t)), t, atol=1e-6)
    # c_noise of the cosine scheduler is the library's t itself (sigma_data = 1)
    assert torch.allclose(edm.c_noise(edm.sigma(t)), t, atol=1e-6)
    grid = edm.chain_sigmas(torch.tensor([0.8, 0.3]), 4)
    assert grid.shape == (5, 2) and (grid[-1] == 0).all() and (grid[:-1] > grid[1:]).all()
    assert torch.allclose(grid[0], edm.sigma(torch.tensor([0.8, 0.3])))
    with pytest.raises(SDSAudioError):
        edm.chain_sigmas(torch.tensor([0.5]), 0)


def _gaussian_case(s_data: float = 0.8, sigma0: float = 3.0):
    """Data ~ N(0, s^2): exact denoiser s^2/(s^2+sigma^2) x, exact ODE solution x * s / sqrt(s^2 + sigma0^2)."""
    edm = EDMParameterization(sigma_data=1.0, sigma_max=500.0)
    t = edm.t_of_sigma(torch.tensor([sigma0, sigma0]))
    x = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0)) * math.sqrt(s_data ** 2 + sigma0 ** 2)

    def x0_fn(xs, sigma):
        return (s_data ** 2 / (s_data ** 2 + sigma ** 2)).reshape(-1, 1, 1) * xs

    exact = x * s_data / math.sqrt(s_data ** 2 + sigma0 ** 2)
    return edm, t, x, x0_fn, exact


def test_one_step_chain_is_the_clean_estimate():
    edm, t, x, x0_fn, _ = _gaussian_case()
    out = dpm_solver_chain(x, edm.chain_sigmas(t, 1), x0_fn)
    assert torch.allclose(out, x0_fn(x, edm.sigma(t)), rtol=1e-6)


def test_chain_converges_to_probability_flow_solution():
    edm, t, x, x0_fn, exact = _gaussian_case()

    def err(steps, order):
        out = dpm_solver_chain(x, edm.chain_sigmas(t, steps), x0_fn, order=order)
        return ((out - exact).norm() / exact.norm()).item()

    e2 = [err(k, 2) for k in (1, 2, 4, 8, 16)]
    assert all(a > b for a, b in zip(e2, e2[1:])), e2
    # the last step lands on sigma = 0 with the plain clean estimate, so the error is O(sigma_{k-1}^2)
    assert e2[-1] < 1e-2
    assert err(8, 2) < 0.2 * err(8, 1)  # second order beats DDIM at equal cost
