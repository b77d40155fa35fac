"""The speech model's frame spaces: log-mel frames with Griffin-Lim, and the codec's latents."""

from __future__ import annotations

import math

import pytest
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.tts import TTSConfig
from sds_audio.tts.features import MelFeatures, mel_features


def vowel(seconds: float = 1.0, rate: int = 22050) -> torch.Tensor:
    """A voiced, vowel-like test sound: 130 Hz harmonics under two formant peaks, with a syllable envelope."""
    t = torch.arange(int(seconds * rate)) / rate
    audio = torch.zeros_like(t)
    for k in range(1, 40):
        f = 130.0 * k
        weight = math.exp(-((f - 700) / 200) ** 2) + 0.5 * math.exp(-((f - 1200) / 250) ** 2) + 0.02
        audio += weight * torch.sin(2 * math.pi * f * t + k)
    return (0.3 * audio / audio.abs().max() * (0.6 + 0.4 * torch.sin(2 * math.pi * 3 * t)))[None, None]


def test_mel_config_describes_the_features():
    config = TTSConfig.for_mel()
    features = mel_features(config)
    assert features.channels == config.latent_channels == 80 and features.hop_length == 512
    assert features.frame_rate == pytest.approx(config.latent_rate) and features.sample_rate == 22050
    with pytest.raises(SDSAudioError, match="features"):
        TTSConfig(features="wavelets")
    with pytest.raises(SDSAudioError, match="mel_fft"):
        TTSConfig.for_mel(mel_fft=0)


def test_log_mel_round_trip_keeps_the_spectrum():
    features = MelFeatures()
    audio = vowel()
    frames = features.encode(audio)
    assert frames.shape == (1, 80, audio.shape[-1] // 512 + 1)
    decoded = features.decode(frames)
    assert decoded.shape[:2] == (1, 1) and abs(decoded.shape[-1] - audio.shape[-1]) < 512
    again = features.encode(decoded)
    loud = frames > frames.max() - math.log(100.0)          # bands within 40 dB of the peak
    error = (again[..., :frames.shape[-1]] - frames)[loud].abs().mean()
    assert float(error) < 0.35                              # natural-log units: within about 3 dB
    assert torch.equal(features.decode(frames), decoded)    # the same frames give the same audio
    noise = torch.randn_like(frames)                        # and other frames do not
    assert not torch.allclose(features.decode(frames + noise), decoded)


def test_fingerprint_names_the_analysis():
    assert MelFeatures().fingerprint() == MelFeatures().fingerprint()
    assert MelFeatures().fingerprint() != MelFeatures(hop_length=256).fingerprint()
    assert MelFeatures().fingerprint() != MelFeatures(n_mels=64).fingerprint()


def test_warping_the_mel_axis_acts_like_a_higher_voice():
    import torchaudio

    from sds_audio.tts.features import warp_mel_frames

    features = MelFeatures()
    frames = features.encode(vowel())
    assert torch.allclose(warp_mel_frames(frames, torch.tensor([1.0])), frames, atol=1e-4)
    # the same sound played 1.2x faster (all frequencies x 1.2): its average spectrum is the warped one's
    higher = features.encode(torchaudio.functional.resample(vowel(), 26460, 22050))
    n = higher.shape[-1]
    warped = warp_mel_frames(frames, torch.tensor([1.2]))[..., :n].mean(-1)
    assert (warped - higher.mean(-1)).abs().mean() < 0.4 * (frames[..., :n].mean(-1) - higher.mean(-1)).abs().mean()
    # rows are warped independently
    both = warp_mel_frames(torch.cat([frames, frames]), torch.tensor([1.0, 0.9]))
    assert torch.allclose(both[0], frames[0], atol=1e-4) and not torch.allclose(both[1], frames[0], atol=1e-2)


def test_equaliser_curve_is_smooth_and_per_row():
    from sds_audio.tts.features import tilt_mel_frames

    frames = torch.zeros(2, 80, 5)
    out = tilt_mel_frames(frames, torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert torch.equal(out[1], frames[1])
    curve = out[0, :, 0]
    assert torch.allclose(out[0], curve[:, None].expand(-1, 5))           # the same curve in every frame
    assert curve[0] > 0.49 and curve[-1] < -0.49 and (curve.diff() < 0).all()   # one falling half cosine
