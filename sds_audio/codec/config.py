"""CodecConfig: every setting that fixes the codec's architecture.

The config is stored as JSON in the safetensors metadata of a saved codec, so
:func:`~sds_audio.codec.io.load_codec` can rebuild the module before loading
its weights. Training settings (learning rate, loss weights) are not part of it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import SDSAudioError

BOTTLENECKS = ("vae", "rvq")
BACKBONES = ("conv", "stft", "band")
STFT_PHASES = ("accumulated", "free")


@dataclass(frozen=True)
class CodecConfig:
    """Architecture of a :class:`~sds_audio.codec.model.Codec`.

    Args:
        sample_rate: audio rate in Hz.
        channels: audio channels (1 = mono).
        patch_size: samples folded into channels before the first convolution
            (space-to-depth, ``(B, C, T) -> (B, C * patch, T / patch)``) and
            unfolded after the last; 1 disables it. Folding makes the first
            stage run at ``sample_rate / patch_size`` frames per second, which
            is what makes the codec fast on a CPU.
        encoder_channels: width of the encoder's first stage.
        decoder_channels: width of the decoder's last stage.
        channel_mults: width multipliers, one per stage boundary
            (``len(strides) + 1`` values); stage ``i`` of the encoder has
            ``encoder_channels * channel_mults[i]`` channels.
        strides: down-sampling factor of each encoder block (the decoder
            mirrors them).
        dilations: dilations of the residual units inside every block.
        residual_kernel_size: kernel of the dilated conv in each residual unit (odd).
        latent_channels: channels ``D`` of the latent ``(B, D, L)``.
        bottleneck: ``"vae"`` (continuous, Gaussian posterior, KL term) or
            ``"rvq"`` (residual vector quantiser, discrete codes).
        n_codebooks: RVQ depth (``"rvq"`` only).
        codebook_size: entries per codebook (``"rvq"`` only).
        codebook_decay: EMA decay of the codebook updates.
        dead_code_threshold: a code whose EMA usage count falls below this is
            replaced by a random encoder output from the batch.
        backbone: ``"conv"`` (Oobleck / DAC-style strided convolutions near the audio
            rate; uses ``patch_size``, ``channel_mults``, ``strides``, ``dilations``,
            ``residual_kernel_size``), ``"stft"`` (frame-rate ConvNeXt stacks around an
            STFT / inverse STFT, see :mod:`~sds_audio.codec.stft_backbone`; uses
            ``stft_n_fft``, ``stft_frames_per_latent``, ``encoder_blocks``,
            ``decoder_blocks``, and ``encoder_channels`` / ``decoder_channels`` as widths)
            or ``"band"`` (2-D ConvNeXt stacks over frequency x time around the same
            STFT, latents per frequency band, see :mod:`~sds_audio.codec.band_backbone`;
            uses the ``"stft"`` fields, ``band_*``, and ``encoder_channels`` /
            ``decoder_channels`` as the band-grid widths, half of them on the fine grid).
        stft_n_fft: STFT size of the ``"stft"`` backbone (hop ``stft_n_fft / 4``).
        stft_frames_per_latent: STFT frames per latent frame (``"stft"``).
        encoder_blocks, decoder_blocks: ConvNeXt blocks (``"stft"``).
        stft_phase: how the ``"stft"`` decoder makes phase. ``"accumulated"``: it
            predicts each frame's phase advance (relative to the bin's centre
            frequency) and the phase is the running sum, so a steady partial gets
            a coherent phase from a stationary prediction; the encoder also sees
            the measured phase advance. ``"free"``: it predicts each frame's
            absolute phase (the first STFT codecs; steady partials partly cancel
            in the overlap-add). Configs saved before this field existed are ``"free"``.
            Also used by the ``"band"`` backbone.
        band_count: ``"band"`` backbone: frequency bands of the latent grid; the latent
            has ``latent_channels / band_count`` channels per band unless
            ``band_latent_channels`` says otherwise.
        band_latent_channels: ``"band"`` backbone: latent channels of each band, lowest
            first (``band_count`` positive values summing to ``latent_channels``); empty
            means the same number for every band. Low bands hold the fundamentals and
            first partials of most pitched sounds in few STFT bins, so they get more.
        band_patch_bins: ``"band"`` backbone: STFT bins per cell of the fine grid.
        band_fine_blocks: ``"band"`` backbone: 2-D ConvNeXt blocks on the fine grid
            (``encoder_blocks`` / ``decoder_blocks`` run on the band grid).
    """

    sample_rate: int = 22050
    channels: int = 1
    patch_size: int = 8
    encoder_channels: int = 32
    decoder_channels: int = 48
    channel_mults: tuple[int, ...] = (1, 2, 4, 8)
    strides: tuple[int, ...] = (4, 4, 4)
    dilations: tuple[int, ...] = (1, 3, 9)
    residual_kernel_size: int = 7
    latent_channels: int = 32
    bottleneck: str = "vae"
    n_codebooks: int = 8
    codebook_size: int = 1024
    codebook_decay: float = 0.99
    dead_code_threshold: float = 1.0
    backbone: str = "conv"
    stft_n_fft: int = 1024
    stft_frames_per_latent: int = 2
    encoder_blocks: int = 4
    decoder_blocks: int = 6
    stft_phase: str = "accumulated"
    band_count: int = 16
    band_patch_bins: int = 8
    band_fine_blocks: int = 2
    band_latent_channels: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("channel_mults", "strides", "dilations", "band_latent_channels"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SDSAudioError` naming the first bad field."""
        def positive(name: str) -> None:
            if int(getattr(self, name)) < 1:
                raise SDSAudioError(f"must be a positive integer, got {getattr(self, name)!r}",
                                    field=f"codec.{name}")
        for name in ("sample_rate", "channels", "patch_size", "encoder_channels", "decoder_channels",
                     "latent_channels", "n_codebooks", "codebook_size"):
            positive(name)
        if not self.strides or any(s < 1 for s in self.strides):
            raise SDSAudioError(f"must be a non-empty list of positive integers, got {self.strides}",
                                field="codec.strides")
        if len(self.channel_mults) != len(self.strides) + 1 or any(m < 1 for m in self.channel_mults):
            raise SDSAudioError(f"needs len(strides) + 1 = {len(self.strides) + 1} positive values, "
                                f"got {self.channel_mults}", field="codec.channel_mults")
        if self.residual_kernel_size < 1 or self.residual_kernel_size % 2 == 0:
            raise SDSAudioError(f"must be a positive odd integer, got {self.residual_kernel_size}",
                                field="codec.residual_kernel_size")
        if any(d < 1 for d in self.dilations):
            raise SDSAudioError(f"must be positive, got {self.dilations}", field="codec.dilations")
        if self.backbone not in BACKBONES:
            raise SDSAudioError(f"must be one of {BACKBONES}, got {self.backbone!r}", field="codec.backbone")
        for name in ("stft_frames_per_latent", "encoder_blocks", "decoder_blocks"):
            positive(name)
        if self.stft_n_fft < 16 or self.stft_n_fft % 4:
            raise SDSAudioError(f"must be a multiple of 4 and >= 16, got {self.stft_n_fft}", field="codec.stft_n_fft")
        if self.stft_phase not in STFT_PHASES:
            raise SDSAudioError(f"must be one of {STFT_PHASES}, got {self.stft_phase!r}", field="codec.stft_phase")
        for name in ("band_count", "band_patch_bins", "band_fine_blocks"):
            positive(name)
        if self.backbone == "band":
            half = self.stft_n_fft // 2
            if half % self.band_patch_bins or (half // self.band_patch_bins) % self.band_count:
                raise SDSAudioError(f"stft_n_fft / 2 = {half} bins must split into band_count = {self.band_count} "
                                    f"bands of whole band_patch_bins = {self.band_patch_bins} cells",
                                    field="codec.band_count")
            if self.band_latent_channels:
                per_band = self.band_latent_channels
                if (len(per_band) != self.band_count or min(per_band) < 1
                        or sum(per_band) != self.latent_channels):
                    raise SDSAudioError(f"needs band_count = {self.band_count} positive values summing to "
                                        f"latent_channels = {self.latent_channels}, got {list(per_band)}",
                                        field="codec.band_latent_channels")
            elif self.latent_channels % self.band_count:
                raise SDSAudioError(f"latent_channels = {self.latent_channels} must be a multiple of band_count = "
                                    f"{self.band_count}", field="codec.latent_channels")
            if self.encoder_channels < 2 or self.decoder_channels < 2:
                raise SDSAudioError("the band backbone needs encoder_channels and decoder_channels >= 2",
                                    field="codec.encoder_channels")
        if self.bottleneck not in BOTTLENECKS:
            raise SDSAudioError(f"must be one of {BOTTLENECKS}, got {self.bottleneck!r}", field="codec.bottleneck")
        if not 0.0 < self.codebook_decay < 1.0:
            raise SDSAudioError(f"must lie in (0, 1), got {self.codebook_decay}", field="codec.codebook_decay")
        if self.dead_code_threshold < 0:
            raise SDSAudioError(f"must be >= 0, got {self.dead_code_threshold}", field="codec.dead_code_threshold")

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame: ``patch_size * prod(strides)`` (``"conv"``) or
        ``stft_n_fft / 4 * stft_frames_per_latent`` (``"stft"``, ``"band"``)."""
        if self.backbone in ("stft", "band"):
            return self.stft_n_fft // 4 * self.stft_frames_per_latent
        return self.patch_size * math.prod(self.strides)

    @property
    def latent_channels_per_band(self) -> tuple[int, ...]:
        """Latent channels of each band of the ``"band"`` backbone, lowest band first."""
        return self.band_latent_channels or (self.latent_channels // self.band_count,) * self.band_count

    @property
    def latent_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def compression_factor(self) -> float:
        """Audio values per second over latent values per second: ``channels * hop / latent_channels``."""
        return self.channels * self.hop_length / self.latent_channels

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CodecConfig":
        """Build from a dict; unknown keys or bad values raise :class:`SDSAudioError`.

        Missing keys take the field defaults, except ``stft_phase``, which takes
        ``"free"`` (what every config saved before the field existed used).
        """
        if not isinstance(data, Mapping):
            raise SDSAudioError(f"codec config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SDSAudioError(f"codec config has unknown keys {unknown}; known keys are {sorted(known)}")
        data = dict(data)
        data.setdefault("stft_phase", "free")  # saved before the field existed
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise SDSAudioError(f"codec config is invalid: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> "CodecConfig":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise SDSAudioError(f"codec config is not valid JSON: {exc}") from exc
        return cls.from_dict(data)
