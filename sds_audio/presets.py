"""Presets: a synth patch as a versioned JSON file, in physical units.

A preset file holds everything needed to re-render a sound and to say where it
came from::

    {
      "format": "sds-audio-preset",
      "version": 1,
      "synth": "fm",                       # a key of sds_audio.synths.SYNTH_TYPES
      "sample_rate": 44100,
      "duration_s": 1.5,
      "config": {"n_operators": 4, ...},   # constructor settings (not optimised)
      "params": {"f0_hz": 55.0, "ratio": [1.0, 2.0, ...], ...},   # physical units
      "provenance": {"prompt": "...", "prior": "...", "seed": 0, "steps": 300,
                     "library_version": "0.1.0"}
    }

``params`` must name every parameter of the synth exactly once, with the
parameter's shape (a number, a list, a list of lists) and every value finite and
inside the parameter's declared range. :func:`validate_preset` checks all of
that and raises :class:`~sds_audio.errors.SDSAudioError` naming the offending
field; :func:`load_preset` validates, then builds the synth. Files are written
atomically. A preset holds no creation time, so the same run (command and seed)
writes the same bytes; the time is in the run directory's ``run.json``. Older
presets that hold ``provenance.created_utc`` load as before.

Rendering a loaded preset uses the exact physical values from the file (not a
round trip through the optimiser's unconstrained tensors), so save -> load ->
render reproduces the audio bit for bit on the same machine.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from . import __version__
from .atomic import write_json_atomic
from .errors import SDSAudioError
from .synths import SYNTH_TYPES, Synth

PRESET_FORMAT = "sds-audio-preset"
PRESET_VERSION = 1
#: refuse files larger than this before parsing (a preset is a few kB)
MAX_PRESET_BYTES = 4 * 1024 * 1024
#: refuse any single parameter with more values than this
MAX_PARAM_VALUES = 65536
_TOP_KEYS = {"format", "version", "synth", "sample_rate", "duration_s", "config", "params", "provenance"}
_REQUIRED_KEYS = _TOP_KEYS - {"provenance"}
MAX_DURATION_S = 600.0


@dataclass
class Preset:
    """A loaded preset: a ready synth (batch 1) plus the exact values and metadata.

    Attributes:
        synth: the synth, its parameters set from the file (optimisable further).
        controls: the exact physical values from the file, ``name -> (1, *shape)``.
        duration_s: the duration the preset was made for.
        provenance: where it came from (prompt, prior, seed, steps, version).
    """

    synth: Synth
    controls: dict[str, torch.Tensor]
    duration_s: float
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def sample_rate(self) -> int:
        return self.synth.sample_rate

    @torch.no_grad()
    def render(self, duration_s: float | None = None, f0_hz: float | None = None) -> torch.Tensor:
        """Render ``(1, channels, samples)``; optionally at another duration or pitch."""
        controls = dict(self.controls)
        if f0_hz is not None:
            spec = self.synth.param_specs.get("f0_hz")
            if spec is None:
                raise SDSAudioError(f"a {self.synth.synth_type!r} preset has no pitch; --f0-hz applies to FM presets")
            if not (math.isfinite(f0_hz) and spec.min <= f0_hz <= spec.max):
                raise SDSAudioError(f"f0_hz must be within [{spec.min}, {spec.max}] Hz, got {f0_hz}")
            controls["f0_hz"] = torch.full_like(controls["f0_hz"], float(f0_hz))
        duration_s = self.duration_s if duration_s is None else duration_s
        if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and 0 < duration_s <= MAX_DURATION_S):
            raise SDSAudioError(f"duration must be between 0 and {MAX_DURATION_S:g} s, got {duration_s}")
        return self.synth.render(controls, self.synth.n_samples(duration_s))


def _synth_type_name(synth: Synth) -> str:
    for name, cls in SYNTH_TYPES.items():
        if type(synth) is cls:
            return name
    raise SDSAudioError(f"{type(synth).__name__} cannot be saved as a preset; "
                        f"preset synths are: {', '.join(SYNTH_TYPES)}")


def preset_dict(synth: Synth, *, index: int = 0, duration_s: float,
                provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-ready preset for candidate ``index`` of ``synth``."""
    synth_name = _synth_type_name(synth)
    if not 0 <= index < synth.batch_size:
        raise SDSAudioError(f"candidate index {index} outside the synth's batch of {synth.batch_size}")
    # the candidate's own settings (a DX7Synth's candidates may differ in algorithm)
    config = dict(synth.select(index).config() if synth.batch_size > 1 else synth.config())
    config.pop("sample_rate", None)
    with torch.no_grad():
        params = {name: value[index].double().cpu().tolist() for name, value in synth.controls().items()}
    prov = {"library_version": __version__}
    prov.update(provenance or {})
    return {"format": PRESET_FORMAT, "version": PRESET_VERSION, "synth": synth_name,
            "sample_rate": synth.sample_rate, "duration_s": float(duration_s), "config": config,
            "params": params, "provenance": prov}


def save_preset(path: str | os.PathLike, synth: Synth, *, index: int = 0, duration_s: float,
                provenance: Mapping[str, Any] | None = None) -> Path:
    """Write candidate ``index`` of ``synth`` as a preset file (atomically). Returns the path."""
    data = preset_dict(synth, index=index, duration_s=duration_s, provenance=provenance)
    validate_preset(data)  # never write a file we would refuse to read
    write_json_atomic(path, data)
    return Path(path)


def read_preset_json(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a preset file into a dict (no validation beyond size and JSON syntax)."""
    path = Path(path)
    if path.is_dir():
        raise SDSAudioError(f"preset file {path} is a directory; give a preset .json file")
    if not path.is_file():
        raise SDSAudioError(f"preset file {path} does not exist")
    size = path.stat().st_size
    if size > MAX_PRESET_BYTES:
        raise SDSAudioError(f"preset file {path} is {size} bytes; presets are at most {MAX_PRESET_BYTES} bytes")
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise SDSAudioError(f"preset file {path} is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise SDSAudioError(f"preset file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    except RecursionError as exc:
        raise SDSAudioError(f"preset file {path} is nested too deeply to be a preset") from exc


def _reject_constant(name: str) -> float:
    raise SDSAudioError(f"preset holds {name}; parameters must be finite numbers")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _to_tensor(value: Any, field_name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Nested lists of numbers with exactly ``shape`` -> float64 tensor, else SDSAudioError."""
    def walk(v: Any, dims: tuple[int, ...], where: str) -> list | float:
        if not dims:
            if not _is_number(v):
                raise SDSAudioError(f"expected a number, got {type(v).__name__}", field=where)
            if not math.isfinite(v):
                raise SDSAudioError("value is not finite", field=where)
            return float(v)
        if not isinstance(v, list):
            raise SDSAudioError(f"expected a list of {dims[0]} values, got {type(v).__name__}", field=where)
        if len(v) != dims[0]:
            raise SDSAudioError(f"expected {dims[0]} values, got {len(v)}", field=where)
        return [walk(item, dims[1:], f"{where}[{i}]") for i, item in enumerate(v)]

    if math.prod(shape) > MAX_PARAM_VALUES:
        raise SDSAudioError(f"parameter has {math.prod(shape)} values; at most {MAX_PARAM_VALUES}", field=field_name)
    return torch.tensor(walk(value, shape, field_name), dtype=torch.float64)


def _build_synth(data: Mapping[str, Any]) -> Synth:
    name = data["synth"]
    if not isinstance(name, str) or name not in SYNTH_TYPES:
        raise SDSAudioError(f"unknown synth {name!r}; known: {', '.join(SYNTH_TYPES)}", field="synth")
    cls = SYNTH_TYPES[name]
    config = data["config"]
    if not isinstance(config, dict):
        raise SDSAudioError("expected an object", field="config")
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "batch_size", "sample_rate"}
    for key in config:
        if key not in accepted:
            raise SDSAudioError(f"unknown setting for a {name!r} synth; known: {', '.join(sorted(accepted))}",
                                field=f"config.{key}")
    sample_rate = data["sample_rate"]
    if not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or not 1000 <= sample_rate <= 384000:
        raise SDSAudioError("expected an integer between 1000 and 384000 Hz", field="sample_rate")
    try:
        return cls(**config, sample_rate=sample_rate, batch_size=1)
    except (TypeError, ValueError, SDSAudioError) as exc:
        raise SDSAudioError(f"invalid synth settings: {exc}", field="config") from exc


def validate_preset(data: Any) -> dict[str, torch.Tensor]:
    """Check a parsed preset; return its physical controls ``name -> float64 (*shape)``.

    Raises:
        SDSAudioError: naming the field that is wrong.
    """
    if not isinstance(data, dict):
        raise SDSAudioError("a preset must be a JSON object")
    missing = sorted(_REQUIRED_KEYS - set(data))
    if missing:
        raise SDSAudioError("missing field", field=missing[0])
    extra = sorted(set(data) - _TOP_KEYS)
    if extra:
        raise SDSAudioError("unknown field", field=extra[0])
    if data["format"] != PRESET_FORMAT:
        raise SDSAudioError(f"expected {PRESET_FORMAT!r}", field="format")
    if data["version"] != PRESET_VERSION:
        raise SDSAudioError(f"unsupported preset version {data['version']!r}; this library reads version "
                            f"{PRESET_VERSION}", field="version")
    duration = data["duration_s"]
    if not _is_number(duration) or not (0 < duration <= MAX_DURATION_S):
        raise SDSAudioError(f"expected a number of seconds in (0, {MAX_DURATION_S:g}]", field="duration_s")
    if "provenance" in data and not isinstance(data["provenance"], dict):
        raise SDSAudioError("expected an object", field="provenance")
    synth = _build_synth(data)
    params = data["params"]
    if not isinstance(params, dict):
        raise SDSAudioError("expected an object", field="params")
    for name in synth.param_specs:
        if name not in params:
            raise SDSAudioError("missing parameter", field=f"params.{name}")
    for name in params:
        if name not in synth.param_specs:
            raise SDSAudioError(f"unknown parameter for a {data['synth']!r} synth", field=f"params.{name}")
    controls = {}
    for name, spec in synth.param_specs.items():
        value = _to_tensor(params[name], f"params.{name}", spec.shape)
        if not spec.contains(value):
            bad = value[(value < spec.min) | (value > spec.max)].flatten()[0].item()
            raise SDSAudioError(f"value {bad:g} outside [{spec.min:g}, {spec.max:g}] {spec.unit}".rstrip(),
                                field=f"params.{name}")
        controls[name] = value
    return controls


#: duration given to a preset read from a DX7 .syx voice (the file holds none)
SYX_PRESET_DURATION_S = 2.0


def load_preset(path: str | os.PathLike, device: str | torch.device | None = None,
                voice: int | None = None) -> Preset:
    """Read, validate and build a preset's synth. See :class:`Preset`.

    A ``.syx`` file (a DX7 single voice or 32-voice bank, :mod:`sds_audio.exports.syx`) gives a
    ``dx7`` preset of voice ``voice`` (1-based; required for a bank), played at MIDI key 60 for
    :data:`SYX_PRESET_DURATION_S`.
    """
    if Path(path).suffix.lower() == ".syx":
        return _load_syx_preset(path, voice, device)
    if voice is not None:
        raise SDSAudioError(f"a voice number applies to DX7 .syx files; {path} is a preset .json file")
    data = read_preset_json(path)
    try:
        controls64 = validate_preset(data)
    except SDSAudioError as exc:
        raise SDSAudioError(f"{path}: {exc}", field=None) from exc
    synth = _build_synth(data)
    dtype = next(synth.parameters()).dtype
    controls = {name: value.to(dtype).unsqueeze(0) for name, value in controls64.items()}
    synth.set_controls(controls)
    if device is not None:
        synth.to(device)
        controls = {k: v.to(device) for k, v in controls.items()}
    return Preset(synth=synth, controls=controls, duration_s=float(data["duration_s"]),
                  provenance=dict(data.get("provenance", {})))


def _load_syx_preset(path: str | os.PathLike, voice: int | None,
                     device: str | torch.device | None) -> Preset:
    from .exports.syx import read_voice
    from .synths.dx7 import DX7Synth

    dx7_voice = read_voice(path, voice)
    synth, controls = DX7Synth.from_voice(dx7_voice)
    if device is not None:
        synth.to(device)
        controls = {k: v.to(device) for k, v in controls.items()}
    provenance = {"source": Path(path).name, "voice": voice or 1, "name": dx7_voice.name.rstrip(),
                  "library_version": __version__}
    if dx7_voice.repairs:
        provenance["repairs"] = list(dx7_voice.repairs)
    return Preset(synth=synth, controls=controls, duration_s=SYX_PRESET_DURATION_S, provenance=provenance)


def load_preset_spec(spec: str, device: str | torch.device | None = None) -> Preset:
    """A preset named as ``PATH.json``, ``PATH.syx`` (a single voice) or ``PATH.syx:N`` (voice N of a bank)."""
    text = str(spec)
    head, sep, tail = text.rpartition(":")
    if sep and head.lower().endswith(".syx"):
        if not tail.isdigit():
            raise SDSAudioError(f"{text}: the voice after ':' must be a number, e.g. bank.syx:3")
        return load_preset(head, device=device, voice=int(tail))
    return load_preset(text, device=device)
