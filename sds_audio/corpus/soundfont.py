"""Rendering General MIDI notes from a SoundFont with the fluidsynth command-line tool.

Notes are written into one Standard MIDI File (with ``mido``), one note per
fixed-length time slot, and rendered in a single fluidsynth call in
fast-render mode (``-F``) at the corpus rate with fluidsynth's own reverb and
chorus off (``-R 0 -C 0``), so the renders are dry. Output is 32-bit float
WAV (``-O float``): no dither, hence identical bytes on every run. Each slot
starts with "all sound off" so a previous note's tail never leaks into the
next slot; the slots are cut apart and downmixed to mono.

The default SoundFont is FluidR3 GM (Debian package ``fluid-soundfont-gm``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
import soundfile as sf

from ..errors import SDSAudioError

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
DRUM_CHANNEL = 9
TICKS_PER_BEAT = 480
TEMPO_US_PER_BEAT = 500_000          # 120 bpm: 960 ticks per second
TICKS_PER_S = TICKS_PER_BEAT * 1_000_000 / TEMPO_US_PER_BEAT


@dataclass(frozen=True)
class Note:
    """One note to render: GM ``program`` (kit for the drum channel), MIDI ``pitch``, ``velocity`` 1-127."""

    program: int
    pitch: int
    velocity: int
    hold_s: float
    drum: bool = False


def find_fluidsynth(path: str | None = None) -> str | None:
    """The fluidsynth executable (``path`` if given and present, else the one on PATH), or ``None``."""
    if path is not None:
        return path if Path(path).is_file() and os.access(path, os.X_OK) else None
    return shutil.which("fluidsynth")


def find_soundfont(path: str | os.PathLike | None = None) -> Path | None:
    """The SoundFont file (``path`` or FluidR3 GM), or ``None`` when absent."""
    candidate = Path(path) if path is not None else Path(DEFAULT_SOUNDFONT)
    return candidate if candidate.is_file() else None


def require_tools(fluidsynth: str | None = None, soundfont: str | os.PathLike | None = None) -> tuple[str, Path]:
    """``(fluidsynth executable, soundfont path)``, or an error that says what to install."""
    exe = find_fluidsynth(fluidsynth)
    if exe is None:
        raise SDSAudioError("the fluidsynth program was not found: install it (Debian/Ubuntu: "
                            "`apt-get install fluidsynth`) or build only procedural sounds")
    sf2 = find_soundfont(soundfont)
    if sf2 is None:
        raise SDSAudioError(f"SoundFont {soundfont or DEFAULT_SOUNDFONT} not found: install FluidR3 GM "
                            "(Debian/Ubuntu: `apt-get install fluid-soundfont-gm`) or pass another .sf2")
    return exe, sf2


def write_midi(notes: list[Note], path: str | os.PathLike, slot_s: float) -> None:
    """Write ``notes`` into a type-0 MIDI file, note ``i`` starting at ``i * slot_s`` seconds."""
    events: list[tuple[int, int, mido.Message]] = []   # (tick, order, message)
    for i, note in enumerate(notes):
        channel = DRUM_CHANNEL if note.drum else 0
        t0 = int(round(i * slot_s * TICKS_PER_S))
        t_off = t0 + max(1, int(round(min(note.hold_s, slot_s - 0.05) * TICKS_PER_S)))
        events.append((t0, 0, mido.Message("control_change", channel=channel, control=120, value=0)))
        events.append((t0, 1, mido.Message("control_change", channel=channel, control=121, value=0)))
        events.append((t0, 2, mido.Message("program_change", channel=channel, program=note.program)))
        events.append((t0 + 1, 3, mido.Message("note_on", channel=channel, note=note.pitch, velocity=note.velocity)))
        events.append((t_off, 4, mido.Message("note_off", channel=channel, note=note.pitch, velocity=0)))
    end = int(round(len(notes) * slot_s * TICKS_PER_S))
    events.append((end, 5, mido.Message("control_change", channel=0, control=120, value=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=TEMPO_US_PER_BEAT, time=0))
    last = 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - last))
        last = tick
    midi = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks.append(track)
    midi.save(str(path))


def render_notes(notes: list[Note], slot_s: float, sample_rate: int, *, fluidsynth: str | None = None,
                 soundfont: str | os.PathLike | None = None, gain: float = 0.5) -> list[np.ndarray]:
    """Render each note into its own slot and return ``[(round(slot_s * sr),) float64 mono, ...]``.

    Raises:
        SDSAudioError: fluidsynth or the SoundFont is missing, or fluidsynth fails.
    """
    exe, sf2 = require_tools(fluidsynth, soundfont)
    with tempfile.TemporaryDirectory(prefix="sds_fluid_") as tmp:
        mid_path = Path(tmp) / "notes.mid"
        wav_path = Path(tmp) / "notes.wav"
        write_midi(notes, mid_path, slot_s)
        cmd = [exe, "-n", "-i", "-q", "-R", "0", "-C", "0", "-g", f"{gain:g}", "-r", str(int(sample_rate)),
               "-O", "float", "-T", "wav", "-o", "synth.cpu-cores=1", "-F", str(wav_path), str(sf2), str(mid_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not wav_path.is_file():
            raise SDSAudioError(f"fluidsynth failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
        data, sr = sf.read(str(wav_path), dtype="float64", always_2d=True)
    if sr != sample_rate:
        raise SDSAudioError(f"fluidsynth wrote {sr} Hz instead of {sample_rate} Hz")
    mono = data.mean(axis=1)
    n_slot = int(round(slot_s * sample_rate))
    need = n_slot * len(notes)
    if mono.shape[0] < need:
        mono = np.concatenate([mono, np.zeros(need - mono.shape[0])])
    return [mono[i * n_slot:(i + 1) * n_slot].copy() for i in range(len(notes))]
