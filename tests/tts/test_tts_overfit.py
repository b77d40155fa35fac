"""A tiny log-mel speech model learns three flite sentences: its losses fall and the recogniser starts to
understand it.

Needs flite and espeak-ng (Debian packages) and pocketsphinx (dev extra); skipped without them.
About a minute on one core.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

from sds_audio.audio_io import load_audio
from sds_audio.tts import TTSConfig, TTSModel
from sds_audio.tts.features import mel_features
from sds_audio.tts.data import collate
from sds_audio.tts.frontend import Frontend

pytest.importorskip("pocketsphinx", reason="pocketsphinx (dev extra) is not installed")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("flite") is None or shutil.which("espeak-ng") is None,
                                 reason="flite and espeak-ng are not installed")]

from sds_audio.tts.evaluation import recognize, wer  # noqa: E402

TEXTS = ["Good morning.", "Thank you very much.", "How are you today?"]
STEPS = 750


def test_tiny_model_overfits_three_sentences(tmp_path):
    config = TTSConfig.for_mel(text_width=64, text_depth=1, text_heads=2, text_convs=2, duration_width=64, width=96,
                               depth=3, heads=2, time_features=64, text_dropout=0.0, prompt_share=0.0)
    mel = mel_features(config)
    frontend = Frontend("phonemes")
    items = []
    for i, text in enumerate(TEXTS):
        wav = tmp_path / f"{i}.wav"
        subprocess.run(["flite", "-voice", "kal16", "-t", text, "-o", str(wav)], check=True, capture_output=True)
        audio, _ = load_audio(wav, sample_rate=mel.sample_rate, channels=1)
        with torch.no_grad():
            items.append((torch.tensor(frontend.encode(text)), mel.encode(audio)[0]))
    torch.manual_seed(0)
    model = TTSModel(config)
    frames = torch.cat([z for _, z in items], -1)
    model.latent_mean.copy_(frames.mean(-1))
    model.latent_std.copy_(frames.std(-1))
    model.set_default_prompt(torch.zeros(config.latent_channels, 0))
    symbols, text_lengths, z, frame_lengths = collate(items)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)

    def transcripts() -> list[str]:
        model.eval()
        out = []
        for sym, _ in items:
            latents = model.synthesize(sym, steps=8, guidance=1.0, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                audio = mel.decode(model.denormalize(latents[None]))[0, 0]
            out.append(recognize(audio, mel.sample_rate))
        model.train()
        return out

    wer_before = wer(TEXTS, transcripts())
    history = []
    for step in range(STEPS):
        losses = model.losses(symbols, text_lengths, model.normalize(z), frame_lengths,
                              torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        losses.total.backward()
        optimizer.step()
        history.append([float(losses.flow.detach()), float(losses.prior.detach()), float(losses.duration.detach())])
    first = torch.tensor(history[:10]).mean(0)
    last = torch.tensor(history[-10:]).mean(0)
    assert last[0] < 0.5 * first[0]          # flow matching loss
    assert last[1] < first[1] - 0.2          # prior (alignment) loss
    assert last[2] < 0.2 * first[2]          # duration loss
    # the durations the alignment found add up to each utterance's frames and are what the predictor learned
    assert losses.durations.sum(-1).tolist() == frame_lengths.float().tolist()
    wer_after = wer(TEXTS, transcripts())
    assert wer_before >= 0.8
    assert wer_after <= 0.3 and wer_after < wer_before
