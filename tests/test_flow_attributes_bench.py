"""benchmarks/flow_attributes.py: the acoustic measures behind the attribute-steering table."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bench_loader import BENCHMARKS, load_benchmark  # tests/ is on pytest's pythonpath
from sds_audio.errors import SDSAudioError


@pytest.fixture(scope="module")
def attrs():
    import sys

    sys.path.insert(0, str(BENCHMARKS))                    # the script imports embedded_stack as a sibling
    try:
        yield load_benchmark("flow_attributes")
    finally:
        sys.path.remove(str(BENCHMARKS))


def _sine(freq_hz: float, amp: float = 0.5, seconds: float = 1.0, sr: int = 22050) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    return (amp * torch.sin(2 * math.pi * freq_hz * t)).view(1, 1, -1)


def test_register_is_the_spectral_centroid_in_octaves(attrs):
    x = torch.cat([_sine(220.0), _sine(1760.0)])
    m = attrs.attribute_measure(x, "register", 22050)
    assert float(m[1] - m[0]) == pytest.approx(3.0, abs=0.1)           # 8x the frequency: three octaves
    assert float(m[0]) == pytest.approx(math.log2(220.0), abs=0.1)


def test_dynamics_is_the_rms_level_and_silence_is_finite(attrs):
    x = torch.cat([_sine(440.0, 0.1), _sine(440.0, 0.2), torch.zeros(1, 1, 22050)])
    m = attrs.attribute_measure(x, "dynamics", 22050)
    assert float(m[1] - m[0]) == pytest.approx(20 * math.log10(2), abs=0.01)
    assert float(m[0]) == pytest.approx(20 * math.log10(0.1 / math.sqrt(2)), abs=0.05)
    assert float(m[2]) == pytest.approx(-100.0) and torch.isfinite(m).all()


def test_space_is_the_tail_share_after_half_a_second(attrs):
    sr = 22050
    dry = torch.zeros(1, 1, sr)
    dry[..., :sr // 2] = 0.5                                         # all energy in the first 0.5 s
    wet = torch.full((1, 1, sr), 0.5)                                 # half of it after 0.5 s
    m = attrs.attribute_measure(torch.cat([dry, wet]), "space", sr)
    assert float(m[1]) == pytest.approx(10 * math.log10(0.5), abs=0.01)
    assert float(m[0]) < -90.0
    with pytest.raises(SDSAudioError, match="unknown attribute"):
        attrs.attribute_measure(wet, "timbre", sr)


def test_pitched_prompts_and_summary(attrs, tmp_path):
    entries = [{"prompt": "piano note", "source": "soundfont", "family": "keyboard"},
               {"prompt": "kick drum", "source": "soundfont", "family": "drum kit"},
               {"prompt": "a metal pot struck", "source": "procedural", "family": "struck object"},
               {"prompt": "flute note", "source": "soundfont", "family": "woodwind"}]
    (tmp_path / "concepts.json").write_text(json.dumps(entries))
    assert attrs.pitched_prompts(tmp_path) == ["piano note", "flute note"]
    (tmp_path / "concepts.json").write_text(json.dumps(entries[1:3]))
    with pytest.raises(SDSAudioError, match="no pitched instrument concepts"):
        attrs.pitched_prompts(tmp_path)
    with pytest.raises(SDSAudioError, match="cannot read"):
        attrs.pitched_prompts(tmp_path / "missing")
    s = attrs.summarise([1.0, -2.0, 3.0, 4.0])
    assert s == {"mean": 1.5, "median": 1.0, "share_positive": 0.75, "n": 4}
