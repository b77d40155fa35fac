"""Shared helpers for the renderer tests: a finite-difference checker (one CPU thread: tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch


def directional_fd_errors(synth, loss_fn, generator: torch.Generator, h: float = 2e-6):
    """Compare autograd with central finite differences, one random direction per raw tensor.

    Uses the fourth-order stencil ``(-L(2h) + 8 L(h) - 8 L(-h) + L(-2h)) / 12h`` on
    the unconstrained (raw) tensors of a float64 synth. Truncation error is
    ``O((h * s)^4)`` relative, where ``s`` is how fast the loss oscillates per unit
    of raw value (up to a few thousand rad for the frequency parameters of the short
    renders used here: measured 1e-6 at ``h = 1e-5`` falling as ``h^4`` to 1e-8 at
    ``h = 3e-6``); round-off is ``~1e-16 |L| / h``, so ``h = 2e-6`` leaves both
    far below the 1e-6 tolerance.

    Returns ``{name: (autograd, finite_difference, scale)}`` where ``scale`` is
    ``|grad| * |direction|`` (the largest value the directional derivative could have).
    """
    synth.zero_grad()
    loss_fn().backward()
    out = {}
    for name, raw in synth.raw.items():
        direction = torch.randn(raw.shape, generator=generator, dtype=raw.dtype)
        analytic = float((raw.grad * direction).sum())
        values = []
        with torch.no_grad():
            for step in (2, 1, -1, -2):
                raw.add_(step * h * direction)
                values.append(float(loss_fn()))
                raw.sub_(step * h * direction)
        fd = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * h)
        out[name] = (analytic, fd, float(raw.grad.norm() * direction.norm()))
    return out


def assert_fd_close(errors, rtol: float = 1e-6):
    """Every directional derivative matches to ``rtol`` (relative to ``max(|fd|, 1e-3 scale)``)."""
    bad = {n: v for n, v in errors.items() if abs(v[0] - v[1]) > rtol * max(abs(v[1]), 1e-3 * v[2], 1e-12)}
    assert not bad, f"autograd vs finite differences disagree: {bad}"


@pytest.fixture
def fd_errors():
    """The :func:`directional_fd_errors` helper (fixtures avoid importing conftest by name)."""
    return directional_fd_errors


@pytest.fixture
def fd_close():
    """The :func:`assert_fd_close` helper."""
    return assert_fd_close
