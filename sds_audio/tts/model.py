"""TTSModel: text + voice prompt -> frames (log-mel or codec latents) by conditional flow matching
(Matcha-TTS alignment, F5-TTS-style in-context prompting).

Training (:meth:`TTSModel.losses`), per utterance of normalised frames ``z`` ``(D, T)`` (:mod:`sds_audio.tts.features`):

1. a speaker vector from the statistics of a random span of the utterance
   (:class:`~sds_audio.tts.networks.SpeakerEncoder`);
2. the text encoder gives hidden states and per-symbol means ``mu``; monotonic
   alignment search (:mod:`sds_audio.tts.alignment`, no gradient) finds the
   symbol of every frame under ``N(mu_n, I)``; the *prior loss* pulls the
   aligned means toward the frames, the *duration loss* fits the duration
   predictor (on detached hidden states) to ``log(1 + frames)``;
3. the flow decoder learns the velocity of the linear path from noise to ``z``
   (:func:`sds_audio.flow.path.cfm_loss`) given the aligned means; a prefix of
   ``prompt_min``..``prompt_max`` of the frames is, for ``prompt_share`` of the
   rows, given clean (its text means zeroed) and left out of the loss: that is
   the in-context voice prompt; ``text_dropout`` of the rows see no text at all
   (classifier-free guidance's unconditional branch).

Synthesis (:meth:`TTSModel.synthesize`) lays the prompt's latents before the
new text's predicted-duration frames and integrates the decoder's ODE with the
library's samplers and guidance (:mod:`sds_audio.flow.samplers`,
:func:`sds_audio.flow.guidance.cfg_combine`); the prompt frames are cut off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..flow.guidance import cfg_combine
from ..flow.path import cfm_loss, interpolate, sample_time
from ..flow.samplers import integrate, time_grid
from .alignment import (expand, gaussian_log_likelihood, monotonic_alignment, path_from_durations,
                        predicted_durations, sequence_mask)
from .config import TTSConfig
from .networks import DurationPredictor, FlowDecoder, SpeakerEncoder, TextEncoder

LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class TTSLosses:
    """The three training losses (scalars) and the alignment's durations ``(B, N)``."""

    flow: torch.Tensor
    prior: torch.Tensor
    duration: torch.Tensor
    durations: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.flow + self.prior + self.duration


def random_spans(lengths: torch.Tensor, min_share: float, max_share: float, generator: torch.Generator,
                 n_frames: int, prefix: bool = False) -> torch.Tensor:
    """``(B, n_frames)`` bool masks of one contiguous span per row, ``min_share``..``max_share`` of its length.

    Args:
        lengths: ``(B,)`` valid frames per row.
        prefix: spans start at frame 0 (else at a uniform offset).
    """
    b = lengths.shape[0]
    share = min_share + (max_share - min_share) * torch.rand(b, generator=generator)
    span = (share * lengths.float()).round().long().clamp(min=1)
    span = torch.minimum(span, lengths)
    start = torch.zeros(b, dtype=torch.long) if prefix else (
        torch.rand(b, generator=generator) * (lengths - span + 1).float()).floor().long()
    frames = torch.arange(n_frames)[None, :]
    return ((frames >= start[:, None]) & (frames < (start + span)[:, None])).to(lengths.device)


class TTSModel(nn.Module):
    """The speech model (see the module docstring).

    Buffers: ``latent_mean`` / ``latent_std`` ``(D,)`` (frames <-> unit scale) and
    ``default_prompt`` ``(D, default_prompt_frames)`` (normalised latents of the built-in voice).
    """

    def __init__(self, config: TTSConfig):
        super().__init__()
        self.config = config
        d = config.latent_channels
        self.register_buffer("latent_mean", torch.zeros(d))
        self.register_buffer("latent_std", torch.ones(d))
        self.register_buffer("default_prompt", torch.zeros(d, config.default_prompt_frames))
        self.speaker_encoder = SpeakerEncoder(d, config.width)
        self.text_encoder = TextEncoder(config)
        self.duration_predictor = DurationPredictor(config.text_width, config.duration_width)
        self.decoder = FlowDecoder(config)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def normalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Frames ``(B, D, T)`` -> unit-scale frames."""
        return (latents - self.latent_mean[:, None]) / self.latent_std[:, None]

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Unit-scale frames ``(B, D, T)`` -> frames."""
        return z * self.latent_std[:, None] + self.latent_mean[:, None]

    def set_default_prompt(self, z: torch.Tensor) -> None:
        """Store normalised prompt latents ``(D, T)`` as the built-in voice (changes the config's frame count)."""
        self.config = self.config.replace(default_prompt_frames=int(z.shape[-1]))
        self.default_prompt = z.detach().to(self.latent_mean).clone()

    def losses(self, symbols: torch.Tensor, text_lengths: torch.Tensor, z: torch.Tensor,
               frame_lengths: torch.Tensor, generator: torch.Generator) -> TTSLosses:
        """Training losses of one batch.

        Args:
            symbols: ``(B, N)`` symbol ids (padding arbitrary).
            text_lengths: ``(B,)`` symbols per row.
            z: ``(B, D, T)`` normalised latents (padding arbitrary).
            frame_lengths: ``(B,)`` frames per row (``>= text_lengths``).
            generator: CPU generator for every random choice of the step.
        """
        cfg = self.config
        b, d, t = z.shape
        device = z.device
        text_mask = sequence_mask(text_lengths, symbols.shape[1])
        frame_mask = sequence_mask(frame_lengths, t)
        z = z * frame_mask.unsqueeze(1)
        reference = random_spans(frame_lengths.cpu(), 0.3, 0.8, generator, t).to(device)
        speaker = self.speaker_encoder(z, reference)
        hidden, mu = self.text_encoder(symbols, text_mask, speaker)

        with torch.no_grad():
            log_p = gaussian_log_likelihood(z, mu)
            path = monotonic_alignment(log_p, text_lengths, frame_lengths)
        durations = path.sum(-1)
        log_dur = self.duration_predictor(hidden.detach(), text_mask)
        target = torch.log1p(durations) * text_mask
        duration_loss = ((log_dur - target) ** 2).sum() / text_mask.sum()

        mu_frames = expand(mu, path)
        fm = frame_mask.unsqueeze(1).to(z.dtype)
        prior = 0.5 * ((z - mu_frames) ** 2 + LOG_2PI) * fm
        prior_loss = prior.sum() / (fm.sum() * d)

        has_prompt = torch.rand(b, generator=generator) < cfg.prompt_share
        prompt_mask = random_spans(frame_lengths.cpu(), cfg.prompt_min, cfg.prompt_max, generator, t, prefix=True)
        prompt_mask = (prompt_mask & has_prompt[:, None]).to(device)
        keep_text = (torch.rand(b, generator=generator) >= cfg.text_dropout).to(device)
        mu_in = mu_frames * (~prompt_mask).unsqueeze(1) * keep_text[:, None, None]
        prompt = z * prompt_mask.unsqueeze(1)
        s = sample_time(b, generator, device=device)
        noise = torch.randn(z.shape, generator=generator).to(device)
        x_s = interpolate(noise, z, s)
        v = self.decoder(x_s, s, mu_in, prompt, prompt_mask, speaker, frame_mask)
        flow_loss = cfm_loss(v, noise, z, mask=frame_mask & ~prompt_mask)
        return TTSLosses(flow_loss, prior_loss, duration_loss, durations)

    @torch.no_grad()
    def synthesize(self, symbols: torch.Tensor, prompt: torch.Tensor | None = None, steps: int = 16,
                   guidance: float = 2.0, speed: float = 1.0, sway: float | None = -1.0,
                   generator: torch.Generator | None = None, method: str = "euler",
                   progress: bool = False) -> torch.Tensor:
        """Normalised latents of one sentence.

        Args:
            symbols: ``(N,)`` symbol ids.
            prompt: ``(D, P)`` normalised latents of the voice prompt (None: the built-in voice).
            steps: ODE steps; ``guidance``: classifier-free guidance scale (1 = none).
            speed: speaking-rate factor (2 = twice as fast).
            sway: sway-sampling coefficient of the time grid (None: uniform).
            generator: CPU generator of the initial noise.

        Returns:
            ``(D, T)`` normalised latents of the new speech (prompt frames removed).
        """
        device = self.latent_mean.device
        if prompt is None:
            prompt = self.default_prompt
        prompt = prompt.to(device)
        n_prompt = prompt.shape[-1]
        symbols = symbols.to(device)[None]
        text_mask = torch.ones_like(symbols, dtype=torch.bool)
        speaker_mask = torch.ones(1, max(n_prompt, 1), dtype=torch.bool, device=device)
        speaker_frames = prompt[None] if n_prompt else torch.zeros(1, prompt.shape[0], 1, device=device)
        speaker = self.speaker_encoder(speaker_frames, speaker_mask)
        hidden, mu = self.text_encoder(symbols, text_mask, speaker)
        durations = predicted_durations(self.duration_predictor(hidden, text_mask), text_mask, speed)
        mu_new = expand(mu, path_from_durations(durations))
        n_new = mu_new.shape[-1]
        total = n_prompt + n_new
        d = prompt.shape[0]
        mu_in = torch.cat([torch.zeros(1, d, n_prompt, device=device), mu_new], dim=-1)
        prompt_in = torch.cat([prompt[None], torch.zeros(1, d, n_new, device=device)], dim=-1)
        prompt_mask = torch.zeros(1, total, dtype=torch.bool, device=device)
        prompt_mask[:, :n_prompt] = True
        frame_mask = torch.ones(1, total, dtype=torch.bool, device=device)

        noise = torch.randn(1, d, total, generator=generator).to(device)

        def velocity(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            # the prompt frames sit on their own noise-to-data path, as in training
            x = torch.where(prompt_mask.unsqueeze(1), interpolate(noise, prompt_in, s), x)
            if guidance == 1.0:
                return self.decoder(x, s, mu_in, prompt_in, prompt_mask, speaker, frame_mask)
            both = self.decoder(torch.cat([x, x]), torch.cat([s, s]), torch.cat([mu_in, torch.zeros_like(mu_in)]),
                                prompt_in.expand(2, -1, -1), prompt_mask.expand(2, -1), speaker.expand(2, -1),
                                frame_mask.expand(2, -1))
            v_cond, v_uncond = both.chunk(2)
            return cfg_combine(v_cond, v_uncond, guidance)

        x = integrate(velocity, noise, time_grid(steps, sway_coef=sway), method=method, progress=progress)
        return x[0, :, n_prompt:]


__all__ = ["TTSLosses", "TTSModel", "random_spans"]
