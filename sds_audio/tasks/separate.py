"""Mixture + prompts -> sources: prompt-guided source separation with Audio-SDS.

Two methods (``SeparationConfig.method``). ``"mask"``, the default, optimises soft masks on the
mixture's STFT from the prior-mask split, so the sources always sum to the mixture and only SDS
moves them (:mod:`sds_audio.tasks.mask_separation`; its figures there). ``"latent"``, described
below, holds the sources as codec latents.

Each of the ``K`` prompts gets one source, held as a latent of the prior's
autoencoder (:class:`~sds_audio.synths.LatentSynth`, batch ``K``, decoder
``prior.decode``). The sources start from the encoded mixture, by default split
by the prior's own renditions of it (``init`` below), and are optimised together
with Adam on

    L = L_rec(m, sum_k x_k) + gamma * sum_k SDS(x_k; prompt_k)

* ``L_rec`` is the linear-magnitude multi-resolution STFT distance of
  :class:`~sds_audio.spectral.MultiResolutionSTFTDistance` plus
  ``rec_waveform_weight`` (0.3) times the mean absolute sample error, divided
  by its value for silent sources (averaged over the windows), so that
  ``L_rec = 1`` means "as far off as silence" and ``gamma`` means the same at
  any level and for any STFT sizes.
  The log-magnitude term is off by default (``rec_log_weight=0``): it magnifies
  the near-silent bins, whose L1 gradient never vanishes, and the sum of the
  sources drifts away from the mixture. The small waveform term pins
  ``sum_k x_k`` to ``m`` sample for sample, which magnitudes (phase-blind)
  cannot; it is kept small because a codec trained on spectral losses does not
  reproduce phase.
* ``SDS`` is decoder-SDS (:class:`~sds_audio.sds.SDSObjective`), one objective
  per prompt, each applied to its own source only. ``gamma = 0`` is the
  reconstruction-only baseline: with nothing to tell the sources apart they stay
  identical, each ``m / K``.

Initialisation (``init``): ``"mixture"`` (the issue's formulation) starts every source at
``encode(m)``; ``"split"`` at ``encode(m / K)`` (the audio is scaled, not the
latents, so that a nonlinear codec still decodes the start faithfully), which
makes the sum start at ``m``; ``"prior_mask"`` at ``encode`` of the mixture split
by the prior itself (:func:`prior_mask_split`: the encoded mixture is noised to a
few levels ``mask_noise_levels`` and denoised under each prompt; the Wiener masks
of those renditions split the mixture, averaged over levels and ``mask_draws``
draws), so the sources start apart, their sum at ``m``, and ``gamma = 0`` becomes a
prior-guided baseline that does separate. ``"prior_mask"`` is the default.

Decoding (``residual_decoding``, default on): each source is ``start + D(z) - D(z_0)``,
its start plus the decoded change of its latents, rather than ``D(z)``. The start then
reaches the output whole instead of through the codec's reconstruction error (the
embedded codec does not reproduce phase), and the steps add only what they change.

How ``init`` and ``residual_decoding`` were chosen (embedded prior, six 3 s mixtures of
training clips, ``benchmarks/separation.py --split train --n-mixtures 6 --min-s 3 --max-s 3
--steps 100``, Wiener output, mean SI-SDRi over 12 sources): the prior-mask split itself
(``steps=0``) +3.64 dB; from it, reconstruction only +1.73 dB decoded directly and +3.03 dB
decoded residually; residually with SDS (``gamma=0.3``) +3.32 dB (+3.34 at ``lr=0.05``). So
the optimisation does not improve on its start with this prior: on these mixtures the best
separation is ``steps=0``. The defaults keep the SDS steps (the method this module
implements) from the best start measured; the held-out figures are in the README.

Three options that stay off by default (measured 2026-12-04). ``mask_refinements``: on twelve 3 s training
mixtures (no optimisation) one refinement pass lifted the split from +4.76 to +5.40 dB, a second to
+5.44; held out (20 mixtures) +4.18 against +4.07 dB, median +3.60 against +4.08, at about twice
the time. ``lr_schedule="cosine"``: on the leaky oracle of the tests it keeps what the split found
(60 steps: 10.3 / 11.4 dB against 8.1 / 9.9 constant); on the six training mixtures above with
SDS, +3.15 against +3.09 dB. So the loss from the split on this prior is not Adam's jitter.
``sds_target="mixture_split"`` (each SDS term pulls its source toward its part of the mixture, split
by Wiener masks of all the sources' renditions of that step, instead of toward its own rendition):
leaky oracle 8.9 / 10.4 against 8.1 / 9.9 dB; the six training mixtures +3.18 dB (+3.47 with the
cosine schedule) against +3.09, still under the split's +3.82 there; held out (first 10 mixtures,
with cosine) +2.19 against +3.17 for the split alone.
Not adopted either: each rendition scaled to unit RMS before the masks (+5.70 against +4.76 dB
on the twelve mixtures, whose sources have equal RMS by construction, but +4.26 against +4.68
when the two sources differ by 10 dB), and Wiener masks at other STFT sizes (512 / 2048 samples
/ the three averaged: +4.45 / +4.77 / +4.72 dB against +4.77 at the default 1024), or the draws'
masks combined by normalised geometric mean (+4.98 dB) or by summed rendition power (+3.66 dB).

How the loss defaults were chosen (``init="mixture"``, decoded directly; oracle prior of ``tests/test_separate.py``: exact
autoencoder, SDS target = the true source; 3 source pairs x 2 seeds, 4000
samples at 8 kHz, 100 steps; mean SI-SDRi over the 12 sources, Wiener / direct
output, and SI-SDR of the direct sources' sum against the mixture):

==========================================  =============  =============  ===========
setting (others at their defaults)           Wiener (dB)    direct (dB)    sum (dB)
==========================================  =============  =============  ===========
defaults                                     23.9           22.1           35.5
``init="split"``                             23.1           21.6           40.4
``rec_waveform_weight=0``                    23.8           20.7           31.2
``rec_log_weight=1``                         18.2            1.8            2.1
``gamma=0`` (reconstruction only)             0.0            0.0           29.7
``gamma=0, rec_log_weight=1``                 0.0           -8.0           -4.2
==========================================  =============  =============  ===========

``gamma`` 0.1 / 0.3 / 1 gave 22.7 / 24.0 / 24.3 dB (Wiener); 0.3 is the default
because at 1 the sum of the direct sources tracked the mixture less well in
short windowed runs (40 steps: 11 dB against 21 dB at 0.3). ``lr`` 0.1 / 0.25 /
0.5 gave 22.2 / 23.9 / 25.4 dB (Wiener), 20.9 / 22.1 / 20.4 dB (direct), sums
at 40.8 / 35.5 / 27.9 dB: the oracle's target is exact, a real prior's is
noisy, so the default stays at 0.25.

On the shipped embedded prior, a first probe on training clips (three 3 s
mixtures from ``benchmarks/separation.py``'s ``build_mixtures(corpus, 3, seed=123,
min_s=3, max_s=3, split="train")``, 100 steps, seed 0; mean SI-SDRi of the 6
sources): defaults -2.4 dB; SDS
``t_max`` 0.5: -8.7 dB; ``t_max`` 0.3: -3.1 dB; ``t_max`` 0.5 with ``gamma`` 1:
-5.2 dB (+7.5 dB on one mixture, -33 dB on another). Lower noise levels do not
help, so the defaults stay; the held-out figures are in the README.

Everything runs at the prior's sample rate and channel count: the mixture is
resampled (:func:`~sds_audio.audio_io.resample`) and channel-matched first.
Sources come back at the input's rate and channel count. With
``output="wiener"`` (default) they are made from the *input* mixture with
soft ratio masks ``|X_k|^2 / sum_j |X_j|^2`` computed from the separated
sources (STFT of ``torch.stft``), so that the returned sources sum to the input
mixture exactly (up to float rounding), keep the input's stereo image and the
band above the prior's Nyquist frequency (split equally where no source has
energy). With ``steps=0`` the sources are the windows' starts, which already split the
mixture: ``output="wiener"`` then returns them without a second mask, adding to each an equal
share of what resampling and channel matching leave over, so that they still sum to the
input exactly (masking a split again sharpens it: on 12 training mixtures the prior-mask
split lost 0.3 dB that way). ``output="direct"`` returns the decoded sources themselves, resampled
and channel-matched back. The masks take their phase from the mixture, which
matters because the embedded codec is trained on spectral losses and does not
reproduce phase; on the oracle tests (exact autoencoder) the Wiener output is
also better on average (table below), though a run that separates very well
can come out higher direct (the masks cap it). With a single prompt the
Wiener output is the mixture itself; use ``output="direct"`` to hear the
prior's rendition of it.

Long mixtures: a mixture longer than ``window_s`` (default: the prior's
``max_duration_s``) is cut into evenly spaced windows that overlap by at least
``overlap_s`` (default: a third of the window); each window is separated independently
(same prompts; its SDS draws seeded from ``seed``, the window index and the source index) and the
sources are overlap-added with linear crossfade weights that sum to one at every
sample (:func:`crossfade_weights`): the crossfaded mixture windows add up to the
mixture exactly, so consistent per-window sources add up to a consistent whole.
Each window's sources are worst near its edges (where the prior renders the window as if a sound
began or ended there), and consecutive windows' sources differ across their overlap; a longer
overlap turns that difference into a slower fade, which is why the default is a third of the
window. ``crossfade_edge`` (keep the outer part of each overlap out of the crossfade) and
``continue_masks`` (start each window from the previous one's sources across the overlap) were
measured and did not help; both stay off. Figures: ``docs/measurements.md`` (Separation, the
seams entry of 2026-12-07).

Input checks (each raises :class:`~sds_audio.errors.SDSAudioError`): no prompts,
an empty prompt, a mixture that is not ``(C, T)`` or ``(1, C, T)``, NaN or
infinite samples, an all-silent mixture (peak below ``1e-6``), a clipped
mixture (more than 1 % of its samples at full scale, as
:func:`~sds_audio.audio_io.clipped_fraction` counts them; below that the run
proceeds on the samples as given, nothing is rescaled), a non-positive sample
rate, a mixture shorter than ``MIN_DURATION_S``.

A run is seeded, shows one progress bar over windows x steps, checkpoints every
``checkpoint_every`` steps, at the end of every window and on Ctrl-C, and
resumes from its checkpoint bit-for-bit on the same machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from ..audio_io import clipped_fraction, match_channels, resample, save_audio
from ..errors import SDSAudioError
from ..interrupts import StepInterrupts, at_step_boundary
from ..priors.base import Prior
from ..sds import SDSConfig, SDSObjective, spectral_emphasis_loss
from ..spectral import MultiResolutionSTFTDistance
from ..synths import LatentSynth
from ..synths.dsp import fit_length
from .checkpoint import load_checkpoint, save_checkpoint
from .mask_separation import MaskWindow, SeededObjectives, check_mask_options
from .separation_windows import crossfade_weights, overlap_add, plan_windows  # noqa: F401 (re-exported)

CHECKPOINT_NAME = "separation_checkpoint.pt"
INITS = ("split", "mixture", "prior_mask")
LR_SCHEDULES = ("constant", "cosine")
SDS_TARGETS = ("source", "mixture_split")
OUTPUTS = ("wiener", "direct")
#: shortest mixture accepted, in seconds
MIN_DURATION_S = 0.05
#: fraction of samples at full scale above which a mixture counts as clipped
CLIP_FRACTION = 0.01
#: peak below which a mixture counts as silent
SILENCE_PEAK = 1e-6
#: the windows' least overlap when ``overlap_s`` is None, as a fraction of the window
DEFAULT_OVERLAP = 1 / 3

Judge = Callable[[torch.Tensor, int, str], torch.Tensor]


@dataclass(frozen=True)
class SeparationConfig:
    """Options of a separation run (validated on construction).

    Attributes:
        method: ``"mask"`` (default: the sources are soft masks on the mixture's STFT, moved by SDS from
            the prior-mask split, :mod:`sds_audio.tasks.mask_separation`) or ``"latent"`` (the sources are
            codec latents, optimised on ``L_rec + gamma SDS`` as the module docstring describes).
        steps: Adam updates per window (0: none; each window's sources are its start as is, e.g. the
            prior-mask split without a trip through the codec). 40 suits the mask method; the latent
            method was tuned with 200.
        mask_lr: ``method="mask"``: Adam step size on the mask logits (nats per step), falling to 0
            along a half cosine over each window's steps.
        mask_trust: ``method="mask"``: weight of the mean KL divergence of the masks from the start's.
        mask_n_fft: ``method="mask"``: STFT size of the masks, in samples at the prior's rate (hop a quarter).
        mask_target: ``method="mask"``: ``"vote"`` (each step, the masks move toward the Wiener masks of
            the sources' renditions, weighted by the mixture's power) or ``"rendition"`` (each source's
            decoder-SDS gradient toward its own rendition, through the iSTFT).
        mask_t: ``method="mask"``: the range ``(t_min, t_max)`` the renditions' noise levels are drawn
            from (replaces ``sds.t_min`` / ``sds.t_max``, which the latent method uses).
        lr: ``method="latent"``: Adam step size as a fraction of the RMS of the window's starting latents (converted to
            the learning rate on the unconstrained latents, so it means the same for every prior).
        lr_schedule: ``"constant"`` or ``"cosine"`` (falls from ``lr`` to 0 over each window's steps).
        gamma: weight of the SDS terms (0 = reconstruction only).
        sds_target: what each SDS term pulls source ``k`` toward: ``"source"`` (the prior's rendition
            of source ``k``, the issue's formulation) or ``"mixture_split"`` (the mixture split by
            Wiener masks of all the sources' renditions of that step: part ``k``).
        init: ``"prior_mask"`` (default: ``encode`` of the mixture split by the prior's masks,
            :func:`prior_mask_split`), ``"mixture"`` (every source starts as ``encode(m)``) or ``"split"``
            (``encode(m / K)``).
        mask_noise_levels: noise levels ``t`` of the prior's renditions for ``init="prior_mask"``.
        mask_draws: noise draws per level for ``init="prior_mask"`` (their masked parts are averaged).
        mask_refinements: passes of the prior-mask split that re-render each source from the previous
            pass's part rather than from the mixture (:func:`prior_mask_split`).
        residual_decoding: each source is its start plus the decoded change of its latents,
            ``start + D(z) - D(z_0)``, rather than ``D(z)``: the start is kept whole rather than through
            the codec's reconstruction error, and the steps add only what they change.
        rec_n_ffts: STFT sizes of the reconstruction loss, in samples at the prior's rate.
        rec_log_weight, rec_linear_weight: weights of the log- and linear-magnitude distances in
            ``L_rec`` (:class:`~sds_audio.spectral.MultiResolutionSTFTDistance`).
        rec_waveform_weight: weight of the mean absolute waveform error in ``L_rec``.
        latent_range: latents live in ``[-latent_range, latent_range]``; None: three times the
            largest ``|latent|`` of the window's start (at least 1e-3).
        window_s: longest stretch separated at once (None: the prior's ``max_duration_s``).
        overlap_s: least overlap of consecutive windows (None: a third of the window);
            at most half the window.
        crossfade_edge: fraction of each overlap, at either end, given wholly to the window that does
            not end there (:func:`crossfade_weights`); 0: a linear crossfade across the whole overlap.
        continue_masks: ``method="mask"``: each window's start, across its overlap with the previous
            window, fades from that window's sources to its own split
            (:class:`~sds_audio.tasks.mask_separation.MaskWindow`).
        output: ``"wiener"`` (ratio masks on the input mixture; sources sum to it) or ``"direct"``.
        checkpoint_every: write a checkpoint every this many steps (0 = only at window ends and on Ctrl-C).
        seed: seeds the SDS draws (window ``w``, source ``k`` use ``seed + 1000 w + k``).
        sds: the SDS objectives' options (their ``seed`` is replaced as above).
    """

    method: str = "mask"
    steps: int = 40
    mask_lr: float = 0.1
    mask_trust: float = 0.0
    mask_n_fft: int = 2048
    mask_target: str = "vote_power"
    mask_t: tuple[float, float] = (0.1, 0.4)
    lr: float = 0.25
    lr_schedule: str = "constant"
    gamma: float = 0.3
    sds_target: str = "source"
    init: str = "prior_mask"
    mask_noise_levels: tuple[float, ...] = (0.3, 0.5, 0.7)
    mask_draws: int = 4
    mask_refinements: int = 0
    residual_decoding: bool = True
    rec_n_ffts: tuple[int, ...] = (256, 512, 1024, 2048)
    rec_log_weight: float = 0.0
    rec_linear_weight: float = 1.0
    rec_waveform_weight: float = 0.3
    latent_range: float | None = None
    window_s: float | None = None
    overlap_s: float | None = None
    crossfade_edge: float = 0.0
    continue_masks: bool = False
    output: str = "wiener"
    checkpoint_every: int = 50
    seed: int = 0
    sds: SDSConfig = field(default_factory=lambda: SDSConfig(denoise_steps=4, guidance_scale=5.0))

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> SDSAudioError:
            return SDSAudioError(f"{why} (got {getattr(self, name)!r})", field=name)

        if int(self.steps) != self.steps or self.steps < 0:
            raise bad("steps", "steps must be an integer >= 0")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr", "lr must be a positive number")
        if self.sds_target not in SDS_TARGETS:
            raise bad("sds_target", f"sds_target must be one of {', '.join(SDS_TARGETS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise bad("lr_schedule", f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}")
        if not (math.isfinite(self.gamma) and self.gamma >= 0):
            raise bad("gamma", "gamma must be a finite number >= 0")
        if self.init not in INITS:
            raise bad("init", f"init must be one of {', '.join(INITS)}")
        if not self.mask_noise_levels or not all(0 < float(t) <= 1 for t in self.mask_noise_levels):
            raise bad("mask_noise_levels", "mask_noise_levels must list noise levels in (0, 1]")
        if not isinstance(self.residual_decoding, bool):
            raise bad("residual_decoding", "residual_decoding must be True or False")
        if int(self.mask_draws) != self.mask_draws or self.mask_draws < 1:
            raise bad("mask_draws", "mask_draws must be an integer >= 1")
        if isinstance(self.mask_refinements, bool) or int(self.mask_refinements) != self.mask_refinements \
                or self.mask_refinements < 0:
            raise bad("mask_refinements", "mask_refinements must be an integer >= 0")
        if not self.rec_n_ffts or any(int(n) != n or n < 16 for n in self.rec_n_ffts):
            raise bad("rec_n_ffts", "rec_n_ffts must list integer window sizes of at least 16 samples")
        for name in ("rec_log_weight", "rec_linear_weight", "rec_waveform_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise bad(name, f"{name} must be a finite number >= 0")
        if self.rec_log_weight + self.rec_linear_weight + self.rec_waveform_weight == 0:
            raise bad("rec_linear_weight", "the reconstruction weights must not all be 0")
        if self.latent_range is not None and not (math.isfinite(self.latent_range) and self.latent_range > 0):
            raise bad("latent_range", "latent_range must be a positive number or None")
        if self.window_s is not None and not (math.isfinite(self.window_s) and self.window_s >= MIN_DURATION_S):
            raise bad("window_s", f"window_s must be at least {MIN_DURATION_S} s, or None")
        if self.overlap_s is not None:
            if not (math.isfinite(self.overlap_s) and self.overlap_s >= 0):
                raise bad("overlap_s", "overlap_s must be a number of seconds >= 0, or None")
            if self.window_s is not None and self.overlap_s > self.window_s / 2:
                raise bad("overlap_s", "overlap_s must be at most half of window_s")
        if not (isinstance(self.crossfade_edge, (int, float)) and 0 <= self.crossfade_edge < 0.5):
            raise bad("crossfade_edge", "crossfade_edge must be a fraction in [0, 0.5)")
        if not isinstance(self.continue_masks, bool):
            raise bad("continue_masks", "continue_masks must be True or False")
        if self.output not in OUTPUTS:
            raise bad("output", f"output must be one of {', '.join(OUTPUTS)}")
        if int(self.checkpoint_every) != self.checkpoint_every or self.checkpoint_every < 0:
            raise bad("checkpoint_every", "checkpoint_every must be an integer >= 0")
        if not isinstance(self.sds, SDSConfig):
            raise bad("sds", "sds must be an SDSConfig")
        problem = check_mask_options(self)
        if problem is not None:
            name, why = problem.split(": ", 1)
            raise bad(name, why)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SeparationResult:
    """What :func:`separate` returns.

    Attributes:
        sources: ``(K, C, T)`` one source per prompt, at ``sample_rate`` with the input's channels and length.
        mixture: ``(C, T)`` the input mixture.
        prompts: the ``K`` prompts, in order.
        sample_rate: rate of ``sources`` and ``mixture`` (the input's).
        history: per step: ``window``, ``step``, ``loss_rec`` (float), ``loss_sds`` (list of ``K``;
            None entries when ``gamma == 0``), ``t`` (list of ``K`` noise levels; None when ``gamma == 0``).
        windows: ``(start, n_samples)`` of every window, at the prior's rate.
        seconds: wall time of the optimisation.
        judge_scores: judge score per source with its prompt (empty without a judge).
        judge_mixture: judge score of the unseparated mixture with each prompt (empty without a judge).
    """

    sources: torch.Tensor
    mixture: torch.Tensor
    prompts: list[str]
    sample_rate: int
    history: list[dict[str, Any]]
    windows: list[tuple[int, int]]
    seconds: float
    judge_scores: list[float] = field(default_factory=list)
    judge_mixture: list[float] = field(default_factory=list)

    def save(self, out_dir: str | Path, subtype: str = "PCM_24") -> list[Path]:
        """Write one WAV per source, ``{k:02d}_{prompt slug}.wav``, atomically into ``out_dir`` (created)."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SDSAudioError(f"cannot create output directory {out}: {exc}") from exc
        paths = []
        for k, prompt in enumerate(self.prompts):
            slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40] or "source"
            paths.append(save_audio(out / f"{k:02d}_{slug}.wav", self.sources[k], self.sample_rate, subtype))
        return paths


# --------------------------------------------------------------------------- output masks
def wiener_remix(estimates: torch.Tensor, mixture: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Sources from ``mixture`` by soft ratio masks of the ``estimates``' power spectra.

    Args:
        estimates: ``(K, Ce, T)`` separated sources (any channel count; averaged to mono when it
            differs from the mixture's).
        mixture: ``(C, T)``.
        sample_rate: sets the STFT size (about 40 ms, a power of two; hop a quarter of it).

    Returns:
        ``(K, C, T)``; ``sum_k`` of it equals ``mixture`` (the masks sum to one; Hann STFT/iSTFT
        at hop n_fft/4 reconstructs exactly). Bins where no estimate has energy are split equally.
    """
    k, _, n = estimates.shape
    channels = mixture.shape[0]
    est = estimates if estimates.shape[1] == channels else estimates.mean(dim=1, keepdim=True)
    n_fft = 2 ** math.ceil(math.log2(max(16.0, 0.04 * sample_rate)))
    n_fft = min(n_fft, 2 ** max(4, math.floor(math.log2(max(n, 16)))))
    hop = n_fft // 4
    window = torch.hann_window(n_fft, dtype=mixture.dtype, device=mixture.device)

    def stft(x: torch.Tensor) -> torch.Tensor:
        return torch.stft(x.reshape(-1, n), n_fft, hop, window=window, center=True, pad_mode="constant",
                          return_complex=True)

    power = stft(est.to(mixture.dtype)).abs().square().reshape(k, est.shape[1], n_fft // 2 + 1, -1)
    total = power.sum(dim=0, keepdim=True)
    eps = 1e-10 * float(total.max()) + 1e-30
    masks = (power + eps / k) / (total + eps)                       # (K, Ce, F, N), sums to one over K
    spec = stft(mixture).reshape(1, channels, n_fft // 2 + 1, -1)
    out = torch.istft((masks * spec).reshape(k * channels, n_fft // 2 + 1, -1), n_fft, hop, window=window,
                      center=True, length=n)
    return out.reshape(k, channels, n)


def prior_mask_split(chunk: torch.Tensor, prompts: Sequence[str], prior: Prior, noise_levels: Sequence[float],
                     draws: int, sds: SDSConfig, generator: torch.Generator, refinements: int = 0) -> torch.Tensor:
    """The mixture split by masks of the prior's renditions of it, one per prompt (no optimisation).

    For each noise level ``t`` and draw: noise ``encode(chunk)`` to ``t`` (one noise draw shared by
    the prompts), denoise it under each prompt (``sds.denoise_steps`` steps, ``sds.guidance_scale``),
    decode, and split ``chunk`` by the Wiener masks of those renditions (:func:`wiener_remix`); the
    parts are averaged over levels and draws, so they still sum to ``chunk``. Each of the
    ``refinements`` passes then does the same from the parts: prompt ``k``'s rendition starts from
    ``encode(part_k)`` instead of the whole mixture, so less of the other sources survives the noise,
    and the new masks split ``chunk`` again.

    Args:
        chunk: ``(C', n)`` mixture at the prior's rate and channel count.
        generator: CPU generator of the noise draws.
        refinements: passes that re-render from the previous pass's parts.

    Returns:
        ``(K, C', n)``.
    """
    n = chunk.shape[-1]
    seconds = n / float(prior.sample_rate)
    conds = [prior.condition(p, sds.negative_prompt, seconds) for p in prompts]

    def split(latents: list[torch.Tensor]) -> torch.Tensor:
        """``chunk`` split by the masks of each prompt's renditions of its latent, averaged."""
        parts = torch.zeros(len(prompts), *chunk.shape, dtype=chunk.dtype, device=chunk.device)
        for level in noise_levels:
            t = torch.full((1,), float(level))
            for _ in range(int(draws)):
                noise = torch.randn(latents[0].shape, generator=generator).to(latents[0].device)
                renditions = torch.cat([
                    fit_length(prior.decode(prior.denoise(prior.add_noise(z, noise, t), t, cond, sds.guidance_scale,
                                                          steps=sds.denoise_steps)).float(), n)
                    for z, cond in zip(latents, conds)])
                parts += wiener_remix(renditions.to(chunk.dtype), chunk, int(prior.sample_rate))
        return parts / (len(noise_levels) * int(draws))

    with torch.no_grad():
        parts = split([prior.encode(chunk.unsqueeze(0))] * len(prompts))
        for _ in range(int(refinements)):
            parts = split([prior.encode(part.unsqueeze(0)) for part in parts])
    return parts


# --------------------------------------------------------------------------- input checks
def check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        raise SDSAudioError("prompts must be a list with one prompt per source, e.g. [\"dog bark\", \"rain\"]")
    try:
        prompts = list(prompts)
    except TypeError:
        raise SDSAudioError("prompts must be a list of strings, one per source") from None
    if not prompts:
        raise SDSAudioError("no prompts given: pass one prompt per source to separate, e.g. -p \"dog bark\" -p rain")
    for i, p in enumerate(prompts):
        if not isinstance(p, str) or not p.strip():
            raise SDSAudioError(f"prompt {i + 1} is empty: describe the source, e.g. \"dog bark\"")
    return prompts


def check_mixture(mixture: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``(C, T)`` or ``(1, C, T)`` -> ``(C, T)`` float32, after the checks of the module docstring."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or int(sample_rate) != sample_rate \
            or sample_rate <= 0:
        raise SDSAudioError(f"sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    if not isinstance(mixture, torch.Tensor):
        raise SDSAudioError(f"the mixture must be a torch tensor (channels, samples), got {type(mixture).__name__}")
    if mixture.dim() == 3 and mixture.shape[0] == 1:
        mixture = mixture[0]
    if mixture.dim() != 2 or mixture.shape[0] < 1:
        raise SDSAudioError(f"the mixture must have shape (channels, samples) or (1, channels, samples), "
                            f"got {tuple(mixture.shape)}")
    if not mixture.is_floating_point():
        raise SDSAudioError(f"the mixture must hold float samples in [-1, 1], got dtype {mixture.dtype}")
    if mixture.shape[1] < MIN_DURATION_S * sample_rate:
        raise SDSAudioError(f"the mixture is {mixture.shape[1]} samples long; give at least {MIN_DURATION_S} s "
                            f"({math.ceil(MIN_DURATION_S * sample_rate)} samples at {int(sample_rate)} Hz)")
    if not bool(torch.isfinite(mixture).all()):
        raise SDSAudioError("the mixture holds NaN or infinite samples")
    peak = float(mixture.abs().max())
    if peak < SILENCE_PEAK:
        raise SDSAudioError("the mixture is silent (peak below -120 dBFS): there is nothing to separate")
    clipped = clipped_fraction(mixture)          # the share load_audio's warning reports
    if clipped > CLIP_FRACTION:
        raise SDSAudioError(f"the mixture is clipped: {clipped:.1%} of its samples are at full scale; "
                            "use an unclipped recording, or lower its gain before clipping")
    return mixture.float()


# --------------------------------------------------------------------------- checkpoints
# options newer than the checkpoint format, with the value runs made before them had
OPTIONS_ADDED_LATER = {"mask_refinements": 0, "lr_schedule": "constant", "sds_target": "source", "method": "latent",
                       "crossfade_edge": 0.0, "continue_masks": False}
#: options of the mask method, left out of a latent run's signature (they do not act on it)
MASK_OPTIONS = ("mask_lr", "mask_trust", "mask_n_fft", "mask_target", "mask_t")


def _signature(prompts: list[str], config: SeparationConfig, mixture: torch.Tensor, sample_rate: int) -> str:
    options = config.to_dict()
    options.pop("checkpoint_every")
    for name, value in OPTIONS_ADDED_LATER.items():   # so checkpoints written before they existed resume
        if options[name] == value:
            options.pop(name)
    if config.method == "latent":
        for name in MASK_OPTIONS:
            options.pop(name)
    if options["overlap_s"] is None:      # the default overlap was an eighth of the window before 2026-12-07
        options["overlap_s"] = f"window*{DEFAULT_OVERLAP:.6g}"
    digest = hashlib.sha256(mixture.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
    return json.dumps({"prompts": prompts, "config": options, "shape": list(mixture.shape),
                       "sample_rate": int(sample_rate), "mixture_sha256": digest}, sort_keys=True)


# --------------------------------------------------------------------------- the run
def _score(judge: Judge | None, audio: torch.Tensor, sample_rate: int, prompts: list[str]) -> list[float]:
    """Judge score of ``audio[k]`` with ``prompts[k]`` (``audio`` ``(K, C, T)``, or ``(1, C, T)`` shared)."""
    if judge is None:
        return []
    scores = []
    with torch.no_grad():
        for k, prompt in enumerate(prompts):
            item = audio[k:k + 1] if audio.shape[0] > 1 else audio
            scores.append(float(torch.as_tensor(judge(item.detach(), int(sample_rate), prompt)).reshape(-1)[0]))
    return scores


def _reconstruction_loss(rec: MultiResolutionSTFTDistance, waveform_weight: float, estimate: torch.Tensor,
                         target: torch.Tensor) -> torch.Tensor:
    """Spectral distance plus ``waveform_weight`` times the mean absolute error; ``(1, C, n)`` each -> scalar."""
    loss = rec(estimate, target).sum()
    if waveform_weight:
        loss = loss + waveform_weight * (estimate - target).abs().mean()
    return loss


class _Window(SeededObjectives):
    """The optimisation state of one window: the latent sources, Adam, one SDS objective per prompt."""

    def __init__(self, chunk: torch.Tensor, index: int, prompts: list[str], prior: Prior,
                 config: SeparationConfig, rec: MultiResolutionSTFTDistance, level: float):
        k = len(prompts)
        self.chunk = chunk                                               # (C', n) at the prior's rate
        self.n_samples = chunk.shape[-1]
        if config.init == "prior_mask":
            generator = torch.Generator().manual_seed(config.seed + 1000 * index + 999)
            start = prior_mask_split(chunk, prompts, prior, config.mask_noise_levels, config.mask_draws,
                                     config.sds, generator, config.mask_refinements)   # (K, C', n)
        else:
            start = (chunk / k if config.init == "split" else chunk).unsqueeze(0)
        self.start = start.expand(k, *chunk.shape)                       # (K, C', n)
        with torch.no_grad():
            z = prior.encode(start).float()                               # (1 or K, D, L)
        latent_range = config.latent_range or max(3.0 * float(z.abs().max()), 1e-3)
        self.synth = LatentSynth(prior.decode, z.shape[1:], n_sources=k, latent_range=latent_range,
                                 sample_rate=int(prior.sample_rate), channels=int(prior.channels)).to(prior.device)
        self.synth.init_latents(z)                                       # (1, D, L) is copied to every source
        self.offset = None                                               # start - D(z_0) with residual decoding
        if config.residual_decoding:
            with torch.no_grad():
                self.offset = self.start.float() - self.synth(self.n_samples).float()
        # Adam moves each raw value by about lr_raw per step, i.e. a latent by lr_raw * latent_range / 2
        # near the middle of its range: scale so that config.lr is a fraction of the start's RMS.
        rms = max(float(z.square().mean().sqrt()), 1e-8)
        self.lr = config.lr * 2.0 * rms / latent_range
        self.optimizer = torch.optim.Adam(self.synth.unconstrained_parameters(), lr=self.lr)
        self.objectives = []
        if config.gamma > 0:
            self.objectives = [
                SDSObjective(prior, p, dataclasses.replace(config.sds, seed=config.seed + 1000 * index + i))
                for i, p in enumerate(prompts)]
        self.config, self.rec, self.prior, self.level = config, rec, prior, level

    def render(self) -> torch.Tensor:
        """The current sources, ``(K, C', n)``, with the gradient to the latents."""
        x = self.synth(self.n_samples).float()
        return x if self.offset is None else x + self.offset

    def step(self, step: int) -> dict[str, Any]:
        progress = step / max(1, self.config.steps - 1)
        x = self.render()                                                # (K, C', n)
        loss_rec = _reconstruction_loss(self.rec, self.config.rec_waveform_weight, x.sum(dim=0, keepdim=True),
                                        self.chunk.unsqueeze(0)) / self.level
        loss = loss_rec
        loss_sds: list[float | None] = [None] * x.shape[0]
        ts: list[float | None] = [None] * x.shape[0]
        rate = int(self.prior.sample_rate)
        results = [objective(x[i:i + 1], rate, progress=progress) for i, objective in enumerate(self.objectives)]
        if results and self.config.sds_target == "mixture_split":
            # every source's rendition (first draw) votes in one Wiener split of the mixture; the
            # objectives' own surrogates go unused (their extra cost is a few STFTs)
            parts = wiener_remix(torch.cat([r.x_hat for r in results]).to(self.chunk.dtype), self.chunk, rate)
        for i, (objective, result) in enumerate(zip(self.objectives, results)):
            if self.config.sds_target == "mixture_split":
                target = [s.detach() for s in objective.emphasis(parts[i:i + 1].float())]
                item_loss = spectral_emphasis_loss(objective.emphasis(x[i:i + 1]), target,
                                                   objective.config.spectral_weight)
                loss = loss + self.config.gamma * item_loss.sum()
                loss_sds[i] = float(item_loss.detach().sum())
            else:
                loss = loss + self.config.gamma * result.loss
                loss_sds[i] = float(result.item_loss.sum())
            ts[i] = float(result.t.mean())
        if self.config.lr_schedule == "cosine":                         # step i of N: lr (1 + cos(pi i / N)) / 2
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr * 0.5 * (1.0 + math.cos(math.pi * step / self.config.steps))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss_rec": float(loss_rec.detach()), "loss_sds": loss_sds, "t": ts}

    @torch.no_grad()
    def sources(self, steps_done: int) -> torch.Tensor:
        """The decoded sources; with no step done, the start itself (no trip through the codec)."""
        if steps_done == 0:
            return self.start.detach().float().clone()
        return self.render().detach()

    def state(self) -> dict[str, Any]:
        return {"raw": self.synth.raw["latents"].detach().cpu().clone(), "optimizer": self.optimizer.state_dict(),
                "generators": self.generator_states()}

    def load_state(self, state: dict[str, Any], path: Path) -> None:
        raw = self.synth.raw["latents"]
        if tuple(state["raw"].shape) != tuple(raw.shape) or len(state["generators"]) != len(self.objectives):
            raise SDSAudioError(f"cannot resume from {path}: it was made with another prior or settings")
        with torch.no_grad():
            raw.copy_(state["raw"].to(raw.device))
        self.optimizer.load_state_dict(state["optimizer"])
        for objective, g in zip(self.objectives, state["generators"]):
            objective.generator.set_state(g)


@torch.no_grad()
def combine_windows(done: Sequence[torch.Tensor], windows: Sequence[tuple[int, int]], mix: torch.Tensor,
                    prior_rate: int, sample_rate: int, config: SeparationConfig) -> torch.Tensor:
    """The windows' sources crossfaded into whole sources at the input's rate, channels and length.

    Args:
        done: per window, ``(K, C', length)`` sources at ``prior_rate``.
        windows: ``(start, length)`` of each window at ``prior_rate``.
        mix: ``(C, T)`` the input mixture at ``sample_rate``.
        config: its ``crossfade_edge``, ``output``, ``steps`` and ``method`` say how the windows are
            joined and the output made (module docstring).

    Returns:
        ``(K, C, T)``, on ``mix``'s device.
    """
    k = done[0].shape[0]
    n_prior = windows[-1][0] + windows[-1][1]
    weights = crossfade_weights(windows, n_prior, config.crossfade_edge)
    sources_p = overlap_add(done, windows, weights, n_prior)            # (K, C', T')
    back = fit_length(resample(sources_p.float(), prior_rate, sample_rate), mix.shape[-1]).to(mix.device)
    if config.output == "wiener" and config.steps > 0 and config.method == "latent":
        return wiener_remix(back, mix, sample_rate)
    if config.output == "wiener":  # the sources split the mixture already (mask method, or no step)
        back = match_channels(back, mix.shape[0])
        return (back + (mix - back.sum(dim=0)) / k).contiguous()
    return match_channels(back, mix.shape[0]).contiguous()


def separate(mixture: torch.Tensor, prompts: Sequence[str], prior: Prior, config: SeparationConfig | None = None, *,
             sample_rate: int, judge: Judge | None = None, checkpoint_dir: str | Path | None = None,
             resume: bool = False, progress: bool = True,
             on_step: Callable[[int, dict[str, Any]], None] | None = None) -> SeparationResult:
    """Separate ``mixture`` into one source per prompt.

    Args:
        mixture: ``(C, T)`` or ``(1, C, T)`` float samples at ``sample_rate`` (any length from
            ``MIN_DURATION_S``; longer than the window it is processed in crossfaded windows).
        prompts: ``K >= 1`` non-empty strings, one per source.
        prior: the frozen text-to-audio prior (its autoencoder holds the sources).
        config: run options (default :class:`SeparationConfig`).
        sample_rate: rate of ``mixture`` in Hz.
        judge: ``judge(audio (B, C, T), sample_rate, prompt) -> (B,)``, higher is better
            (e.g. :func:`sds_audio.judge.judge_score`); scores the sources and the mixture.
        checkpoint_dir: where ``separation_checkpoint.pt`` goes.
        resume: continue from ``checkpoint_dir/separation_checkpoint.pt`` (same mixture, prompts and
            options, else SDSAudioError).
        progress: show a progress bar (windows x steps).
        on_step: called after every step with ``(global step, history entry)``.

    Returns:
        :class:`SeparationResult`; ``sources`` is ``(K, C, T)`` at ``sample_rate``, on the mixture's device.

    Raises:
        SDSAudioError: bad prompts, mixture, sample rate or options (see the module docstring),
            a window longer than the prior allows, nothing to resume.
    """
    config = config or SeparationConfig()
    prompts = check_prompts(prompts)
    mix = check_mixture(mixture, sample_rate)
    sample_rate = int(sample_rate)

    window_s = config.window_s if config.window_s is not None else float(prior.max_duration_s)
    if window_s > prior.max_duration_s * (1 + 1e-6):
        raise SDSAudioError(f"window_s {window_s:g} s is longer than the prior's maximum {prior.max_duration_s:g} s; "
                            "pass a shorter window (longer mixtures are processed in windows anyway)")
    overlap_s = config.overlap_s if config.overlap_s is not None else window_s * DEFAULT_OVERLAP
    if overlap_s > window_s / 2:
        raise SDSAudioError(f"overlap_s {overlap_s:g} s must be at most half the window ({window_s:g} s)")
    prior_rate = int(prior.sample_rate)
    mix_p = match_channels(resample(mix.unsqueeze(0), sample_rate, prior_rate), int(prior.channels))[0]
    mix_p = mix_p.to(prior.device).contiguous()                          # (C', T')
    n_prior = mix_p.shape[-1]
    window = max(1, round(window_s * prior_rate))
    windows = plan_windows(n_prior, window, min(round(overlap_s * prior_rate), window - 1))
    rec = MultiResolutionSTFTDistance(config.rec_n_ffts, log_weight=config.rec_log_weight,
                                      linear_weight=config.rec_linear_weight).to(prior.device)
    with torch.no_grad():  # L_rec of silent sources, averaged over the windows: L_rec is divided by it
        level = sum(float(_reconstruction_loss(rec, config.rec_waveform_weight, torch.zeros_like(c), c))
                    for c in (mix_p[None, :, s:s + n] for s, n in windows)) / len(windows)
        level = max(level, 1e-12)

    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if ckpt_path is not None and not resume:
        try:
            ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SDSAudioError(f"cannot create checkpoint directory {ckpt_path.parent}: {exc}") from exc
    signature = _signature(prompts, config, mix, sample_rate)
    first_window, first_step, done, history, pending = 0, 0, [], [], None
    if resume:
        if ckpt_path is None or not ckpt_path.is_file():
            raise SDSAudioError(f"nothing to resume: {ckpt_path or 'no checkpoint directory given'} does not exist")
        state = load_checkpoint(ckpt_path)
        if state.get("signature") != signature:
            raise SDSAudioError(f"cannot resume from {ckpt_path}: it was made for another mixture, prompts or "
                                "options; start afresh without --resume")
        first_window, first_step = int(state["window"]), int(state["step"])
        done = [c.to(prior.device) for c in state["done"]]
        history = json.loads(state["history_json"])
        pending = state.get("current")

    def checkpoint(w: int, s: int, current: _Window | None) -> None:
        if ckpt_path is None:
            return
        save_checkpoint(ckpt_path, {"signature": signature, "window": w, "step": s,
                                    "done": [c.detach().cpu() for c in done],
                                    "history_json": json.dumps(history),
                                    "current": current.state() if current is not None and s > 0 else None})

    total_steps = len(windows) * config.steps
    bar = tqdm(total=total_steps, initial=first_window * config.steps + first_step, disable=not progress,
               desc="separate", unit="step", dynamic_ncols=True)
    t0 = time.perf_counter()
    w, current, completed, in_step = first_window, None, 0, False
    stop = StepInterrupts()      # a signal takes effect after a whole step
    try:
        stop.install()
        for w in range(first_window, len(windows)):
            start, length = windows[w]
            chunk = mix_p[:, start:start + length]
            if config.method == "mask":
                previous = None
                if config.continue_masks and w > 0:   # the previous window's sources across the overlap
                    prev_start, prev_len = windows[w - 1]
                    previous = done[w - 1][..., start - prev_start:] if prev_start + prev_len > start else None
                current = MaskWindow(chunk, w, prompts, prior, config, rec, level, previous=previous)
            else:
                current = _Window(chunk, w, prompts, prior, config, rec, level)
            completed = first_step if w == first_window else 0
            if completed > 0:
                if pending is None:
                    raise SDSAudioError(f"cannot resume from {ckpt_path}: the checkpoint lacks the window's state")
                current.load_state(pending, ckpt_path)
            while completed < config.steps:
                generators_at_step, in_step = current.generator_states(), True
                entry = {"window": w, "step": completed, **current.step(completed)}
                in_step = False
                history.append(entry)
                completed += 1
                bar.update(1)
                bar.set_postfix(window=f"{w + 1}/{len(windows)}", rec=f"{entry['loss_rec']:.4f}")
                if on_step is not None:
                    on_step(w * config.steps + completed - 1, entry)
                if config.checkpoint_every and completed % config.checkpoint_every == 0 and completed < config.steps:
                    checkpoint(w, completed, current)
                stop.check()
            done.append(current.sources(completed))
            current = None
            checkpoint(w + 1, 0, None)
    except KeyboardInterrupt as exc:
        if current is not None:  # otherwise the last window-end checkpoint stands
            if in_step and not at_step_boundary(exc):   # stopped inside a step: undo its random draws
                current.set_generator_states(generators_at_step)
            checkpoint(w, completed, current)
        raise
    finally:
        stop.restore()
        bar.close()
    seconds = time.perf_counter() - t0

    with torch.no_grad():
        sources = combine_windows(done, windows, mix, prior_rate, sample_rate, config)
        judge_scores = _score(judge, sources, sample_rate, prompts)
        judge_mixture = _score(judge, mix.unsqueeze(0), sample_rate, prompts)
    return SeparationResult(sources=sources, mixture=mix, prompts=prompts, sample_rate=sample_rate,
                            history=history, windows=windows, seconds=seconds, judge_scores=judge_scores,
                            judge_mixture=judge_mixture)
