"""StableAudioToolsPrior: what can be checked without stable-audio-tools installed."""

from __future__ import annotations

import sys

import pytest

from sds_audio.errors import SDSAudioError
from sds_audio.priors.stable_audio_tools import (StableAudioToolsPrior, conditioning_metadata, noise_form,
                                                 require_stable_audio_tools)

SMALL_LIKE = {
    "model_type": "diffusion_cond", "sample_rate": 44100, "sample_size": 524288, "audio_channels": 2,
    "model": {"diffusion": {"diffusion_objective": "rf_denoiser"},
              "conditioning": {"configs": [{"id": "prompt", "type": "t5"},
                                           {"id": "seconds_total", "type": "number"}]}},
}


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "stable_audio_tools", None)
    with pytest.raises(SDSAudioError, match=r"pip install 'sds-audio\[sat\]'"):
        require_stable_audio_tools()
    with pytest.raises(SDSAudioError, match="own environment"):
        StableAudioToolsPrior.from_pretrained("stabilityai/stable-audio-open-small")


def test_noise_form_mapping():
    assert noise_form(SMALL_LIKE) == "flow"
    one = {**SMALL_LIKE, "model": {**SMALL_LIKE["model"], "diffusion": {"diffusion_objective": "v"}}}
    assert noise_form(one) == "v"
    no_objective = {**SMALL_LIKE, "model": {"conditioning": SMALL_LIKE["model"]["conditioning"]}}
    assert noise_form(no_objective) == "v"  # stable-audio-tools' default objective
    with pytest.raises(SDSAudioError, match="diffusion_cond"):
        noise_form({**SMALL_LIKE, "model_type": "autoencoder"})
    with pytest.raises(SDSAudioError, match="diffusion_objective"):
        noise_form({**SMALL_LIKE, "model": {"diffusion": {"diffusion_objective": "edm"}}})


def test_conditioning_metadata_follows_the_config():
    assert conditioning_metadata(SMALL_LIKE, "kick", 2.0) == [{"prompt": "kick", "seconds_total": 2.0}]
    with_start = {**SMALL_LIKE, "model": {**SMALL_LIKE["model"], "conditioning": {"configs": [
        {"id": "prompt"}, {"id": "seconds_start"}, {"id": "seconds_total"}]}}}
    assert conditioning_metadata(with_start, "kick", 2.0) == [
        {"prompt": "kick", "seconds_start": 0.0, "seconds_total": 2.0}]
    with pytest.raises(SDSAudioError, match="prompt"):
        conditioning_metadata({**SMALL_LIKE, "model": {"conditioning": {"configs": [{"id": "seconds_total"}]}}},
                              "kick", 1.0)
