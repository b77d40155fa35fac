"""Text normalisation and the espeak-ng / character front end."""

from __future__ import annotations

import shutil
import warnings

import pytest

from sds_audio.errors import SDSAudioError
from sds_audio.tts.frontend import PUNCTUATION, SYMBOL_SETS, Frontend, UnknownSymbolWarning, split_sentences
from sds_audio.tts.normalize import cardinal, normalize_text, ordinal, year

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (40, "forty"), (42, "forty-two"), (100, "one hundred"),
    (101, "one hundred one"), (999, "nine hundred ninety-nine"), (1000, "one thousand"),
    (1234, "one thousand two hundred thirty-four"), (1_000_000, "one million"),
    (2_000_017, "two million seventeen"), (-5, "minus five"),
])
def test_cardinal(n, words):
    assert cardinal(n) == words


@pytest.mark.parametrize("n, words", [(1, "first"), (2, "second"), (3, "third"), (5, "fifth"), (12, "twelfth"),
                                      (20, "twentieth"), (21, "twenty-first"), (100, "one hundredth"),
                                      (103, "one hundred third")])
def test_ordinal(n, words):
    assert ordinal(n) == words


@pytest.mark.parametrize("n, words", [(1984, "nineteen eighty-four"), (1900, "nineteen hundred"),
                                      (1905, "nineteen oh five"), (2005, "two thousand five"),
                                      (2024, "twenty twenty-four"), (3000, "three thousand")])
def test_year(n, words):
    assert year(n) == words


@pytest.mark.parametrize("text, expected", [
    ("Dr. Lee paid $3.50 on May 1st, 1999.",
     "doctor Lee paid three dollars fifty cents on May first, nineteen ninety-nine."),
    ("It cost $1 and 12,500.75 people came.", "It cost one dollar and twelve thousand five hundred point seven "
                                              "five people came."),
    ("50% of 8 & -4", "fifty percent of eight and minus four"),
    ("Meet at 10:30 or 7:05 in room #12.", "Meet at ten thirty or seven oh five in room number twelve."),
    ("Mr. Smith vs. Mrs. Jones, e.g. here", "mister Smith versus missus Jones, for example here"),
    ("\u201cQuoted\u201d \u2014 text\u2026", '"Quoted" - text...'),
    ("\u00a35 million and \u20ac0.99", "five million pounds and ninety-nine cents"),
    ("Agent 007", "Agent zero zero seven"),
])
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected


def test_split_sentences_keeps_every_word_and_respects_the_limit():
    text = "One two. Three four? Five!  " + ", ".join(["word"] * 200) + "."
    parts = split_sentences(text, max_chars=120)
    assert parts[:3] == ["One two.", "Three four?", "Five!"]
    assert all(0 < len(p) <= 120 for p in parts)
    assert " ".join(parts).replace(",", "").split() == text.replace(",", "").split()


def test_character_frontend_numbers_punctuation_and_unknown_symbols():
    fe = Frontend("characters")
    ids = fe.encode("Dr. Lee, 3 cats!")
    assert fe.decode(ids) == "doctor lee, three cats!"
    assert all(0 < i < fe.n_symbols for i in ids)            # 0 is padding, never produced
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = fe.encode("Caf\u00e9 \u65e5\u672c ok")             # accents folded, CJK dropped with a warning
    assert fe.decode(ids) == "cafe ok"
    assert [w.category for w in caught] == [UnknownSymbolWarning]
    assert "\u65e5" in str(caught[0].message)
    assert fe.decode(fe.encode('He said "yes" (twice)')) == "he said yes twice"   # quotes, brackets: silent


@pytest.mark.parametrize("text", ["", "   \n\t", "\u65e5\u672c", "?!.,"])
def test_frontend_rejects_text_with_nothing_to_say(text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownSymbolWarning)
        with pytest.raises(SDSAudioError):
            Frontend("characters").encode(text)


@needs_espeak
def test_phoneme_frontend_reads_numbers_and_keeps_punctuation():
    fe = Frontend("phonemes")
    a, b = fe.encode_batch(["I have 3 cats, really?", "I have three cats, really?"])
    assert a == b                                            # the number was spelled out before espeak-ng
    s = fe.decode(a)
    assert s.count(",") == 1 and s.endswith("?")
    assert set(s) <= set(SYMBOL_SETS["phonemes"])
    assert "θɹ" in s                                         # "three"
    words = [w for w in s.replace(",", " ").replace("?", " ").split()]
    assert len(words) == 5


@needs_espeak
def test_phoneme_frontend_batches_like_single_calls():
    fe = Frontend("phonemes")
    texts = ["Hello there.", "A rather long clause " * 12 + "ends here.", "Yes, no; maybe: fine!"]
    assert fe.encode_batch(texts) == [fe.encode(t) for t in texts]
    s = fe.decode(fe.encode(texts[2]))
    assert [ch for ch in s if ch in PUNCTUATION] == [",", ";", ":", "!"]
