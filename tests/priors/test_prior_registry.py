"""load_prior: names, paths, lazy loaders and their errors."""

from __future__ import annotations

import sys
import types

import pytest

from sds_audio.errors import SDSAudioError
from sds_audio.priors import PRIORS, known_priors, load_prior


def test_known_names():
    assert known_priors() == ["stable-audio-open", "stable-audio-open-small", "embedded"]
    assert PRIORS["stable-audio-open"][0] == "stabilityai/stable-audio-open-1.0"


def test_unknown_name_lists_known_ones(tmp_path):
    with pytest.raises(SDSAudioError) as info:
        load_prior("stable-audio")
    for name in known_priors():
        assert name in str(info.value)
    with pytest.raises(SDSAudioError, match="neither"):
        load_prior(str(tmp_path))  # an existing but empty directory


def test_embedded_is_imported_lazily(monkeypatch):
    calls = []
    fake = types.ModuleType("sds_audio.priors.embedded")
    fake.load_embedded_prior = lambda device=None, dtype=None: calls.append((device, dtype)) or "the-prior"
    monkeypatch.setitem(sys.modules, "sds_audio.priors.embedded", fake)
    assert load_prior("embedded", device="cpu") == "the-prior"
    assert calls == [("cpu", None)]


def test_embedded_absent_or_without_weights(monkeypatch):
    monkeypatch.setitem(sys.modules, "sds_audio.priors.embedded", None)  # import raises ImportError
    with pytest.raises(SDSAudioError, match="embedded prior is not part"):
        load_prior("embedded")

    def missing(device=None, dtype=None):
        raise FileNotFoundError(2, "No such file", "assets/flow.safetensors")

    fake = types.ModuleType("sds_audio.priors.embedded")
    fake.load_embedded_prior = missing
    monkeypatch.setitem(sys.modules, "sds_audio.priors.embedded", fake)
    with pytest.raises(SDSAudioError, match="flow.safetensors"):
        load_prior("embedded")


def test_uncached_hub_id_is_not_downloaded():
    with pytest.raises(SDSAudioError, match="allow_download"):
        load_prior("sds-audio-tests/no-such-model", device="cpu")


def test_stable_audio_tools_names_need_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "stable_audio_tools", None)
    with pytest.raises(SDSAudioError, match=r"sds-audio\[sat\]"):
        load_prior("stable-audio-open-small")
    (tmp_path / "model_config.json").write_text("{}")
    with pytest.raises(SDSAudioError, match=r"sds-audio\[sat\]"):
        load_prior(str(tmp_path))
