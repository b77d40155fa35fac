"""The catalogue of corpus concepts: what each one is, how it is made, how it is named.

A :class:`Concept` is one thing a caption names ("piano", "kick drum", "metal
pot struck", "rain"). It says which renderer makes it (General MIDI programs
or drum-kit keys rendered by fluidsynth, or a procedural generator), in which
range its pitch may lie, and which words name it: ``names`` are used in
training captions, ``alt_names`` only in the evaluation paraphrases (so a
paraphrase can test a synonym the text encoder never saw with this audio).

General MIDI program numbers are 0-based (as ``mido`` sends them); drum keys
are the General MIDI percussion key map on channel 10. Pitch ranges are MIDI
note numbers inside each instrument's usual playable register.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SOUNDFONT = "soundfont"
PROCEDURAL = "procedural"

MELODIC = "melodic"        # pitched GM program on channel 1
DRUM = "drum"              # GM percussion key on channel 10
SFX = "sfx"                # GM sound-effect program, pitch not captioned
STRUCK = "struck"          # procedural modal struck object (struck.py)
TEXTURE = "texture"        # procedural noise texture (textures.py)


@dataclass(frozen=True)
class Concept:
    """One captioned concept of the corpus.

    Attributes:
        name: the concept's id and main caption noun ("piano").
        family: a coarse group ("keyboard", "drum kit", "struck object", ...).
        kind: one of ``melodic, drum, sfx, struck, texture``.
        prompt: the canonical text prompt for this concept.
        names: name forms used in training captions (the first is ``name``).
        alt_names: extra synonyms used only in the evaluation paraphrases.
        unit: the noun for one event ("note", "hit", "" for none).
        programs: GM programs (0-based) rendered for melodic / sfx concepts,
            or drum kits (bank 128 presets) for drum concepts.
        pitch_range: inclusive MIDI note range (melodic), or the f0 range in Hz
            (struck objects) the register is taken from.
        length_matters: whether note length changes the sound (captioned as
            short / long); False for sounds that ring out regardless.
        drum_keys: for drum concepts, ``(key, {attribute: value})`` pairs.
        electronic_kits: drum-machine kits (bank 128 presets: 24 Electronic, 25 TR-808)
            that replace this concept's sounds with electronic ones (FluidR3's
            Electronic kit keeps the acoustic hi-hat, clap and cowbell).
        hold_s: for drum / sfx concepts, how long the key is held (s).
        register_words: extra words for a register, e.g. ``{"low": ("bass",)}``.
        settings: generator settings of a procedural concept.
    """

    name: str
    family: str
    kind: str
    prompt: str
    names: tuple[str, ...]
    alt_names: tuple[str, ...] = ()
    unit: str = "note"
    programs: tuple[int, ...] = ()
    pitch_range: tuple[float, float] = (48, 84)
    length_matters: bool = True
    drum_keys: tuple[tuple[int, dict[str, str]], ...] = ()
    electronic_kits: tuple[int, ...] = ()
    hold_s: tuple[float, float] = (1.5, 2.0)
    register_words: dict[str, tuple[str, ...]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """``"soundfont"`` or ``"procedural"``."""
        return SOUNDFONT if self.kind in (MELODIC, DRUM, SFX) else PROCEDURAL

    @property
    def slug(self) -> str:
        """File-name-safe form of the name ("electric piano" -> "electric-piano")."""
        return "".join(ch if ch.isalnum() else "-" for ch in self.name.lower()).strip("-")


# Drum-kit presets of the FluidR3 GM bank 128.
ACOUSTIC_KITS = (0, 8, 16, 32)
ELECTRONIC = (24, 25)      # Electronic: electronic kick, snare and toms
TR808 = (25,)              # TR-808: also hi-hats, clap and cowbell

def _melodic(name, family, programs, pitch_range, names=(), alt=(), prompt=None, length_matters=True, unit="note"):
    return Concept(name=name, family=family, kind=MELODIC, prompt=prompt or f"{name} {unit}".strip(),
                   names=(name,) + tuple(names), alt_names=tuple(alt), unit=unit, programs=tuple(programs),
                   pitch_range=pitch_range, length_matters=length_matters)


def _drum(name, keys, names=(), alt=(), prompt=None, kits=ACOUSTIC_KITS, electronic=(), hold_s=(1.5, 2.0),
          register_words=None, unit="hit"):
    keys = tuple((k, {}) if isinstance(k, int) else k for k in keys)
    return Concept(name=name, family="drum kit", kind=DRUM, prompt=prompt or name, names=(name,) + tuple(names),
                   alt_names=tuple(alt), unit=unit, programs=tuple(kits), drum_keys=keys, length_matters=False,
                   electronic_kits=tuple(electronic), hold_s=hold_s, register_words=register_words or {})


def _sfx(name, program, names=(), alt=(), prompt=None, hold_s=(1.5, 3.5), pitch_range=(57, 64), unit=""):
    return Concept(name=name, family="sound effect", kind=SFX, prompt=prompt or name, names=(name,) + tuple(names),
                   alt_names=tuple(alt), unit=unit, programs=(program,), pitch_range=pitch_range,
                   length_matters=False, hold_s=hold_s)


def _struck(name, names, alt, prompt, **settings):
    return Concept(name=name, family="struck object", kind=STRUCK, prompt=prompt, names=tuple(names),
                   alt_names=tuple(alt), unit="", pitch_range=settings["f0_hz"], length_matters=False,
                   settings=settings)


def _texture(name, names, alt, prompt, **settings):
    return Concept(name=name, family="environment", kind=TEXTURE, prompt=prompt, names=tuple(names),
                   alt_names=tuple(alt), unit="", length_matters=False, settings=settings)


CONCEPTS: tuple[Concept, ...] = (
    # ---- keyboards -------------------------------------------------------------------------
    _melodic("piano", "keyboard", (0, 1), (28, 100), ("acoustic piano",), ("grand piano", "concert piano")),
    _melodic("electric piano", "keyboard", (4, 5), (33, 96), ("e-piano",), ("rhodes piano", "electric keyboard")),
    _melodic("harpsichord", "keyboard", (6,), (29, 89), (), ("baroque harpsichord", "cembalo")),
    _melodic("clavinet", "keyboard", (7,), (36, 89), ("clav",), ("funky clavinet", "electric clavichord")),
    _melodic("organ", "organ", (16, 17, 18), (36, 96), ("electric organ", "drawbar organ"),
             ("hammond organ", "rock organ")),
    _melodic("church organ", "organ", (19, 20), (24, 96), ("pipe organ",), ("cathedral organ", "reed organ")),
    _melodic("accordion", "organ", (21, 23), (53, 89), (), ("squeezebox", "bandoneon")),
    _melodic("harmonica", "organ", (22,), (60, 84), (), ("mouth organ", "blues harp")),
    # ---- mallets and bells ----------------------------------------------------------------
    _melodic("celesta", "mallet percussion", (8,), (60, 96), (), ("celeste", "keyboard glockenspiel"),
             length_matters=False),
    _melodic("glockenspiel", "mallet percussion", (9,), (72, 105), ("glock",), ("orchestra bells", "bell lyre"),
             length_matters=False),
    _melodic("music box", "mallet percussion", (10,), (60, 96), (), ("wind-up music box", "musical box"),
             length_matters=False),
    _melodic("vibraphone", "mallet percussion", (11,), (53, 89), ("vibes",), ("vibraharp", "jazz vibes")),
    _melodic("marimba", "mallet percussion", (12,), (45, 96), (), ("wooden marimba bars", "marimba mallet"),
             length_matters=False),
    _melodic("xylophone", "mallet percussion", (13,), (65, 108), (), ("orchestral xylophone", "wooden xylophone"),
             length_matters=False),
    _melodic("tubular bells", "mallet percussion", (14,), (60, 77), ("chimes", "chime bell"),
             ("church bell", "orchestral chimes"), length_matters=False),
    _melodic("steel drum", "mallet percussion", (114,), (52, 84), ("steel pan",), ("steelpan", "caribbean steel drum"),
             length_matters=False),
    _melodic("kalimba", "mallet percussion", (108,), (60, 84), ("thumb piano",), ("mbira", "finger piano"),
             length_matters=False),
    _melodic("timpani", "drums", (47,), (36, 57), ("kettle drum",), ("kettledrum", "orchestral timpani"),
             length_matters=False),
    _melodic("taiko drum", "drums", (116,), (36, 60), ("taiko",), ("japanese drum", "big taiko"), unit="hit",
             length_matters=False),
    # ---- guitars and plucked ----------------------------------------------------------------
    _melodic("acoustic guitar", "guitar", (24, 25), (40, 84), ("classical guitar", "folk guitar"),
             ("nylon-string guitar", "steel-string guitar")),
    _melodic("electric guitar", "guitar", (26, 27), (40, 86), ("clean electric guitar",),
             ("jazz guitar", "clean guitar")),
    _melodic("distorted guitar", "guitar", (29, 30), (40, 86), ("overdriven guitar", "distortion guitar"),
             ("fuzz guitar", "heavy rock guitar")),
    _melodic("harp", "plucked strings", (46,), (24, 103), ("concert harp",), ("orchestral harp", "pedal harp"),
             length_matters=False),
    _melodic("sitar", "plucked strings", (104,), (48, 77), (), ("indian sitar", "sitar string"),
             length_matters=False),
    _melodic("banjo", "plucked strings", (105,), (48, 84), (), ("bluegrass banjo", "five-string banjo"),
             length_matters=False),
    _melodic("koto", "plucked strings", (107,), (55, 91), (), ("japanese koto", "zither")),
    _melodic("pizzicato strings", "plucked strings", (45,), (36, 84), ("plucked strings",),
             ("string pizzicato", "pizz strings"), length_matters=False),
    # ---- basses -----------------------------------------------------------------------------
    _melodic("upright bass", "bass", (32,), (28, 60), ("acoustic bass",), ("jazz bass", "plucked contrabass")),
    _melodic("bass guitar", "bass", (33, 34, 35), (28, 64), ("electric bass",), ("fingered bass", "four-string bass")),
    _melodic("slap bass", "bass", (36, 37), (28, 64), ("slapped bass",), ("funk slap bass", "popped bass")),
    _melodic("synth bass", "bass", (38, 39), (28, 64), ("synthesizer bass",), ("analog bass synth", "bass synth")),
    # ---- bowed strings, ensembles, voices ---------------------------------------------------
    _melodic("violin", "bowed strings", (40, 110), (55, 93), ("fiddle",), ("solo violin", "bowed violin")),
    _melodic("viola", "bowed strings", (41,), (48, 88), (), ("solo viola", "bowed viola")),
    _melodic("cello", "bowed strings", (42,), (36, 76), ("violoncello",), ("solo cello", "bowed cello")),
    _melodic("double bass", "bowed strings", (43,), (28, 57), ("contrabass",), ("bowed double bass", "string bass")),
    _melodic("string ensemble", "ensemble", (48, 49, 44), (36, 96), ("strings", "string section"),
             ("string orchestra", "orchestral strings")),
    _melodic("choir", "ensemble", (52, 53), (48, 79), ("choir voices",), ("vocal ensemble", "chorus singing")),
    _melodic("orchestra hit", "ensemble", (55,), (48, 72), ("orchestral hit",), ("orchestra stab", "orchestral stab"),
             unit="", length_matters=False),
    # ---- brass --------------------------------------------------------------------------------
    _melodic("trumpet", "brass", (56,), (55, 86), (), ("cornet", "solo trumpet")),
    _melodic("trombone", "brass", (57,), (40, 72), (), ("slide trombone", "tenor trombone")),
    _melodic("tuba", "brass", (58,), (28, 58), (), ("bass tuba", "sousaphone")),
    _melodic("french horn", "brass", (60,), (41, 77), ("horn",), ("orchestral horn", "cor")),
    _melodic("brass section", "brass", (61,), (41, 84), ("brass ensemble",), ("horn section", "brass band")),
    _melodic("synth brass", "brass", (62, 63), (36, 84), ("synthesizer brass",), ("brass synth", "analog brass")),
    # ---- woodwinds ----------------------------------------------------------------------------
    _melodic("saxophone", "woodwind", (64, 65, 66), (49, 84), ("sax",), ("alto sax", "tenor saxophone")),
    _melodic("oboe", "woodwind", (68, 69), (58, 85), (), ("english horn", "cor anglais")),
    _melodic("bassoon", "woodwind", (70,), (34, 72), (), ("fagott", "orchestral bassoon")),
    _melodic("clarinet", "woodwind", (71,), (50, 91), (), ("b-flat clarinet", "jazz clarinet")),
    _melodic("flute", "woodwind", (73, 72), (60, 96), ("concert flute",), ("piccolo", "transverse flute")),
    _melodic("recorder", "woodwind", (74,), (60, 96), (), ("soprano recorder", "block flute")),
    _melodic("pan flute", "woodwind", (75,), (60, 96), ("pan pipes",), ("panpipe", "syrinx")),
    _melodic("bagpipe", "woodwind", (109,), (60, 79), ("bagpipes",), ("highland bagpipes", "scottish pipes")),
    # ---- synths -------------------------------------------------------------------------------
    _melodic("synth lead", "synth", (80, 81, 84, 87), (48, 96), ("lead synth", "synthesizer lead"),
             ("square-wave lead", "sawtooth lead")),
    _melodic("synth pad", "synth", (88, 89, 90, 94, 95), (36, 84), ("pad synth", "synthesizer pad"),
             ("ambient pad", "warm pad"), length_matters=False),
    # ---- drum kit -----------------------------------------------------------------------------
    _drum("kick drum", (35, 36), ("bass drum", "kick"), ("bassdrum", "drum kick"), prompt="kick drum",
          electronic=ELECTRONIC, register_words={"low": ("bass", "deep", "booming")}),
    _drum("snare drum", (38, 40), ("snare",), ("snare hit", "backbeat snare"), electronic=ELECTRONIC),
    _drum("side stick", (37,), ("rim click", "cross stick"), ("rimshot click", "snare rim")),
    _drum("hi-hat", ((42, {"hihat": "closed"}), (44, {"hihat": "pedal"}), (46, {"hihat": "open"})),
          ("hihat", "hi hat"), ("high-hat cymbal", "hat cymbal"), electronic=TR808),
    _drum("tom drum", ((41, {"register": "low"}), (43, {"register": "low"}), (45, {"register": "mid"}),
                       (47, {"register": "mid"}), (48, {"register": "high"}), (50, {"register": "high"})),
          ("tom", "tom-tom"), ("floor tom", "rack tom"), electronic=ELECTRONIC),
    _drum("crash cymbal", (49, 57), ("crash",), ("cymbal crash", "crash cymbals"), hold_s=(3.5, 3.8)),
    _drum("ride cymbal", (51, 59), ("ride",), ("ride cymbal ping", "jazz ride"), hold_s=(3.0, 3.5)),
    _drum("splash cymbal", (55,), ("splash",), ("small splash cymbal", "splash crash"), hold_s=(2.5, 3.0)),
    _drum("china cymbal", (52,), ("chinese cymbal",), ("china crash", "trashy cymbal"), hold_s=(3.0, 3.5)),
    _drum("hand clap", (39,), ("clap", "handclap"), ("clapping hands", "single clap"), electronic=TR808),
    _drum("cowbell", (56,), (), ("cow bell", "agogo cowbell"), electronic=TR808),
    _drum("woodblock", ((76, {"register": "high"}), (77, {"register": "low"})), ("wood block",),
          ("temple block", "wooden block")),
    _drum("tambourine", (54,), (), ("jingle tambourine", "tambourin"), hold_s=(1.0, 1.5)),
    _drum("conga", ((62, {"register": "high"}), (63, {"register": "high"}), (64, {"register": "low"})),
          ("conga drum",), ("tumbadora", "latin conga")),
    _drum("bongo", ((60, {"register": "high"}), (61, {"register": "low"})), ("bongos", "bongo drum"),
          ("latin bongos", "hand drum")),
    _drum("maracas", (70,), ("shaker",), ("rattle shaker", "maraca")),
    _drum("triangle", ((80, {"triangle": "muted"}), (81, {"triangle": "open"})), (),
          ("orchestral triangle", "triangle ding"), hold_s=(2.5, 3.0)),
    _drum("claves", (75,), ("clave",), ("rhythm sticks", "wooden claves")),
    # ---- General MIDI sound effects -----------------------------------------------------------
    _sfx("guitar fret noise", 120, ("fret noise", "string squeak"), ("finger slide on guitar strings",),
         hold_s=(0.6, 1.0)),
    _sfx("breath noise", 121, ("breath", "breathing"), ("exhaled breath", "airy breath")),
    _sfx("ocean waves", 122, ("seashore", "surf"), ("waves on a beach", "sea waves"), hold_s=(2.8, 3.6)),
    _sfx("bird tweet", 123, ("birdsong", "bird chirping"), ("songbird", "chirping bird"), hold_s=(1.5, 3.0)),
    _sfx("telephone ring", 124, ("phone ringing", "ringing telephone"), ("old phone bell", "telephone bell"),
         hold_s=(2.0, 3.5)),
    _sfx("helicopter", 125, ("helicopter rotor",), ("chopper", "helicopter flying"), hold_s=(2.5, 3.6)),
    _sfx("applause", 126, ("clapping crowd", "audience applause"), ("crowd cheering and clapping", "ovation"),
         hold_s=(2.5, 3.6)),
    _sfx("gunshot", 127, ("gun shot", "gunfire"), ("pistol shot", "rifle shot"), hold_s=(1.0, 1.5)),
    # ---- procedural struck objects --------------------------------------------------------------
    _struck("metal pot struck", ("metal pot", "cooking pot", "pot", "saucepan"), ("stockpot", "kitchen pot"),
            "a metal pot struck with a wooden spoon", material="metal", modes="shell_pot", f0_hz=(180.0, 520.0),
            q=(250.0, 1200.0), strikers=("wooden spoon", "metal spoon", "drumstick", "rubber mallet"),
            split_modes=True, verbs=("struck", "hit", "banged")),
    _struck("frying pan struck", ("frying pan", "pan", "skillet"), ("cast iron pan", "wok"),
            "a frying pan hit with a spoon", material="metal", modes="plate_circular", f0_hz=(120.0, 420.0),
            q=(200.0, 900.0), strikers=("wooden spoon", "metal spoon", "drumstick"), split_modes=True,
            verbs=("struck", "hit", "banged")),
    _struck("small metal bell", ("small metal bell", "metal bell", "hand bell"), ("handbell", "desk bell"),
            "a small metal bell ringing", material="metal", modes="bell", f0_hz=(450.0, 1500.0),
            q=(1500.0, 5000.0), strikers=("metal rod", "wooden stick"), split_modes=True,
            verbs=("struck", "rung", "hit")),
    _struck("metal pipe struck", ("metal pipe", "steel pipe", "metal bar"), ("iron pipe", "steel rod"),
            "a metal pipe struck with a stick", material="metal", modes="bar", f0_hz=(220.0, 1200.0),
            q=(900.0, 3500.0), strikers=("metal rod", "wooden stick", "rubber mallet"), split_modes=False,
            verbs=("struck", "hit", "clanged")),
    _struck("wooden plank struck", ("wooden plank", "wooden board", "plank of wood"), ("piece of lumber", "wood beam"),
            "a wooden plank hit with a stick", material="wood", modes="bar", f0_hz=(150.0, 700.0),
            q=(25.0, 80.0), strikers=("wooden stick", "hammer", "rubber mallet"), split_modes=False,
            verbs=("struck", "hit", "knocked")),
    _struck("knock on wooden door", ("wooden door", "door"), ("front door", "timber door"),
            "knocking on a wooden door", material="wood", modes="plate_rect", f0_hz=(70.0, 160.0),
            q=(18.0, 45.0), strikers=("knuckles", "fist"), split_modes=False, verbs=("knocked on",),
            knocks=(1, 3)),
    _struck("glass bottle tapped", ("glass bottle", "bottle", "empty glass bottle"), ("beer bottle", "wine bottle"),
            "tapping a glass bottle", material="glass", modes="shell_bottle", f0_hz=(500.0, 1600.0),
            q=(800.0, 3000.0), strikers=("metal spoon", "knuckle", "pencil"), split_modes=True,
            verbs=("tapped", "struck", "hit")),
    _struck("wine glass clink", ("wine glass", "drinking glass", "glass"), ("champagne flute", "crystal glass"),
            "a wine glass clinking", material="glass", modes="shell", f0_hz=(650.0, 1600.0),
            q=(2000.0, 6000.0), strikers=("metal spoon", "knife", "fingernail"), split_modes=True,
            verbs=("clinked", "tapped", "struck")),
    _struck("ceramic mug tapped", ("ceramic mug", "coffee mug", "mug", "cup"), ("porcelain cup", "teacup"),
            "tapping a ceramic mug with a spoon", material="ceramic", modes="shell", f0_hz=(700.0, 2200.0),
            q=(250.0, 800.0), strikers=("metal spoon", "pencil", "knuckle"), split_modes=True,
            verbs=("tapped", "struck", "hit")),
    _struck("ceramic plate struck", ("ceramic plate", "dinner plate", "plate"), ("porcelain plate", "china dish"),
            "a ceramic plate struck with a fork", material="ceramic", modes="plate_circular", f0_hz=(400.0, 1200.0),
            q=(200.0, 700.0), strikers=("fork", "metal spoon", "chopstick"), split_modes=True,
            verbs=("struck", "tapped", "hit")),
    _struck("plastic bucket struck", ("plastic bucket", "bucket", "plastic tub"), ("pail", "plastic bin"),
            "hitting a plastic bucket", material="plastic", modes="shell_pot", f0_hz=(90.0, 300.0),
            q=(12.0, 35.0), strikers=("drumstick", "hand", "wooden spoon"), split_modes=False,
            verbs=("struck", "hit", "drummed on")),
    _struck("plastic bottle tapped", ("plastic bottle", "water bottle", "plastic container"),
            ("soda bottle", "squeeze bottle"), "tapping a plastic bottle", material="plastic", modes="shell_bottle",
            f0_hz=(250.0, 800.0), q=(15.0, 40.0), strikers=("finger", "pencil", "fingernail"), split_modes=False,
            verbs=("tapped", "flicked", "hit")),
    # ---- procedural textures --------------------------------------------------------------------
    _texture("wind", ("wind", "wind blowing", "howling wind"), ("moving air", "wind noise"), "wind blowing",
             generator="wind"),
    _texture("rain", ("rain", "rainfall", "falling rain"), ("rain shower", "rain on the ground"), "rain falling",
             generator="rain"),
    _texture("engine hum", ("engine hum", "engine", "motor running"), ("running motor", "diesel engine"),
             "an engine humming", generator="engine"),
    _texture("car passing by", ("car passing by", "car driving past", "passing car"),
             ("vehicle going by", "traffic passing"), "a car passing by", generator="car_pass"),
    _texture("fire crackling", ("fire crackling", "crackling fire", "campfire"), ("fireplace", "burning logs"),
             "a crackling fire", generator="fire"),
    _texture("electrical hum", ("electrical hum", "mains hum", "electric buzz"), ("transformer hum", "ground hum"),
             "an electrical hum", generator="hum"),
)


def concept_by_name(name: str) -> Concept:
    """Look a concept up by name.

    Raises:
        SDSAudioError: unknown name (the message lists the known ones).
    """
    from ..errors import SDSAudioError

    for concept in CONCEPTS:
        if concept.name == name:
            return concept
    raise SDSAudioError(f"unknown corpus concept {name!r}; known: {', '.join(c.name for c in CONCEPTS)}")
