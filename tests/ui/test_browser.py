"""The studio in a real browser (headless chromium through playwright), on a tiny random prior.

One studio and one browser serve the module; each test opens its own page (its own
session). Skips, saying why, without gradio, playwright or chromium.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from studio_browser import browser_missing, free_port, open_browser
from tiny_embedded import write_prior_dir

_missing = browser_missing()
pytestmark = [pytest.mark.skipif(_missing is not None, reason=f"browser tests need it: {_missing}"),
              pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),   # gradio's pandas
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

RATE = 22050
WAIT_MS = 60_000
UPLOAD_LIMIT_MB = 0.5


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    from sds_audio.ui.app import launch
    from sds_audio.ui.runs import StudioSettings

    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        settings = StudioSettings(workdir=tmp_path_factory.mktemp("studio"),
                                  prior=str(write_prior_dir(tmp_path_factory.mktemp("tiny_prior"))), device="cpu",
                                  judge=False, max_upload_mb=UPLOAD_LIMIT_MB)
        app, url = launch(settings, port=free_port(), block=False, quiet=True)
        assert url.startswith("http://127.0.0.1:")
        yield url, settings, app
        app.close()
        for q in app.studio_queues:
            q.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = open_browser(p)
        yield b
        b.close()


@pytest.fixture
def page(browser, studio):
    url = studio[0]
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.requests = []
    page.on("request", lambda r: page.requests.append(r.url))
    page.goto(url)
    page.locator("#preset-prompt textarea").wait_for(timeout=WAIT_MS)
    yield page
    context.close()


def _set(page, elem_id: str, value) -> None:
    """Type ``value`` into a number box; for a slider, retype until its range input shows the value (the
    slider can miss a value typed while its accordion is still opening)."""
    box = page.locator(f"#{elem_id} input[type=number]")
    slider = page.locator(f"#{elem_id} input[type=range]")
    for _ in range(40):
        box.fill(str(value))
        box.press("Enter")
        box.blur()
        if not slider.count() or float(slider.input_value()) == float(value):
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"#{elem_id} did not take the value {value}: it shows {slider.input_value()}")


def _status(page, tab: str, pattern: str):
    locator = page.locator(f"#{tab}-status").get_by_text(re.compile(pattern))
    locator.wait_for(timeout=WAIT_MS)
    return page.locator(f"#{tab}-status").inner_text()


def _upload(page, elem_id: str, path: Path) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))
    page.locator(f"#{elem_id}").get_by_text(path.stem).first.wait_for(timeout=WAIT_MS)


def _wav(path: Path, audio: np.ndarray) -> Path:
    sf.write(str(path), audio.astype(np.float32), RATE, subtype="PCM_16")
    return path


def test_prompt_to_preset_plays_and_downloads_a_preset_that_loads(page, studio, tmp_path):
    from sds_audio.presets import load_preset

    page.locator("#preset-prompt textarea").fill("kick drum, bass")
    page.locator("#preset-settings").get_by_text("settings").click()
    for name, value in (("steps", 4), ("restarts", 2), ("duration", 0.3), ("seed", 5)):
        _set(page, f"preset-{name}", value)
    page.locator("#preset-run").click()
    text = _status(page, "preset", r"done in|error")
    assert re.match(r"fm, 'kick drum, bass': done in [\d.]+ s; files in", text), text
    # the players: the kept sound, the last live render, every restart
    after = page.locator("#preset-after a[download]")
    after.wait_for(timeout=WAIT_MS)
    assert after.get_attribute("download") == "sound.wav"
    assert re.search(r"current render: restart [01], step 4", page.locator("#preset-live").inner_text())
    labels = [page.locator(f"#preset-restart-{k}").inner_text() for k in range(2)]
    assert sum("(kept)" in label for label in labels) == 1
    assert not page.locator("#preset-restart-2").is_visible()
    assert page.locator("#preset-curves img").count() == 1 and page.locator("#preset-report img").count() == 1
    # download the preset through the page and load it
    with page.expect_download() as download:
        page.locator("#preset-downloads a[download='preset.json']").click()
    saved = tmp_path / "preset.json"
    download.value.save_as(saved)
    preset = load_preset(saved)
    assert preset.synth.synth_type == "fm" and preset.duration_s == pytest.approx(0.3)
    assert preset.provenance["prompt"] == "kick drum, bass" and preset.provenance["steps"] == 4
    assert preset.provenance["seed"] == 5
    # the sound the page plays is the preset's sound
    with urllib.request.urlopen(after.get_attribute("href")) as response:
        (tmp_path / "sound.wav").write_bytes(response.read())
    heard, rate = sf.read(str(tmp_path / "sound.wav"), dtype="float32")
    assert rate == RATE and np.abs(heard - preset.render()[0, 0].clamp(-1, 1).numpy()).max() < 2e-4
    # offline: every request the page made went to the studio itself
    host = studio[0].rstrip("/")
    assert page.requests and [u for u in page.requests if not u.startswith(host) and not u.startswith("data:")
                              and not u.startswith("blob:")] == []


def test_empty_prompt_shows_an_error_and_the_page_keeps_working(page):
    page.locator("#preset-prompt textarea").fill("   ")
    page.locator("#preset-run").click()
    assert "error: the prompt is empty" in _status(page, "preset", "error")
    page.get_by_role("tab", name="generate").click()
    page.locator("#generate-prompt textarea").fill("rain on a tin roof")
    page.locator("#generate-settings").get_by_text("settings").click()
    _set(page, "generate-seconds", 0.25)
    _set(page, "generate-steps", 2)
    page.locator("#generate-run").click()
    assert "generate: done" in _status(page, "generate", r"done|error")
    page.locator("#generate-audio a[download]").wait_for(timeout=WAIT_MS)


def test_unreadable_upload_shows_an_error(page, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF but not really a wave file" * 20)
    page.get_by_role("tab", name="separate").click()
    _upload(page, "separate-mixture", broken)
    page.locator("#separate-prompts textarea").fill("dog bark\nrain")
    page.locator("#separate-run").click()
    assert re.search(r"error: cannot read audio file .*broken\.wav", _status(page, "separate", "error"))


def test_silent_upload_shows_an_error(page, tmp_path):
    silent = _wav(tmp_path / "silence.wav", np.zeros(RATE // 2))
    page.get_by_role("tab", name="separate").click()
    _upload(page, "separate-mixture", silent)
    page.locator("#separate-prompts textarea").fill("dog bark\nrain")
    page.locator("#separate-run").click()
    assert re.search(r"error: audio file .*silence\.wav is all silence", _status(page, "separate", "error"))


def test_oversize_upload_is_refused_and_a_good_one_then_separates(page, tmp_path):
    rng = np.random.default_rng(0)
    big = tmp_path / "huge.wav"
    big.write_bytes(b"\0" * int(UPLOAD_LIMIT_MB * 1e6 * 1.2))
    page.get_by_role("tab", name="separate").click()
    page.locator("#separate-mixture input[type=file]").set_input_files(str(big))
    page.get_by_text(re.compile(r"exceed the maximum allowed size.*huge\.wav")).wait_for(timeout=WAIT_MS)
    # the page still works: a file under the limit separates, one player and one download per prompt
    page.reload()
    page.get_by_role("tab", name="separate").click()
    t = np.arange(RATE // 2) / RATE
    good = _wav(tmp_path / "mix.wav", 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size))
    _upload(page, "separate-mixture", good)
    page.locator("#separate-prompts textarea").fill("a low hum\nhiss")
    page.locator("#separate-settings").get_by_text("settings").click()
    _set(page, "separate-steps", 1)
    page.locator("#separate-run").click()
    assert "separation: done" in _status(page, "separate", r"done|error")
    assert [page.locator(f"#separate-source-{k}").is_visible() for k in range(4)] == [True, True, False, False]
    assert "a low hum" in page.locator("#separate-source-0").inner_text()
    names = [a.get_attribute("download") for a in page.locator("#separate-downloads a[download]").all()]
    assert names == ["00_a-low-hum.wav", "01_hiss.wav"]


def test_cancel_stops_a_running_job(page, studio):
    page.locator("#preset-prompt textarea").fill("long drone")
    page.locator("#preset-settings").get_by_text("settings").click()
    for name, value in (("steps", 1000), ("restarts", 1), ("duration", 0.3)):
        _set(page, f"preset-{name}", value)
    page.locator("#preset-run").click()
    _status(page, "preset", r"step \d+ / 1000")
    page.locator("#preset-cancel").click()
    text = _status(page, "preset", "cancelled")
    match = re.search(r"cancelled after step (\d+); sds-audio fm --resume (\S+) continues it", text)
    assert match, text
    assert int(match.group(1)) < 1000 and (Path(match.group(2)) / "checkpoint.pt").is_file()


def test_render_tab_plays_an_uploaded_preset(page, tmp_path):
    import torch

    from sds_audio.presets import save_preset
    from sds_audio.synths import ImpactSynth

    synth = ImpactSynth(sample_rate=RATE, channels=1)
    synth.randomize_(torch.Generator().manual_seed(1))
    path = save_preset(tmp_path / "bell.json", synth, duration_s=0.4, provenance={"prompt": "small bell"})
    page.get_by_role("tab", name="render a preset").click()
    _upload(page, "render-preset", path)
    page.locator("#render-run").click()
    text = _status(page, "render", r"render:|error")
    assert "ImpactSynth, 0.40 s at 22050 Hz, made for 'small bell'" in text
    assert page.locator("#render-audio a[download]").get_attribute("download") == "sound.wav"
    page.wait_for_selector("#render-spectrogram img", timeout=30_000)   # the image can land after the text
    assert page.locator("#render-spectrogram img").count() == 1


def test_closing_the_page_cancels_its_job(page, studio):
    job_queue = studio[2].studio_queues[0]
    page.locator("#preset-prompt textarea").fill("endless drone")
    page.locator("#preset-settings").get_by_text("settings").click()
    for name, value in (("steps", 1000), ("restarts", 1), ("duration", 0.3)):
        _set(page, f"preset-{name}", value)
    page.locator("#preset-run").click()
    _status(page, "preset", r"step \d+ / 1000")
    job = job_queue.jobs()[-1]
    assert job.progress["run_dir"].endswith("endless-drone") and not job.finished
    page.close()
    assert job.wait(30.0) and job.status == "cancelled" and job.progress["step"] < 1000
