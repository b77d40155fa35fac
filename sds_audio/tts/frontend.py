"""Text front end: sentence splitting, normalisation, espeak-ng phonemes (or characters), symbol ids.

Two symbol sets, fixed so a model's embedding table never depends on its data:

- ``"phonemes"``: the IPA characters espeak-ng 1.5x writes for English
  (``espeak-ng -q --ipa -v en-us``; one symbol per character, stress and length
  marks included), plus word spaces and punctuation;
- ``"characters"``: lowercase letters, apostrophe, word spaces and punctuation
  (the fallback where espeak-ng is not installed; a model is trained with one
  set and keeps it).

espeak-ng runs as a separate program (``subprocess``), not through a Python
binding: the binary is GPL, the library stays MIT. Punctuation carries prosody
(pauses, question intonation), so the text is cut at punctuation, every piece
is phonemized on its own line, and the punctuation symbols are put back between
the pieces. Symbols outside the set are dropped with a warning
(:class:`UnknownSymbolWarning`); text that keeps no speakable symbol raises
:class:`~sds_audio.errors.SDSAudioError`.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import unicodedata
import warnings
from dataclasses import dataclass

from ..errors import SDSAudioError
from .normalize import normalize_text

PAD = "_"
PUNCTUATION = ",.!?;:-"
#: IPA characters espeak-ng writes for en-us / en-gb (vowels, consonants, stress, length, tie, syllabic marks)
IPA = "aæɐɑɒbdðeəɚɛɜɝfɡhiɪjklmnŋoɔprɹɾstθuʊʌvwxzʒʃʔᵻɬʲçβɣχʁˈˌːˑ̩̃ʰʧʤʍɫ"
LETTERS = "abcdefghijklmnopqrstuvwxyz'"
SYMBOL_SETS = {
    "phonemes": PAD + " " + PUNCTUATION + IPA,
    "characters": PAD + " " + PUNCTUATION + LETTERS,
}
#: longest text (characters, after normalisation) one sentence may have before it is cut at commas / spaces
MAX_SENTENCE_CHARS = 300
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_PIECE_RE = re.compile(r"([,.!?;:]+|\s-\s)")
#: characters that carry no sound and are dropped without a warning (quotes, brackets, markup)
SILENT = "\"'()[]{}<>*_/\\|~`^"


class UnknownSymbolWarning(UserWarning):
    """Characters the symbol set has no entry for were dropped."""


def split_sentences(text: str, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """Cut text into sentences at ``. ! ?`` (then at commas / spaces where one is longer than ``max_chars``).

    Returns:
        Non-empty stripped sentences, in order.
    """
    out: list[str] = []
    for sentence in _SENTENCE_END_RE.split(text.strip()):
        sentence = " ".join(sentence.split())
        while len(sentence) > max_chars:
            cut = sentence.rfind(", ", 0, max_chars)
            cut = cut + 1 if cut > max_chars // 3 else sentence.rfind(" ", 0, max_chars)
            if cut <= 0:
                cut = max_chars
            out.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            out.append(sentence)
    return out


@functools.lru_cache(maxsize=1)
def find_espeak() -> str | None:
    """Path of the ``espeak-ng`` binary, or None."""
    return shutil.which("espeak-ng")


def espeak_ipa(lines: list[str], voice: str = "en-us") -> list[str]:
    """IPA of each line (no punctuation inside a line), one espeak-ng run for all of them.

    espeak-ng writes one output line per input line unless it splits a very long
    clause; when the counts disagree each line is run on its own (and a split
    line's parts are joined with a space).

    Raises:
        SDSAudioError: espeak-ng is not installed or fails.
    """
    binary = find_espeak()
    if binary is None:
        raise SDSAudioError("espeak-ng is not installed: install it (Debian: `apt-get install espeak-ng`) "
                            "or use a model trained on characters")
    if not lines:
        return []

    def run(text: str) -> list[str]:
        try:
            proc = subprocess.run([binary, "-q", "--ipa", "-v", voice], input=text, capture_output=True,
                                  text=True, timeout=120, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise SDSAudioError(f"espeak-ng failed on the text ({exc}); check `espeak-ng --version`") from exc
        return [line.strip() for line in proc.stdout.splitlines() if line.strip()]

    clean = [" ".join(line.split()) for line in lines]
    speakable = [i for i, line in enumerate(clean) if any(ch.isalnum() for ch in line)]
    out = [""] * len(lines)
    if not speakable:
        return out
    joined = run("\n".join(clean[i] for i in speakable) + "\n")
    if len(joined) == len(speakable):
        for i, ipa in zip(speakable, joined):
            out[i] = ipa
        return out
    for i in speakable:
        out[i] = " ".join(run(clean[i] + "\n"))
    return out


def _pieces(text: str) -> list[tuple[str, str]]:
    """``(words, punctuation)`` pairs: the text between punctuation marks and the marks that follow it."""
    parts = _PIECE_RE.split(text)
    out = []
    for i in range(0, len(parts), 2):
        words = parts[i].strip()
        punct = parts[i + 1].strip() if i + 1 < len(parts) else ""
        out.append((words, punct))
    return out


@dataclass(frozen=True)
class Frontend:
    """Text -> symbol ids for one symbol set.

    Args:
        symbols: ``"phonemes"`` (espeak-ng IPA) or ``"characters"``.
        language: espeak-ng voice used for phonemes (``"en-us"``).
    """

    symbols: str = "phonemes"
    language: str = "en-us"

    def __post_init__(self) -> None:
        if self.symbols not in SYMBOL_SETS:
            raise SDSAudioError(f"symbol set must be one of {sorted(SYMBOL_SETS)}, got {self.symbols!r}")

    @property
    def alphabet(self) -> str:
        return SYMBOL_SETS[self.symbols]

    @property
    def n_symbols(self) -> int:
        return len(self.alphabet)

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {ch: i for i, ch in enumerate(self.alphabet) if ch != PAD}

    def symbol_strings(self, texts: list[str], normalize: bool = True) -> list[str]:
        """Each text as a string over :attr:`alphabet` (before dropping unknown symbols)."""
        if normalize:
            texts = [normalize_text(t) for t in texts]
        pieces = [_pieces(t) for t in texts]
        if self.symbols == "phonemes":
            flat = [words for row in pieces for words, _ in row]
            ipa = iter(espeak_ipa(flat, self.language))
            converted = [[(next(ipa), punct) for _, punct in row] for row in pieces]
        else:
            converted = [[("".join(ch for ch in unicodedata.normalize("NFKD", words).lower()
                                   if not unicodedata.combining(ch)), punct) for words, punct in row]
                         for row in pieces]
        out = []
        for row in converted:
            s = ""
            for words, punct in row:
                if words:
                    s += (" " if s and not s.endswith(" ") else "") + words
                if punct:
                    mark = "-" if punct == "-" else punct[0]
                    s += mark + " "
            out.append(" ".join(s.split()))
        return out

    def encode(self, text: str, normalize: bool = True) -> list[int]:
        """Symbol ids of one text (unknown symbols dropped with an :class:`UnknownSymbolWarning`).

        Raises:
            SDSAudioError: the text is empty or has nothing speakable.
        """
        return self.encode_batch([text], normalize)[0]

    def encode_batch(self, texts: list[str], normalize: bool = True) -> list[list[int]]:
        """:meth:`encode` for many texts with one espeak-ng run."""
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise SDSAudioError("the text is empty: give at least one word to speak")
        ids_all = []
        for text, s in zip(texts, self.symbol_strings(texts, normalize)):
            ids, unknown = [], []
            for ch in s:
                if ch in self._index:
                    ids.append(self._index[ch])
                elif not (unicodedata.combining(ch) or ch in SILENT):
                    unknown.append(ch)
            space = self._index[" "]
            ids = [i for k, i in enumerate(ids) if i != space or (0 < k and ids[k - 1] != space)]
            while ids and ids[-1] == space:
                ids.pop()
            if unknown:
                warnings.warn(f"dropped symbols the {self.symbols} set does not have: "
                              f"{''.join(sorted(set(unknown)))!r} (in {text[:40]!r})", UnknownSymbolWarning,
                              stacklevel=3)
            if not any(self.alphabet[i] not in PAD + " " + PUNCTUATION for i in ids):
                raise SDSAudioError(f"nothing speakable in {text[:60]!r}: give words in English")
            ids_all.append(ids)
        return ids_all

    def decode(self, ids: list[int]) -> str:
        """Symbol ids back to their string (for inspection)."""
        return "".join(self.alphabet[i] for i in ids)


__all__ = ["Frontend", "MAX_SENTENCE_CHARS", "SYMBOL_SETS", "UnknownSymbolWarning", "espeak_ipa", "find_espeak",
           "split_sentences"]
