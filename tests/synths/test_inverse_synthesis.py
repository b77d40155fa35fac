"""Light inverse synthesis (the full protocol is benchmarks/inverse_synthesis.py).

A target is rendered from hidden random parameters; random restarts of the same synth
are optimised with Adam on MultiResolutionSTFTDistance. Small sizes so it runs in CI.
"""

from __future__ import annotations

import pytest
import torch

from sds_audio.spectral import MultiResolutionSTFTDistance
from sds_audio.synths import FMSynth, ImpactSynth

SR = 8000
N = 2000


def _fit(build, seed: int, steps: int, given: tuple[str, ...] = ()) -> tuple[float, float]:
    distance = MultiResolutionSTFTDistance(n_ffts=(128, 256, 512, 1024))
    target_synth = build(1).randomize_(torch.Generator().manual_seed(10_000 + seed))
    with torch.no_grad():
        target = target_synth(N)
    synth = build(4).randomize_(torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for name in given:
            synth.raw[name].copy_(target_synth.raw[name].expand_as(synth.raw[name]))
        start = distance(synth(N), target)
    opt = torch.optim.Adam([p for k, p in synth.raw.items() if k not in given], lr=0.1)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.002)
    for _ in range(steps):
        opt.zero_grad()
        distance(synth(N), target).sum().backward()
        opt.step()
        schedule.step()
    with torch.no_grad():
        final = distance(synth(N), target)
    kept = int(final.argmin())
    return float(start[kept]), float(final[kept])


@pytest.mark.slow
def test_impact_recovers_a_random_patch():
    start, final = _fit(lambda b: ImpactSynth(n_modes=4, n_bands=2, sample_rate=SR, batch_size=b), seed=0, steps=80)
    assert final < 0.5 * start, (start, final)


@pytest.mark.slow
def test_fm_recovers_a_random_patch_with_known_tuning():
    start, final = _fit(lambda b: FMSynth(n_operators=2, sample_rate=SR, batch_size=b), seed=1, steps=80,
                        given=("f0_hz", "ratio"))
    assert final < 0.5 * start, (start, final)


@pytest.mark.slow
def test_fm_improves_on_a_random_patch_from_scratch():
    # the full FM search (tuning included) is much harder: see benchmarks/inverse_synthesis.py
    start, final = _fit(lambda b: FMSynth(n_operators=2, sample_rate=SR, batch_size=b), seed=0, steps=80)
    assert final < 0.75 * start, (start, final)
