"""The corpus builder: manifest format, audio files, captions, splits, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from sds_audio.corpus import read_concepts, read_manifest
from sds_audio.corpus.build import assign_splits, build_corpus
from sds_audio.corpus.captions import caption_conflicts, mentions_concept, normalise_text
from sds_audio.corpus.concepts import concept_by_name
from sds_audio.corpus.plan import register_of
from sds_audio.errors import SDSAudioError

FLUID_SKIP = "fluidsynth or the FluidR3 GM SoundFont is not installed (apt-get install fluidsynth fluid-soundfont-gm)"
KEYS = {"id", "path", "concept", "caption", "split", "source", "duration_s", "sample_rate", "attributes"}


def test_manifest_format(tiny_corpus):
    records = read_manifest(tiny_corpus.root)
    assert len(records) == len(tiny_corpus.concepts) * tiny_corpus.n_per_concept
    assert tiny_corpus.summary.n_clips == len(records)
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    for r in records:
        assert set(r) == KEYS
        assert r["path"] == f"audio/{r['id']}.wav"
        assert r["split"] in ("train", "heldout")
        assert r["source"] == concept_by_name(r["concept"]).source
        assert r["sample_rate"] == 22050
        assert isinstance(r["caption"], str) and r["caption"] == r["caption"].strip() and r["caption"]
        assert 0.5 <= r["duration_s"] <= 4.0
    sources = {r["source"] for r in records}
    assert "procedural" in sources
    if tiny_corpus.have_fluidsynth:
        assert "soundfont" in sources
    concepts = read_concepts(tiny_corpus.root)
    assert [c["concept"] for c in concepts] == tiny_corpus.concepts
    for c in concepts:
        assert {"concept", "family", "prompt", "paraphrases"} <= set(c)
        assert 3 <= len(c["paraphrases"]) <= 5


def test_audio_files(tiny_corpus):
    for r in read_manifest(tiny_corpus.root):
        path = tiny_corpus.root / r["path"]
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (22050, 1, "PCM_16", "WAV")
        assert abs(info.frames / 22050 - r["duration_s"]) < 1e-3
        audio, _ = sf.read(str(path), dtype="float64")
        assert np.isfinite(audio).all()
        peak = np.abs(audio).max()
        # peak set to the planned level (16-bit rounding only), never silent, never clipped
        assert peak == pytest.approx(10 ** (r["attributes"]["peak_dbfs"] / 20), rel=2e-3, abs=2 / 32768)
        assert 10 ** (-21 / 20) <= peak <= 10 ** (-0.9 / 20)
        # sound through most of the clip's first half second (no render is silence plus a click)
        rms_start = np.sqrt(np.mean(audio[:2205] ** 2))
        assert rms_start > 1e-3 * peak


def test_soft_clips_are_quieter_than_loud_ones(tiny_corpus):
    records = read_manifest(tiny_corpus.root)
    peaks = {"soft": [], "loud": []}
    for r in records:
        dyn = r["attributes"]["dynamics"]
        if dyn in peaks:
            audio, _ = sf.read(str(tiny_corpus.root / r["path"]))
            peaks[dyn].append(np.abs(audio).max())
    assert peaks["soft"] and peaks["loud"]
    assert max(peaks["soft"]) < min(peaks["loud"])


def test_captions_name_the_concept_and_tell_the_truth(tiny_corpus):
    for r in read_manifest(tiny_corpus.root):
        concept = concept_by_name(r["concept"])
        a = r["attributes"]
        assert mentions_concept(r["caption"], concept), r
        assert caption_conflicts(r["caption"], concept, a) == [], r
        words = normalise_text(r["caption"])
        if "reverb" in words.replace("no reverb", "").replace("without reverb", ""):
            assert a["space"] == "reverberant", r
        if "dry" in words.split(", ") or "no reverb" in words:
            assert a["space"] == "dry", r
        if concept.kind == "melodic":
            assert a["register"] == register_of(a["pitch_midi"], *concept.pitch_range)
        if concept.kind == "struck":
            assert a["material"] == concept.settings["material"]


def test_caption_conflicts_catches_false_words():
    piano = concept_by_name("piano")
    attrs = {"register": "low", "dynamics": "soft", "length": "short", "space": "dry"}
    assert caption_conflicts("a soft short low piano note, dry", piano, attrs) == []
    assert caption_conflicts("a soft short low piano note, no reverb", piano, attrs) == []
    assert "loud" in caption_conflicts("a loud low piano note", piano, attrs)
    assert "high" in caption_conflicts("a soft high piano note", piano, attrs)
    assert "reverb" in caption_conflicts("piano, low, reverb", piano, attrs)
    pot = concept_by_name("metal pot struck")
    pot_attrs = {"material": "metal", "striker": "wooden spoon", "register": "low", "dynamics": "loud",
                 "space": "dry"}
    assert caption_conflicts("hitting a metal pot hard with a wooden spoon", pot, pot_attrs) == []
    assert "glass" in caption_conflicts("hitting a glass pot with a wooden spoon", pot, pot_attrs)


def test_heldout_split(tiny_corpus):
    records = read_manifest(tiny_corpus.root)
    train = {r["id"] for r in records if r["split"] == "train"}
    held = {r["id"] for r in records if r["split"] == "heldout"}
    assert held and train and not (held & train)
    for name in tiny_corpus.concepts:
        splits = {r["split"] for r in records if r["concept"] == name}
        assert splits == {"train", "heldout"}, name


def test_split_is_by_seeded_hash_and_about_ten_percent():
    records = [{"id": f"c{k}-{i:04d}", "concept": f"c{k}", "split": "train"} for k in range(5) for i in range(60)]
    assign_splits(records, seed=0, heldout_fraction=0.1)
    for k in range(5):
        assert sum(r["split"] == "heldout" for r in records if r["concept"] == f"c{k}") == 6
    first = [r["split"] for r in records]
    assign_splits(records, seed=0, heldout_fraction=0.1)
    assert [r["split"] for r in records] == first
    assign_splits(records, seed=1, heldout_fraction=0.1)
    assert [r["split"] for r in records] != first


def test_paraphrases_never_used_as_training_captions(tiny_corpus):
    captions = {normalise_text(r["caption"]) for r in read_manifest(tiny_corpus.root)}
    for c in read_concepts(tiny_corpus.root):
        for p in c["paraphrases"]:
            assert normalise_text(p) not in captions


def test_same_seed_gives_identical_files(tiny_corpus, tmp_path):
    again = tmp_path / "again"
    tiny_corpus.build_again(again)
    for name in ("manifest.jsonl", "concepts.json"):
        assert (again / name).read_bytes() == (tiny_corpus.root / name).read_bytes()
    for r in read_manifest(tiny_corpus.root):
        assert (again / r["path"]).read_bytes() == (tiny_corpus.root / r["path"]).read_bytes(), r["id"]


def test_other_seed_gives_other_clips(tiny_corpus, tmp_path):
    other = tmp_path / "other"
    build_corpus(other, seed=tiny_corpus.seed + 1, n_per_concept=2, concepts=tiny_corpus.concepts[-3:],
                 workers=1, progress=False)
    a = {r["id"]: r for r in read_manifest(tiny_corpus.root)}
    for r in read_manifest(other):
        assert r["attributes"] != a[r["id"]]["attributes"]


def test_soundfont_path_renders_what_the_plan_says(tiny_corpus):
    if not tiny_corpus.have_fluidsynth:
        pytest.skip(FLUID_SKIP)
    records = [r for r in read_manifest(tiny_corpus.root) if r["concept"] == "piano"]
    for r in records:
        audio, sr = sf.read(str(tiny_corpus.root / r["path"]))
        spec = np.abs(np.fft.rfft(audio[: sr // 2] * np.hanning(sr // 2)))
        freqs = np.fft.rfftfreq(sr // 2, 1 / sr)
        f0 = r["attributes"]["f0_hz"]
        near = (freqs > f0 * 0.97) & (freqs < f0 * 1.03)
        # the played fundamental (or, for the lowest notes, a harmonic) is a strong spectral peak
        harmonics = [k * f0 for k in range(1, 5)]
        strength = max(spec[(freqs > h * 0.97) & (freqs < h * 1.03)].max() for h in harmonics if h < sr / 2)
        assert near.any() and strength > 20 * np.median(spec)


def test_existing_corpus_is_not_overwritten(tiny_corpus):
    with pytest.raises(SDSAudioError, match="overwrite"):
        build_corpus(tiny_corpus.root, concepts=["rain"], n_per_concept=1, workers=1, progress=False)


def test_unknown_concept_and_source(tmp_path):
    with pytest.raises(SDSAudioError, match="unknown corpus concept"):
        build_corpus(tmp_path / "x", concepts=["theremin solo"], workers=1, progress=False)
    with pytest.raises(SDSAudioError, match="unknown corpus source"):
        build_corpus(tmp_path / "x", sources=("midi",), workers=1, progress=False)


def test_overwrite_removes_stale_clips(tmp_path):
    out = tmp_path / "c"
    build_corpus(out, n_per_concept=2, concepts=["electrical hum"], workers=1, progress=False)
    build_corpus(out, n_per_concept=1, concepts=["electrical hum"], workers=1, progress=False, overwrite=True)
    assert sorted(p.name for p in (out / "audio").iterdir()) == ["electrical-hum-0000.wav"]
    assert len(read_manifest(out)) == 1
    info = json.loads((out / "build_info.json").read_text())
    assert info["n_clips"] == 1


def test_judge_settings_change_the_procedural_draws_and_prior_settings_keep_them():
    from sds_audio.corpus.plan import JUDGE_SETTINGS, PRIOR_SETTINGS, plan_clip

    pot = concept_by_name("metal pot struck")
    rain = concept_by_name("rain")
    base = [plan_clip(pot, i, 0) for i in range(6)]
    assert [p.attributes for p in base] == [plan_clip(pot, i, 0, settings=PRIOR_SETTINGS).attributes
                                            for i in range(6)]
    judged = [plan_clip(pot, i, 0, settings=JUDGE_SETTINGS) for i in range(6)]
    for b, j in zip(base, judged):        # same draws, Q scaled by the judge's factor
        assert j.attributes["q"] == pytest.approx(b.attributes["q"] * JUDGE_SETTINGS.struck_q_scale, abs=0.011)
    lo, hi = JUDGE_SETTINGS.texture_duration_s
    durations = [plan_clip(rain, i, 3, settings=JUDGE_SETTINGS).render["duration_s"] for i in range(20)]
    assert all(lo <= d <= hi for d in durations) and min(durations) < PRIOR_SETTINGS.texture_duration_s[0]


def test_validation_programs_hold_out_every_clip_of_those_programs(tmp_path):
    pytest.importorskip("mido")
    from sds_audio.corpus.soundfont import find_fluidsynth, find_soundfont

    if find_fluidsynth() is None or find_soundfont() is None:
        pytest.skip(FLUID_SKIP)
    summary = build_corpus(tmp_path / "c", seed=5, n_per_concept=8, concepts=["piano"], workers=0,
                           heldout_fraction=0.0, validation_programs=(1,), progress=False)
    records = read_manifest(summary.out_dir)
    programs = {r["attributes"]["program"] for r in records}
    assert programs == {0, 1}
    for r in records:
        assert r["split"] == ("heldout" if r["attributes"]["program"] == 1 else "train")
    info = json.loads((summary.out_dir / "build_info.json").read_text())
    assert info["validation_programs"] == [1] and info["generator_settings"] == "prior"
