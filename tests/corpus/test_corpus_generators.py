"""Procedural generators, reverb, captions and the concept catalogue (no rendering of a corpus)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from sds_audio.corpus.captions import (TRAINING_WRAPPERS, caption, caption_conflicts, has_paraphrase_marker,
                                       mentions_concept, normalise_text, paraphrases, rewrite_caption)
from sds_audio.corpus.clip_audio import is_broken, trim
from sds_audio.corpus.concepts import CONCEPTS, concept_by_name
from sds_audio.corpus.plan import plan_clip, register_of
from sds_audio.corpus.reverb import apply_reverb, reverb_ir
from sds_audio.corpus.struck import bar_ratios, half_sine_spectrum, shell_ratios, struck_object
from sds_audio.corpus.textures import car_pass, rain

SR = 22050


def test_catalogue_is_large_and_consistent():
    assert len(CONCEPTS) >= 40
    names = [c.name for c in CONCEPTS]
    assert len(set(names)) == len(names) and len({c.slug for c in CONCEPTS}) == len(names)
    for c in CONCEPTS:
        assert c.names[0] == c.name or c.kind in ("struck", "texture")
        if c.kind in ("melodic", "sfx"):
            assert all(0 <= p < 128 for p in c.programs) and 0 <= c.pitch_range[0] < c.pitch_range[1] <= 127
    assert concept_by_name("kick drum").register_words["low"][0] == "bass"
    assert {"melodic", "drum", "sfx", "struck", "texture"} == {c.kind for c in CONCEPTS}


def test_paraphrases_are_disjoint_from_many_training_captions():
    for c in CONCEPTS:
        para = paraphrases(c)
        assert 3 <= len(para) <= 5 and len(set(para)) == len(para)
        assert all(has_paraphrase_marker(p) for p in para)
        captions = {normalise_text(plan_clip(c, i, seed=0).caption) for i in range(40)}
        assert not captions & set(para), c.name
        assert not any(has_paraphrase_marker(t) for t in captions)


def test_every_planned_caption_is_truthful_and_names_its_concept():
    for c in CONCEPTS:
        for i in range(15):
            plan = plan_clip(c, i, seed=1)
            assert mentions_concept(plan.caption, c), plan.caption
            assert caption_conflicts(plan.caption, c, plan.attributes) == []


def test_caption_rewrites_say_nothing_new_and_avoid_paraphrase_wording():
    rng = np.random.default_rng(0)
    wrapper_words = {w for t in TRAINING_WRAPPERS for w in t.replace("{}", " ").replace(":", " ").split()}
    changed = framed = 0
    for c in CONCEPTS:
        for i in range(6):
            plan = plan_clip(c, i, seed=2)
            for _ in range(3):
                text = rewrite_caption(plan.caption, rng)
                assert not has_paraphrase_marker(text), text
                assert caption_conflicts(text, c, plan.attributes) == [], text
                assert mentions_concept(text, c), text
                original = set(normalise_text(plan.caption).replace(",", " ").split())
                words = set(text.replace(",", " ").replace(";", " ").replace(":", " ").split())
                assert words - original <= wrapper_words, (plan.caption, text)
                changed += text != normalise_text(plan.caption)
                framed += bool(words - original)
    n = len(CONCEPTS) * 18
    assert changed > 0.6 * n and 0.3 * n < framed < 0.6 * n, (changed, framed, n)


def test_demo_prompts_are_close_to_training_captions():
    kick = concept_by_name("kick drum")
    reverb_kicks = [plan_clip(kick, i, 0) for i in range(200)]
    reverb_kicks = [p.caption for p in reverb_kicks if p.attributes["space"] == "reverberant"]
    assert any("bass" in t.split(", ") and "reverb" in t for t in reverb_kicks) or any(
        t.startswith("kick drum, ") and "reverb" in t for t in reverb_kicks)
    pot = [plan_clip(concept_by_name("metal pot struck"), i, 0).caption for i in range(200)]
    assert any(t.startswith("hitting a") and "pot" in t and "wooden spoon" in t for t in pot)


def test_register_thirds():
    assert register_of(28, 28, 100) == "low" and register_of(64, 28, 100) == "mid"
    assert register_of(100, 28, 100) == "high"
    assert register_of(200.0, 100.0, 800.0, log=True) == "low"
    assert register_of(300.0, 100.0, 800.0, log=True) == "mid"


def test_mode_ratio_formulas():
    np.testing.assert_allclose(bar_ratios()[:4], [1.0, 2.756, 5.404, 8.933], rtol=1e-3)
    np.testing.assert_allclose(shell_ratios()[:3], [1.0, 2.828, 5.423], rtol=1e-3)
    spec = half_sine_spectrum(np.array([0.0, 100.0, 1 / (2 * 1e-3), 5000.0]), 1e-3)
    assert spec[0] == pytest.approx(1.0) and spec[2] == pytest.approx(np.pi / 4)
    assert spec[3] < spec[1]        # a short pulse still rolls off


@pytest.mark.parametrize("modes,material,q", [("bar", "metal", 2000.0), ("shell", "glass", 3000.0),
                                              ("bar", "wood", 40.0)])
def test_struck_object_rings_at_its_fundamental(modes, material, q):
    rng = np.random.default_rng(0)
    f0 = 440.0
    x = struck_object(modes=modes, material=material, f0_hz=f0, q=q, striker="rubber mallet", force=0.5,
                      split_modes=False, n_hits=1, sample_rate=SR, rng=rng)
    n = min(x.shape[0], SR)
    spec = np.abs(np.fft.rfft(x[:n] * np.hanning(n)))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    assert abs(freqs[np.argmax(spec)] - f0) < 0.03 * f0     # a soft mallet excites mostly the lowest mode
    env = np.abs(x)
    tau = q / (np.pi * f0)
    later = int(min(3 * tau, 1.0) * SR)
    assert env[later:later + 200].max() < env[:200].max()   # decays


def test_metal_rings_longer_than_wood():
    def ring_s(material, q):
        x = struck_object(modes="bar", material=material, f0_hz=300.0, q=q, striker="drumstick", force=0.5,
                          split_modes=False, n_hits=1, sample_rate=SR, rng=np.random.default_rng(1))
        return trim(x, SR, min_s=0.0).shape[0] / SR
    assert ring_s("metal", 1500.0) > 5 * ring_s("wood", 40.0)


def test_reverb_rt60_matches_request():
    rt60 = 1.2
    ir = reverb_ir(rt60, SR, np.random.default_rng(0), predelay_s=0.01)
    sos = signal.butter(4, [500 / (SR / 2), 2000 / (SR / 2)], btype="bandpass", output="sos")
    mid = signal.sosfilt(sos, ir)                     # RT60 is specified for the mid band
    energy = np.cumsum(mid[::-1] ** 2)[::-1]          # Schroeder backward integration
    edc_db = 10 * np.log10(energy / energy[0])
    t5, t35 = np.argmax(edc_db < -5), np.argmax(edc_db < -35)
    measured = 2.0 * (t35 - t5) / SR                   # T30 extrapolated to 60 dB
    assert measured == pytest.approx(rt60, rel=0.25)
    dry = np.zeros(SR)
    dry[0] = 1.0
    wet = apply_reverb(dry, ir, drr_db=0.0)
    assert np.sum(wet[1:] ** 2) == pytest.approx(1.0, rel=0.05)   # DRR 0 dB: equal energies


def test_car_pass_doppler_and_level_sweep():
    x = car_pass(4.0, SR, np.random.default_rng(0), speed_m_s=30.0)
    n = x.shape[0]
    rms = [np.sqrt(np.mean(x[i:i + SR // 4] ** 2)) for i in range(0, n - SR // 4, SR // 4)]
    peak_at = int(np.argmax(rms))
    assert 0 < peak_at < len(rms) - 1 and rms[peak_at] > 4 * min(rms[0], rms[-1])

    def centroid(seg):
        spec = np.abs(np.fft.rfft(seg * np.hanning(seg.shape[0])))[:400]
        return np.sum(spec * np.arange(400)) / np.sum(spec)
    # approaching sounds higher than receding (Doppler), compared at equal distance from the peak
    centre = peak_at * (SR // 4) + SR // 8
    before = x[centre - SR // 2 - 4096:centre - SR // 2]
    after = x[centre + SR // 2:centre + SR // 2 + 4096]
    assert centroid(before) > centroid(after)


def test_heavy_rain_is_denser_than_light_rain():
    heavy = rain(2.0, SR, np.random.default_rng(0), heavy=True)
    light = rain(2.0, SR, np.random.default_rng(0), heavy=False)
    def crest(x):
        return np.abs(x).max() / np.sqrt(np.mean(x ** 2))
    assert crest(light) > crest(heavy)     # sparse drops are peaky, a downpour is dense


def test_broken_renders_are_rejected():
    assert is_broken(np.zeros(SR), SR) is not None
    assert is_broken(np.full(SR, np.nan), SR) is not None
    click = np.zeros(SR)
    click[100] = 0.5
    assert "lasts only" in is_broken(click, SR)
    assert is_broken(np.sin(np.arange(SR) * 0.1) * 0.3, SR) is None


def test_caption_is_deterministic_given_rng():
    c = concept_by_name("violin")
    attrs = {"register": "high", "dynamics": "loud", "length": "long", "space": "dry"}
    a = caption(c, attrs, np.random.default_rng(5))
    assert a == caption(c, attrs, np.random.default_rng(5))
