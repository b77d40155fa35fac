"""Neural audio codec: convolutional encoder / decoder (Oobleck / DAC family) with a
continuous VAE bottleneck (what the embedded flow-matching prior runs on) or a
residual vector quantiser (discrete tokens).

Public API::

    codec = Codec(CodecConfig())                 # or load_codec(path)
    z = codec.encode(audio)                      # (B, 1, T) -> (B, latent_channels, ceil(T / hop))
    audio = codec.decode(z)                      # (B, latent_channels, L) -> (B, 1, L * hop)
    save_codec(codec, "codec.safetensors")
    train_codec(corpus_dir, out_dir, steps=..., batch_size=...)
    roundtrip("in.wav", "out.wav")
"""

from .bottleneck import ResidualVectorQuantizer, VAEBottleneck, VectorQuantizer, gaussian_kl
from .config import CodecConfig
from .discriminator import MultiScaleSTFTDiscriminator, STFTDiscriminator
from .io import default_codec_path, load_codec, save_codec
from .losses import ReconstructionLoss, discriminator_hinge_loss, feature_matching_loss, generator_hinge_loss
from .model import Codec, CodecOutput, Decoder, Encoder, count_parameters
from .roundtrip import RoundtripResult, roundtrip
from .train import evaluate_codec, train_codec

__all__ = [
    "Codec", "CodecConfig", "CodecOutput", "Decoder", "Encoder", "MultiScaleSTFTDiscriminator",
    "ReconstructionLoss", "ResidualVectorQuantizer", "RoundtripResult", "STFTDiscriminator", "VAEBottleneck",
    "VectorQuantizer", "count_parameters", "default_codec_path", "discriminator_hinge_loss", "evaluate_codec",
    "feature_matching_loss", "gaussian_kl", "generator_hinge_loss", "load_codec", "roundtrip", "save_codec",
    "train_codec",
]
