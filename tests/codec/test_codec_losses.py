"""Discriminator shapes and the adversarial / feature-matching / reconstruction losses."""

from __future__ import annotations

import torch

from sds_audio.codec import (MultiScaleSTFTDiscriminator, ReconstructionLoss, STFTDiscriminator,
                             discriminator_hinge_loss, feature_matching_loss, generator_hinge_loss)


def test_discriminator_shapes():
    torch.manual_seed(0)
    disc = MultiScaleSTFTDiscriminator(n_ffts=(64, 128), channels=4)
    audio = torch.randn(3, 1, 1024)
    logits, features = disc(audio)
    assert len(logits) == 2 and len(features) == 2
    for n_fft, lg, feats in zip((64, 128), logits, features):
        frames = 1024 // (n_fft // 4) + 1
        bins = n_fft // 2 + 1
        assert feats[0].shape == (3, 4, frames, (bins + 1) // 2)
        for _ in range(4):  # four layers halve the frequency axis (ceil)
            bins = (bins + 1) // 2
        assert lg.shape == (3, 1, frames, bins)
        assert len(feats) == 5
        assert feats[-1].shape == (3, 4, frames, bins)


def test_discriminator_sees_complex_spectrum():
    """Input is real and imaginary parts of the STFT (phase matters: a shifted signal differs)."""
    disc = STFTDiscriminator(64, channels=4)
    audio = torch.randn(1, 1, 512)
    spec = disc.spectrum(audio)
    assert spec.shape == (1, 2, 512 // 16 + 1, 33)
    window = torch.hann_window(64)
    ref = torch.stft(audio[0], 64, 16, window=window, return_complex=True, center=True,
                     pad_mode="constant")[0] / window.pow(2).sum().sqrt()  # torchaudio's window normalisation
    torch.testing.assert_close(spec[0, 0], ref.real.T, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(spec[0, 1], ref.imag.T, rtol=1e-4, atol=1e-5)


def test_feature_matching_zero_for_identical_and_positive_otherwise():
    torch.manual_seed(0)
    disc = MultiScaleSTFTDiscriminator(n_ffts=(64, 128), channels=4)
    audio = torch.randn(2, 1, 512)
    _, feats_a = disc(audio)
    _, feats_b = disc(audio.clone())
    assert feature_matching_loss(feats_a, feats_b).item() == 0.0
    _, feats_c = disc(audio + 0.1 * torch.randn_like(audio))
    assert feature_matching_loss(feats_a, feats_c).item() > 0.0


def test_hinge_losses_values():
    real = [torch.tensor([2.0, 0.5]), torch.tensor([[-1.0]])]
    fake = [torch.tensor([-2.0, 0.0]), torch.tensor([[1.0]])]
    # scale 1: relu(1-real) = [0, .5] -> .25; relu(1+fake) = [0, 1] -> .5; scale 2: 2 + 2
    expected = ((0.25 + 0.5) + (2.0 + 2.0)) / 2
    assert discriminator_hinge_loss(real, fake).item() == expected
    # generator: relu(1 - fake): scale 1 [3, 1] -> 2; scale 2 [0] -> 0
    assert generator_hinge_loss(fake).item() == 1.0


def test_reconstruction_loss_zero_for_identical_and_grows_with_error():
    torch.manual_seed(0)
    loss = ReconstructionLoss(22050, stft_n_ffts=(128, 256), mel_scales=((256, 20),))
    x = torch.randn(2, 1, 2048) * 0.3
    same = loss(x, x.clone())
    assert same["total"].item() == 0.0
    small = loss(x + 0.01 * torch.randn_like(x), x)["total"].item()
    large = loss(x + 0.3 * torch.randn_like(x), x)["total"].item()
    assert 0 < small < large


def test_phase_advance_distance_zero_for_identical_and_gain_invariant():
    from sds_audio.codec.losses import phase_advance_distance

    t = torch.arange(4096) / 22050
    x = torch.sin(2 * torch.pi * 440 * t).reshape(1, 1, -1)
    same = float(phase_advance_distance(x, x, n_fft=256)[0])
    assert same < 5e-3                     # the floor's bias on the tone's quiet side-lobe bins
    assert float(phase_advance_distance(0.5 * x, x, n_fft=256)[0]) < 2 * same + 1e-3  # magnitude is not its business
    assert float(phase_advance_distance(x, x, n_fft=256, rel_floor=0.0)[0]) < 1e-6


def test_phase_advance_distance_sees_a_frequency_error_magnitude_losses_barely_see():
    """A partial 1/4 bin off turns pi/8 per hop too fast: 1 - cos(pi/8) ~ 0.076 near the partial."""
    from sds_audio.codec.losses import phase_advance_distance

    n_fft = 256
    t = torch.arange(8192, dtype=torch.float64)
    target = torch.cos(2 * torch.pi * 20 / n_fft * t).reshape(1, 1, -1)
    off = torch.cos(2 * torch.pi * 20.25 / n_fft * t).reshape(1, 1, -1)
    d = float(phase_advance_distance(off, target, n_fft=n_fft)[0])
    assert abs(d - (1 - torch.cos(torch.tensor(torch.pi / 8)).item())) < 0.01
    far = torch.cos(2 * torch.pi * 20.5 / n_fft * t).reshape(1, 1, -1)
    assert float(phase_advance_distance(far, target, n_fft=n_fft)[0]) > 2 * d


def test_phase_advance_distance_finite_on_silence_and_in_the_reconstruction_loss():
    from sds_audio.codec.losses import phase_advance_distance

    x = torch.zeros(2, 1, 2048, requires_grad=True)
    d = phase_advance_distance(x, torch.zeros(2, 1, 2048), n_fft=256)
    d.sum().backward()
    assert torch.isfinite(d).all() and torch.isfinite(x.grad).all()
    loss = ReconstructionLoss(22050, stft_n_ffts=(256,), mel_scales=((256, 16),), phase_weight=0.5, phase_n_fft=256)
    y = torch.randn(1, 1, 2048)
    out = loss(y, y)
    assert float(out["phase"]) < 5e-3 and set(out) == {"stft", "mel", "phase", "total"}
    assert float(ReconstructionLoss(22050, stft_n_ffts=(256,), mel_scales=((256, 16),))(y, y)["phase"]) == 0.0
