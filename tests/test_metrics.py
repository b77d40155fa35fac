"""Tests for sds_audio.metrics: SI-SDR / SDR against closed forms, KAD, FAD, and the CLAP score."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.metrics import fad, kad, median_pairwise_distance, sdr, si_sdr, si_sdr_improvement


def _rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _orthogonal_noise(reference: torch.Tensor, snr_db: float, g: torch.Generator) -> torch.Tensor:
    """Zero-mean noise orthogonal to ``reference`` (per channel) at exactly ``snr_db`` below it."""
    noise = torch.randn(reference.shape, generator=g, dtype=reference.dtype)
    noise = noise - noise.mean(-1, keepdim=True)
    ref = reference - reference.mean(-1, keepdim=True)
    noise = noise - (noise * ref).sum(-1, keepdim=True) / (ref * ref).sum(-1, keepdim=True) * ref
    ratio = (ref * ref).sum(-1, keepdim=True) / (noise * noise).sum(-1, keepdim=True)
    return noise * torch.sqrt(ratio / 10 ** (snr_db / 10))


# --------------------------------------------------------------------------- SI-SDR / SDR
def test_si_sdr_perfect_estimate_is_very_large():
    ref = torch.randn(2, 1, 4000, generator=_rng())
    assert torch.all(si_sdr(ref, ref) > 80.0)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 30.0])
def test_si_sdr_equals_snr_of_orthogonal_noise(snr_db):
    g = _rng(1)
    ref = torch.randn(3, 2, 8000, generator=g, dtype=torch.float64)
    ref = ref - ref.mean(-1, keepdim=True)
    est = ref + _orthogonal_noise(ref, snr_db, g)
    torch.testing.assert_close(si_sdr(est, ref), torch.full((3,), snr_db, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(sdr(est, ref), torch.full((3,), snr_db, dtype=torch.float64), atol=1e-6, rtol=0)


def test_si_sdr_random_noise_close_to_snr():
    g = _rng(2)
    ref = torch.randn(4, 1, 44100, generator=g)
    noise = torch.randn(4, 1, 44100, generator=g)
    noise = noise * ref.norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True) / math.sqrt(10.0)  # 10 dB
    assert torch.allclose(si_sdr(ref + noise, ref), torch.full((4,), 10.0), atol=0.15)


def test_si_sdr_is_scale_invariant_and_sdr_is_not():
    g = _rng(3)
    ref = torch.randn(2, 1, 3000, generator=g, dtype=torch.float64)
    est = ref + 0.3 * torch.randn(2, 1, 3000, generator=g, dtype=torch.float64)
    base = si_sdr(est, ref)
    for c in (0.01, 0.5, 7.0):
        # exact up to the silence-guard eps
        torch.testing.assert_close(si_sdr(c * est, ref), base, atol=1e-4, rtol=0)
        torch.testing.assert_close(si_sdr(est, c * ref), base, atol=1e-4, rtol=0)
    assert torch.all(sdr(0.5 * est, ref) < sdr(est, ref) - 1.0)


def test_si_sdr_matches_least_squares_oracle():
    g = _rng(4)
    ref = torch.randn(1, 1, 500, generator=g, dtype=torch.float64)
    est = 0.7 * ref + 0.2 * torch.randn(1, 1, 500, generator=g, dtype=torch.float64) + 0.05
    r = ref[0, 0].numpy() - ref[0, 0].numpy().mean()
    e = est[0, 0].numpy() - est[0, 0].numpy().mean()
    alpha = np.linalg.lstsq(r[:, None], e, rcond=None)[0][0]
    expected = 10 * np.log10(np.sum((alpha * r) ** 2) / np.sum((alpha * r - e) ** 2))
    assert float(si_sdr(est, ref)[0]) == pytest.approx(expected, abs=1e-6)


def test_si_sdr_batch_matches_items_and_channels_average():
    g = _rng(5)
    ref = torch.randn(3, 2, 1000, generator=g)
    est = ref + torch.randn(3, 2, 1000, generator=g) * torch.tensor([0.1, 0.5, 1.0]).view(3, 1, 1)
    batch = si_sdr(est, ref)
    assert batch.shape == (3,)
    for b in range(3):
        per_channel = [si_sdr(est[b:b + 1, c:c + 1], ref[b:b + 1, c:c + 1]) for c in range(2)]
        torch.testing.assert_close(batch[b:b + 1], (per_channel[0] + per_channel[1]) / 2)
    assert batch[0] > batch[1] > batch[2]


def test_metrics_are_silence_safe_with_finite_gradients():
    ref = torch.zeros(2, 1, 256)
    est = torch.zeros(2, 1, 256, requires_grad=True)
    for fn in (si_sdr, sdr):
        val = fn(est, ref)
        assert torch.isfinite(val).all()
        val.sum().backward()
        assert torch.isfinite(est.grad).all()
        est.grad = None
    # silence scores the -80 dB floor, never NaN
    torch.testing.assert_close(si_sdr(torch.zeros(1, 1, 64), torch.zeros(1, 1, 64)), torch.full((1,), -80.0))
    noise = torch.randn(1, 1, 64, generator=_rng())
    assert float(si_sdr(torch.zeros(1, 1, 64), noise)) == pytest.approx(-80.0, abs=0.1)
    assert float(sdr(torch.zeros(1, 1, 64), noise)) == pytest.approx(0.0, abs=1e-4)  # ||s||^2 / ||s||^2


def test_si_sdr_improvement():
    g = _rng(6)
    src = torch.randn(2, 1, 4000, generator=g, dtype=torch.float64)
    mix = (src[0:1] + src[1:2])
    est = src + 0.1 * torch.randn(2, 1, 4000, generator=g, dtype=torch.float64)
    imp = si_sdr_improvement(est, src, mix)
    torch.testing.assert_close(imp, si_sdr(est, src) - si_sdr(mix.expand(2, -1, -1), src))
    assert torch.all(imp > 15.0)
    torch.testing.assert_close(si_sdr_improvement(mix.expand(2, -1, -1), src, mix), torch.zeros(2, dtype=torch.float64))


def test_signal_metric_shape_errors():
    with pytest.raises(SDSAudioError, match="differ"):
        si_sdr(torch.zeros(1, 1, 10), torch.zeros(1, 1, 11))
    with pytest.raises(SDSAudioError, match="batch, channels, samples"):
        sdr(torch.zeros(10), torch.zeros(10))


# --------------------------------------------------------------------------- KAD
def _kad_oracle(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    def k(a, b):
        return math.exp(-float(np.sum((a - b) ** 2)) / (2 * sigma ** 2))
    n, m = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    sxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return sxx + syy - 2 * sxy


def test_kad_matches_double_loop_oracle_and_scale():
    rs = np.random.default_rng(0)
    x, y = rs.normal(size=(7, 3)), rs.normal(0.5, 1.0, size=(5, 3))
    assert kad(x, y, bandwidth=1.3, scale=1.0) == pytest.approx(_kad_oracle(x, y, 1.3), rel=1e-10)
    assert kad(x, y, bandwidth=1.3) == pytest.approx(1000.0 * _kad_oracle(x, y, 1.3), rel=1e-10)


def test_kad_median_bandwidth_uses_pooled_set():
    rs = np.random.default_rng(1)
    x, y = rs.normal(size=(20, 4)), rs.normal(2.0, 1.0, size=(15, 4))
    pooled = median_pairwise_distance(np.concatenate([x, y]))
    assert kad(x, y) == pytest.approx(kad(x, y, bandwidth=pooled), rel=1e-12)
    assert kad(x, y, bandwidth="median_reference") == pytest.approx(
        kad(x, y, bandwidth=median_pairwise_distance(x)), rel=1e-12)
    d = np.sqrt(((np.concatenate([x, y])[:, None] - np.concatenate([x, y])[None]) ** 2).sum(-1))
    assert pooled == pytest.approx(float(np.median(d[np.triu_indices(35, 1)])), rel=1e-12)


def test_kad_increases_with_mean_shift():
    g = _rng(7)
    x = torch.randn(300, 8, generator=g)
    base = torch.randn(300, 8, generator=g)
    values = [kad(x, base + s, bandwidth=4.0) for s in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert abs(values[0]) < 0.2 * values[1]
    assert all(a < b for a, b in zip(values, values[1:]))


def test_kad_is_unbiased_for_equal_distributions():
    """Mean over replicates ~ 0 (within 3 standard errors); the biased V-statistic is clearly positive."""
    rs = np.random.default_rng(2)
    vals, biased = [], []
    for _ in range(60):
        x, y = rs.normal(size=(12, 3)), rs.normal(size=(12, 3))
        vals.append(kad(x, y, bandwidth=2.0, scale=1.0))
        xy = np.concatenate([x, y])
        kmat = np.exp(-((xy[:, None] - xy[None]) ** 2).sum(-1) / 8.0)
        biased.append(kmat[:12, :12].mean() + kmat[12:, 12:].mean() - 2 * kmat[:12, 12:].mean())
    vals = np.array(vals)
    stderr = vals.std(ddof=1) / np.sqrt(len(vals))
    assert abs(vals.mean()) < 3 * stderr
    assert np.mean(biased) > 5 * stderr + abs(vals.mean())


def test_kad_errors():
    with pytest.raises(SDSAudioError, match="at least 2"):
        kad(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(SDSAudioError, match="sizes differ"):
        kad(np.zeros((3, 3)), np.zeros((4, 2)))
    with pytest.raises(SDSAudioError, match="kernel"):
        kad(np.zeros((3, 3)), np.zeros((4, 3)), kernel="laplace")
    with pytest.raises(SDSAudioError, match="bandwidth"):
        kad(np.ones((3, 3)), np.zeros((4, 3)), bandwidth=-1.0)


# --------------------------------------------------------------------------- FAD
def _with_exact_moments(z: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Transform samples so their sample mean and (unbiased) covariance are exactly ``mean`` and ``cov``."""
    z = z - z.mean(axis=0)
    whiten = np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False)))
    return z @ whiten.T @ np.linalg.cholesky(cov).T + mean


def test_fad_closed_form_diagonal_gaussians():
    rs = np.random.default_rng(3)
    mu_x, mu_y = np.array([0.0, 1.0]), np.array([2.0, -1.0])
    cov_x, cov_y = np.diag([1.0, 4.0]), np.diag([9.0, 1.0])
    x = _with_exact_moments(rs.normal(size=(50, 2)), mu_x, cov_x)
    y = _with_exact_moments(rs.normal(size=(40, 2)), mu_y, cov_y)
    # ||dmu||^2 + sum_i (sigma_x,i - sigma_y,i)^2 for commuting covariances
    expected = 8.0 + (1.0 - 3.0) ** 2 + (2.0 - 1.0) ** 2
    assert fad(x, y) == pytest.approx(expected, abs=1e-8)


def test_fad_matches_scipy_sqrtm_for_general_covariances():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rs = np.random.default_rng(4)
    a, b = rs.normal(size=(4, 4)), rs.normal(size=(4, 4))
    cov_x, cov_y = a @ a.T + 0.1 * np.eye(4), b @ b.T + 0.1 * np.eye(4)
    mu_x, mu_y = rs.normal(size=4), rs.normal(size=4)
    x = _with_exact_moments(rs.normal(size=(30, 4)), mu_x, cov_x)
    y = _with_exact_moments(rs.normal(size=(30, 4)), mu_y, cov_y)
    root = scipy_linalg.sqrtm(cov_x @ cov_y).real
    expected = float(np.sum((mu_x - mu_y) ** 2) + np.trace(cov_x + cov_y - 2 * root))
    assert fad(x, y) == pytest.approx(expected, rel=1e-8)


def test_fad_zero_for_same_set_and_grows_with_shift():
    rs = np.random.default_rng(5)
    x = rs.normal(size=(200, 6))
    assert abs(fad(x, x)) < 1e-8
    assert fad(x, x + 1.0) == pytest.approx(6.0, rel=1e-8)  # covariance unchanged: ||dmu||^2


# --------------------------------------------------------------------------- CLAP (tiny random model)
@pytest.fixture(scope="module")
def tiny_clap_dir(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers.processors import TemplateProcessing

    words = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "a", "sine", "tone", "white", "noise", "kick", "drum"]
    vocab = {w: i for i, w in enumerate(words)}
    tk = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tk.post_processor = TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer = transformers.RobertaTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        mask_token="<mask>", cls_token="<s>", sep_token="</s>")
    config = transformers.ClapConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32, pad_token_id=1, projection_dim=8),
        audio_config=dict(num_mel_bins=16, spec_size=32, window_size=4, patch_size=4, patch_stride=[4, 4],
                          hidden_size=16, patch_embeds_hidden_size=8, depths=[1, 1], num_attention_heads=[2, 2],
                          num_hidden_layers=2, projection_dim=8),
        projection_dim=8)
    torch.manual_seed(0)
    model = transformers.ClapModel(config).eval()
    extractor = transformers.ClapFeatureExtractor(feature_size=16, sampling_rate=48000, hop_length=960,
                                                  max_length_s=1, fft_window_size=1024, truncation="rand_trunc",
                                                  padding="repeatpad")
    processor = transformers.ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer)
    path = tmp_path_factory.mktemp("tiny_clap")
    model.save_pretrained(str(path))
    processor.save_pretrained(str(path))
    return path


def test_clap_score_equals_cosine_of_model_embeddings(tiny_clap_dir):
    from transformers import ClapModel, ClapProcessor

    from sds_audio.metrics import ClapScorer, clap_score

    g = _rng(8)
    audio_48k = 0.1 * torch.randn(2, 1, 48000, generator=g)
    prompts = ["a sine tone", "white noise"]
    model = ClapModel.from_pretrained(str(tiny_clap_dir), local_files_only=True).eval()
    processor = ClapProcessor.from_pretrained(str(tiny_clap_dir), local_files_only=True)
    inputs = processor(text=prompts, audio=[a[0].numpy() for a in audio_48k], sampling_rate=48000,
                       return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
    expected = torch.nn.functional.cosine_similarity(out.audio_embeds, out.text_embeds, dim=-1)

    got = clap_score(audio_48k, prompts, tiny_clap_dir, sample_rate=48000)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # stereo input at another rate: downmixed and resampled, same shape, in [-1, 1]
    stereo_44k = 0.1 * torch.randn(3, 2, 22050, generator=g)
    scores = ClapScorer(tiny_clap_dir).score(stereo_44k, "kick drum", sample_rate=44100)
    assert scores.shape == (3,) and torch.all(scores.abs() <= 1.0 + 1e-6)


def test_clap_missing_directory_raises(tmp_path):
    from sds_audio.metrics import clap_score
    with pytest.raises(SDSAudioError, match=str(tmp_path / "nothing")):
        clap_score(torch.zeros(1, 1, 480), "a sine tone", tmp_path / "nothing")
