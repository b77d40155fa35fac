"""The latent window a Stable Audio DiT denoises: the clip alone, or the model's full training window.

diffusers' ``StableAudioPipeline`` always runs the DiT on the transformer's
whole ``sample_size`` window (1024 latent frames, 47.55 s for Stable Audio Open
1.0) and crops the decoded audio to ``seconds_total`` afterwards, and
stable-audio-tools' generation does the same with its default ``sample_size``.
In training, a clip shorter than the window is followed by silence and
``seconds_total`` says where it ends; a window as short as the clip is a
sequence length the model never saw.

:class:`LatentWindow` gives the priors both layouts:

* ``"full"`` (default): the clip's noisy latents ``(B, D, L)`` are followed by
  ``N - L`` frames of *noisy silence*, the autoencoder's latent of digital
  silence noised to the same level ``t`` with the prior's own ``add_noise``
  (the layout the pipeline's audio-to-audio path builds when it zero-pads the
  input audio to the window and encodes it). The chain runs on all ``N``
  frames and the clean estimate is cropped back to ``L`` frames. A clip of
  ``N`` frames or more is denoised as it is.
* ``"clip"``: the DiT sees the ``L`` clip frames only (cheaper: the DiT's cost
  grows at least linearly with the frame count).

The silence latent is one frame ``(D,)``: the posterior mean of an encoded block
of zeros, taken at its middle frame (the edge frames also see the encoder's
zero padding of its intermediate activations).

The padding's noise is standard normal, drawn per batch item from a generator
seeded with a digest of that item's noisy clip latents
(:func:`padding_noise`). ``denoise`` therefore stays a function of its inputs
(the same noisy latents give the same ``x0_hat``; an item's estimate does not
depend on the rest of the batch), while every fresh SDS noise draw also gets
fresh padding noise.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import torch

from ..errors import SDSAudioError

if TYPE_CHECKING:
    from .base import Prior

WINDOWS = ("full", "clip")
#: latent frames of zeros encoded to find the silence latent (its middle frame is kept)
SILENCE_FRAMES = 64


def check_window(window: str) -> str:
    """``window`` if it is ``"full"`` or ``"clip"``; SDSAudioError otherwise."""
    if window not in WINDOWS:
        raise SDSAudioError(f"window must be 'full' (the model's training window, as the pipeline denoises) or "
                            f"'clip' (the clip's own length, faster), got {window!r}")
    return window


def item_seed(latents: torch.Tensor) -> int:
    """A 63-bit seed from the float32 bytes of one item's latents ``(D, L)`` (BLAKE2b digest)."""
    data = latents.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") & (2 ** 63 - 1)


def padding_noise(noisy: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Standard normal ``(B, D, n_frames)`` float32 on the CPU; item ``b`` is seeded by ``item_seed(noisy[b])``."""
    out = torch.empty(noisy.shape[0], noisy.shape[1], int(n_frames))
    for b in range(noisy.shape[0]):
        generator = torch.Generator().manual_seed(item_seed(noisy[b]))
        out[b] = torch.randn(noisy.shape[1], int(n_frames), generator=generator)
    return out


@torch.no_grad()
def silence_latent(prior: "Prior", hop_length: int, n_frames: int = SILENCE_FRAMES) -> torch.Tensor:
    """The prior's latent of digital silence, one frame ``(D,)`` float32 on the prior's device.

    Encodes ``n_frames * hop_length`` zero samples (``(1, channels, T)``) and keeps the middle frame.
    """
    zeros = torch.zeros(1, prior.channels, int(n_frames) * int(hop_length), device=prior.device)
    return prior.encode(zeros)[0, :, int(n_frames) // 2].float()


class LatentWindow:
    """Which frames the DiT denoises (see the module docstring).

    Args:
        mode: ``"full"`` or ``"clip"``.
        n_frames: the model's training window in latent frames (``sample_size`` of
            the diffusers transformer; stable-audio-tools' ``sample_size / hop``).
        hop_length: audio samples per latent frame (to encode silence).
    """

    def __init__(self, mode: str, n_frames: int, hop_length: int):
        self.mode = check_window(mode)
        self.n_frames = int(n_frames)
        self.hop_length = int(hop_length)
        if self.n_frames < 1:
            raise SDSAudioError(f"the model's window must hold at least one latent frame, got {self.n_frames}")
        self._silence: torch.Tensor | None = None

    def silence(self, prior: "Prior") -> torch.Tensor:
        """The silence latent ``(D,)``, encoded on first use and kept."""
        if self._silence is None:
            self._silence = silence_latent(prior, self.hop_length)
        return self._silence

    def n_pad(self, n_clip: int) -> int:
        """Frames appended to a clip of ``n_clip`` frames (0 in ``"clip"`` mode or for a full clip)."""
        return max(0, self.n_frames - int(n_clip)) if self.mode == "full" else 0

    def pad(self, prior: "Prior", noisy: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Noisy clip latents ``(B, D, L)`` at levels ``t`` ``(B,)`` -> the DiT's input ``(B, D, L + n_pad)`` float32.

        The first ``L`` frames are ``noisy`` unchanged; the rest are
        ``prior.add_noise(silence, padding_noise, t)``.
        """
        n_pad = self.n_pad(noisy.shape[-1])
        noisy = noisy.float()
        if n_pad == 0:
            return noisy
        silence = self.silence(prior).to(noisy.device).reshape(1, -1, 1).expand(noisy.shape[0], -1, n_pad)
        tail = prior.add_noise(silence, padding_noise(noisy, n_pad).to(noisy.device), t)
        return torch.cat([noisy, tail.to(noisy.device, torch.float32)], dim=-1)
