"""save_codec / load_codec round trips, fp16 storage, and broken files -> SDSAudioError naming the file."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from sds_audio.codec import Codec, load_codec, roundtrip, save_codec
from sds_audio.audio_io import load_audio, save_audio
from sds_audio.errors import SDSAudioError


def _trained_like(cfg) -> Codec:
    torch.manual_seed(0)
    codec = Codec(cfg)
    with torch.no_grad():  # move alphas off their init so the test sees every tensor
        for p in codec.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return codec.eval()


@pytest.mark.parametrize("bottleneck", ["vae", "rvq"])
def test_save_load_bit_identical(tmp_path, tiny_config, bottleneck):
    codec = _trained_like(tiny_config(bottleneck=bottleneck))
    if bottleneck == "rvq":
        codec.train()
        codec(torch.randn(2, 1, 320), generator=torch.Generator().manual_seed(0))  # initialise codebooks
        codec.eval()
    path = save_codec(codec, tmp_path / "c.safetensors")
    loaded = load_codec(path)
    assert loaded.config == codec.config and not loaded.training
    audio = torch.randn(2, 1, 100)
    with torch.no_grad():
        assert torch.equal(loaded.encode(audio), codec.encode(audio))
        assert torch.equal(loaded.reconstruct(audio), codec.reconstruct(audio))
        if bottleneck == "rvq":
            assert torch.equal(loaded.codes(audio), codec.codes(audio))


def test_fp16_storage(tmp_path, tiny_config):
    codec = _trained_like(tiny_config())
    path = save_codec(codec, tmp_path / "c16.safetensors", dtype=torch.float16)
    tensors = load_file(str(path))
    assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
    loaded = load_codec(path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    audio = torch.randn(1, 1, 128)
    with torch.no_grad():
        ref, got = codec.reconstruct(audio), loaded.reconstruct(audio)
    assert (ref - got).abs().max() < 1e-2 * ref.abs().max()


def test_missing_file(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(SDSAudioError, match="nope.safetensors"):
        load_codec(path)


def test_truncated_file(tmp_path, tiny_config):
    path = save_codec(_trained_like(tiny_config()), tmp_path / "t.safetensors")
    data = path.read_bytes()
    for cut in (4, len(data) // 2, len(data) - 3):
        path.write_bytes(data[:cut])
        with pytest.raises(SDSAudioError, match="t.safetensors"):
            load_codec(path)


def test_not_safetensors(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(SDSAudioError, match="junk.safetensors"):
        load_codec(path)


def test_wrong_or_missing_metadata(tmp_path, tiny_config):
    codec = _trained_like(tiny_config())
    tensors = {k: v.contiguous() for k, v in codec.state_dict().items()}
    path = tmp_path / "meta.safetensors"
    save_file(tensors, str(path))  # no metadata at all
    with pytest.raises(SDSAudioError, match="meta.safetensors.*no codec config"):
        load_codec(path)
    save_file(tensors, str(path), metadata={"config": "{not json"})
    with pytest.raises(SDSAudioError, match="meta.safetensors"):
        load_codec(path)
    save_file(tensors, str(path), metadata={"config": json.dumps({"latent_channels": -1})})
    with pytest.raises(SDSAudioError, match="meta.safetensors"):
        load_codec(path)
    save_file(tensors, str(path), metadata={"format": "sds-audio-flow", "config": codec.config.to_json()})
    with pytest.raises(SDSAudioError, match="meta.safetensors.*not codec weights"):
        load_codec(path)


def test_mismatched_config_names_file_not_shapes_traceback(tmp_path, tiny_config):
    codec = _trained_like(tiny_config())
    tensors = {k: v.contiguous() for k, v in codec.state_dict().items()}
    path = tmp_path / "mismatch.safetensors"
    other = tiny_config(latent_channels=6)  # same keys, different shapes
    save_file(tensors, str(path), metadata={"config": other.to_json()})
    with pytest.raises(SDSAudioError, match="mismatch.safetensors.*shape"):
        load_codec(path)
    deeper = tiny_config(dilations=(1, 3, 9))  # different keys
    save_file(tensors, str(path), metadata={"config": deeper.to_json()})
    with pytest.raises(SDSAudioError, match="mismatch.safetensors.*missing"):
        load_codec(path)
    broken = dict(tensors)
    key = next(k for k in broken if k.endswith("alpha"))
    broken[key] = torch.full_like(broken[key], float("nan"))
    save_file(broken, str(path), metadata={"config": codec.config.to_json()})
    with pytest.raises(SDSAudioError, match="mismatch.safetensors.*NaN"):
        load_codec(path)


def test_roundtrip_file(tmp_path, tiny_config):
    codec = _trained_like(tiny_config())
    weights = save_codec(codec, tmp_path / "c.safetensors")
    t = torch.arange(3000) / 44100
    stereo = torch.stack([torch.sin(2 * torch.pi * 440 * t), torch.sin(2 * torch.pi * 660 * t)]) * 0.5
    save_audio(tmp_path / "in.wav", stereo, 44100)  # 44.1 kHz stereo: resampled and downmixed
    result = roundtrip(tmp_path / "in.wav", tmp_path / "out.wav", weights=weights)
    out, sr = load_audio(tmp_path / "out.wav", allow_silent=True)
    assert sr == 22050 and out.shape[1] == 1
    ref, _ = load_audio(tmp_path / "in.wav", sample_rate=22050, channels=1)
    assert out.shape[-1] == ref.shape[-1] == result.n_samples
    with torch.no_grad():
        expected = codec.reconstruct(ref).clamp(-1, 1)
    assert (out - expected).abs().max() < 1e-4  # 24-bit quantisation only
    assert result.latent_shape == (1, 4, -(-ref.shape[-1] // 32))
    assert not list(tmp_path.glob(".out.wav*"))  # no temp file left behind


def test_roundtrip_missing_weights(tmp_path):
    save_audio(tmp_path / "in.wav", torch.randn(1, 1000) * 0.1, 22050)
    with pytest.raises(SDSAudioError, match="absent.safetensors"):
        roundtrip(tmp_path / "in.wav", tmp_path / "out.wav", weights=tmp_path / "absent.safetensors")
    assert not (tmp_path / "out.wav").exists()
