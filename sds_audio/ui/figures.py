"""Figures the studio draws while a job runs and when it ends (matplotlib, Agg backend).

``progress_figure`` draws the live curves of a prompt-to-preset run (SDS loss of
every restart, and the judge score when the judge has scored), and
``spectrogram_figure`` one or more spectrograms side by side (the render tab,
the separation tab). The spectrograms are :func:`sds_audio.report.spectrogram_db`,
the same as in ``report.png``. Both return a :class:`matplotlib.figure.Figure`
(never the pyplot state machine, so figures from several threads do not mix).
"""

from __future__ import annotations

from typing import Sequence

import torch


def _figure(width_in: float, height_in: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), layout="constrained")


def progress_figure(steps: Sequence[int], losses: Sequence[Sequence[float]],
                    judge: Sequence[tuple[int, Sequence[float]]] = (), title: str = ""):
    """Live curves of a run.

    Args:
        steps: finished step numbers, from 1.
        losses: per step, the SDS loss of every restart (``len(steps)`` lists of ``restarts`` floats).
        judge: ``(step, scores of every restart)`` pairs (step 0 = before optimisation).
        title: the figure's title.
    """
    panels = 2 if judge else 1
    fig = _figure(4.6 * panels, 3.0)
    if title:
        fig.suptitle(title, fontsize="medium")
    ax = fig.add_subplot(1, panels, 1)
    if len(steps):
        per_restart = list(zip(*losses))
        for k, curve in enumerate(per_restart):
            ax.plot(list(steps), list(curve), lw=1.2, label=f"restart {k}")
        if len(per_restart) > 1:
            ax.legend(fontsize="x-small", ncol=2)
    ax.set_title("SDS loss")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if judge:
        ax = fig.add_subplot(1, panels, 2)
        at = [s for s, _ in judge]
        for k, curve in enumerate(zip(*(scores for _, scores in judge))):
            ax.plot(at, list(curve), marker="o", lw=1.2, label=f"restart {k}")
        ax.set_title("judge score (higher is closer to the prompt)")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return fig


def spectrogram_figure(panels: Sequence[tuple[str, torch.Tensor]], sample_rate: int, title: str = ""):
    """Spectrograms side by side: ``panels`` are ``(label, audio (C, T) or (T,))`` at ``sample_rate`` Hz."""
    from ..report import spectrogram_db

    fig = _figure(3.6 * max(1, len(panels)), 2.8)
    if title:
        fig.suptitle(title, fontsize="medium")
    image = None
    for i, (label, audio) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        db = spectrogram_db(audio, sample_rate)
        duration_s = audio.shape[-1] / sample_rate
        image = ax.imshow(db.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=0,
                          extent=(0.0, duration_s, 0.0, sample_rate / 2000))
        ax.set_title(label, fontsize="small")
        ax.set_xlabel("time (s)")
        if i == 0:
            ax.set_ylabel("frequency (kHz)")
    if image is not None:
        fig.colorbar(image, ax=fig.axes, label="dB", shrink=0.9)
    return fig
