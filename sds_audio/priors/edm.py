"""EDM noise parameterisation and a deterministic DPM-Solver++ chain.

Stable Audio Open is a v-prediction diffusion model in the EDM form of Karras
et al.: a noisy latent is ``x = x0 + sigma * noise`` and the network ``F`` sees
preconditioned inputs, so the clean estimate is::

    x0_hat = c_skip(sigma) * x + c_out(sigma) * F(c_in(sigma) * x, c_noise(sigma))

    c_skip = sd^2 / (sigma^2 + sd^2)          c_in  = 1 / sqrt(sigma^2 + sd^2)
    c_out  = -/+ sigma * sd / sqrt(sigma^2 + sd^2)   (minus for v-prediction,
                                                      plus for epsilon)

with ``sd = sigma_data``. :class:`EDMParameterization` reads every number from
a diffusers scheduler *config* (``sigma_min``, ``sigma_max``, ``sigma_data``,
``prediction_type``, ``solver_order`` and ``_class_name``, which fixes the
noise conditioning ``c_noise``: ``atan(sigma) * 2 / pi`` for the cosine
scheduler Stable Audio Open ships with, ``log(sigma) / 4`` for the plain EDM
schedulers). No scheduler object is built and no stateful ``step()`` is used.

Noise level ``t`` (library convention, see :mod:`sds_audio.priors.base`):
``sigma(t) = sigma_data * tan(pi * t / 2)``, capped at ``sigma_max``. This is the
cosine (v-diffusion) time Stable Audio Open was trained in: ``c_noise`` of the
cosine scheduler is exactly ``t`` when ``sigma_data = 1``, and the
signal-to-noise ratio ``cot(pi t / 2)^2`` crosses 1 at ``t = 0.5`` like the
linear flow-matching path of the embedded prior, so one ``t`` range suits
both. ``t -> 0`` is clean (``sigma -> 0``); ``sigma_min`` only bounds the
pipeline's own sampling grid and is not a floor here.

The chain (:func:`dpm_solver_chain`) runs DPM-Solver++ (deterministic ODE form,
first or second order multistep, the order from the config) on a grid uniform
in ``t`` from the drawn level down to exactly 0. Its last step lands on
``sigma = 0``, where the update is the model's own clean estimate, so a
1-step chain returns ``x0_hat`` at the drawn level and ``k`` steps cost ``k``
network evaluations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from ..errors import SDSAudioError

#: diffusers scheduler class -> noise conditioning ``c_noise(sigma)``
NOISE_CONDITIONING_BY_SCHEDULER = {
    "CosineDPMSolverMultistepScheduler": "atan",
    "EDMDPMSolverMultistepScheduler": "log",
    "EDMEulerScheduler": "log",
}


@dataclass(frozen=True)
class EDMParameterization:
    """The numbers that define an EDM prior's noise process and preconditioning.

    Attributes:
        sigma_min: lowest non-zero sigma of the pipeline's sampling grid.
        sigma_max: largest sigma (``t = 1`` maps here).
        sigma_data: data standard deviation used by the preconditioning.
        prediction_type: ``"v_prediction"`` or ``"epsilon"``.
        noise_conditioning: ``"atan"`` (``c_noise = 2 atan(sigma) / pi``) or
            ``"log"`` (``c_noise = log(sigma) / 4``).
        solver_order: 1 (DDIM) or 2 (DPM-Solver++ 2M) for :func:`dpm_solver_chain`.
    """

    sigma_min: float = 0.3
    sigma_max: float = 500.0
    sigma_data: float = 1.0
    prediction_type: str = "v_prediction"
    noise_conditioning: str = "atan"
    solver_order: int = 2

    def __post_init__(self) -> None:
        if self.prediction_type not in ("v_prediction", "epsilon"):
            raise SDSAudioError(f"unsupported prediction_type {self.prediction_type!r} in the scheduler config; "
                                "expected 'v_prediction' or 'epsilon'")
        if self.noise_conditioning not in ("atan", "log"):
            raise SDSAudioError(f"unsupported noise conditioning {self.noise_conditioning!r}")
        if not (0 < self.sigma_min < self.sigma_max and self.sigma_data > 0):
            raise SDSAudioError("scheduler config needs 0 < sigma_min < sigma_max and sigma_data > 0")
        if self.solver_order not in (1, 2, 3):
            raise SDSAudioError(f"solver_order must be 1, 2 or 3, got {self.solver_order}")

    @classmethod
    def from_scheduler_config(cls, config: Mapping) -> "EDMParameterization":
        """Read a diffusers scheduler config (``scheduler/scheduler_config.json`` as a dict).

        Raises:
            SDSAudioError: the config names a scheduler whose noise conditioning
                is unknown, or holds unsupported values.
        """
        class_name = config.get("_class_name", "CosineDPMSolverMultistepScheduler")
        if class_name not in NOISE_CONDITIONING_BY_SCHEDULER:
            raise SDSAudioError(
                f"scheduler {class_name!r} is not an EDM scheduler this library understands; "
                f"known: {', '.join(NOISE_CONDITIONING_BY_SCHEDULER)}")
        return cls(
            sigma_min=float(config.get("sigma_min", 0.3)),
            sigma_max=float(config.get("sigma_max", 500.0)),
            sigma_data=float(config.get("sigma_data", 1.0)),
            prediction_type=str(config.get("prediction_type", "v_prediction")),
            noise_conditioning=NOISE_CONDITIONING_BY_SCHEDULER[class_name],
            solver_order=min(int(config.get("solver_order", 2)), 2),
        )

    # -- t <-> sigma --------------------------------------------------------------
    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` in [0, 1] -> ``sigma_data * tan(pi t / 2)``, capped at ``sigma_max`` (same shape)."""
        t = torch.as_tensor(t, dtype=torch.float32)
        t_cap = self.t_of_sigma(torch.tensor(self.sigma_max))
        return self.sigma_data * torch.tan(0.5 * math.pi * t.clamp(0.0, float(t_cap)))

    def t_of_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`sigma` below the cap."""
        return torch.atan(torch.as_tensor(sigma, dtype=torch.float32) / self.sigma_data) * (2.0 / math.pi)

    # -- preconditioning (elementwise in sigma) -------------------------------------
    def c_skip(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.sigma_data ** 2 / (sigma ** 2 + self.sigma_data ** 2)

    def c_out(self, sigma: torch.Tensor) -> torch.Tensor:
        c = sigma * self.sigma_data / torch.sqrt(sigma ** 2 + self.sigma_data ** 2)
        return -c if self.prediction_type == "v_prediction" else c

    def c_in(self, sigma: torch.Tensor) -> torch.Tensor:
        return 1.0 / torch.sqrt(sigma ** 2 + self.sigma_data ** 2)

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        """The network's timestep input for ``sigma``."""
        if self.noise_conditioning == "atan":
            return torch.atan(sigma) * (2.0 / math.pi)
        return 0.25 * torch.log(sigma)

    def x0_from_output(self, noisy: torch.Tensor, model_output: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``c_skip * x + c_out * F``; ``sigma`` has shape ``(B,)`` and broadcasts over the rest."""
        s = _expand(sigma, noisy)
        return self.c_skip(s) * noisy + self.c_out(s) * model_output

    def chain_sigmas(self, t: torch.Tensor, steps: int) -> torch.Tensor:
        """Sigma grid ``(steps + 1, B)`` of a ``steps``-step chain: uniform in ``t`` from ``t`` to 0."""
        if steps < 1:
            raise SDSAudioError(f"denoising steps must be >= 1, got {steps}")
        fractions = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float32)
        return self.sigma(fractions[:, None] * t.float().cpu()[None, :])


def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(B,)`` -> ``(B, 1, ..., 1)`` on ``like``'s device, float32."""
    return v.to(device=like.device, dtype=torch.float32).reshape(-1, *([1] * (like.dim() - 1)))


def dpm_solver_chain(noisy: torch.Tensor, sigmas: torch.Tensor,
                     x0_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], order: int = 2) -> torch.Tensor:
    """Deterministic DPM-Solver++ from ``sigmas[0]`` down to ``sigmas[-1]`` (which should be 0).

    Args:
        noisy: ``(B, ...)`` latents at noise level ``sigmas[0]``, float32.
        sigmas: ``(steps + 1, B)`` decreasing per column; the last row is 0.
        x0_fn: ``(x (B, ...), sigma (B,)) -> x0_hat (B, ...)``, the guided clean estimate.
        order: 1 (DDIM / DPM-Solver++ 1) or 2 (DPM-Solver++ 2M with the midpoint form).

    Returns:
        the clean latent ``(B, ...)`` after ``steps`` model evaluations.

    Update from level ``s`` to ``t`` with ``h = log(sigma_s / sigma_t)``::

        x_t = (sigma_t / sigma_s) * x_s + (1 - sigma_t / sigma_s) * D

    where ``D`` is the current clean estimate (order 1) or, for order 2, the
    estimate extrapolated with the previous one, ``D0 + (D0 - D_prev) / (2 r)``
    with ``r = h_prev / h``. A step that lands on ``sigma = 0`` returns ``D0``.
    """
    x = noisy.float()
    previous: tuple[torch.Tensor, torch.Tensor] | None = None  # (x0 estimate, h of the step that followed it)
    n_steps = sigmas.shape[0] - 1
    for i in range(n_steps):
        s_now, s_next = sigmas[i], sigmas[i + 1]
        d0 = x0_fn(x, s_now).float()
        if bool((s_next == 0).all()):
            x = d0
            break
        ratio = _expand(s_next / s_now, x)
        h = torch.log(s_now / s_next)
        d = d0
        if order >= 2 and previous is not None:
            d_prev, h_prev = previous
            r = _expand(h_prev / h, x)
            d = d0 + (d0 - d_prev) / (2.0 * r)
        x = ratio * x + (1.0 - ratio) * d
        previous = (d0, h)
    return x
