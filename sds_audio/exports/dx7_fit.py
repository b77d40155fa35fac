"""Presets to DX7 voices: a ``dx7`` preset exports as it is; an FM preset is fitted.

:func:`preset_to_voice` turns a loaded :class:`~sds_audio.presets.Preset` into a
:class:`~sds_audio.exports.syx.DX7Voice`:

* a ``dx7`` preset: its fields rounded to the DX7's integers (no fitting);
* an ``fm`` preset: the nearest DX7 voice by spectral sound matching
  (:func:`~sds_audio.tasks.match.match`, multi-resolution STFT distance). The FM preset's
  render is the target; a :class:`~sds_audio.synths.DX7Synth` playing the MIDI key nearest to
  the preset's ``f0_hz``, key held throughout, is fitted from ``restarts`` random voices that
  each try another algorithm (transpose held at 0, so the voice plays in tune on that key).
  The result reports the distance of the exported (rounded) voice to the target (FMSynth's
  default patch, 1 s at 22.05 kHz, 100 steps, 8 restarts: 3.44 -> 1.52, exported voice 1.51,
  83 s of one CPU core; 2026-12-07);
* any other synth: :class:`~sds_audio.errors.SDSAudioError` (a modal impact model has no DX7
  form).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import SDSAudioError
from .syx import DX7Voice, voice_name


@dataclass
class VoiceExport:
    """A preset's DX7 voice and how it was obtained.

    Attributes:
        voice: the voice.
        method: ``"exact"`` (a dx7 preset, rounded) or ``"fitted"`` (an FM preset, matched).
        key: the MIDI key the voice was fitted to play (fitted voices).
        distance_initial / distance_final: multi-resolution STFT distance of the best restart
            to the target before and after fitting; ``distance_exported``: of the rounded voice.
    """

    voice: DX7Voice
    method: str
    key: int | None = None
    distance_initial: float | None = None
    distance_final: float | None = None
    distance_exported: float | None = None

    def describe(self) -> str:
        if self.method == "exact":
            return f"{self.voice.name.rstrip()!r}: DX7 voice (fields rounded)"
        alg = self.voice.globals["algorithm"] + 1
        return (f"{self.voice.name.rstrip()!r}: fitted from an FM preset (algorithm {alg}, plays at MIDI key "
                f"{self.key}; spectral distance {self.distance_initial:.3f} -> {self.distance_final:.3f}, "
                f"exported voice {self.distance_exported:.3f})")


def preset_to_voice(preset, name: str, *, steps: int = 100, restarts: int = 8, seed: int = 0,
                    progress: bool = False) -> VoiceExport:
    """The DX7 voice of ``preset`` (see the module docstring); ``name`` becomes the voice name."""
    synth_type = preset.synth.synth_type
    if synth_type == "dx7":
        controls = {k: v[:1] for k, v in preset.controls.items()}
        return VoiceExport(preset.synth.to_voice(0, controls=controls, name=name), "exact")
    if synth_type != "fm":
        raise SDSAudioError(f"a {synth_type!r} preset cannot be exported as a DX7 voice; DX7 voices come from "
                            "dx7 presets (exact) and fm presets (fitted)")
    return _fit_fm(preset, name, steps=steps, restarts=restarts, seed=seed, progress=progress)


def _fit_fm(preset, name: str, *, steps: int, restarts: int, seed: int, progress: bool) -> VoiceExport:
    from ..spectral import MultiResolutionSTFTDistance
    from ..synths.dx7 import DX7Synth, restart_algorithms
    from ..tasks.match import MatchConfig, match

    with torch.no_grad():
        target = preset.render().float()                                                 # (1, C, T)
    f0 = float(preset.controls["f0_hz"].flatten()[0])
    key = int(min(127, max(0, round(69 + 12 * math.log2(f0 / 440.0)))))
    synth = DX7Synth(algorithm=restart_algorithms(seed), key=key, hold_fraction=1.0,
                     sample_rate=preset.sample_rate, channels=int(target.shape[1]), batch_size=restarts)
    synth.randomize_(torch.Generator().manual_seed(seed))
    synth.set_controls({"transpose_semitones": 0.0})
    config = MatchConfig(steps=steps, restarts=restarts, init="current", frozen=("transpose_semitones",),
                         seed=seed)
    result = match(synth, target, config, progress=progress)
    best = result.best_index
    voice = result.synth.to_voice(best, name=name)
    exported, controls = DX7Synth.from_voice(voice, key=key, hold_fraction=1.0, sample_rate=preset.sample_rate,
                                             channels=int(target.shape[1]))
    distance = MultiResolutionSTFTDistance()
    with torch.no_grad():
        d_exported = float(distance(exported.render(controls, target.shape[-1]), target)[0])
    return VoiceExport(voice, "fitted", key=key, distance_initial=result.distance_initial[best],
                       distance_final=result.distance_final[best], distance_exported=d_exported)


def default_voice_name(preset, fallback: str) -> str:
    """A voice name for a preset: its prompt, else its DX7 name, else ``fallback`` (e.g. a file name)."""
    prov = preset.provenance or {}
    for text in (prov.get("prompt"), prov.get("name")):
        if isinstance(text, str) and text.strip():
            return voice_name(text)
    return voice_name(fallback)
