"""The sds-audio command: render, info, and one-line errors with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import soundfile as sf

from sds_audio.cli import main

PRESETS = Path(str(resources.files("sds_audio").joinpath("assets/presets")))


def test_bundled_presets_exist():
    names = sorted(p.name for p in PRESETS.glob("*.json"))
    assert names == ["fm_bass.json", "fm_bell.json", "fm_kick.json", "impact_metal_clang.json",
                     "impact_wood_knock.json"]


def test_render_writes_24bit_wav(tmp_path, capsys):
    out = tmp_path / "kick.wav"
    assert main(["render", str(PRESETS / "fm_kick.json"), "-o", str(out), "--duration-s", "0.3",
                 "--f0-hz", "60"]) == 0
    info = sf.info(str(out))
    assert info.subtype == "PCM_24" and info.samplerate == 44100 and info.channels == 2
    assert info.frames == round(0.3 * 44100)
    data, _ = sf.read(str(out))
    assert 0.05 < abs(data).max() <= 1.0
    assert "wrote" in capsys.readouterr().out


def test_render_refuses_existing_output(tmp_path, capsys):
    out = tmp_path / "x.wav"
    out.write_bytes(b"keep me")
    assert main(["render", str(PRESETS / "fm_bass.json"), "-o", str(out)]) == 2
    assert out.read_bytes() == b"keep me"
    err = capsys.readouterr().err
    assert "--overwrite" in err and err.count("\n") == 1


def test_bad_preset_is_one_line_exit_2(tmp_path, capsys):
    bad = json.loads((PRESETS / "fm_bass.json").read_text())
    bad["params"]["f0_hz"] = -5
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    out = tmp_path / "o.wav"
    assert main(["render", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sds-audio: error:") and "params.f0_hz" in err and err.count("\n") == 1
    assert "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == [path]


def test_impact_preset_rejects_pitch(tmp_path, capsys):
    assert main(["render", str(PRESETS / "impact_wood_knock.json"), "-o", str(tmp_path / "o.wav"),
                 "--f0-hz", "100"]) == 2
    assert "pitch" in capsys.readouterr().err


def test_info_and_entry_point():
    result = subprocess.run([sys.executable, "-m", "sds_audio.cli", "info"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sds-audio ")
    assert "torch" in result.stdout and "device" in result.stdout
    for name in ("embedded", "stable-audio-open", "stable-audio-open-small"):
        assert f"\n  {name} " in result.stdout
    missing = subprocess.run([sys.executable, "-m", "sds_audio.cli", "render", "nope.json", "-o", "x.wav"],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "sds-audio: error: preset file nope.json does not exist"


def test_describe_priors_reports_missing_embedded_weights(monkeypatch, tmp_path):
    from sds_audio.priors import registry

    status = registry.describe_priors()
    assert set(status) == set(registry.PRIORS)
    assets = Path(registry.__file__).resolve().parent.parent / "assets"
    shipped = (assets / "codec.safetensors").is_file() and (assets / "flow.safetensors").is_file()
    assert status["embedded"].startswith("available" if shipped else "weights missing")


def test_train_codec_runs_the_recipe_with_command_line_overrides(monkeypatch, tmp_path, capsys):
    import sds_audio.codec.train as codec_train

    seen = {}

    def fake_train_codec(corpus, out, **kwargs):
        seen.update(kwargs, corpus=corpus, out=out)
        return {"steps": kwargs["steps"]}

    monkeypatch.setattr(codec_train, "train_codec", fake_train_codec)
    (tmp_path / "manifest.jsonl").write_text("")                 # the command checks that a corpus is there
    assert main(["train", "codec", "--corpus", str(tmp_path), "--out", str(tmp_path / "o"), "--steps", "7"]) == 0
    recipe = codec_train.codec_recipe()
    assert seen["steps"] == 7                                    # the command line wins
    assert seen["config"] == recipe["config"] and seen["config"].stft_phase == "accumulated"
    assert seen["phase_weight"] == recipe["phase_weight"] > 0 and seen["kl_weight"] == recipe["kl_weight"]
    assert seen["fp16"] is True and "steps=7" in capsys.readouterr().out


def test_train_codec_decoder_only_runs_the_finetune_recipe_on_the_given_codec(monkeypatch, tmp_path):
    import sds_audio.codec.train as codec_train

    seen = {}
    monkeypatch.setattr(codec_train, "train_codec", lambda corpus, out, **kw: seen.update(kw) or {"steps": 1})
    (tmp_path / "manifest.jsonl").write_text("")                 # the command checks that the inputs are there
    (tmp_path / "c.safetensors").write_bytes(b"")
    args = ["train", "codec", "--corpus", str(tmp_path), "--out", str(tmp_path / "o"),
            "--init-from", str(tmp_path / "c.safetensors"), "--decoder-only"]
    assert main(args) == 0
    finetune = codec_train.decoder_finetune_recipe()
    assert "config" not in seen                                  # the architecture comes from the file
    assert seen["decoder_only"] is True and seen["init_from"] == str(tmp_path / "c.safetensors")
    assert {k: seen[k] for k in finetune} == finetune
    assert seen["lr"] < codec_train.codec_recipe()["lr"]
    assert main(args + ["--lr", "1e-4", "--steps", "5"]) == 0
    assert seen["lr"] == 1e-4 and seen["steps"] == 5             # the command line still wins


def _knock(path: Path, sample_rate: int = 8000, channels: int = 1) -> Path:
    import torch

    from sds_audio.audio_io import save_audio
    from sds_audio.synths import ImpactSynth

    synth = ImpactSynth(n_modes=4, n_bands=2, sample_rate=sample_rate, channels=channels)
    synth.randomize_(torch.Generator().manual_seed(3))
    with torch.no_grad():
        save_audio(path, synth(sample_rate // 4)[0], sample_rate)
    return path


def test_match_writes_a_run_directory_whose_preset_renders_the_sound(tmp_path, capsys):
    target = _knock(tmp_path / "knock.wav")
    out = tmp_path / "run"
    assert main(["match", str(target), "-o", str(out), "--steps", "12", "--restarts", "2", "--quiet"]) == 0
    assert "spectral distance" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["preset.json", "report.png", "run.json", "sound.wav"]
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "done" and record["task"] == "match" and record["sample_rate"] == 8000
    best = record["best_restart"]
    assert record["distance_final"][best] < record["distance_initial"][best]
    sound, rate = sf.read(str(out / "sound.wav"))
    assert rate == 8000 and sound.ndim == 1 and len(sound) == 2000            # the target's rate, length, mono
    assert main(["render", str(out / "preset.json"), "-o", str(tmp_path / "again.wav")]) == 0
    again, _ = sf.read(str(tmp_path / "again.wav"))
    assert abs(again - sound).max() < 1e-6                                   # the preset re-renders the match


def test_match_bad_input_is_one_line_and_leaves_no_files(tmp_path, capsys):
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), [0.0] * 800, 8000, subtype="PCM_24")
    for argv in (["match", str(silent), "-o", str(tmp_path / "a")],
                 ["match", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "b")],
                 ["match", str(silent), "-o", str(tmp_path / "c"), "--steps", "0"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("sds-audio: error:") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["silent.wav"]
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert main(["match", str(_knock(tmp_path / "k.wav")), "-o", str(taken)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "--resume" not in err
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
