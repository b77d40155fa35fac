"""``sds-audio ui``: its options, its refusals, and the lazy gradio import (no server started)."""

from __future__ import annotations

import sys

import pytest

from sds_audio.cli import build_parser, main
from sds_audio.errors import SDSAudioError
from sds_audio.ui import require_gradio


def test_defaults_serve_this_machine_only():
    args = build_parser().parse_args(["ui"])
    assert (args.host, args.port, args.prior, args.device) == ("127.0.0.1", None, "embedded", None)
    assert args.max_upload_mb == 50.0 and args.workdir is None and args.no_judge is False
    args = build_parser().parse_args(["ui", "--host", "0.0.0.0", "--port", "8123", "--prior", "/p", "--no-judge"])
    assert (args.host, args.port, args.prior, args.no_judge) == ("0.0.0.0", 8123, "/p", True)


def test_missing_gradio_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)             # import gradio -> ImportError
    with pytest.raises(SDSAudioError, match=r"pip install 'sds-audio\[ui\]'"):
        require_gradio()
    assert main(["ui"]) == 1
    assert capsys.readouterr().err.strip() == ("sds-audio: error: the studio needs gradio: "
                                               "pip install 'sds-audio[ui]'")


def test_bad_options_are_refused_before_serving(capsys, tmp_path, monkeypatch):
    pytest.importorskip("gradio", reason="the ui extra (gradio) is not installed")
    import sds_audio.ui.app

    def launch(*args, **kwargs):
        raise AssertionError("a bad option must be refused before the server starts")

    monkeypatch.setattr(sds_audio.ui.app, "launch", launch)
    assert main(["ui", "--max-upload-mb", "0"]) == 2
    assert "--max-upload-mb must be between 0 and 10000" in capsys.readouterr().err
    assert main(["ui", "--port", "70000"]) == 2
    assert "--port must be between 1 and 65535, got 70000" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["ui", "--workdir", str(tmp_path / "file")]) == 2
    assert "is a file; give a directory" in capsys.readouterr().err


def test_gradio_analytics_are_switched_off(monkeypatch):
    pytest.importorskip("gradio", reason="the ui extra (gradio) is not installed")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "True")
    gradio = require_gradio()
    import os

    from gradio import analytics

    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and not analytics.analytics_enabled()
    assert gradio.Blocks(analytics_enabled=None).analytics_enabled is False


def test_status_text_shows_prompts_and_messages_as_typed():
    from sds_audio.ui.app import error_text, plain

    assert plain("kick_drum *loud* [1-2] `x` #3") == r"kick\_drum \*loud\* \[1\-2\] \`x\` \#3"
    assert error_text("a_b") == r"**error:** a\_b"
