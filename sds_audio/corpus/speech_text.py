"""English sentences for the speech corpus, from public-domain text installed on this machine.

Source: the World English Bible (WEB, with Deuterocanon), Debian package
``sword-text-web`` (SWORD module ``engWEB2015eb``), read with the ``diatheke``
command of the Debian package ``diatheke``. Its copyright file states:
"The World English Bible is in the Public Domain. That means that it is not
copyrighted." (the name "World English Bible" is a trademark of eBible.org and
must not be used for a changed text; the corpus uses single sentences and
names its source as "sentences from the World English Bible").

:func:`read_web_verses` dumps every verse (about 37,800 lines in about 8 s);
:func:`extract_sentences` cuts them into sentences and keeps those a speech
corpus wants: 4 to ``max_words`` words, plain ASCII letters and ``,;:.?!'-``
only, a capital first letter (no digits, brackets or fragments), at most one capitalised word
inside the sentence besides "I", "God" and "Lord" (few proper names, which
recognisers and phonemizers both stumble on), no repeats (case-insensitive).
The WEB yields far more than 5,000 such sentences.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from ..errors import SDSAudioError

MODULE = "engWEB2015eb"
SOURCE_NAME = "World English Bible (WEB, 2015 edition with Deuterocanon), SWORD module engWEB2015eb"
LICENCE = "public domain (Debian package sword-text-web, copyright file: 'The World English Bible is in the Public Domain')"
INSTALL_HINT = "install the sentence source: `apt-get install diatheke sword-text-web`"
COMMON_CAPITALS = frozenset({"I", "God", "Lord", "God's", "Lord's", "I'm", "I'll", "I've", "I'd"})

_DROP_ELEMENTS_RE = re.compile(r"<(title|note|seg type=\"keyword\")[^>]*>.*?</(title|note|seg)>", re.DOTALL)
_ADJACENT_WORDS_RE = re.compile(r"</w>\s*<w")
_TAG_RE = re.compile(r"<[^>]*>")
_REFERENCE_RE = re.compile(r"^.*?\b(?:[1-4] )?[A-Z][A-Za-z ]*? \d+:\d+: ")
_SENTENCE_RE = re.compile(r"[^.?!]+[.?!]")
_ALLOWED_RE = re.compile(r"^[A-Z][A-Za-z ,;:'\-]*[.?!]$")


def read_web_verses(timeout_s: float = 300.0) -> list[str]:
    """Plain text of every verse of the WEB (reference prefix removed), in canonical order.

    Raises:
        SDSAudioError: diatheke or the module is not installed.
    """
    binary = shutil.which("diatheke")
    if binary is None:
        raise SDSAudioError(f"diatheke is not installed: {INSTALL_HINT}")
    try:
        proc = subprocess.run([binary, "-b", MODULE, "-f", "internal", "-k", "Gen 1:1-Rev 22:21"],
                              capture_output=True, text=True, timeout=timeout_s, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SDSAudioError(f"diatheke could not read {MODULE} ({exc}): {INSTALL_HINT}") from exc
    verses = []
    for line in proc.stdout.splitlines():
        line = _DROP_ELEMENTS_RE.sub(" ", line)
        line = _ADJACENT_WORDS_RE.sub("</w> <w", line)
        line = _TAG_RE.sub("", line)
        match = _REFERENCE_RE.match(line)
        if match is None:
            continue
        text = " ".join(line[match.end():].split())
        if text:
            verses.append(text)
    if len(verses) < 1000:
        raise SDSAudioError(f"diatheke returned {len(verses)} verses of {MODULE}; {INSTALL_HINT}")
    return verses


def clean_sentence(sentence: str) -> str:
    """Typographic quotes to ASCII, double quotes removed, spaces collapsed."""
    sentence = sentence.replace("\u2019", "'").replace("\u2018", "'").replace("\u2014", " - ")
    sentence = sentence.replace("\u201c", "").replace("\u201d", "").replace('"', "")
    return " ".join(sentence.split()).strip(" '")


def keep_sentence(sentence: str, min_words: int = 4, max_words: int = 16) -> bool:
    """The selection rules of the module docstring."""
    if not _ALLOWED_RE.match(sentence):
        return False
    words = sentence.split()
    if not min_words <= len(words) <= max_words:
        return False
    inner_capitals = [w for w in words[1:] if w[0].isupper() and w.strip(",;:.?!") not in COMMON_CAPITALS]
    return len(inner_capitals) <= 1


def extract_sentences(verses: list[str], min_words: int = 4, max_words: int = 16) -> list[str]:
    """Distinct sentences of ``verses`` that pass :func:`keep_sentence`, in order of first appearance."""
    seen: set[str] = set()
    out = []
    for verse in verses:
        for raw in _SENTENCE_RE.findall(verse):
            sentence = clean_sentence(raw)
            key = sentence.lower()
            if key in seen or not keep_sentence(sentence, min_words, max_words):
                continue
            seen.add(key)
            out.append(sentence)
    return out


__all__ = ["LICENCE", "MODULE", "SOURCE_NAME", "clean_sentence", "extract_sentences", "keep_sentence",
           "read_web_verses"]
