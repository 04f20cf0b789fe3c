"""The page of `emosteer app` (app_ui): its handlers, a real headless-Chromium session (skips
when Chromium is absent) and the CLI serving it."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import test_app as shared

from emosteer.app.core import AppConfig, SteeringApp, mode_help, parse_axis_specs
from emosteer.audio import SAMPLE_RATE, save_audio
from emosteer.axes import wrap_vector

# The artifacts (tiny encoder, axis + prosody.json, untrained mapper) come from test_app.
run_dir, prosody_only, app, tone = shared.run_dir, shared.prosody_only, shared.app, shared.tone


@pytest.fixture()
def clip(tmp_path) -> Path:
    return save_audio(tmp_path / "clip.wav", tone(1.0), SAMPLE_RATE)


# -- the page's handlers (no browser) ----------------------------------------------------------
def _handler(demo, name: str):
    return next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == name)


def test_page_handlers_show_messages_not_tracebacks(app, tmp_path, clip):
    from emosteer.app.ui import REFERENCE_CHOICE, build_ui

    demo = build_ui(app)
    steer_clip = _handler(demo, "steer_clip")
    bad = tmp_path / "evil.wav"
    bad.write_text("not audio")
    audio, status, judges, _ = steer_clip(str(bad), "demo-run", 0.5, "latent", None)
    assert audio is None and status.startswith("rejected: ") and "evil.wav" in status
    assert judges == ""
    audio, status, _, _ = steer_clip(str(clip), "../../etc", 0.5, "latent", None)
    assert audio is None and "unknown axis" in status
    audio, status, _, _ = steer_clip(str(clip), REFERENCE_CHOICE, 0.5, "latent", None)
    assert audio is None and "build one" in status
    (sr, y), status, judges, footer = steer_clip(str(clip), "ponly", 0.5, "prosody", None)
    assert sr == SAMPLE_RATE and y.size > 0 and "not available" in status
    assert "P(target): no emotion judge configured" in judges and "differential" in footer


def test_page_shows_labels_and_updates_the_slider_ends(run_dir, tmp_path, tiny_model_dir):
    from emosteer.app.ui import REFERENCE_CHOICE, build_ui

    sad = tmp_path / "sad" / "axis"
    wrap_vector(np.ones(32), model=str(tiny_model_dir), layer=2, source="neutral",
                target="sad").save(sad)
    steering = SteeringApp(parse_axis_specs([run_dir], [f"blue={sad}"]), AppConfig())
    demo = build_ui(steering)
    config = demo.get_config_file()
    dropdown = next(c for c in config["components"] if c["props"].get("elem_id") == "axis")
    assert [tuple(c) for c in dropdown["props"]["choices"][:2]] == [
        (steering.axes["demo-run"].label, "demo-run"), (steering.axes["blue"].label, "blue")]
    assert "blue: neutral → sad · layer 2" in steering.axes["blue"].label
    slider = _handler(demo, "delta_slider")
    assert slider("blue", None).label == "delta: -1 = more neutral (neutral) … +1 = sadder (sad)"
    assert slider("demo-run", None).label == "delta: -1 = calmer (calm) … +1 = angrier (angry)"
    assert "toward" in slider(REFERENCE_CHOICE, None).label  # chosen before it is built
    assert _handler(demo, "alpha_slider")("blue", None).label.startswith("alpha: -1 = neutral")


# -- acceptance: a real browser ------------------------------------------------------------------
CHROMIUM = Path(os.environ.get("EMOSTEER_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("EMOSTEER_CHROMEDRIVER", "/usr/bin/chromedriver"))
CHROME_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
STEER_TIMEOUT_S = 180  # first request loads the models; CI shares cores with other jobs

ALL_AUDIO_JS = """
const out = [];
const visit = (root) => root.querySelectorAll('*').forEach((e) => {
  if (e.tagName === 'AUDIO') out.push([e.src || '', e.duration || 0]);
  if (e.shadowRoot) visit(e.shadowRoot);
});
visit(document.querySelector(arguments[0]));
return out;"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def driver():
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip(f"no Chromium/chromedriver at {CHROMIUM}, {CHROMEDRIVER}")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in CHROME_ARGS:
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        yield d
    finally:
        d.quit()


def test_browser_rejects_bad_upload_then_steers_and_plays(run_dir, tmp_path, driver, monkeypatch):
    """A bad upload is refused with its reason; then a steer plays, and the page names the axis's
    emotions, says which slider end is which, explains the mode and shows the judges' numbers
    next to the player."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from emosteer.app.ui import launch, upload_roots

    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    clip = save_audio(tmp_path / "upload me.wav", tone(1.0), SAMPLE_RATE)
    bad = tmp_path / "notes.wav"
    bad.write_text("plain text, not audio\n" * 50)
    steering = SteeringApp(parse_axis_specs([run_dir], []), AppConfig(port=_free_port()),
                           upload_roots())
    seen = []
    real_steer = steering.steer
    monkeypatch.setattr(steering, "steer", lambda wav, name, delta, mode, ref=None: (
        seen.append((name, delta, mode, wav.shape[0])) or real_steer(wav, name, delta, mode, ref)))
    demo, url = launch(steering, block=False)
    try:
        wait = WebDriverWait(driver, STEER_TIMEOUT_S)
        driver.get(url)
        file_input = "#input-audio input[type=file]"
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, file_input))
        # The dropdown shows the label (emotions, layer, encoder); the server gets the name.
        shown = driver.find_element(By.CSS_SELECTOR, "#axis input").get_attribute("value")
        assert shown == steering.axes["demo-run"].label and "calm → angry" in shown, shown
        assert "delta: -1 = calmer (calm) … +1 = angrier (angry)" in \
            driver.find_element(By.CSS_SELECTOR, "#delta").text
        assert mode_help("latent") in driver.find_element(By.CSS_SELECTOR, "#mode-help").text
        # A rejected upload: the visitor sees the reason (status box and toast), no traceback.
        driver.find_element(By.CSS_SELECTOR, file_input).send_keys(str(bad))

        def rejected(d):
            # Under load the click can land before the upload finishes ("no clip" then): click
            # again until the server has judged the uploaded file itself.
            value = d.find_element(By.CSS_SELECTOR, "#status textarea").get_attribute("value")
            if "notes.wav" in value:
                return value
            d.find_element(By.CSS_SELECTOR, "#steer-btn").click()
            time.sleep(1.0)
            return None

        status = wait.until(rejected)
        assert status.startswith("rejected: notes.wav: not a readable audio file"), status
        assert str(tmp_path) not in status and "Traceback" not in driver.page_source
        wait.until(lambda d: any("notes.wav" in t.text for t in
                                 d.find_elements(By.CSS_SELECTOR, ".toast-body")))
        driver.find_element(By.CSS_SELECTOR, "#input-audio button[aria-label=Clear]").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, file_input))
        driver.find_element(By.CSS_SELECTOR, file_input).send_keys(str(clip))
        # Move the slider through its number box (Gradio 6 keeps the range input in sync).
        box = driver.find_element(By.CSS_SELECTOR, "#delta input[type=number]")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("-0.5", Keys.TAB)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#delta input[type=range]")
                   .get_attribute("value") == "-0.5")
        # The upload has finished once the input's player has decoded it.
        wait.until(lambda d: [a for a in d.execute_script(ALL_AUDIO_JS, "#input-audio")
                              if a[0] and a[1] > 0])
        driver.find_element(By.CSS_SELECTOR, "#steer-btn").click()
        status = wait.until(lambda d: (lambda v: v if v.startswith("axis projection") else None)(
            d.find_element(By.CSS_SELECTOR, "#status textarea").get_attribute("value")))
        players = wait.until(lambda d: [a for a in d.execute_script(ALL_AUDIO_JS, "#output-audio")
                                        if a[0] and a[1] > 0])
        assert players[0][1] == pytest.approx(1.0, abs=0.1)  # the browser decoded ~1 s of audio
        assert seen == [("demo-run", -0.5, "latent", SAMPLE_RATE)]
        judges = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#output-judges textarea")
                            .get_attribute("value"))
        assert "P(target): no emotion judge configured (--emotion-judge DIR)" in judges, judges
        footer = driver.find_element(By.CSS_SELECTOR, "#footer").text
        vocoder = steering.steerer("demo-run").vocoder.name
        wait.until(lambda d: f"vocoder: {vocoder}" in d.find_element(By.CSS_SELECTOR, "#footer").text)
        assert "Latent decoding: differential" in footer, footer
        if not shared.DNSMOS_OK:
            pytest.skip(f"DNSMOS number not checked: {shared.DNSMOS_WHY}")
        assert re.search(r"DNSMOS OVRL \d\.\d\d", judges), judges
    finally:
        demo.close()


@pytest.mark.slow  # a fresh interpreter imports torch and gradio: ~10-50 s on a shared CI box
def test_cli_serves_the_page(run_dir, tmp_path):
    """`emosteer app` in its own process answers on 127.0.0.1 and lists the axis by name only."""
    import subprocess
    import sys

    import httpx

    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from emosteer.cli import main; sys.exit(main())",
         "app", "--run", str(run_dir), "--port", str(port), "--max-seconds", "30"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + STEER_TIMEOUT_S
        page = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/config", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert page is not None, proc.stderr.read() if proc.poll() is not None else "timeout"
        assert page.status_code == 200
        assert "demo-run" in page.text and "at most 20 MB and 30 s" in page.text
        assert str(run_dir) not in page.text  # the server keeps the directories to itself
    finally:
        proc.terminate()
        proc.wait(timeout=30)
