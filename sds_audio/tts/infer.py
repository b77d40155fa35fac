"""``load_tts()`` -> :class:`SpeechSynthesizer`: text (and an optional voice prompt) -> speech.

``speak(text, voice=None, ...)`` splits long text into sentences
(:func:`~sds_audio.tts.frontend.split_sentences`), synthesises each one's frames
with :meth:`~sds_audio.tts.model.TTSModel.synthesize`, turns them into audio
with the model's frame space (:mod:`sds_audio.tts.features`: Griffin-Lim for
log-mel frames, the codec's decoder for codec latents) and joins the sentences
with ``PAUSE_S`` of silence. ``voice``
is a path or a ``(T,)`` / ``(C, T)`` tensor of 2-10 s of speech (longer is cut
to ``PROMPT_MAX_S`` after trimming silence); no transcript is needed, the
model reads the voice from the prompt's frames alone. That carries a voice the model was trained
on; for an unseen voice, :meth:`SpeechSynthesizer.adapt` (reference + its transcript) returns a copy
of the synthesiser fine-tuned on the reference (:mod:`sds_audio.tts.adapt`) whose built-in voice it is.

For codec-latent models the codec is the one named in the weights' metadata
(``codec``: a file beside the weights, such as a speech-tuned decoder), or the
library's shipped codec.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..audio_io import load_audio, resample
from ..errors import SDSAudioError
from .frontend import Frontend, split_sentences
from .model import TTSModel
from .weights import default_tts_path, load_tts_model, tts_metadata

PAUSE_S = 0.25
PROMPT_MIN_S = 2.0
PROMPT_MAX_S = 4.0
#: the longest reference :meth:`SpeechSynthesizer.adapt` takes (with its transcript)
ADAPT_MAX_S = 10.0
MAX_TEXT_CHARS = 20000
#: a "word" longer than this (no space to cut at) cannot be split into sentences
MAX_WORD_CHARS = 80
SILENT_RMS_DB = -50.0


def _trim(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    from ..corpus.speech import trim_silence

    return trim_silence(audio, sample_rate, margin_s=0.05)


def _reference_name(reference: str | os.PathLike | torch.Tensor) -> str:
    return "the reference tensor" if torch.is_tensor(reference) else str(reference)


class SpeechSynthesizer:
    """A loaded speech model with its frame space and front end (see the module docstring)."""

    def __init__(self, model: TTSModel, features: torch.nn.Module):
        self.model = model
        self.features = features
        self.frontend = Frontend(model.config.symbols, model.config.language)

    @property
    def sample_rate(self) -> int:
        return int(self.features.sample_rate)

    @torch.no_grad()
    def voice(self, reference: str | os.PathLike | torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """Normalised prompt frames ``(D, P)`` of a reference recording (its first ``PROMPT_MAX_S`` of sound).

        Args:
            reference: an audio file, or a ``(T,)`` / ``(C, T)`` tensor at ``sample_rate``.

        Raises:
            SDSAudioError: unreadable, silent, or shorter than ``PROMPT_MIN_S`` of sound.
        """
        return self._frames(self._reference_samples(reference, sample_rate), PROMPT_MAX_S)

    def _reference_samples(self, reference: str | os.PathLike | torch.Tensor, sample_rate: int | None) -> np.ndarray:
        """The reference at the model's rate, mono, silence trimmed; checked not silent and long enough."""
        name = _reference_name(reference)
        if torch.is_tensor(reference):
            if sample_rate is None:
                raise SDSAudioError("give the sample rate of a reference tensor")
            audio = reference.detach().float().cpu().reshape(-1, reference.shape[-1]).mean(0)
            if not torch.isfinite(audio).all():
                raise SDSAudioError("the reference audio holds NaN or infinite samples")
            audio = resample(audio[None, None], int(sample_rate), self.sample_rate)[0, 0]
        else:
            audio = load_audio(reference, sample_rate=self.sample_rate, channels=1, allow_silent=True)[0][0, 0]
        samples = audio.numpy()
        rms_db = 10 * np.log10(float(np.mean(samples ** 2)) + 1e-20)
        if samples.size == 0 or rms_db < SILENT_RMS_DB:
            raise SDSAudioError(f"{name} is silent (RMS {rms_db:.0f} dBFS): give 2-10 s of clear speech")
        samples = _trim(samples, self.sample_rate)
        seconds = len(samples) / self.sample_rate
        if seconds < PROMPT_MIN_S:
            raise SDSAudioError(f"{name} holds {seconds:.1f} s of sound; the voice prompt needs at least "
                                f"{PROMPT_MIN_S:.0f} s (2-10 s of speech)")
        return samples

    @torch.no_grad()
    def _frames(self, samples: np.ndarray, max_seconds: float) -> torch.Tensor:
        """Normalised frames ``(D, P)`` of the first ``max_seconds`` of ``samples`` (peak scaled to at most 0.9)."""
        samples = samples[:int(max_seconds * self.sample_rate)]
        peak = float(np.abs(samples).max())
        samples = samples * (0.9 / peak) if peak > 0.9 else samples
        audio = torch.from_numpy(np.ascontiguousarray(samples))[None, None].float()
        return self.model.normalize(self.features.encode(audio.to(self.model.latent_mean.device)))[0]

    def adapt(self, reference: str | os.PathLike | torch.Tensor, transcript: str, *, steps: int | None = None,
              lr: float | None = None, sample_rate: int | None = None, seed: int = 0,
              progress: bool = False) -> SpeechSynthesizer:
        """A copy of this synthesiser fine-tuned on ``reference``, whose built-in voice is that reference.

        Args:
            reference: 2-10 s of speech (file, or tensor at ``sample_rate``), as for ``speak(voice=...)``.
            transcript: the words the reference says.
            steps, lr: adaptation steps and step size (default :class:`~sds_audio.tts.adapt.AdaptConfig`'s).
            seed: seeds the adaptation's noise and flow-time draws.
            progress: a progress bar over the adaptation steps.

        Raises:
            SDSAudioError: a bad reference (as :meth:`voice`) or one with more than ``ADAPT_MAX_S`` of
                sound, an empty transcript, or one with more symbols than the reference has frames.
        """
        from .adapt import AdaptConfig, adapt_model

        if not isinstance(transcript, str) or not transcript.strip():
            raise SDSAudioError("the voice's transcript is empty: give the words the reference recording says")
        if len(transcript) > MAX_TEXT_CHARS:
            raise SDSAudioError(f"the voice's transcript has {len(transcript)} characters; the limit is "
                                f"{MAX_TEXT_CHARS}")
        config = AdaptConfig(**{k: v for k, v in (("steps", steps), ("lr", lr)) if v is not None}, seed=seed)
        samples = self._reference_samples(reference, sample_rate)
        seconds = len(samples) / self.sample_rate
        if seconds > ADAPT_MAX_S + 1e-6:
            raise SDSAudioError(f"{_reference_name(reference)} holds {seconds:.1f} s of sound; adapting to a voice "
                                f"takes at most {ADAPT_MAX_S:.0f} s (cut the recording and its transcript)")
        symbols = torch.tensor(self.frontend.encode_batch([transcript])[0], dtype=torch.long)
        model = adapt_model(self.model, self._frames(samples, ADAPT_MAX_S), symbols, config, progress=progress)
        model.set_default_prompt(self._frames(samples, PROMPT_MAX_S))      # what voice(reference) gives
        return SpeechSynthesizer(model, self.features)

    @torch.no_grad()
    def speak(self, text: str, voice: str | os.PathLike | torch.Tensor | None = None, *, steps: int = 16,
              guidance: float = 2.0, speed: float = 1.0, seed: int = 0, sway: float | None = -1.0,
              voice_sample_rate: int | None = None, progress: bool = False) -> tuple[torch.Tensor, int]:
        """Speak ``text``.

        Args:
            voice: reference speech (path or tensor) whose voice to use; None: the built-in voice.
            steps: ODE steps per sentence; guidance: classifier-free guidance scale.
            speed: speaking-rate factor (0.5 to 2).
            seed: seed of the initial noise (the same seed gives the same audio).
            voice_sample_rate: rate of a tensor ``voice``.
            progress: a progress bar over sentences.

        Returns:
            ``(audio (T,) float32 in [-1, 1], sample_rate)``.

        Raises:
            SDSAudioError: empty text, text over ``MAX_TEXT_CHARS`` or with a run of more than
                ``MAX_WORD_CHARS`` characters without a space, bad settings, a bad voice prompt.
        """
        if not isinstance(text, str) or not text.strip():
            raise SDSAudioError("the text is empty: give at least one word to speak")
        if len(text) > MAX_TEXT_CHARS:
            raise SDSAudioError(f"the text has {len(text)} characters; the limit is {MAX_TEXT_CHARS}: "
                                "split it into several files")
        longest = max(text.split(), key=len)
        if len(longest) > MAX_WORD_CHARS:
            raise SDSAudioError(f"the text holds a run of {len(longest)} characters without a space "
                                f"({longest[:20]!r}...), which cannot be split into sentences; the limit is "
                                f"{MAX_WORD_CHARS}")
        if not 0.5 <= speed <= 2.0:
            raise SDSAudioError(f"speed must lie in [0.5, 2], got {speed}")
        if steps < 1 or steps > 200:
            raise SDSAudioError(f"steps must lie in [1, 200], got {steps}")
        if not 0.0 <= guidance <= 10.0:
            raise SDSAudioError(f"guidance must lie in [0, 10], got {guidance}")
        prompt = None if voice is None else self.voice(voice, voice_sample_rate)
        if prompt is None and self.model.config.default_prompt_frames == 0:
            raise SDSAudioError("these weights have no built-in voice: give a voice prompt (--voice REF.wav)")
        sentences = split_sentences(text)
        ids = self.frontend.encode_batch(sentences)
        generator = torch.Generator().manual_seed(int(seed))
        pause = torch.zeros(int(PAUSE_S * self.sample_rate))
        pieces = []
        from tqdm.auto import tqdm

        for k, symbols in enumerate(tqdm(ids, desc="speaking", unit="sentence", disable=not progress)):
            z = self.model.synthesize(torch.tensor(symbols), prompt, steps=steps, guidance=guidance, speed=speed,
                                      sway=sway, generator=generator)
            audio = self.features.decode(self.model.denormalize(z[None]))[0].mean(0)
            if k:
                pieces.append(pause)
            pieces.append(audio.float().cpu())
        audio = torch.cat(pieces)
        peak = float(audio.abs().max())
        if peak > 0.99:
            audio = audio * (0.99 / peak)
        return audio, self.sample_rate


def load_tts(weights: str | os.PathLike | None = None, codec: str | os.PathLike | None = None,
             device: torch.device | str | None = None) -> SpeechSynthesizer:
    """Load a speech model (default: the shipped ``assets/tts.safetensors``) and its frame space.

    Args:
        weights: TTS ``.safetensors`` file.
        codec: for codec-latent models, the codec ``.safetensors`` to decode with (default: the one the weights
            name, else the shipped codec).

    Raises:
        SDSAudioError: missing or broken weights (exit code 1); a codec given to a log-mel model (exit code 2).
    """
    from ..codec import load_codec
    from .features import CodecFeatures, mel_features

    path = Path(weights) if weights is not None else default_tts_path()
    metadata = tts_metadata(path)
    model = load_tts_model(path, device=device)
    if model.config.features == "mel":
        if codec is not None:
            raise SDSAudioError(f"{path} speaks log-mel frames (Griffin-Lim vocoder); a codec does not apply: "
                                "leave out --codec")
        return SpeechSynthesizer(model, mel_features(model.config).to(device).eval())
    if codec is None and metadata.get("codec"):
        candidate = path.parent / metadata["codec"]
        if not candidate.is_file():
            raise SDSAudioError(f"{path} names the codec {candidate}, which is missing: reinstall the package or "
                                "give --codec", exit_code=1)
        codec = candidate
    codec_model = load_codec(codec).to(device).eval().requires_grad_(False)
    if codec_model.sample_rate != model.config.sample_rate or \
            codec_model.config.latent_channels != model.config.latent_channels:
        raise SDSAudioError(f"codec ({codec_model.sample_rate} Hz, {codec_model.config.latent_channels} channels) "
                            f"does not fit the tts model ({model.config.sample_rate} Hz, "
                            f"{model.config.latent_channels} channels)", exit_code=1)
    return SpeechSynthesizer(model, CodecFeatures(codec_model))


__all__ = ["ADAPT_MAX_S", "MAX_TEXT_CHARS", "MAX_WORD_CHARS", "PAUSE_S", "PROMPT_MAX_S", "PROMPT_MIN_S", "SpeechSynthesizer", "load_tts"]
