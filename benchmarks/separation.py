"""Prompt-guided separation of two-source mixtures built from held-out corpus clips.

Protocol (all seeded by ``--seed``):

1. Mixtures: for mixture ``i``, pick two different concepts that have held-out
   clips (``split == "heldout"`` in ``CORPUS/manifest.jsonl``) and a length
   uniform in ``[--min-s, --max-s]`` (3 to 10 s). Each source is built by
   concatenating randomly drawn held-out clips of its concept (0.5-4 s each) with
   silent gaps uniform in 50-300 ms, cropped to the length with a 10 ms fade-out.
   Both sources are scaled to the same RMS (-20 dBFS; with ``--level-db D`` one is D dB
   louder than the other, which one alternating); the mixture is their sum
   (scaled down together if its peak would exceed 0.99). Each source's prompt is
   its concept's canonical prompt from ``concepts.json``.
2. Methods (``--methods``, default all): ``sds``: Audio-SDS
   (:func:`sds_audio.tasks.separate.separate` with ``gamma = --gamma``); ``rec``:
   reconstruction only (``gamma = 0``); ``mask``: reconstruction only from the
   prior-mask start (``init="prior_mask"``: the mixture split by masks of the prior's
   renditions of it under each prompt, :func:`sds_audio.tasks.separate.prior_mask_split`);
   ``mask+sds``: Audio-SDS from that start; ``mask-only``: the prior-mask split itself (no
   optimisation step); ``mask-res`` and ``mask-res+sds``: ``mask`` and ``mask+sds`` with
   ``residual_decoding=True`` (each source is the split plus the decoded change of its latents;
   ``mask-res+sds`` was :class:`~sds_audio.tasks.separate.SeparationConfig`'s default before the mask method);
   ``mask-sds``: the mask method (``method="mask"``, the library's default: soft masks on the
   mixture's STFT moved by the prior's renditions, :mod:`sds_audio.tasks.mask_separation`) with
   ``--steps`` steps and the ``--mask-*`` options. The latent-method rows run ``--latent-steps`` steps.
   Every prior-mask method makes its split with ``--mask-refinements`` refinement passes.
   ``sds`` and ``rec`` start from the encoded mixture, decoded directly, as the issue states the method.
   Same steps, seed and windows; the mixture itself is the reference estimate.
3. Metrics per source: SI-SDR improvement over the mixture-as-estimate
   (:func:`sds_audio.metrics.si_sdr_improvement`) and plain SDR
   (:func:`sds_audio.metrics.sdr`), over all ``2 * n`` sources; with ``--judge
   PATH`` also the judge score of each source with its prompt.

Mixture sets (``--set``, declared in ``MIXTURE_SETS``): ``validation`` (the prior's corpus's
held-out clips, mixture seed 0: the separation defaults were chosen on these) and ``test``
(frozen 2026-12-07, nothing chosen on it: mixture seed 1000 from a FluidR3 corpus drawn with seed 7
that neither the prior nor the judges trained on, built by ``build_corpus(DIR, seed=7,
n_per_concept=6, heldout_fraction=0)``; give its directory as ``--corpus``). Without ``--set`` the
``--split`` / ``--seed`` options say what to build.

Prior: ``--prior embedded`` (the shipped codec + flow weights, or ``--assets DIR``
holding ``codec.safetensors`` and ``flow.safetensors``), or any name / path
:func:`sds_audio.priors.registry.load_prior` accepts. Missing weights end the
script with a one-line message.

Two measures replace the table: ``--time-s 4`` times one two-source mixture of that length (the
set's first draw) with the mask method's options (the library's defaults unless ``--steps`` /
``--mask-*`` say otherwise); ``--long-s 60`` separates one mixture that long in windows and reports
its wall time, RSS (MiB, sampled every step, and the process's peak) and the spectral flux of the
separated sources in the frames centred inside window overlaps (the joins) against the other
frames, beside the same ratio for the true sources and the mixture (:func:`seam_flux`).
``--long-index I`` takes the set's draw ``I`` instead of the first; ``--overlap-s``,
``--crossfade-edge`` and ``--continue-masks`` set how the windows are joined; ``--recombine-edges
0,0.25`` joins the same windows again with each ``crossfade_edge`` (no separation repeated) and
scores each, and the run reports how each window's own sources behave by distance from its edges
(:func:`window_edge_profile`).

Usage::

    python benchmarks/separation.py [--corpus /work/data/corpus] [--prior embedded] [--assets DIR]
        [--n-mixtures 20] [--steps 200] [--lr 0.25] [--output wiener] [--seed 0] [--window-s S] [--gamma 0.3]
        [--sds-target source|mixture_split] [--lr-schedule constant|cosine] [--mask-refinements 0]
        [--level-db 0] [--judge JUDGE.safetensors]
        [--device cpu] [--threads 1] [--json RESULTS.json] [--split heldout|train] [--t-max T]
        [--methods sds,rec,mask,mask+sds,mask-only,mask-res,mask-res+sds,mask-sds] [--latent-steps 200]
        [--mask-lr LR] [--mask-trust W] [--mask-n-fft N] [--mask-target vote|rendition] [--mask-t LO HI]
        [--mask-draws N] [--denoise-steps K] [--time-s 4 | --long-s 60] [--long-index 0]
        [--overlap-s S] [--crossfade-edge F] [--continue-masks] [--recombine-edges 0,0.25]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from sds_audio.atomic import write_json_atomic
from sds_audio.audio_io import load_audio
from sds_audio.corpus.dataset import read_concepts, read_manifest
from sds_audio.errors import SDSAudioError
from sds_audio.metrics import sdr, si_sdr_improvement
from sds_audio.priors.base import Prior
from sds_audio.tasks.separate import LR_SCHEDULES, SDS_TARGETS, SeparationConfig, combine_windows, separate

SAMPLE_RATE = 22050
SOURCE_RMS = 0.1          # -20 dBFS
GAP_S = (0.05, 0.3)
FADE_S = 0.01


METHODS = ("sds", "rec", "mask", "mask+sds", "mask-only", "mask-res", "mask-res+sds", "mask-sds")


def _load_clip(root: Path, record: dict[str, Any], cache: dict[str, torch.Tensor]) -> torch.Tensor:
    if record["id"] not in cache:
        audio, _ = load_audio(root / record["path"], sample_rate=SAMPLE_RATE, channels=1, allow_silent=True)
        cache[record["id"]] = audio[0, 0]
    return cache[record["id"]]


def _build_source(clips: list[dict[str, Any]], n_samples: int, rng: random.Random, root: Path,
                  cache: dict[str, torch.Tensor]) -> torch.Tensor:
    """Held-out clips of one concept, with gaps, cropped to ``n_samples`` and faded out; ``(n_samples,)``."""
    parts, total = [], 0
    while total < n_samples:
        clip = _load_clip(root, rng.choice(clips), cache)
        gap = torch.zeros(int(rng.uniform(*GAP_S) * SAMPLE_RATE))
        parts += [clip, gap]
        total += clip.numel() + gap.numel()
    source = torch.cat(parts)[:n_samples].clone()
    fade = int(FADE_S * SAMPLE_RATE)
    source[-fade:] *= torch.linspace(1.0, 0.0, fade)
    return source


def build_mixtures(corpus: str | Path, n_mixtures: int, seed: int, min_s: float = 3.0,
                   max_s: float = 10.0, split: str = "heldout", level_db: float = 0.0) -> list[dict[str, Any]]:
    """``n_mixtures`` dicts ``{"concepts", "prompts", "sources" (2, 1, T), "mixture" (1, T)}`` at 22050 Hz.

    ``split="train"`` builds them from training clips instead: the place to choose settings,
    so that the held-out figures are not tuned on. ``level_db``: the first source is this many dB
    louder than the second in even-numbered mixtures and quieter in odd ones (their RMS values
    straddle -20 dBFS by half of it each); 0 gives equal RMS. The draws do not depend on it.
    """
    root = Path(corpus)
    records = [r for r in read_manifest(root) if r["split"] == split]
    if not records:
        raise SDSAudioError(f"corpus {root} has no clips with split == {split!r}")
    prompts = {c["concept"]: c.get("prompt") or c["concept"] for c in read_concepts(root)}
    by_concept: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_concept.setdefault(r["concept"], []).append(r)
    concepts = sorted(by_concept)
    if len(concepts) < 2:
        raise SDSAudioError(f"corpus {root} has {split} clips of fewer than two concepts")
    rng = random.Random(seed)
    cache: dict[str, torch.Tensor] = {}
    mixtures = []
    for _ in range(n_mixtures):
        pair = rng.sample(concepts, 2)
        n_samples = int(rng.uniform(min_s, max_s) * SAMPLE_RATE)
        sources = []
        offsets_db = (level_db / 2, -level_db / 2) if len(mixtures) % 2 == 0 else (-level_db / 2, level_db / 2)
        for concept, offset_db in zip(pair, offsets_db):
            s = _build_source(by_concept[concept], n_samples, rng, root, cache)
            rms = SOURCE_RMS * 10 ** (offset_db / 20)
            sources.append(s * (rms / s.square().mean().sqrt().clamp_min(1e-8)))
        sources_t = torch.stack(sources).unsqueeze(1)                 # (2, 1, T)
        mixture = sources_t.sum(0)                                    # (1, T)
        peak = float(mixture.abs().max())
        if peak > 0.99:
            sources_t, mixture = sources_t * (0.99 / peak), mixture * (0.99 / peak)
        mixtures.append({"concepts": pair, "prompts": [prompts.get(c, c) for c in pair], "sources": sources_t,
                         "mixture": mixture})
    return mixtures


def share_splits() -> None:
    """Make every prior-mask method of this process reuse one split per window, prompts and options.

    :func:`~sds_audio.tasks.separate.prior_mask_split` is deterministic given its arguments (the window's
    samples, the prompts, the levels, draws, denoising options and the seeded generator's seed), so the
    rows that start from it get the same start; computing it once saves its cost in all rows but one.
    """
    import hashlib

    import sds_audio.tasks.separate as separate_module

    compute = separate_module.prior_mask_split
    if getattr(compute, "shared", False):
        return
    cache: dict[str, torch.Tensor] = {}

    def shared(chunk, prompts, prior, noise_levels, draws, sds, generator, refinements=0):
        key = hashlib.sha256(chunk.detach().cpu().contiguous().numpy().tobytes()).hexdigest() + repr(
            (list(prompts), tuple(noise_levels), draws, sds.denoise_steps, sds.guidance_scale, sds.negative_prompt,
             generator.initial_seed(), refinements))
        if key not in cache:
            cache[key] = compute(chunk, prompts, prior, noise_levels, draws, sds, generator, refinements)
        return cache[key].clone()

    shared.shared = True
    separate_module.prior_mask_split = shared


def evaluate(prior: Prior, mixtures: list[dict[str, Any]], configs: dict[str, SeparationConfig],
             judge=None, progress: bool = False, done: dict[str, Any] | None = None,
             on_mixture: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, dict[str, list[float]]]:
    """Per method: lists over all sources of ``si_sdri``, ``sdr``, ``seconds`` (per mixture), ``judge``.

    ``done`` (``{"n_done": n, "results": ...}`` from an earlier call's ``on_mixture``) skips the
    first ``n`` mixtures; ``on_mixture(n_done, results)`` is called after each mixture.
    """
    out: dict[str, dict[str, list[float]]] = {"mixture": {"si_sdri": [], "sdr": [], "judge": [], "seconds": []}}
    out.update({name: {"si_sdri": [], "sdr": [], "judge": [], "seconds": []} for name in configs})
    start = 0
    if done is not None:
        start, out = int(done["n_done"]), done["results"]
    for i, item in enumerate(mixtures):
        if i < start:
            continue
        reference, mixture = item["sources"], item["mixture"]
        estimate = mixture.unsqueeze(0).expand_as(reference)
        out["mixture"]["si_sdri"] += [0.0, 0.0]
        out["mixture"]["sdr"] += sdr(estimate, reference).tolist()
        for j, (name, config) in enumerate(configs.items()):
            result = separate(mixture, item["prompts"], prior, config, sample_rate=SAMPLE_RATE, judge=judge,
                              progress=progress)
            out[name]["si_sdri"] += si_sdr_improvement(result.sources, reference, mixture.unsqueeze(0)).tolist()
            out[name]["sdr"] += sdr(result.sources, reference).tolist()
            out[name]["seconds"].append(result.seconds)
            if judge is not None:
                out[name]["judge"] += result.judge_scores
                if j == 0:
                    out["mixture"]["judge"] += result.judge_mixture
            gains = ", ".join(f"{g:+.1f}" for g in out[name]["si_sdri"][-2:])
            print(f"  [{i + 1}/{len(mixtures)}] {name}: {' + '.join(item['concepts'])} "
                  f"({mixture.shape[-1] / SAMPLE_RATE:.1f} s) SI-SDRi {gains} dB, {result.seconds:.0f} s",
                  file=sys.stderr, flush=True)
        if on_mixture is not None:
            on_mixture(i + 1, out)
    return out


def spectral_flux(audio: torch.Tensor, n_fft: int = 1024) -> torch.Tensor:
    """Spectral flux per STFT frame of ``(C, T)`` audio: the L2 norm of the rise of the magnitude spectrum
    from the previous frame (channels pooled), divided by the audio's mean frame magnitude norm (so
    levels do not matter). Frame ``j`` is centred on sample ``j * n_fft // 4``; ``(frames,)``, frame 0 is 0."""
    hop = n_fft // 4
    mag = torch.stft(audio.float(), n_fft, hop, window=torch.hann_window(n_fft), center=True,
                     return_complex=True).abs().square().sum(0).sqrt()              # (F, N)
    rise = (mag[:, 1:] - mag[:, :-1]).clamp_min(0).norm(dim=0)
    return torch.cat([rise.new_zeros(1), rise]) / mag.norm(dim=0).mean().clamp_min(1e-12)


def seam_flux(sources: torch.Tensor, windows: list[tuple[int, int]], scale: float = 1.0,
              n_fft: int = 1024) -> dict[str, float]:
    """Mean spectral flux of ``sources`` ``(K, C, T)`` in frames centred inside a window overlap (the joins,
    where consecutive windows are crossfaded) and in the other frames; ``windows`` at a rate ``1 / scale``
    times the sources' (``scale``: sources' rate / windows' rate)."""
    hop = n_fft // 4
    joins: list[tuple[float, float]] = []
    for (a, la), (b, _) in zip(windows, windows[1:]):
        if a + la > b:
            joins.append((b * scale, (a + la) * scale))
    at, away = [], []
    for source in sources:
        flux = spectral_flux(source, n_fft)
        centres = torch.arange(flux.numel()) * hop
        inside = torch.zeros(flux.numel(), dtype=torch.bool)
        for lo, hi in joins:
            inside |= (centres >= lo) & (centres < hi)
        inside[0] = False
        at.append(flux[inside])
        away.append(flux[~inside][1:])
    at_mean = float(torch.cat(at).mean()) if joins else float("nan")
    away_mean = float(torch.cat(away).mean())
    return {"joins": at_mean, "elsewhere": away_mean, "ratio": at_mean / away_mean, "n_joins": len(joins)}


def window_edge_profile(chunks: list[torch.Tensor], windows: list[tuple[int, int]], reference: torch.Tensor,
                        rate: float, bins_s: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5),
                        n_fft: int = 1024) -> dict[str, Any]:
    """How each window's own sources behave by distance from the window's nearest edge, before any crossfade.

    ``chunks``: per window ``(K, C, n)`` sources at ``rate`` (the same rate as ``reference`` ``(K, C, T)``).
    For frames whose centre lies ``bins_s[j]`` to ``bins_s[j + 1]`` seconds from the nearest edge: the mean
    spectral flux of the windows' sources over that of the true sources cropped to the same windows
    (``flux_ratio``), and the sources' squared error there over the true sources' energy (``error``).
    Also ``disagreement``: over every overlap of consecutive windows, the energy of the difference of
    their sources over the energy of the true sources there.
    """
    hop = n_fft // 4
    sums = {name: [0.0] * (len(bins_s) - 1) for name in ("sep", "true", "err", "energy")}
    counts = [0] * (len(bins_s) - 1)
    for chunk, (start, length) in zip(chunks, windows):
        truth = reference[..., start:start + length].float()
        sep = chunk.float()
        flux_sep = torch.stack([spectral_flux(x, n_fft) for x in sep])           # (K, N)
        flux_true = torch.stack([spectral_flux(x, n_fft) for x in truth])
        centres = torch.arange(flux_sep.shape[-1]) * hop
        dist = torch.minimum(centres, length - centres).float() / rate
        for j in range(len(bins_s) - 1):
            sel = (dist >= bins_s[j]) & (dist < bins_s[j + 1])
            sel[0] = False
            if not bool(sel.any()):
                continue
            lo, hi = int(bins_s[j] * rate), min(int(bins_s[j + 1] * rate), length // 2)
            idx = torch.cat([torch.arange(lo, hi), torch.arange(length - hi, length - lo)]) if hi > lo else None
            sums["sep"][j] += float(flux_sep[:, sel].sum())
            sums["true"][j] += float(flux_true[:, sel].sum())
            counts[j] += int(sel.sum()) * flux_sep.shape[0]
            if idx is not None:
                sums["err"][j] += float((sep[..., idx] - truth[..., idx]).square().sum())
                sums["energy"][j] += float(truth[..., idx].square().sum())
    diff = energy = 0.0
    for (a, la), (b, _), ca, cb in zip(windows, windows[1:], chunks, chunks[1:]):
        if a + la > b:
            ov = a + la - b
            diff += float((ca[..., la - ov:].float() - cb[..., :ov].float()).square().sum())
            energy += float(reference[..., b:a + la].float().square().sum())
    return {"bins_s": list(bins_s),
            "flux_ratio": [sums["sep"][j] / max(sums["true"][j], 1e-12) for j in range(len(counts))],
            "error": [sums["err"][j] / max(sums["energy"][j], 1e-12) for j in range(len(counts))],
            "disagreement": diff / max(energy, 1e-12)}


def _rss_mib() -> float:
    """Resident set size of this process now, MiB (Linux)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return float("nan")
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _RecordWindows:
    """While active, every window of the mask method keeps a copy of its sources ``(K, C', n)`` in ``chunks``
    (at the prior's rate), so that the same windows can be joined again with other crossfades."""

    def __init__(self) -> None:
        self.chunks: list[torch.Tensor] = []

    def __enter__(self) -> "_RecordWindows":
        import sds_audio.tasks.separate as separate_module

        self.module, self.original = separate_module, separate_module.MaskWindow
        chunks = self.chunks

        class Recorded(self.original):
            def sources(self, steps_done: int) -> torch.Tensor:
                out = super().sources(steps_done)
                chunks.append(out.detach().cpu().clone())
                return out

        separate_module.MaskWindow = Recorded
        return self

    def __exit__(self, *exc: Any) -> None:
        self.module.MaskWindow = self.original


def timed_run(prior: Prior, mixture: dict[str, Any], config: SeparationConfig, long_input: bool = False,
              recombine_edges: tuple[float, ...] = ()) -> dict[str, Any]:
    """One separation of ``mixture`` with ``config``, timed (wall seconds, prior already loaded); SI-SDRi of both
    sources; with ``long_input`` also the RSS over the run (MiB) and the spectral flux at the window joins.
    ``recombine_edges``: the same windows joined again with each of these ``crossfade_edge`` values (no
    separation repeated; reported under ``recombined``)."""
    rss: list[float] = []
    on_step = (lambda step, entry: rss.append(_rss_mib())) if long_input else None
    rss_before, peak_before = _rss_mib(), _peak_rss_mib()
    recorder = _RecordWindows()
    t0 = time.perf_counter()
    if recombine_edges:
        with recorder:
            result = separate(mixture["mixture"], mixture["prompts"], prior, config, sample_rate=SAMPLE_RATE,
                              progress=False, on_step=on_step)
    else:
        result = separate(mixture["mixture"], mixture["prompts"], prior, config, sample_rate=SAMPLE_RATE,
                          progress=False, on_step=on_step)
    wall = time.perf_counter() - t0
    reference, mix = mixture["sources"], mixture["mixture"]
    gains = si_sdr_improvement(result.sources, reference, mix.unsqueeze(0)).tolist()
    out = {"seconds_audio": mix.shape[-1] / SAMPLE_RATE, "wall_s": wall, "si_sdri": gains,
           "windows": len(result.windows), "prompts": mixture["prompts"]}
    if long_input:
        scale = SAMPLE_RATE / float(prior.sample_rate)
        per_window = len(rss) // max(1, len(result.windows))
        out.update(rss_before_mib=rss_before, peak_rss_before_mib=peak_before, peak_rss_mib=_peak_rss_mib(),
                   rss_first_window_mib=max(rss[:per_window]) if rss else float("nan"),
                   rss_last_window_mib=max(rss[-per_window:]) if rss else float("nan"),
                   flux_separated=seam_flux(result.sources, result.windows, scale),
                   flux_true_sources=seam_flux(reference, result.windows, scale),
                   flux_mixture=seam_flux(mix.unsqueeze(0), result.windows, scale))
        out["recombined"] = {}
        if recorder.chunks:
            out["window_edges"] = window_edge_profile(recorder.chunks, result.windows, reference,
                                                      float(prior.sample_rate))
        for edge in recombine_edges:
            sources = combine_windows(recorder.chunks, result.windows, mix, int(prior.sample_rate), SAMPLE_RATE,
                                      dataclasses.replace(config, crossfade_edge=edge))
            out["recombined"][f"{edge:g}"] = {
                "si_sdri": si_sdr_improvement(sources, reference, mix.unsqueeze(0)).tolist(),
                "flux_separated": seam_flux(sources, result.windows, scale),
                "max_sum_error": float((sources.sum(0) - mix).abs().max())}
    return out


def table(results: dict[str, dict[str, list[float]]]) -> str:
    has_judge = any(v["judge"] for v in results.values())
    head = "| method | SI-SDRi mean (dB) | SI-SDRi median (dB) | SDR mean (dB) | SDR median (dB) |"
    rule = "|---|---:|---:|---:|---:|"
    if has_judge:
        head, rule = head + " judge median |", rule + "---:|"
    head, rule = head + " s / mixture (median) |", rule + "---:|"
    lines = [head, rule]
    for name, v in results.items():
        row = (f"| {name} | {statistics.mean(v['si_sdri']):.2f} | {statistics.median(v['si_sdri']):.2f} | "
               f"{statistics.mean(v['sdr']):.2f} | {statistics.median(v['sdr']):.2f} |")
        if has_judge:
            row += f" {statistics.median(v['judge']):.3f} |" if v["judge"] else " - |"
        row += f" {statistics.median(v['seconds']):.0f} |" if v["seconds"] else " - |"
        lines.append(row)
    return "\n".join(lines)


def load_benchmark_prior(name: str, assets: str | None, device: str) -> Prior:
    if assets is not None:
        if name != "embedded":
            raise SDSAudioError("--assets only applies to --prior embedded")
        from sds_audio.priors.embedded import load_embedded_prior

        return load_embedded_prior(device=device, assets_dir=assets)
    from sds_audio.priors.registry import load_prior

    return load_prior(name, device=device)


#: the benchmark's declared mixture sets: which clips (manifest split) and which mixture seed
MIXTURE_SETS = {"validation": {"split": "heldout", "seed": 0}, "test": {"split": "train", "seed": 1000}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=sorted(MIXTURE_SETS), default=None,
                        help="a declared mixture set (sets --split and --seed; see the module docstring)")
    parser.add_argument("--corpus", default="/work/data/corpus",
                        help="corpus directory (manifest.jsonl, concepts.json)")
    parser.add_argument("--prior", default="embedded", help="prior name or path (default: embedded)")
    parser.add_argument("--assets", default=None, help="directory with codec.safetensors and flow.safetensors")
    parser.add_argument("--n-mixtures", type=int, default=20)
    parser.add_argument("--steps", type=int, default=SeparationConfig().steps,
                        help="steps of the mask method (default: the library's)")
    parser.add_argument("--latent-steps", type=int, default=200,
                        help="steps of the latent-method rows (sds, rec, mask, mask+sds, mask-res, mask-res+sds)")
    parser.add_argument("--mask-lr", type=float, default=SeparationConfig().mask_lr)
    parser.add_argument("--mask-trust", type=float, default=SeparationConfig().mask_trust)
    parser.add_argument("--mask-n-fft", type=int, default=SeparationConfig().mask_n_fft)
    parser.add_argument("--mask-target", default=SeparationConfig().mask_target, choices=["vote", "vote_power", "rendition"])
    parser.add_argument("--mask-t", type=float, nargs=2, default=list(SeparationConfig().mask_t), metavar=("LO", "HI"),
                        help="noise-level range of the mask method's renditions")
    parser.add_argument("--mask-draws", type=int, default=SeparationConfig().mask_draws,
                        help="noise draws per level of the prior-mask split (every prior-mask method)")
    parser.add_argument("--denoise-steps", type=int, default=SeparationConfig().sds.denoise_steps)
    parser.add_argument("--t-min", type=float, default=None,
                        help="the latent method's SDS objectives' lowest noise level")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=SeparationConfig().lr,
                        help="the optimised methods' step size (default: the library's)")
    parser.add_argument("--output", default=SeparationConfig().output, choices=["wiener", "direct"],
                        help="the optimised methods' output (default: the library's)")
    parser.add_argument("--window-s", type=float, default=None, help="separation window (default: the prior's maximum)")
    parser.add_argument("--overlap-s", type=float, default=SeparationConfig().overlap_s,
                        help="least overlap of consecutive windows (default: the library's)")
    parser.add_argument("--crossfade-edge", type=float, default=SeparationConfig().crossfade_edge,
                        help="fraction of each overlap, at either end, kept out of the crossfade (default: the "
                             "library's)")
    parser.add_argument("--gamma", type=float, default=SeparationConfig().gamma,
                        help="SDS weight of the Audio-SDS method (default: the library's)")
    parser.add_argument("--split", default="heldout", choices=["heldout", "train"],
                        help="clips to build mixtures from (train: for choosing settings)")
    parser.add_argument("--t-max", type=float, default=None,
                        help="the latent method's SDS objectives' highest noise level")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated subset of {', '.join(METHODS)} (default: all)")
    parser.add_argument("--sds-target", default=SeparationConfig().sds_target, choices=SDS_TARGETS,
                        help="what the SDS terms pull each source toward (the SDS methods)")
    parser.add_argument("--lr-schedule", default=SeparationConfig().lr_schedule, choices=LR_SCHEDULES)
    parser.add_argument("--mask-refinements", type=int, default=SeparationConfig().mask_refinements,
                        help="refinement passes of the prior-mask split (the prior-mask methods)")
    parser.add_argument("--level-db", type=float, default=0.0,
                        help="level difference of the two sources in dB, the louder one alternating (default 0)")
    parser.add_argument("--min-s", type=float, default=3.0)
    parser.add_argument("--max-s", type=float, default=10.0)
    parser.add_argument("--judge", default=None, help="judge.safetensors: also report judge scores")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true", help="show a progress bar per run")
    parser.add_argument("--share-split", action="store_true",
                        help="the prior-mask rows reuse one split per window (the same by construction; their "
                             "s / mixture then leave out its cost in all rows but the first)")
    parser.add_argument("--time-s", type=float, default=None,
                        help="instead of the table: time one two-source mixture of this many seconds (the set's "
                             "first draw) with the mask method's options as given (default: the library's)")
    parser.add_argument("--long-s", type=float, default=None,
                        help="instead of the table: separate one mixture this long in windows; report wall time, "
                             "RSS (MiB) and the spectral flux at the window joins against elsewhere")
    parser.add_argument("--continue-masks", action="store_true",
                        help="each window starts, across its overlap, from the previous window's sources")
    parser.add_argument("--long-index", type=int, default=0,
                        help="with --time-s / --long-s: use the set's draw with this index (0: the first)")
    parser.add_argument("--recombine-edges", default="",
                        help="with --long-s: comma-separated crossfade_edge values; the same windows are joined "
                             "again with each and scored (no separation repeated)")
    parser.add_argument("--json", default=None,
                        help="write the results here after every mixture; a rerun with the same settings resumes")
    args = parser.parse_args(argv)
    if args.set is not None:
        args.split, args.seed = MIXTURE_SETS[args.set]["split"], MIXTURE_SETS[args.set]["seed"]
    torch.set_num_threads(args.threads)
    try:
        if args.n_mixtures < 1 or args.steps < 0 or args.latent_steps < 1:
            raise SDSAudioError("--n-mixtures and --latent-steps must be >= 1, --steps >= 0")
        if not 0 < args.min_s <= args.max_s:
            raise SDSAudioError("need 0 < --min-s <= --max-s")
        prior = load_benchmark_prior(args.prior, args.assets, args.device)
        judge = None
        if args.judge is not None:
            from sds_audio.judge import judge_score, load_judge

            model = load_judge(args.judge)
            judge = lambda audio, rate, prompt: judge_score(audio, prompt, model, sample_rate=rate)  # noqa: E731
        mixtures = build_mixtures(args.corpus, args.n_mixtures, args.seed, args.min_s, args.max_s, split=args.split,
                                  level_db=args.level_db)
        base = SeparationConfig(steps=args.steps, lr=args.lr, output=args.output, seed=args.seed, window_s=args.window_s,
                                overlap_s=args.overlap_s, crossfade_edge=args.crossfade_edge,
                                continue_masks=args.continue_masks or SeparationConfig().continue_masks,
                                lr_schedule=args.lr_schedule, mask_refinements=args.mask_refinements,
                                sds_target=args.sds_target,
                                checkpoint_every=0)
        base = dataclasses.replace(base, mask_lr=args.mask_lr, mask_trust=args.mask_trust, mask_n_fft=args.mask_n_fft,
                                   mask_target=args.mask_target, mask_t=tuple(args.mask_t),
                                   mask_draws=args.mask_draws,
                                   sds=dataclasses.replace(base.sds, denoise_steps=args.denoise_steps))
        for name in ("t_min", "t_max"):
            if getattr(args, name) is not None:
                base = dataclasses.replace(base, sds=dataclasses.replace(base.sds, **{name: getattr(args, name)}))
        if args.time_s is not None or args.long_s is not None:
            length = args.time_s if args.time_s is not None else args.long_s
            if args.long_index < 0:
                raise SDSAudioError("--long-index must be >= 0")
            item = build_mixtures(args.corpus, args.long_index + 1, args.seed, length, length, split=args.split,
                                  level_db=args.level_db)[args.long_index]
            config = dataclasses.replace(base, method="mask", gamma=args.gamma)
            edges = tuple(float(e) for e in args.recombine_edges.split(",") if e.strip())
            out = timed_run(prior, item, config, long_input=args.long_s is not None,
                            recombine_edges=edges if args.long_s is not None else ())
            out["settings"] = {k: v for k, v in vars(args).items() if k not in ("progress", "threads")}
            if args.json is not None:
                write_json_atomic(args.json, out)
            print(json.dumps(out, indent=1))
            return 0
        methods = [m for m in args.methods.split(",") if m]
        unknown = sorted(set(methods) - set(METHODS))
        if unknown or not methods:
            raise SDSAudioError(f"--methods: unknown {', '.join(unknown) or '(none given)'}; choose from "
                                f"{', '.join(METHODS)}")
        latent = dict(method="latent", steps=args.latent_steps)
        mix_start = dict(init="mixture", residual_decoding=False, **latent)       # the formulation
        mask_start = dict(init="prior_mask", residual_decoding=False, **latent)
        res_start = dict(init="prior_mask", residual_decoding=True, **latent)     # the latent method's default
        variants = {"sds": (f"Audio-SDS (gamma={args.gamma:g})", dict(gamma=args.gamma, **mix_start)),
                    "rec": ("reconstruction only (gamma=0)", dict(gamma=0.0, **mix_start)),
                    "mask": ("prior-mask start, reconstruction only", dict(gamma=0.0, **mask_start)),
                    "mask+sds": (f"prior-mask start + Audio-SDS (gamma={args.gamma:g})",
                                 dict(gamma=args.gamma, **mask_start)),
                    "mask-only": ("prior-mask split, no optimisation", dict(gamma=0.0, steps=0, method="mask")),
                    "mask-res": ("prior-mask start, residual decoding, reconstruction only",
                                 dict(gamma=0.0, **res_start)),
                    "mask-res+sds": (f"prior-mask start, residual decoding + Audio-SDS (gamma={args.gamma:g})",
                                     dict(gamma=args.gamma, **res_start)),
                    "mask-sds": (f"mask-domain Audio-SDS (the default, {args.steps} steps)",
                                 dict(method="mask", gamma=args.gamma))}
        configs = {variants[m][0]: dataclasses.replace(base, **variants[m][1]) for m in methods}
        settings = {k: v for k, v in vars(args).items() if k not in ("json", "progress", "threads")}
        done = None
        if args.json is not None and Path(args.json).is_file():
            saved = json.loads(Path(args.json).read_text())
            if saved.get("settings") == settings:
                done = saved
                print(f"resuming after {saved['n_done']} mixture(s) from {args.json}", file=sys.stderr)

        def save(n_done: int, results: dict[str, Any]) -> None:
            if args.json is not None:
                write_json_atomic(args.json, {"settings": settings, "n_done": n_done, "results": results})

        if args.share_split:
            share_splits()
        t0 = time.perf_counter()
        results = evaluate(prior, mixtures, configs, judge=judge, progress=args.progress, done=done,
                           on_mixture=save)
    except SDSAudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lengths = [m["mixture"].shape[-1] / SAMPLE_RATE for m in mixtures]
    clips = "held-out" if args.split == "heldout" else "training"
    level = f"sources {args.level_db:g} dB apart" if args.level_db else "equal-RMS sources"
    print(f"\nSeparation of {len(mixtures)} two-source mixtures of {clips} clips "
          f"({min(lengths):.1f}-{max(lengths):.1f} s, {level}), prior {getattr(prior, 'name', args.prior)}, "
          f"mask method: {args.steps} steps, mask lr {args.mask_lr:g}, {args.mask_n_fft}-sample masks, target "
          f"{args.mask_target}, t {args.mask_t[0]:g}-{args.mask_t[1]:g}; latent method: {args.latent_steps} steps, "
          f"lr {args.lr:g} ({args.lr_schedule}), SDS target {args.sds_target}, "
          f"{args.mask_refinements} mask refinement(s), "
          f"seed {args.seed}, window {args.window_s or prior.max_duration_s:g} s, "
          f"{2 * len(mixtures)} sources, {time.perf_counter() - t0:.0f} s in all\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
