"""What the embedded prior understood of a prompt: readings, weak-reading warnings, run.json fields."""

from __future__ import annotations

import warnings

import pytest

from sds_audio.jobs import read_prompts
from sds_audio.priors.embedded import anchor_concept_names, load_embedded_prior
from sds_audio.priors.prompt_reading import LOW_CONFIDENCE, LOW_SIMILARITY, PromptReading


def _reading(confidence: float, similarity: float) -> PromptReading:
    return PromptReading("x", (("kick drum", confidence), ("snare drum", 1 - confidence)), confidence, similarity)


def test_a_reading_is_weak_below_either_threshold():
    assert not _reading(LOW_CONFIDENCE + 0.01, LOW_SIMILARITY + 0.01).is_weak
    assert _reading(LOW_CONFIDENCE - 0.01, 0.99).is_weak
    assert _reading(0.99, LOW_SIMILARITY - 0.01).is_weak
    r = _reading(0.2, 0.3)
    assert "'kick drum' (0.20)" in r.warning() and "--prior stable-audio-open" in r.warning()
    assert r.to_dict() == {"concepts": [["kick drum", 0.2], ["snare drum", 0.8]], "confidence": 0.2,
                           "similarity": 0.3, "weak": True}


def test_anchor_concept_names_are_the_sorted_catalogue():
    names = anchor_concept_names(98)
    assert names == sorted(names) and "kick drum" in names and len(set(names)) == 98
    assert anchor_concept_names(3) == ["concept 0", "concept 1", "concept 2"]


@pytest.fixture(scope="module")
def prior():
    return load_embedded_prior()


def test_the_shipped_prior_reads_named_concepts_surely_and_unknown_sounds_weakly(prior):
    kick = prior.read_prompt("kick drum, bass, reverb")
    assert kick.concept == "kick drum" and kick.confidence > 0.9 and not kick.is_weak
    pot = prior.read_prompt("hitting a pot with a wooden spoon")
    assert pot.concept == "metal pot struck" and not pot.is_weak
    dog = prior.read_prompt("a dog barking")
    assert dog.is_weak and len(dog.concepts) == 3
    assert dog.concepts[0][1] >= dog.concepts[1][1] >= dog.concepts[2][1]


def test_read_prompts_warns_once_per_weak_prompt_and_records_every_prompt(prior):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fields = read_prompts(prior, ["flute", "a dog barking"])
    assert [f["prompt"] for f in fields] == ["flute", "a dog barking"]
    assert [f["weak"] for f in fields] == [False, True]
    assert fields[0]["concepts"][0][0] == "flute" and fields[0]["summary"].startswith("read as 'flute'")
    assert len(caught) == 1 and "a dog barking" in str(caught[0].message)


def test_priors_without_a_concept_list_report_no_reading():
    class FreeText:
        pass

    assert read_prompts(FreeText(), ["anything"]) is None
