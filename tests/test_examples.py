"""The examples run end to end (on a tiny random embedded prior, a few steps)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from tiny_embedded import write_prior_dir

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory):
    return str(write_prior_dir(tmp_path_factory.mktemp("tiny_prior")))


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.mark.parametrize("synth", ["fm", "impact"])
def test_prompt_to_preset_example(tmp_path, prior_dir, synth):
    out = tmp_path / synth
    proc = _run("prompt_to_preset.py", "a bright bell", "--synth", synth, "-o", str(out), "--prior", prior_dir,
                "--steps", "2", "--duration-s", "0.3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sf.info(str(out / "sound.wav")).frames == round(0.3 * 22050)
    from sds_audio.presets import load_preset

    assert load_preset(out / "preset.json").synth.synth_type == synth


def test_custom_synth_example(tmp_path, prior_dir):
    proc = _run("custom_synth.py", "synth bass", "-o", str(tmp_path / "c"), "--prior", prior_dir, "--steps", "2",
                "--duration-s", "0.3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "f0_hz" in proc.stdout and sf.info(str(tmp_path / "c" / "sound.wav")).channels == 1


def test_example_reports_a_bad_prior_in_one_line(tmp_path):
    proc = _run("prompt_to_preset.py", "bell", "-o", str(tmp_path / "x"), "--prior", "no-such-prior")
    assert proc.returncode == 2 and "unknown prior" in proc.stderr and "Traceback" not in proc.stderr
