"""The studio's page: gradio Blocks with one tab per task, and :func:`launch`.

Tabs: *prompt to preset* (live curves and the current render while it runs; every
restart, before / after and ``report.png`` when it ends; downloads), *separate*,
*generate*, *render a preset*, and *speech* when :mod:`sds_audio.tts` provides
``load_tts``. A button submits a job to the :class:`~sds_audio.ui.queue.JobQueue`
and its handler (a generator) follows the job, yielding page updates as the
progress changes; *cancel* cancels the job by id. A bad input never reaches a
model: it comes back as an error line in the tab's status box and the page keeps
working. Element ids (``preset-prompt``, ``preset-run``, ...) are stable for the
browser tests.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import SDSAudioError
from . import require_gradio, runs
from .figures import progress_figure, spectrogram_figure
from .queue import CANCELLED, DONE, QUEUED, Job, JobQueue

POLL_S = 0.25           # how often a handler looks at its job
FIGURE_EVERY_S = 1.0    # the live curves are redrawn at most this often

CSS = ".sds-status p { margin: 0; }"


def plain(text: str) -> str:
    """``text`` with Markdown's special characters escaped (a prompt or a message shows as typed)."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~-])", r"\\\1", text)


def error_text(message: str) -> str:
    return f"**error:** {plain(message)}"


def _status_line(job: Job, status: str, progress: dict[str, Any], job_queue: JobQueue, what: str) -> str:
    if status == QUEUED:
        ahead = job_queue.position(job)
        return f"{what}: queued, {ahead} job{'s' if ahead != 1 else ''} ahead"
    step, steps, phase = progress.get("step"), progress.get("steps"), progress.get("phase", "running")
    text = f"{what}: {phase}"
    if steps and step:
        text += f", step {step} / {steps}"
    losses = progress.get("losses")
    if losses:
        text += f", SDS loss {min(losses[-1]):.4g}"
    if progress.get("loss_rec"):
        text += f", reconstruction loss {progress['loss_rec'][-1]:.4g}"
    return text


def _end_line(job: Job, what: str) -> str:
    if job.status == DONE:
        return f"{what}: done"
    if job.status == CANCELLED:
        run_dir = job.progress.get("run_dir")
        step = job.progress.get("step")
        text = f"{what}: cancelled" + (f" after step {step}" if step else "")
        if run_dir and Path(run_dir, "checkpoint.pt").is_file():
            text += f"; `sds-audio {job.kind} --resume {run_dir}` continues it"
        return text
    return error_text(job.error or "the job failed")


def _follow(job: Job, job_queue: JobQueue) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(status, progress)`` each time either changes, until the job is finished (last yield included).

    When the page stops listening (the handler's generator is closed: the tab was closed or
    reloaded), the job is cancelled: nobody could see its result.
    """
    seen = None
    try:
        while True:
            status, progress = job.snapshot()
            key = (status, progress.get("step"), progress.get("phase"),
                   job_queue.position(job) if status == QUEUED else None)
            if key != seen:
                seen = key
                yield status, progress
            if job.finished:
                return
            time.sleep(POLL_S)
    except GeneratorExit:
        job.cancel()
        raise


def _submit(job_queue: JobQueue, kind: str, work: Callable[[Job], Any], check: Callable[[], Any]) -> Job:
    """Run the cheap input checks here (bad input never waits in the queue), then queue the work."""
    check()
    return job_queue.submit(kind, work)


# ---------------------------------------------------------------------------------------- tabs
def _preset_tab(gr, settings: runs.StudioSettings, job_queue: JobQueue) -> None:
    types = runs.synth_types()
    with gr.Row():
        with gr.Column(scale=2):
            synth = gr.Radio(types, value=types[0], label="synth", elem_id="preset-synth")
            prompt = gr.Textbox(label="prompt", placeholder="kick drum, bass, reverb", elem_id="preset-prompt")
            with gr.Accordion("settings", open=False, elem_id="preset-settings"):
                steps = gr.Slider(1, 1000, value=150, step=1, label="steps", elem_id="preset-steps")
                restarts = gr.Slider(1, runs.MAX_RESTARTS, value=4, step=1, label="restarts",
                                     elem_id="preset-restarts")
                duration = gr.Slider(0.1, 10.0, value=1.5, step=0.05, label="duration (s)",
                                     elem_id="preset-duration")
                seed = gr.Number(0, precision=0, label="seed", elem_id="preset-seed")
                cfg = gr.Slider(1.0, 10.0, value=5.0, step=0.5, label="guidance scale", elem_id="preset-cfg")
            with gr.Row():
                run = gr.Button("make preset", variant="primary", elem_id="preset-run")
                cancel = gr.Button("cancel", elem_id="preset-cancel")
            status = gr.Markdown("", elem_id="preset-status", elem_classes="sds-status")
        with gr.Column(scale=3):
            curves = gr.Plot(label="progress", elem_id="preset-curves", format="png")
            live = gr.Audio(label="current render", interactive=False, elem_id="preset-live")
    with gr.Row():
        before = gr.Audio(label="before (random start)", interactive=False, elem_id="preset-before")
        after = gr.Audio(label="after (kept restart)", interactive=False, elem_id="preset-after")
        downloads = gr.File(label="downloads", file_count="multiple", interactive=False, elem_id="preset-downloads")
    report = gr.Image(label="before / after spectrograms, loss and judge curves (report.png)", type="filepath",
                      interactive=False, elem_id="preset-report")
    with gr.Row():
        restart_players = [gr.Audio(label=f"restart {k}", interactive=False, visible=False,
                                    elem_id=f"preset-restart-{k}") for k in range(runs.MAX_RESTARTS)]
    job_id = gr.State(None)
    outputs = [status, curves, live, before, after, downloads, report, job_id, *restart_players]

    def on_run(synth_type, text, n_steps, n_restarts, duration_s, seed_value, guidance):
        cleared = {before: None, after: None, downloads: None, report: None, live: None, curves: None,
                   **{p: gr.update(value=None, visible=False) for p in restart_players}}
        what = plain(f"{synth_type}, {text.strip()[:60]!r}" if isinstance(text, str) else str(synth_type))
        try:
            job = _submit(job_queue, synth_type,
                          lambda j: runs.preset_run(j, settings, synth_type, text, steps=n_steps, restarts=n_restarts,
                                                    duration_s=duration_s, seed=int(seed_value or 0),
                                                    guidance_scale=guidance),
                          lambda: runs.check_prompt(text))
        except SDSAudioError as exc:
            yield {status: error_text(str(exc)), job_id: None, **cleared}
            return
        yield {job_id: job.id, **cleared}
        drawn_s, drawn_step, played = 0.0, None, None
        for state, progress in _follow(job, job_queue):
            update: dict = {status: _status_line(job, state, progress, job_queue, what)}
            step = progress.get("step")
            if progress.get("losses") and step != drawn_step and (time.monotonic() - drawn_s >= FIGURE_EVERY_S
                                                                  or job.finished):
                update[curves] = progress_figure(range(1, len(progress["losses"]) + 1), progress["losses"],
                                                 progress.get("judge", ()))
                drawn_s, drawn_step = time.monotonic(), step
            preview = progress.get("preview")
            if preview is not None and preview[2] != played:
                rate, audio, at_step, restart = preview
                update[live] = gr.update(value=(rate, audio), label=f"current render: restart {restart}, "
                                                                    f"step {at_step}")
                played = at_step
            yield update
        update = {status: _end_line(job, what)}
        if job.status == DONE:
            result: runs.PresetRun = job.result
            judge = ""
            if result.record.get("judge_final"):
                best = result.record["best_restart"]
                judge = (f", judge score {result.record['judge_initial'][best]:.3f} -> "
                         f"{result.record['judge_final'][best]:.3f}")
            notes = "".join(f"; {plain(note)}" for note in result.notes)
            update.update({status: f"{what}: done in {result.record['timings_s']['optimise']:.1f} s{judge}; "
                                   f"files in `{result.run_dir}`{notes}",
                           before: str(result.run_dir / "initial.wav"), after: str(result.run_dir / "sound.wav"),
                           downloads: [str(p) for p in result.downloads],
                           report: str(result.run_dir / "report.png")})
            for k, player in enumerate(restart_players):
                if k < len(result.restarts):
                    label, rate, audio = result.restarts[k]
                    update[player] = gr.update(value=(rate, audio), label=label, visible=True)
                else:
                    update[player] = gr.update(value=None, visible=False)
        yield update

    run.click(on_run, [synth, prompt, steps, restarts, duration, seed, cfg], outputs, concurrency_limit=None)
    cancel.click(lambda i: _cancel(job_queue, i), job_id, status, concurrency_limit=None)


def _cancel(job_queue: JobQueue, job_id: int | None) -> Any:
    import gradio as gr

    if job_queue.cancel(job_id):
        return "cancelling: the run stops after its current step"
    return gr.update()


def _separate_tab(gr, settings: runs.StudioSettings, job_queue: JobQueue) -> None:
    with gr.Row():
        with gr.Column(scale=2):
            mixture = gr.File(label="mixture (WAV, FLAC, OGG, ...)", file_types=["audio"], elem_id="separate-mixture")
            prompts = gr.Textbox(label="one prompt per source, one per line", lines=3,
                                 placeholder="dog bark\nrain", elem_id="separate-prompts")
            with gr.Accordion("settings", open=False, elem_id="separate-settings"):
                steps = gr.Slider(0, 1000, value=100, step=1, label="steps per window", elem_id="separate-steps")
                seed = gr.Number(0, precision=0, label="seed", elem_id="separate-seed")
            with gr.Row():
                run = gr.Button("separate", variant="primary", elem_id="separate-run")
                cancel = gr.Button("cancel", elem_id="separate-cancel")
            status = gr.Markdown("", elem_id="separate-status", elem_classes="sds-status")
        with gr.Column(scale=3):
            source_players = [gr.Audio(label=f"source {k + 1}", interactive=False, visible=False,
                                       elem_id=f"separate-source-{k}") for k in range(runs.MAX_SOURCES)]
            downloads = gr.File(label="sources", file_count="multiple", interactive=False,
                                elem_id="separate-downloads")
    report = gr.Image(label="mixture and source spectrograms, loss curves (report.png)", type="filepath",
                      interactive=False, elem_id="separate-report")
    job_id = gr.State(None)

    def on_run(upload, text, n_steps, seed_value):
        cleared = {downloads: None, report: None, **{p: gr.update(value=None, visible=False) for p in source_players}}

        def check() -> None:
            runs.parse_prompts(text)
            runs.check_upload(upload, settings, "a mixture")

        try:
            job = _submit(job_queue, "separate",
                          lambda j: runs.separation_run(j, settings, upload, text, steps=n_steps,
                                                        seed=int(seed_value or 0)), check)
        except SDSAudioError as exc:
            yield {status: error_text(str(exc)), job_id: None, **cleared}
            return
        yield {job_id: job.id, **cleared}
        for state, progress in _follow(job, job_queue):
            yield {status: _status_line(job, state, progress, job_queue, "separation")}
        update = {status: _end_line(job, "separation")}
        if job.status == DONE:
            result: runs.SeparationRun = job.result
            update.update({status: f"separation: done in {result.record['timings_s']['optimise']:.1f} s; "
                                   f"files in `{result.run_dir}`",
                           downloads: [str(p) for _, p in result.sources], report: str(result.report)})
            for k, player in enumerate(source_players):
                if k < len(result.sources):
                    prompt, path = result.sources[k]
                    update[player] = gr.update(value=str(path), label=prompt, visible=True)
                else:
                    update[player] = gr.update(value=None, visible=False)
        yield update

    run.click(on_run, [mixture, prompts, steps, seed], [status, downloads, report, job_id, *source_players],
              concurrency_limit=None)
    cancel.click(lambda i: _cancel(job_queue, i), job_id, status, concurrency_limit=None)


def _generate_tab(gr, settings: runs.StudioSettings, job_queue: JobQueue) -> None:
    source = runs.generation_prior_source(settings)
    gr.Markdown(f"Text to audio with the embedded flow-matching prior (`{source}`).")
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(label="prompt", placeholder="hitting a pot with a wooden spoon",
                                elem_id="generate-prompt")
            with gr.Accordion("settings", open=False, elem_id="generate-settings"):
                seconds = gr.Number(None, label="seconds (empty: the model's window)", elem_id="generate-seconds")
                steps = gr.Slider(1, 128, value=32, step=1, label="sampler steps", elem_id="generate-steps")
                cfg = gr.Slider(1.0, 10.0, value=4.0, step=0.5, label="guidance scale", elem_id="generate-cfg")
                seed = gr.Number(0, precision=0, label="seed", elem_id="generate-seed")
            with gr.Row():
                run = gr.Button("generate", variant="primary", elem_id="generate-run")
                cancel = gr.Button("cancel", elem_id="generate-cancel")
            status = gr.Markdown("", elem_id="generate-status", elem_classes="sds-status")
        with gr.Column(scale=3):
            audio = gr.Audio(label="generated", interactive=False, elem_id="generate-audio")
            download = gr.File(label="download", interactive=False, elem_id="generate-download")
    job_id = gr.State(None)

    def on_run(text, n_seconds, n_steps, guidance, seed_value):
        try:
            job = _submit(job_queue, "generate",
                          lambda j: runs.generate_run(j, settings, text, seconds=n_seconds or None, steps=n_steps,
                                                      cfg=guidance, seed=int(seed_value or 0)),
                          lambda: runs.check_prompt(text))
        except SDSAudioError as exc:
            yield {status: error_text(str(exc)), job_id: None, audio: None, download: None}
            return
        yield {job_id: job.id, audio: None, download: None}
        for state, progress in _follow(job, job_queue):
            yield {status: _status_line(job, state, progress, job_queue, "generate")}
        update = {status: _end_line(job, "generate")}
        if job.status == DONE:
            result: runs.GenerateRun = job.result
            gain = f" (scaled by {result.gain_db:.1f} dB to avoid clipping)" if result.gain_db else ""
            update.update({status: f"generate: done{gain}; `{result.path}`", audio: str(result.path),
                           download: str(result.path)})
        yield update

    run.click(on_run, [prompt, seconds, steps, cfg, seed], [status, audio, download, job_id], concurrency_limit=None)
    cancel.click(lambda i: _cancel(job_queue, i), job_id, status, concurrency_limit=None)


def _render_tab(gr, settings: runs.StudioSettings, job_queue: JobQueue) -> None:
    with gr.Row():
        with gr.Column(scale=2):
            preset = gr.File(label="preset (preset.json)", file_types=[".json"], elem_id="render-preset")
            duration = gr.Number(None, label="duration (s; empty: the preset's)", elem_id="render-duration")
            f0 = gr.Number(None, label="pitch f0 (Hz; FM presets; empty: the preset's)", elem_id="render-f0")
            run = gr.Button("render", variant="primary", elem_id="render-run")
            status = gr.Markdown("", elem_id="render-status", elem_classes="sds-status")
        with gr.Column(scale=3):
            audio = gr.Audio(label="render", interactive=False, elem_id="render-audio")
            figure = gr.Plot(label="spectrogram", elem_id="render-spectrogram", format="png")
            download = gr.File(label="download", interactive=False, elem_id="render-download")

    def on_run(upload, duration_s, f0_hz):
        try:
            job = _submit(job_queue, "render",
                          lambda j: runs.render_run(j, settings, upload, duration_s=duration_s, f0_hz=f0_hz),
                          lambda: runs.check_upload(upload, settings, "a preset file (preset.json)"))
        except SDSAudioError as exc:
            return error_text(str(exc)), None, None, None
        job.wait()
        if job.status != DONE:
            return _end_line(job, "render"), None, None, None
        result: runs.RenderRun = job.result
        return (f"render: {result.summary}", str(result.path),
                spectrogram_figure([("render", result.audio)], result.sample_rate), str(result.path))

    run.click(on_run, [preset, duration, f0], [status, audio, figure, download], concurrency_limit=None)


def _speech_tab(gr, settings: runs.StudioSettings, job_queue: JobQueue, speech: Callable[..., Any]) -> None:
    with gr.Row():
        with gr.Column(scale=2):
            text = gr.Textbox(label="text", lines=3, placeholder="The sound of a wooden spoon on a pot.",
                              elem_id="speech-text")
            voice = gr.File(label="voice (optional: 2-10 s of the speaker)", file_types=["audio"],
                            elem_id="speech-voice")
            voice_text = gr.Textbox(label="what the voice recording says (optional: adapts the model to that "
                                          "voice first, about 10 s on one CPU thread; carries voices unlike the "
                                          "built-in ones)", lines=1, elem_id="speech-voice-text")
            with gr.Accordion("settings", open=False, elem_id="speech-settings"):
                steps = gr.Slider(1, 64, value=16, step=1, label="steps", elem_id="speech-steps")
                speed = gr.Slider(0.5, 2.0, value=1.0, step=0.05, label="speed", elem_id="speech-speed")
                seed = gr.Number(0, precision=0, label="seed", elem_id="speech-seed")
            with gr.Row():
                run = gr.Button("speak", variant="primary", elem_id="speech-run")
                cancel = gr.Button("cancel", elem_id="speech-cancel")
            status = gr.Markdown("", elem_id="speech-status", elem_classes="sds-status")
        with gr.Column(scale=3):
            audio = gr.Audio(label="speech", interactive=False, elem_id="speech-audio")
            download = gr.File(label="download", interactive=False, elem_id="speech-download")
    job_id = gr.State(None)

    def on_run(words, reference, transcript, n_steps, rate, seed_value):
        def check() -> None:
            runs.check_text(words)
            if reference:
                runs.check_upload(reference, settings, "a voice recording")
            runs.check_voice_text(reference, transcript)

        try:
            job = _submit(job_queue, "speech",
                          lambda j: speech(j, settings, words, voice=reference, steps=n_steps, speed=rate,
                                           seed=int(seed_value or 0), voice_text=transcript or ""), check)
        except SDSAudioError as exc:
            yield {status: error_text(str(exc)), job_id: None, audio: None, download: None}
            return
        yield {job_id: job.id, audio: None, download: None}
        for state, progress in _follow(job, job_queue):
            yield {status: _status_line(job, state, progress, job_queue, "speech")}
        update = {status: _end_line(job, "speech")}
        if job.status == DONE:
            result: runs.SpeechRun = job.result
            update.update({status: f"speech: done, {result.duration_s:.1f} s; `{result.path}`",
                           audio: str(result.path), download: str(result.path)})
        yield update

    run.click(on_run, [text, voice, voice_text, steps, speed, seed], [status, audio, download, job_id],
              concurrency_limit=None)
    cancel.click(lambda i: _cancel(job_queue, i), job_id, status, concurrency_limit=None)


# ---------------------------------------------------------------------------------------- the page
def build_app(settings: runs.StudioSettings, job_queue: JobQueue | None = None, quick_queue: JobQueue | None = None):
    """The studio's ``gr.Blocks``.

    Args:
        settings: prior, device, work directory, upload limit.
        job_queue: runs the long jobs (optimisations, generation); default: a new queue.
        quick_queue: runs preset renders, so that they do not wait behind an optimisation.
    """
    gr = require_gradio()
    Path(settings.workdir).mkdir(parents=True, exist_ok=True)
    job_queue = job_queue or JobQueue()
    quick_queue = quick_queue or JobQueue()
    speech = runs.speech_runner()
    # gradio keeps a copy of every file it serves; drop the copies older than a day, hourly
    with gr.Blocks(title="sds-audio studio", analytics_enabled=False, delete_cache=(3600, 86400)) as app:
        gr.Markdown("## sds-audio studio\nType a sound, listen while it is found, download the preset. "
                    f"Prior: `{settings.prior}`.")
        with gr.Tabs():
            with gr.Tab("prompt to preset", id="preset"):
                _preset_tab(gr, settings, job_queue)
            with gr.Tab("separate", id="separate"):
                _separate_tab(gr, settings, job_queue)
            with gr.Tab("generate", id="generate"):
                _generate_tab(gr, settings, job_queue)
            with gr.Tab("render a preset", id="render"):
                _render_tab(gr, settings, quick_queue)
            if speech is not None:
                with gr.Tab("speech", id="speech"):
                    _speech_tab(gr, settings, job_queue, speech)
    app.studio_queues = (job_queue, quick_queue)
    return app


def launch(settings: runs.StudioSettings, host: str = "127.0.0.1", port: int | None = None, *,
           block: bool = True, quiet: bool = False):
    """Serve the studio on ``host:port`` (gradio's default port 7860 when None); returns ``(app, url)``.

    With ``block=False`` the server runs in the background (tests); call ``app.close()`` to stop it.
    Only ``settings.workdir`` is served besides gradio's own files; uploads over
    ``settings.max_upload_mb`` are refused by the server before they are stored.
    """
    gr = require_gradio()
    app = build_app(settings)
    app.queue(default_concurrency_limit=None)
    try:
        _, url, _ = app.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=True,
                               quiet=True, inbrowser=False, ssr_mode=False, pwa=False, mcp_server=False,
                               allowed_paths=[str(Path(settings.workdir).resolve())],
                               max_file_size=settings.max_upload_bytes, footer_links=["api", "settings"],
                               theme=gr.themes.Default(), css=CSS, show_error=True)
    except OSError as exc:
        raise SDSAudioError(f"cannot serve the studio on {host}:{port}; pick another --port ({exc})",
                            exit_code=1) from exc
    if not quiet:
        print(f"sds-audio ui: open {url} in a browser", flush=True)
    if block:
        try:
            app.block_thread()
        finally:
            for q in app.studio_queues:
                q.close(0.0)
    return app, url
