"""Frozen text-to-audio priors behind one protocol (:class:`Prior`).

Importing this package is cheap: diffusers, transformers and stable-audio-tools
are imported only when a prior is built or loaded (:func:`load_prior`).
"""

from .base import Conditioning, Prior
from .edm import EDMParameterization
from .registry import PRIORS, known_priors, load_prior
from .stable_audio import StableAudioOpenPrior
from .stable_audio_tools import StableAudioToolsPrior

__all__ = ["Conditioning", "EDMParameterization", "Prior", "PRIORS", "StableAudioOpenPrior",
           "StableAudioToolsPrior", "known_priors", "load_prior"]
