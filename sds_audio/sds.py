"""Audio Score Distillation Sampling: the decoder-SDS objective and the latent-SDS baseline.

Audio-SDS (Richter-Powell, Torralba, Lorraine, arXiv 2505.04621) changes plain
SDS in three ways, all here:

1. **Decoder SDS.** The update is computed in audio space: encode the rendered
   audio without gradient, noise it, denoise it with the prior, *decode* the
   clean estimate to ``x_hat`` and pull the render towards ``x_hat``. Gradients
   never pass through the prior's encoder (plain latent SDS does, and is kept
   as :func:`latent_sds` for ablations).
2. **Multi-scale spectral emphasis.** The pull is measured on STFT magnitudes at
   several resolutions rather than on raw samples::

       L(x) = sum_m  w_m / (2 N_m) * || S_m(x) - stopgrad(S_m(x_hat)) ||^2
              + w_wave / (2 N) * || x - stopgrad(x_hat) ||^2

   ``S_m`` is the magnitude of a Hann-window STFT with ``n_fft = n_m`` and hop
   ``n_m * hop_fraction``, divided by the window sum ``n_m / 2`` so a
   full-scale sinusoid peaks near 0.5 at every resolution; with
   ``magnitude="log"`` (default) it is ``log(magnitude + log_floor)``, which
   weighs quiet partials and decays like loud ones (phase-free, level-aware).
   ``N_m`` counts the elements of ``S_m(x)`` (channels x bins x frames), so every
   resolution contributes on the same per-element scale whatever its size;
   ``w_m = spectral_weight`` for all ``m``. The gradient with respect to ``x`` is
   ``sum_m w_m / N_m * J_m^T (S_m(x) - S_m(x_hat))`` (+ the waveform term).
3. **Multi-step denoising.** ``x_hat`` comes from a ``k``-step deterministic
   chain (``denoise_steps``) instead of the one-step estimate, for a cleaner
   target at the same noise level.

An option beyond the paper, **contrast** ``lambda`` (``SDSConfig.contrast``): a second rendition
``x_u`` from the same noisy latents with guidance 0 (the unconditional, or negative-prompt, branch)
and the loss ``L(x; x_hat) - lambda L(x; x_u)``. Its gradient
``sum_m w_m / N_m J_m^T ((1 - lambda) S_m(x) - S_m(x_hat) + lambda S_m(x_u))`` keeps the pull toward
the guided rendition but cancels, in proportion ``lambda``, the part every rendition shares whatever
the prompt (e.g. a prior whose renditions fade pulls every patch's decay shorter); at ``lambda = 1``
the update is the difference of the two renditions alone, the implicit-classifier direction of
classifier score distillation (Yu et al., arXiv 2310.19415), here measured on spectra.

All of it runs at the prior's sample rate and channel count: the render is
resampled and channel-matched differentiably first
(:func:`sds_audio.audio_io.resample`, :func:`~sds_audio.audio_io.match_channels`).
Several noise draws per update (``n_draws``) are averaged; batch items
(candidate patches) are independent and their losses are summed, so each
candidate's update does not depend on the batch size. The returned ``loss`` is
a surrogate whose value is the objective and whose gradient is the update:
call ``loss.backward()`` and step the renderer's optimiser.

Magnitude losses give no useful gradient across partial positions, so pitch
parameters (an FM synth's ``f0_hz`` and ratios) need a good start and a small or
zero learning rate: with Adam's normalised steps a matched pitch drifts by
about a semitone per step at lr 0.1 (see ``tests/test_sds.py``).

Typical use (the task owns the loop)::

    sds = SDSObjective(prior, "kick drum, bass, reverb", SDSConfig(denoise_steps=4))
    for step in range(n_steps):
        audio = synth(n_samples)                       # (B, C, T) at synth.sample_rate
        result = sds(audio, synth.sample_rate, progress=step / n_steps)
        optimizer.zero_grad(); result.loss.backward(); optimizer.step()
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Sequence

import torch
from torch import nn

from .audio_io import match_channels, resample
from .errors import SDSAudioError
from .priors.base import Conditioning, Prior
from .schedule import TSchedule
from .spectral import MultiResolutionSTFT

OBJECTIVES = ("decoder", "latent")
MAGNITUDES = ("log", "linear")
LATENT_WEIGHTINGS = ("unit", "noise_variance")


@dataclass(frozen=True)
class SDSConfig:
    """Options of one SDS objective (all validated on construction).

    Attributes:
        objective: ``"decoder"`` (Audio-SDS) or ``"latent"`` (baseline).
        guidance_scale: classifier-free guidance weight (1 = conditional only).
        negative_prompt: optional text for the unconditional branch.
        t_min, t_max: noise-level range, ``0 < t_min <= t_max <= 1``.
        t_schedule: ``"uniform"``, ``"linear"`` (anneal high -> low) or ``"linear_jitter"``.
        denoise_steps: ``k``, steps of the denoising chain (1 = one-step estimate).
        n_draws: noise draws averaged per update (SDS batch).
        n_ffts: STFT window sizes of the spectral emphasis, in samples at the prior's rate.
        hop_fraction: STFT hop as a fraction of each window.
        magnitude: ``"log"`` or ``"linear"`` spectral magnitudes.
        log_floor: added to normalised magnitudes before the log (1e-3: -60 dB re. a full-scale sine
            peak of 0.5; lower floors weigh near-silent bins more and make the landscape rougher).
        spectral_weight: weight ``w_m`` of each resolution (decoder objective).
        waveform_weight: weight of the waveform term (decoder objective; 0 = off).
        contrast: decoder objective: weight ``lambda`` of the distance to the *unconditional* rendition
            (the same noise, guidance 0), subtracted from the distance to the guided one, so the update
            follows what the prompt changes in the rendition rather than what every rendition shares
            (0 = plain Audio-SDS; 1 = only the difference of the two renditions; see the module text).
        latent_weighting: ``w(t)`` of latent SDS: ``"unit"`` or ``"noise_variance"``
            (``sin(pi t / 2)^2``, DreamFusion's weighting in the library's cosine time).
        seed: seed of the objective's own generator (t and noise draws).
    """

    objective: str = "decoder"
    guidance_scale: float = 7.0
    negative_prompt: str | None = None
    t_min: float = 0.02
    t_max: float = 0.98
    t_schedule: str = "uniform"
    denoise_steps: int = 1
    n_draws: int = 1
    n_ffts: tuple[int, ...] = (256, 512, 1024, 2048)
    hop_fraction: float = 0.25
    magnitude: str = "log"
    log_floor: float = 1e-3
    spectral_weight: float = 1.0
    waveform_weight: float = 0.0
    contrast: float = 0.0
    latent_weighting: str = "unit"
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> SDSAudioError:
            return SDSAudioError(f"{why} (got {getattr(self, name)!r})", field=name)

        if self.objective not in OBJECTIVES:
            raise bad("objective", f"objective must be one of {', '.join(OBJECTIVES)}")
        if not (math.isfinite(self.guidance_scale) and self.guidance_scale >= 0):
            raise bad("guidance_scale", "guidance_scale must be a finite number >= 0")
        if int(self.denoise_steps) != self.denoise_steps or self.denoise_steps < 1:
            raise bad("denoise_steps", "denoise_steps must be an integer >= 1")
        if int(self.n_draws) != self.n_draws or self.n_draws < 1:
            raise bad("n_draws", "n_draws must be an integer >= 1")
        if not self.n_ffts or any(int(n) < 16 for n in self.n_ffts):
            raise bad("n_ffts", "n_ffts must list window sizes of at least 16 samples")
        if not 0 < self.hop_fraction <= 1:
            raise bad("hop_fraction", "hop_fraction must lie in (0, 1]")
        if self.magnitude not in MAGNITUDES:
            raise bad("magnitude", f"magnitude must be one of {', '.join(MAGNITUDES)}")
        if not self.log_floor > 0:
            raise bad("log_floor", "log_floor must be > 0")
        if self.spectral_weight < 0 or self.waveform_weight < 0 or self.spectral_weight + self.waveform_weight == 0:
            raise bad("spectral_weight", "loss weights must be >= 0 and not both 0")
        if not (math.isfinite(self.contrast) and 0.0 <= self.contrast <= 1.0):
            raise bad("contrast", "contrast must lie in [0, 1]")
        if self.latent_weighting not in LATENT_WEIGHTINGS:
            raise bad("latent_weighting", f"latent_weighting must be one of {', '.join(LATENT_WEIGHTINGS)}")
        TSchedule(self.t_schedule, self.t_min, self.t_max)  # validates the schedule fields

    @property
    def schedule(self) -> TSchedule:
        return TSchedule(self.t_schedule, self.t_min, self.t_max)

    @classmethod
    def from_dict(cls, values: dict) -> "SDSConfig":
        """Build from a plain dict (e.g. parsed JSON); unknown keys raise SDSAudioError."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise SDSAudioError(f"unknown SDS option(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        values = dict(values)
        if "n_ffts" in values:
            values["n_ffts"] = tuple(int(n) for n in values["n_ffts"])
        return cls(**values)


@dataclass
class SDSResult:
    """What one SDS evaluation returns.

    Attributes:
        loss: scalar surrogate; its value is the objective summed over the batch and
            ``loss.backward()`` applies exactly the SDS update to the renderer.
        item_loss: ``(B,)`` objective value per batch item (detached).
        grad_norm: ``(B,)`` L2 norm of the update per batch item, detached: for the
            decoder objective the gradient with respect to the render *at the prior's
            rate and channels* (audio space); for latent SDS the norm of
            ``w(t) (eps_hat - eps)`` averaged over draws (latent space).
        t: ``(n_draws, B)`` noise levels used.
        x_hat: ``(B, C, T)`` first draw's denoised audio at the prior's rate (detached).
        sample_rate: rate of ``x_hat`` (the prior's).
    """

    loss: torch.Tensor
    item_loss: torch.Tensor
    grad_norm: torch.Tensor
    t: torch.Tensor
    x_hat: torch.Tensor
    sample_rate: int


class SpectralEmphasis(nn.Module):
    """``S_m(x)`` of the decoder-SDS loss: window-sum-normalised STFT magnitudes, log or linear.

    ``forward(audio (B, C, T)) -> [(B, C, bins_m, frames_m), ...]`` one per window size.
    """

    def __init__(self, n_ffts: Sequence[int], hop_fraction: float = 0.25, magnitude: str = "log",
                 log_floor: float = 1e-3):
        super().__init__()
        self.stft = MultiResolutionSTFT(n_ffts, hop_fraction=hop_fraction, eps=1e-12)
        self.register_buffer("scales", torch.tensor([2.0 / n for n in self.stft.n_ffts]), persistent=False)
        self.magnitude = magnitude
        self.log_floor = float(log_floor)

    def forward(self, audio: torch.Tensor) -> list[torch.Tensor]:
        mags = [m * s for m, s in zip(self.stft(audio), self.scales)]
        if self.magnitude == "log":
            return [torch.log(m + self.log_floor) for m in mags]
        return mags


def spectral_emphasis_loss(specs: Sequence[torch.Tensor], target_specs: Sequence[torch.Tensor],
                           weight: float = 1.0) -> torch.Tensor:
    """``sum_m weight / (2 N_m) ||S_m - T_m||^2`` per batch item.

    ``specs[m]`` is ``(B, C, F, N)``; ``target_specs[m]`` is ``(B, C, F, N)`` or
    ``(D, B, C, F, N)`` for ``D`` draws, which are averaged. Returns ``(B,)``.
    No stop-gradient here: callers detach the target.
    """
    total = 0.0
    for s, t in zip(specs, target_specs):
        sq = (s - t).square().flatten(-3).mean(-1)  # (B,) or (D, B)
        total = total + 0.5 * weight * (sq if sq.dim() == 1 else sq.mean(0))
    return total


def prepare_audio(audio: torch.Tensor, sample_rate: int, prior: Prior) -> torch.Tensor:
    """Render ``(B, C, T)`` -> the prior's rate, channels and device, differentiably; rejects NaN."""
    if audio.dim() != 3:
        raise SDSAudioError(f"audio must be (batch, channels, samples), got shape {tuple(audio.shape)}")
    if not torch.isfinite(audio).all():
        raise SDSAudioError("the renderer produced NaN or infinite samples; lower the learning rate or check "
                            "the synth's parameters")
    x = resample(audio.float(), int(sample_rate), int(prior.sample_rate))
    return match_channels(x, prior.channels).to(prior.device)


def fit_length(audio: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Crop or zero-pad the last axis to ``n_samples``."""
    if audio.shape[-1] >= n_samples:
        return audio[..., :n_samples]
    return torch.nn.functional.pad(audio, (0, n_samples - audio.shape[-1]))


def _check_noise(noise: torch.Tensor, z: torch.Tensor, n_draws: int) -> None:
    want = (n_draws * z.shape[0], *z.shape[1:])
    if tuple(noise.shape) != want:
        raise ValueError(f"noise has shape {tuple(noise.shape)} but the latents need {want}; "
                         "the prior's latent_length() disagrees with its encode()")


def decoder_sds(prior: Prior, audio: torch.Tensor, sample_rate: int, cond: Conditioning, config: SDSConfig,
                t: torch.Tensor, noise: torch.Tensor, emphasis: SpectralEmphasis) -> SDSResult:
    """One decoder-SDS evaluation (Audio-SDS), with spectral emphasis and ``k``-step denoising.

    Args:
        audio: render ``(B, C, T)`` at ``sample_rate``, attached to the renderer's graph.
        t: ``(n_draws, B)`` noise levels; ``noise``: ``(n_draws * B, D, L)`` standard normal.
    """
    x = prepare_audio(audio, sample_rate, prior)                    # (B, C', T') differentiable
    n_draws, batch = t.shape
    with torch.no_grad():
        z = prior.encode(x.detach())                                 # (B, D, L), no grad
        _check_noise(noise, z, n_draws)
        t_flat = t.reshape(-1)
        z_t = prior.add_noise(z.repeat(n_draws, 1, 1), noise.to(z.device), t_flat)
        z0_hat = prior.denoise(z_t, t_flat, cond, config.guidance_scale, steps=config.denoise_steps)
        x_hat = fit_length(prior.decode(z0_hat).float(), x.shape[-1])   # (n*B, C', T')
        x_hat = x_hat.reshape(n_draws, batch, *x.shape[1:])
        target = [s.reshape(n_draws, batch, *s.shape[1:]) for s in emphasis(x_hat.flatten(0, 1))]
        if config.contrast:           # the unconditional rendition from the same noisy latents
            z0_u = prior.denoise(z_t, t_flat, cond, 0.0, steps=config.denoise_steps)
            x_u = fit_length(prior.decode(z0_u).float(), x.shape[-1])
            away = [s.reshape(n_draws, batch, *s.shape[1:]) for s in emphasis(x_u)]
    # The update is the gradient of the emphasis loss at x; take it on a detached copy
    # (cheap: STFTs only) so its norm is free, then attach it to the render's graph.
    leaf = x.detach().requires_grad_(True)
    with torch.enable_grad():
        specs = emphasis(leaf)
        item_loss = spectral_emphasis_loss(specs, target, config.spectral_weight)
        if config.contrast:
            item_loss = item_loss - config.contrast * spectral_emphasis_loss(specs, away, config.spectral_weight)
        if config.waveform_weight:
            wave = (leaf.unsqueeze(0) - x_hat).square().flatten(2).mean(-1).mean(0)
            item_loss = item_loss + 0.5 * config.waveform_weight * wave
        (update,) = torch.autograd.grad(item_loss.sum(), leaf)
    if not torch.isfinite(update).all():
        raise SDSAudioError("the SDS update is not finite; check the prior's dtype (use float32 or bfloat16)")
    loss = (x * update).sum() - (x.detach() * update).sum() + item_loss.sum().detach()
    return SDSResult(loss=loss, item_loss=item_loss.detach(), grad_norm=update.flatten(1).norm(dim=1),
                     t=t, x_hat=x_hat[0].detach(), sample_rate=int(prior.sample_rate))


def latent_sds(prior: Prior, audio: torch.Tensor, sample_rate: int, cond: Conditioning, config: SDSConfig,
               t: torch.Tensor, noise: torch.Tensor) -> SDSResult:
    """Plain (latent) SDS: ``w(t) (eps_hat - eps)`` pushed back through the prior's encoder.

    Surrogate ``0.5 ||z - stopgrad(z - g)||^2`` with ``g = mean_draws w(t)(eps_hat - eps)``,
    whose gradient with respect to the latents ``z = encode(x)`` is ``g``.
    """
    x = prepare_audio(audio, sample_rate, prior)
    n_draws, batch = t.shape
    z = prior.encode(x)                                               # (B, D, L) WITH grad
    if x.requires_grad and not z.requires_grad:
        raise SDSAudioError(f"prior {prior.name!r} does not propagate gradients through its encoder; "
                            "use objective='decoder'")
    _check_noise(noise, z, n_draws)
    with torch.no_grad():
        t_flat = t.reshape(-1)
        eps = noise.to(z.device).float()
        z_t = prior.add_noise(z.detach().repeat(n_draws, 1, 1), eps, t_flat)
        z0_hat = prior.denoise(z_t, t_flat, cond, config.guidance_scale, steps=config.denoise_steps)
        eps_hat = prior.noise_from_x0(z_t, z0_hat, t_flat)
        w = torch.ones_like(t_flat) if config.latent_weighting == "unit" else torch.sin(0.5 * math.pi * t_flat) ** 2
        g = (w.to(z.device).reshape(-1, 1, 1) * (eps_hat - eps)).reshape(n_draws, batch, *z.shape[1:]).mean(0)
        if not torch.isfinite(g).all():
            raise SDSAudioError("the SDS update is not finite; check the prior's dtype (use float32 or bfloat16)")
        x_hat = fit_length(prior.decode(z0_hat[:batch]).float(), x.shape[-1])
    item_loss = 0.5 * (z - (z.detach() - g)).square().flatten(1).sum(-1)
    return SDSResult(loss=item_loss.sum(), item_loss=item_loss.detach(), grad_norm=g.flatten(1).norm(dim=1),
                     t=t, x_hat=x_hat, sample_rate=int(prior.sample_rate))


class SDSObjective(nn.Module):
    """A prompt, a prior and an :class:`SDSConfig`, callable on renders.

    Holds the spectral transforms (buffers), the objective's own seeded
    generator and the cached conditioning. ``forward(audio, sample_rate,
    progress=..., generator=None) -> SDSResult``; ``progress`` in [0, 1] drives
    annealed ``t`` schedules; ``generator`` (CPU) overrides the objective's own for
    the ``t`` and noise draws.

    Args:
        prior: any :class:`~sds_audio.priors.base.Prior`.
        prompt: the text the sound should match.
        config: options (default :class:`SDSConfig`).
        seconds: duration for the prior's conditioning (default: the render's duration).
    """

    def __init__(self, prior: Prior, prompt: str, config: SDSConfig | None = None, *, seconds: float | None = None):
        super().__init__()
        self.prior = prior
        self.prompt = prompt
        self.config = config or SDSConfig()
        self.seconds = seconds
        self.emphasis = SpectralEmphasis(self.config.n_ffts, self.config.hop_fraction, self.config.magnitude,
                                         self.config.log_floor).to(prior.device)
        self.generator = torch.Generator().manual_seed(int(self.config.seed))
        self._schedule = self.config.schedule
        prior.condition(prompt, self.config.negative_prompt, seconds)  # fail early on a bad prompt

    def conditioning(self, seconds: float) -> Conditioning:
        return self.prior.condition(self.prompt, self.config.negative_prompt,
                                    self.seconds if self.seconds is not None else seconds)

    def draw(self, batch: int, n_latent: int, progress: float,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``t`` ``(n_draws, B)`` and noise ``(n_draws * B, latent_channels, n_latent)``, CPU float32."""
        g = generator if generator is not None else self.generator
        n = self.config.n_draws
        t = self._schedule.sample(n * batch, progress, g).reshape(n, batch)
        noise = torch.randn((n * batch, self.prior.latent_channels, n_latent), generator=g)
        return t, noise

    def forward(self, audio: torch.Tensor, sample_rate: int, progress: float = 0.0,
                generator: torch.Generator | None = None) -> SDSResult:
        cond = self.conditioning(audio.shape[-1] / float(sample_rate))
        n_prior = -(-audio.shape[-1] * int(self.prior.sample_rate) // int(sample_rate))  # resample's length
        t, noise = self.draw(audio.shape[0], self.prior.latent_length(n_prior), progress, generator)
        if self.config.objective == "latent":
            return latent_sds(self.prior, audio, sample_rate, cond, self.config, t, noise)
        return decoder_sds(self.prior, audio, sample_rate, cond, self.config, t, noise, self.emphasis)
