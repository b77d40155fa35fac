"""save_flow / load_flow round trips and the errors for missing or broken files; FlowConfig validation."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from sds_audio.errors import SDSAudioError
from sds_audio.flow import FlowConfig, load_flow, save_flow
from sds_audio.flow.weights import read_flow_config


@torch.no_grad()
def test_round_trip(tmp_path, make_flow, make_condition):
    model = make_flow()
    model.latent_std.fill_(1.7)
    save_flow(model, tmp_path / "f32.safetensors", dtype=torch.float32)
    loaded = load_flow(tmp_path / "f32.safetensors")
    assert loaded.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    save_flow(model, tmp_path / "f16.safetensors")
    half = load_flow(tmp_path / "f16.safetensors")
    assert (tmp_path / "f16.safetensors").stat().st_size < 0.6 * (tmp_path / "f32.safetensors").stat().st_size
    assert float(half.latent_std[0]) == pytest.approx(1.7)  # buffers stay float32
    x = torch.randn(1, 8, 8)
    cond = make_condition(1)
    torch.testing.assert_close(half(x, 0.5, cond), model(x, 0.5, cond), atol=2e-2, rtol=2e-2)
    assert read_flow_config(tmp_path / "f16.safetensors") == model.config


@torch.no_grad()
def test_missing_and_broken_files_name_the_file_and_the_command(tmp_path, make_flow):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(SDSAudioError, match="nope.safetensors.*sds-audio train flow"):
        load_flow(missing)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a safetensors file at all")
    with pytest.raises(SDSAudioError, match="garbage.safetensors.*sds-audio train flow"):
        load_flow(garbage)
    no_meta = tmp_path / "nometa.safetensors"
    save_file({"w": torch.zeros(2)}, str(no_meta))
    with pytest.raises(SDSAudioError, match="nometa.safetensors.*not an sds-audio flow"):
        load_flow(no_meta)
    model = make_flow()
    path = tmp_path / "ok.safetensors"
    save_flow(model, path)
    wrong = tmp_path / "wrong.safetensors"
    state = {k: v for k, v in model.state_dict().items() if k != "proj_out.weight"}
    save_file(state, str(wrong), metadata={"format": "sds-audio-flow", "config": model.config.to_json()})
    with pytest.raises(SDSAudioError, match="wrong.safetensors.*do not match"):
        load_flow(wrong)
    nan = tmp_path / "nan.safetensors"
    state = dict(model.state_dict())
    state["proj_in.weight"] = torch.full_like(state["proj_in.weight"], float("nan"))
    save_file(state, str(nan), metadata={"format": "sds-audio-flow", "config": model.config.to_json()})
    with pytest.raises(SDSAudioError, match="nan.safetensors.*NaN"):
        load_flow(nan)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(SDSAudioError, match="truncated.safetensors"):
        load_flow(truncated)


@torch.no_grad()
def test_config_validation():
    assert FlowConfig.from_json(FlowConfig().to_json()) == FlowConfig()
    with pytest.raises(SDSAudioError, match="flow.width"):
        FlowConfig(width=100, heads=3)
    with pytest.raises(SDSAudioError, match="unknown keys"):
        FlowConfig.from_dict({"widht": 64})
    with pytest.raises(SDSAudioError, match="flow.cond_dropout"):
        FlowConfig(cond_dropout=1.0)
    with pytest.raises(SDSAudioError, match="flow.time_sampling"):
        FlowConfig(time_sampling="cosine")
