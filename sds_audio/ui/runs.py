"""What the studio's buttons do, without gradio: one function per tab, run on the job queue.

Each ``*_run(job, settings, ...)`` function takes a :class:`~sds_audio.ui.queue.Job`
(for progress and cancellation) and the studio's :class:`StudioSettings`, calls
the library (:mod:`sds_audio.jobs`, :func:`sds_audio.flow.generate.generate`,
:func:`sds_audio.presets.load_preset`) and returns a small result dataclass the
page turns into players, figures and downloads. Bad input raises
:class:`~sds_audio.errors.SDSAudioError` with a message for the page. Every run
writes into its own directory under ``settings.workdir`` (``0003-fm-kick-drum/``),
laid out as the command line's run directories are, so a cancelled
prompt-to-preset run can be continued with ``sds-audio fm --resume DIR``.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SDSAudioError
from .queue import Job

#: players the page holds for restarts and for separated sources
MAX_RESTARTS = 8
MAX_SOURCES = 4
#: live previews of the current render per run (the page re-encodes each one)
PREVIEWS_PER_RUN = 20


@dataclass(frozen=True)
class StudioSettings:
    """What ``sds-audio ui`` was started with.

    Attributes:
        workdir: where run directories go (created).
        prior: prior name or directory for prompt-to-preset and separation (see ``load_prior``).
        device: torch device (None: CUDA if available, else CPU).
        codec_precision: the embedded prior's codec precision.
        judge: load the shipped judge (scores, restart choice).
        max_upload_mb: the largest upload accepted, in megabytes (10**6 bytes).
        tts_weights: the speech model's ``.safetensors`` (None: the shipped one).
    """

    workdir: Path
    prior: str = "embedded"
    device: str | None = None
    codec_precision: str = "auto"
    judge: bool = True
    max_upload_mb: float = 50.0
    tts_weights: str | None = None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1e6)


def synth_types() -> list[str]:
    """The preset synths the page offers: in :data:`sds_audio.synths.SYNTH_TYPES` and run by :mod:`sds_audio.jobs`."""
    from .. import jobs
    from ..synths import SYNTH_TYPES

    return [name for name in SYNTH_TYPES if name in jobs.SYNTH_TYPES]


def _slug(text: str, limit: int = 32) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "run"


def run_dir_for(settings: StudioSettings, job: Job, kind: str, label: str) -> Path:
    """``workdir/{job id:04d}-{kind}-{slug of label}``, with ``-2``, ``-3``... if taken (not created).

    The suffix keeps a studio restarted on the same work directory from touching earlier runs.
    """
    base = Path(settings.workdir) / f"{job.id:04d}-{kind}-{_slug(label)}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def check_upload(path: str | Path | None, settings: StudioSettings, what: str) -> Path:
    """The uploaded file's path, after checking it exists and is not over the size limit."""
    if path is None or str(path) == "":
        raise SDSAudioError(f"upload {what} first")
    path = Path(path)
    if not path.is_file():
        raise SDSAudioError(f"the uploaded {what} is gone ({path.name}); upload it again")
    size = path.stat().st_size
    if size > settings.max_upload_bytes:
        raise SDSAudioError(f"{path.name} is {size / 1e6:.1f} MB; the studio accepts files up to "
                            f"{settings.max_upload_mb:g} MB (start it with a larger --max-upload-mb)")
    if size == 0:
        raise SDSAudioError(f"{path.name} is empty")
    return path


def check_prompt(prompt: Any) -> str:
    """The prompt, stripped; an error for an empty one."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise SDSAudioError("the prompt is empty; describe the sound, e.g. \"kick drum, bass, reverb\"")
    return prompt.strip()


def to_player(audio: torch.Tensor) -> np.ndarray:
    """``(C, T)`` or ``(1, C, T)`` float audio in [-1, 1] -> ``(T, C)`` 16-bit PCM for a player (clipped)."""
    audio = audio.detach().float().cpu()
    if audio.dim() == 3:
        audio = audio[0]
    return (audio.clamp(-1, 1) * 32767.0).round().to(torch.int16).T.contiguous().numpy()


# ---------------------------------------------------------------------------------------- prompt -> preset
@dataclass
class PresetRun:
    """A finished prompt-to-preset run.

    Attributes:
        run_dir: the run directory (``sound.wav``, ``initial.wav``, ``preset.json``, ``report.png``, ``run.json``).
        record: its ``run.json`` record.
        downloads: files offered for download (preset, sound, exports).
        restarts: ``(label, sample_rate, audio (T, C) int16)`` for every restart's final render.
        notes: exports that failed, one line each.
    """

    run_dir: Path
    record: dict[str, Any]
    downloads: list[Path]
    restarts: list[tuple[str, int, np.ndarray]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def preset_run(job: Job, settings: StudioSettings, synth_type: str, prompt: str, *, steps: int = 150,
               restarts: int = 4, duration_s: float = 1.5, seed: int = 0, guidance_scale: float = 5.0) -> PresetRun:
    """Prompt -> preset through :func:`sds_audio.jobs.prompt_to_preset`, with live progress.

    ``job.progress`` gets, after every step: ``step`` (done, from 1), ``steps``, ``losses``
    (per step, per restart), ``judge`` (``(step, scores)`` pairs when the judge scored), and every
    ``steps / PREVIEWS_PER_RUN`` steps ``preview`` = ``(sample_rate, (T, C) int16 audio, step, restart)``:
    the render of the restart currently ahead (best judge score, else lowest loss).
    """
    from ..jobs import JobOptions, prompt_to_preset

    prompt = check_prompt(prompt)
    if synth_type not in synth_types():
        raise SDSAudioError(f"unknown synth {synth_type!r}; choose one of {', '.join(synth_types())}")
    if not 1 <= int(restarts) <= MAX_RESTARTS:
        raise SDSAudioError(f"restarts must be between 1 and {MAX_RESTARTS}")
    steps, restarts = int(steps), int(restarts)
    options = JobOptions(prior=settings.prior, steps=steps, seed=int(seed), device=settings.device,
                         guidance_scale=float(guidance_scale), duration_s=float(duration_s), restarts=restarts,
                         judge=settings.judge, codec_precision=settings.codec_precision, progress=False)
    out = run_dir_for(settings, job, synth_type, prompt)
    losses: list[list[float]] = []
    judged: list[tuple[int, list[float]]] = []
    live: dict[str, Any] = {}
    every = max(1, math.ceil(steps / PREVIEWS_PER_RUN))
    job.report(run_dir=str(out), steps=steps, step=0, phase="loading the prior")

    def on_step(step: int, info: dict[str, Any]) -> None:
        live["synth"] = info["synth"]
        losses.append([float(x) for x in info["loss"]])
        if "judge" in info:
            judged.append((step + 1, [float(x) for x in info["judge"]]))
        fields: dict[str, Any] = {"step": step + 1, "losses": list(losses), "judge": list(judged),
                                  "phase": "optimising" if step + 1 < steps else "writing the results"}
        if (step + 1) % every == 0 or step + 1 == steps:
            ahead = int(np.argmax(judged[-1][1])) if judged else int(np.argmin(losses[-1]))
            fields["preview"] = (int(info["synth"].sample_rate), to_player(info["audio"][ahead]), step + 1, ahead)
        job.report(**fields)
        job.check_cancelled()

    record = prompt_to_preset(synth_type, prompt, out, options, on_step=on_step)
    synth, best = live["synth"], int(record["best_restart"])
    with torch.no_grad():
        final = synth(synth.n_samples(options.duration_s)).detach()        # (restarts, C, T)
    scores = record.get("judge_final") or []
    players = []
    for k in range(final.shape[0]):
        label = f"restart {k}" + (" (kept)" if k == best else "")
        if scores:
            label += f", judge {scores[k]:.3f}"
        players.append((label, int(synth.sample_rate), to_player(final[k])))
    from .exports import export_preset

    exported, notes = export_preset(out / "preset.json", out)
    written = [out / name for name in ("preset.json", "sound.wav", "voice.syx") if name in record["outputs"]]
    return PresetRun(run_dir=out, record=record, downloads=written + exported, restarts=players, notes=notes)


# ---------------------------------------------------------------------------------------- separation
@dataclass
class SeparationRun:
    """A finished separation: ``sources`` are ``(prompt, wav path)``; ``report`` the figure."""

    run_dir: Path
    record: dict[str, Any]
    sources: list[tuple[str, Path]]
    report: Path


def parse_prompts(text: str | None) -> list[str]:
    """One prompt per non-empty line; at most :data:`MAX_SOURCES`."""
    prompts = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not prompts:
        raise SDSAudioError("write one prompt per source, one per line, e.g. \"dog bark\" and \"rain\"")
    if len(prompts) > MAX_SOURCES:
        raise SDSAudioError(f"{len(prompts)} prompts; the studio separates at most {MAX_SOURCES} sources")
    return prompts


def separation_run(job: Job, settings: StudioSettings, mixture_path: str | Path | None, prompts_text: str,
                   *, steps: int = 100, seed: int = 0, gamma: float = 0.3) -> SeparationRun:
    """Mixture + prompts -> sources through :func:`sds_audio.jobs.separate_file`.

    ``job.progress`` gets ``step``, ``steps`` (over all windows) and ``loss_rec`` (per step).
    """
    from ..audio_io import load_audio
    from ..jobs import JobOptions, separate_file

    prompts = parse_prompts(prompts_text)
    path = check_upload(mixture_path, settings, "a mixture")
    load_audio(path)                   # unreadable, empty, NaN or silent files fail here, before any model loads
    options = JobOptions(prior=settings.prior, steps=int(steps), seed=int(seed), device=settings.device, lr=0.25,
                         judge=settings.judge, codec_precision=settings.codec_precision, progress=False)
    out = run_dir_for(settings, job, "separate", " ".join(prompts))
    loss_rec: list[float] = []
    job.report(run_dir=str(out), step=0, steps=int(steps), phase="loading the prior")

    def on_step(step: int, info: dict[str, Any]) -> None:
        loss_rec.append(float(info["loss_rec"]))
        job.report(step=step + 1, loss_rec=list(loss_rec), window=int(info["window"]), phase="optimising")
        job.check_cancelled()

    record = separate_file(path, prompts, out, options, gamma=float(gamma), on_step=on_step)
    wavs = [out / name for name in record["outputs"] if name.endswith(".wav")]
    return SeparationRun(run_dir=out, record=record, sources=list(zip(prompts, wavs)), report=out / "report.png")


# ---------------------------------------------------------------------------------------- generation
@dataclass
class GenerateRun:
    """A generated clip: ``path`` (24-bit WAV), ``gain_db`` applied to avoid clipping (0 if none)."""

    path: Path
    sample_rate: int
    gain_db: float


@functools.lru_cache(maxsize=2)
def _embedded_prior(source: str, device: str | None):
    from ..priors.embedded import load_embedded_prior

    assets = None if source == "embedded" else Path(source)
    try:
        # the clip is the product here, not an SDS target: decode it at full precision
        return load_embedded_prior(device=device, assets_dir=assets, codec_precision="float32")
    except FileNotFoundError as exc:
        raise SDSAudioError(f"the embedded prior's weights are missing ({exc.filename or exc}); reinstall "
                            "sds-audio") from exc


def generation_prior_source(settings: StudioSettings) -> str:
    """The studio's prior when it is an embedded one (a flow model), else the shipped ``embedded``."""
    if settings.prior != "embedded" and (Path(settings.prior).expanduser() / "flow.safetensors").is_file():
        return str(Path(settings.prior).expanduser())
    return "embedded"


def generate_run(job: Job, settings: StudioSettings, prompt: str, *, seconds: float | None = None, steps: int = 32,
                 cfg: float = 4.0, seed: int = 0) -> GenerateRun:
    """Text -> audio with the embedded flow prior (:func:`sds_audio.flow.generate.generate`).

    The sampler's steps are not interruptible: a cancel takes effect before the clip starts.
    """
    from ..audio_io import save_audio
    from ..flow.generate import generate

    prompt = check_prompt(prompt)
    job.report(phase="loading the prior")
    prior = _embedded_prior(generation_prior_source(settings), settings.device)
    job.check_cancelled()
    job.report(phase="generating")
    audio = generate(prompt, seconds=seconds, steps=int(steps), cfg=float(cfg), seed=int(seed), prior=prior,
                     progress=False)
    peak, gain_db = float(audio.abs().max()), 0.0
    if peak > 1.0:        # the codec can overshoot on sharp onsets: scale down rather than clip
        gain_db = 20 * math.log10(0.99 / peak)
        audio = audio * (0.99 / peak)
    out = run_dir_for(settings, job, "generate", prompt)
    out.mkdir(parents=True, exist_ok=True)
    rate = int(prior.sample_rate)
    return GenerateRun(path=save_audio(out / "sound.wav", audio, rate), sample_rate=rate, gain_db=gain_db)


# ---------------------------------------------------------------------------------------- render a preset
@dataclass
class RenderRun:
    """A rendered preset: ``path`` (24-bit WAV), its ``audio (C, T)`` and the preset's description."""

    path: Path
    audio: torch.Tensor
    sample_rate: int
    summary: str


def render_run(job: Job, settings: StudioSettings, preset_path: str | Path | None, *,
               duration_s: float | None = None, f0_hz: float | None = None) -> RenderRun:
    """Render an uploaded preset file (:func:`sds_audio.presets.load_preset`) to a WAV file."""
    from ..audio_io import save_audio
    from ..presets import load_preset

    path = check_upload(preset_path, settings, "a preset file (preset.json)")
    preset = load_preset(path)
    audio = preset.render(duration_s=duration_s or None, f0_hz=f0_hz or None)[0]
    out = run_dir_for(settings, job, "render", path.stem)
    out.mkdir(parents=True, exist_ok=True)
    wav = save_audio(out / "sound.wav", audio, preset.sample_rate)
    prompt = preset.provenance.get("prompt")
    summary = f"{type(preset.synth).__name__}, {audio.shape[-1] / preset.sample_rate:.2f} s at " \
              f"{preset.sample_rate} Hz" + (f", made for {prompt!r}" if prompt else "")
    return RenderRun(path=wav, audio=audio, sample_rate=preset.sample_rate, summary=summary)


# ---------------------------------------------------------------------------------------- speech
def check_text(text: Any) -> str:
    """The text to speak, stripped; an error for an empty one."""
    if not isinstance(text, str) or not text.strip():
        raise SDSAudioError("the text is empty; type what should be said")
    return text.strip()


def check_voice_text(voice: str | Path | None, voice_text: str | None) -> str:
    """The voice recording's transcript, stripped ('' for none); an error for one without a recording."""
    voice_text = (voice_text or "").strip()
    if voice_text and (voice is None or str(voice) == ""):
        raise SDSAudioError("the transcript belongs to a voice recording: upload the recording too")
    return voice_text


def speech_runner():
    """:func:`speech_run` when :mod:`sds_audio.tts` provides ``load_tts``, else None (no speech tab)."""
    try:
        from ..tts import load_tts  # noqa: F401
    except ImportError:
        return None
    return speech_run


@functools.lru_cache(maxsize=1)
def _speech_model(weights: str | None, device: str | None):
    from ..tts import load_tts

    return load_tts(weights, device=device)


@dataclass
class SpeechRun:
    """Spoken text: ``path`` (24-bit WAV) at ``sample_rate``, ``duration_s`` long."""

    path: Path
    sample_rate: int
    duration_s: float


def speech_run(job: Job, settings: StudioSettings, text: str, *, voice: str | Path | None = None, steps: int = 16,
               speed: float = 1.0, seed: int = 0, voice_text: str = "") -> SpeechRun:
    """Text -> speech with :func:`sds_audio.tts.load_tts` (``settings.tts_weights``, default the shipped ones).

    ``voice``: an uploaded reference recording whose voice to use (None: the model's built-in voice).
    ``voice_text``: what that recording says; when given, a copy of the model is first adapted to the
    voice (:meth:`~sds_audio.tts.infer.SpeechSynthesizer.adapt`, seeded by ``seed``).
    """
    from ..audio_io import save_audio

    text = check_text(text)
    if voice is not None and str(voice) != "":
        voice = check_upload(voice, settings, "a voice recording")
    else:
        voice = None
    voice_text = check_voice_text(voice, voice_text)
    job.report(phase="loading the speech model")
    model = _speech_model(settings.tts_weights, settings.device)
    job.check_cancelled()
    if voice_text:
        job.report(phase="adapting to the voice")
        model = model.adapt(voice, voice_text, seed=int(seed))
        voice = None                     # the adapted copy's built-in voice is the recording
        job.check_cancelled()
    job.report(phase="speaking")
    audio, rate = model.speak(text, voice=voice, steps=int(steps), speed=float(speed), seed=int(seed))
    out = run_dir_for(settings, job, "speech", text)
    out.mkdir(parents=True, exist_ok=True)
    path = save_audio(out / "speech.wav", audio.reshape(1, -1), rate)
    return SpeechRun(path=path, sample_rate=int(rate), duration_s=audio.shape[-1] / rate)
