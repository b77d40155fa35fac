"""Voice adaptation: a copy of the speech model fine-tuned on one reference recording and its transcript.

In-context prompting alone (:meth:`~sds_audio.tts.model.TTSModel.synthesize` with a prompt) speaks an
unseen voice as the nearest voice the model was trained on: with a handful of training voices the
decoder has no way to produce a spectral envelope it never saw. :func:`adapt_model` closes that gap
the way few-shot speaker adaptation does (e.g. AdaSpeech, "Sample efficient adaptive text-to-speech",
Chen et al. 2019): it takes ``steps`` Adam steps of the model's own training loss
(:meth:`~sds_audio.tts.model.TTSModel.losses`: conditional flow matching, the reference as its own
in-context prompt for part of the rows) on the reference's frames and transcript, moving only the
flow decoder (``part="decoder"``) or only its adaLN modulation and output layers (``part="modulation"``).
The text encoder and duration predictor stay as trained, so what is said and how long it takes are
the shipped model's; the copy learns how this voice sounds.

A batch repeats the reference ``batch`` times with different noise, flow times and prompt spans
(one seeded generator: the same inputs give the same copy). The original model is not touched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..errors import SDSAudioError
from .model import TTSModel

PARTS = ("decoder", "modulation")


@dataclass(frozen=True)
class AdaptConfig:
    """Settings of :func:`adapt_model` (defaults chosen on the validation split, model card)."""

    steps: int = 50
    lr: float = 1e-4
    batch: int = 8
    part: str = "decoder"
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.steps) != self.steps or not 0 <= self.steps <= 1000:
            raise SDSAudioError(f"adaptation steps must be an integer in [0, 1000], got {self.steps}")
        if not (self.lr > 0 and self.lr < 1):
            raise SDSAudioError(f"adaptation lr must lie in (0, 1), got {self.lr}")
        if int(self.batch) != self.batch or self.batch < 1:
            raise SDSAudioError(f"adaptation batch must be an integer >= 1, got {self.batch}")
        if self.part not in PARTS:
            raise SDSAudioError(f"adaptation part must be one of {PARTS}, got {self.part!r}")


def trainable_parameters(model: TTSModel, part: str) -> list[torch.nn.Parameter]:
    """The parameters :func:`adapt_model` moves: the whole flow decoder, or its modulation and output layers."""
    if part == "decoder":
        return list(model.decoder.parameters())
    return [p for name, p in model.decoder.named_parameters()
            if ".ada." in f".{name}" or name.startswith(("ada_out.", "proj_out."))]


def adapt_model(model: TTSModel, frames: torch.Tensor, symbols: torch.Tensor,
                config: AdaptConfig | None = None, progress: bool = False) -> TTSModel:
    """A copy of ``model`` fine-tuned on one recording (see the module docstring).

    Args:
        frames: ``(D, P)`` normalised frames of the reference (:meth:`TTSModel.normalize`).
        symbols: ``(N,)`` symbol ids of its transcript.
        progress: a progress bar over the steps.

    Returns:
        the adapted copy, in eval mode with gradients off.

    Raises:
        SDSAudioError: no symbols, or fewer frames than symbols (the transcript is longer than the
            recording can hold: a wrong transcript).
    """
    config = config or AdaptConfig()
    n_frames, n_symbols = int(frames.shape[-1]), int(symbols.numel())
    if n_symbols == 0:
        raise SDSAudioError("the voice's transcript has no speakable symbol: give the words the reference says")
    if n_frames <= n_symbols:
        raise SDSAudioError(f"the voice's transcript has {n_symbols} symbols but the reference only "
                            f"{n_frames} frames: give the transcript of the reference recording itself")
    # eval mode throughout: the duration predictor's dropout plays no part in the flow loss
    adapted = copy.deepcopy(model).eval().requires_grad_(False)
    if config.steps == 0:
        return adapted
    params = trainable_parameters(adapted, config.part)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=config.lr)
    generator = torch.Generator().manual_seed(int(config.seed))
    device = adapted.latent_mean.device
    b = int(config.batch)
    z = frames.to(device).float()[None].expand(b, -1, -1).contiguous()
    ids = symbols.to(device).long()[None].expand(b, -1).contiguous()
    text_lengths = torch.full((b,), n_symbols, device=device)
    frame_lengths = torch.full((b,), n_frames, device=device)
    with torch.enable_grad():
        for _ in tqdm(range(int(config.steps)), desc="adapting to the voice", unit="step", disable=not progress):
            loss = adapted.losses(ids, text_lengths, z, frame_lengths, generator).flow
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return adapted.requires_grad_(False)


__all__ = ["PARTS", "AdaptConfig", "adapt_model", "trainable_parameters"]
