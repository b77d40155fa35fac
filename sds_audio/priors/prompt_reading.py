"""What a prior understood of a prompt: the concepts its prompt anchor reads, with probabilities.

The embedded prior knows a fixed list of concepts (``sds-audio info --concepts``);
its :class:`~sds_audio.flow.anchor.PromptAnchor` maps any prompt onto one of
them with a linear classifier over the text encoder's pooled embedding. A
:class:`PromptReading` reports that mapping so a user can see what the prompt
became: the top concepts, the classifier's probability of the first one
(``confidence``) and the cosine similarity of the prompt to the nearest
training caption (``similarity``; the classifier alone is sure of itself even
for sounds it never heard of). A reading with ``confidence`` under
:data:`LOW_CONFIDENCE` or ``similarity`` under :data:`LOW_SIMILARITY` counts as
weak and the commands warn, naming the closest concepts.

Stable Audio Open reads free text and has no such list; its priors report no reading.
"""

from __future__ import annotations

from dataclasses import dataclass

#: thresholds of a weak reading, chosen with ``benchmarks/prompt_reading.py`` on the corpus's first
#: paraphrase set and 20 prompts of sounds the prior does not know (e.g. "a dog barking"): the pair
#: flags 0.3 % of the paraphrases the anchor reads correctly, 18.5 % of those it misreads and 85 % of the
#: off-list prompts (2026-12-07)
LOW_CONFIDENCE = 0.3
LOW_SIMILARITY = 0.6


@dataclass(frozen=True)
class PromptReading:
    """The concepts a prior read off a prompt.

    Attributes:
        prompt: the text as given.
        concepts: ``(concept name, probability)`` pairs, most probable first.
        confidence: probability of the first concept, in [0, 1].
        similarity: cosine similarity of the prompt's pooled embedding to the nearest training caption's.
    """

    prompt: str
    concepts: tuple[tuple[str, float], ...]
    confidence: float
    similarity: float

    @property
    def concept(self) -> str:
        """The concept the prior conditions on."""
        return self.concepts[0][0]

    @property
    def is_weak(self) -> bool:
        """True when the top concept's probability or the caption similarity is under its threshold."""
        return self.confidence < LOW_CONFIDENCE or self.similarity < LOW_SIMILARITY

    def summary(self) -> str:
        """One line for the command's summary, e.g. ``read as 'kick drum' (0.93)``."""
        return f"read as {self.concept!r} (p {self.confidence:.2f}, similarity {self.similarity:.2f})"

    def warning(self) -> str:
        """The advice printed for a weak reading."""
        closest = ", ".join(f"{name!r} ({p:.2f})" for name, p in self.concepts)
        return (f"the embedded prior cannot place the prompt {self.prompt!r} well: the closest concepts it knows "
                f"are {closest}; name one of them (list: sds-audio info --concepts) or use a prior that reads "
                f"free text (--prior stable-audio-open)")

    def to_dict(self) -> dict:
        return {"concepts": [[name, round(p, 4)] for name, p in self.concepts],
                "confidence": round(self.confidence, 4), "similarity": round(self.similarity, 4),
                "weak": self.is_weak}


__all__ = ["LOW_CONFIDENCE", "LOW_SIMILARITY", "PromptReading"]
