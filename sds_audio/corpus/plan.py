"""Planning a clip: draw its attributes from a seeded generator and caption it.

Every random choice of a clip (program, pitch, velocity, note length, reverb,
striker, ...) is made here, from a generator seeded by ``(seed, concept,
index, attempt)``; rendering then only follows the plan. So a clip's content
does not depend on which worker renders it or in which order, and the same
seed always gives the same corpus.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .captions import caption, caption_conflicts, texture_attribute_choices
from .concepts import DRUM, MELODIC, SFX, STRUCK, TEXTURE, Concept

DYNAMICS_P = {"soft": 0.3, "medium": 0.3, "loud": 0.4}
VELOCITY = {"soft": (25, 55), "medium": (60, 90), "loud": (100, 127)}
FORCE = {"soft": (0.0, 0.3), "medium": (0.35, 0.65), "loud": (0.7, 1.0)}
PEAK_DBFS = {"soft": (-20.0, -14.0), "medium": (-10.0, -6.0), "loud": (-3.0, -1.0)}
REVERB_P = 0.3
SHORT_HOLD_S = (0.15, 0.45)
LONG_HOLD_S = (1.0, 2.6)
ELECTRONIC_P = 0.25
TEXTURE_DURATION_S = (2.0, 4.0)
EVENT_MIN_S = (1.0, 1.8)     # a single event shorter than this is followed by silence up to it


@dataclass(frozen=True)
class GeneratorSettings:
    """Ranges of the random draws that are not the concept's own: room, texture length, struck-object damping.

    ``PRIOR_SETTINGS`` builds the embedded prior's corpus; ``JUDGE_SETTINGS`` builds the independent judge's
    (:func:`sds_audio.corpus.build.build_judge_corpus`), so the judge's procedural sounds differ from the
    prior's in these ranges as well as in their seeds.

    Attributes:
        rt60_s: reverberation time range of reverberant clips, s.
        predelay_s: first-reflection delay range, s.
        drr_db: direct-to-reverberant ratio range, dB.
        texture_duration_s: length range of texture clips, s.
        struck_q_scale: the struck objects' Q range is multiplied by this.
    """

    name: str
    rt60_s: tuple[float, float] = (0.6, 2.8)
    predelay_s: tuple[float, float] = (0.005, 0.03)
    drr_db: tuple[float, float] = (-8.0, 2.0)
    texture_duration_s: tuple[float, float] = TEXTURE_DURATION_S
    struck_q_scale: float = 1.0


PRIOR_SETTINGS = GeneratorSettings("prior")
JUDGE_SETTINGS = GeneratorSettings("judge", rt60_s=(0.4, 2.4), predelay_s=(0.012, 0.045), drr_db=(-6.0, 4.0),
                                   texture_duration_s=(1.6, 3.4), struck_q_scale=0.75)
GENERATOR_SETTINGS = {s.name: s for s in (PRIOR_SETTINGS, JUDGE_SETTINGS)}


@dataclass
class ClipPlan:
    """Everything needed to render and caption one clip.

    ``attributes`` holds the facts written to the manifest (captioned ones such
    as ``register`` plus technical ones such as ``pitch_midi``); ``render``
    holds renderer-only settings.
    """

    id: str
    concept: str
    index: int
    attempt: int
    seed: int
    attributes: dict[str, Any]
    render: dict[str, Any] = field(default_factory=dict)
    caption: str = ""

    def rng(self, stream: int) -> np.random.Generator:
        """An independent generator for one use (0 plan, 1 caption, 2 reverb, 3 procedural audio)."""
        return np.random.default_rng([self.seed, zlib.crc32(self.concept.encode()), self.index, self.attempt, stream])


def clip_id(concept: Concept, index: int) -> str:
    """``"<concept slug>-<index:04d>"``."""
    return f"{concept.slug}-{index:04d}"


def register_of(value: float, lo: float, hi: float, log: bool = False) -> str:
    """``"low" / "mid" / "high"``: which third of ``[lo, hi]`` (log-spaced when ``log``) holds ``value``."""
    if log:
        value, lo, hi = np.log(value), np.log(lo), np.log(hi)
    x = (value - lo) / max(hi - lo, 1e-9)
    return "low" if x < 1 / 3 else ("mid" if x < 2 / 3 else "high")


def _choice(rng: np.random.Generator, options, p=None):
    options = list(options)
    return options[int(rng.choice(len(options), p=p))]


def midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def plan_clip(concept: Concept, index: int, seed: int, attempt: int = 0,
              settings: GeneratorSettings = PRIOR_SETTINGS) -> ClipPlan:
    """Draw the attributes of clip ``index`` of ``concept`` and caption it (ranges from ``settings``)."""
    plan = ClipPlan(id=clip_id(concept, index), concept=concept.name, index=index, attempt=attempt, seed=int(seed),
                    attributes={})
    rng = plan.rng(0)
    a = plan.attributes
    r = plan.render
    dynamics = _choice(rng, DYNAMICS_P, p=list(DYNAMICS_P.values()))
    a["dynamics"] = dynamics
    a["peak_dbfs"] = round(float(rng.uniform(*PEAK_DBFS[dynamics])), 2)
    if concept.kind != TEXTURE and rng.random() < REVERB_P:
        a["space"] = "reverberant"
        a["rt60_s"] = round(float(rng.uniform(*settings.rt60_s)), 3)
        r["drr_db"] = float(rng.uniform(*settings.drr_db))
        r["predelay_s"] = float(rng.uniform(*settings.predelay_s))
    elif concept.kind != TEXTURE:
        a["space"] = "dry"
    if concept.kind != TEXTURE:
        r["min_s"] = float(rng.uniform(*EVENT_MIN_S))
    if concept.kind == MELODIC:
        lo, hi = concept.pitch_range
        pitch = int(rng.integers(lo, hi + 1))
        a.update(program=int(_choice(rng, concept.programs)), pitch_midi=pitch, f0_hz=round(midi_to_hz(pitch), 2),
                 register=register_of(pitch, lo, hi), velocity=int(rng.integers(*VELOCITY[dynamics]) + 1))
        if concept.length_matters:
            a["length"] = _choice(rng, ("short", "long"))
            hold = rng.uniform(*(SHORT_HOLD_S if a["length"] == "short" else LONG_HOLD_S))
        else:
            hold = rng.uniform(0.3, 2.0)
        a["hold_s"] = round(float(hold), 3)
    elif concept.kind == DRUM:
        key, fixed = concept.drum_keys[int(rng.integers(0, len(concept.drum_keys)))]
        a.update(fixed)
        if concept.electronic_kits:
            electronic = rng.random() < ELECTRONIC_P
            a["kit"] = "electronic" if electronic else "acoustic"
            kit = _choice(rng, concept.electronic_kits if electronic else concept.programs)
        else:
            kit = _choice(rng, concept.programs)
        if concept.register_words and "register" not in a:
            a["register"] = next(iter(concept.register_words))
        a.update(drum_key=int(key), drum_kit=int(kit), velocity=int(rng.integers(*VELOCITY[dynamics]) + 1),
                 hold_s=round(float(rng.uniform(*concept.hold_s)), 3))
    elif concept.kind == SFX:
        lo, hi = concept.pitch_range
        a.update(program=int(concept.programs[0]), pitch_midi=int(rng.integers(lo, hi + 1)),
                 velocity=int(rng.integers(*VELOCITY[dynamics]) + 1),
                 hold_s=round(float(rng.uniform(*concept.hold_s)), 3))
    elif concept.kind == STRUCK:
        s = concept.settings
        lo, hi = s["f0_hz"]
        f0 = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        a.update(material=s["material"], striker=_choice(rng, s["strikers"]), f0_hz=round(f0, 2),
                 register=register_of(f0, lo, hi, log=True),
                 q=round(float(np.exp(rng.uniform(*np.log(s["q"])))) * settings.struck_q_scale, 2),
                 force=round(float(rng.uniform(*FORCE[dynamics])), 3))
        if "knocks" in s:
            a["knocks"] = str(int(rng.integers(s["knocks"][0], s["knocks"][1] + 1)))
    elif concept.kind == TEXTURE:
        a.update(texture_attribute_choices(concept, rng))
        r["duration_s"] = float(rng.uniform(*settings.texture_duration_s))
        if "speed" in a:
            a["speed_m_s"] = round(float(rng.uniform(20.0, 32.0) if a["speed"] == "fast" else rng.uniform(7.0, 13.0)), 2)
    else:
        raise ValueError(f"unknown concept kind {concept.kind!r}")
    cap_rng = plan.rng(1)
    for _ in range(20):
        text = caption(concept, a, cap_rng)
        if not caption_conflicts(text, concept, a):
            plan.caption = text
            return plan
    raise RuntimeError(f"could not write a truthful caption for {plan.id}: {text!r} vs {a}")
