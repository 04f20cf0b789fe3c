"""`emosteer demo --corpus ravdess`: the download (checksum, resume) and the corpus stage, against
a tiny RAVDESS-shaped zip served on 127.0.0.1 (no network; the rest of the run is the same
pipeline the offline demo tests cover)."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf

from emosteer.cli import main
from emosteer.corpora.download import SOURCES, Source
from emosteer.pipeline.recipe import load_recipe

ACTORS = range(1, 7)
# RAVDESS emotion codes: 01 neutral, 02 calm, 03 happy, 04 sad, 05 angry; neutral is in the
# zip to show that the demo keeps only the recipe's emotions.
EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry"}


def tiny_ravdess_zip() -> bytes:
    """Audio_Speech_Actors_01-24.zip's layout (Actor_NN/03-01-EE-01-SS-01-NN.wav), two
    statements per emotion, each a 0.2 s tone."""
    tone = (0.1 * np.sin(2 * np.pi * 220 * np.arange(3200) / 16000)).astype(np.float32)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for a in ACTORS:
            for code in EMOTIONS:
                for stmt in ("01", "02"):
                    wav = io.BytesIO()
                    sf.write(wav, tone, 16000, format="WAV", subtype="PCM_16")
                    zf.writestr(f"Actor_{a:02d}/03-01-{code}-01-{stmt}-01-{a:02d}.wav",
                                wav.getvalue())
    return buf.getvalue()


class ZipServer:
    """Serves one file at /rav.zip with HTTP Range support; records each request's Range."""

    def __init__(self, body: bytes):
        self.body, self.ranges = body, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.split("?")[0] != "/rav.zip":
                    self.send_error(404, "Not Found")
                    return
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(server.body) - 1}/{len(server.body)}")
                self.send_header("Content-Length", str(len(server.body) - start))
                self.end_headers()
                self.wfile.write(server.body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/rav.zip"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def ravdess_server(monkeypatch):
    body = tiny_ravdess_zip()
    server = ZipServer(body)
    # the registry entry is what the downloader reads: point it at the local server, with the
    # tiny zip's own checksum
    monkeypatch.setitem(SOURCES, "ravdess", Source(
        name="ravdess", description="tiny RAVDESS-shaped test zip", licence="test",
        url=server.url, filename="rav.zip", md5=hashlib.md5(body).hexdigest()))
    yield server
    server.close()


def test_demo_ravdess_downloads_resumes_and_scans(ravdess_server, tmp_path, caplog):
    root, out = tmp_path / "data" / "ravdess", tmp_path / "run"
    root.mkdir(parents=True)
    half = len(ravdess_server.body) // 2
    (root / "rav.zip.part").write_bytes(ravdess_server.body[:half])  # an interrupted download
    args = ["demo", "--corpus", "ravdess", "--out", str(out), "--set", f"corpus.root={root}",
            "--stop-after", "corpus", "--no-progress"]
    assert main(args) == 0
    assert ravdess_server.ranges == [f"bytes={half}-"]  # resumed, not restarted
    assert (root / "rav.zip").read_bytes() == ravdess_server.body  # md5-verified, renamed
    record = json.loads((root / "ravdess.download.json").read_text())
    assert record["extracted"] and record["url"] == ravdess_server.url

    state = json.loads((out / "run.json").read_text())
    assert state["recipe"]["name"] == "demo-ravdess" and list(state["stages"]) == ["corpus"]
    assert state["corpus"]["format"] == "ravdess" and state["notices"] == []  # real speech
    counts = state["stages"]["corpus"]["result"]
    recipe = load_recipe("demo-ravdess")
    kept = set(recipe.corpus.emotions)
    assert counts["n_utterances"] == len(ACTORS) * len(kept) * 2  # neutral left out
    assert "neutral" not in json.dumps(counts["counts"])

    # -f redoes the run, not the download: nothing is fetched or extracted again
    caplog.set_level("INFO")
    assert main([*args, "-f"]) == 0
    assert ravdess_server.ranges == [f"bytes={half}-"]
    assert "not fetched again" in caplog.text


def test_demo_ravdess_bad_checksum_is_refused(ravdess_server, tmp_path, monkeypatch):
    src = SOURCES["ravdess"]
    monkeypatch.setitem(SOURCES, "ravdess", Source(**{**src.__dict__, "md5": "0" * 32}))
    root = tmp_path / "ravdess"
    rc = main(["demo", "--corpus", "ravdess", "--out", str(tmp_path / "run"),
               "--set", f"corpus.root={root}", "--stop-after", "corpus", "--no-progress"])
    assert rc == 2
    assert not (root / "rav.zip").exists() and not (root / "rav.zip.part").exists()
