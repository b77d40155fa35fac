"""FlowConfig: every setting that fixes the flow model's architecture and latent space.

Stored as JSON in the metadata of a saved ``flow.safetensors`` so that
:func:`~sds_audio.flow.weights.load_flow` rebuilds the module before loading
the weights. Training settings (learning rate, steps, batch) are not part of it,
except ``cond_dropout`` and ``time_sampling`` which document how the weights
were trained (and matter for classifier-free guidance).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import SDSAudioError

TIME_SAMPLINGS = ("logit_normal", "uniform")


@dataclass(frozen=True)
class FlowConfig:
    """Architecture of a :class:`~sds_audio.flow.dit.FlowModel`.

    Args:
        latent_channels: channels ``D`` of the codec latents ``(B, D, L)``.
        latent_rate: codec latent frames per second (``sample_rate / hop``).
        sample_rate: audio rate of the codec in Hz (provenance; the prior checks it).
        patch_size: latent frames folded into one transformer token
            (``ceil(L / patch_size)`` tokens); 2 on the hop-512 codec gives 21.5 tokens per
            second, the token rate of Stable Audio Open.
        width: transformer width.
        depth: number of DiT blocks.
        heads: attention heads (``width`` must be divisible by it; the head
            size must be even for rotary embeddings).
        mlp_ratio: hidden width of each block's MLP over ``width``.
        text_dim: width of the text encoder's token and pooled embeddings.
        cross_attention: every block cross-attends to the text tokens (True), or
            the text enters only through the pooled sentence embedding in the
            adaLN conditioning vector (False: no cross-attention modules).
        max_duration_s: the training window in seconds: the longest clip the
            model has seen and the scale of the duration embedding.
        time_features: sinusoidal features of the flow time before its MLP.
        duration_features: sinusoidal (Fourier) features of ``seconds / max_duration_s``.
        rope_base: rotary embedding base (period of the slowest pair, in tokens).
        cond_dropout: probability with which training replaced the text with
            the learned null embedding (what classifier-free guidance relies on).
        time_sampling: ``"logit_normal"`` (SD3: ``s = sigmoid(N(0, 1))``) or
            ``"uniform"``, the flow-time density used in training.
    """

    latent_channels: int = 32
    latent_rate: float = 22050 / 512
    sample_rate: int = 22050
    patch_size: int = 2
    width: int = 256
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0
    text_dim: int = 384
    cross_attention: bool = True
    max_duration_s: float = 4.0
    time_features: int = 256
    duration_features: int = 64
    rope_base: float = 10000.0
    cond_dropout: float = 0.1
    time_sampling: str = "logit_normal"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SDSAudioError` naming the first bad field."""
        for name in ("latent_channels", "sample_rate", "patch_size", "width", "depth", "heads", "text_dim",
                     "time_features", "duration_features"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise SDSAudioError(f"must be a positive integer, got {value!r}", field=f"flow.{name}")
        if not isinstance(self.cross_attention, bool):
            raise SDSAudioError(f"must be true or false, got {self.cross_attention!r}",
                                field="flow.cross_attention")
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise SDSAudioError(f"width {self.width} must split into {self.heads} heads of even size",
                                field="flow.width")
        if self.time_features % 2 or self.duration_features % 2:
            raise SDSAudioError("time_features and duration_features must be even", field="flow.time_features")
        for name in ("latent_rate", "mlp_ratio", "max_duration_s", "rope_base"):
            if not float(getattr(self, name)) > 0:
                raise SDSAudioError(f"must be positive, got {getattr(self, name)!r}", field=f"flow.{name}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise SDSAudioError(f"must lie in [0, 1), got {self.cond_dropout}", field="flow.cond_dropout")
        if self.time_sampling not in TIME_SAMPLINGS:
            raise SDSAudioError(f"must be one of {TIME_SAMPLINGS}, got {self.time_sampling!r}",
                                field="flow.time_sampling")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def mlp_width(self) -> int:
        return int(round(self.width * self.mlp_ratio))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FlowConfig":
        """Build from a dict; unknown keys or bad values raise :class:`SDSAudioError`."""
        if not isinstance(data, Mapping):
            raise SDSAudioError(f"flow config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SDSAudioError(f"flow config has unknown keys {unknown}; known keys are {sorted(known)}")
        try:
            return cls(**dict(data))
        except (TypeError, ValueError) as exc:
            raise SDSAudioError(f"flow config is invalid: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> "FlowConfig":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise SDSAudioError(f"flow config is not valid JSON: {exc}") from exc
        return cls.from_dict(data)
