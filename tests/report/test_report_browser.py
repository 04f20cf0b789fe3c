"""The acceptance check of emosteer.report: the page of the fake run (tests/test_report.py)
opens in headless Chromium, and every plot and audio element loads with no console error; the
verdict is on the first screen (playwright), and a screenshot of it is kept as a test artefact
under $EMOSTEER_ARTIFACTS (default tests/artifacts/, git-ignored)."""

from __future__ import annotations

import os
import re
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
# The verdict grid: both fake clips x (input, delta -1/0/+1 per mode, the speaker's real target).
VERDICT_PLAYERS = 2 * (1 + len(MODES) * 3 + 1)
ARTIFACTS = Path(os.environ.get("EMOSTEER_ARTIFACTS",
                                Path(__file__).resolve().parents[1] / "artifacts"))
FIRST_SCREEN = {"width": 1280, "height": 1000}  # the verdict must lie within the first 1,000 px
CELL = re.compile(r"\d\.\d\d \[-?\d\.\d\d, -?\d\.\d\d\] n=\d+")  # value [CI] n, as shown
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
    assert len(state["imgs"]) == 7 and all(c and w > 0 for c, w in state["imgs"])
    assert len(state["audio"]) == (VERDICT_PLAYERS + 27 + 1 + len(MODES) * len(SWEEP_DELTAS))
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


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM}")
def test_verdict_on_the_first_screen(run_dir):
    """Playwright at 1280x1000: the verdict panel starts within the first 1,000 px, each mode's
    rows at delta -1, 0 and +1 hold a judged number with its n, the verdict's players load
    (duration > 0), nothing is logged as an error; the first screen is saved as report.png."""
    sync_api = pytest.importorskip("playwright.sync_api")
    out = build_report(run_dir, run_dir / "verdict.html")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=FIRST_SCREEN)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("requestfailed", lambda r: errors.append(f"{r.url}: {r.failure}"))
            page.goto(out.resolve().as_uri())
            page.wait_for_function(AUDIO_SETTLED.replace("'audio'", "'#verdict audio'"),
                                   timeout=TIMEOUT_S * 1000)
            for sel in ("#verdict", "#verdict ul.verdict", "#verdict .verdict-body table"):
                assert page.locator(sel).first.bounding_box()["y"] < FIRST_SCREEN["height"], sel
            table = page.locator("#verdict .verdict-body table")
            for mode in MODES:
                rows = table.locator(f'tr:has(th[data-mode="{mode}"])').all_inner_texts()
                assert len(rows) == 3 and all(CELL.search(r) for r in rows), (mode, rows)
            assert page.locator("#verdict ul.verdict li").count() == len(MODES)
            assert page.locator('#verdict li[data-mode="prosody"] .flag').count() == 1
            audio = page.evaluate("[...document.querySelectorAll('#verdict audio')].map(a => "
                                  "[a.readyState, a.error && a.error.code, a.duration])")
            assert len(audio) == VERDICT_PLAYERS
            for ready, err, duration in audio:
                assert ready >= 1 and err is None and duration > 0
            assert page.evaluate("[...document.querySelectorAll('#verdict img')].map("
                                 "i => i.complete && i.naturalWidth > 0)") == [True]
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"))
        finally:
            browser.close()
    assert errors == []
    assert (ARTIFACTS / "report.png").stat().st_size > 0
