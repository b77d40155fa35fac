"""Property tests (hypothesis) of the file loaders: any input loads or raises SDSAudioError, nothing else.

The preset loader gets random JSON values, random bytes, and valid presets with one
field replaced, removed or added; the DX7 ``.syx`` reader
(:mod:`sds_audio.exports.syx`) gets random bytes and valid single-voice and bank dumps
with bytes changed, cut or added, with the checksum made right again so that the
field decoding is reached. What loads must be valid: every control finite and inside
its parameter's range.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sds_audio.errors import SDSAudioError
from sds_audio.presets import Preset, load_preset, validate_preset

PRESETS = Path(str(resources.files("sds_audio").joinpath("assets/presets")))
VALID = {p.name: json.loads(p.read_text()) for p in sorted(PRESETS.glob("*.json"))}
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])

JSON_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=6)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=6), max_leaves=24)


def _loads_or_refuses(path: Path, **kwargs) -> Preset | None:
    """``load_preset(path)``, or None when it raised SDSAudioError; any other exception fails the test."""
    try:
        preset = load_preset(path, **kwargs)
    except SDSAudioError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        return None
    _assert_valid(preset)
    return preset


def _assert_valid(preset: Preset) -> None:
    for name, spec in preset.synth.param_specs.items():
        value = preset.controls[name]
        assert torch.isfinite(value).all(), name
        assert spec.contains(value[0].double()), name


def _paths(data):
    """Every (path, value) in a JSON structure; a path is a tuple of keys / indices."""
    yield (), data
    if isinstance(data, dict):
        for k, v in data.items():
            for p, x in _paths(v):
                yield (k, *p), x
    elif isinstance(data, list):
        for i, v in enumerate(data):
            for p, x in _paths(v):
                yield (i, *p), x


def _replace(data, path, value):
    if not path:
        return value
    copy = json.loads(json.dumps(data))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


def _dump(data) -> str:
    return json.dumps(data, allow_nan=True)    # NaN / Infinity on purpose: the loader must refuse them


@FUZZ
@given(value=JSON_VALUES)
def test_any_json_value_is_a_preset_or_a_library_error(value, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(_dump(value))
    assert _loads_or_refuses(path) is None         # no random value is a whole preset


@FUZZ
@given(name=st.sampled_from(sorted(VALID)), pick=st.integers(min_value=0), value=JSON_VALUES,
       action=st.sampled_from(["replace", "delete", "add"]))
def test_a_preset_with_one_field_changed_loads_validly_or_is_refused(name, pick, value, action, tmp_path):
    data = VALID[name]
    paths = [p for p, _ in _paths(data) if p]
    path = paths[pick % len(paths)]
    if action == "replace":
        changed = _replace(data, path, value)
    else:
        parent_path, key = path[:-1], path[-1]
        parent = dict(_paths(data))[parent_path]
        if action == "delete" and isinstance(parent, dict):
            changed = _replace(data, parent_path, {k: v for k, v in parent.items() if k != key})
        elif action == "delete":
            changed = _replace(data, parent_path, parent[:key] + parent[key + 1:])
        elif isinstance(parent, dict):
            changed = _replace(data, parent_path, {**parent, f"extra_{pick % 7}": value})
        else:
            changed = _replace(data, parent_path, parent + [value])
    file = tmp_path / "p.json"
    file.write_text(_dump(changed))
    _loads_or_refuses(file)


@FUZZ
@given(raw=st.binary(max_size=512))
def test_any_bytes_are_a_preset_or_a_library_error(raw, tmp_path):
    path = tmp_path / "p.json"
    path.write_bytes(raw)
    assert _loads_or_refuses(path) is None


def test_the_unchanged_presets_load_and_deep_nesting_is_refused(tmp_path):
    for name, data in VALID.items():
        controls = validate_preset(data)
        assert controls and all(bool(torch.isfinite(v).all()) for v in controls.values()), name
    path = tmp_path / "deep.json"
    path.write_text("{\"params\": " + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(SDSAudioError, match="nested too deeply"):
        load_preset(path)
    assert math.isfinite(load_preset(PRESETS / "fm_bass.json").duration_s)


# ------------------------------------------------------------------------------------------- .syx
try:
    from sds_audio.exports import syx
except ImportError:  # pragma: no cover - the reader ships with the package
    syx = None
needs_syx = pytest.mark.skipif(syx is None, reason="the DX7 .syx reader is not in this build")


def _fix_checksum(raw: bytearray) -> bytes:
    """Recompute the checksum of a VCED / VMEM dump (data bytes masked to 7 bits) so decoding is reached."""
    if len(raw) in (syx.VCED_SIZE, syx.VMEM_SIZE):
        body = raw[6:-2]
        for i, b in enumerate(body):
            body[i] = b & 0x7F
        raw[6:-2] = body
        raw[-2] = syx.checksum(bytes(body))
    return bytes(raw)


def _valid_dumps() -> dict[str, bytes]:
    voice = syx.DX7Voice.init_voice()
    return {"vced": syx.vced_bytes(voice), "vmem": syx.vmem_bytes([voice] * syx.BANK_VOICES)}


def _parse_or_refuse(raw: bytes) -> list | None:
    try:
        voices = syx.parse_syx(raw, "fuzz.syx")
    except SDSAudioError as exc:
        assert str(exc)
        return None
    assert len(voices) in (1, syx.BANK_VOICES)
    for voice in voices:
        voice.validate()                          # repaired voices are valid voices
    return voices


@needs_syx
@FUZZ
@given(raw=st.binary(max_size=5000))
def test_any_bytes_are_a_syx_dump_or_a_library_error(raw):
    assert _parse_or_refuse(raw) is None or len(raw) in (syx.VCED_SIZE, syx.VMEM_SIZE)


@needs_syx
@FUZZ
@given(kind=st.sampled_from(["vced", "vmem"]), edits=st.lists(st.tuples(st.integers(min_value=0),
                                                                         st.integers(0, 255)), max_size=40),
       cut=st.integers(min_value=-3, max_value=3), fix=st.booleans())
def test_a_damaged_syx_dump_loads_validly_or_is_refused(kind, edits, cut, fix, tmp_path):
    raw = bytearray(_valid_dumps()[kind])
    for position, value in edits:
        raw[position % len(raw)] = value
    if fix:
        raw = bytearray(_fix_checksum(raw))
    if cut < 0:
        raw = raw[:cut]
    elif cut > 0:
        raw = raw + bytes([0x00] * cut)
    voices = _parse_or_refuse(bytes(raw))
    if voices is not None:                        # and the preset loader builds a valid DX7 synth from it
        path = tmp_path / "v.syx"
        path.write_bytes(bytes(raw))
        preset = _loads_or_refuses(path, voice=1 if len(voices) > 1 else None)
        assert preset is not None
