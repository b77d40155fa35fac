"""TTSConfig: every setting that fixes the speech model's architecture, symbols and latent space.

Stored as JSON in the metadata of a saved ``tts.safetensors`` so that
:func:`~sds_audio.tts.weights.load_tts_model` rebuilds the module before
loading the weights. The training-time probabilities (text dropout, prompt
share) are part of it because guidance and voice prompting rely on them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import SDSAudioError
from .frontend import SYMBOL_SETS

#: the frame spaces a speech model can predict (:mod:`sds_audio.tts.features`)
FEATURES = ("codec", "mel")


@dataclass(frozen=True)
class TTSConfig:
    """Architecture of a :class:`~sds_audio.tts.model.TTSModel`.

    Args:
        symbols: ``"phonemes"`` (espeak-ng IPA) or ``"characters"``.
        language: espeak-ng voice of the phonemizer.
        features: the frame space the model predicts (:mod:`sds_audio.tts.features`): ``"codec"``
            (the library codec's latents) or ``"mel"`` (log-mel frames, Griffin-Lim vocoder).
        latent_channels: channels ``D`` of the frames (codec latent channels or mel bands).
        latent_rate: frames per second.
        sample_rate: audio rate in Hz.
        mel_fft, mel_f_max_hz, griffin_lim_iters: FFT size, top mel frequency and phase-reconstruction
            iterations of ``"mel"`` features (their hop is ``sample_rate / latent_rate``).
        text_width, text_depth, text_heads, text_convs: the text encoder (symbol embedding,
            ``text_convs`` residual conv layers of kernel 5, then ``text_depth`` adaLN transformer
            blocks conditioned on the speaker vector).
        duration_width: channels of the duration predictor's two conv layers.
        width, depth, heads, mlp_ratio: the flow decoder (adaLN-Zero DiT blocks over latent frames).
        time_features: sinusoidal features of the flow time.
        rope_base: rotary position base of both transformers.
        text_dropout: share of training rows whose text the decoder did not see (guidance's
            unconditional branch).
        prompt_share: share of training rows that had an in-context prompt prefix.
        prompt_min, prompt_max: the prefix's share of the utterance's frames (uniform).
        default_prompt_frames: frames of the stored default voice prompt (0: none stored).
    """

    symbols: str = "phonemes"
    language: str = "en-us"
    features: str = "codec"
    latent_channels: int = 64
    latent_rate: float = 22050 / 512
    sample_rate: int = 22050
    mel_fft: int = 1024
    mel_f_max_hz: float = 8000.0
    griffin_lim_iters: int = 32
    text_width: int = 128
    text_depth: int = 2
    text_heads: int = 2
    text_convs: int = 3
    duration_width: int = 128
    width: int = 160
    depth: int = 5
    heads: int = 4
    mlp_ratio: float = 3.0
    time_features: int = 128
    rope_base: float = 10000.0
    text_dropout: float = 0.1
    prompt_share: float = 0.7
    prompt_min: float = 0.1
    prompt_max: float = 0.7
    default_prompt_frames: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SDSAudioError` naming the first bad field."""
        if self.symbols not in SYMBOL_SETS:
            raise SDSAudioError(f"must be one of {sorted(SYMBOL_SETS)}, got {self.symbols!r}", field="tts.symbols")
        if self.features not in FEATURES:
            raise SDSAudioError(f"must be one of {list(FEATURES)}, got {self.features!r}", field="tts.features")
        for name in ("latent_channels", "sample_rate", "mel_fft", "griffin_lim_iters", "text_width", "text_depth", "text_heads", "duration_width",
                     "width", "depth", "heads", "time_features"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SDSAudioError(f"must be a positive integer, got {value!r}", field=f"tts.{name}")
        if not isinstance(self.text_convs, int) or self.text_convs < 0:
            raise SDSAudioError(f"must be a non-negative integer, got {self.text_convs!r}", field="tts.text_convs")
        if not isinstance(self.default_prompt_frames, int) or self.default_prompt_frames < 0:
            raise SDSAudioError("must be a non-negative integer", field="tts.default_prompt_frames")
        for w, h, name in ((self.width, self.heads, "width"), (self.text_width, self.text_heads, "text_width")):
            if w % h or (w // h) % 2:
                raise SDSAudioError(f"{w} must split into {h} heads of even size", field=f"tts.{name}")
        if self.time_features % 2:
            raise SDSAudioError("must be even", field="tts.time_features")
        for name in ("latent_rate", "mlp_ratio", "rope_base", "mel_f_max_hz"):
            if not float(getattr(self, name)) > 0:
                raise SDSAudioError(f"must be positive, got {getattr(self, name)!r}", field=f"tts.{name}")
        for name in ("text_dropout", "prompt_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise SDSAudioError(f"must lie in [0, 1), got {getattr(self, name)}", field=f"tts.{name}")
        if not 0.0 < self.prompt_min <= self.prompt_max < 1.0:
            raise SDSAudioError("need 0 < prompt_min <= prompt_max < 1", field="tts.prompt_min")

    @classmethod
    def for_mel(cls, **changes: Any) -> "TTSConfig":
        """The log-mel model: 80 bands up to 8 kHz, 22,050 Hz, 512-sample hop (43.07 frames/s), FFT 1,024."""
        settings = dict(features="mel", latent_channels=80, sample_rate=22050, latent_rate=22050 / 512)
        settings.update(changes)
        return cls(**settings)

    @property
    def n_symbols(self) -> int:
        return len(SYMBOL_SETS[self.symbols])

    @property
    def mlp_width(self) -> int:
        return int(round(self.width * self.mlp_ratio))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def replace(self, **changes: Any) -> "TTSConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TTSConfig":
        """Build from a dict; unknown keys or bad values raise :class:`SDSAudioError`."""
        if not isinstance(data, Mapping):
            raise SDSAudioError(f"tts config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SDSAudioError(f"tts config has unknown keys {unknown}")
        try:
            return cls(**dict(data))
        except (TypeError, ValueError) as exc:
            raise SDSAudioError(f"tts config is invalid: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> "TTSConfig":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise SDSAudioError(f"tts config is not valid JSON: {exc}") from exc
