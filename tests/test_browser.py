"""A report.html opened in a real browser (headless Chromium) plays every clip, with a clean console.

Skipped, saying why, when no Chromium is installed (.ci/run installs it when it can).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from test_errors_report import shared_report

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "browser_check.py"


def _browser_check():
    spec = importlib.util.spec_from_file_location("browser_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_audio_player_loads_and_the_console_is_clean(tmp_path_factory):
    check = _browser_check()
    binary = check.find_chromium()
    if binary is None:
        pytest.skip("no chromium on the PATH: the report page is not tested in a browser (apt-get install chromium)")
    out, _, _ = shared_report(tmp_path_factory)
    page = out / "report.html"
    result = check.check_page(page, binary=binary)
    audio = result["audio"]
    assert audio and len(audio) == page.read_text().count("<audio")
    assert all(a["readyState"] >= 1 and a["duration"] > 0 and a["error"] is None for a in audio), audio
    assert result["console_errors"] == []
