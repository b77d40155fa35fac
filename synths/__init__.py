"""Differentiable renderers for sds-audio, imported as ``sds_audio.synths``.

This folder sits at the top of the repository (``synths/``) but is installed as the
subpackage ``sds_audio.synths`` (pyproject ``[tool.setuptools] package-dir``):
PyPI already has an unrelated distribution named ``synths``, so a bare top-level
``synths`` import package must not be shipped. Import from ``sds_audio.synths``.

* :class:`ParamSpec` declares a parameter (unit, range, scale, default);
* :class:`Synth` is the base module (batched raw parameters, ``controls()``, ``render()``);
* :class:`FMSynth`, :class:`ImpactSynth`, :class:`DX7Synth`, :class:`LatentSynth` are the renderers,
  built on the pure functions in :mod:`sds_audio.synths.dsp`;
* ``SYNTH_TYPES`` maps the ``synth_type`` stored in presets to its class (the
  latent renderer is not a preset type: its decoder is not serialisable).
"""

from .base import Synth
from .dx7 import DX7Synth
from .fm import FMSynth
from .impact import ImpactSynth
from .latent import LatentSynth
from .params import ParamSpec

SYNTH_TYPES: dict[str, type[Synth]] = {"fm": FMSynth, "impact": ImpactSynth, "dx7": DX7Synth}

__all__ = ["ParamSpec", "Synth", "FMSynth", "ImpactSynth", "DX7Synth", "LatentSynth", "SYNTH_TYPES"]
