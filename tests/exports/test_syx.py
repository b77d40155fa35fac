"""DX7 .syx files: formats, byte-identical round trips, bad files; the dx7 / export syx / render commands."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import soundfile as sf
import torch

from sds_audio.cli import main
from sds_audio.errors import SDSAudioError
from sds_audio.exports.syx import (GLOBAL_FIELDS, OPERATOR_FIELDS, DX7Voice, checksum, parse_syx, read_voice,
                                   vced_bytes, vmem_bytes, voice_name, write_vmem)
from sds_audio.presets import load_preset, save_preset
from sds_audio.synths import DX7Synth, FMSynth, ImpactSynth

from tiny_embedded import write_prior_dir


def _random_voice(rng: random.Random, name: str = "RANDOM    ") -> DX7Voice:
    voice = DX7Voice.init_voice()
    for op in voice.operators:
        for field, top in OPERATOR_FIELDS:
            op[field] = rng.randint(0, top)
    for field, top in GLOBAL_FIELDS:
        voice.globals[field] = rng.randint(0, top)
    voice.name = name
    return voice


def _bank(seed: int = 0) -> list[DX7Voice]:
    rng = random.Random(seed)
    return [_random_voice(rng, f"VOICE {i:02d}  ") for i in range(32)]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# -- formats and round trips ------------------------------------------------------------------
def test_vced_and_vmem_layout():
    voice = DX7Voice.init_voice()
    single = vced_bytes(voice, channel=3)
    assert len(single) == 163 and single[:6] == bytes([0xF0, 0x43, 0x03, 0x00, 0x01, 0x1B]) and single[-1] == 0xF7
    data = single[6:161]
    assert single[161] == checksum(data) and (sum(data) + single[161]) % 128 == 0
    assert data[145:155] == b"INIT VOICE"
    assert data[16] == 0 and data[21 * 5 + 16] == 99          # operator 6 first: operator 1 (last) at level 99
    bank = vmem_bytes([voice])
    assert len(bank) == 4104 and bank[:6] == bytes([0xF0, 0x43, 0x00, 0x09, 0x20, 0x00]) and bank[-1] == 0xF7
    assert (sum(bank[6:4102]) + bank[4102]) % 128 == 0
    assert [v.name for v in parse_syx(bank)] == ["INIT VOICE"] * 32          # padded with INIT VOICE


def test_single_voice_and_bank_round_trips_are_byte_identical():
    bank = _bank()
    raw = vmem_bytes(bank)
    voices = parse_syx(raw)
    assert voices == bank and all(not v.repairs for v in voices)
    assert vmem_bytes(voices) == raw                                        # import -> export, every voice
    for voice in bank[:4]:
        single = vced_bytes(voice)
        assert vced_bytes(parse_syx(single)[0]) == single


def test_preset_to_syx_to_preset_to_syx_is_byte_identical(tmp_path):
    synth = DX7Synth(algorithm=[7, 22], batch_size=2, sample_rate=22050, channels=1, name="PRESET RT ")
    synth.randomize_(torch.Generator().manual_seed(4))
    save_preset(tmp_path / "p.json", synth, index=1, duration_s=1.0)
    first = load_preset(tmp_path / "p.json")
    assert first.synth.algorithm == 22                                      # the candidate's own algorithm
    syx1 = vced_bytes(first.synth.to_voice(0, controls=first.controls))
    (tmp_path / "v.syx").write_bytes(syx1)
    second = load_preset(tmp_path / "v.syx")
    syx2 = vced_bytes(second.synth.to_voice(0, controls=second.controls))
    assert syx1 == syx2
    # the continuous candidate and its rounded voice: integers, every field within range
    voice = parse_syx(syx1)[0]
    assert voice.globals["algorithm"] == 21 and voice.name == "PRESET RT "


def test_packing_matches_dexed():
    dexed = pytest.importorskip("dexed", reason="dexed-py (the reference DX7 engine) is not installed")
    bank = _bank(3)
    for voice in bank[:8]:
        patch = dexed.Patch.from_sysex(voice.to_vced_data() + b"\x00")
        assert bytes(patch.to_packed()) == voice.to_packed()


def test_repairs_out_of_range_fields_and_stray_bits():
    packed = bytearray(DX7Voice.init_voice().to_packed())
    packed[14] = 120                    # operator 6 output level 120 > 99
    packed[110] |= 0x40                 # a bit above the algorithm's 5
    voice = DX7Voice.from_packed(bytes(packed))
    assert voice.operators[5]["output_level"] == 99 and voice.globals["algorithm"] == 0
    assert len(voice.repairs) == 2 and "clamped" in " ".join(voice.repairs)


def test_voice_names_from_prompts():
    assert voice_name("warm bell pad, soft attack") == "WARM BELL "
    assert voice_name("caf\u00e9  \u266b  bass") == "CAF BASS  "
    assert voice_name("   ") == "SDS VOICE "
    with pytest.raises(SDSAudioError):
        DX7Voice(name="caf\u00e9 \u00e9\u00e9\u00e9\u00e9\u00e9").to_packed()


@pytest.mark.parametrize("damage,message", [
    (lambda b: b[:100], "truncated"),
    (lambda b: b[:-2] + bytes([(b[-2] + 1) & 0x7F, 0xF7]), "checksum"),
    (lambda b: bytes([0xF0, 0x43, 0x00, 0x09, 0x10, 0x00]) + b[6:], "header"),
    (lambda b: b"\x00" + b[1:], "F0 43"),
    (lambda b: b[:-1] + b"\x00", "F7"),
    (lambda b: b + b"\xf0", "after"),
])
def test_bad_files_are_refused(tmp_path, damage, message):
    raw = vmem_bytes(_bank())
    with pytest.raises(SDSAudioError, match=message):
        parse_syx(damage(raw))


def test_non_ascii_name_in_a_file_is_refused():
    data = bytearray(DX7Voice.init_voice().to_vced_data())
    data[145] = 0x7F
    raw = bytes([0xF0, 0x43, 0x00, 0x00, 0x01, 0x1B]) + bytes(data) + bytes([checksum(bytes(data)), 0xF7])
    with pytest.raises(SDSAudioError, match="ASCII"):
        parse_syx(raw)


def test_voice_numbers(tmp_path):
    path = tmp_path / "bank.syx"
    write_vmem(path, _bank())
    assert read_voice(path, 32).name == "VOICE 31  "
    for bad in (0, 33):
        with pytest.raises(SDSAudioError, match="out of range"):
            read_voice(path, bad)
    with pytest.raises(SDSAudioError, match="--voice"):
        read_voice(path)


# -- commands -----------------------------------------------------------------------------------
def test_render_a_bank_voice(tmp_path, capsys):
    path = tmp_path / "bank.syx"
    bank = [DX7Voice.init_voice() for _ in range(3)]
    bank[2].operators[0]["coarse"] = 2                       # the third voice plays an octave up
    write_vmem(path, bank)
    out = tmp_path / "v3.wav"
    assert main(["render", str(path), "--voice", "3", "-o", str(out), "--duration-s", "0.5"]) == 0
    audio, sr = sf.read(str(out))
    spectrum = np.abs(np.fft.rfft(audio[:, 0] * np.hanning(len(audio))))
    assert abs(np.argmax(spectrum) * sr / len(audio) - 523.25) < 3           # key 60 x 2
    assert main(["render", str(path), "--voice", "33", "-o", str(tmp_path / "x.wav")]) == 2
    assert "--voice" in _one_error_line(capsys)
    assert main(["render", str(path), "-o", str(tmp_path / "x.wav")]) == 2
    assert "--voice" in _one_error_line(capsys)
    assert not (tmp_path / "x.wav").exists()


def test_export_syx_bank_from_presets(tmp_path, capsys):
    dx7 = DX7Synth(algorithm=5, sample_rate=22050, channels=1)
    dx7.randomize_(torch.Generator().manual_seed(0))
    run = tmp_path / "run"
    run.mkdir()
    save_preset(run / "preset.json", dx7, duration_s=1.0, provenance={"prompt": "glassy electric piano"})
    fm = FMSynth(n_operators=2, sample_rate=22050, channels=1)
    save_preset(tmp_path / "fm.json", fm, duration_s=0.3)
    voices = tmp_path / "voices.syx"
    write_vmem(voices, _bank())
    out = tmp_path / "bank.syx"
    argv = ["export", "syx", str(run), str(tmp_path / "fm.json"), f"{voices}:5", "-o", str(out),
            "--fit-steps", "2", "--fit-restarts", "2", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "spectral distance" in printed and "3 voice(s), 29 INIT VOICE" in printed
    bank = parse_syx(out.read_bytes())
    assert bank[0] == dx7.to_voice(0, name="glassy electric piano") and bank[0].name == "GLASSY ELE"
    assert bank[1].name == "FM        " and bank[2] == _bank()[4]
    assert [v.name for v in bank[3:]] == ["INIT VOICE"] * 29
    # refusals: existing output, a synth with no DX7 form (nothing written)
    assert main(argv) == 2
    assert "--overwrite" in _one_error_line(capsys)
    save_preset(tmp_path / "impact.json", ImpactSynth(sample_rate=22050, channels=1), duration_s=0.3)
    assert main(["export", "syx", str(tmp_path / "impact.json"), "-o", str(tmp_path / "no.syx")]) == 2
    assert "cannot be exported" in _one_error_line(capsys)
    assert not (tmp_path / "no.syx").exists()


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory):
    return str(write_prior_dir(tmp_path_factory.mktemp("tiny_prior")))


FAST = ["--steps", "2", "--restarts", "2", "--duration-s", "0.3", "--quiet", "--no-judge"]


def test_dx7_prompt_command_writes_a_voice(tmp_path, prior_dir):
    out = tmp_path / "ep"
    assert main(["dx7", "glassy electric piano", "-o", str(out), "--prior", prior_dir, *FAST]) == 0
    record = json.loads((out / "run.json").read_text())
    assert "voice.syx" in record["outputs"]
    preset = load_preset(out / "preset.json")
    voice = parse_syx((out / "voice.syx").read_bytes())[0]
    assert voice.name == "GLASSY ELE"
    assert voice == preset.synth.to_voice(0, controls=preset.controls, name="glassy electric piano")
    # the population's draws tried different algorithms; the preset holds the kept restart's
    from sds_audio.synths.dx7 import restart_algorithms

    drawn = record["population"]["kept"][record["best_restart"]]
    assert preset.synth.algorithm == restart_algorithms(0)[drawn % 32]


def test_dx7_prompt_command_starts_from_a_bank_voice(tmp_path, prior_dir, capsys):
    bank = tmp_path / "bank.syx"
    voices = [DX7Voice.init_voice() for _ in range(4)]
    voices[3].globals["algorithm"] = 17
    voices[3].operators[1]["output_level"] = 80
    write_vmem(bank, voices)
    out = tmp_path / "run"
    assert main(["dx7", "bright bell", "-o", str(out), "--prior", prior_dir, "--init", f"{bank}:4", *FAST,
                 "--steps", "1"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["init"] == f"{bank}:4" and record["synthesis_config"]["init"] == "current"
    assert load_preset(out / "preset.json").synth.algorithm == 18
    # restart 0 starts exactly at the voice: the initial sound is the voice's render
    start = load_preset(bank, voice=4)
    synth = DX7Synth(**{**start.synth.config(), "sample_rate": 22050, "channels": 1})
    with torch.no_grad():
        expected = synth.render({k: v for k, v in start.controls.items()}, round(0.3 * 22050))[0].T.numpy()
    initial, _ = sf.read(str(out / "initial.wav"), dtype="float32", always_2d=True)
    if record["best_restart"] == 0:
        assert np.abs(initial - expected).max() < 5e-3          # float32 phase round-off over 0.3 s
    for bad in (f"{bank}:33", f"{bank}:x", str(tmp_path / "missing.syx")):
        assert main(["dx7", "bell", "-o", str(tmp_path / "bad"), "--prior", prior_dir, "--init", bad, *FAST]) == 2
        _one_error_line(capsys)
        assert not (tmp_path / "bad").exists()
