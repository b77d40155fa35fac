"""The studio's tab functions on a tiny random prior, without a browser (no gradio needed)."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.jobs import prompt_to_preset
from sds_audio.presets import load_preset
from sds_audio.synths import SYNTH_TYPES
from sds_audio.ui import runs
from sds_audio.ui.figures import progress_figure, spectrogram_figure
from sds_audio.ui.queue import Job, JobCancelled
from tiny_embedded import write_prior_dir

RATE = 22050        # the tiny prior's rate


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    prior = write_prior_dir(tmp_path_factory.mktemp("tiny_prior"))
    return runs.StudioSettings(workdir=tmp_path_factory.mktemp("studio"), prior=str(prior), device="cpu",
                               judge=False, max_upload_mb=1.0)


def _job(n: int = 1, cancel_after_step: int | None = None) -> Job:
    job = Job(id=n, kind="test", work=lambda j: None)
    if cancel_after_step is not None:
        plain = job.report

        def report(**fields):
            plain(**fields)
            if fields.get("step") == cancel_after_step:
                job.cancel()

        job.report = report
    return job


def _wav(path: Path, audio: np.ndarray, rate: int = RATE) -> Path:
    sf.write(str(path), audio, rate, subtype="PCM_16")
    return path


def test_synth_types_are_the_preset_synths_the_jobs_run():
    offered = runs.synth_types()
    assert offered[:2] == ["fm", "impact"] and set(offered) <= set(SYNTH_TYPES)


def test_preset_run_reports_every_step_and_its_outputs_agree(settings):
    job = _job(1)
    result = runs.preset_run(job, settings, "fm", "  kick drum, bass  ", steps=6, restarts=2, duration_s=0.4, seed=3)
    progress = job.progress
    assert progress["step"] == 6 and progress["steps"] == 6
    losses = progress["losses"]
    assert len(losses) == 6 and all(len(step) == 2 and all(math.isfinite(x) for x in step) for step in losses)
    rate, preview, at_step, ahead = progress["preview"]
    assert (rate, at_step, ahead) == (RATE, 6, int(np.argmin(losses[-1])))
    assert preview.dtype == np.int16 and preview.shape == (round(0.4 * RATE), 1)

    record = result.record
    assert record["status"] == "done" and record["prompt"] == "kick drum, bass"
    best = record["best_restart"]
    assert [label.endswith("(kept)") for label, _, _ in result.restarts] == [k == best for k in range(2)]
    # the kept restart's player, sound.wav and the downloaded preset all hold the same sound
    preset = load_preset(result.run_dir / "preset.json")
    rendered = preset.render()[0]                                  # (1, T)
    sound, sound_rate = sf.read(str(result.run_dir / "sound.wav"), dtype="float32", always_2d=True)
    player = result.restarts[best][2].astype(np.float32) / 32767.0
    assert sound_rate == RATE and preset.provenance["prompt"] == "kick drum, bass"
    assert np.abs(sound[:, 0] - rendered[0].numpy()).max() < 2e-4      # 24-bit file vs float render
    assert np.abs(player[:, 0] - rendered[0].clamp(-1, 1).numpy()).max() < 2.0 / 32767
    names = [p.name for p in result.downloads]
    assert names[:2] == ["preset.json", "sound.wav"] and all(p.is_file() for p in result.downloads)
    if "instrument_sfz.zip" in names:                              # the SFZ exporter is installed
        with zipfile.ZipFile(result.run_dir / "instrument_sfz.zip") as z:
            assert "instrument_sfz/instrument.sfz" in z.namelist()


def test_the_judge_scores_live_and_labels_every_restart(settings):
    import dataclasses

    judged = dataclasses.replace(settings, judge=True)
    job = _job(15)
    result = runs.preset_run(job, judged, "impact", "wooden knock", steps=25, restarts=2, duration_s=0.25)
    (at_step, scores), = job.progress["judge"]                     # judge_every = 25: one live score
    assert at_step == 25 and len(scores) == 2 and all(-1.0 <= x <= 1.0 for x in scores)
    assert job.progress["preview"][3] == int(np.argmax(scores))    # the restart ahead by the judge
    final, best = result.record["judge_final"], result.record["best_restart"]
    assert best == int(np.argmax(final))
    assert [label for label, _, _ in result.restarts] == [
        f"restart {k}{' (kept)' if k == best else ''}, judge {final[k]:.3f}" for k in range(2)]


def test_cancelling_a_preset_run_stops_like_ctrl_c_and_resumes(settings):
    job = _job(2, cancel_after_step=3)
    with pytest.raises(JobCancelled):
        runs.preset_run(job, settings, "impact", "glass tap", steps=8, restarts=1, duration_s=0.3)
    run_dir = Path(job.progress["run_dir"])
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted" and len(job.progress["losses"]) == 3
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "preset.json").exists()
    resumed = prompt_to_preset(None, None, run_dir, resume=True)   # what `sds-audio impact --resume` runs
    assert resumed["status"] == "done" and (run_dir / "preset.json").is_file()


def test_run_directories_never_collide(settings):
    first = runs.run_dir_for(settings, _job(9), "fm", "Kick drum!")
    assert first.name == "0009-fm-kick-drum"
    first.mkdir()
    assert runs.run_dir_for(settings, _job(9), "fm", "Kick drum!").name == "0009-fm-kick-drum-2"


def test_bad_inputs_raise_one_line_messages(settings, tmp_path):
    with pytest.raises(SDSAudioError, match="the prompt is empty"):
        runs.preset_run(_job(), settings, "fm", "   ", steps=2)
    with pytest.raises(SDSAudioError, match="unknown synth 'organ'"):
        runs.preset_run(_job(), settings, "organ", "pad", steps=2)
    with pytest.raises(SDSAudioError, match="write one prompt per source"):
        runs.parse_prompts(" \n  \n")
    with pytest.raises(SDSAudioError, match="at most 4 sources"):
        runs.parse_prompts("a\nb\nc\nd\ne")
    assert runs.parse_prompts(" dog bark \n\nrain\n") == ["dog bark", "rain"]
    with pytest.raises(SDSAudioError, match="upload a mixture first"):
        runs.check_upload(None, settings, "a mixture")
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * 1_000_001)                              # the fixture's limit is 1 MB
    with pytest.raises(SDSAudioError, match=r"big.wav is 1.0 MB; the studio accepts files up to 1 MB"):
        runs.check_upload(big, settings, "a mixture")
    silent = _wav(tmp_path / "silent.wav", np.zeros(RATE // 2, np.float32))
    with pytest.raises(SDSAudioError, match="is all silence"):
        runs.separation_run(_job(), settings, silent, "dog bark\nrain", steps=1)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"this is not audio" * 10)
    with pytest.raises(SDSAudioError, match="cannot read audio file"):
        runs.separation_run(_job(), settings, broken, "dog bark\nrain", steps=1)
    with pytest.raises(SDSAudioError, match="the prompt is empty"):
        runs.generate_run(_job(), settings, "")
    not_json = tmp_path / "preset.json"
    not_json.write_text("{ not json")
    with pytest.raises(SDSAudioError, match="preset.json"):
        runs.render_run(_job(), settings, not_json)


def test_separation_run_gives_one_source_per_prompt_summing_to_the_mixture(settings, tmp_path):
    t = np.arange(RATE // 2) / RATE
    mixture = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.random.default_rng(0).standard_normal(t.size)
    path = _wav(tmp_path / "mix.wav", mixture.astype(np.float32))
    job = _job(5)
    result = runs.separation_run(job, settings, path, "a low hum\nhiss", steps=2)
    assert [p for p, _ in result.sources] == ["a low hum", "hiss"] and job.progress["step"] == 2
    sources = [sf.read(str(f), dtype="float64")[0] for _, f in result.sources]
    heard, _ = sf.read(str(path), dtype="float64")
    residual = heard - sum(sources)                               # Wiener outputs split the mixture
    assert all(s.shape == heard.shape for s in sources)
    assert 10 * math.log10(np.sum(heard ** 2) / np.sum(residual ** 2)) > 20.0
    assert result.report.is_file()


def test_generate_run_is_seeded(settings):
    a = runs.generate_run(_job(6), settings, "wind", seconds=0.3, steps=2, seed=1)
    b = runs.generate_run(_job(7), settings, "wind", seconds=0.3, steps=2, seed=1)
    c = runs.generate_run(_job(8), settings, "wind", seconds=0.3, steps=2, seed=2)
    x, y, z = (sf.read(str(r.path), dtype="float32")[0] for r in (a, b, c))
    assert a.sample_rate == RATE and x.shape == (round(0.3 * RATE),)
    assert np.array_equal(x, y) and np.abs(x - z).max() > 1e-3


def test_render_run_plays_an_uploaded_preset(settings, tmp_path):
    from sds_audio.presets import save_preset
    from sds_audio.synths import FMSynth

    synth = FMSynth(sample_rate=RATE, channels=1)
    synth.randomize_(torch.Generator().manual_seed(0))
    path = save_preset(tmp_path / "pad.json", synth, duration_s=0.25, provenance={"prompt": "soft pad"})
    result = runs.render_run(_job(10), settings, path, duration_s=0.5, f0_hz=110.0)
    expected = load_preset(path).render(duration_s=0.5, f0_hz=110.0)[0]
    heard, rate = sf.read(str(result.path), dtype="float32", always_2d=True)
    assert rate == RATE and heard.shape == (round(0.5 * RATE), 1)
    assert np.abs(heard[:, 0] - expected[0].clamp(-1, 1).numpy()).max() < 2e-4
    assert "made for 'soft pad'" in result.summary
    with pytest.raises(SDSAudioError, match="f0_hz must be within"):
        runs.render_run(_job(11), settings, path, f0_hz=1e7)


def test_figures_hold_the_curves_they_are_given():
    fig = progress_figure([1, 2, 3], [[3.0, 2.0], [2.5, 1.0], [2.0, 0.5]], judge=[(0, [0.1, 0.2]), (3, [0.3, 0.1])])
    loss_ax, judge_ax = fig.axes
    assert [list(line.get_ydata()) for line in loss_ax.lines] == [[3.0, 2.5, 2.0], [2.0, 1.0, 0.5]]
    assert [list(line.get_ydata()) for line in judge_ax.lines] == [[0.1, 0.3], [0.2, 0.1]]
    tone = torch.sin(2 * math.pi * 1000 * torch.arange(RATE) / RATE)[None]
    fig = spectrogram_figure([("tone", tone)], RATE)
    image = fig.axes[0].images[0].get_array()
    peak_bin = int(np.argmax(np.asarray(image).mean(axis=1)))      # 1 kHz of 11.025 kHz over the bins
    assert abs(peak_bin / (image.shape[0] - 1) * RATE / 2 - 1000) < RATE / 1024


@pytest.mark.skipif("dx7" not in runs.synth_types(), reason="this build has no dx7 synth")
def test_a_dx7_run_offers_its_voice_as_syx(settings):
    from sds_audio.exports.dx7_fit import preset_to_voice
    from sds_audio.exports.syx import read_voice, vced_bytes, voice_name

    result = runs.preset_run(_job(12), settings, "dx7", "electric piano", steps=2, restarts=1, duration_s=0.3)
    syx = result.run_dir / "voice.syx"
    assert syx in result.downloads and result.notes == []
    voice = read_voice(syx)
    assert voice.name == voice_name("electric piano")
    exact = preset_to_voice(load_preset(result.run_dir / "preset.json"), voice.name).voice
    assert syx.read_bytes() == vced_bytes(exact)


@pytest.mark.skipif(runs.speech_runner() is None, reason="this build has no sds_audio.tts.load_tts")
def test_speech_run_speaks_with_the_given_weights(settings, tmp_path):
    import dataclasses

    from tiny_tts import write_tiny_tts

    from sds_audio.tts import TTSConfig, load_tts

    config = TTSConfig(symbols="characters", text_width=16, text_depth=1, text_heads=2, text_convs=1,
                       duration_width=16, width=16, depth=1, heads=2, time_features=16)
    weights = write_tiny_tts(tmp_path / "tts.safetensors", config)
    speak = runs.speech_runner()
    local = dataclasses.replace(settings, tts_weights=str(weights))
    result = speak(_job(13), local, "Hello there.", steps=2, seed=4)
    expected, rate = load_tts(weights).speak("Hello there.", steps=2, seed=4)
    heard, file_rate = sf.read(str(result.path), dtype="float32")
    assert file_rate == rate == result.sample_rate and heard.shape == expected.shape
    assert np.abs(heard - expected.numpy()).max() < 2e-4 and result.duration_s == pytest.approx(heard.size / rate)
    with pytest.raises(SDSAudioError, match="the text is empty"):
        speak(_job(14), local, "  ")
    with pytest.raises(SDSAudioError, match="upload the recording"):
        speak(_job(15), local, "Hello there.", voice_text="what it says")
    # with a recording and its transcript: the adapted copy speaks, as the API's adapt() does
    t = np.arange(3 * 22050) / 22050
    recording = tmp_path / "voice.wav"
    sf.write(str(recording), (0.3 * np.sin(2 * np.pi * 140 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)))
             .astype(np.float32), 22050)
    result = speak(_job(16), local, "Hello there.", voice=recording, voice_text="good morning", steps=2, seed=4)
    expected, _ = load_tts(weights).adapt(recording, "good morning", seed=4).speak("Hello there.", steps=2, seed=4)
    heard, _ = sf.read(str(result.path), dtype="float32")
    assert heard.shape == expected.shape and np.abs(heard - expected.numpy()).max() < 2e-4
