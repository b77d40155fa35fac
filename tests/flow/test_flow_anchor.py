"""PromptAnchor: the concept classifier and caption bank over pooled text embeddings; save / load; the prior."""

from __future__ import annotations

import pytest
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.flow import load_flow, save_flow
from sds_audio.flow.anchor import PromptAnchor, fit_anchor

from tiny_embedded import build_parts  # tests/ is on pytest's pythonpath


def _clusters(n_per: int = 20, seed: int = 0):
    """Three concepts: unit vectors near three random centres, with a shared 'attribute' direction mixed in."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(3, 384, generator=g), dim=-1)
    attribute = torch.nn.functional.normalize(torch.randn(384, generator=g), dim=0)
    rows, names = [], []
    for k, name in enumerate(("bell", "drum", "flute")):
        for i in range(n_per):
            loud = (i % 2) * 1.5                                       # half the captions say "loud"
            rows.append(centres[k] + loud * attribute + 0.3 * torch.randn(384, generator=g) / 384 ** 0.5)
            names.append(name)
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1), names, centres, attribute


def test_anchor_reads_the_concept_that_attributes_hide():
    pooled, names, centres, attribute = _clusters()
    anchor = fit_anchor(pooled, names, [f"{n} caption {i}" for i, n in enumerate(names)])
    assert anchor.bank.shape == (60, 384) and anchor.weight.shape == (384, 3)
    assert [anchor.concept(pooled).tolist().count(k) for k in range(3)] == [20, 20, 20]
    # a training caption is its own anchor
    torch.testing.assert_close(anchor(pooled), pooled)
    # a new "loud drum" wording: the attribute pulls it nearer loud captions of every concept
    query = torch.nn.functional.normalize(0.8 * centres[1] + 1.6 * attribute, dim=0)[None]
    out = anchor(query)
    row = int((anchor.bank == out).all(-1).nonzero()[0])
    assert names[row] == "drum" and row % 2 == 1                       # the drum caption that says "loud"
    assert out.dtype == query.dtype and float(out.norm()) == pytest.approx(1.0, abs=1e-5)
    # half precision in, half precision out
    assert anchor(query.half()).dtype == torch.float16
    # the concept centroids: unit means of each concept's captions, nearer its centre than any "loud" caption
    cent = anchor.centroids()
    assert cent.shape == (3, 384)
    torch.testing.assert_close(cent.norm(dim=-1), torch.ones(3))
    for k in range(3):
        rows = pooled[k * 20:(k + 1) * 20]
        torch.testing.assert_close(cent[k], torch.nn.functional.normalize(rows.mean(0), dim=0))
        assert float(cent[k] @ centres[k]) > float((rows[1::2] @ centres[k]).max())
    # ... and the loud captions' attribute is halved in it (half the captions carry it)
    assert float(cent[1] @ attribute) < 0.75 * float((pooled[21:40:2] @ attribute).mean())
    torch.testing.assert_close(anchor.concept_embedding(query), cent[1:2])
    assert anchor.concept_embedding(query.half()).dtype == torch.float16
    with pytest.raises(SDSAudioError, match="one concept and one caption per"):
        fit_anchor(pooled, names[:-1], anchor.captions[:-1])
    with pytest.raises(SDSAudioError, match="two concepts"):
        fit_anchor(pooled[:5], ["bell"] * 5, anchor.captions[:5])
    with pytest.raises(SDSAudioError, match="none of them empty"):
        fit_anchor(pooled, names, [""] * 60)


def test_anchor_travels_with_the_flow_weights(tmp_path):
    _, flow = build_parts(0)
    pooled, names, _, _ = _clusters()
    flow.anchor = fit_anchor(pooled, names, [f"{n} caption {i}" for i, n in enumerate(names)])
    save_flow(flow, tmp_path / "flow.safetensors")
    loaded = load_flow(tmp_path / "flow.safetensors")
    assert isinstance(loaded.anchor, PromptAnchor) and loaded.anchor.captions == flow.anchor.captions
    for name, value in flow.anchor.state_dict().items():
        assert torch.equal(loaded.anchor.state_dict()[name], value), name
    # anchor tensors without their captions: a clear error naming the file
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(tmp_path / "flow.safetensors"), framework="pt") as fh:
        meta = {k: v for k, v in (fh.metadata() or {}).items() if k != "anchor_captions"}
    save_file(load_file(str(tmp_path / "flow.safetensors")), str(tmp_path / "bare.safetensors"), metadata=meta)
    with pytest.raises(SDSAudioError, match="bare.safetensors.*captions are missing"):
        load_flow(tmp_path / "bare.safetensors")
    # a file without one loads without one
    flow.anchor = None
    save_flow(flow, tmp_path / "plain.safetensors")
    assert load_flow(tmp_path / "plain.safetensors").anchor is None


def test_the_embedded_prior_conditions_on_the_concept_centroid_the_anchor_caption_and_the_prompt():
    from sds_audio.priors.embedded import EmbeddedPrior
    from sds_audio.text import TextEncoder

    encoder = TextEncoder()
    captions = ["a loud kick drum hit", "kick drum, soft", "a bright glass bell note", "glass bell, soft, dry"]
    pooled = encoder.encode(captions)[2]
    codec, flow = build_parts(0)
    flow.anchor = fit_anchor(pooled, ["kick drum", "kick drum", "bell", "bell"], captions)
    anchored = EmbeddedPrior(codec, flow, text_encoder=encoder, codec_precision="float32")
    plain = EmbeddedPrior(codec, flow, text_encoder=encoder, codec_precision="float32", anchor="off")
    prompt = "someone hitting a bass drum loudly"
    a = anchored.condition(prompt).tensors["cond"]
    p = plain.condition(prompt).tensors["cond"]
    tokens, mask, own_pooled = encoder.encode([prompt])
    torch.testing.assert_close(p.tokens, tokens)
    torch.testing.assert_close(p.pooled, own_pooled)
    # the pooled input is the kick drum concept's centroid: the unit mean of its two captions' embeddings
    torch.testing.assert_close(a.pooled[0], torch.nn.functional.normalize(pooled[:2].mean(0), dim=0))
    # the tokens: the kick drum caption nearest the prompt, then the prompt's own
    picked = [captions[int(flow.anchor.nearest(own_pooled)[0])]]
    assert picked[0] in captions[:2]
    c_tokens, c_mask, _ = encoder.encode(picked)
    n = c_tokens.shape[1]
    torch.testing.assert_close(a.tokens[:, :n], c_tokens)              # the caption's tokens, then the prompt's
    torch.testing.assert_close(a.tokens[:, n:], tokens)
    assert torch.equal(a.mask, torch.cat([c_mask, mask], 1))
    # anchor="caption": the same tokens, the nearest caption's own pooled embedding
    by_caption = EmbeddedPrior(codec, flow, text_encoder=encoder, codec_precision="float32", anchor="caption")
    b = by_caption.condition(prompt).tensors["cond"]
    torch.testing.assert_close(b.pooled, encoder.encode(picked)[2])
    assert torch.equal(b.tokens, a.tokens) and torch.equal(b.mask, a.mask)
    with pytest.raises(SDSAudioError, match="anchor must be one of centroid, caption, off"):
        EmbeddedPrior(codec, flow, text_encoder=encoder, codec_precision="float32", anchor=True)
    # a flow file without an anchor: every mode conditions on the prompt alone
    flow.anchor = None
    assert EmbeddedPrior(codec, flow, text_encoder=encoder, codec_precision="float32").anchor_mode == "off"
    flow.anchor = anchored.anchor
    # both branches still agree where they should: the unconditional branch is the null text either way
    xt = torch.randn(1, 8, 20, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.5])
    assert float((anchored.denoise(xt, t, anchored.condition(prompt), 4.0)
                  - plain.denoise(xt, t, plain.condition(prompt), 4.0)).abs().max()) > 1e-4
    torch.testing.assert_close(anchored.denoise(xt, t, anchored.condition(prompt), 0.0),
                               plain.denoise(xt, t, plain.condition(prompt), 0.0))
