"""A participant completes a 6-trial study in headless Chromium; every answer reaches the DB
and the admin CSV export. Skips cleanly when Chromium or playwright is absent."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import httpx
import pytest

from emosteer.study import db
from emosteer.study.design import StudyConfig, create_study
from emosteer.study.server import BackgroundServer
from emosteer.study.simulate import write_synthetic_stimuli

CHROMIUM = Path(os.environ.get("EMOSTEER_CHROMIUM", "/usr/bin/chromium"))
# Flags keep a sandboxed CI container quiet and offline (no updater, sync or QUIC probes).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
TOKEN = "browser-admin-token"
CFG = StudyConfig(trials_per_participant=6, anchors_per_participant=1,
                  repeats_per_participant=1, seed=5, emotions=("angry", "calm", "sad"))
TIMEOUT_MS = 20_000

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM}")


@pytest.fixture()
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def test_participant_completes_study_in_browser(tmp_path, browser):
    src = write_synthetic_stimuli(tmp_path / "eval", n_clips=2, n_anchors=3)
    study = create_study(src, tmp_path / "study", CFG)
    emotions = ["angry", "calm", "sad", "calm", "angry", "sad"]
    with BackgroundServer(study, TOKEN) as url:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url + "/")
        page.wait_for_selector("#consent:not(.hidden)")
        assert page.is_disabled("#consent-btn")
        page.check("#consent-check")
        page.click("#consent-btn")
        page.wait_for_selector("#trial-title:has-text('Practice trial')")
        page.check("#emotion-calm")
        page.check("#intensity-2")
        assert page.is_disabled("#next-btn")  # naturalness still unanswered
        page.check("#naturalness-3")
        page.click("#next-btn")
        for i, emo in enumerate(emotions):
            page.wait_for_selector(f"#trial-title:has-text('Trial {i + 1} of 6')")
            assert page.text_content("#progress") == f"{i} / 6"
            assert page.get_attribute("#audio", "src").startswith("/audio/")
            if i == 0:  # the browser really decodes the served clip (0.3 s synthetic tone)
                page.wait_for_function("document.getElementById('audio').readyState >= 1")
                assert page.evaluate("document.getElementById('audio').duration") == \
                    pytest.approx(0.3, abs=0.01)
            if i == 3:  # a reload mid-study resumes at the same trial (cookie)
                page.reload()
                page.wait_for_selector("#trial-title:has-text('Trial 4 of 6')")
            page.check(f"#emotion-{emo}")
            page.check(f"#intensity-{1 + i % 5}")
            page.check(f"#naturalness-{5 - i % 5}")
            page.click("#next-btn")
        page.wait_for_selector("#done:not(.hidden)")
        assert page.text_content("#error") == ""
        # The page's own audio URL must serve audio to the browser.
        audio = page.request.get(url + f"/audio/{study.stimuli[0].id}")
        assert audio.status == 200 and audio.body()[:4] == b"RIFF"
        export = httpx.get(url + "/admin/export.csv", timeout=30,
                           headers={"Authorization": f"Bearer {TOKEN}"}).text
        denied = httpx.get(url + "/admin/export.csv", timeout=30)
    assert denied.status_code == 401
    rows = db.fetch_answers(study.db_path)
    assert [r["trial_index"] for r in rows] == list(range(6))
    assert [r["emotion"] for r in rows] == emotions
    assert [r["intensity"] for r in rows] == [1 + i % 5 for i in range(6)]
    assert [r["naturalness"] for r in rows] == [5 - i % 5 for i in range(6)]
    assert all(r["rt_ms"] is not None and r["rt_ms"] >= 0 for r in rows)
    exported = list(csv.DictReader(io.StringIO(export)))
    assert [(e["trial_index"], e["stimulus_id"], e["emotion"]) for e in exported] == \
        [(str(r["trial_index"]), r["stimulus_id"], r["emotion"]) for r in rows]
