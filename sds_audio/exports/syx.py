"""DX7 voices and their system-exclusive files: VCED (one voice) and VMEM (32-voice bank).

:class:`DX7Voice` holds the 155 parameters of a DX7 voice as integers in the DX7's own
ranges, operators listed 1..6 (the file formats store operator 6 first). Formats:

* **VCED** single voice, 163 bytes: ``F0 43 0n 00 01 1B``, 155 data bytes (one per
  parameter), checksum, ``F7``.
* **VMEM** bank, 4104 bytes: ``F0 43 0n 09 20 00``, 32 voices x 128 packed bytes
  (several small fields share a byte), checksum, ``F7``.

The checksum is the two's complement of the 7-bit sum of the data bytes. Reading
refuses (``SDSAudioError``) truncated files, wrong headers or checksums, and names that are
not printable ASCII; a packed voice with a field out of its range, or bits set outside the
fields, is repaired (clamped / masked) and the repair listed in ``DX7Voice.repairs``, so a
bank from the wild still loads. Any voice without repairs writes back byte for byte.
Files are written atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from ..atomic import atomic_path
from ..errors import SDSAudioError

VCED_HEADER = bytes([0xF0, 0x43, 0x00, 0x00, 0x01, 0x1B])
VMEM_HEADER = bytes([0xF0, 0x43, 0x00, 0x09, 0x20, 0x00])
VCED_SIZE = 163
VMEM_SIZE = 4104
VOICE_DATA_SIZE = 155
PACKED_VOICE_SIZE = 128
BANK_VOICES = 32
NAME_LENGTH = 10

#: per-operator fields in VCED order, with their largest value
OPERATOR_FIELDS: tuple[tuple[str, int], ...] = (
    ("r1", 99), ("r2", 99), ("r3", 99), ("r4", 99), ("l1", 99), ("l2", 99), ("l3", 99), ("l4", 99),
    ("breakpoint", 99), ("left_depth", 99), ("right_depth", 99), ("left_curve", 3), ("right_curve", 3),
    ("rate_scaling", 7), ("amp_mod_sens", 3), ("key_vel_sens", 7), ("output_level", 99),
    ("osc_mode", 1), ("coarse", 31), ("fine", 99), ("detune", 14),
)
#: global fields in VCED order (after the six operators), with their largest value
GLOBAL_FIELDS: tuple[tuple[str, int], ...] = (
    ("pr1", 99), ("pr2", 99), ("pr3", 99), ("pr4", 99), ("pl1", 99), ("pl2", 99), ("pl3", 99), ("pl4", 99),
    ("algorithm", 31), ("feedback", 7), ("osc_key_sync", 1), ("lfo_speed", 99), ("lfo_delay", 99),
    ("lfo_pitch_depth", 99), ("lfo_amp_depth", 99), ("lfo_sync", 1), ("lfo_wave", 5), ("pitch_mod_sens", 7),
    ("transpose", 48),
)


def _default_operator() -> dict[str, int]:
    op = {name: 0 for name, _ in OPERATOR_FIELDS}
    op.update(r1=99, r2=99, r3=99, r4=99, l1=99, l2=99, l3=99, l4=0, breakpoint=39, coarse=1, detune=7)
    return op


@dataclass
class DX7Voice:
    """A DX7 voice: integers in the DX7's ranges.

    Attributes:
        operators: six dicts (operator 1 first) with the keys of :data:`OPERATOR_FIELDS`
            (``detune`` 0..14, 7 = centre; ``osc_mode`` 0 ratio, 1 fixed).
        globals: the keys of :data:`GLOBAL_FIELDS` (``algorithm`` 0..31 as stored, i.e. the
            panel's number minus 1; ``transpose`` 0..48, 24 = none).
        name: 10 printable ASCII characters.
        repairs: what reading had to fix (empty for a clean voice).
    """

    operators: list[dict[str, int]] = field(default_factory=lambda: [_default_operator() for _ in range(6)])
    globals: dict[str, int] = field(default_factory=lambda: {
        **{name: 0 for name, _ in GLOBAL_FIELDS}, "pr1": 99, "pr2": 99, "pr3": 99, "pr4": 99, "pl1": 50,
        "pl2": 50, "pl3": 50, "pl4": 50, "osc_key_sync": 1, "lfo_speed": 35, "transpose": 24})
    name: str = "INIT VOICE"
    repairs: list[str] = field(default_factory=list, compare=False)

    @classmethod
    def init_voice(cls) -> "DX7Voice":
        """The DX7's INIT VOICE: algorithm 1, operator 1 at level 99, the rest silent."""
        voice = cls()
        voice.operators[0]["output_level"] = 99
        return voice

    def copy(self) -> "DX7Voice":
        return replace(self, operators=[dict(op) for op in self.operators], globals=dict(self.globals),
                       repairs=list(self.repairs))

    # -- validation --------------------------------------------------------------------
    def validate(self) -> None:
        """SDSAudioError unless every field is an integer in range and the name is 10 ASCII chars."""
        if len(self.operators) != 6:
            raise SDSAudioError(f"a DX7 voice has 6 operators, got {len(self.operators)}")
        for k, op in enumerate(self.operators):
            for name, top in OPERATOR_FIELDS:
                _check_int(op.get(name), top, f"operator {k + 1} {name}")
        for name, top in GLOBAL_FIELDS:
            _check_int(self.globals.get(name), top, name)
        check_name(self.name)

    # -- VCED (unpacked, 155 bytes) ------------------------------------------------------
    def to_vced_data(self) -> bytes:
        """The 155 parameter bytes (operator 6 first)."""
        self.validate()
        out = bytearray()
        for op in reversed(self.operators):
            out += bytes(op[name] for name, _ in OPERATOR_FIELDS)
        out += bytes(self.globals[name] for name, _ in GLOBAL_FIELDS)
        out += self.name.encode("ascii")
        return bytes(out)

    @classmethod
    def from_vced_data(cls, data: bytes) -> "DX7Voice":
        """Parse 155 parameter bytes; out-of-range values are refused."""
        if len(data) != VOICE_DATA_SIZE:
            raise SDSAudioError(f"a VCED voice has {VOICE_DATA_SIZE} data bytes, got {len(data)}")
        ops = []
        for k in range(6):
            chunk = data[21 * k:21 * (k + 1)]
            ops.append({name: chunk[i] for i, (name, _) in enumerate(OPERATOR_FIELDS)})
        ops.reverse()
        glob = {name: data[126 + i] for i, (name, _) in enumerate(GLOBAL_FIELDS)}
        voice = cls(operators=ops, globals=glob, name=_decode_name(data[145:155]))
        voice.validate()
        return voice

    # -- VMEM (packed, 128 bytes) ---------------------------------------------------------
    def to_packed(self) -> bytes:
        """The 128-byte packed form used in 32-voice banks."""
        self.validate()
        out = bytearray()
        for op in reversed(self.operators):
            out += bytes([op["r1"], op["r2"], op["r3"], op["r4"], op["l1"], op["l2"], op["l3"], op["l4"],
                          op["breakpoint"], op["left_depth"], op["right_depth"],
                          (op["right_curve"] << 2) | op["left_curve"],
                          (op["detune"] << 3) | op["rate_scaling"],
                          (op["key_vel_sens"] << 2) | op["amp_mod_sens"],
                          op["output_level"],
                          (op["coarse"] << 1) | op["osc_mode"],
                          op["fine"]])
        g = self.globals
        out += bytes([g["pr1"], g["pr2"], g["pr3"], g["pr4"], g["pl1"], g["pl2"], g["pl3"], g["pl4"],
                      g["algorithm"], (g["osc_key_sync"] << 3) | g["feedback"],
                      g["lfo_speed"], g["lfo_delay"], g["lfo_pitch_depth"], g["lfo_amp_depth"],
                      (g["pitch_mod_sens"] << 4) | (g["lfo_wave"] << 1) | g["lfo_sync"],
                      g["transpose"]])
        out += self.name.encode("ascii")
        return bytes(out)

    @classmethod
    def from_packed(cls, data: bytes) -> "DX7Voice":
        """Parse 128 packed bytes, repairing fields out of range (see the module docstring)."""
        if len(data) != PACKED_VOICE_SIZE:
            raise SDSAudioError(f"a packed DX7 voice has {PACKED_VOICE_SIZE} bytes, got {len(data)}")
        repairs: list[str] = []
        spare = _SpareBits(repairs)
        ops = []
        for k in range(6):
            b = data[17 * k:17 * (k + 1)]
            where = f"operator {6 - k}"
            op = {"r1": b[0], "r2": b[1], "r3": b[2], "r4": b[3], "l1": b[4], "l2": b[5], "l3": b[6],
                  "l4": b[7], "breakpoint": b[8], "left_depth": b[9], "right_depth": b[10],
                  "left_curve": b[11] & 3, "right_curve": (b[11] >> 2) & 3,
                  "rate_scaling": b[12] & 7, "detune": (b[12] >> 3) & 15,
                  "amp_mod_sens": b[13] & 3, "key_vel_sens": (b[13] >> 2) & 7,
                  "output_level": b[14], "osc_mode": b[15] & 1, "coarse": (b[15] >> 1) & 31, "fine": b[16]}
            spare.check(b[11], 0x0F, where)
            spare.check(b[12], 0x7F, where)
            spare.check(b[13], 0x1F, where)
            spare.check(b[15], 0x3F, where)
            ops.append(_clamped(op, OPERATOR_FIELDS, where, repairs))
        ops.reverse()
        b = data[102:118]
        glob = {"pr1": b[0], "pr2": b[1], "pr3": b[2], "pr4": b[3], "pl1": b[4], "pl2": b[5], "pl3": b[6],
                "pl4": b[7], "algorithm": b[8] & 31, "feedback": b[9] & 7, "osc_key_sync": (b[9] >> 3) & 1,
                "lfo_speed": b[10], "lfo_delay": b[11], "lfo_pitch_depth": b[12], "lfo_amp_depth": b[13],
                "lfo_sync": b[14] & 1, "lfo_wave": (b[14] >> 1) & 7, "pitch_mod_sens": (b[14] >> 4) & 7,
                "transpose": b[15]}
        spare.check(b[8], 0x1F, "algorithm")
        spare.check(b[9], 0x0F, "feedback / key sync")
        spare.check(b[14], 0x7F, "LFO")
        glob = _clamped(glob, GLOBAL_FIELDS, "voice", repairs)
        name = _decode_name(data[118:128])
        return cls(operators=ops, globals=glob, name=name, repairs=repairs)


class _SpareBits:
    def __init__(self, repairs: list[str]):
        self.repairs = repairs

    def check(self, byte: int, mask: int, where: str) -> None:
        if byte & ~mask & 0xFF:
            self.repairs.append(f"{where}: unused bits {byte & ~mask & 0xFF:#04x} cleared")


def _clamped(values: dict[str, int], spec: Sequence[tuple[str, int]], where: str,
             repairs: list[str]) -> dict[str, int]:
    out = {}
    for name, top in spec:
        v = values[name]
        if v > top:
            repairs.append(f"{where} {name}: {v} clamped to {top}")
            v = top
        out[name] = v
    return out


def _check_int(value: object, top: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise SDSAudioError(f"DX7 voice field {what} must be an integer 0..{top}, got {value!r}")


def check_name(name: str) -> None:
    """SDSAudioError unless ``name`` is exactly 10 printable ASCII characters."""
    if not isinstance(name, str) or len(name) != NAME_LENGTH or not all(32 <= ord(c) < 127 for c in name):
        raise SDSAudioError(f"a DX7 voice name is {NAME_LENGTH} printable ASCII characters, got {name!r}")


def _decode_name(raw: bytes) -> str:
    if any(not 32 <= b < 127 for b in raw):
        raise SDSAudioError(f"the voice name {raw!r} is not printable ASCII; the file is not a DX7 voice dump "
                            "or is damaged")
    return raw.decode("ascii")


def voice_name(text: str) -> str:
    """A DX7 voice name from free text (e.g. a prompt): printable ASCII, upper case, 10 chars."""
    ascii_only = "".join(c if 32 <= ord(c) < 127 else " " for c in str(text))
    words = " ".join(ascii_only.split()).upper()
    return (words[:NAME_LENGTH] or "SDS VOICE").ljust(NAME_LENGTH)


# -----------------------------------------------------------------------------------
# files
# -----------------------------------------------------------------------------------
def checksum(data: bytes) -> int:
    """Two's complement of the 7-bit sum of ``data``."""
    return (-sum(data)) & 0x7F


def vced_bytes(voice: DX7Voice, channel: int = 0) -> bytes:
    """A single-voice (VCED) dump, 163 bytes."""
    data = voice.to_vced_data()
    return VCED_HEADER[:2] + bytes([channel & 0x0F]) + VCED_HEADER[3:] + data + bytes([checksum(data), 0xF7])


def vmem_bytes(voices: Sequence[DX7Voice], channel: int = 0) -> bytes:
    """A 32-voice (VMEM) bank dump, 4104 bytes; fewer voices are padded with INIT VOICE."""
    if len(voices) > BANK_VOICES:
        raise SDSAudioError(f"a DX7 bank holds {BANK_VOICES} voices, got {len(voices)}")
    padded = list(voices) + [DX7Voice.init_voice() for _ in range(BANK_VOICES - len(voices))]
    data = b"".join(v.to_packed() for v in padded)
    return VMEM_HEADER[:2] + bytes([channel & 0x0F]) + VMEM_HEADER[3:] + data + bytes([checksum(data), 0xF7])


def parse_syx(raw: bytes, source: str = "the data") -> list[DX7Voice]:
    """Voices in a VCED (1 voice) or VMEM (32 voices) dump.

    Raises:
        SDSAudioError: truncated or over-long data, a header of neither kind, a wrong
            checksum, a missing end byte, or a voice name that is not ASCII.
    """
    if len(raw) < 6 or raw[0] != 0xF0 or raw[1] != 0x43:
        raise SDSAudioError(f"{source} is not a Yamaha system-exclusive dump (it must start with F0 43)")
    if raw[3:6] == VCED_HEADER[3:]:
        kind, size, body = "single-voice (VCED)", VCED_SIZE, VOICE_DATA_SIZE
    elif raw[3:6] == VMEM_HEADER[3:]:
        kind, size, body = "32-voice (VMEM)", VMEM_SIZE, BANK_VOICES * PACKED_VOICE_SIZE
    else:
        raise SDSAudioError(f"{source} has header {raw[:6].hex(' ')}; expected a DX7 single voice "
                            f"({VCED_HEADER.hex(' ')}) or 32-voice bank ({VMEM_HEADER.hex(' ')}), n = channel")
    if raw[2] & 0xF0:
        raise SDSAudioError(f"{source}: byte 3 must be 0n (a bulk dump on channel n), got {raw[2]:#04x}")
    if len(raw) < size:
        raise SDSAudioError(f"{source} is truncated: a {kind} dump has {size} bytes, this has {len(raw)}")
    if len(raw) > size:
        raise SDSAudioError(f"{source} has {len(raw) - size} bytes after the {kind} dump's {size}; "
                            "split multi-dump files first")
    data = raw[6:6 + body]
    if raw[-1] != 0xF7:
        raise SDSAudioError(f"{source} does not end with F7 (end of exclusive); the file is damaged")
    if any(b > 0x7F for b in data):
        raise SDSAudioError(f"{source} holds data bytes above 7F; the file is damaged")
    if checksum(data) != raw[6 + body]:
        raise SDSAudioError(f"{source} has a wrong checksum ({raw[6 + body]:#04x}, expected "
                            f"{checksum(data):#04x}); the file is damaged")
    if body == VOICE_DATA_SIZE:
        return [DX7Voice.from_vced_data(data)]
    return [DX7Voice.from_packed(data[i * PACKED_VOICE_SIZE:(i + 1) * PACKED_VOICE_SIZE])
            for i in range(BANK_VOICES)]


def read_syx(path: str | os.PathLike) -> list[DX7Voice]:
    """Voices of a ``.syx`` file (1 or 32). See :func:`parse_syx`."""
    path = Path(path)
    if not path.is_file():
        raise SDSAudioError(f"{path} does not exist")
    size = path.stat().st_size
    if size > 2 * VMEM_SIZE:
        raise SDSAudioError(f"{path} is {size} bytes; a DX7 dump is {VCED_SIZE} or {VMEM_SIZE} bytes")
    return parse_syx(path.read_bytes(), str(path))


def read_voice(path: str | os.PathLike, voice: int | None = None) -> DX7Voice:
    """One voice of a ``.syx`` file; ``voice`` (1-based) is required for a bank."""
    voices = read_syx(path)
    if voice is None:
        if len(voices) != 1:
            raise SDSAudioError(f"{path} is a bank of {len(voices)} voices; say which with --voice N "
                                f"(1..{len(voices)})")
        return voices[0]
    if isinstance(voice, bool) or not isinstance(voice, int) or not 1 <= voice <= len(voices):
        raise SDSAudioError(f"voice {voice!r} is out of range: {path} holds voices 1..{len(voices)}")
    return voices[voice - 1]


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_vced(path: str | os.PathLike, voice: DX7Voice, channel: int = 0) -> Path:
    """Write a single-voice dump (atomically)."""
    return write_bytes_atomic(path, vced_bytes(voice, channel))


def write_vmem(path: str | os.PathLike, voices: Sequence[DX7Voice], channel: int = 0) -> Path:
    """Write a 32-voice bank (atomically), padded with INIT VOICE."""
    return write_bytes_atomic(path, vmem_bytes(voices, channel))


__all__ = ["DX7Voice", "OPERATOR_FIELDS", "GLOBAL_FIELDS", "parse_syx", "read_syx", "read_voice", "vced_bytes",
           "vmem_bytes", "write_vced", "write_vmem", "voice_name", "check_name", "checksum"]
