"""report.png: spectrograms and optimisation curves of a run, in one figure.

``write_report(path, spectrograms, curves, title=...)`` draws one row of
log-magnitude spectrograms (e.g. before / after, or mixture / sources) above
one row of curves (e.g. SDS loss and judge score against step) and writes the
PNG atomically. Matplotlib runs on its non-interactive Agg backend, so this
works without a display.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import torch

from .atomic import atomic_path

Curve = tuple[Sequence[float], Sequence[float]]  # (steps, values)


def spectrogram_db(audio: torch.Tensor, sample_rate: int, n_fft: int = 1024, floor_db: float = -80.0) -> torch.Tensor:
    """``(C, T)`` or ``(T,)`` audio -> ``(n_fft // 2 + 1, frames)`` magnitude in dB (channels averaged).

    0 dB is a full-scale sine; values are floored at ``floor_db``.
    """
    import torchaudio

    x = audio.detach().float().cpu()
    x = x.reshape(-1, x.shape[-1]).mean(0)
    n_fft = int(min(n_fft, 2 ** int(math.log2(max(16, x.numel())))))
    spec = torchaudio.transforms.Spectrogram(n_fft=n_fft, hop_length=n_fft // 4, power=1.0)(x)
    ref = torch.hann_window(n_fft).sum() / 2  # a full-scale sine's peak bin
    return (20 * torch.log10(spec / ref + 1e-12)).clamp(min=floor_db)


def write_report(path: str | os.PathLike, spectrograms: Sequence[tuple[str, torch.Tensor]], sample_rate: int,
                 curves: Mapping[str, Mapping[str, Curve]] | None = None, title: str = "") -> Path:
    """Write the figure.

    Args:
        path: output ``.png`` (written atomically).
        spectrograms: ``(label, audio (C, T))`` pairs, drawn left to right.
        sample_rate: of every audio in ``spectrograms`` (Hz).
        curves: one panel per key; each maps a line label to ``(steps, values)``.
        title: the figure's title (e.g. the prompt).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    curves = {k: v for k, v in (curves or {}).items() if any(len(s) for s, _ in v.values())}
    n_cols = max(len(spectrograms), len(curves), 1)
    n_rows = 1 + (1 if curves else 0)
    fig = Figure(figsize=(4.2 * n_cols, 3.4 * n_rows), layout="constrained")
    if title:
        fig.suptitle(title)
    for i, (label, audio) in enumerate(spectrograms):
        ax = fig.add_subplot(n_rows, n_cols, i + 1)
        db = spectrogram_db(audio, sample_rate)
        duration_s = audio.shape[-1] / sample_rate
        image = ax.imshow(db.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=0,
                          extent=(0.0, duration_s, 0.0, sample_rate / 2000))
        ax.set_title(label)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("frequency (kHz)")
    if spectrograms:
        fig.colorbar(image, ax=fig.axes[:len(spectrograms)], label="dB", shrink=0.9)
    for j, (panel, lines) in enumerate(curves.items()):
        ax = fig.add_subplot(n_rows, n_cols, n_cols + j + 1)
        for label, (steps, values) in lines.items():
            if len(steps):
                ax.plot(list(steps), list(values), label=label, marker="o" if len(steps) < 20 else None)
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize="small")
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # a prompt with emoji or other symbols the font lacks draws boxes; say nothing about each glyph
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        fig.savefig(tmp, format="png", dpi=90)
    return path
