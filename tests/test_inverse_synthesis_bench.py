"""benchmarks/inverse_synthesis.py's ceiling: the hidden patch itself scores a full reduction, a detuned one less."""

from __future__ import annotations

import pytest

from bench_loader import load_benchmark  # tests/ is on pytest's pythonpath


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("inverse_synthesis")


@pytest.mark.parametrize("name", ["fm", "impact"])
def test_ceiling_is_exact_at_sigma_zero_and_falls_with_sigma(bench, name):
    r = bench.ceiling(name, 0, [0.0, 0.01, 0.2], sample_rate=8000, n_samples=2000, draws=4)
    assert r[0.0] == pytest.approx(1.0, abs=1e-3)       # the hidden patch reproduces the target
    assert r[0.2] < r[0.01] < r[0.0]
    assert r[0.2] < 0.8                                  # a fifth of every range off is far from the target
