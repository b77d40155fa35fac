"""The speech decoder for codec-latent speech models: the library's codec with its decoder fine-tuned on speech.

A speech model with ``features="codec"`` predicts the latents of the shipped
codec's frozen encoder; the codec's decoder (trained on instruments and
procedural sounds) turns them back into audio. Its decoder alone can be
fine-tuned on speech with the codec's own trainer
(:func:`sds_audio.codec.train.train_codec` with ``init_from`` and
``decoder_only``: the latent space stays bit-identical). Log-mel models (the
shipped default) use Griffin-Lim instead (:mod:`sds_audio.tts.features`).

:func:`write_codec_manifest` presents an LJSpeech-layout directory to that
trainer (a ``manifest.jsonl`` of absolute wav paths, the speakers as concepts,
the valid split as ``heldout``); :func:`train_speech_decoder` runs it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import soundfile as sf

from ..atomic import write_text_atomic
from ..errors import SDSAudioError
from .data import read_ljspeech


def write_codec_manifest(data_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/manifest.jsonl`` listing the train and valid utterances of ``data_dir``; returns ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for u in read_ljspeech(data_dir):
        if u.split == "test":
            continue
        if not u.wav.is_file():
            raise SDSAudioError(f"{u.wav} is listed in metadata.csv but missing")
        info = sf.info(str(u.wav))
        lines.append(json.dumps({"id": u.id, "path": str(u.wav.resolve()), "concept": u.speaker, "caption": u.text,
                                 "split": "train" if u.split == "train" else "heldout",
                                 "duration_s": info.duration, "sample_rate": info.samplerate}))
    write_text_atomic(out_dir / "manifest.jsonl", "\n".join(lines) + "\n")
    return out_dir


def train_speech_decoder(data_dir: str | os.PathLike, out_dir: str | os.PathLike, *, steps: int = 1000,
                         codec_path: str | os.PathLike | None = None, **overrides: Any) -> dict[str, Any]:
    """Fine-tune the codec's decoder on the speech of ``data_dir`` (resumable; see the codec trainer).

    Returns the codec trainer's metrics; the weights are ``out_dir/codec.safetensors`` (float16).
    """
    from ..codec.io import default_codec_path
    from ..codec.train import codec_recipe, decoder_finetune_recipe, train_codec

    recipe = codec_recipe()
    recipe.pop("config")
    recipe.update(decoder_finetune_recipe())
    recipe.update(steps=steps, checkpoint_every=100)
    recipe.update(overrides)
    manifest_dir = write_codec_manifest(data_dir, Path(out_dir) / "manifest")
    return train_codec(manifest_dir, out_dir, init_from=codec_path or default_codec_path(), decoder_only=True,
                       fp16=True, **recipe)


__all__ = ["train_speech_decoder", "write_codec_manifest"]
