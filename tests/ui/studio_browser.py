"""Driving the studio in a real browser: Debian's chromium, headless, through playwright.

Playwright's own browser download cannot work offline, so :func:`open_browser` points
playwright at the system chromium (``executable_path``), with the flags that keep it
from reaching the network on its own (component updates, sync, safe-browsing lists).
:func:`browser_missing` says why the browser tests must skip (None when they can run).
Used by ``test_browser.py`` and by ``screenshot.py``.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for module, extra in (("gradio", "the extra ui: pip install 'sds-audio[ui]'"),
                          ("playwright", "playwright: pip install 'sds-audio[dev]'")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed ({extra})"
    if chromium_path() is None:
        return "no chromium on PATH (apt-get install chromium)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_browser(playwright):
    """A headless chromium from ``playwright.chromium`` (the system binary)."""
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
