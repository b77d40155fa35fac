"""SIGINT / SIGTERM stop a run after a whole step with a checkpoint; ``--resume`` then ends bit-identical.

The signals are real: ``os.kill`` sends them to this process in the middle of a
step (from inside the SDS objective or the training step), through the handlers
the ``sds-audio`` command installs, and the run must finish that step, write
its checkpoint and exit 130 (SIGINT) or 143 (SIGTERM). A resumed run must give
the same files, byte for byte, as an uninterrupted run with the same seed (CPU).
``kill -9`` gives no chance to clean up: the test checks that what it leaves
does not break running the command again.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open

from sds_audio import sds
from sds_audio.cli import main

from tiny_embedded import write_prior_dir

SIGNALS = [pytest.param(signal.SIGINT, 130, id="SIGINT"), pytest.param(signal.SIGTERM, 143, id="SIGTERM")]
PROMPTS = {"fm": "a soft bell", "impact": "hitting a pot with a wooden spoon"}



@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Bit-identical comparisons hold for one thread count; CI machines may default to several."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)

@pytest.fixture(scope="module", autouse=True)
def default_signal_handlers():
    """Python's own handlers for each test, whatever an earlier test (or library: Ray, gradio) left installed."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory) -> str:
    return str(write_prior_dir(tmp_path_factory.mktemp("tiny_prior")))


def _fast(prior: str) -> list[str]:
    return ["--prior", prior, "--steps", "4", "--restarts", "2", "--duration-s", "0.3", "--quiet", "--no-judge"]


def _signal_on_call(monkeypatch, owner, name: str, call: int, signum: int) -> dict:
    """Patch ``owner.name`` to send ``signum`` to this process at its ``call``-th call (then run it)."""
    real = getattr(owner, name)
    seen = {"calls": 0}

    def wrapper(*args, **kwargs):
        seen["calls"] += 1
        if seen["calls"] == call:
            os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return seen


def _checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["step"])


@pytest.fixture(scope="module")
def uninterrupted(prior_dir, tmp_path_factory) -> dict[str, Path]:
    """One uninterrupted run per command, the reference for the resumed ones."""
    root = tmp_path_factory.mktemp("uninterrupted")
    runs = {}
    for command, prompt in PROMPTS.items():
        assert main([command, prompt, "-o", str(root / command), *_fast(prior_dir)]) == 0
        runs[command] = root / command
    mix = _mixture(root / "mix.wav")
    assert main(["separate", str(mix), "-p", "a bell tone", "-p", "rain noise", "-o", str(root / "separate"),
                 "--prior", prior_dir, "--steps", "3", "--quiet", "--no-judge"]) == 0
    runs["separate"] = root / "separate"
    runs["mixture"] = mix
    return runs


def _mixture(path: Path) -> Path:
    t = np.arange(int(16000 * 0.4)) / 16000
    x = 0.3 * (np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t) + 0.3 * np.random.default_rng(0).standard_normal(t.size))
    sf.write(str(path), x, 16000, subtype="PCM_16")
    return path


def test_step_interrupts_defer_a_signal_to_the_step_end_and_a_second_one_stops_at_once():
    from sds_audio.interrupts import StepInterrupts, Terminated, at_step_boundary, terminate_as_exception

    done, stopped_after = [], []
    with terminate_as_exception():
        stop = StepInterrupts()
        with pytest.raises(Terminated) as exc:
            for step in stop.steps(range(10), on_stop=stopped_after.append):
                if step == 2:
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.01)          # the handler has run by now: it only took note
                done.append(step)
        assert at_step_boundary(exc.value) and done == [0, 1, 2] and stopped_after == [2]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler     # handlers put back

        with pytest.raises(KeyboardInterrupt) as exc, StepInterrupts() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)                                  # the user insists
            time.sleep(0.01)
        assert not at_step_boundary(exc.value) and stop.pending == signal.SIGINT


def test_the_command_line_defers_sigint_to_the_step_end():
    # the deferral wraps Python's own SIGINT handler; a test runner that replaced it would void these tests
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("command", ["fm", "impact"])
@pytest.mark.parametrize("signum, status", SIGNALS)
def test_prompt_run_stopped_by_a_signal_resumes_bit_identically(command, signum, status, prior_dir, uninterrupted,
                                                                 tmp_path, monkeypatch, capsys):
    part = tmp_path / "part"
    _signal_on_call(monkeypatch, sds.SDSObjective, "forward", 3, signum)   # during step index 2
    assert main([command, PROMPTS[command], "-o", str(part), *_fast(prior_dir)]) == status
    err = capsys.readouterr().err
    assert f"--resume {part}" in err and len(err.strip().splitlines()) == 1
    assert json.loads((part / "run.json").read_text())["status"] == "interrupted"
    assert _checkpoint_step(part / "checkpoint.pt") == 3          # the step the signal came in was finished
    assert not (part / "preset.json").exists()
    monkeypatch.undo()

    assert main([command, "--resume", str(part), "--quiet"]) == 0
    full = uninterrupted[command]
    for name in ("preset.json", "sound.wav", "initial.wav"):
        assert (part / name).read_bytes() == (full / name).read_bytes(), name
    assert not (part / "checkpoint.pt").exists()


@pytest.mark.parametrize("signum, status", SIGNALS)
def test_separation_stopped_by_a_signal_resumes_bit_identically(signum, status, prior_dir, uninterrupted, tmp_path,
                                                                monkeypatch, capsys):
    part = tmp_path / "part"
    _signal_on_call(monkeypatch, sds.SDSObjective, "forward", 3, signum)   # step 1, first source
    assert main(["separate", str(uninterrupted["mixture"]), "-p", "a bell tone", "-p", "rain noise", "-o", str(part),
                 "--prior", prior_dir, "--steps", "3", "--quiet", "--no-judge"]) == status
    assert f"--resume {part}" in capsys.readouterr().err
    assert _checkpoint_step(part / "separation_checkpoint.pt") == 2
    monkeypatch.undo()

    assert main(["separate", "--resume", str(part), "--quiet"]) == 0
    full = sorted(uninterrupted["separate"].glob("*.wav"))
    assert [w.name for w in full] == [w.name for w in sorted(part.glob("*.wav"))] and len(full) == 2
    for wav in full:
        assert (part / wav.name).read_bytes() == wav.read_bytes(), wav.name


def test_an_interrupted_match_leaves_nothing(tmp_path, monkeypatch, capsys):
    """A match cannot resume, so Ctrl-C removes what it wrote (run.json and the directory it made)."""
    import sds_audio.tasks.match as match_task

    target = _mixture(tmp_path / "target.wav")
    _signal_on_call(monkeypatch, match_task.MultiResolutionSTFTDistance, "forward", 3, signal.SIGINT)
    assert main(["match", str(target), "-o", str(tmp_path / "m" / "run"), "--steps", "50", "--restarts", "1",
                 "--quiet"]) == 130
    assert "nothing was kept" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target.wav"]


@pytest.fixture(scope="module")
def tiny_training(tmp_path_factory):
    """A tiny corpus and a recipe small enough to train a codec for a few steps in seconds."""
    from codec.conftest import make_tiny_config, write_tiny_corpus

    corpus = write_tiny_corpus(tmp_path_factory.mktemp("train") / "corpus")
    recipe = {"config": make_tiny_config(), "batch_size": 2, "segment_s": 0.1, "lr": 1e-3, "warmup_steps": 2,
              "checkpoint_every": 100, "log_every": 2, "eval_clips": 2}
    return corpus, recipe


@pytest.mark.parametrize("signum, status", SIGNALS)
def test_training_stopped_by_a_signal_resumes_bit_identically(signum, status, tiny_training, tmp_path, monkeypatch,
                                                              capsys):
    import sds_audio.codec.train as codec_train

    corpus, recipe = tiny_training
    monkeypatch.setattr(codec_train, "codec_recipe", lambda: dict(recipe))
    argv = ["train", "codec", "--corpus", str(corpus), "--steps", "6"]
    assert main([*argv, "--out", str(tmp_path / "full")]) == 0

    real_step = codec_train._train_step
    _signal_on_call(monkeypatch, codec_train, "_train_step", 3, signum)
    part = tmp_path / "part"
    assert main([*argv, "--out", str(part)]) == status
    assert "Traceback" not in capsys.readouterr().err
    with safe_open(str(part / "checkpoint.safetensors"), "pt") as fh:
        assert fh.metadata()["step"] == "3"                       # written at the end of the signalled step
    assert not (part / "codec.safetensors").exists()
    monkeypatch.setattr(codec_train, "_train_step", real_step)

    assert main([*argv, "--out", str(part)]) == 0                 # the same command resumes by default
    for name in ("codec.safetensors", "checkpoint.safetensors"):   # weights, optimiser and generator states
        with safe_open(str(tmp_path / "full" / name), "pt") as a, safe_open(str(part / name), "pt") as b:
            assert a.metadata() == b.metadata() and sorted(a.keys()) == sorted(b.keys())
            for key in a.keys():
                assert torch.equal(a.get_tensor(key), b.get_tensor(key)), (name, key)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_kill_9_leaves_nothing_that_breaks_a_rerun(prior_dir, uninterrupted, tmp_path):
    out = tmp_path / "killed"
    argv = ["fm", PROMPTS["fm"], "-o", str(out), *_fast(prior_dir)]
    pid = os.fork()        # a copy of this process (everything imported) runs the command; this one kills it
    if pid == 0:
        try:
            forward = sds.SDSObjective.forward
            sds.SDSObjective.forward = lambda *a, **k: (time.sleep(0.5), forward(*a, **k))[1]   # slow steps
            main(argv)
        finally:
            os._exit(0)
    deadline = time.monotonic() + 120
    while not (out / "run.json").exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)                                  # mid-run: no handler, no cleanup
    _, wait_status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(wait_status) and os.WTERMSIG(wait_status) == signal.SIGKILL
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    (out / ".checkpoint.pt.k3x9q2zw.pt").write_bytes(b"half a checkpoint")   # as a kill mid-write leaves it

    # the same command again is told what to do, and nothing is touched
    assert main(argv) == 2
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    # --resume: no checkpoint was due yet, so it says to start over; --overwrite then gives the full result
    assert main(["fm", "--resume", str(out), "--quiet"]) == 2
    assert main([*argv, "--overwrite"]) == 0
    assert (out / "preset.json").read_bytes() == (uninterrupted["fm"] / "preset.json").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["initial.wav", "preset.json", "report.png", "run.json",
                                                      "sound.wav"]
