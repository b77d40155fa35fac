"""English text normalisation for speech: numbers, currency, ordinals, years, abbreviations, symbols.

:func:`normalize_text` rewrites written forms into the words a reader says,
before the phonemizer sees them (espeak-ng reads "$3.50" as "dollar three point
five zero" and "1999" as "nineteen hundred ninety-nine"; the rules here read
"three dollars fifty cents" and "nineteen ninety-nine"):

- cardinals with thousands separators and decimals ("12,500.75" -> "twelve
  thousand five hundred point seven five"), negative numbers;
- years 1100-1999 and 2010-2099 standing alone read as pairs ("1984" ->
  "nineteen eighty-four"), 2000-2009 as cardinals ("two thousand five");
- ordinals "1st", "22nd", "103rd", "4th";
- currency "$", "£", "€" before an amount, with cents / pence;
- percentages, "&", "+", "=", "@", "#" before a number, degree signs;
- common abbreviations (Mr., Mrs., Dr., St., etc., vs., e.g., i.e., No.);
- typographic quotes and dashes to ASCII.

Pure string functions, no state; the front end (:mod:`sds_audio.tts.frontend`)
calls :func:`normalize_text` first.
"""

from __future__ import annotations

import re

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "zero ten twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10 ** 12, "trillion"), (10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}
#: largest integer read digit group by digit group; longer digit strings are read digit by digit
MAX_CARDINAL = 10 ** 15 - 1

ABBREVIATIONS = {
    "mr.": "mister", "mrs.": "missus", "ms.": "miz", "dr.": "doctor", "st.": "saint", "jr.": "junior",
    "sr.": "senior", "prof.": "professor", "capt.": "captain", "gen.": "general", "lt.": "lieutenant",
    "col.": "colonel", "sgt.": "sergeant", "rev.": "reverend", "hon.": "honorable", "mt.": "mount",
    "ft.": "fort", "co.": "company", "corp.": "corporation", "inc.": "incorporated", "ltd.": "limited",
    "vs.": "versus", "etc.": "et cetera", "e.g.": "for example", "i.e.": "that is", "approx.": "approximately",
    "dept.": "department", "est.": "established", "jan.": "january", "feb.": "february", "mar.": "march",
    "apr.": "april", "jun.": "june", "jul.": "july", "aug.": "august", "sep.": "september",
    "sept.": "september", "oct.": "october", "nov.": "november", "dec.": "december",
}
_SYMBOLS = {"&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "%": " percent ", "°": " degrees ",
            "§": " section ", "×": " times "}
_TYPOGRAPHY = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": " - ", "\u2014": " - ",
               "\u2026": "...", "\u00a0": " "}
_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
             "€": ("euro", "euros", "cent", "cents")}


def _below_thousand(n: int) -> str:
    words = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words.append(f"{_ONES[hundreds]} hundred")
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_TENS[tens] + (f"-{_ONES[ones]}" if ones else ""))
    elif rest or not hundreds:
        words.append(_ONES[rest])
    return " ".join(words)


def digits_to_words(digits: str) -> str:
    """Read a digit string one digit at a time: ``"0042"`` -> ``"zero zero four two"``."""
    return " ".join(_ONES[int(d)] for d in digits)


def cardinal(n: int) -> str:
    """``n`` in words (``1234`` -> ``"one thousand two hundred thirty-four"``); negative numbers get "minus".

    Integers above :data:`MAX_CARDINAL` are read digit by digit.
    """
    if n < 0:
        return "minus " + cardinal(-n)
    if n > MAX_CARDINAL:
        return digits_to_words(str(n))
    if n < 1000:
        return _below_thousand(n)
    words = []
    for scale, name in _SCALES:
        count, n = divmod(n, scale)
        if count:
            words.append(f"{cardinal(count)} {name}")
    if n:
        words.append(_below_thousand(n))
    return " ".join(words)


def ordinal(n: int) -> str:
    """``n`` as an ordinal word (``21`` -> ``"twenty-first"``, ``100`` -> ``"one hundredth"``)."""
    words = cardinal(n)
    head, sep, last = words.rpartition(" ")
    prefix, dash, unit = last.rpartition("-")
    if unit in _ORDINAL_WORDS:
        unit = _ORDINAL_WORDS[unit]
    elif unit.endswith("y"):
        unit = unit[:-1] + "ieth"
    else:
        unit += "th"
    return head + sep + prefix + dash + unit


def year(n: int) -> str:
    """A year read as people say it: ``1984`` -> ``"nineteen eighty-four"``, ``1900`` -> ``"nineteen hundred"``,
    ``2005`` -> ``"two thousand five"``, ``2024`` -> ``"twenty twenty-four"``."""
    if 2000 <= n <= 2009 or not 1100 <= n <= 2099:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    return f"{cardinal(high)} {'oh ' + _ONES[low] if low < 10 else cardinal(low)}"


def _number_words(integer: str, fraction: str | None) -> str:
    digits = integer.replace(",", "")
    if len(digits) > 1 and digits.startswith("0"):
        words = digits_to_words(digits)
    else:
        words = cardinal(int(digits))
    if fraction:
        words += " point " + digits_to_words(fraction)
    return words


def _money(match: re.Match) -> str:
    one, many, small_one, small_many = _CURRENCY[match.group("cur")]
    integer = match.group("int").replace(",", "")
    scale = match.group("scale")
    fraction = match.group("frac")
    if scale:
        amount = _number_words(integer, fraction)
        return f" {amount} {scale.lower()} {many} "
    whole = int(integer)
    cents = int((fraction or "0").ljust(2, "0")[:2])
    parts = []
    if whole or not cents:
        parts.append(f"{cardinal(whole)} {one if whole == 1 else many}")
    if cents:
        parts.append(f"{cardinal(cents)} {small_one if cents == 1 else small_many}")
    return " " + " ".join(parts) + " "


def _ordinal_match(match: re.Match) -> str:
    return " " + ordinal(int(match.group(1))) + " "


def _number_match(match: re.Match) -> str:
    sign, integer, fraction = match.group("sign"), match.group("int"), match.group("frac")
    plain = integer.replace(",", "")
    if not fraction and "," not in integer and len(plain) == 4 and not sign and plain[0] != "0":
        words = year(int(plain))
    else:
        words = _number_words(integer, fraction)
    return " " + ("minus " if sign else "") + words + " "


_MONEY_RE = re.compile(r"(?P<cur>[$£€])\s?(?P<int>\d[\d,]*)(?:\.(?P<frac>\d+))?"
                       r"(?:\s?(?P<scale>thousand|million|billion|trillion)\b)?", re.IGNORECASE)
_ORDINAL_RE = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b", re.IGNORECASE)
_NUMBER_RE = re.compile(r"(?P<sign>(?<![\w.])-)?(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d+))?")
_TIME_RE = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_HASH_RE = re.compile(r"#\s?(?=\d)")
_ABBREV_RE = re.compile("|".join(re.escape(a) for a in sorted(ABBREVIATIONS, key=len, reverse=True)),
                        re.IGNORECASE)
_SPACES_RE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([,.;:!?])")


def _time_match(match: re.Match) -> str:
    hours, minutes = int(match.group(1)), int(match.group(2))
    if hours > 24 or minutes > 59:
        return match.group(0)
    if minutes == 0:
        return f" {cardinal(hours)} o'clock "
    return f" {cardinal(hours)} {'oh ' + _ONES[minutes] if minutes < 10 else cardinal(minutes)} "


def _abbrev_match(match: re.Match) -> str:
    start = match.start()
    text = match.string
    if start > 0 and (text[start - 1].isalnum() or text[start - 1] == "."):
        return match.group(0)
    return ABBREVIATIONS[match.group(0).lower()]


def normalize_text(text: str) -> str:
    """Spell out what a reader would say: numbers, money, ordinals, years, times, abbreviations, symbols.

    Args:
        text: raw English text.

    Returns:
        The same sentence in words, single-spaced, with the punctuation kept
        (``"Dr. Lee paid $3.50 on May 1st, 1999."`` ->
        ``"doctor Lee paid three dollars fifty cents on May first, nineteen ninety-nine."``).
    """
    for src, dst in _TYPOGRAPHY.items():
        text = text.replace(src, dst)
    text = _ABBREV_RE.sub(_abbrev_match, text)
    text = _MONEY_RE.sub(_money, text)
    text = _TIME_RE.sub(_time_match, text)
    text = _HASH_RE.sub(" number ", text)
    text = _ORDINAL_RE.sub(_ordinal_match, text)
    text = _NUMBER_RE.sub(_number_match, text)
    for src, dst in _SYMBOLS.items():
        text = text.replace(src, dst)
    text = _SPACES_RE.sub(" ", text).strip()
    return _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text)


__all__ = ["ABBREVIATIONS", "MAX_CARDINAL", "cardinal", "digits_to_words", "normalize_text", "ordinal", "year"]
