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
