"""SFZ instrument export: a preset rendered across the keyboard, as a folder any SFZ player loads.

:func:`export_sfz` writes ``DIR/NAME.sfz`` and next to it one 24-bit WAV per sampled key::

    DIR/
      NAME.sfz            <control> load samples into memory; <global> loop mode, release;
                          one <region> per sample
      NAME_036.wav        the preset playing MIDI key 36, ...

How a preset "plays a key" (:class:`KeyPlayer`), read from the Synth API alone:

* a synth with an ``f0_hz`` parameter (:class:`~sds_audio.synths.FMSynth`) plays key ``k``
  at ``440 * 2 ** ((k - 69) / 12)`` Hz; operators at fixed frequencies stay put;
* a synth whose constructor takes the MIDI ``key`` it plays (in :meth:`Synth.config`, as
  :class:`~sds_audio.synths.DX7Synth`) is rebuilt with each key, every other setting and
  parameter as in the preset (keyboard scalings then follow the key, as on the instrument);
* a synth with neither (the impact model: a struck object has no keyboard) is *unpitched*:
  one sample, mapped over the whole key range with ``pitch_keytrack=0``, so every key plays
  the object as designed. Transposing it instead would resize the object (every mode
  scaled), which is a different sound.

A synth whose constructor takes ``hold_fraction`` (the share of a render the key is held
before its note-off, as DX7Synth) is rendered with the key held throughout, since the sampler
plays the release itself; its ``ampeg_release`` is then measured from a render released at the
sample's end (:func:`~sds_audio.exports.loop.release_t60_s`).

Keys ``lo, lo + step, ...`` and ``hi`` are sampled; each key of ``[lo, hi]`` plays the
nearest sample (a tie goes to the lower one), transposed by the player by at most
``step / 2`` semitones (``pitch_keycenter`` is the sampled key).

Sustained or one-shot is read from the preset's own envelope at the middle sampled key
(:func:`~sds_audio.exports.loop.analyse_envelope`):

* **sustained** (the note still holds a steady level at the end of ``duration_s``; while it
  is still rising there, a slow attack, the render is doubled, up to ``MAX_SAMPLE_S``):
  each sample loops (``loop_mode=loop_continuous``) over a crossfaded stretch of its
  last quarter (:func:`~sds_audio.exports.loop.find_loop`, ``crossfade_loop``); the
  sample ends at the loop end. ``ampeg_release`` is the synth's measured release (T60 after
  note-off) where it has one, else the preset's decay time (peak to within 1 dB of the held
  level; 0.1 s for a note without a decay), between 0.05 and 10 s.
* **percussive** (the note dies away): ``loop_mode=one_shot`` (note-off does not cut it);
  the render is lengthened until it has decayed 60 dB (at most ``MAX_SAMPLE_S``), then
  trimmed where it falls 60 dB below its peak and faded out over 10 ms.

All samples share one gain: 1 unless the loudest would pass -1 dBFS, in which case they
are turned down together (the .sfz says by how much). The folder appears complete or not at
all: everything is written into a temporary folder beside ``DIR`` and renamed into place.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..audio_io import save_audio
from ..errors import SDSAudioError
from ..presets import Preset, load_preset_spec
from . import loop

#: samples are never longer than this (s)
MAX_SAMPLE_S = 12.0
#: sustained samples are rendered at least this long (s), so their tail can hold a loop
MIN_SUSTAINED_S = 1.0
#: shortest and longest loop (s); the loop lies in the last quarter of the sample
LOOP_MIN_S, LOOP_MAX_S = 0.1, 0.5
#: loop matching window and crossfade length (s)
LOOP_MATCH_S, LOOP_FADE_S = 0.03, 0.05
#: fade-out at the end of one-shot samples (s)
ONE_SHOT_FADE_S = 0.01
#: the loudest sample peaks at most here (dBFS)
PEAK_DBFS = -1.0
#: ampeg_release bounds and the value for a note without a decay (s)
RELEASE_MIN_S, RELEASE_MAX_S, RELEASE_DEFAULT_S = 0.05, 10.0, 0.1
#: seconds rendered after the note-off to measure a synth's own release
RELEASE_PROBE_S = 3.0


@dataclass(frozen=True)
class SfzRegion:
    """One sample of the instrument: file name (relative to the .sfz), keys, loop (samples)."""

    sample: str
    lokey: int
    hikey: int
    pitch_keycenter: int
    n_samples: int
    loop_start: int | None = None
    loop_end: int | None = None   # inclusive, as in SFZ


@dataclass(frozen=True)
class SfzExport:
    """What :func:`write_sfz` wrote."""

    sfz_path: Path
    regions: tuple[SfzRegion, ...]
    sustained: bool
    pitched: bool
    release_s: float
    gain_db: float
    sample_rate: int


# -- inputs ------------------------------------------------------------------------------------
def midi_to_hz(key: float) -> float:
    """Equal-tempered frequency of MIDI key ``key`` (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((key - 69.0) / 12.0)


def hz_to_midi(f_hz: float) -> float:
    return 69.0 + 12.0 * math.log2(f_hz / 440.0)


def check_keys(keys: tuple[int, int], step: int) -> tuple[int, int, int]:
    """Validate a key range and step; return ``(lo, hi, step)``."""
    try:
        lo, hi = keys
    except (TypeError, ValueError):
        raise SDSAudioError(f"keys must be a pair (lowest, highest), got {keys!r}") from None
    for k in (lo, hi, step):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise SDSAudioError(f"keys and step must be integers, got {keys!r} and step {step!r}")
    if not (0 <= lo <= 127 and 0 <= hi <= 127):
        raise SDSAudioError(f"keys must be MIDI keys 0-127, got {lo}-{hi}")
    if lo > hi:
        raise SDSAudioError(f"key range {lo}-{hi} runs backwards; give the lowest key first, e.g. {hi}-{lo}")
    if not 1 <= step <= 127:
        raise SDSAudioError(f"step must be 1 to 127 keys, got {step}")
    return int(lo), int(hi), int(step)


def parse_key_range(text: str) -> tuple[int, int]:
    """``"36-96"`` -> ``(36, 96)``; ``"60"`` -> ``(60, 60)``. Checks nothing but the syntax."""
    m = re.fullmatch(r"\s*(\d{1,3})\s*(?:-\s*(\d{1,3})\s*)?", text)
    if m is None:
        raise SDSAudioError(f"--keys takes LOW-HIGH MIDI keys such as 36-96, got {text!r}")
    lo = int(m.group(1))
    return lo, int(m.group(2)) if m.group(2) is not None else lo


def sample_keys(lo: int, hi: int, step: int) -> list[int]:
    """The sampled keys: ``lo, lo + step, ...`` and ``hi``."""
    return sorted(set(range(lo, hi + 1, step)) | {hi})


def key_zones(keys: list[int], lo: int, hi: int) -> list[tuple[int, int]]:
    """``(lokey, hikey)`` for each sampled key: the keys of ``[lo, hi]`` nearest to it (ties: lower)."""
    bounds = [lo] + [(a + b) // 2 + 1 for a, b in zip(keys, keys[1:])] + [hi + 1]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(len(keys))]


def safe_name(text: str) -> str:
    """A file-name stem of ASCII letters, digits, ``-`` and ``_`` (``instrument`` when nothing is left)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:64]
    return name or "instrument"


class KeyPlayer:
    """Renders a preset at MIDI keys, key held (see the module docstring for the rules).

    Attributes:
        pitched: whether the preset plays keys at all.
        releases_key: whether the synth renders a note-off itself (``hold_fraction``).
    """

    def __init__(self, preset: Preset):
        self.preset = preset
        self._config = preset.synth.config()
        self._f0_spec = preset.synth.param_specs.get("f0_hz")
        key = self._config.get("key")
        self._rebuild_key = self._f0_spec is None and isinstance(key, int) and not isinstance(key, bool)
        self.pitched = self._f0_spec is not None or self._rebuild_key
        self.releases_key = "hold_fraction" in self._config

    def check(self, key: int) -> None:
        """Raise :class:`SDSAudioError` when the synth cannot play ``key``."""
        spec = self._f0_spec
        if spec is not None and not spec.min <= midi_to_hz(key) <= spec.max:
            low, high = math.ceil(hz_to_midi(spec.min)), math.floor(hz_to_midi(spec.max))
            raise SDSAudioError(f"key {key} is outside what a {self.preset.synth.synth_type!r} preset plays "
                                f"(f0_hz {spec.min:g}-{spec.max:g} Hz: keys {low}-{high}); "
                                f"choose --keys within {low}-{high}")

    @torch.no_grad()
    def render(self, key: int | None, duration_s: float, hold_s: float | None = None) -> np.ndarray:
        """``(channels, samples)`` float64: ``key`` (None: unpitched) held ``hold_s`` (None: throughout)."""
        synth, controls = self.preset.synth, self.preset.controls
        changes: dict = {}
        if key is not None and self._f0_spec is not None:
            controls = dict(controls, f0_hz=torch.full_like(controls["f0_hz"], midi_to_hz(key)))
        if key is not None and self._rebuild_key:
            changes["key"] = int(key)
        if self.releases_key:
            changes["hold_fraction"] = 1.0 if hold_s is None else min(1.0, hold_s / duration_s)
        if changes:
            param = next(synth.parameters())
            synth = type(synth)(**{**self._config, **changes}, batch_size=1).to(param.device, param.dtype)
        audio = synth.render(controls, synth.n_samples(duration_s))[0].double().cpu().numpy()
        if not np.isfinite(audio).all():
            raise SDSAudioError("the preset renders NaN or infinite samples; it cannot be exported")
        return audio


def release_time_s(player: KeyPlayer, key: int | None, sample_s: float, shape: loop.EnvelopeShape) -> float:
    """``ampeg_release`` in seconds (see the module docstring)."""
    value = RELEASE_DEFAULT_S
    if shape.sustained and player.releases_key:
        audio = player.render(key, sample_s + RELEASE_PROBE_S, hold_s=sample_s)
        value = loop.release_t60_s(audio, player.preset.sample_rate, note_off_s=sample_s)
    elif shape.sustained and shape.decay_s > 0:
        value = shape.decay_s
    if not math.isfinite(value):
        value = RELEASE_DEFAULT_S if value != math.inf else RELEASE_MAX_S
    return min(RELEASE_MAX_S, max(RELEASE_MIN_S, value))


# -- rendering ----------------------------------------------------------------------------------
def _one_shot(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Trim where the level stays ``ONE_SHOT_FLOOR_DB`` below the peak; fade out the end."""
    frame_s = 0.01
    levels = loop.frame_levels_db(audio, sample_rate, frame_s)
    audible = np.nonzero(levels > -loop.ONE_SHOT_FLOOR_DB)[0]
    fade = max(1, int(round(ONE_SHOT_FADE_S * sample_rate)))
    frame = int(round(frame_s * sample_rate))
    end = audio.shape[-1] if not audible.size else min(audio.shape[-1], (audible[-1] + 1) * frame + fade)
    out = audio[:, :end].copy()
    fade = min(fade, end)
    out[:, end - fade:] *= 0.5 * (1.0 + np.cos(np.pi * (np.arange(1, fade + 1) / fade)))
    return out


def _looped(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int, int]:
    """Loop the last quarter; returns ``(audio cut at the loop end, start, end exclusive)``."""
    n = audio.shape[-1]
    max_loop_s = min(LOOP_MAX_S, 0.25 * n / sample_rate)
    start, end = loop.find_loop(audio, sample_rate, min_loop_s=min(LOOP_MIN_S, max_loop_s), max_loop_s=max_loop_s,
                                match_s=LOOP_MATCH_S, lead_s=LOOP_FADE_S)
    fade = min(int(round(LOOP_FADE_S * sample_rate)), (end - start) // 2, start)
    return loop.crossfade_loop(audio, start, end, max(1, fade))[:, :end], start, end


def _plan_duration(player: KeyPlayer, probe_key: int | None, duration_s: float) -> tuple[loop.EnvelopeShape, float]:
    """Envelope of the probe key and the sample duration it calls for."""
    while True:
        shape = loop.analyse_envelope(player.render(probe_key, duration_s), player.preset.sample_rate)
        still_rising = shape.slope_db_per_s >= loop.STEADY_DB_PER_S and shape.end_db > -loop.SUSTAIN_FLOOR_DB
        if not still_rising or duration_s >= MAX_SAMPLE_S:
            break
        duration_s = min(MAX_SAMPLE_S, 2.0 * duration_s)       # a slow attack: look further
    if shape.sustained:
        return shape, max(duration_s, MIN_SUSTAINED_S)
    longer = min(MAX_SAMPLE_S, duration_s + shape.seconds_to_floor())
    return shape, max(duration_s, longer)


# -- writing ------------------------------------------------------------------------------------
def sfz_text(export: SfzExport, *, title: str) -> str:
    """The .sfz file for ``export`` (regions in key order)."""
    lines = [f"// {title}",
             f"// written by sds-audio {__version__}; {len(export.regions)} sample(s) at {export.sample_rate} Hz, "
             f"24-bit WAV",
             "// " + ("sustained: each sample loops over a crossfaded stretch of its tail (loop_continuous)"
                      if export.sustained else "percussive: samples play to their end (one_shot)")]
    if not export.pitched:
        lines.append("// unpitched synth: one sample on every key (pitch_keytrack=0)")
    if export.gain_db < 0:
        lines.append(f"// samples turned down {-export.gain_db:.2f} dB to peak at {PEAK_DBFS:g} dBFS")
    # the samples are small: load them whole instead of streaming them from disk (sfizz_render's
    # streaming can fall behind its 8192-frame preload and silence a held note)
    lines += ["", "<control>", "hint_ram_based=1", "", "<global>",
              f"loop_mode={'loop_continuous' if export.sustained else 'one_shot'}",
              f"ampeg_release={export.release_s:.4f}"]
    if not export.pitched:
        lines.append("pitch_keytrack=0")
    for r in export.regions:
        lines += ["", "<region>", f"sample={r.sample}",
                  f"lokey={r.lokey} hikey={r.hikey} pitch_keycenter={r.pitch_keycenter}"]
        if r.loop_start is not None:
            lines.append(f"loop_start={r.loop_start} loop_end={r.loop_end}")
    return "\n".join(lines) + "\n"


def _prepare_output(out_dir: Path, overwrite: bool) -> None:
    """Refuse an output folder that cannot be written or would lose files that are not an export."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SDSAudioError(f"{out_dir} exists and is not a directory; choose another output folder")
    if out_dir.is_dir():
        held = sorted(out_dir.iterdir())
        if held and not overwrite:
            raise SDSAudioError(f"{out_dir} exists and is not empty; pass --overwrite to replace it")
        foreign = [p.name for p in held if not (p.is_file() and p.suffix.lower() in (".sfz", ".wav"))]
        if foreign:
            raise SDSAudioError(f"{out_dir} holds {foreign[0]!r}, which is not part of an SFZ export; "
                                "--overwrite replaces only folders of .sfz and .wav files: choose a new folder")
    parent = out_dir.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise SDSAudioError(f"cannot write {out_dir}: {parent} {what}")


def _publish(tmp: Path, out_dir: Path) -> None:
    """Rename the finished ``tmp`` folder to ``out_dir`` (replacing an existing one)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
    os.rename(out_dir, old / "x")
    try:
        os.rename(tmp, out_dir)
    except OSError:
        os.rename(old / "x", out_dir)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def write_sfz(preset: Preset, out_dir: str | os.PathLike, *, name: str = "instrument", keys: tuple[int, int] = (36, 96),
              step: int = 3, duration_s: float | None = None, overwrite: bool = False) -> SfzExport:
    """Render ``preset`` across ``keys`` and write the SFZ instrument folder ``out_dir``.

    Args:
        name: stem of the .sfz and sample names (made file-safe by :func:`safe_name`).
        keys: lowest and highest MIDI key (0-127) the instrument covers.
        step: keys between sampled keys.
        duration_s: render length before the envelope decides (default: the preset's duration);
            sustained samples are at least ``MIN_SUSTAINED_S`` long, one-shots grow until they
            have decayed (at most ``MAX_SAMPLE_S``).
        overwrite: replace a non-empty ``out_dir`` that holds only ``.sfz`` and ``.wav`` files
            (an earlier export); a folder with anything else in it is never replaced.

    Raises:
        SDSAudioError: bad keys, keys the synth cannot play, an unwritable or non-empty ``out_dir``.
    """
    lo, hi, step = check_keys(keys, step)
    out_dir = Path(os.path.abspath(out_dir))
    stem = safe_name(name)
    duration_s = preset.duration_s if duration_s is None else duration_s
    if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float)) or not (
            math.isfinite(duration_s) and 0 < duration_s <= MAX_SAMPLE_S):
        raise SDSAudioError(f"duration must be between 0 and {MAX_SAMPLE_S:g} s, got {duration_s}")
    _prepare_output(out_dir, overwrite)
    player = KeyPlayer(preset)
    sampled = sample_keys(lo, hi, step) if player.pitched else [None]
    zones = key_zones(sampled, lo, hi) if player.pitched else [(lo, hi)]
    for key in sampled if player.pitched else ():
        player.check(key)                                       # every key playable, before any work
    probe = sampled[len(sampled) // 2]
    shape, sample_s = _plan_duration(player, probe, float(duration_s))
    release_s = release_time_s(player, probe, sample_s, shape)
    sr = preset.sample_rate

    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as exc:
        raise SDSAudioError(f"cannot write {out_dir}: {exc.strerror or exc}") from exc
    try:
        # pass 1: render, loop or trim, keep float32 copies on disk (the common gain needs every peak)
        regions, peak = [], 0.0
        for key, (lokey, hikey) in zip(sampled, zones):
            audio = player.render(key, sample_s)
            start = end = None
            if shape.sustained:
                audio, start, end_exclusive = _looped(audio, sr)
                end = end_exclusive - 1
            else:
                audio = _one_shot(audio, sr)
            peak = max(peak, float(np.abs(audio).max()))
            centre = key if key is not None else (lo + hi) // 2
            file_name = f"{stem}_{centre:03d}.wav"
            np.save(tmp / f"{file_name}.npy", audio.astype(np.float32), allow_pickle=False)
            regions.append(SfzRegion(file_name, lokey, hikey, centre, audio.shape[-1], start, end))
        limit = 10.0 ** (PEAK_DBFS / 20.0)
        gain = limit / peak if peak > limit else 1.0
        # pass 2: 24-bit WAVs at the common gain
        for region in regions:
            raw = tmp / f"{region.sample}.npy"
            audio = np.load(raw, allow_pickle=False)
            save_audio(tmp / region.sample, torch.from_numpy(audio * np.float32(gain)), sr, subtype="PCM_24")
            raw.unlink()
        export = SfzExport(sfz_path=out_dir / f"{stem}.sfz", regions=tuple(regions), sustained=shape.sustained,
                           pitched=player.pitched, release_s=release_s,
                           gain_db=20.0 * math.log10(gain), sample_rate=sr)
        title = f"{stem}: sds-audio preset (synth {preset.synth.synth_type!r}) as an SFZ instrument, keys {lo}-{hi}"
        (tmp / export.sfz_path.name).write_text(sfz_text(export, title=title), encoding="ascii")
        _publish(tmp, out_dir)
    except OSError as exc:
        raise SDSAudioError(f"cannot write {out_dir}: {exc.strerror or exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return export


def export_sfz(preset_or_path: Preset | str | os.PathLike, out_dir: str | os.PathLike, keys: tuple[int, int] = (36, 96),
               step: int = 3, *, name: str | None = None, duration_s: float | None = None,
               overwrite: bool = False) -> Path:
    """Export a preset as an SFZ instrument folder; returns the .sfz path.

    ``preset_or_path``: a :class:`Preset`, or a file as :func:`~sds_audio.presets.load_preset_spec`
    reads it (``preset.json``, ``voice.syx``, ``bank.syx:N``). ``name`` defaults to the file's stem
    (``"instrument"`` for a :class:`Preset` object).
    See :func:`write_sfz` for the other arguments and the module docstring for what is written.
    """
    if isinstance(preset_or_path, Preset):
        preset, default_name = preset_or_path, "instrument"
    else:
        check_keys(keys, step)                                  # cheap checks before loading
        preset = load_preset_spec(str(preset_or_path))
        default_name = Path(str(preset_or_path)).stem
    return write_sfz(preset, out_dir, name=name or default_name, keys=keys, step=step, duration_s=duration_s,
                     overwrite=overwrite).sfz_path
