"""The same command with the same seed writes the same preset.json, byte for byte, on the CPU.

A preset holds no creation time (``run.json`` does); presets written before that
change, which hold ``provenance.created_utc``, still load and render the same.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from sds_audio.cli import main
from sds_audio.presets import load_preset

from tiny_embedded import write_prior_dir

PRESETS = Path(str(resources.files("sds_audio").joinpath("assets/presets")))


def test_prompt_to_preset_is_byte_identical_for_one_seed(tmp_path):
    prior = str(write_prior_dir(tmp_path / "prior"))
    args = ["fm", "a soft bell", "--prior", prior, "--steps", "3", "--restarts", "2", "--duration-s", "0.3",
            "--quiet", "--no-judge"]
    for name in ("a", "b"):
        assert main([*args, "-o", str(tmp_path / name)]) == 0
    assert main([*args, "--seed", "1", "-o", str(tmp_path / "other_seed")]) == 0
    a, b = (tmp_path / "a" / "preset.json").read_bytes(), (tmp_path / "b" / "preset.json").read_bytes()
    assert a == b
    assert (tmp_path / "a" / "sound.wav").read_bytes() == (tmp_path / "b" / "sound.wav").read_bytes()
    assert (tmp_path / "other_seed" / "preset.json").read_bytes() != a      # the seed matters
    preset = json.loads(a)
    assert "created_utc" not in preset["provenance"] and preset["provenance"]["seed"] == 0
    created = json.loads((tmp_path / "a" / "run.json").read_text())["created_utc"]   # the time lives here
    assert len(created) == 20 and created.endswith("Z") and created[4] == "-"


def test_match_is_byte_identical_for_one_seed(tmp_path):
    t = np.arange(4000) / 8000
    sf.write(str(tmp_path / "knock.wav"), 0.5 * np.sin(2 * np.pi * 300 * t) * np.exp(-20 * t), 8000)
    for name in ("a", "b"):
        assert main(["match", str(tmp_path / "knock.wav"), "-o", str(tmp_path / name), "--steps", "5",
                     "--restarts", "2", "--quiet"]) == 0
    assert (tmp_path / "a" / "preset.json").read_bytes() == (tmp_path / "b" / "preset.json").read_bytes()


def test_presets_with_a_creation_time_still_load(tmp_path):
    old = json.loads((PRESETS / "fm_bell.json").read_text())
    old["provenance"]["created_utc"] = "2025-01-02T03:04:05Z"
    new = json.loads(json.dumps(old))
    del new["provenance"]["created_utc"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    a, b = load_preset(tmp_path / "old.json"), load_preset(tmp_path / "new.json")
    assert a.provenance["created_utc"] == "2025-01-02T03:04:05Z"
    assert torch.equal(a.render(duration_s=0.2), b.render(duration_s=0.2))
