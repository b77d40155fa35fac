"""Speech on the library's stack: a flow-matching text-to-speech model over log-mel frames (or codec latents).

- :mod:`~sds_audio.tts.normalize`, :mod:`~sds_audio.tts.frontend`: text -> words -> espeak-ng phonemes
- :mod:`~sds_audio.tts.alignment`: monotonic alignment search, durations, masks
- :mod:`~sds_audio.tts.features`: the frames the model predicts and how they become audio
- :class:`TTSConfig`, :class:`TTSModel` (:mod:`~sds_audio.tts.networks`, :mod:`~sds_audio.tts.model`)
- :func:`train_tts` (:mod:`~sds_audio.tts.train`, data in :mod:`~sds_audio.tts.data`)
- :func:`load_tts` -> :class:`~sds_audio.tts.infer.SpeechSynthesizer` with ``speak(text, voice=None, ...) -> (audio, rate)``
"""

from .config import TTSConfig
from .frontend import Frontend
from .model import TTSModel


def __getattr__(name: str):
    # training and inference pull in torchaudio and the codec; load them when first asked for
    if name in ("load_tts", "SpeechSynthesizer"):
        from . import infer

        return getattr(infer, name)
    if name == "train_tts":
        from .train import train_tts

        return train_tts
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Frontend", "SpeechSynthesizer", "TTSConfig", "TTSModel", "load_tts", "train_tts"]
