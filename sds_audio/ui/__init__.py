"""The studio: a gradio web UI over the library (``sds-audio ui``; optional extra ``ui``).

* :mod:`~sds_audio.ui.queue`: the background job queue (one worker thread, cancellable jobs);
* :mod:`~sds_audio.ui.runs`: what each tab does, as plain functions on a job (no gradio);
* :mod:`~sds_audio.ui.figures`: live curves and spectrograms (matplotlib);
* :mod:`~sds_audio.ui.exports`: the SFZ instrument of a preset, zipped for download;
* :mod:`~sds_audio.ui.app`: the gradio page and :func:`~sds_audio.ui.app.launch`.

gradio is imported only by :mod:`~sds_audio.ui.app`, through :func:`require_gradio`, which
switches gradio's analytics and version check off before the import (the studio runs
offline: no request leaves the machine, the page's fonts and scripts come from the
installed gradio package).
"""

from __future__ import annotations

import os
from types import ModuleType

from ..errors import SDSAudioError


def require_gradio() -> ModuleType:
    """Import gradio with its analytics off; an :class:`SDSAudioError` naming the extra when absent."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"     # also disables gradio's PyPI version check
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import gradio
    except ImportError as exc:
        raise SDSAudioError("the studio needs gradio: pip install 'sds-audio[ui]'", exit_code=1) from exc
    return gradio
