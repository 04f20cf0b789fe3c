"""The acceptance check of emosteer.report: the page of the fake run (tests/test_report.py)
opens in headless Chromium, and every plot and audio element loads with no console error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_report import MODES, SWEEP_DELTAS, TONE_S, build_run_dir

from emosteer.report.build import build_report


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return build_run_dir(tmp_path_factory.mktemp("report_browser"))


CHROMIUM = Path(os.environ.get("EMOSTEER_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("EMOSTEER_CHROMEDRIVER", "/usr/bin/chromedriver"))
# Selenium + chromedriver, so the check reads the browser log's SEVERE entries (failed loads,
# script errors). Flags as tests/test_study_browser.py: quiet and offline in a sandboxed
# container; file:// pages may read their sibling audio files for the linked variant.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic", "--autoplay-policy=no-user-gesture-required",
                 "--allow-file-access-from-files"]
TIMEOUT_S = 30
AUDIO_SETTLED = ("[...document.querySelectorAll('audio')].every("
                 "a => a.readyState >= 1 || a.error)")
MEDIA_STATE = """({
  imgs: [...document.images].map(i => [i.complete, i.naturalWidth]),
  audio: [...document.querySelectorAll('audio')].map(a => [a.readyState, a.error && a.error.code,
                                                          a.duration])})"""


def open_in_chromium(url: str) -> tuple[dict, list[str]]:
    """(media state, SEVERE entries of the browser log) through chromedriver."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    if not CHROMEDRIVER.is_file():
        pytest.skip(f"no chromedriver at {CHROMEDRIVER}")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ["--headless=new", *CHROMIUM_ARGS]:
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        driver.get(url)
        WebDriverWait(driver, TIMEOUT_S).until(
            lambda d: d.execute_script(f"return {AUDIO_SETTLED}"))
        state = driver.execute_script(f"return {MEDIA_STATE}")
        severe = [m["message"] for m in driver.get_log("browser") if m["level"] == "SEVERE"]
        return state, severe
    finally:
        driver.quit()


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM}")
@pytest.mark.parametrize("embed", [True, False], ids=["embedded", "linked"])
def test_page_loads_in_headless_chromium(run_dir, embed):
    out = build_report(run_dir, run_dir / f"browser-{embed}.html", embed_audio=embed)
    state, errors = open_in_chromium(out.resolve().as_uri())
    assert len(state["imgs"]) == 6 and all(c and w > 0 for c, w in state["imgs"])
    assert len(state["audio"]) == 27 + 1 + len(MODES) * len(SWEEP_DELTAS)
    for ready, err, duration in state["audio"]:
        assert ready >= 1 and err is None
        assert duration == pytest.approx(TONE_S, abs=0.01)
    assert errors == []


def test_browser_check_catches_broken_media(tmp_path):
    """The check above is not vacuous: a broken image and a missing file are reported."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                    '<img src="data:image/png;base64,AAAA">'
                    '<audio preload="metadata" src="missing.wav"></audio></body></html>')
    state, errors = open_in_chromium(page.as_uri())
    assert state["imgs"] == [[True, 0]]
    assert state["audio"][0][1] is not None  # MediaError set
    assert any("missing.wav" in m for m in errors)
