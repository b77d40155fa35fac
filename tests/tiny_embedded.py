"""A tiny randomly initialised embedded prior (codec + flow model), shared by tests.

``build_parts(seed)`` returns the modules; ``write_prior_dir(path)`` saves them as
``codec.safetensors`` + ``flow.safetensors``, a directory that
``load_prior(path)`` loads like the shipped assets. Nothing is downloaded: the
text encoder is the local all-MiniLM-L6-v2.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sds_audio.codec import Codec, CodecConfig, save_codec
from sds_audio.flow import FlowConfig, FlowModel, save_flow
from sds_audio.flow.latents import latent_space_fingerprint

HOP = 128
TINY_CODEC = dict(patch_size=4, encoder_channels=4, decoder_channels=4, channel_mults=(1, 2, 2), strides=(4, 8),
                  dilations=(1,), latent_channels=8)
TINY_FLOW = dict(latent_channels=8, latent_rate=22050 / HOP, width=32, depth=2, heads=2, patch_size=2,
                 time_features=16, duration_features=8, max_duration_s=0.5)


def build_parts(seed: int = 0) -> tuple[Codec, FlowModel]:
    """A tiny random codec and flow model (flow weights random everywhere, so ``v != 0``)."""
    torch.manual_seed(seed)
    codec = Codec(CodecConfig(**TINY_CODEC)).eval()
    flow = FlowModel(FlowConfig(**TINY_FLOW))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():  # the zero-initialised adaLN gates would otherwise give v = 0
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        flow.latent_mean.copy_(torch.randn(8, generator=g) * 0.1)
        flow.latent_std.copy_(torch.rand(8, generator=g) + 0.5)
    return codec, flow


def write_prior_dir(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny prior as ``path/codec.safetensors`` + ``path/flow.safetensors``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    codec, flow = build_parts(seed)
    save_codec(codec, path / "codec.safetensors")
    save_flow(flow, path / "flow.safetensors", dtype=torch.float32,
              extra_metadata={"codec_latent_sha256": latent_space_fingerprint(codec)})
    return path
