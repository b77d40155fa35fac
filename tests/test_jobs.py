"""`sds-audio fm / impact`: the run directory, resume, and bad input, on a tiny random embedded prior."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from sds_audio.cli import main
from sds_audio.presets import load_preset

from tiny_embedded import write_prior_dir

FAST = ["--steps", "3", "--restarts", "2", "--duration-s", "0.3", "--quiet"]


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory):
    return str(write_prior_dir(tmp_path_factory.mktemp("tiny_prior")))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_fm_writes_the_run_directory(tmp_path, prior_dir, capsys):
    out = tmp_path / "kick"
    assert main(["fm", "kick drum, bass, reverb", "-o", str(out), "--prior", prior_dir, *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["initial.wav", "preset.json", "report.png", "run.json",
                                                     "sound.wav"]
    info = sf.info(str(out / "sound.wav"))
    assert (info.subtype, info.samplerate, info.channels) == ("PCM_24", 22050, 1)
    assert info.frames == round(0.3 * 22050)
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "done" and record["prompt"] == "kick drum, bass, reverb" and record["synth"] == "fm"
    assert record["options"]["steps"] == 3 and record["synthesis_config"]["restarts"] == 2
    assert {"sds_audio", "torch", "python"} <= set(record["versions"])
    assert len(record["judge_final"]) == 2 and all(-1 <= s <= 1 for s in record["judge_final"])
    assert record["best_restart"] == int(np.argmax(record["judge_final"]))

    # the preset re-renders the written sound (up to 24-bit quantisation)
    preset = load_preset(out / "preset.json")
    assert preset.provenance["prompt"] == "kick drum, bass, reverb" and preset.provenance["restart"] == \
        record["best_restart"]
    wav, _ = sf.read(str(out / "sound.wav"), dtype="float32", always_2d=True)
    rendered = preset.render().clamp(-1, 1)[0].T.numpy()
    assert np.abs(rendered - wav).max() < 2 ** -22
    assert "judge score" in capsys.readouterr().out


def test_impact_runs(tmp_path, prior_dir):
    out = tmp_path / "pot"
    assert main(["impact", "hitting a pot with a wooden spoon", "-o", str(out), "--prior", prior_dir, *FAST]) == 0
    assert load_preset(out / "preset.json").synth.synth_type == "impact"


def test_existing_directory_is_refused_unless_overwrite(tmp_path, prior_dir, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    assert main(["fm", "bell", "-o", str(out), "--prior", prior_dir, *FAST]) == 2
    assert "--overwrite" in _one_error_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert main(["fm", "bell", "-o", str(out), "--prior", prior_dir, "--overwrite", *FAST]) == 0
    assert (out / "keep.txt").read_text() == "user file" and (out / "preset.json").is_file()


def test_interrupted_run_resumes_to_the_same_preset(tmp_path, prior_dir, monkeypatch, capsys):
    from sds_audio import sds

    args = ["fm", "a soft bell", "--prior", prior_dir, "--steps", "4", "--restarts", "2", "--duration-s", "0.3",
            "--quiet", "--no-judge"]
    assert main([*args, "-o", str(tmp_path / "full")]) == 0

    calls = {"n": 0}
    forward = sds.SDSObjective.forward

    def interrupt_third_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return forward(self, *a, **k)

    monkeypatch.setattr(sds.SDSObjective, "forward", interrupt_third_step)
    part = tmp_path / "part"
    assert main([*args, "-o", str(part)]) == 130
    assert f"--resume {part}" in capsys.readouterr().err
    assert json.loads((part / "run.json").read_text())["status"] == "interrupted"
    assert (part / "checkpoint.pt").is_file() and not (part / "preset.json").exists()
    monkeypatch.setattr(sds.SDSObjective, "forward", forward)

    assert main(["fm", "--resume", str(part), "--quiet"]) == 0
    assert not (part / "checkpoint.pt").exists()
    a = load_preset(tmp_path / "full" / "preset.json").controls
    b = load_preset(part / "preset.json").controls
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    assert main(["fm", "--resume", str(part)]) == 2
    assert "already finished" in _one_error_line(capsys)


@pytest.mark.parametrize("argv, message", [
    (["fm", "  ", "-o", "{out}"], "prompt is empty"),
    (["fm", "bell"], "-o DIR"),
    (["fm", "bell", "-o", "{out}", "--prior", "no-such-prior"], "unknown prior"),
    (["fm", "bell", "-o", "{out}", "--prior", "{prior}", "--duration-s", "5"], "maximum"),
    (["fm", "bell", "-o", "{out}", "--prior", "{prior}", "--steps", "0"], "steps"),
    (["fm", "--resume", "{out}"], "nothing to resume"),
    (["impact", "pot", "-o", "{file}"], "is a file"),
])
def test_bad_input_is_one_line(tmp_path, prior_dir, capsys, argv, message):
    (tmp_path / "f.txt").write_text("x")
    argv = [a.format(out=tmp_path / "out", prior=prior_dir, file=tmp_path / "f.txt") for a in argv]
    assert main([*argv, "--quiet"]) == 2
    assert message in _one_error_line(capsys)
    assert not (tmp_path / "out" / "sound.wav").exists()


def test_full_disk_leaves_no_half_written_file(tmp_path, prior_dir, monkeypatch, capsys):
    real_replace = os.replace

    def full_disk(src, dst):
        if str(dst).endswith("sound.wav"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    out = tmp_path / "run"
    assert main(["fm", "bell", "-o", str(out), "--prior", prior_dir, *FAST]) == 1
    assert "disk is full" in _one_error_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]  # no temp file, no partial audio


# --------------------------------------------------------------------------- separate
def _write_mixture(path, sample_rate=16000, seconds=0.7, channels=2, scale=0.3):
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    tone = np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t)
    noise = np.random.default_rng(0).standard_normal(t.size) * 0.3
    mix = scale * (tone + noise)
    sf.write(str(path), np.stack([mix] * channels, axis=1) if channels > 1 else mix, sample_rate, subtype="PCM_16")
    return path


def test_separate_writes_one_source_per_prompt(tmp_path, prior_dir):
    mix = _write_mixture(tmp_path / "mix.wav")
    out = tmp_path / "sep"
    assert main(["separate", str(mix), "-p", "a bell tone", "-p", "rain noise", "-o", str(out), "--prior", prior_dir,
                 "--steps", "2", "--quiet"]) == 0
    wavs = sorted(out.glob("*.wav"))
    assert [w.name for w in wavs] == ["00_a-bell-tone.wav", "01_rain-noise.wav"]
    info = sf.info(str(wavs[0]))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 2, int(16000 * 0.7), "PCM_24")
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "done" and record["prompts"] == ["a bell tone", "rain noise"]
    assert len(record["windows"]) >= 2  # 0.7 s mixture, 0.5 s prior window
    assert len(record["judge_sources"]) == 2
    # the default (Wiener) output splits the mixture exactly
    total = sum(sf.read(str(w), dtype="float64")[0] for w in wavs)
    source = sf.read(str(mix), dtype="float64")[0]
    assert np.abs(total - source).max() < 1e-4
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG" and not list(out.glob("*checkpoint*"))


def test_separate_default_start_is_recorded_and_resumed(tmp_path, prior_dir, monkeypatch, capsys):
    from sds_audio import sds

    mix = _write_mixture(tmp_path / "mix.wav")
    args = ["separate", str(mix), "-p", "a bell tone", "-p", "rain noise", "--prior", prior_dir, "--steps", "3",
            "--quiet", "--no-judge"]
    assert main([*args, "-o", str(tmp_path / "full")]) == 0
    record = json.loads((tmp_path / "full" / "run.json").read_text())
    assert record["init"] == "prior_mask" and record["separation_config"]["init"] == "prior_mask"
    assert record["residual_decoding"] is True and record["separation_config"]["residual_decoding"] is True

    calls = {"n": 0}
    forward = sds.SDSObjective.forward

    def interrupt_third_call(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return forward(self, *a, **k)

    monkeypatch.setattr(sds.SDSObjective, "forward", interrupt_third_call)
    part = tmp_path / "part"
    assert main([*args, "-o", str(part)]) == 130
    assert f"--resume {part}" in capsys.readouterr().err
    monkeypatch.setattr(sds.SDSObjective, "forward", forward)
    assert main(["separate", "--resume", str(part), "--quiet"]) == 0
    again = json.loads((part / "run.json").read_text())
    assert again["init"] == "prior_mask" and again["separation_config"]["init"] == "prior_mask"
    assert again["separation_config"]["residual_decoding"] is True
    full = [sf.read(str(w), dtype="float64")[0] for w in sorted((tmp_path / "full").glob("*.wav"))]
    resumed = [sf.read(str(w), dtype="float64")[0] for w in sorted(part.glob("*.wav"))]
    assert len(full) == len(resumed) == 2
    assert all(np.abs(a - b).max() < 1e-6 for a, b in zip(full, resumed))


def test_separate_start_options_and_runs_older_than_them(tmp_path, prior_dir, monkeypatch):
    from sds_audio import sds

    mix = _write_mixture(tmp_path / "mix.wav")
    args = ["separate", str(mix), "-p", "a bell tone", "-p", "rain noise", "--prior", prior_dir, "--steps", "3",
            "--quiet", "--no-judge"]
    assert main([*args, "--init", "split", "--decoding", "direct", "-o", str(tmp_path / "direct")]) == 0
    config = json.loads((tmp_path / "direct" / "run.json").read_text())["separation_config"]
    assert (config["init"], config["residual_decoding"]) == ("split", False)
    assert main([*args, "--mask-refinements", "2", "--lr-schedule", "cosine", "--sds-target", "mixture_split",
                 "-o", str(tmp_path / "refined")]) == 0
    record = json.loads((tmp_path / "refined" / "run.json").read_text())
    assert record["mask_refinements"] == record["separation_config"]["mask_refinements"] == 2
    assert record["lr_schedule"] == record["separation_config"]["lr_schedule"] == "cosine"
    assert record["sds_target"] == record["separation_config"]["sds_target"] == "mixture_split"

    # a run.json written before --init / --decoding / --mask-refinements existed resumes as those runs ran
    forward = sds.SDSObjective.forward
    monkeypatch.setattr(sds.SDSObjective, "forward", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    old = tmp_path / "old"
    assert main([*args, "--init", "mixture", "--decoding", "direct", "--mask-refinements", "0", "-o", str(old)]) == 130
    monkeypatch.setattr(sds.SDSObjective, "forward", forward)
    record = json.loads((old / "run.json").read_text())
    for key in ("init", "residual_decoding", "mask_refinements", "lr_schedule", "sds_target"):
        del record[key]
    (old / "run.json").write_text(json.dumps(record))
    assert main(["separate", "--resume", str(old), "--quiet"]) == 0
    config = json.loads((old / "run.json").read_text())["separation_config"]
    assert (config["init"], config["residual_decoding"], config["mask_refinements"], config["lr_schedule"],
            config["sds_target"]) == ("mixture", False, 0, "constant", "source")


def test_separate_with_zero_steps_writes_the_prior_mask_split(tmp_path, prior_dir):
    mix = _write_mixture(tmp_path / "mix.wav")
    out = tmp_path / "split"
    assert main(["separate", str(mix), "-p", "a bell tone", "-p", "rain noise", "-o", str(out), "--prior", prior_dir,
                 "--steps", "0", "--quiet", "--no-judge"]) == 0
    sources = [sf.read(str(w), dtype="float64")[0] for w in sorted(out.glob("*.wav"))]
    mixture = sf.read(str(mix), dtype="float64")[0]
    assert len(sources) == 2 and (out / "report.png").is_file()
    # 24-bit files of sources that sum to the 16-bit mixture
    assert np.abs(sources[0] + sources[1] - mixture).max() < 1e-5
    assert np.abs(sources[0] - sources[1]).max() > 1e-3  # the split is not an equal share
    assert json.loads((out / "run.json").read_text())["status"] == "done"


def test_separate_rejects_an_unknown_init(tmp_path, prior_dir, capsys):
    mix = _write_mixture(tmp_path / "mix.wav")
    with pytest.raises(SystemExit) as exc:
        main(["separate", str(mix), "-p", "bell", "-p", "rain", "-o", str(tmp_path / "sep"), "--prior", prior_dir,
              "--init", "noise"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "sep").exists()


@pytest.mark.parametrize("case, message", [
    ("missing", "mix.wav"),
    ("not-audio", "mix.wav"),
    ("silent", "silence"),
    ("nan", "NaN"),
    ("clipped", "clipped"),
    ("empty-prompt", "empty"),
    ("no-prompt", "-p"),
])
def test_separate_bad_input_is_one_line(tmp_path, prior_dir, capsys, case, message):
    mix = tmp_path / "mix.wav"
    prompts = ["-p", "bell", "-p", "rain"]
    if case == "not-audio":
        mix.write_text("this is not audio")
    elif case == "silent":
        sf.write(str(mix), np.zeros(8000), 16000)
    elif case == "nan":
        sf.write(str(mix), np.full(8000, np.nan), 16000, subtype="FLOAT")
    elif case == "clipped":
        _write_mixture(mix, scale=20.0)
    elif case != "missing":
        _write_mixture(mix)
    if case == "empty-prompt":
        prompts = ["-p", "bell", "-p", "  "]
    elif case == "no-prompt":
        prompts = []
    out = tmp_path / "sep"
    assert main(["separate", str(mix), *prompts, "-o", str(out), "--prior", prior_dir, "--steps", "1",
                 "--quiet"]) == 2
    assert message.lower() in _one_error_line(capsys).lower()
    assert not out.exists()
