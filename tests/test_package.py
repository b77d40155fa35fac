"""The package's public names resolve, and importing it stays light."""

import subprocess
import sys

import sds_audio


def test_public_names_resolve():
    for name in sds_audio.__all__:
        assert getattr(sds_audio, name) is not None, name
    assert sds_audio.FMSynth.synth_type == "fm"


def test_import_does_not_load_diffusers():
    code = "import sys, sds_audio; print('diffusers' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
