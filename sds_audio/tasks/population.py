"""Population stage: choose where the restarts start by what the prior prefers, before any SDS step.

A magnitude-spectrum SDS pull moves a patch's continuous parameters but cannot make the discrete
moves an FM patch needs (which ratios its operators sit on, which operators sound, a DX7
voice's algorithm): partials do not slide across bins under a magnitude gradient. So the task
first draws a population of ``size`` candidates with the synth's structured
:meth:`~sds_audio.synths.base.Synth.propose_`, scores each by the prior alone, and hands the
``keep`` best to SDS as its restarts.

Score of candidate ``x`` (lower is better), on draws ``(t_j, noise_j)`` shared by every candidate::

    d_c(x) = D(x, decode(denoise(noisy_j(x), t_j, prompt, guidance g)))   # the prompt's rendition of x
    d_u(x) = D(x, decode(denoise(noisy_j(x), t_j, prompt, guidance 0)))   # the unconditional rendition
    score  = mean_j [ d_c - contrast * d_u ]

``D`` is the SDS objective's own multi-scale spectral distance
(:func:`~sds_audio.sds.spectral_emphasis_loss` on :class:`~sds_audio.sds.SpectralEmphasis`).
``d_c`` alone prefers candidates the prompt's rendition barely changes; subtracting the
unconditional rendition's distance (the same noise, so most of the draw's randomness cancels)
prefers candidates the *prompt* pulls less than no prompt does, the difference a
diffusion classifier reads as evidence for the prompt. It never consults a judge.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import SDSAudioError
from ..priors.base import Conditioning, Prior
from ..sds import SpectralEmphasis, fit_length, prepare_audio, spectral_emphasis_loss
from ..synths import Synth


@dataclass(frozen=True)
class PopulationConfig:
    """Options of the population stage.

    Attributes:
        size: candidates drawn (0 = no population stage: the restarts are random draws).
        t_levels: noise levels each candidate is scored at (one shared noise draw per level).
        denoise_steps: steps of each rendition's denoising chain.
        contrast: weight of the unconditional rendition's distance subtracted from the prompt's.
        chunk: candidates per prior call (bounds memory).
    """

    size: int = 32
    t_levels: tuple[float, ...] = (0.5, 0.7)
    denoise_steps: int = 1
    contrast: float = 1.0
    chunk: int = 16

    def __post_init__(self) -> None:
        if int(self.size) != self.size or self.size < 0:
            raise SDSAudioError("population size must be an integer >= 0", field="population")
        if not self.t_levels or not all(0.0 < float(t) <= 1.0 for t in self.t_levels):
            raise SDSAudioError("population t_levels must lie in (0, 1]", field="t_levels")
        if int(self.denoise_steps) != self.denoise_steps or self.denoise_steps < 1:
            raise SDSAudioError("population denoise_steps must be an integer >= 1", field="denoise_steps")
        if not self.contrast >= 0:
            raise SDSAudioError("population contrast must be >= 0", field="contrast")
        if int(self.chunk) != self.chunk or self.chunk < 1:
            raise SDSAudioError("population chunk must be an integer >= 1", field="chunk")


@torch.no_grad()
def rendition_distances(prior: Prior, audio: torch.Tensor, sample_rate: int, cond: Conditioning,
                        guidance_scales: tuple[float, ...], t: float, noise: torch.Tensor,
                        emphasis: SpectralEmphasis, denoise_steps: int = 1) -> torch.Tensor:
    """``(len(guidance_scales), B)`` spectral distances between renders and the prior's renditions of them.

    Args:
        audio: ``(B, C, T)`` renders at ``sample_rate``.
        t: noise level shared by the batch; ``noise``: ``(B, latent_channels, L)`` (shared by the scales).
    """
    x = prepare_audio(audio, sample_rate, prior)
    z = prior.encode(x)
    level = torch.full((x.shape[0],), float(t))
    noisy = prior.add_noise(z, noise.to(z.device, z.dtype), level)
    target = emphasis(x)
    out = []
    for scale in guidance_scales:
        z0 = prior.denoise(noisy, level, cond, float(scale), steps=int(denoise_steps))
        rendition = fit_length(prior.decode(z0).float(), x.shape[-1])
        out.append(spectral_emphasis_loss(emphasis(rendition), target))
    return torch.stack(out)


def draw_population(synth: Synth, size: int, generator: torch.Generator) -> Synth:
    """``size`` structured draws (:meth:`~sds_audio.synths.base.Synth.propose_`) of ``synth``'s kind and
    settings, on its device."""
    population = type(synth)(**synth.config(), batch_size=size).to(next(synth.parameters()).device)
    return population.propose_(generator)


def level_noises(prior: Prior, n_samples: int, sample_rate: int, config: PopulationConfig,
                 generator: torch.Generator) -> list[torch.Tensor]:
    """One ``(1, latent_channels, L)`` noise draw per noise level, for renders of ``n_samples`` at ``sample_rate``."""
    n_prior = -(-n_samples * int(prior.sample_rate) // int(sample_rate))
    n_latent = prior.latent_length(n_prior)
    return [torch.randn((1, prior.latent_channels, n_latent), generator=generator) for _ in config.t_levels]


@torch.no_grad()
def score_renders(prior: Prior, audio: torch.Tensor, sample_rate: int, cond: Conditioning, guidance_scale: float,
                  config: PopulationConfig, emphasis: SpectralEmphasis, noises: list[torch.Tensor]) -> torch.Tensor:
    """``(B,)`` population scores of renders ``(B, C, T)`` (lower = preferred under the prompt), one noise
    draw of :func:`level_noises` per level shared by the batch; see the module text."""
    scales = (float(guidance_scale), 0.0) if config.contrast > 0 else (float(guidance_scale),)
    total = torch.zeros(audio.shape[0])
    for t, noise in zip(config.t_levels, noises):
        d = rendition_distances(prior, audio, sample_rate, cond, scales, t, noise.expand(audio.shape[0], -1, -1),
                                emphasis, config.denoise_steps).cpu()
        total += d[0] - (config.contrast * d[1] if config.contrast > 0 else 0.0)
    return total / len(config.t_levels)


@torch.no_grad()
def score_population(synth: Synth, n_samples: int, prior: Prior, cond: Conditioning, guidance_scale: float,
                     config: PopulationConfig, emphasis: SpectralEmphasis, generator: torch.Generator,
                     progress=None) -> torch.Tensor:
    """``(synth.batch_size,)`` population scores, ``config.chunk`` candidates per prior call."""
    noises = level_noises(prior, n_samples, synth.sample_rate, config, generator)
    scores = []
    for start in range(0, synth.batch_size, config.chunk):
        audio = synth.gather(range(start, min(start + config.chunk, synth.batch_size)))(n_samples)
        scores.append(score_renders(prior, audio, synth.sample_rate, cond, guidance_scale, config, emphasis, noises))
        if progress is not None:
            progress(audio.shape[0])
    return torch.cat(scores)


def select_population(scores: torch.Tensor, keep: int) -> list[int]:
    """Indices of the ``keep`` lowest scores, best first (ties: lower index first)."""
    if keep > scores.numel():
        raise SDSAudioError(f"cannot keep {keep} of {scores.numel()} candidates", field="population")
    order = sorted(range(scores.numel()), key=lambda i: (float(scores[i]), i))
    return order[:keep]


class BestByPrior:
    """Per restart, the best state an optimisation has passed through by the population score.

    SDS descends the distance to the prompt's renditions, which also carry what every rendition
    shares (e.g. decays the prior shortens whatever the prompt); the population score (prompt's
    rendition against the unconditional one) can say a step made a restart worse. Offered the
    restarts' states now and then, this keeps each restart's best one. The score's noise comes from
    its own generator seeded by ``seed`` and is the same at every offer, so scores compare across steps.
    """

    def __init__(self, prior: Prior, cond: Conditioning, guidance_scale: float, config: PopulationConfig,
                 emphasis: SpectralEmphasis, seed: int):
        self.prior, self.cond, self.guidance_scale = prior, cond, float(guidance_scale)
        self.config, self.emphasis, self.seed = config, emphasis, int(seed)
        self.best_raw: dict[str, torch.Tensor] | None = None
        self.best_score: torch.Tensor | None = None
        self.best_step: torch.Tensor | None = None

    def score(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """``(B,)`` population scores of renders ``(B, C, T)`` (lower = preferred)."""
        noises = level_noises(self.prior, audio.shape[-1], sample_rate, self.config,
                              torch.Generator().manual_seed(self.seed))
        return score_renders(self.prior, audio, sample_rate, self.cond, self.guidance_scale, self.config,
                             self.emphasis, noises)

    @torch.no_grad()
    def offer(self, raw: dict[str, torch.Tensor], audio: torch.Tensor, sample_rate: int, step: int) -> torch.Tensor:
        """Score the restarts' state ``raw`` (rendered as ``audio``) and keep it where it beats the best so far."""
        score = self.score(audio.detach(), sample_rate)
        if self.best_score is None:
            self.best_raw = {k: v.detach().cpu().clone() for k, v in raw.items()}
            self.best_score, self.best_step = score.clone(), torch.full_like(score, step, dtype=torch.long)
            return score
        better = score < self.best_score
        for name, value in raw.items():
            mask = better.reshape(-1, *([1] * (value.dim() - 1)))
            self.best_raw[name] = torch.where(mask, value.detach().cpu(), self.best_raw[name])
        self.best_score = torch.where(better, score, self.best_score)
        self.best_step = torch.where(better, torch.full_like(self.best_step, step), self.best_step)
        return score

    def state_dict(self) -> dict:
        if self.best_score is None:
            return {}
        return {"best_raw": self.best_raw, "best_score": self.best_score, "best_step": self.best_step}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.best_raw = dict(state["best_raw"])
            self.best_score, self.best_step = state["best_score"], state["best_step"]
