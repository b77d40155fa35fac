"""Evaluation metrics: SI-SDR / SDR, KAD, FAD, the judge score and (optional) CLAP score.

Signal metrics take audio ``(batch, channels, samples)`` and return one value
per batch item ``(B,)`` in dB. Distribution metrics take two sets of
embeddings ``(n, d)`` and ``(m, d)`` (for example :func:`sds_audio.judge.embed_audio`
outputs of a reference and a generated set) and return a Python float.

- :func:`si_sdr` is the scale-invariant SDR of Le Roux, Wisdom, Erdogan and
  Hershey, "SDR - half-baked or well done?" (ICASSP 2019): the reference is
  scaled by the least-squares gain ``alpha = <est, ref> / ||ref||^2`` and
  ``SI-SDR = 10 log10(||alpha ref||^2 / ||alpha ref - est||^2)``. Both signals
  are made zero-mean first (as that paper recommends); the value is computed
  per channel and averaged over channels.
- :func:`sdr` is the plain (not scale-invariant) signal-to-distortion ratio
  ``10 log10(sum ref^2 / sum (ref - est)^2)`` summed over channels and time,
  the "SDR" used by the music demixing challenges (no BSS-Eval distortion
  filter).
- :func:`kad` is the Kernel Audio Distance (Chung et al., "KAD: No More FAD!",
  2025): the unbiased estimator of the squared maximum mean discrepancy with a
  Gaussian RBF kernel ``k(a, b) = exp(-||a - b||^2 / (2 sigma^2))``, times a
  scale factor.
- :func:`fad` is the Frechet distance between Gaussians fit to the two sets
  (Kilgour et al., "Frechet Audio Distance", 2019).
- :func:`judge_score` is the cosine similarity of the project's own audio-text
  judge (:mod:`sds_audio.judge`); :func:`clap_score` the same with LAION CLAP
  through ``transformers`` when the user has its files locally.

The signal metrics are silence-safe (``eps`` in the denominators and inside
the logarithm: finite values and gradients, -80 dB floor); the distribution
metrics compute in float64.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .audio_io import match_channels, resample
from .errors import SDSAudioError
from .judge import judge_score

__all__ = ["si_sdr", "sdr", "si_sdr_improvement", "kad", "fad", "median_pairwise_distance",
           "judge_score", "ClapScorer", "clap_score"]


# --------------------------------------------------------------------------- signal metrics
def _check_pair(estimate: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if estimate.dim() != 3 or reference.dim() != 3:
        raise SDSAudioError(f"audio must be (batch, channels, samples); got estimate {tuple(estimate.shape)} "
                            f"and reference {tuple(reference.shape)}")
    if estimate.shape[1:] != reference.shape[1:]:
        raise SDSAudioError(f"estimate {tuple(estimate.shape)} and reference {tuple(reference.shape)} "
                            "differ in channels or length: trim or resample them to match first")
    estimate, reference = torch.broadcast_tensors(estimate, reference)
    return estimate, reference


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor, *, zero_mean: bool = True,
           eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019).

    Args:
        estimate: ``(B, C, T)``.
        reference: ``(B, C, T)`` (a batch of 1 is broadcast).
        zero_mean: subtract each signal's mean first (recommended by the paper).
        eps: guards the divisions and the logarithm, so silent inputs give
            finite values and gradients: a silent estimate (or reference)
            scores about ``10 log10(eps)`` = -80 dB, the floor.

    Returns:
        ``(B,)``: per-channel SI-SDR averaged over channels. Differentiable.
    """
    estimate, reference = _check_pair(estimate, reference)
    if zero_mean:
        estimate = estimate - estimate.mean(dim=-1, keepdim=True)
        reference = reference - reference.mean(dim=-1, keepdim=True)
    ref_energy = (reference * reference).sum(dim=-1, keepdim=True)
    alpha = (estimate * reference).sum(dim=-1, keepdim=True) / (ref_energy + eps)
    target = alpha * reference
    noise = estimate - target
    ratio = (target * target).sum(dim=-1) / ((noise * noise).sum(dim=-1) + eps)
    ratio = ratio + eps
    return (10.0 * torch.log10(ratio)).mean(dim=1)


def sdr(estimate: torch.Tensor, reference: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """Plain signal-to-distortion ratio in dB: ``10 log10(sum ref^2 / sum (ref - est)^2)``.

    Sums run over channels and samples (the music-demixing "SDR"; not the
    BSS-Eval version with a distortion filter). Not scale-invariant: a gain
    error counts as distortion.

    Returns:
        ``(B,)``. Differentiable.
    """
    estimate, reference = _check_pair(estimate, reference)
    num = (reference * reference).flatten(1).sum(dim=1)
    den = ((reference - estimate) ** 2).flatten(1).sum(dim=1) + eps
    return 10.0 * torch.log10(num / den + eps)


def si_sdr_improvement(estimate: torch.Tensor, reference: torch.Tensor, mixture: torch.Tensor, *,
                       zero_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """SI-SDRi: ``si_sdr(estimate, reference) - si_sdr(mixture, reference)`` in dB, ``(B,)``.

    ``mixture`` is ``(B, C, T)`` or ``(1, C, T)`` (one mixture shared by all sources).
    """
    mixture = mixture.expand_as(estimate) if mixture.shape[0] == 1 else mixture
    return (si_sdr(estimate, reference, zero_mean=zero_mean, eps=eps)
            - si_sdr(mixture, reference, zero_mean=zero_mean, eps=eps))


# --------------------------------------------------------------------------- distribution metrics
def _as_embeddings(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().to(torch.float64).cpu()
    if t.dim() != 2:
        raise SDSAudioError(f"{name} must be a (n, dim) matrix of embeddings, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise SDSAudioError(f"{name} holds NaN or infinite values")
    return t


def median_pairwise_distance(x: torch.Tensor) -> float:
    """Median Euclidean distance over all distinct pairs of rows of ``x`` ``(n, d)``, n >= 2."""
    x = _as_embeddings(x, "x")
    if x.shape[0] < 2:
        raise SDSAudioError("the median heuristic needs at least 2 embeddings")
    return float(torch.pdist(x).median())


def kad(x_emb, y_emb, kernel: str = "rbf", bandwidth: float | str = "median", *, scale: float = 1000.0) -> float:
    """Kernel Audio Distance: unbiased MMD^2 between two embedding sets, times ``scale``.

    ``MMD^2_u = mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j)``
    with the Gaussian RBF kernel ``k(a, b) = exp(-||a - b||^2 / (2 sigma^2))``.
    The estimator is unbiased, so it can come out slightly negative when the
    two sets come from the same distribution (expected value 0).

    Args:
        x_emb: ``(n, d)`` reference embeddings (n >= 2).
        y_emb: ``(m, d)`` evaluated embeddings (m >= 2).
        kernel: ``"rbf"`` (Gaussian; the only one implemented).
        bandwidth: ``sigma``. ``"median"``: the median pairwise distance of the
            pooled set ``x ∪ y`` (the median heuristic of Gretton et al.);
            ``"median_reference"``: the median over ``x`` only (what the
            kadtk toolkit does); or a positive float.
        scale: multiplier of the MMD^2. 1000 by default, the factor the KAD
            paper reports its values in; note that the kadtk code release
            multiplies by 100, so divide our value by 10 to compare with it.

    Returns:
        KAD as a float (0 for identical distributions, up to estimator noise).
    """
    if kernel != "rbf":
        raise SDSAudioError(f"unknown KAD kernel {kernel!r}: use 'rbf'")
    x = _as_embeddings(x_emb, "x_emb")
    y = _as_embeddings(y_emb, "y_emb")
    if x.shape[1] != y.shape[1]:
        raise SDSAudioError(f"embedding sizes differ: {x.shape[1]} vs {y.shape[1]}")
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise SDSAudioError(f"KAD needs at least 2 embeddings per set, got {n} and {m}")
    if bandwidth == "median":
        sigma = median_pairwise_distance(torch.cat([x, y]))
    elif bandwidth == "median_reference":
        sigma = median_pairwise_distance(x)
    elif isinstance(bandwidth, (int, float)) and bandwidth > 0:
        sigma = float(bandwidth)
    else:
        raise SDSAudioError(f"bandwidth must be 'median', 'median_reference' or a positive number, got {bandwidth!r}")
    sigma = max(sigma, 1e-12)
    gamma = 1.0 / (2.0 * sigma * sigma)
    k_xx = torch.exp(-gamma * torch.cdist(x, x).pow(2))
    k_yy = torch.exp(-gamma * torch.cdist(y, y).pow(2))
    k_xy = torch.exp(-gamma * torch.cdist(x, y).pow(2))
    mean_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    mean_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    mmd2 = mean_xx + mean_yy - 2.0 * k_xy.mean()
    return float(mmd2) * float(scale)


def _psd_sqrt(mat: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    vals, vecs = np.linalg.eigh((mat + mat.T) / 2.0)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def fad(x_emb, y_emb) -> float:
    """Frechet distance between Gaussians fit to two embedding sets.

    ``FD = ||mu_x - mu_y||^2 + tr(S_x + S_y - 2 (S_x S_y)^(1/2))`` with sample
    means and unbiased covariances. The trace of the matrix square root is
    computed as ``tr((S_x^(1/2) S_y S_x^(1/2))^(1/2))`` (same eigenvalues as
    ``(S_x S_y)^(1/2)``, but symmetric, so ``numpy.linalg.eigh`` applies and
    no complex round-off appears), in float64.

    Args:
        x_emb: ``(n, d)``, n >= 2.
        y_emb: ``(m, d)``, m >= 2.

    Returns:
        FAD as a float (>= 0 up to round-off).
    """
    x = _as_embeddings(x_emb, "x_emb").numpy()
    y = _as_embeddings(y_emb, "y_emb").numpy()
    if x.shape[1] != y.shape[1]:
        raise SDSAudioError(f"embedding sizes differ: {x.shape[1]} vs {y.shape[1]}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise SDSAudioError(f"FAD needs at least 2 embeddings per set, got {x.shape[0]} and {y.shape[0]}")
    mu_x, mu_y = x.mean(axis=0), y.mean(axis=0)
    cov_x = np.atleast_2d(np.cov(x, rowvar=False))
    cov_y = np.atleast_2d(np.cov(y, rowvar=False))
    root_x = _psd_sqrt(cov_x)
    cross = root_x @ cov_y @ root_x
    vals = np.linalg.eigvalsh((cross + cross.T) / 2.0)
    tr_sqrt = float(np.sqrt(np.clip(vals, 0.0, None)).sum())
    diff = mu_x - mu_y
    return float(diff @ diff + np.trace(cov_x) + np.trace(cov_y) - 2.0 * tr_sqrt)


# --------------------------------------------------------------------------- LAION CLAP (optional)
class ClapScorer:
    """Cosine similarity between audio and prompts under a LAION CLAP model.

    Loads ``transformers.ClapModel`` and ``ClapProcessor`` from a local
    directory only (``local_files_only=True``: nothing is ever downloaded).
    Get the files once with, for example,
    ``huggingface-cli download laion/clap-htsat-unfused --local-dir DIR``.

    Args:
        model_dir: directory holding ``config.json``, the weights, the
            tokenizer and ``preprocessor_config.json``.
        device: torch device for the model.

    Raises:
        SDSAudioError: the directory is missing or does not hold a CLAP model.
    """

    def __init__(self, model_dir: str | os.PathLike, device: str | torch.device = "cpu"):
        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise SDSAudioError(f"no LAION CLAP model in {path} (config.json missing): download it once, e.g. "
                                f"`huggingface-cli download laion/clap-htsat-unfused --local-dir {path}`")
        from transformers import ClapModel, ClapProcessor
        try:
            self.model = ClapModel.from_pretrained(str(path), local_files_only=True)
            self.processor = ClapProcessor.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise SDSAudioError(f"cannot load a LAION CLAP model from {path}: {exc}") from exc
        self.model.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.sample_rate = int(self.processor.feature_extractor.sampling_rate)

    @staticmethod
    def _features(out) -> torch.Tensor:
        # transformers < 5 returns the projected tensor; >= 5 a model output
        # whose pooler_output holds the (normalised) projection.
        feats = out if isinstance(out, torch.Tensor) else out.pooler_output
        return torch.nn.functional.normalize(feats.float(), dim=-1)

    @torch.no_grad()
    def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """``len(prompts)`` strings -> ``(N, D)`` L2-normalised text embeddings."""
        inputs = self.processor.tokenizer(list(prompts), padding=True, return_tensors="pt").to(self.device)
        return self._features(self.model.get_text_features(**inputs))

    @torch.no_grad()
    def embed_audio(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """``(B, C, T)`` audio at ``sample_rate`` -> ``(B, D)`` L2-normalised audio embeddings."""
        if audio.dim() != 3:
            raise SDSAudioError(f"audio must be (batch, channels, samples), got shape {tuple(audio.shape)}")
        mono = resample(match_channels(audio.detach().float().cpu(), 1), sample_rate, self.sample_rate)[:, 0]
        # CLAP's feature extractor crops clips longer than its window at a random
        # offset (numpy's global RNG); fix the draw so a score is reproducible.
        saved = np.random.get_state()
        np.random.seed(0)
        try:
            inputs = self.processor.feature_extractor([a.numpy() for a in mono], sampling_rate=self.sample_rate,
                                                      return_tensors="pt")
        finally:
            np.random.set_state(saved)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        return self._features(self.model.get_audio_features(**inputs))

    def score(self, audio: torch.Tensor, prompts: str | Sequence[str], sample_rate: int) -> torch.Tensor:
        """Cosine similarity ``(B,)`` of each clip with its prompt (one prompt is shared)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        a = self.embed_audio(audio, sample_rate)
        if len(prompts) not in (1, a.shape[0]):
            raise SDSAudioError(f"got {len(prompts)} prompts for {a.shape[0]} clips: give one, or one per clip")
        t = self.embed_text(prompts)
        return (a * t).sum(dim=-1)


@functools.lru_cache(maxsize=2)
def _cached_clap(model_dir: str) -> ClapScorer:
    return ClapScorer(model_dir)


def clap_score(audio: torch.Tensor, prompt: str | Sequence[str], model_dir: str | os.PathLike,
               sample_rate: int = 44100) -> torch.Tensor:
    """LAION CLAP cosine similarity ``(B,)`` between ``(B, C, T)`` audio and a prompt.

    The model is loaded once per directory (cached) and only from
    ``model_dir`` (see :class:`ClapScorer`); audio of any rate and channel
    count is downmixed to mono and resampled to CLAP's 48 kHz.
    """
    return _cached_clap(str(Path(model_dir).resolve())).score(audio, prompt, sample_rate)
