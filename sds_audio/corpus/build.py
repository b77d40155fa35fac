"""Building a captioned corpus directory: plan, render (two worker processes), split, write.

``build_corpus(out_dir, seed=0)`` writes ``audio/<id>.wav``, ``manifest.jsonl``
and ``concepts.json`` (format in :mod:`sds_audio.corpus.dataset`), plus
``build_info.json`` with the settings and counts. The same seed gives the
same files byte for byte: every random choice is made in the plan from a
generator seeded by ``(seed, concept, index, attempt)``, fluidsynth renders
to float WAV without dither, and the 16-bit rounding has no dither either.

A rejected render (silent, too short, non-finite) is planned again with the
next ``attempt`` number, up to ``MAX_ATTEMPTS`` times, so concepts keep their
clip counts. The held-out split is by clip: within each concept the clips
whose seeded hash of the id is smallest (about ``heldout_fraction`` of them)
go to ``"heldout"``; captions may repeat across splits. Nothing is downloaded.
"""

from __future__ import annotations

import concurrent.futures as futures
import hashlib
import json
import multiprocessing
import os
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from tqdm.auto import tqdm

from ..atomic import write_json_atomic, write_text_atomic
from ..errors import SDSAudioError
from .captions import normalise_text, paraphrases
from .concepts import CONCEPTS, PROCEDURAL, SOUNDFONT, Concept, concept_by_name
from .dataset import CONCEPTS_NAME, MANIFEST_NAME
from .plan import JUDGE_SETTINGS, PRIOR_SETTINGS, ClipPlan, GeneratorSettings, plan_clip
from .render import render_batch
from .soundfont import find_fluidsynth, find_soundfont, require_tools

SAMPLE_RATE = 22050
DEFAULT_CLIPS_PER_CONCEPT = 60
SMALL_CLIPS_PER_CONCEPT = 4
MAX_ATTEMPTS = 4
MAX_WORKERS = 2
SOUNDFONT_BATCH = 16
PROCEDURAL_BATCH = 6

#: the independent judge's corpus (:func:`build_judge_corpus`): another SoundFont, another seed, other ranges
JUDGE_SOUNDFONT = "/usr/share/sounds/sf2/MuseScore_General_Full.sf2"
JUDGE_CORPUS_SEED = 20261207
#: General MIDI programs (0-based) whose clips form the judge's validation split: one program each of ten
#: concepts that keep other programs for training (bright piano, electric piano 2, rock organ, steel guitar,
#: picked bass, synth bass 2, slow strings, alto sax, saw lead, polysynth pad)
JUDGE_VALIDATION_PROGRAMS = (1, 5, 18, 25, 34, 39, 49, 65, 81, 90)


@dataclass
class CorpusSummary:
    """What :func:`build_corpus` wrote."""

    out_dir: Path
    n_clips: int
    n_concepts: int
    seconds: float
    total_audio_s: float
    counts: dict[str, dict[str, int]] = field(default_factory=dict)   # concept -> {"train": n, "heldout": n}
    rejected: dict[str, int] = field(default_factory=dict)            # reason -> count (before retries)
    rejected_ids: list[str] = field(default_factory=list)             # "id (attempt k): reason"
    dropped: list[str] = field(default_factory=list)                  # ids that failed every attempt

    def table(self) -> str:
        """A text table of clips per concept and split."""
        width = max(len(c) for c in self.counts) if self.counts else 7
        lines = [f"{'concept':<{width}}  train  heldout"]
        for concept, c in self.counts.items():
            lines.append(f"{concept:<{width}}  {c.get('train', 0):>5}  {c.get('heldout', 0):>7}")
        total_train = sum(c.get("train", 0) for c in self.counts.values())
        total_held = sum(c.get("heldout", 0) for c in self.counts.values())
        lines.append(f"{'total':<{width}}  {total_train:>5}  {total_held:>7}")
        return "\n".join(lines)


def split_rank(seed: int, clip_id: str) -> str:
    """Seeded hash of a clip id (hex); the smallest ones of a concept are held out."""
    return hashlib.sha256(f"{seed}:{clip_id}".encode()).hexdigest()


def assign_splits(records: list[dict], seed: int, heldout_fraction: float) -> None:
    """Set ``record["split"]`` in place: per concept, ~``heldout_fraction`` of clips (at least 1 of 2+) held out."""
    by_concept: dict[str, list[dict]] = {}
    for rec in records:
        by_concept.setdefault(rec["concept"], []).append(rec)
    for recs in by_concept.values():
        n = len(recs)
        k = 0 if n < 2 or heldout_fraction <= 0 else min(n - 1, max(1, round(heldout_fraction * n)))
        held = {r["id"] for r in sorted(recs, key=lambda r: split_rank(seed, r["id"]))[:k]}
        for rec in recs:
            rec["split"] = "heldout" if rec["id"] in held else "train"


def _select_concepts(concepts: Iterable[str] | None, sources: Iterable[str]) -> list[Concept]:
    sources = set(sources)
    unknown = sources - {SOUNDFONT, PROCEDURAL}
    if unknown:
        raise SDSAudioError(f"unknown corpus source(s) {sorted(unknown)}; use 'soundfont' and/or 'procedural'")
    chosen = list(CONCEPTS) if concepts is None else [concept_by_name(name) for name in concepts]
    chosen = [c for c in chosen if c.source in sources]
    if not chosen:
        raise SDSAudioError("no corpus concepts selected: check `concepts` and `sources`")
    return chosen


def _batches(plans: list[ClipPlan]) -> list[list[ClipPlan]]:
    out: list[list[ClipPlan]] = []
    by_concept: dict[str, list[ClipPlan]] = {}
    for plan in plans:
        by_concept.setdefault(plan.concept, []).append(plan)
    for name, group in by_concept.items():
        size = SOUNDFONT_BATCH if concept_by_name(name).source == SOUNDFONT else PROCEDURAL_BATCH
        out += [group[i:i + size] for i in range(0, len(group), size)]
    return out


def _tool_versions(fluidsynth: str | None, soundfont: str | None) -> dict:
    info: dict = {}
    exe = find_fluidsynth(fluidsynth)
    if exe is not None:
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
            info["fluidsynth"] = out.splitlines()[0].strip() if out else "unknown"
        except (OSError, subprocess.SubprocessError):
            info["fluidsynth"] = "unknown"
    sf2 = find_soundfont(soundfont)
    if sf2 is not None:
        info["soundfont"] = {"path": str(sf2), "bytes": sf2.stat().st_size}
    return info


def build_corpus(out_dir: str | os.PathLike, seed: int = 0, *, n_per_concept: int | None = None, small: bool = False,
                 concepts: Iterable[str] | None = None, sources: Iterable[str] = (SOUNDFONT, PROCEDURAL),
                 workers: int = 2, heldout_fraction: float = 0.1, fluidsynth: str | None = None,
                 soundfont: str | os.PathLike | None = None, overwrite: bool = False,
                 settings: GeneratorSettings = PRIOR_SETTINGS, validation_programs: Iterable[int] = (),
                 progress: bool = True) -> CorpusSummary:
    """Build a captioned corpus in ``out_dir`` (see the module docstring).

    Args:
        out_dir: target directory (created; must not hold a corpus unless ``overwrite``).
        seed: the corpus seed; the same seed gives identical files.
        n_per_concept: clips per concept (default 60; 4 with ``small``).
        small: a quick build for tests / smoke checks.
        concepts: names of the concepts to build (default: all, see ``concepts.CONCEPTS``).
        sources: ``"soundfont"`` and / or ``"procedural"``.
        workers: rendering processes (at most 2; 0 or 1 renders in this process).
        heldout_fraction: share of each concept's clips in the ``"heldout"`` split.
        fluidsynth: path of the fluidsynth executable (default: on PATH).
        soundfont: ``.sf2`` file (default: FluidR3 GM).
        overwrite: replace an existing corpus in ``out_dir`` (stale clips are deleted).
        settings: ranges of the room, texture and damping draws (see :class:`~.plan.GeneratorSettings`).
        validation_programs: General MIDI programs whose clips all go to the ``"heldout"`` split (a
            validation set of timbres never trained on), besides the by-clip held-out share.
        progress: show a tqdm progress bar.

    Returns:
        A :class:`CorpusSummary` (counts per concept and split, timings).

    Raises:
        SDSAudioError: ``out_dir`` already holds a corpus, fluidsynth / the
            SoundFont is missing while SoundFont concepts are selected, or an
            unknown concept / source is named.
    """
    t_start = time.monotonic()
    out_dir = Path(out_dir)
    selected = _select_concepts(concepts, sources)
    if n_per_concept is None:
        n_per_concept = SMALL_CLIPS_PER_CONCEPT if small else DEFAULT_CLIPS_PER_CONCEPT
    if n_per_concept < 1:
        raise SDSAudioError(f"n_per_concept must be at least 1, got {n_per_concept}")
    if not 0.0 <= heldout_fraction < 1.0:
        raise SDSAudioError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    if any(c.source == SOUNDFONT for c in selected):
        require_tools(fluidsynth, soundfont)
    if (out_dir / MANIFEST_NAME).exists() and not overwrite:
        raise SDSAudioError(f"{out_dir} already holds a corpus ({MANIFEST_NAME}); pass overwrite=True "
                            "(--overwrite) to replace it or choose another directory")
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    soundfont = str(soundfont) if soundfont is not None else None

    plans = [plan_clip(c, i, seed, settings=settings) for c in selected for i in range(n_per_concept)]
    order = {p.id: k for k, p in enumerate(plans)}
    records: dict[str, dict] = {}
    rejected: Counter = Counter()
    rejected_ids: list[str] = []
    dropped: list[str] = []
    n_workers = max(0, min(int(workers), MAX_WORKERS))
    bar = tqdm(total=len(plans), desc="corpus", unit="clip", disable=not progress)
    executor = None
    if n_workers >= 2:
        executor = futures.ProcessPoolExecutor(max_workers=n_workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending = plans
        while pending:
            retry: list[ClipPlan] = []
            batches = _batches(pending)
            if executor is None:
                results = (render_batch(b, out_dir, SAMPLE_RATE, fluidsynth, soundfont) for b in batches)
            else:
                jobs = [executor.submit(render_batch, b, out_dir, SAMPLE_RATE, fluidsynth, soundfont)
                        for b in batches]
                results = (job.result() for job in futures.as_completed(jobs))
            by_id = {p.id: p for p in pending}
            for batch_result in results:
                for clip_id, record, reason in batch_result:
                    if record is not None:
                        records[clip_id] = record
                        bar.update(1)
                        continue
                    rejected[reason.split(" (")[0]] += 1
                    old = by_id[clip_id]
                    rejected_ids.append(f"{clip_id} (attempt {old.attempt}): {reason}")
                    if old.attempt + 1 < MAX_ATTEMPTS:
                        retry.append(plan_clip(concept_by_name(old.concept), old.index, seed, old.attempt + 1,
                                               settings=settings))
                    else:
                        dropped.append(clip_id)
                        bar.update(1)
            pending = sorted(retry, key=lambda p: order[p.id])
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown(cancel_futures=True)

    manifest = sorted(records.values(), key=lambda r: order[r["id"]])
    assign_splits(manifest, seed, heldout_fraction)
    held_programs = {int(p) for p in validation_programs}
    for rec in manifest:
        if rec["attributes"].get("program") in held_programs and "drum_key" not in rec["attributes"]:
            rec["split"] = "heldout"
    concept_entries = [{"concept": c.name, "family": c.family, "source": c.source, "prompt": c.prompt,
                        "paraphrases": paraphrases(c)} for c in selected]
    captions = {normalise_text(r["caption"]) for r in manifest}
    leaked = [p for e in concept_entries for p in e["paraphrases"] if normalise_text(p) in captions]
    if leaked:
        raise RuntimeError(f"paraphrases used as training captions: {leaked[:5]}")

    write_json_atomic(out_dir / CONCEPTS_NAME, concept_entries)
    write_text_atomic(out_dir / MANIFEST_NAME, "".join(json.dumps(r, sort_keys=True) + "\n" for r in manifest))
    keep = {Path(r["path"]).name for r in manifest}
    for path in (out_dir / "audio").glob("*.wav"):
        if path.name not in keep:
            path.unlink()

    counts: dict[str, dict[str, int]] = {c.name: {"train": 0, "heldout": 0} for c in selected}
    for rec in manifest:
        counts[rec["concept"]][rec["split"]] += 1
    summary = CorpusSummary(out_dir=out_dir, n_clips=len(manifest), n_concepts=len(selected),
                            seconds=time.monotonic() - t_start,
                            total_audio_s=float(sum(r["duration_s"] for r in manifest)), counts=counts,
                            rejected=dict(rejected), rejected_ids=sorted(rejected_ids), dropped=sorted(dropped))
    info = {"seed": seed, "n_per_concept": n_per_concept, "sample_rate": SAMPLE_RATE,
            "generator_settings": settings.name, "validation_programs": sorted(held_programs),
            "heldout_fraction": heldout_fraction, "n_clips": summary.n_clips, "n_concepts": summary.n_concepts,
            "total_audio_s": round(summary.total_audio_s, 2), "rejected": summary.rejected,
            "rejected_ids": summary.rejected_ids,
            "dropped": summary.dropped, "tools": _tool_versions(fluidsynth, soundfont)}
    write_json_atomic(out_dir / "build_info.json", info)
    return summary


def build_judge_corpus(out_dir: str | os.PathLike, *, n_per_concept: int | None = None, small: bool = False,
                       soundfont: str | os.PathLike = JUDGE_SOUNDFONT, workers: int = 2, overwrite: bool = False,
                       progress: bool = True) -> CorpusSummary:
    """The independent judge's corpus: the same concepts, nothing else in common with the prior's.

    General MIDI concepts come from MuseScore General (Debian ``musescore-general-soundfont-lossless``) instead of
    FluidR3; every clip is drawn with :data:`JUDGE_CORPUS_SEED` (the prior's corpus uses seed 0) and the
    procedural and room draws use :data:`~.plan.JUDGE_SETTINGS`; the programs in
    :data:`JUDGE_VALIDATION_PROGRAMS` are held out whole as the judge's validation set.
    """
    if not Path(soundfont).is_file():
        raise SDSAudioError(f"SoundFont {soundfont} not found: install MuseScore General "
                            "(Debian/Ubuntu: `apt-get install musescore-general-soundfont-lossless`) or pass another .sf2/.sf3")
    return build_corpus(out_dir, seed=JUDGE_CORPUS_SEED, n_per_concept=n_per_concept, small=small, workers=workers,
                        soundfont=soundfont, overwrite=overwrite, settings=JUDGE_SETTINGS,
                        validation_programs=JUDGE_VALIDATION_PROGRAMS, progress=progress)
