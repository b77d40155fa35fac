"""Captions that are true of the audio, in varied wording; paraphrases kept out of training.

A clip's attributes (register, dynamics, note length, dry / reverberant,
material, striker, and a few concept-specific ones such as open / closed
hi-hat or heavy / light rain) are facts set by the builder. :func:`caption`
turns them into one caption, choosing at random which attributes to mention,
which synonym to use and which template / word order. :func:`paraphrases`
writes evaluation prompts with templates and synonyms that the training
captions never use (they start with "a recording of", "the sound of" or
"someone", or join attributes with "and"), so they can never equal a training
caption; :func:`caption_conflicts` lists words of a caption that contradict
the attributes (the tests and the builder use it).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

from .concepts import DRUM, MELODIC, SFX, STRUCK, TEXTURE, Concept


@dataclass(frozen=True)
class Words:
    """Ways to say one attribute value: before the noun, in a tag list, as an adverb."""

    adj: tuple[str, ...] = ()
    tag: tuple[str, ...] = ()
    adverb: tuple[str, ...] = ()


VOCAB: dict[str, dict[str, Words]] = {
    "register": {
        "low": Words(("low", "low-pitched", "deep"), ("low register", "low", "low pitch", "low-pitched")),
        "mid": Words(("mid-range", "mid-register", "medium-pitched"),
                     ("mid register", "middle register", "mid-range", "medium pitch")),
        "high": Words(("high", "high-pitched"), ("high register", "high", "high pitch", "high-pitched")),
    },
    "dynamics": {
        "soft": Words(("soft", "quiet", "gentle"), ("soft", "quiet", "played softly", "gentle"),
                      ("softly", "gently", "quietly")),
        "medium": Words(("moderate",), ("moderate level", "medium volume", "medium dynamics"), ("moderately",)),
        "loud": Words(("loud", "forceful", "strong"), ("loud", "played loudly", "forceful"),
                      ("loudly", "forcefully", "with force")),
    },
    "length": {
        "short": Words(("short", "staccato", "brief"), ("short", "short note", "staccato")),
        "long": Words(("long", "sustained", "held"), ("long", "long note", "sustained", "held")),
    },
    "space": {
        "dry": Words(("dry",), ("dry", "no reverb", "without reverb", "close-miked")),
        "reverberant": Words(("reverberant", "echoing"), ("reverb", "with reverb", "reverberant", "echoing")),
        "hall": Words(("reverberant", "echoing"), ("reverb", "with reverb", "reverberant", "in a large hall",
                                                   "with a long reverb tail")),
    },
    "hihat": {
        "open": Words(("open",), ("open",)),
        "closed": Words(("closed",), ("closed",)),
        "pedal": Words(("pedal", "foot"), ("pedal", "played with the foot pedal")),
    },
    "triangle": {
        "open": Words(("ringing", "open"), ("ringing", "open")),
        "muted": Words(("muted", "damped"), ("muted", "damped")),
    },
    "kit": {
        "electronic": Words(("electronic", "drum machine", "808"), ("electronic", "drum machine", "808")),
        "acoustic": Words(("acoustic",), ("acoustic kit", "acoustic")),
    },
    "wind": {
        "gusty": Words(("gusty", "gusting"), ("gusty", "in gusts")),
        "steady": Words(("steady", "constant"), ("steady", "constant", "continuous")),
    },
    "rain": {
        "heavy": Words(("heavy", "pouring", "intense"), ("heavy", "pouring", "intense")),
        "light": Words(("light", "sparse"), ("light", "sparse drops")),
    },
    "engine": {
        "idling": Words(("idling",), ("idling", "ticking over")),
        "revving": Words(("revving", "accelerating"), ("revving", "revving up", "accelerating")),
    },
    "speed": {
        "fast": Words(("fast", "speeding"), ("fast", "at high speed", "speeding"), ("quickly", "fast")),
        "slow": Words(("slow",), ("slow", "at low speed"), ("slowly",)),
    },
    "mains": {
        "50": Words(("50 Hz", "50 hertz"), ("50 Hz", "50 hertz")),
        "60": Words(("60 Hz", "60 hertz"), ("60 Hz", "60 hertz")),
    },
    "buzz": {
        "buzzing": Words(("buzzing", "buzzy"), ("buzzing", "buzzy")),
        "clean": Words(("clean", "smooth"), ("clean", "smooth")),
    },
    "knocks": {
        "1": Words(("single",), ("a single knock", "one knock", "once")),
        "2": Words(("double",), ("two knocks", "twice", "a double knock")),
        "3": Words(("triple",), ("three knocks", "three times")),
    },
}

# Dynamics of sounds that are not played (sound effects, textures): a level, not a playing style.
LEVEL_VOCAB = {
    "soft": Words(("quiet", "soft", "faint"), ("quiet", "soft", "faint", "low level")),
    "medium": Words(("moderate",), ("moderate level", "medium volume")),
    "loud": Words(("loud",), ("loud", "loud level")),
}
# Dynamics of a strike: how hard the object is hit.
STRIKE_VOCAB = {
    "soft": Words(("soft", "gentle", "light"), ("soft", "gentle", "lightly"), ("softly", "gently", "lightly")),
    "medium": Words(("moderate",), ("moderate strength", "medium force"), ("moderately",)),
    "loud": Words(("loud", "hard", "forceful"), ("loud", "hard", "forceful"), ("hard", "forcefully", "loudly")),
}

MATERIAL_WORDS = {"metal": ("metal",), "wood": ("wooden",), "glass": ("glass",), "ceramic": ("ceramic", "porcelain"),
                  "plastic": ("plastic",)}
GERUND = {"struck": "striking", "hit": "hitting", "banged": "banging", "rung": "ringing", "clanged": "clanging",
          "knocked": "knocking on", "knocked on": "knocking on", "knocking on": "knocking on", "tapped": "tapping",
          "clinked": "clinking", "drummed on": "drumming on", "flicked": "flicking"}
ACTION_NOUN = {"metal": ("hit", "strike", "clang"), "glass": ("tap", "clink", "hit"), "ceramic": ("tap", "hit"),
               "wood": ("knock", "hit"), "plastic": ("tap", "hit", "thump")}
PLURAL_STRIKERS = ("knuckles",)
# Attribute order of adjectives before a noun (dynamics, length, register, then specific ones).
ADJ_ORDER = ("dynamics", "length", "speed", "rain", "wind", "engine", "buzz", "mains", "kit", "register", "hihat",
             "triangle", "space")
# Training captions never use these; paraphrases always do (so the two sets are disjoint).
PARAPHRASE_MARKERS = ("a recording of ", "the sound of ", "someone ", " and ")


# Nouns that take no indefinite article ("loud applause", not "a loud applause").
MASS_NOUNS = ("applause", "rain", "rainfall", "gunfire", "breathing", "surf", "birdsong", "traffic", "strings",
              "moving air", "falling rain", "rain on the ground", "wind noise")
# Words naming a material inside an object name ("plank of wood", "cast iron pan").
MATERIAL_DETECT = {"metal": ("metal", "metallic", "steel", "iron"), "wood": ("wood", "wooden", "timber", "lumber"),
                   "glass": ("glass", "crystal"), "ceramic": ("ceramic", "porcelain", "china"),
                   "plastic": ("plastic",)}


def article(phrase: str) -> str:
    """``"a"`` or ``"an"`` for a phrase ("an upright bass", "an 808 kick")."""
    return "an" if phrase[:1].lower() in "aeiou8" else "a"


def takes_article(phrase: str) -> bool:
    """False for plurals ("ocean waves", "bongos") and mass nouns ("applause")."""
    last = phrase.split()[-1].lower()
    if any(phrase.lower().endswith(m) for m in MASS_NOUNS):
        return False
    return not (last.endswith("s") and not last.endswith(("ss", "us")))


def with_article(phrase: str) -> str:
    """``phrase`` with "a" / "an" in front, unless it is plural or a mass noun."""
    return f"{article(phrase)} {phrase}" if takes_article(phrase) else phrase


def captioned_attributes(concept: Concept, attributes: dict) -> dict[str, str]:
    """The attributes of a clip that captions may mention, as ``{name: vocabulary key}``."""
    out: dict[str, str] = {}
    for key in ("register", "dynamics", "length", "hihat", "triangle", "kit", "wind", "rain", "engine", "speed",
                "mains", "buzz", "knocks"):
        if key in attributes and attributes[key] is not None:
            out[key] = str(attributes[key])
    if attributes.get("space") == "reverberant":
        out["space"] = "hall" if attributes.get("rt60_s", 0.0) >= 1.6 else "reverberant"
    elif attributes.get("space") == "dry":
        out["space"] = "dry"
    return out


def vocab(concept: Concept, key: str) -> dict[str, Words]:
    """The vocabulary of attribute ``key`` for ``concept`` (dynamics depend on the kind of sound)."""
    if key == "dynamics" and concept.kind in (SFX, TEXTURE):
        return LEVEL_VOCAB
    if key == "dynamics" and concept.kind == STRUCK:
        return STRIKE_VOCAB
    return VOCAB[key]


def _words(concept: Concept, key: str, value: str, form: str) -> tuple[str, ...]:
    words = getattr(vocab(concept, key)[value], form)
    if key == "register":
        words = words + tuple(concept.register_words.get(value, ()))
    return words


def _pick(rng: np.random.Generator, options) -> str:
    options = list(options)
    return options[int(rng.integers(0, len(options)))]


def _mentioned(rng: np.random.Generator, attrs: dict[str, str]) -> list[str]:
    """Which attributes this caption mentions (random subset, at least one most of the time)."""
    chosen = [k for k in attrs if rng.random() < (0.3 if attrs[k] in ("medium", "acoustic") else 0.75)]
    if not chosen and attrs and rng.random() < 0.9:
        chosen = [_pick(rng, sorted(attrs))]
    return [k for k in ADJ_ORDER + ("knocks",) if k in chosen]


def _name(concept: Concept, rng: np.random.Generator) -> str:
    return concept.names[0] if rng.random() < 0.55 else _pick(rng, concept.names)


def _instrument_caption(concept: Concept, attrs: dict[str, str], rng: np.random.Generator) -> str:
    """Melodic notes, drum hits and sound effects: a name, a unit noun and attribute words."""
    keys = _mentioned(rng, attrs)
    name = _name(concept, rng)
    unit = concept.unit
    noun = f"{name} {unit}".strip() if unit and rng.random() < 0.7 else name
    style = int(rng.integers(0, 6))
    if style == 0 or (style == 5 and not keys):              # "a loud low piano note, dry"
        adj_keys = [k for k in keys if k != "space" or rng.random() < 0.3]
        adjs = [_pick(rng, _words(concept, k, attrs[k], "adj")) for k in adj_keys]
        tags = [_pick(rng, _words(concept, k, attrs[k], "tag")) for k in keys if k not in adj_keys]
        head = " ".join(adjs + [noun])
        return ", ".join([with_article(head)] + tags)
    if style == 1:                                          # "piano, low register, loud"
        tags = [_pick(rng, _words(concept, k, attrs[k], "tag")) for k in keys]
        rng.shuffle(tags)
        return ", ".join([noun] + tags)
    if style == 2:                                          # "soft high flute"
        adjs = [_pick(rng, _words(concept, k, attrs[k], "adj")) for k in keys if k != "space"]
        tail = [_pick(rng, _words(concept, "space", attrs["space"], "tag"))] if "space" in keys else []
        return ", ".join([" ".join(adjs + [noun])] + tail)
    if style == 3 and concept.kind == MELODIC and unit:     # "piano playing a short low note"
        adjs = [_pick(rng, _words(concept, k, attrs[k], "adj")) for k in keys if k != "space"]
        tail = [_pick(rng, _words(concept, "space", attrs["space"], "tag"))] if "space" in keys else []
        return ", ".join([f"{name} playing " + with_article(" ".join(adjs + [unit]))] + tail)
    if style == 4 and "dynamics" in keys and concept.kind in (MELODIC, DRUM):   # "a piano note played softly"
        rest = [k for k in keys if k != "dynamics"]
        adjs = [_pick(rng, _words(concept, k, attrs[k], "adj")) for k in rest if k != "space"]
        tail = [_pick(rng, _words(concept, "space", attrs["space"], "tag"))] if "space" in rest else []
        verb = "played" if concept.kind == MELODIC else "hit"
        adverb = _pick(rng, _words(concept, "dynamics", attrs["dynamics"], "adverb"))
        head = with_article(" ".join(adjs + [noun if concept.kind == MELODIC else name])) + f" {verb} {adverb}"
        return ", ".join([head] + tail)
    # "kick drum, bass, reverb": terse tag list with the name first, adjectives as tags
    tags = [_pick(rng, _words(concept, k, attrs[k], "adj" if rng.random() < 0.5 else "tag")) for k in keys]
    return ", ".join([name] + tags)


def _object_phrase(concept: Concept, material: str, rng: np.random.Generator, with_material: float = 0.6) -> str:
    name = _name(concept, rng)
    mat_words = MATERIAL_WORDS[material]
    if not any(w in name.lower().split() for w in MATERIAL_DETECT[material]) and rng.random() < with_material:
        name = f"{_pick(rng, mat_words)} {name}"
    return name


def _striker_phrase(striker: str) -> str:
    return striker if striker in PLURAL_STRIKERS else with_article(striker)


def _struck_caption(concept: Concept, attrs: dict[str, str], attributes: dict, rng: np.random.Generator) -> str:
    """Struck objects: "a metal pot struck with a wooden spoon", "hitting a pot hard with a wooden spoon".

    Dynamics describe the strike (an adverb or the adjective of "hit" / "tap"),
    register the object ("a high-pitched glass bottle").
    """
    material = attributes["material"]
    striker = attributes["striker"]
    keys = _mentioned(rng, attrs)
    verb = _pick(rng, concept.settings["verbs"])
    obj = _object_phrase(concept, material, rng)
    use_striker = rng.random() < 0.7
    with_striker = f" with {_striker_phrase(striker)}" if use_striker else ""
    obj_adjs = [_pick(rng, _words(concept, k, attrs[k], "adj")) for k in keys if k == "register"]
    tags = [_pick(rng, _words(concept, k, attrs[k], "tag")) for k in keys if k in ("space", "knocks")]
    dyn = "dynamics" in keys
    adverb = f" {_pick(rng, _words(concept, 'dynamics', attrs['dynamics'], 'adverb'))}" if dyn else ""
    the_obj = with_article(" ".join(obj_adjs + [obj]))
    style = int(rng.integers(0, 5))
    if style == 0:       # "a metal pot struck hard with a wooden spoon, reverberant"
        if verb == "knocked on":
            head = f"{_pick(rng, ('knocking', 'knocks'))}{adverb} on {the_obj}{with_striker}"
        else:
            head = f"{the_obj} {verb}{adverb}{with_striker}"
        return ", ".join([head] + tags)
    if style == 1:       # "hitting a pot with a wooden spoon"
        gerund = GERUND.get(verb, "hitting")
        if gerund.endswith(" on"):
            head = f"{gerund[:-3]}{adverb} on {the_obj}{with_striker}"
        else:
            head = f"{gerund} {the_obj}{adverb}{with_striker}"
        return ", ".join([head] + tags)
    if style == 2:       # "pot, metal, wooden spoon, loud"
        name = _name(concept, rng)
        parts = [name]
        if not any(w in name.lower().split() for w in MATERIAL_DETECT[material]):
            parts.append(_pick(rng, MATERIAL_WORDS[material]))
        if use_striker:
            parts.append(striker)
        parts += [_pick(rng, _words(concept, k, attrs[k], "tag")) for k in keys]
        return ", ".join(parts)
    if style == 3:       # "a soft tap on a glass bottle"
        noun = _pick(rng, ACTION_NOUN[material])
        dyn_adj = [_pick(rng, _words(concept, "dynamics", attrs["dynamics"], "adj"))] if dyn else []
        head = with_article(" ".join(dyn_adj + [noun])) + f" on {the_obj}{with_striker}"
        return ", ".join([head] + tags)
    # "glass bottle tapped with a pencil, high-pitched, loud"
    head = f"{obj} {verb.replace(' on', '')}{with_striker}"
    return ", ".join([head] + [_pick(rng, _words(concept, k, attrs[k], "tag")) for k in keys])


def _texture_caption(concept: Concept, attrs: dict[str, str], rng: np.random.Generator) -> str:
    keys = _mentioned(rng, attrs)
    name = _name(concept, rng)
    style = int(rng.integers(0, 3))
    if style == 0:       # "loud gusty wind"
        adjs = [_pick(rng, _words(concept, k, attrs[k], "adj")) for k in keys]
        return " ".join(adjs + [name])
    if style == 1:       # "rain, heavy, loud"
        tags = [_pick(rng, _words(concept, k, attrs[k], "tag")) for k in keys]
        rng.shuffle(tags)
        return ", ".join([name] + tags)
    adjs = [_pick(rng, _words(concept, k, attrs[k], "adj")) for k in keys]
    return with_article(" ".join(adjs + [name]))


def has_paraphrase_marker(text: str) -> bool:
    """Whether ``text`` uses wording reserved for paraphrases (see ``PARAPHRASE_MARKERS``)."""
    padded = f" {normalise_text(text)} "
    return any(f" {m.strip()} " in padded for m in PARAPHRASE_MARKERS)


def caption(concept: Concept, attributes: dict, rng: np.random.Generator) -> str:
    """One training caption for a clip of ``concept`` with ``attributes`` (lower case, no paraphrase markers)."""
    attrs = captioned_attributes(concept, attributes)
    for _ in range(20):
        if concept.kind == STRUCK:
            text = _struck_caption(concept, attrs, attributes, rng)
        elif concept.kind in (TEXTURE, SFX):
            text = _texture_caption(concept, attrs, rng)
        else:
            text = _instrument_caption(concept, attrs, rng)
        text = re.sub(r"\s+", " ", text).strip()
        if not has_paraphrase_marker(text):
            return text
    raise RuntimeError(f"could not caption {concept.name} without paraphrase markers")


# Framings a training caption may be rewritten with (see :func:`rewrite_caption`); none is a paraphrase marker.
TRAINING_WRAPPERS = ("audio of {}", "a clip of {}", "a sample of {}", "sound effect: {}", "this is {}", "{} sound",
                     "{} audio", "sound: {}")


def rewrite_caption(text: str, rng: np.random.Generator) -> str:
    """``text`` reworded without changing what it says, for text augmentation in flow training.

    The comma-separated tags after the head phrase are shuffled, one of them is
    sometimes dropped (a caption never has to mention every attribute), the head
    sometimes moves to the end, the separator is sometimes a semicolon, and half
    of the rewrites are framed by one of ``TRAINING_WRAPPERS``. Nothing is added
    that the caption did not say, and the result never contains a paraphrase
    marker (the held-out paraphrase wording stays unseen).
    """
    parts = [p.strip() for p in normalise_text(text).split(",") if p.strip()]
    head, tags = parts[0], parts[1:]
    order = rng.permutation(len(tags))
    tags = [tags[i] for i in order]
    if len(tags) >= 2 and rng.random() < 0.3:
        tags.pop(int(rng.integers(len(tags))))
    pieces = [head] + tags
    if tags and rng.random() < 0.25:
        pieces = tags + [head]
    out = ("; " if rng.random() < 0.2 else ", ").join(pieces)
    if rng.random() < 0.5:
        out = TRAINING_WRAPPERS[int(rng.integers(len(TRAINING_WRAPPERS)))].format(out)
    out = normalise_text(out)
    return text if has_paraphrase_marker(out) else out


def normalise_text(text: str) -> str:
    """Lower case, single spaces, no trailing punctuation: the form captions are compared in."""
    return re.sub(r"\s+", " ", text.lower()).strip(" .,;")


def _paraphrase_attributes(concept: Concept, rng: np.random.Generator) -> dict:
    """A plausible attribute set for a paraphrase of ``concept``."""
    attrs: dict = {"dynamics": _pick(rng, ("soft", "loud"))}
    if concept.kind != TEXTURE:
        attrs["space"] = _pick(rng, ("dry", "reverberant"))
        attrs["rt60_s"] = 2.0
    if concept.kind in (MELODIC, STRUCK):
        attrs["register"] = _pick(rng, ("low", "mid", "high"))
    if concept.kind == MELODIC and concept.length_matters:
        attrs["length"] = _pick(rng, ("short", "long"))
    if concept.kind == DRUM:
        for key, fixed in concept.drum_keys[:1]:
            attrs.update(fixed)
        if concept.register_words:
            attrs["register"] = next(iter(concept.register_words))
    if concept.kind == TEXTURE:
        attrs.update(texture_attribute_choices(concept, rng))
    return attrs


def texture_attribute_choices(concept: Concept, rng: np.random.Generator) -> dict:
    """Random values of the concept-specific attributes of a texture concept."""
    gen = concept.settings.get("generator")
    if gen == "wind":
        return {"wind": _pick(rng, ("gusty", "steady"))}
    if gen == "rain":
        return {"rain": _pick(rng, ("heavy", "light"))}
    if gen == "engine":
        return {"engine": _pick(rng, ("idling", "revving"))}
    if gen == "car_pass":
        return {"speed": _pick(rng, ("fast", "slow"))}
    if gen == "hum":
        return {"mains": _pick(rng, ("50", "60")), "buzz": _pick(rng, ("buzzing", "clean"))}
    return {}


def paraphrases(concept: Concept, n: int = 4) -> list[str]:
    """``n`` evaluation prompts for ``concept`` in wording no training caption uses.

    Deterministic (seeded by the concept name). Each contains a paraphrase
    marker (see ``PARAPHRASE_MARKERS``), which :func:`caption` never emits.
    """
    rng = np.random.default_rng(zlib.crc32(concept.name.encode()))
    names = list(concept.alt_names) + [concept.names[-1]] + list(concept.alt_names)
    out: list[str] = []
    for i in range(n * 4):
        if len(out) == n:
            break
        pname = names[i % len(names)]
        attributes = _paraphrase_attributes(concept, rng)
        if concept.kind == STRUCK:
            attributes["material"] = concept.settings["material"]
        attrs = captioned_attributes(concept, attributes)
        keys = [k for k in ADJ_ORDER if k in attrs]
        adjs = [_pick(rng, _words(concept, k, attrs[k], "adj")) for k in keys if k != "space"]
        tags = [_pick(rng, _words(concept, k, attrs[k], "tag")) for k in keys]
        space = [_pick(rng, _words(concept, "space", attrs["space"], "tag"))] if "space" in keys else []
        style = i % 4
        if concept.kind == STRUCK:
            striker = _pick(rng, concept.settings["strikers"])
            verb = GERUND.get(_pick(rng, concept.settings["verbs"]), "hitting")
            mat = _pick(rng, MATERIAL_WORDS[concept.settings["material"]])
            detect = MATERIAL_DETECT[concept.settings["material"]]
            obj = pname if any(w in pname.lower().split() for w in detect) else f"{mat} {pname}"
            texts = [f"someone {verb} " + with_article(obj) + f" with {_striker_phrase(striker)}",
                     "the sound of " + with_article(" ".join(adjs + [obj])) + " being " +
                     _pick(rng, concept.settings["verbs"]).replace(" on", "") + (", " + space[0] if space else ""),
                     f"a recording of {_striker_phrase(striker)} hitting " + with_article(obj),
                     f"{obj} struck, " + " and ".join(tags[:2] or ["clear"])]
        elif concept.kind in (TEXTURE, SFX):
            texts = ["the sound of " + with_article(" ".join(adjs + [pname])) + (", " + space[0] if space else ""),
                     "a recording of " + with_article(" ".join(adjs + [pname])),
                     f"{pname}, " + " and ".join(tags),
                     f"the sound of {pname}, " + " and ".join(tags)]
        else:
            unit = concept.unit or "sound"
            adverb = _pick(rng, _words(concept, "dynamics", attrs["dynamics"], "adverb"))
            verb = "playing" if concept.kind == MELODIC else "hitting"
            texts = ["a recording of " + with_article(" ".join(adjs + [pname, unit])),
                     f"someone {verb} " + with_article(pname) + f" {adverb}" + (", " + space[0] if space else ""),
                     "the sound of " + with_article(" ".join(adjs + [pname])),
                     f"{pname} {unit}, " + " and ".join(tags)]
        text = normalise_text(texts[style])
        if text not in out and has_paraphrase_marker(text):
            out.append(text)
    return out


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower())


def _contains(tokens: list[str], phrase: str) -> bool:
    p = _tokens(phrase)
    return any(tokens[i:i + len(p)] == p for i in range(len(tokens) - len(p) + 1))


def mentions_concept(text: str, concept: Concept) -> bool:
    """Whether ``text`` names ``concept`` by one of its training names."""
    tokens = _tokens(text)
    return any(_contains(tokens, name) for name in concept.names)


def caption_conflicts(text: str, concept: Concept, attributes: dict) -> list[str]:
    """Words of ``text`` that say an attribute value the clip does not have (empty when truthful).

    Checks every captionable attribute of the clip: a caption of a soft clip
    must not say "loud", of a dry clip must not say "reverb" (except in "no
    reverb" / "without reverb"), of a low note must not say "high", and a
    struck object's caption must not name another material (the striker's
    own material, as in "wooden spoon", is allowed).
    """
    attrs = captioned_attributes(concept, attributes)
    text_l = text.lower()
    if "striker" in attributes:
        text_l = text_l.replace(attributes["striker"], " ")
    for name in concept.names:                 # names may hold attribute-like words ("bass drum")
        text_l = re.sub(rf"\b{re.escape(name)}\b", " ", text_l)
    tokens = _tokens(text_l)
    if any(_contains(tokens, p) for p in ("no reverb", "without reverb")):
        if attrs.get("space") not in (None, "dry"):
            return ["no reverb"]
        tokens = _tokens(re.sub(r"\b(no|without) reverb\b", " ", text_l))
    bad: list[str] = []
    for key, value in attrs.items():
        own = {w for form in ("adj", "tag", "adverb") for w in _words(concept, key, value, form)}
        for other, words in vocab(concept, key).items():
            if other == value or (key == "space" and {other, value} <= {"reverberant", "hall"}):
                continue
            for form in ("adj", "tag", "adverb"):
                for w in getattr(words, form):
                    if w not in own and _contains(tokens, w):
                        bad.append(w)
    if "material" in attributes:
        for material, words in MATERIAL_WORDS.items():
            if material != attributes["material"]:
                bad += [w for w in words if _contains(tokens, w)]
    return sorted(set(bad))
