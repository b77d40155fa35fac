"""LatentSynth: sources as latent tensors rendered through a prior's decoder.

For source separation the "synth" of each source is a latent of the prior's
autoencoder: ``K`` latents of shape ``(C, L)`` (the batch dimension holds the ``K``
sources) are decoded by the prior, ``decoder(latents (K, C, L)) -> audio (K, ch, T)``,
and cropped or zero-padded to ``n_samples``. The latents are one
:class:`~sds_audio.synths.params.ParamSpec` ``latents`` with a linear range
``[-latent_range, latent_range]``, so the same machinery (unconstrained raw tensor,
smooth bounded map, ``randomize_``, ``select``) applies. Pick ``latent_range`` a few
times wider than the latents you expect: near the ends of the range the map flattens
and gradients shrink.

The decoder is a Python callable, so a LatentSynth is not a preset type (it is not
in ``SYNTH_TYPES``): :meth:`LatentSynth.config` returns the decoder object itself,
which lets ``select()`` rebuild the module but is not JSON-serialisable; save the
latents (``controls()["latents"]``) with the prior's identity instead.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

from ..audio_io import match_channels
from ..errors import SDSAudioError

from . import dsp
from .base import Synth
from .params import ParamSpec

Decoder = Callable[[torch.Tensor], torch.Tensor]


class LatentSynth(Synth):
    """``n_sources`` latent tensors decoded to audio by ``decoder``.

    Args:
        decoder: callable ``(K, C, L) -> (K, channels_out, T)`` (e.g. a prior's
            ``decode``); it should be frozen (the latents are what is optimised).
            Its output is converted to ``channels`` (mono duplicated, stereo averaged).
        latent_shape: ``(C, L)``: latent channels and frames per source.
        n_sources: number of sources ``K`` (the batch size); ``batch_size`` is an
            alias used by ``select()``; give one of them (default 1).
        latent_range: latents live in ``[-latent_range, latent_range]``.
        sample_rate: rate of the decoder's audio in Hz.
        channels: output channel count.
    """

    synth_type = "latent"

    def __init__(self, decoder: Decoder, latent_shape: Sequence[int], n_sources: int | None = None,
                 latent_range: float = 4.0, sample_rate: int = 44100, channels: int = 2,
                 batch_size: int | None = None):
        if not callable(decoder):
            raise SDSAudioError("decoder must be callable: latents (K, C, L) -> audio (K, channels, T)")
        shape = tuple(int(x) for x in latent_shape)
        if len(shape) != 2 or min(shape) < 1:
            raise SDSAudioError(f"latent_shape must be (channels, frames) with positive sizes, got {latent_shape!r}")
        if n_sources is not None and batch_size is not None and n_sources != batch_size:
            raise SDSAudioError(f"n_sources ({n_sources}) and batch_size ({batch_size}) disagree; give one of them")
        k = n_sources if n_sources is not None else (batch_size if batch_size is not None else 1)
        if not (latent_range > 0):
            raise SDSAudioError(f"latent_range must be positive, got {latent_range!r}")
        spec = ParamSpec("latents", "", -float(latent_range), float(latent_range), 0.0, "linear",
                         "per-source latent of the prior's autoencoder", shape)
        super().__init__([spec], batch_size=k, sample_rate=sample_rate, channels=channels)
        # not registered as a submodule: the decoder belongs to the prior (moving or casting this
        # synth must not move or cast it, and its weights are not part of this module's state)
        self.__dict__["decoder"] = decoder
        self.latent_shape = shape
        self.latent_range = float(latent_range)

    @property
    def n_sources(self) -> int:
        return self.batch_size

    def config(self) -> dict[str, Any]:
        """Constructor arguments; ``decoder`` is the callable itself (not JSON-serialisable)."""
        return {"decoder": self.decoder, "latent_shape": list(self.latent_shape), "latent_range": self.latent_range,
                "sample_rate": self.sample_rate, "channels": self.channels}

    @torch.no_grad()
    def init_latents(self, latents: torch.Tensor) -> "LatentSynth":
        """Set the latents, e.g. from an encoded mixture.

        Args:
            latents: ``(C, L)`` (copied to every source) or ``(K, C, L)``. Values outside
                ``[-latent_range, latent_range]`` are clipped into it.
        """
        spec = self.param_specs["latents"]
        raw = self.raw["latents"]
        latents = torch.as_tensor(latents).to(device=raw.device, dtype=raw.dtype)
        if not torch.isfinite(latents).all():
            raise SDSAudioError("init_latents: latents contain NaN or infinity")
        try:
            latents = latents.expand(raw.shape)
        except RuntimeError:
            raise SDSAudioError(f"init_latents: shape {tuple(latents.shape)} does not fit "
                                f"{tuple(raw.shape)} (sources, channels, frames)") from None
        raw.copy_(spec.from_physical(latents.clamp(spec.min, spec.max)))
        return self

    def render(self, controls: Mapping[str, torch.Tensor], n_samples: int) -> torch.Tensor:
        """Decode ``(K, channels, n_samples)``: the decoder's audio cropped or zero-padded."""
        n_samples = int(n_samples)
        if n_samples < 1:
            raise SDSAudioError(f"n_samples must be >= 1, got {n_samples}")
        audio = self.decoder(controls["latents"])
        if audio.dim() != 3 or audio.shape[0] != controls["latents"].shape[0]:
            raise SDSAudioError(f"decoder returned shape {tuple(audio.shape)}; expected (K, channels, samples) "
                                f"with K = {controls['latents'].shape[0]}")
        return dsp.fit_length(match_channels(audio, self.channels), n_samples)
