"""Residual vector quantiser: codeword sums, straight-through gradient, commitment loss, dead codes."""

from __future__ import annotations

import torch

from sds_audio.codec import Codec, ResidualVectorQuantizer, VectorQuantizer


def _rvq(n_codebooks=3, size=8, dim=4, seed=0) -> ResidualVectorQuantizer:
    torch.manual_seed(seed)
    rvq = ResidualVectorQuantizer(dim, n_codebooks, size)
    for layer in rvq.layers:
        layer.initialised.fill_(True)
    return rvq


def test_quantized_is_sum_of_selected_codewords():
    rvq = _rvq().eval()
    x = torch.randn(2, 4, 5)
    out = rvq(x)
    assert out.codes.shape == (2, 3, 5) and out.codes.dtype == torch.int64
    manual = sum(rvq.layers[i].codebook[out.codes[:, i]].permute(0, 2, 1) for i in range(3))
    torch.testing.assert_close(out.quantized, manual)
    torch.testing.assert_close(rvq.decode_codes(out.codes), manual)
    # each stage picks the nearest codeword to the residual it sees
    residual = x.clone()
    for i, layer in enumerate(rvq.layers):
        flat = residual.permute(0, 2, 1).reshape(-1, 4)
        dist = torch.cdist(flat, layer.codebook)
        assert torch.equal(dist.argmin(1).view(2, 5), out.codes[:, i])
        residual = residual - layer.codebook[out.codes[:, i]].permute(0, 2, 1)
    # fewer codebooks: the partial sum
    part = rvq(x, n_active=1)
    torch.testing.assert_close(part.quantized, rvq.layers[0].codebook[out.codes[:, 0]].permute(0, 2, 1))


def test_straight_through_gradient_is_identity():
    rvq = _rvq().eval()
    x = torch.randn(2, 4, 5, requires_grad=True)
    weights = torch.randn(2, 4, 5)
    (rvq(x).quantized * weights).sum().backward()
    torch.testing.assert_close(x.grad, weights)


def test_commitment_loss_manual():
    rvq = _rvq().eval()
    x = torch.randn(2, 4, 5, requires_grad=True)
    out = rvq(x)
    manual = x.new_zeros(())
    residual = x.detach().clone()
    for i, layer in enumerate(rvq.layers):
        q = layer.codebook[out.codes[:, i]].permute(0, 2, 1)
        manual = manual + ((residual - q) ** 2).mean()
        residual = residual - q
    torch.testing.assert_close(out.commitment_loss, manual)
    # its gradient pulls x toward the codewords: d/dx sum_i mean((r_i - q_i)^2) = sum_i 2 (r_i - q_i) / N
    out.commitment_loss.backward()
    expected = torch.zeros_like(x)
    residual = x.detach().clone()
    for i, layer in enumerate(rvq.layers):
        q = layer.codebook[out.codes[:, i]].permute(0, 2, 1)
        expected += 2 * (residual - q) / x.numel()
        residual = residual - q
    torch.testing.assert_close(x.grad, expected)


def test_dead_code_refresh_replaces_unused_codes():
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=2, codebook_size=4, decay=0.5, dead_code_threshold=0.5)
    vq.initialised.fill_(True)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [0.1, 0.0], [100.0, 100.0], [-100.0, 100.0]]))
    vq.embed_sum.copy_(vq.codebook)
    vq.cluster_size.fill_(1.0)
    vq.train()
    x = torch.randn(1, 2, 64) * 0.05  # all near the origin: codes 2 and 3 are never used
    codes_before = vq.codebook.clone()
    _, codes = vq(x, generator=torch.Generator().manual_seed(0))
    assert set(codes.unique().tolist()) <= {0, 1}
    # usage of codes 2, 3 decayed to 0.5, not below the threshold: kept (up to Laplace smoothing)
    assert torch.allclose(vq.cluster_size[2:], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(vq.codebook[2:], codes_before[2:], rtol=1e-3, atol=0)
    vq(x, generator=torch.Generator().manual_seed(0))  # usage 0.25 < 0.5: refreshed now
    batch = x.permute(0, 2, 1).reshape(-1, 2)
    for k in (2, 3):
        assert (vq.codebook[k] - batch).abs().sum(1).min() == 0  # the new code is a batch vector
        assert vq.cluster_size[k] == 0.5
    # used codes moved toward the data by EMA, not replaced
    assert vq.codebook[:2].abs().max() < 0.2


def test_codebook_initialised_from_first_batch_and_ema():
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=3, codebook_size=4, decay=0.9, dead_code_threshold=0.0)
    x = torch.randn(1, 3, 32)
    vq.train()
    vq(x)
    assert bool(vq.initialised)
    batch = x.permute(0, 2, 1).reshape(-1, 3)
    # every code started as a batch vector; EMA moves it toward its cluster mean
    vq2 = VectorQuantizer(dim=3, codebook_size=4, decay=0.9, dead_code_threshold=0.0)
    vq2.initialised.fill_(True)
    vq2.codebook.copy_(batch[:4])
    vq2.embed_sum.copy_(batch[:4])
    vq2.cluster_size.fill_(1.0)
    codes = vq2.nearest(batch)
    counts = torch.bincount(codes, minlength=4).float()
    sums = torch.zeros(4, 3).index_add_(0, codes, batch)
    cluster = 0.9 * 1.0 + 0.1 * counts
    embed_sum = 0.9 * batch[:4] + 0.1 * sums
    total = cluster.sum()
    smoothed = (cluster + vq2.eps) / (total + 4 * vq2.eps) * total
    vq2.train()
    vq2(x)
    torch.testing.assert_close(vq2.codebook, embed_sum / smoothed[:, None])


def test_rvq_codec_codes_roundtrip(tiny_config):
    torch.manual_seed(0)
    codec = Codec(tiny_config(bottleneck="rvq"))
    audio = torch.randn(2, 1, 100)
    codec.train()
    codec(torch.randn(2, 1, 100), generator=torch.Generator().manual_seed(0))  # seeds the codebooks
    out = codec(audio, generator=torch.Generator().manual_seed(0))
    assert out.codes.shape == (2, 3, 4) and out.kl.item() == 0.0 and out.commitment_loss.item() > 0
    codec.eval()
    codes = codec.codes(audio)
    assert codes.shape == (2, 3, 4)
    z_q, codes2 = codec.quantize(codec.encode(audio))
    assert torch.equal(codes, codes2)
    torch.testing.assert_close(codec.decode_codes(codes), codec.decode(z_q))
    assert codec.codes(audio, n_codebooks=2).shape == (2, 2, 4)
    # gradients reach the encoder through the straight-through estimator
    codec.train()
    out = codec(audio, generator=torch.Generator().manual_seed(0))
    (out.audio.pow(2).mean() + out.commitment_loss).backward()
    first = codec.encoder.net[0].parametrizations.weight.original1
    assert first.grad is not None and first.grad.abs().sum() > 0
