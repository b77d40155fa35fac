"""CorpusDataset and the manifest / concepts readers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from sds_audio.corpus import CorpusDataset, read_concepts, read_manifest
from sds_audio.errors import SDSAudioError


def test_items_have_the_documented_shapes(tiny_corpus):
    ds = CorpusDataset(tiny_corpus.root, split="train", segment_s=2.0)
    names = [c["concept"] for c in read_concepts(tiny_corpus.root)]
    records = [r for r in read_manifest(tiny_corpus.root) if r["split"] == "train"]
    assert len(ds) == len(records)
    for i in range(len(ds)):
        item = ds[i]
        assert item["audio"].shape == (1, 44100) and item["audio"].dtype == torch.float32
        assert item["audio"].abs().max() <= 1.0
        assert item["caption"] == records[i]["caption"]
        assert names[item["concept_index"]] == item["concept"] == records[i]["concept"]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["audio"].shape == (4, 1, 44100) and len(batch["caption"]) == 4


def test_heldout_and_all_splits(tiny_corpus):
    held = CorpusDataset(tiny_corpus.root, split="heldout")
    train = CorpusDataset(tiny_corpus.root, split="train")
    both = CorpusDataset(tiny_corpus.root, split="all")
    assert len(held) + len(train) == len(both) == tiny_corpus.summary.n_clips
    assert not {r["id"] for r in held.records} & {r["id"] for r in train.records}
    # concept indices agree across splits
    assert held.concept_to_index == train.concept_to_index


def test_crops_are_seeded_and_exact(tiny_corpus):
    ds = CorpusDataset(tiny_corpus.root, split="all", segment_s=0.5, seed=3)
    long_idx = [i for i, r in enumerate(ds.records) if r["duration_s"] > 1.5]
    assert long_idx
    i = long_idx[0]
    full, _ = sf.read(str(tiny_corpus.root / ds.records[i]["path"]), dtype="float32")
    a = ds[i]["audio"][0].numpy()
    offset = ds.crop_offset(i, full.shape[0])
    np.testing.assert_array_equal(a, full[offset:offset + 11025])
    np.testing.assert_array_equal(a, CorpusDataset(tiny_corpus.root, split="all", segment_s=0.5, seed=3)[i]["audio"][0])
    offsets = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        offsets.add(ds.crop_offset(i, full.shape[0]))
    assert len(offsets) > 1
    start = CorpusDataset(tiny_corpus.root, split="all", segment_s=0.5, crop="start")[i]["audio"][0].numpy()
    np.testing.assert_array_equal(start, full[:11025])


def test_short_clips_are_zero_padded_and_whole_clips_returned(tiny_corpus):
    ds = CorpusDataset(tiny_corpus.root, split="all", segment_s=5.0)
    item = ds[0]
    n = int(round(ds.records[0]["duration_s"] * 22050))
    assert item["audio"].shape == (1, 110250)
    assert torch.all(item["audio"][0, n:] == 0) and item["audio"][0, :n].abs().max() > 0
    whole = CorpusDataset(tiny_corpus.root, split="all", segment_s=None)
    assert whole[0]["audio"].shape == (1, n)


def test_resampling_and_preload(tiny_corpus):
    ds16 = CorpusDataset(tiny_corpus.root, split="all", segment_s=1.0, sample_rate=16000, crop="start")
    assert ds16[0]["audio"].shape == (1, 16000)
    pre = CorpusDataset(tiny_corpus.root, split="all", segment_s=1.0, crop="start", preload=True)
    lazy = CorpusDataset(tiny_corpus.root, split="all", segment_s=1.0, crop="start")
    torch.testing.assert_close(pre[1]["audio"], lazy[1]["audio"], atol=1 / 32767, rtol=0)


def test_reader_errors(tmp_path):
    with pytest.raises(SDSAudioError, match="does not exist"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.jsonl").write_text('{"id": "a"}\n')
    with pytest.raises(SDSAudioError, match="lacks"):
        read_manifest(tmp_path)
    rec = {"id": "a", "path": "audio/a.wav", "concept": "x", "caption": "x", "split": "test"}
    (tmp_path / "manifest.jsonl").write_text(json.dumps(rec) + "\n")
    with pytest.raises(SDSAudioError, match="split"):
        read_manifest(tmp_path)
    rec["split"] = "train"
    (tmp_path / "manifest.jsonl").write_text(json.dumps(rec) + "\n")
    with pytest.raises(SDSAudioError, match="no clips in split 'heldout'"):
        CorpusDataset(tmp_path, split="heldout")
    with pytest.raises(SDSAudioError, match="cannot read"):
        CorpusDataset(tmp_path)[0]
    with pytest.raises(SDSAudioError, match="split must be"):
        CorpusDataset(tmp_path, split="validation")


def test_hand_written_corpus_without_concepts_json(tmp_path):
    """Other engineers' tests write tiny corpora themselves; that format must be enough."""
    (tmp_path / "audio").mkdir()
    lines = []
    for i, (concept, f) in enumerate([("sine", 440.0), ("noise", 0.0), ("sine", 220.0)]):
        t = np.arange(22050) / 22050
        x = 0.5 * np.sin(2 * np.pi * f * t) if f else 0.1 * np.random.default_rng(i).standard_normal(22050)
        sf.write(str(tmp_path / "audio" / f"c{i}.wav"), x, 22050, subtype="PCM_16")
        lines.append(json.dumps({"id": f"c{i}", "path": f"audio/c{i}.wav", "concept": concept, "caption": concept,
                                 "split": "train", "source": "procedural", "duration_s": 1.0,
                                 "sample_rate": 22050, "attributes": {}}))
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    ds = CorpusDataset(tmp_path, segment_s=0.25)
    assert ds.concepts == ["noise", "sine"]
    assert [ds[i]["concept_index"] for i in range(3)] == [1, 0, 1]
