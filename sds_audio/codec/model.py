"""The codec: an encoder, a bottleneck, and a decoder.

Audio ``(B, C, T)`` at ``config.sample_rate`` becomes latents ``(B, D, L)``
with ``L = ceil(T / hop_length)`` (the audio is zero-padded on the right to a
multiple of ``hop_length``), and latents become audio ``(B, C, L * hop_length)``.

Encoder: fold ``patch_size`` samples into channels, a kernel-7 conv, one
:class:`~sds_audio.codec.layers.EncoderBlock` per stride (residual units, then
a strided conv), Snake, and a kernel-3 conv to the bottleneck's input
(``2 * D`` channels for the VAE: mean and raw scale; ``D`` for the RVQ).
Decoder: the mirror image, ending in a kernel-7 conv to ``C * patch_size``
channels that are unfolded back into samples. No output nonlinearity: the
reconstruction losses keep the range, and a ``tanh`` would squash transients.
That is the ``"conv"`` backbone; ``CodecConfig(backbone="stft")`` swaps in the
frame-rate encoder / decoder of :mod:`~sds_audio.codec.stft_backbone`, and
``backbone="band"`` the frequency x time ones of :mod:`~sds_audio.codec.band_backbone`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SDSAudioError
from .bottleneck import ResidualVectorQuantizer, VAEBottleneck, gaussian_kl
from .config import CodecConfig
from .layers import DecoderBlock, EncoderBlock, Snake, wn_conv1d
from .band_backbone import BandDecoder, BandEncoder
from .stft_backbone import STFTDecoder, STFTEncoder


def fold_patches(audio: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, T)`` -> ``(B, C * patch_size, T / patch_size)``: sample ``t*p + j`` of channel ``c`` goes to
    channel ``c * p + j``, frame ``t``."""
    if patch_size == 1:
        return audio
    b, c, t = audio.shape
    return audio.reshape(b, c, t // patch_size, patch_size).transpose(2, 3).reshape(b, c * patch_size,
                                                                                       t // patch_size)


def unfold_patches(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Inverse of :func:`fold_patches`: ``(B, C * p, N) -> (B, C, N * p)``."""
    if patch_size == 1:
        return x
    b, cp, n = x.shape
    return x.reshape(b, cp // patch_size, patch_size, n).transpose(2, 3).reshape(b, cp // patch_size, n * patch_size)


class Encoder(nn.Module):
    """``(B, C, T)`` with ``T % hop_length == 0`` -> ``(B, out_channels, T / hop_length)``."""

    def __init__(self, config: CodecConfig, out_channels: int):
        super().__init__()
        widths = [config.encoder_channels * m for m in config.channel_mults]
        layers: list[nn.Module] = [wn_conv1d(config.channels * config.patch_size, widths[0], 7)]
        for i, stride in enumerate(config.strides):
            layers.append(EncoderBlock(widths[i], widths[i + 1], stride, config.dilations,
                                       config.residual_kernel_size))
        layers += [Snake(widths[-1]), wn_conv1d(widths[-1], out_channels, 3)]
        self.net = nn.Sequential(*layers)
        self.patch_size = config.patch_size

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.net(fold_patches(audio, self.patch_size))


class Decoder(nn.Module):
    """``(B, D, L)`` -> ``(B, C, L * hop_length)``."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        widths = [config.decoder_channels * m for m in config.channel_mults]
        layers: list[nn.Module] = [wn_conv1d(config.latent_channels, widths[-1], 7)]
        for i in reversed(range(len(config.strides))):
            layers.append(DecoderBlock(widths[i + 1], widths[i], config.strides[i], config.dilations,
                                       config.residual_kernel_size))
        layers += [Snake(widths[0]), wn_conv1d(widths[0], config.channels * config.patch_size, 7)]
        self.net = nn.Sequential(*layers)
        self.patch_size = config.patch_size

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return unfold_patches(self.net(z), self.patch_size)


@dataclass
class CodecOutput:
    """A training forward pass.

    ``audio (B, C, T')`` reconstruction of the padded input (``T'`` = ``T``
    rounded up to a multiple of the hop); ``latents (B, D, L)`` what the decoder
    saw (a posterior sample, or the quantised latents); ``mean``, ``std`` the
    posterior (``std`` is ``None`` for the RVQ); ``kl`` and ``commitment_loss``
    scalars (zero when not applicable); ``codes (B, n, L)`` or ``None``.
    """

    audio: torch.Tensor
    latents: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor | None
    kl: torch.Tensor
    commitment_loss: torch.Tensor
    codes: torch.Tensor | None


class Codec(nn.Module):
    """Neural audio codec (Oobleck / DAC family) with a VAE or RVQ bottleneck.

    Attributes:
        config: the :class:`CodecConfig` it was built from.
        sample_rate, channels, latent_channels, hop_length: shortcuts into it.
        latent_rate: latent frames per second.
    """

    def __init__(self, config: CodecConfig | None = None):
        super().__init__()
        self.config = config if config is not None else CodecConfig()
        cfg = self.config
        self.sample_rate = cfg.sample_rate
        self.channels = cfg.channels
        self.latent_channels = cfg.latent_channels
        self.hop_length = cfg.hop_length
        self.latent_rate = cfg.latent_rate
        vae = cfg.bottleneck == "vae"
        encoder_out = 2 * cfg.latent_channels if vae else cfg.latent_channels
        if cfg.backbone == "stft":
            self.encoder, self.decoder = STFTEncoder(cfg, encoder_out), STFTDecoder(cfg)
        elif cfg.backbone == "band":
            self.encoder, self.decoder = BandEncoder(cfg, encoder_out), BandDecoder(cfg)
        else:
            self.encoder, self.decoder = Encoder(cfg, encoder_out), Decoder(cfg)
        self.vae = VAEBottleneck() if vae else None
        if vae:
            out_bias = self.encoder.net[-1].bias  # (2D,), or (2 * widest band,) shared by the bands
            self.vae.init_scale_bias(out_bias, out_bias.numel() // 2)
        self.quantizer = (None if vae else ResidualVectorQuantizer(
            cfg.latent_channels, cfg.n_codebooks, cfg.codebook_size, cfg.codebook_decay, cfg.dead_code_threshold))

    # ----------------------------------------------------------------- helpers
    def n_latent_frames(self, n_samples: int) -> int:
        """Latent frames for ``n_samples`` audio samples (``ceil(n_samples / hop_length)``)."""
        return -(-int(n_samples) // self.hop_length)

    def pad_to_hop(self, audio: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``(B, C, T)`` on the right to a multiple of ``hop_length``."""
        self._check_audio(audio)
        extra = (-audio.shape[-1]) % self.hop_length
        return F.pad(audio, (0, extra)) if extra else audio

    def _check_audio(self, audio: torch.Tensor) -> None:
        if audio.dim() != 3 or audio.shape[1] != self.channels:
            raise SDSAudioError(f"codec expects audio of shape (batch, {self.channels}, samples), "
                                f"got {tuple(audio.shape)}")
        if audio.shape[-1] < 1:
            raise SDSAudioError("codec got audio with no samples")

    def _require_quantizer(self) -> ResidualVectorQuantizer:
        if self.quantizer is None:
            raise SDSAudioError("this codec has a continuous (VAE) bottleneck and no codes; "
                                "build it with CodecConfig(bottleneck='rvq') for discrete tokens")
        return self.quantizer

    # ------------------------------------------------------------- inference
    def posterior(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, C, T)`` -> posterior ``(mean, std)``, each ``(B, D, L)`` (``std`` is ``None`` for the RVQ)."""
        h = self.encoder(self.pad_to_hop(audio))
        if self.vae is None:
            return h, None
        return self.vae(h)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` -> latents ``(B, D, ceil(T / hop))``: the posterior mean (deterministic).

        For an RVQ codec these are the continuous latents before quantisation;
        pass them through :meth:`quantize` for the discrete version.
        """
        return self.posterior(audio)[0]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, D, L)`` -> audio ``(B, C, L * hop_length)``; differentiable in ``latents``."""
        if latents.dim() != 3 or latents.shape[1] != self.latent_channels:
            raise SDSAudioError(f"codec expects latents of shape (batch, {self.latent_channels}, frames), "
                                f"got {tuple(latents.shape)}")
        return self.decoder(latents)

    def quantize(self, latents: torch.Tensor, n_codebooks: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous latents ``(B, D, L)`` -> ``(quantised (B, D, L), codes (B, n, L))`` (RVQ only)."""
        quantizer = self._require_quantizer()
        out = quantizer(latents, n_active=n_codebooks)
        n = quantizer.n_codebooks if n_codebooks is None else int(n_codebooks)
        return out.quantized, out.codes[:, :n]

    def codes(self, audio: torch.Tensor, n_codebooks: int | None = None) -> torch.Tensor:
        """Audio ``(B, C, T)`` -> integer codes ``(B, n, L)`` (RVQ only)."""
        return self.quantize(self.encode(audio), n_codebooks)[1]

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, n, L)`` -> audio ``(B, C, L * hop_length)`` (RVQ only)."""
        return self.decode(self._require_quantizer().decode_codes(codes))

    def reconstruct(self, audio: torch.Tensor) -> torch.Tensor:
        """Encode and decode deterministically (quantising with all codebooks for the RVQ).

        Returns ``(B, C, T)`` cut back to the input length.
        """
        z = self.encode(audio)
        if self.quantizer is not None:
            z = self.quantize(z)[0]
        return self.decode(z)[..., :audio.shape[-1]]

    # -------------------------------------------------------------- training
    def forward(self, audio: torch.Tensor, generator: torch.Generator | None = None,
                n_active_codebooks: torch.Tensor | int | None = None) -> CodecOutput:
        """Training pass: sample the posterior (VAE) or quantise (RVQ), then decode.

        Args:
            audio: ``(B, C, T)``; padded to a hop multiple.
            generator: RNG for the posterior sample / codebook refresh.
            n_active_codebooks: quantiser dropout for the RVQ (see
                :meth:`ResidualVectorQuantizer.forward`).
        """
        mean, std = self.posterior(audio)
        if self.vae is not None:
            z = self.vae.sample(mean, std, generator) if self.training else mean
            kl = gaussian_kl(mean, std)
            commitment = mean.new_zeros(())
            codes = None
        else:
            out = self.quantizer(mean, n_active=n_active_codebooks, generator=generator)
            z, commitment, codes = out.quantized, out.commitment_loss, out.codes
            kl = mean.new_zeros(())
        return CodecOutput(self.decoder(z), z, mean, std, kl, commitment, codes)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameter values."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
