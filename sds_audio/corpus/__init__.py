"""Captioned training corpora: real sampled instruments (a General MIDI SoundFont
rendered by fluidsynth) and procedural sounds, with the reader the trainers use.

See :mod:`sds_audio.corpus.dataset` for the on-disk format and
:func:`sds_audio.corpus.build.build_corpus` for the builder.
"""

from .concepts import CONCEPTS, Concept
from .dataset import CorpusDataset, read_concepts, read_manifest


def __getattr__(name: str):
    # The builders pull in scipy and the renderers; the trainers and the embedded prior
    # import this package only for the reader, so the builders load when first asked for.
    if name in ("CorpusSummary", "build_corpus"):
        from . import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CONCEPTS", "Concept", "CorpusDataset", "CorpusSummary", "build_corpus", "read_concepts", "read_manifest"]
