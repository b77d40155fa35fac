"""ODE samplers for the flow ``dx/ds = v(x, s)``: time grids (with sway sampling), Euler, midpoint.

All samplers take a ``velocity(x, s) -> v`` callable (``s`` of shape ``(B,)``),
so classifier-free guidance (:mod:`sds_audio.flow.guidance`) or an exact test
field plugs in the same way. Grids may differ per batch row: a ``(steps + 1, B)``
grid lets SDS start every row at its own noise level.

Sway sampling (F5-TTS, Chen et al. 2024) warps a uniform grid ``u`` in [0, 1]::

    s = u + coef * (cos(pi / 2 * u) - 1 + u)

which keeps both ends fixed; ``coef < 0`` packs steps near ``s = 0`` (the
noisy end, where the coarse structure is decided), ``coef > 0`` near the data
end. The warp is monotone for ``-1 <= coef <= 1 / (pi / 2 - 1) ~= 1.75``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import SDSAudioError

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
METHODS = ("euler", "midpoint")
SWAY_MIN = -1.0
SWAY_MAX = 1.0 / (math.pi / 2.0 - 1.0)


def sway_warp(u: torch.Tensor, coef: float) -> torch.Tensor:
    """Sway-sampling warp of times ``u`` in [0, 1] (see the module docstring)."""
    if not SWAY_MIN <= coef <= SWAY_MAX:
        raise SDSAudioError(f"sway coefficient must lie in [{SWAY_MIN}, {SWAY_MAX:.3f}] to keep the "
                            f"time grid monotone, got {coef}")
    return u + coef * (torch.cos(math.pi / 2.0 * u) - 1.0 + u)


def time_grid(steps: int, s_start: torch.Tensor | float = 0.0, s_end: float = 1.0,
              sway_coef: float | None = None) -> torch.Tensor:
    """Flow times from ``s_start`` to ``s_end`` in ``steps`` steps.

    Args:
        steps: number of steps (>= 1).
        s_start: scalar or ``(B,)`` start times.
        s_end: end time (1 = data).
        sway_coef: apply :func:`sway_warp` to the uniform grid first (None: uniform).

    Returns:
        ``(steps + 1,)`` for a scalar start, else ``(steps + 1, B)``; the first row
        is ``s_start``, the last ``s_end``.
    """
    if steps < 1:
        raise SDSAudioError(f"steps must be >= 1, got {steps}")
    start = torch.as_tensor(s_start, dtype=torch.float32)
    u = torch.linspace(0.0, 1.0, steps + 1, device=start.device)
    if sway_coef is not None and sway_coef != 0.0:
        u = sway_warp(u, sway_coef)
        u[0], u[-1] = 0.0, 1.0
    if start.dim() == 0:
        return start + (s_end - start) * u
    return start.unsqueeze(0) + (s_end - start).unsqueeze(0) * u.unsqueeze(1)


def _row(grid: torch.Tensor, i: int, batch_size: int) -> torch.Tensor:
    s = grid[i]
    return s.expand(batch_size) if s.dim() == 0 else s


def _bcast(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return s.reshape(-1, *([1] * (x.dim() - 1))).to(x)


def euler_step(velocity: VelocityFn, x: torch.Tensor, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
    """One explicit Euler step ``x + (s1 - s0) * v(x, s0)``."""
    return x + _bcast(s1 - s0, x) * velocity(x, s0)


def midpoint_step(velocity: VelocityFn, x: torch.Tensor, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
    """One explicit midpoint (RK2) step: two velocity evaluations, second-order accurate."""
    h = s1 - s0
    x_mid = x + _bcast(0.5 * h, x) * velocity(x, s0)
    return x + _bcast(h, x) * velocity(x_mid, s0 + 0.5 * h)


def integrate(velocity: VelocityFn, x: torch.Tensor, grid: torch.Tensor, method: str = "euler",
              progress: bool = False) -> torch.Tensor:
    """Integrate ``dx/ds = v`` along ``grid`` (``(steps + 1,)`` or ``(steps + 1, B)``).

    Args:
        velocity: ``v(x, s)`` with ``s`` of shape ``(B,)``.
        x: ``(B, ...)`` state at ``grid[0]``.
        method: ``"euler"`` (one evaluation per step) or ``"midpoint"`` (two).
        progress: show a tqdm bar over the steps.

    Returns:
        The state at ``grid[-1]``.
    """
    if method not in METHODS:
        raise SDSAudioError(f"sampler must be one of {METHODS}, got {method!r}")
    step = euler_step if method == "euler" else midpoint_step
    b = x.shape[0]
    indices = range(grid.shape[0] - 1)
    if progress:
        from tqdm.auto import tqdm
        indices = tqdm(indices, desc=f"{method} sampling", leave=False)
    for i in indices:
        x = step(velocity, x, _row(grid, i, b), _row(grid, i + 1, b))
    return x
