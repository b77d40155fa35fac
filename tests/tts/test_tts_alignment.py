"""Monotonic alignment search, durations, expansion and the padding / prompt masks of the model."""

from __future__ import annotations

import itertools

import pytest
import torch

from sds_audio.tts import TTSConfig, TTSModel
from sds_audio.tts.alignment import (durations_from_path, expand, gaussian_log_likelihood, monotonic_alignment,
                                     path_from_durations, predicted_durations, sequence_mask)
from sds_audio.tts.model import random_spans

TINY = TTSConfig(symbols="characters", latent_channels=8, text_width=16, text_depth=1, text_heads=2, text_convs=1,
                 duration_width=16, width=16, depth=2, heads=2, time_features=16)


def best_durations(log_p: torch.Tensor, n: int, t: int) -> tuple[float, list[int]]:
    """Exhaustive search over every split of ``t`` frames into ``n`` runs of at least one frame."""
    best = None
    for cuts in itertools.combinations(range(1, t), n - 1):
        bounds = [0, *cuts, t]
        score = sum(float(log_p[i, bounds[i]:bounds[i + 1]].sum()) for i in range(n))
        if best is None or score > best[0]:
            best = (score, [bounds[i + 1] - bounds[i] for i in range(n)])
    return best


def test_monotonic_alignment_matches_exhaustive_search_with_padding():
    g = torch.Generator().manual_seed(0)
    for _ in range(25):
        lengths_n = torch.randint(1, 5, (3,), generator=g)
        lengths_t = lengths_n + torch.randint(0, 5, (3,), generator=g)
        log_p = torch.randn(3, 6, 10, generator=g)
        path = monotonic_alignment(log_p, lengths_n, lengths_t)
        for b in range(3):
            n, t = int(lengths_n[b]), int(lengths_t[b])
            assert path[b, :, :t].sum(0).tolist() == [1.0] * t          # one symbol per valid frame
            assert float(path[b, n:].sum()) == 0 and float(path[b, :, t:].sum()) == 0
            durations = durations_from_path(path)[b, :n].long().tolist()
            assert durations == best_durations(log_p[b], n, t)[1]


def test_alignment_follows_frames_drawn_from_their_symbols():
    mu = torch.tensor([[[-3.0, 0.0, 3.0]]])                  # (1, D=1, N=3)
    truth = torch.tensor([[2, 5, 3]])
    z = expand(mu, path_from_durations(truth)) + 0.1 * torch.randn(1, 1, 10, generator=torch.Generator().manual_seed(1))
    path = monotonic_alignment(gaussian_log_likelihood(z, mu), torch.tensor([3]), torch.tensor([10]))
    assert durations_from_path(path).long().tolist() == truth.tolist()


def test_gaussian_log_likelihood_matches_its_formula():
    z, mu = torch.randn(2, 4, 5), torch.randn(2, 4, 3)
    got = gaussian_log_likelihood(z, mu)
    want = torch.distributions.Normal(mu.unsqueeze(-1), 1.0).log_prob(z.unsqueeze(2)).sum(1)
    assert torch.allclose(got, want, atol=1e-4)


def test_durations_path_round_trip_and_expand():
    durations = torch.tensor([[2, 1, 3], [1, 1, 0]])
    path = path_from_durations(durations)
    assert path.shape == (2, 3, 6)
    assert durations_from_path(path).long().tolist() == durations.tolist()
    feats = torch.tensor([[[1.0, 2.0, 3.0]], [[4.0, 5.0, 6.0]]])
    assert expand(feats, path)[0, 0].tolist() == [1, 1, 2, 3, 3, 3]
    assert expand(feats, path)[1, 0].tolist() == [4, 5, 0, 0, 0, 0]


def test_predicted_durations_rounding_speed_and_padding():
    log_d = torch.log1p(torch.tensor([[0.2, 3.0, 7.6, 5.0]]))
    mask = torch.tensor([[True, True, True, False]])
    assert predicted_durations(log_d, mask).tolist() == [[1, 3, 8, 0]]     # at least one frame; padding none
    assert predicted_durations(log_d, mask, speed=2.0).tolist() == [[1, 2, 4, 0]]


def test_sequence_mask_and_random_spans():
    assert sequence_mask(torch.tensor([2, 0, 3]), 4).tolist() == [[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]]
    lengths = torch.tensor([10, 40, 100, 7])
    g = torch.Generator().manual_seed(3)
    for prefix in (True, False):
        spans = random_spans(lengths, 0.2, 0.5, g, 120, prefix=prefix)
        for b, n in enumerate(lengths.tolist()):
            idx = spans[b].nonzero().flatten()
            assert len(idx) >= 1 and idx[-1] < n and idx.tolist() == list(range(idx[0], idx[-1] + 1))
            assert round(0.2 * n) <= len(idx) <= round(0.5 * n) + 1
            if prefix:
                assert idx[0] == 0


def test_decoder_and_text_encoder_ignore_padding():
    torch.manual_seed(0)
    model = TTSModel(TINY).eval()
    for p in model.parameters():                               # leave the zero-initialised gates
        p.data.add_(0.05 * torch.randn_like(p))
    d, t = TINY.latent_channels, 12
    x = torch.randn(1, d, t)
    speaker = torch.randn(1, TINY.width)
    mu, prompt = torch.randn(1, d, t), torch.zeros(1, d, t)
    pmask = torch.zeros(1, t, dtype=torch.bool)
    short = model.decoder(x, torch.tensor([0.3]), mu, prompt, pmask, speaker, torch.ones(1, t, dtype=torch.bool))
    pad = 5
    xs = torch.cat([x, 100 * torch.randn(1, d, pad)], -1)
    mus = torch.cat([mu, 100 * torch.randn(1, d, pad)], -1)
    fmask = sequence_mask(torch.tensor([t]), t + pad)
    long = model.decoder(xs, torch.tensor([0.3]), mus, torch.zeros(1, d, t + pad),
                         torch.zeros(1, t + pad, dtype=torch.bool), speaker, fmask)
    assert torch.allclose(short, long[..., :t], atol=1e-5)
    assert float(long[..., t:].detach().abs().max()) == 0.0
    symbols = torch.randint(1, TINY.n_symbols, (1, 6))
    with torch.no_grad():
        h1, mu1 = model.text_encoder(symbols, torch.ones(1, 6, dtype=torch.bool), speaker)
    padded = torch.cat([symbols, torch.randint(1, TINY.n_symbols, (1, 4))], -1)
    with torch.no_grad():
        h2, mu2 = model.text_encoder(padded, sequence_mask(torch.tensor([6]), 10), speaker)
    assert torch.allclose(mu1, mu2[..., :6], atol=1e-5) and float(mu2[..., 6:].abs().max()) == 0.0


def test_losses_durations_cover_every_frame_and_prompt_frames_leave_the_flow_loss():
    torch.manual_seed(0)
    model = TTSModel(TINY.replace(prompt_share=0.99, prompt_min=0.5, prompt_max=0.5))
    symbols = torch.randint(1, TINY.n_symbols, (2, 7))
    text_lengths, frame_lengths = torch.tensor([7, 4]), torch.tensor([20, 11])
    z = torch.randn(2, TINY.latent_channels, 20)
    out = model.losses(symbols, text_lengths, z, frame_lengths, torch.Generator().manual_seed(0))
    assert out.durations.sum(-1).tolist() == [20.0, 11.0]
    assert float(out.durations[1, 4:].sum()) == 0.0
    assert torch.isfinite(out.total)
    model.eval()                                                # no dropout: equal draws give equal losses
    ref = model.losses(symbols, text_lengths, z, frame_lengths, torch.Generator().manual_seed(0))
    z2 = z.clone()
    z2[1, :, 11:] = 50.0                                        # padding of row 1 must not matter at all
    out2 = model.losses(symbols, text_lengths, z2, frame_lengths, torch.Generator().manual_seed(0))
    assert torch.allclose(ref.total, out2.total, atol=1e-5)
    assert float((ref.total - out2.total).detach().abs()) < 1e-5
    # a decoder that is wildly wrong on prompt frames only: the flow loss must not see it
    seen = {}

    def wrong_on_prompt(x, s, mu, prompt, prompt_mask, speaker, frame_mask):
        seen["prompt_frames"] = int(prompt_mask.sum())
        return 1e6 * prompt_mask.unsqueeze(1).float().expand_as(x)

    model.decoder.forward = wrong_on_prompt
    out3 = model.losses(symbols, text_lengths, z, frame_lengths, torch.Generator().manual_seed(0))
    assert seen["prompt_frames"] == 10 + 6                      # half of 20 and of 11 frames (rounded)
    assert 1.0 < float(out3.flow) < 3.5                         # E[(z - noise)^2] = 2 on the other frames


@pytest.mark.parametrize("speed", [0.5, 1.0, 2.0])
def test_synthesize_length_follows_durations_and_speed(speed):
    torch.manual_seed(0)
    model = TTSModel(TINY).eval()
    with torch.no_grad():
        model.duration_predictor.out.weight.zero_()
        model.duration_predictor.out.bias.fill_(float(torch.log1p(torch.tensor(4.0))))   # 4 frames per symbol
    model.set_default_prompt(torch.randn(TINY.latent_channels, 9))
    z = model.synthesize(torch.randint(1, TINY.n_symbols, (5,)), steps=2, speed=speed,
                         generator=torch.Generator().manual_seed(0))
    assert z.shape == (TINY.latent_channels, 5 * round(4 / speed))
