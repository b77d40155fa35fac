"""Presets: round trip, bit-identical re-render, and every kind of bad file."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.presets import load_preset, preset_dict, read_preset_json, save_preset, validate_preset
from sds_audio.synths import FMSynth, ImpactSynth

SR = 16000


def _synths():
    gen = torch.Generator().manual_seed(3)
    fm = FMSynth(sample_rate=SR).randomize_(gen)
    impact = ImpactSynth(n_modes=32, n_bands=4, sample_rate=SR, seed=11).randomize_(gen)
    return [fm, impact]


@pytest.mark.parametrize("synth", _synths(), ids=lambda s: s.synth_type)
def test_round_trip_is_bit_identical(tmp_path, synth):
    path = tmp_path / "p.json"
    save_preset(path, synth, duration_s=0.25, provenance={"prompt": "test", "seed": 3})
    preset = load_preset(path)
    with torch.no_grad():
        original = synth.render(synth.controls(), synth.n_samples(0.25))
    again = preset.render()
    assert again.shape == original.shape
    assert torch.equal(again, original)
    assert preset.provenance["prompt"] == "test"
    assert preset.provenance["library_version"]
    # the loaded synth's own (optimisable) controls match the file to float32 precision
    for name, value in preset.synth.controls().items():
        torch.testing.assert_close(value, preset.controls[name], rtol=1e-5, atol=1e-6)


def test_render_at_other_pitch_and_duration(tmp_path):
    synth = _synths()[0]
    path = tmp_path / "fm.json"
    save_preset(path, synth, duration_s=0.2)
    preset = load_preset(path)
    longer = preset.render(duration_s=0.4)
    assert longer.shape[-1] == round(0.4 * SR)
    base = preset.render()
    higher = preset.render(f0_hz=float(preset.controls["f0_hz"]) * 1.5)
    assert higher.shape == base.shape and not torch.equal(higher, base)
    with pytest.raises(SDSAudioError, match="f0_hz"):
        preset.render(f0_hz=1e9)


def test_batch_candidate_selection(tmp_path):
    synth = FMSynth(sample_rate=SR, batch_size=3).randomize_(torch.Generator().manual_seed(0))
    save_preset(tmp_path / "c2.json", synth, index=2, duration_s=0.1)
    preset = load_preset(tmp_path / "c2.json")
    with torch.no_grad():
        want = synth.render(synth.controls(), synth.n_samples(0.1))[2:3]
    torch.testing.assert_close(preset.render(), want)


def _good() -> dict:
    return preset_dict(_synths()[0], duration_s=0.5)


def _mutations():
    yield "unknown synth", lambda d: d.update(synth="theremin"), "synth"
    yield "missing param", lambda d: d["params"].pop("f0_hz"), "params.f0_hz"
    yield "extra param", lambda d: d["params"].update(volume=1.0), "params.volume"
    yield "wrong type", lambda d: d["params"].update(f0_hz="loud"), "params.f0_hz"
    yield "bool not number", lambda d: d["params"].update(f0_hz=True), "params.f0_hz"
    yield "out of range", lambda d: d["params"].update(f0_hz=1e9), "params.f0_hz"
    yield "wrong length", lambda d: d["params"].update(ratio=[1.0]), "params.ratio"
    yield "huge array", lambda d: d["params"].update(ratio=[1.0] * 100000), "params.ratio"
    yield "missing field", lambda d: d.pop("duration_s"), "duration_s"
    yield "extra field", lambda d: d.update(colour="red"), "colour"
    yield "bad duration", lambda d: d.update(duration_s=-1), "duration_s"
    yield "bad version", lambda d: d.update(version=99), "version"
    yield "bad config", lambda d: d["config"].update(n_operators="many"), "config"
    yield "unknown config", lambda d: d["config"].update(wobble=1), "config.wobble"


@pytest.mark.parametrize("name,mutate,field", list(_mutations()), ids=[m[0] for m in _mutations()])
def test_bad_presets_name_the_field(tmp_path, name, mutate, field):
    data = copy.deepcopy(_good())
    mutate(data)
    with pytest.raises(SDSAudioError) as info:
        validate_preset(data)
    assert field in str(info.value)
    # the same through a file
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SDSAudioError):
        load_preset(path)


def test_nan_and_not_json(tmp_path):
    data = _good()
    text = json.dumps(data).replace(json.dumps(data["params"]["f0_hz"]), "NaN", 1)
    (tmp_path / "nan.json").write_text(text)
    with pytest.raises(SDSAudioError, match="NaN"):
        load_preset(tmp_path / "nan.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(SDSAudioError, match="not valid JSON"):
        read_preset_json(tmp_path / "junk.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SDSAudioError):
        load_preset(tmp_path / "bin.json")
    with pytest.raises(SDSAudioError, match="does not exist"):
        load_preset(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(SDSAudioError, match="JSON object"):
        load_preset(tmp_path / "list.json")


def test_save_is_atomic_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    synth = _synths()[0]
    path = tmp_path / "p.json"
    save_preset(path, synth, duration_s=0.5)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("sds_audio.atomic.os.replace", boom)
    with pytest.raises(SDSAudioError, match="disk is full"):
        save_preset(path, synth, duration_s=1.0)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]
