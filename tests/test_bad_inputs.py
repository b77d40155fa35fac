"""Bad and odd inputs through the ``sds-audio`` entry point: one line, the right exit code, nothing left behind.

Each case of :data:`CASES` runs :func:`sds_audio.cli.main` (the console script's
function) in a fresh working directory and asserts: the exit status; exactly one
line on stderr, ``sds-audio...error: ...``, holding the expected words and no
traceback; and that neither the working directory nor the shared inputs changed
(no half-written file, no run.json or checkpoint, no directory the command made).
Models are loaded only where the error can only show after loading (broken
weights, a duration longer than the tiny prior's window); those use the tiny
random prior of ``tiny_embedded``.
"""

from __future__ import annotations

import json
import pickle
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sds_audio.cli import main

from tiny_embedded import write_prior_dir

PRESETS = Path(str(resources.files("sds_audio").joinpath("assets/presets")))
HAVE_PROC = Path("/proc").is_dir() and sys.platform.startswith("linux")
MARKER = "unpickled-code-ran.txt"


class _Exploit:
    """Unpickling this would create a file: loading a checkpoint must never get that far."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def _noise(seconds: float, rate: int, channels: int = 1, scale: float = 0.3) -> np.ndarray:
    n = int(round(seconds * rate))
    x = np.random.default_rng(0).standard_normal((n, channels)) * scale
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Every input file the cases read, written once; the cases must not change any of it."""
    root = tmp_path_factory.mktemp("bad_inputs")
    prior = write_prior_dir(root / "prior")
    (root / "adir").mkdir()
    (root / "emptydir").mkdir()
    (root / "afile.txt").write_text("a file, not a directory")
    # audio
    sf.write(str(root / "good.wav"), _noise(0.5, 16000, 2), 16000, subtype="PCM_16")
    sf.write(str(root / "short10ms.wav"), _noise(0.01, 16000), 16000, subtype="PCM_16")
    sf.write(str(root / "short2ms.wav"), _noise(0.002, 16000), 16000, subtype="PCM_16")
    sf.write(str(root / "long10min.wav"), _noise(600.0, 1000), 1000, subtype="PCM_16")
    sf.write(str(root / "six.wav"), _noise(0.3, 16000, 6), 16000, subtype="PCM_16")
    sf.write(str(root / "silent.wav"), np.zeros((8000, 1), np.float32), 16000, subtype="PCM_16")
    sf.write(str(root / "nan.wav"), np.full((8000, 1), np.nan, np.float32), 16000, subtype="FLOAT")
    sf.write(str(root / "clipped.wav"), np.clip(_noise(0.5, 16000, 1, scale=20.0), -1, 1), 16000,
             subtype="PCM_16")
    sf.write(str(root / "empty.wav"), np.zeros((0, 1), np.float32), 16000, subtype="PCM_16")
    (root / "notaudio.wav").write_text("this is not audio\n")
    # presets
    good = json.loads((PRESETS / "fm_bass.json").read_text())
    (root / "notjson.json").write_text("{\"format\": \"sds-audio-preset\", ")
    (root / "binary.json").write_bytes(bytes(range(128, 256)) * 4)
    (root / "nested.json").write_text("[" * 200_000 + "]" * 200_000)
    (root / "huge.json").write_text(" " * (5 * 1024 * 1024) + "{}")
    (root / "range.json").write_text(json.dumps({**good, "params": {**good["params"], "f0_hz": -5}}))
    (root / "nan.json").write_text(json.dumps(good).replace(f"\"duration_s\": {json.dumps(good['duration_s'])}",
                                                            "\"duration_s\": NaN"))
    (root / "missing.json").write_text(json.dumps({k: v for k, v in good.items() if k != "params"}))
    (root / "array.json").write_text("[1, 2, 3]")
    (root / "pickle.json").write_bytes(pickle.dumps(_Exploit(str(root / MARKER)), protocol=4))
    # weights
    (root / "pickled.safetensors").write_bytes(pickle.dumps(_Exploit(str(root / MARKER)), protocol=4))
    (root / "random.safetensors").write_bytes(np.random.default_rng(1).bytes(4096))
    codec_bytes = (prior / "codec.safetensors").read_bytes()
    (root / "truncated.safetensors").write_bytes(codec_bytes[: len(codec_bytes) // 2])
    broken = root / "brokenprior"
    broken.mkdir()
    (broken / "codec.safetensors").write_bytes(np.random.default_rng(2).bytes(4096))
    (broken / "flow.safetensors").write_bytes(np.random.default_rng(3).bytes(4096))
    truncated = root / "truncprior"
    truncated.mkdir()
    (truncated / "codec.safetensors").write_bytes(codec_bytes)
    flow_bytes = (prior / "flow.safetensors").read_bytes()
    (truncated / "flow.safetensors").write_bytes(flow_bytes[: len(flow_bytes) // 2])
    # run directories to resume
    run = {"format": "sds-audio-run", "task": "synthesize", "synth": "fm", "prompt": "a bell",
           "options": {"prior": str(prior), "steps": 3, "restarts": 2, "duration_s": 0.3}, "status": "interrupted"}
    for name, status, checkpoint in (("done_run", "done", None), ("pickled_run", "interrupted", "pickle"),
                                     ("truncated_run", "interrupted", "truncated"), ("no_ckpt_run", "running", None)):
        d = root / name
        d.mkdir()
        (d / "run.json").write_text(json.dumps({**run, "status": status}))
        if checkpoint == "pickle":
            (d / "checkpoint.pt").write_bytes(pickle.dumps({"step": _Exploit(str(root / MARKER))}, protocol=2))
        elif checkpoint == "truncated":
            torch.save({"step": 1, "raw": {"x": torch.zeros(1000)}}, d / "checkpoint.pt")
            data = (d / "checkpoint.pt").read_bytes()
            (d / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    sep = root / "sep_run"
    sep.mkdir()
    (sep / "run.json").write_text(json.dumps({**run, "task": "separate"}))
    taken = root / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("the user's file")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "manifest.jsonl").write_text("")
    return root


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under ``root``: relative path -> (size, mtime in ns); directories size -1."""
    out = {}
    for p in sorted(root.rglob("*")):
        stat = p.stat()
        out[str(p.relative_to(root))] = (-1 if p.is_dir() else stat.st_size, stat.st_mtime_ns)
    return out


# (id, argv, exit status, words the message must hold); {in}: the inputs, {out}: the case's empty working
# directory, {prior}: the tiny prior. A status of "argparse" means argparse's own error (exit 2).
P = ["--prior", "{prior}", "--quiet", "--no-judge"]
FM = ["fm", "a bell", "-o", "{out}/run", *P]
SEP = ["separate", "{in}/good.wav", "-p", "a bell", "-p", "rain", "-o", "{out}/sep", *P]
CASES: list[tuple[str, list[str], int | str, str]] = [
    # render: the preset
    ("render-missing-preset", ["render", "{in}/nope.json", "-o", "{out}/x.wav"], 2, "does not exist"),
    ("render-preset-is-dir", ["render", "{in}/adir", "-o", "{out}/x.wav"], 2, "is a directory"),
    ("render-not-json", ["render", "{in}/notjson.json", "-o", "{out}/x.wav"], 2, "not valid JSON"),
    ("render-not-utf8", ["render", "{in}/binary.json", "-o", "{out}/x.wav"], 2, "not UTF-8"),
    ("render-nested-json", ["render", "{in}/nested.json", "-o", "{out}/x.wav"], 2, "nested too deeply"),
    ("render-huge-preset", ["render", "{in}/huge.json", "-o", "{out}/x.wav"], 2, "at most"),
    ("render-out-of-range", ["render", "{in}/range.json", "-o", "{out}/x.wav"], 2, "params.f0_hz"),
    ("render-nan-constant", ["render", "{in}/nan.json", "-o", "{out}/x.wav"], 2, "NaN"),
    ("render-missing-field", ["render", "{in}/missing.json", "-o", "{out}/x.wav"], 2, "missing field"),
    ("render-json-array", ["render", "{in}/array.json", "-o", "{out}/x.wav"], 2, "JSON object"),
    ("render-pickle-as-preset", ["render", "{in}/pickle.json", "-o", "{out}/x.wav"], 2, "not UTF-8"),
    # render: the output and options
    ("render-out-dir-missing", ["render", "{in}/range.json", "-o", "{out}/no/such/x.wav"], 2, "does not exist"),
    ("render-out-proc", ["render", str(PRESETS / "fm_bass.json"), "-o", "/proc/x.wav"], 2, "/proc"),
    ("render-out-unknown-ext", ["render", str(PRESETS / "fm_bass.json"), "-o", "{out}/x.xyz"], 2, ".flac"),
    ("render-out-no-ext", ["render", str(PRESETS / "fm_bass.json"), "-o", "{out}/x"], 2, "ending in"),
    ("render-out-exists", ["render", str(PRESETS / "fm_bass.json"), "-o", "{in}/good.wav"], 2, "--overwrite"),
    ("render-out-is-dir", ["render", str(PRESETS / "fm_bass.json"), "-o", "{out}"], 2, "is a directory"),
    ("render-duration-nan", ["render", str(PRESETS / "fm_bass.json"), "-o", "{out}/x.wav", "--duration-s", "nan"],
     2, "--duration-s"),
    ("render-duration-negative", ["render", str(PRESETS / "fm_bass.json"), "-o", "{out}/x.wav",
                                  "--duration-s", "-1"], 2, "--duration-s"),
    ("render-duration-huge", ["render", str(PRESETS / "fm_bass.json"), "-o", "{out}/x.wav", "--duration-s", "1e6"],
     2, "--duration-s"),
    ("render-pitch-of-impact", ["render", str(PRESETS / "impact_wood_knock.json"), "-o", "{out}/x.wav",
                                "--f0-hz", "100"], 2, "pitch"),
    ("render-f0-inf", ["render", str(PRESETS / "fm_bass.json"), "-o", "{out}/x.wav", "--f0-hz", "inf"], 2,
     "--f0-hz"),
    ("render-duration-not-a-number", ["render", str(PRESETS / "fm_bass.json"), "-o", "{out}/x.wav",
                                      "--duration-s", "abc"], "argparse", "invalid float"),
    ("render-no-output", ["render", str(PRESETS / "fm_bass.json")], "argparse", "required"),
    # fm / impact
    ("fm-empty-prompt", ["fm", "  ", "-o", "{out}/run", *P], 2, "prompt is empty"),
    ("fm-huge-prompt", ["fm", "bell " * 2000, "-o", "{out}/run", *P], 2, "characters long"),
    ("fm-no-output", ["fm", "a bell", *P], 2, "-o DIR"),
    ("fm-prompt-and-resume", ["fm", "a bell", "--resume", "{in}/pickled_run"], 2, "do not give a prompt"),
    ("fm-unknown-prior", ["fm", "a bell", "-o", "{out}/run", "--prior", "no-such-prior"], 2, "unknown prior"),
    ("fm-prior-empty-dir", ["fm", "a bell", "-o", "{out}/run", "--prior", "{in}/emptydir"], 2, "holds no prior"),
    ("fm-prior-is-file", ["fm", "a bell", "-o", "{out}/run", "--prior", "{in}/afile.txt"], 2, "is a file"),
    ("fm-prior-random-weights", ["fm", "a bell", "-o", "{out}/run", "--prior", "{in}/brokenprior", "--quiet",
                                 "--no-judge"], 1, "brokenprior"),
    ("fm-prior-truncated-weights", ["fm", "a bell", "-o", "{out}/run", "--prior", "{in}/truncprior", "--quiet",
                                    "--no-judge"], 1, "truncprior"),
    ("fm-duration-huge", [*FM, "--duration-s", "1e6"], 2, "--duration-s"),
    ("fm-duration-zero", [*FM, "--duration-s", "0"], 2, "--duration-s"),
    ("fm-duration-over-prior", [*FM, "--duration-s", "5"], 2, "prior's maximum"),
    ("fm-steps-zero", [*FM, "--steps", "0"], 2, "--steps"),
    ("fm-steps-negative", [*FM, "--steps", "-5"], 2, "--steps"),
    ("fm-restarts-zero", [*FM, "--restarts", "0"], 2, "--restarts"),
    ("fm-cfg-nan", [*FM, "--cfg", "nan"], 2, "--cfg"),
    ("fm-lr-zero", [*FM, "--lr", "0"], 2, "--lr"),
    ("fm-lr-inf", [*FM, "--lr", "inf"], 2, "--lr"),
    ("fm-denoise-steps-zero", [*FM, "--denoise-steps", "0"], 2, "--denoise-steps"),
    ("fm-seed-negative", [*FM, "--seed", "-1"], 2, "--seed"),
    ("fm-seed-huge", [*FM, "--seed", str(2 ** 70)], 2, "--seed"),
    ("fm-device-unknown", [*FM, "--device", "toaster"], 2, "unknown device"),
    ("fm-device-missing-gpu", [*FM, "--device", "cuda:99"], 2, "cuda:99"),
    ("fm-steps-not-int", [*FM, "--steps", "1.5"], "argparse", "invalid int"),
    ("impact-output-is-file", ["impact", "a pot", "-o", "{in}/afile.txt", *P], 2, "is a file"),
    ("impact-output-not-empty", ["impact", "a pot", "-o", "{in}/taken", *P], 2, "--overwrite"),
    ("impact-output-proc", ["impact", "a pot", "-o", "/proc/sds-audio-run", *P], 2, "/proc"),
    ("impact-negative-empty", ["impact", "a pot", "-o", "{out}/run", "--negative", " ", *P], 2,
     "negative prompt is empty"),
    ("fm-resume-nothing", ["fm", "--resume", "{in}/adir"], 2, "nothing to resume"),
    ("fm-resume-done", ["fm", "--resume", "{in}/done_run"], 2, "already finished"),
    ("fm-resume-no-checkpoint", ["fm", "--resume", "{in}/no_ckpt_run"], 2, "before its first checkpoint"),
    ("fm-resume-pickled-checkpoint", ["fm", "--resume", "{in}/pickled_run"], 2, "not a plain checkpoint"),
    ("fm-resume-truncated-checkpoint", ["fm", "--resume", "{in}/truncated_run"], 2, "checkpoint"),
    ("fm-resume-separation-run", ["fm", "--resume", "{in}/sep_run"], 2, "not a prompt-to-preset run"),
    ("fm-resume-a-file", ["fm", "--resume", "{in}/afile.txt"], 2, "is a file"),
    # separate
    ("separate-one-prompt", ["separate", "{in}/good.wav", "-p", "a bell", "-o", "{out}/sep", *P], 2,
     "at least two prompts"),
    ("separate-no-prompt", ["separate", "{in}/good.wav", "-o", "{out}/sep", *P], 2, "-p"),
    ("separate-empty-prompt", ["separate", "{in}/good.wav", "-p", "bell", "-p", " ", "-o", "{out}/sep", *P], 2,
     "prompt 2 is empty"),
    ("separate-missing-mixture", ["separate", "{in}/nope.wav", "-p", "a", "-p", "b", "-o", "{out}/sep", *P], 2,
     "does not exist"),
    ("separate-mixture-is-dir", ["separate", "{in}/adir", "-p", "a", "-p", "b", "-o", "{out}/sep", *P], 2,
     "is a directory"),
    ("separate-not-audio", ["separate", "{in}/notaudio.wav", "-p", "a", "-p", "b", "-o", "{out}/sep", *P], 2,
     "cannot read"),
    ("separate-no-samples", ["separate", "{in}/empty.wav", "-p", "a", "-p", "b", "-o", "{out}/sep", *P], 2,
     "no samples"),
    ("separate-silent", ["separate", "{in}/silent.wav", "-p", "a", "-p", "b", "-o", "{out}/sep", *P], 2,
     "silence"),
    ("separate-nan", ["separate", "{in}/nan.wav", "-p", "a", "-p", "b", "-o", "{out}/sep", *P], 2, "NaN"),
    ("separate-clipped", ["separate", "{in}/clipped.wav", "-p", "a", "-p", "b", "-o", "{out}/sep", *P], 2,
     "clipped"),
    ("separate-10ms", ["separate", "{in}/short10ms.wav", "-p", "a", "-p", "b", "-o", "{out}/sep", *P], 2,
     "at least 50 ms"),
    ("separate-10min", ["separate", "{in}/long10min.wav", "-p", "a", "-p", "b", "-o", "{out}/sep", *P], 2,
     "at most 300 s"),
    ("separate-six-channels", ["separate", "{in}/six.wav", "-p", "a", "-p", "b", "-o", "{out}/sep", *P], 2,
     "6 channels"),
    ("separate-gamma-nan", [*SEP, "--gamma", "nan"], 2, "--gamma"),
    ("separate-gamma-negative", [*SEP, "--gamma", "-1"], 2, "--gamma"),
    ("separate-steps-negative", [*SEP, "--steps", "-1"], 2, "--steps"),
    ("separate-output-is-file", ["separate", "{in}/good.wav", "-p", "a", "-p", "b", "-o", "{in}/afile.txt", *P],
     2, "is a file"),
    ("separate-resume-with-prompts", ["separate", "--resume", "{in}/sep_run", "-p", "a"], 2, "give no mixture"),
    ("separate-resume-synthesis-run", ["separate", "--resume", "{in}/pickled_run"], 2, "not a separation run"),
    ("separate-unknown-init", [*SEP, "--init", "noise"], "argparse", "invalid choice"),
    # match
    ("match-2ms", ["match", "{in}/short2ms.wav", "-o", "{out}/m"], 2, "needs at least"),
    ("match-10min", ["match", "{in}/long10min.wav", "-o", "{out}/m"], 2, "at most 30 s"),
    ("match-six-channels", ["match", "{in}/six.wav", "-o", "{out}/m"], 2, "6 channels"),
    ("match-missing", ["match", "{in}/nope.wav", "-o", "{out}/m"], 2, "does not exist"),
    ("match-target-is-dir", ["match", "{in}/adir", "-o", "{out}/m"], 2, "is a directory"),
    ("match-silent", ["match", "{in}/silent.wav", "-o", "{out}/m"], 2, "silence"),
    ("match-steps-zero", ["match", "{in}/good.wav", "-o", "{out}/m", "--steps", "0"], 2, "--steps"),
    ("match-restarts-huge", ["match", "{in}/good.wav", "-o", "{out}/m", "--restarts", "1000"], 2, "--restarts"),
    ("match-output-proc", ["match", "{in}/good.wav", "-o", "/proc/sds-audio-match"], 2, "/proc"),
    ("match-output-not-empty", ["match", "{in}/good.wav", "-o", "{in}/taken"], 2, "--overwrite"),
    # codec roundtrip
    ("roundtrip-missing-input", ["codec", "roundtrip", "{in}/nope.wav", "-o", "{out}/x.wav"], 2, "does not exist"),
    ("roundtrip-10min", ["codec", "roundtrip", "{in}/long10min.wav", "-o", "{out}/x.wav"], 2, "at most 120 s"),
    ("roundtrip-six-channels", ["codec", "roundtrip", "{in}/six.wav", "-o", "{out}/x.wav"], 2, "6 channels"),
    ("roundtrip-no-samples", ["codec", "roundtrip", "{in}/empty.wav", "-o", "{out}/x.wav"], 2, "no samples"),
    ("roundtrip-output-proc", ["codec", "roundtrip", "{in}/good.wav", "-o", "/proc/x.wav"], 2, "/proc"),
    ("roundtrip-output-ext", ["codec", "roundtrip", "{in}/good.wav", "-o", "{out}/x.txt"], 2, "ending in"),
    ("roundtrip-weights-missing", ["codec", "roundtrip", "{in}/good.wav", "-o", "{out}/x.wav", "--weights",
                                   "{in}/nope.safetensors"], 2, "does not exist"),
    ("roundtrip-weights-dir", ["codec", "roundtrip", "{in}/good.wav", "-o", "{out}/x.wav", "--weights",
                               "{in}/adir"], 2, "is a directory"),
    ("roundtrip-weights-pickled", ["codec", "roundtrip", "{in}/good.wav", "-o", "{out}/x.wav", "--weights",
                                   "{in}/pickled.safetensors"], 1, "pickled.safetensors"),
    ("roundtrip-weights-random", ["codec", "roundtrip", "{in}/good.wav", "-o", "{out}/x.wav", "--weights",
                                  "{in}/random.safetensors"], 1, "random.safetensors"),
    ("roundtrip-weights-truncated", ["codec", "roundtrip", "{in}/good.wav", "-o", "{out}/x.wav", "--weights",
                                     "{in}/truncated.safetensors"], 1, "truncated.safetensors"),
    # generate
    ("generate-cfg-nan", ["generate", "a bell", "-o", "{out}/x.wav", "--cfg", "nan"], 2, "--cfg"),
    ("generate-seconds-zero", ["generate", "a bell", "-o", "{out}/x.wav", "--seconds", "0"], 2, "--seconds"),
    ("generate-seconds-huge", ["generate", "a bell", "-o", "{out}/x.wav", "--seconds", "1e9"], 2, "--seconds"),
    ("generate-steps-zero", ["generate", "a bell", "-o", "{out}/x.wav", "--steps", "0"], 2, "--steps"),
    ("generate-empty-prompt", ["generate", "", "-o", "{out}/x.wav"], 2, "prompt is empty"),
    ("generate-sway-out-of-range", ["generate", "a bell", "-o", "{out}/x.wav", "--sway", "5"], 2, "--sway"),
    ("generate-assets-missing", ["generate", "a bell", "-o", "{out}/x.wav", "--assets", "{in}/nope"], 2,
     "does not exist"),
    ("generate-assets-empty", ["generate", "a bell", "-o", "{out}/x.wav", "--assets", "{in}/emptydir",
                               "--steps", "1"], 1, "emptydir"),
    ("generate-output-ext", ["generate", "a bell", "-o", "{out}/x.aiff"], 2, "ending in"),
    # corpus build
    ("corpus-output-proc", ["corpus", "build", "/proc/sds-audio-corpus", "--small"], 2, "/proc"),
    ("corpus-output-is-file", ["corpus", "build", "{in}/afile.txt", "--small"], 2, "is a file"),
    ("corpus-n-zero", ["corpus", "build", "{out}/c", "--n-per-concept", "0"], 2, "--n-per-concept"),
    ("corpus-workers-negative", ["corpus", "build", "{out}/c", "--workers", "-1"], 2, "--workers"),
    # train
    ("train-corpus-missing", ["train", "judge", "--corpus", "{in}/nope", "--out", "{out}/t"], 2, "does not exist"),
    ("train-not-a-corpus", ["train", "judge", "--corpus", "{in}/emptydir", "--out", "{out}/t"], 2, "not a corpus"),
    ("train-steps-zero", ["train", "judge", "--corpus", "{in}/corpus", "--out", "{out}/t", "--steps", "0"], 2,
     "--steps"),
    ("train-lr-nan", ["train", "codec", "--corpus", "{in}/corpus", "--out", "{out}/t", "--lr", "nan"], 2, "--lr"),
    ("train-batch-zero", ["train", "codec", "--corpus", "{in}/corpus", "--out", "{out}/t", "--batch-size", "0"], 2,
     "--batch-size"),
    ("train-flow-without-codec", ["train", "flow", "--corpus", "{in}/corpus", "--out", "{out}/t"], 2, "--codec"),
    ("train-init-missing", ["train", "codec", "--corpus", "{in}/corpus", "--out", "{out}/t", "--init-from",
                            "{in}/nope.safetensors"], 2, "does not exist"),
    ("train-out-is-file", ["train", "codec", "--corpus", "{in}/corpus", "--out", "{in}/afile.txt"], 2, "is a file"),
    ("train-decoder-only-alone", ["train", "codec", "--corpus", "{in}/corpus", "--out", "{out}/t",
                                  "--decoder-only"], 2, "--init-from"),
    # ... and what shows only once training starts: no run directory may stay behind
    ("train-judge-empty-corpus", ["train", "judge", "--corpus", "{in}/corpus", "--out", "{out}/t/run"], 2,
     "no clips"),
    ("train-codec-empty-corpus", ["train", "codec", "--corpus", "{in}/corpus", "--out", "{out}/t/run"], 2,
     "no clips"),
    ("train-codec-init-random", ["train", "codec", "--corpus", "{in}/corpus", "--out", "{out}/t/run", "--init-from",
                                 "{in}/random.safetensors"], 1, "random.safetensors"),
    ("train-flow-random-codec", ["train", "flow", "--corpus", "{in}/corpus", "--out", "{out}/t/run", "--codec",
                                 "{in}/random.safetensors"], 1, "random.safetensors"),
    # the command line itself
    ("unknown-command", ["frobnicate"], "argparse", "invalid choice"),
]


def test_the_table_has_at_least_sixty_distinct_cases():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 60


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, inputs, tmp_path, monkeypatch, capsys):
    name, argv, status, words = case
    if "/proc" in " ".join(argv) and not HAVE_PROC:
        pytest.skip("needs Linux /proc (a path no one can write)")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [a.replace("{in}", str(inputs)).replace("{out}", str(work)).replace("{prior}", str(inputs / "prior"))
            for a in argv]
    before_inputs, before_work = _snapshot(inputs), _snapshot(work)

    if status == "argparse":
        with pytest.raises(SystemExit) as exc:
            main(argv)
        code = exc.value.code
        status = 2
    else:
        code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == status, err
    assert len(lines) == 1, err
    assert lines[0].startswith("sds-audio") and "error:" in lines[0] and "Traceback" not in err
    assert words.lower() in lines[0].lower(), lines[0]
    assert _snapshot(work) == before_work          # nothing written, no directory made
    assert _snapshot(inputs) == before_inputs      # inputs untouched (run dirs to resume included)
    assert not (inputs / MARKER).exists()          # no pickled code ran


def test_a_10_ms_clip_is_matched(inputs, tmp_path, capsys):
    """A clip shorter than the impact synth's noise window renders (longer, then cut) instead of crashing."""
    out = tmp_path / "m"
    assert main(["match", str(inputs / "short10ms.wav"), "-o", str(out), "--steps", "2", "--restarts", "1",
                 "--quiet"]) == 0
    sound, rate = sf.read(str(out / "sound.wav"))
    assert rate == 16000 and sound.shape == (160,)
    assert json.loads((out / "run.json").read_text())["status"] == "done"


def test_warnings_print_on_one_line(inputs, tmp_path):
    """A clipped file gives one warning line (no source line), then the error that gives the same share."""
    import subprocess

    result = subprocess.run([sys.executable, "-m", "sds_audio.cli", "separate", str(inputs / "clipped.wav"),
                             "-p", "a", "-p", "b", "-o", str(tmp_path / "s"), "--prior", str(inputs / "prior"),
                             "--quiet", "--no-judge"], capture_output=True, text=True, timeout=300)
    err = result.stderr.splitlines()
    assert result.returncode == 2 and len(err) == 2, result.stderr
    assert err[0].startswith("sds-audio: warning: ") and err[1].startswith("sds-audio: error: ")
    share_warned = err[0].split("% of samples")[0].rsplit(" ", 1)[1]
    share_refused = err[1].split("% of its samples")[0].rsplit(" ", 1)[1]
    assert share_warned == share_refused and 50 < float(share_warned) < 100
    assert not (tmp_path / "s").exists()


def test_the_output_format_follows_the_extension(tmp_path, capsys):
    import sds_audio.audio_io as audio_io

    expected = {".wav": ("WAV", "PCM_24"), ".flac": ("FLAC", "PCM_24"), ".ogg": ("OGG", "VORBIS")}
    if "MP3" in sf.available_formats():
        expected[".mp3"] = ("MP3", "MPEG_LAYER_III")
    for suffix, (fmt, subtype) in expected.items():
        out = tmp_path / f"bell{suffix}"
        assert main(["render", str(PRESETS / "fm_bell.json"), "-o", str(out), "--duration-s", "0.25"]) == 0
        info = sf.info(str(out))
        assert (info.format, info.subtype, info.samplerate) == (fmt, subtype, 44100), suffix
        assert abs(info.frames - 0.25 * 44100) < 0.02 * 44100, suffix    # lossy codecs pad a little
    capsys.readouterr()
    if "MP3" not in sf.available_formats():     # an older libsndfile: .mp3 is refused, never WAV bytes
        assert main(["render", str(PRESETS / "fm_bell.json"), "-o", str(tmp_path / "x.mp3")]) == 2
        assert "no MP3 support" in capsys.readouterr().err
    assert set(audio_io.OUTPUT_FORMATS) == {".wav", ".flac", ".ogg", ".mp3"}


def test_an_emoji_prompt_draws_its_report_without_glyph_warnings(tmp_path):
    import warnings

    from sds_audio.report import write_report

    audio = torch.randn(1, 4000, generator=torch.Generator().manual_seed(0)) * 0.1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_report(tmp_path / "r.png", [("🥁 kick", audio)], 8000, {"loss": {"a": ([1, 2], [1.0, 0.5])}},
                     title="fm: 'kick drum 🥁🎸💥✨'")
    assert [str(w.message) for w in caught] == []
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
