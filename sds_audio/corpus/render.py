"""Rendering planned clips to finished 16-bit WAV files.

:func:`render_batch` takes plans of one source (all SoundFont plans of a batch
go through a single fluidsynth call), renders raw audio, and finishes each
clip: reject broken renders, add reverb where the plan says "reverberant",
trim silence, set the peak level, round to 16 bit and write the file
atomically. It returns one result per plan: the manifest record, or the
reason the render was rejected.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..atomic import atomic_path
from . import clip_audio, struck, textures
from .concepts import DRUM, MELODIC, SFX, STRUCK, TEXTURE, concept_by_name
from .plan import ClipPlan
from .reverb import apply_reverb, reverb_ir
from .soundfont import Note, render_notes

SLOT_S = 4.5            # fluidsynth time slot per note


def raw_procedural(plan: ClipPlan, sample_rate: int) -> np.ndarray:
    """Unnormalised audio ``(T,)`` of a procedural plan."""
    concept = concept_by_name(plan.concept)
    a = plan.attributes
    rng = plan.rng(3)
    if concept.kind == STRUCK:
        s = concept.settings
        return struck.struck_object(modes=s["modes"], material=s["material"], f0_hz=a["f0_hz"], q=a["q"],
                                    striker=a["striker"], force=a["force"], split_modes=s["split_modes"],
                                    n_hits=int(a.get("knocks", 1)), sample_rate=sample_rate, rng=rng)
    duration_s = plan.render["duration_s"]
    gen = concept.settings["generator"]
    if gen == "wind":
        return textures.wind(duration_s, sample_rate, rng, gusty=a["wind"] == "gusty")
    if gen == "rain":
        return textures.rain(duration_s, sample_rate, rng, heavy=a["rain"] == "heavy")
    if gen == "engine":
        return textures.engine(duration_s, sample_rate, rng, revving=a["engine"] == "revving")
    if gen == "car_pass":
        return textures.car_pass(duration_s, sample_rate, rng, speed_m_s=a["speed_m_s"])
    if gen == "fire":
        return textures.fire(duration_s, sample_rate, rng)
    if gen == "hum":
        return textures.mains_hum(duration_s, sample_rate, rng, mains_hz=float(a["mains"]),
                                  buzzing=a["buzz"] == "buzzing")
    raise ValueError(f"unknown texture generator {gen!r}")


def note_of(plan: ClipPlan) -> Note:
    """The fluidsynth note of a SoundFont plan."""
    a = plan.attributes
    if "drum_key" in a:
        return Note(program=a["drum_kit"], pitch=a["drum_key"], velocity=a["velocity"], hold_s=a["hold_s"], drum=True)
    return Note(program=a["program"], pitch=a["pitch_midi"], velocity=a["velocity"], hold_s=a["hold_s"])


def finish(raw: np.ndarray, plan: ClipPlan, sample_rate: int) -> tuple[np.ndarray | None, str | None]:
    """``(int16 clip, None)``, or ``(None, reason)`` when the render is unusable."""
    reason = clip_audio.is_broken(raw, sample_rate)
    if reason is not None:
        return None, reason
    concept = concept_by_name(plan.concept)
    audio = np.asarray(raw, dtype=np.float64)
    if concept.kind == TEXTURE:
        audio = clip_audio.fade_in(audio, sample_rate, 0.05)
        audio = clip_audio.fade_out(audio, sample_rate, 0.1)
    else:
        if plan.attributes.get("space") == "reverberant":
            # trim the dry render first so the reverb tail is measured from the sound's real end
            audio = clip_audio.trim(audio, sample_rate, min_s=0.0, max_s=clip_audio.MAX_DURATION_S)
            ir = reverb_ir(plan.attributes["rt60_s"], sample_rate, plan.rng(2), plan.render["predelay_s"])
            audio = apply_reverb(audio, ir, plan.render["drr_db"])
        audio = clip_audio.trim(audio, sample_rate, min_s=plan.render["min_s"], max_s=clip_audio.MAX_DURATION_S)
    n = audio.shape[0]
    if not clip_audio.MIN_DURATION_S * sample_rate <= n <= clip_audio.MAX_DURATION_S * sample_rate + 1:
        return None, f"duration {n / sample_rate:.2f} s out of range"
    return clip_audio.to_pcm16(clip_audio.set_peak(audio, plan.attributes["peak_dbfs"])), None


def write_clip(pcm: np.ndarray, path: Path, sample_rate: int) -> None:
    """Write ``(T,)`` int16 as a mono 16-bit PCM WAV, atomically."""
    with atomic_path(path) as tmp:
        sf.write(str(tmp), pcm, sample_rate, subtype="PCM_16", format="WAV")


def record_of(plan: ClipPlan, n_samples: int, sample_rate: int) -> dict[str, Any]:
    """The manifest record of a finished clip (split filled in later)."""
    concept = concept_by_name(plan.concept)
    return {"id": plan.id, "path": f"audio/{plan.id}.wav", "concept": plan.concept, "caption": plan.caption,
            "split": "train", "source": concept.source, "duration_s": round(n_samples / sample_rate, 4),
            "sample_rate": sample_rate, "attributes": dict(plan.attributes)}


def render_batch(plans: list[ClipPlan], out_dir: str | os.PathLike, sample_rate: int,
                 fluidsynth: str | None = None, soundfont: str | None = None) -> list[tuple[str, dict | None, str | None]]:
    """Render, finish and write ``plans`` (all of one source); ``[(id, record or None, reject reason)]``."""
    out_dir = Path(out_dir)
    kinds = {concept_by_name(p.concept).kind for p in plans}
    if kinds <= {MELODIC, DRUM, SFX}:
        raws = render_notes([note_of(p) for p in plans], SLOT_S, sample_rate, fluidsynth=fluidsynth,
                            soundfont=soundfont)
    else:
        raws = [None] * len(plans)
    results = []
    for plan, raw in zip(plans, raws):
        if raw is None:
            raw = raw_procedural(plan, sample_rate)
        pcm, reason = finish(raw, plan, sample_rate)
        if pcm is None:
            results.append((plan.id, None, reason))
            continue
        write_clip(pcm, out_dir / "audio" / f"{plan.id}.wav", sample_rate)
        results.append((plan.id, record_of(plan, pcm.shape[0], sample_rate), None))
    return results
