"""Screenshot of the studio after a prompt-to-preset run, for the README (not a test).

    python tests/ui/screenshot.py docs/studio.png [--prompt "kick drum, bass, reverb"] [--steps 150]

Starts the studio on the shipped embedded prior (judge on, CPU unless ``--device``), types the
prompt in a headless chromium (see ``studio_browser.py``), runs it with the page's default settings
except ``--steps``, waits for the result and saves a full-page PNG.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from studio_browser import browser_missing, free_port, open_browser  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="PNG to write")
    parser.add_argument("--prompt", default="kick drum, bass, reverb")
    parser.add_argument("--synth", default="fm")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args()
    missing = browser_missing()
    if missing:
        sys.exit(f"screenshot: {missing}")

    import torch
    from playwright.sync_api import sync_playwright

    from sds_audio.ui.app import launch
    from sds_audio.ui.runs import StudioSettings

    torch.set_num_threads(1)
    settings = StudioSettings(workdir=Path(tempfile.mkdtemp(prefix="sds-audio-screenshot-")), device=args.device)
    app, url = launch(settings, port=free_port(), block=False, quiet=True)
    t0 = time.perf_counter()
    with sync_playwright() as p:
        browser = open_browser(p)
        page = browser.new_page(viewport={"width": args.width, "height": 900})
        page.goto(url)
        page.locator(f"#preset-synth label:has-text('{args.synth}')").click()
        page.locator("#preset-prompt textarea").fill(args.prompt)
        page.locator("#preset-settings").get_by_text("settings").click()
        box = page.locator("#preset-steps input[type=number]")
        box.fill(str(args.steps))
        box.press("Enter")
        page.locator("#preset-run").click()
        page.locator("#preset-status").get_by_text(re.compile("done in|error")).wait_for(timeout=3_600_000)
        page.locator("#preset-report img").wait_for(timeout=60_000)
        page.locator("#preset-settings").get_by_text("settings").click()      # fold the settings away
        time.sleep(2.0)                                                       # let the waveforms draw
        page.screenshot(path=args.output, full_page=True)
        status = page.locator("#preset-status").inner_text()
        browser.close()
    app.close()
    print(f"wrote {args.output} ({time.perf_counter() - t0:.0f} s): {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
