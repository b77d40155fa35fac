"""Captioned training corpora: real sampled instruments (a General MIDI SoundFont
rendered by fluidsynth) and procedural sounds, with the reader the trainers use.

See :mod:`sds_audio.corpus.dataset` for the on-disk format.
"""

from .dataset import CorpusDataset, read_concepts, read_manifest

__all__ = ["CorpusDataset", "read_concepts", "read_manifest"]
