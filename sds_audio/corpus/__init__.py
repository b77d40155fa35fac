"""Captioned training corpora: real sampled instruments (a General MIDI SoundFont
rendered by fluidsynth) and procedural sounds, with the reader the trainers use.

See :mod:`sds_audio.corpus.dataset` for the on-disk format and
:func:`sds_audio.corpus.build.build_corpus` for the builder.
"""

from .build import CorpusSummary, build_corpus
from .concepts import CONCEPTS, Concept
from .dataset import CorpusDataset, read_concepts, read_manifest

__all__ = ["CONCEPTS", "Concept", "CorpusDataset", "CorpusSummary", "build_corpus", "read_concepts", "read_manifest"]
