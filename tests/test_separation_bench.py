"""benchmarks/separation.py: the mixtures it builds from a tiny corpus (levels, sums, determinism)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench_loader import load_benchmark  # tests/ is on pytest's pythonpath
from tiny_corpus import write_corpus

SR = 22050
CONCEPTS = [{"concept": "sine", "prompt": "a sine tone"}, {"concept": "noise", "prompt": "white noise"},
            {"concept": "buzz", "prompt": "a buzzing square wave"}]

bench = load_benchmark("separation")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)

    def clips():
        for c in CONCEPTS:
            for i in range(3):
                t = np.arange(int(rng.uniform(0.5, 1.0) * SR)) / SR
                audio = {"sine": 0.5 * np.sin(2 * np.pi * 440 * t), "noise": 0.2 * rng.standard_normal(t.shape[0]),
                         "buzz": 0.3 * np.sign(np.sin(2 * np.pi * 150 * t))}[c["concept"]]
                yield f"{c['concept']}_{i}", c["concept"], c["prompt"], "heldout" if i < 2 else "train", audio

    return write_corpus(tmp_path_factory.mktemp("separation_corpus"), clips(), CONCEPTS, SR)


def _rms_db(x: torch.Tensor) -> float:
    return 20 * math.log10(float(x.square().mean().sqrt()))


def test_mixtures_sum_their_sources_at_equal_rms(corpus):
    # (low crest factors: no mixture reaches the 0.99 peak that would scale both sources down)
    mixtures = bench.build_mixtures(corpus, 4, seed=3, min_s=1.0, max_s=2.0)
    assert len(mixtures) == 4
    for m in mixtures:
        assert m["sources"].shape[:2] == (2, 1) and m["mixture"].shape == m["sources"].shape[1:]
        assert SR <= m["mixture"].shape[-1] <= 2 * SR
        assert m["concepts"][0] != m["concepts"][1]
        assert m["prompts"] == [{c["concept"]: c["prompt"] for c in CONCEPTS}[k] for k in m["concepts"]]
        torch.testing.assert_close(m["sources"].sum(0), m["mixture"])
        levels = [_rms_db(s) for s in m["sources"]]
        assert levels[0] == pytest.approx(-20.0, abs=0.01) and levels[1] == pytest.approx(-20.0, abs=0.01)


def test_level_difference_alternates_and_keeps_the_draws(corpus):
    equal = bench.build_mixtures(corpus, 4, seed=3, min_s=1.0, max_s=2.0)
    apart = bench.build_mixtures(corpus, 4, seed=3, min_s=1.0, max_s=2.0, level_db=10.0)
    for i, (a, b) in enumerate(zip(equal, apart)):
        assert a["concepts"] == b["concepts"] and a["mixture"].shape == b["mixture"].shape
        first, second = (_rms_db(s) for s in b["sources"])
        assert first - second == pytest.approx(10.0 if i % 2 == 0 else -10.0, abs=0.01)
        assert first + second == pytest.approx(-40.0, abs=0.01)          # straddling -20 dBFS
        for s_equal, s_apart in zip(a["sources"], b["sources"]):          # the same clips, rescaled
            ratio = float(s_apart.square().sum().sqrt() / s_equal.square().sum().sqrt())
            torch.testing.assert_close(s_apart, s_equal * ratio, rtol=0, atol=1e-6)
        torch.testing.assert_close(b["sources"].sum(0), b["mixture"])


def test_seam_flux_finds_a_seam_and_not_a_smooth_join():
    n = 4 * SR
    t = torch.arange(n) / SR
    noise = 0.1 * torch.randn(n, generator=torch.Generator().manual_seed(0))
    smooth = (0.3 * torch.sin(2 * math.pi * 440 * t) + noise).reshape(1, 1, n)
    windows = [(0, 2 * SR), (int(1.75 * SR), int(2.25 * SR))]        # one overlap, 1.75-2.0 s
    clean = bench.seam_flux(smooth, windows)
    assert clean["n_joins"] == 1 and 0.7 < clean["ratio"] < 1.3
    seamed = smooth.clone()
    for k in range(5):                                                 # a click-like jump every 50 ms inside the join
        i = int((1.76 + 0.05 * k) * SR)
        seamed[..., i:] *= -1.0
        seamed[..., i:i + 64] += 0.8
    assert bench.seam_flux(seamed, windows)["ratio"] > 1.5 * clean["ratio"]
    # the windows' rate may differ from the audio's
    half = [(a // 2, length // 2) for a, length in windows]
    assert bench.seam_flux(smooth, half, scale=2.0)["ratio"] == pytest.approx(clean["ratio"], rel=0.05)


def test_window_edge_profile_finds_errors_near_window_edges_and_disagreement_in_overlaps():
    n = 5 * SR
    truth = 0.1 * torch.randn(2, 1, n, generator=torch.Generator().manual_seed(1))
    windows = [(0, 3 * SR), (2 * SR, 3 * SR)]                           # one overlap, 2-3 s
    exact = [truth[..., s:s + length].clone() for s, length in windows]
    clean = bench.window_edge_profile(exact, windows, truth, SR)
    assert clean["disagreement"] == 0.0 and max(clean["error"]) == 0.0
    assert clean["flux_ratio"] == pytest.approx([1.0] * 5)
    edged = []
    for chunk in exact:                                                 # noise in the first and last 0.2 s only
        chunk = chunk.clone()
        edge = int(0.2 * SR)
        chunk[..., :edge] += 0.1 * torch.randn(2, 1, edge, generator=torch.Generator().manual_seed(2))
        chunk[..., -edge:] += 0.1 * torch.randn(2, 1, edge, generator=torch.Generator().manual_seed(3))
        edged.append(chunk)
    profile = bench.window_edge_profile(edged, windows, truth, SR)
    assert profile["error"][0] == pytest.approx(0.8, rel=0.1)          # 0.2 of the 0.25 s bin has error 1
    assert max(profile["error"][1:]) == 0.0
    # the overlap holds window 0's last 0.2 s and window 1's first 0.2 s of noise: 0.4 s of 1 s at error 1
    assert profile["disagreement"] == pytest.approx(0.4, rel=0.1)
