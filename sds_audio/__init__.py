"""sds-audio: differentiable sound synthesis and Audio Score Distillation Sampling.

The names below are the public API. Importing ``sds_audio`` is light: each name
is imported on first use (PEP 562 ``__getattr__``), so ``import sds_audio`` does
not pull in diffusers or transformers until a prior is loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "FMSynth": "sds_audio.synths",
    "ImpactSynth": "sds_audio.synths",
    "LatentSynth": "sds_audio.synths",
    "ParamSpec": "sds_audio.synths",
    "Synth": "sds_audio.synths",
    "save_preset": "sds_audio.presets",
    "load_preset": "sds_audio.presets",
    "validate_preset": "sds_audio.presets",
    "load_prior": "sds_audio.priors.registry",
    "SDSConfig": "sds_audio.sds",
    "SDSObjective": "sds_audio.sds",
    "synthesize": "sds_audio.tasks.synthesize",
    "SynthesisConfig": "sds_audio.tasks.synthesize",
    "PopulationConfig": "sds_audio.tasks.population",
    "separate": "sds_audio.tasks.separate",
    "SeparationConfig": "sds_audio.tasks.separate",
    "match": "sds_audio.tasks.match",
    "MatchConfig": "sds_audio.tasks.match",
    "DX7Synth": "sds_audio.synths",
    "export_sfz": "sds_audio.exports.sfz",
    "read_syx": "sds_audio.exports.syx",
    "SDSAudioError": "sds_audio.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sds_audio' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
