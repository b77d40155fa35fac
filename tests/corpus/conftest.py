"""A tiny corpus built once per test session (both sources when fluidsynth is present)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from sds_audio.corpus.build import CorpusSummary, build_corpus
from sds_audio.corpus.soundfont import find_fluidsynth, find_soundfont

SOUNDFONT_CONCEPTS = ["piano", "violin", "kick drum", "hi-hat", "applause"]
PROCEDURAL_CONCEPTS = ["metal pot struck", "knock on wooden door", "glass bottle tapped", "rain", "car passing by",
                       "electrical hum"]


@dataclass
class TinyCorpus:
    root: Path
    summary: CorpusSummary
    concepts: list[str]
    have_fluidsynth: bool
    seed: int = 7
    n_per_concept: int = 3

    def build_again(self, out_dir: Path, seed: int | None = None) -> CorpusSummary:
        return build_corpus(out_dir, seed=self.seed if seed is None else seed, n_per_concept=self.n_per_concept,
                            concepts=self.concepts, workers=1, progress=False)


@pytest.fixture(scope="session")
def have_fluidsynth() -> bool:
    return find_fluidsynth() is not None and find_soundfont() is not None


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory, have_fluidsynth) -> TinyCorpus:
    concepts = (SOUNDFONT_CONCEPTS if have_fluidsynth else []) + PROCEDURAL_CONCEPTS
    root = tmp_path_factory.mktemp("corpus") / "tiny"
    summary = build_corpus(root, seed=7, n_per_concept=3, concepts=concepts, workers=1, progress=False)
    return TinyCorpus(root=root, summary=summary, concepts=concepts, have_fluidsynth=have_fluidsynth)
