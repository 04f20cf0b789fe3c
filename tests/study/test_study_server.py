"""study serve: participant flow, idempotent answers, bad input, admin token, load, SIGKILL."""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from emosteer.study import db
from emosteer.study.server import MAX_BODY_BYTES, BackgroundServer, create_app
from studykit import CFG, TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _answer(trial: dict, emotion: str = "angry") -> dict:
    return {"trial_index": trial["trial_index"], "stimulus_id": trial["stimulus_id"],
            "emotion": emotion, "intensity": 3, "naturalness": 4, "rt_ms": 1200}


def _start(c) -> dict:
    st = c.post("/api/consent").json()
    assert st["stage"] == "practice" and st["progress"] == {"done": 0, "total": 6}
    st = c.post("/api/practice", json={"emotion": "calm"}).json()
    assert st["stage"] == "trial" and st["trial"]["trial_index"] == 0
    return st


def test_flow_resume_and_storage(client, study):
    assert client.get("/api/state").json()["stage"] == "consent"
    assert "Listening study" in client.get("/").text
    st = _start(client)
    pid = st["pid"]
    for _ in range(3):
        st = client.post("/api/answer", json=_answer(st["trial"])).json()
    assert st["progress"]["done"] == 3
    # A reload (cookie) and a fresh browser with the URL token both resume at trial 3.
    assert client.get("/api/state").json()["trial"]["trial_index"] == 3
    with TestClient(create_app(study, TOKEN)) as other:
        st = other.get(f"/api/state?pid={pid}").json()
        assert st["trial"]["trial_index"] == 3
        while st["stage"] == "trial":
            st = other.post(f"/api/answer?pid={pid}", json=_answer(st["trial"], "sad")).json()
    assert st["stage"] == "done" and st["progress"] == {"done": 6, "total": 6}
    rows = db.fetch_answers(study.db_path)
    plan = db.get_participant(study.db_path, pid)["plan"]
    assert [r["stimulus_id"] for r in rows] == plan
    assert [r["emotion"] for r in rows] == ["angry"] * 3 + ["sad"] * 3


def test_resubmit_idempotent_and_order_enforced(client, study):
    st = _start(client)
    first = st["trial"]
    assert client.post("/api/answer", json=_answer(first)).json()["stored"] is True
    again = client.post("/api/answer", json=_answer(first, "sad"))
    assert again.status_code == 200 and again.json()["stored"] is False
    rows = db.fetch_answers(study.db_path)
    assert len(rows) == 1 and rows[0]["emotion"] == "angry"  # the first answer stands
    plan = db.get_participant(study.db_path, st["pid"])["plan"]
    skip = {**_answer(first), "trial_index": 4, "stimulus_id": plan[4]}
    assert client.post("/api/answer", json=skip).status_code == 409
    wrong = {**_answer(first), "trial_index": 1, "stimulus_id": "anchor2-not-planned"}
    assert client.post("/api/answer", json=wrong).status_code == 422
    assert len(db.fetch_answers(study.db_path)) == 1


@pytest.mark.parametrize("patch", [
    {"intensity": 7}, {"naturalness": 0}, {"naturalness": "great"}, {"emotion": "bored"},
    {"emotion": None}, {"trial_index": -1}, {"extra_field": 1}, {"stimulus_id": ""},
])
def test_malformed_answer_rejected(client, study, patch):
    st = _start(client)
    r = client.post("/api/answer", json={**_answer(st["trial"]), **patch})
    assert r.status_code == 422
    assert db.fetch_answers(study.db_path) == []


def test_non_json_and_anonymous_answers_rejected(client, study):
    r = client.post("/api/answer", content=b"not json{", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    body = {"trial_index": 0, "stimulus_id": "x", "emotion": "angry", "intensity": 1,
            "naturalness": 1}
    assert client.post("/api/answer", json=body).status_code == 403  # no consent, no participant
    assert client.post("/api/answer?pid=../../etc", json=body).status_code == 403
    assert db.fetch_answers(study.db_path) == []


def test_oversized_payload_rejected(client, study):
    st = _start(client)
    big = {**_answer(st["trial"]), "stimulus_id": "x" * (MAX_BODY_BYTES + 10)}
    r = client.post("/api/answer", json=big)
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    assert db.fetch_answers(study.db_path) == []


def test_audio_only_by_known_id(client, study):
    sid = study.stimuli[0].id
    r = client.get(f"/audio/{sid}")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert r.content[:4] == b"RIFF"
    for bad in ("..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%2e%2e",
                "..%5C..%5Cstudy.json", "study.json", "study.sqlite", f"{sid}.wav", "%00"):
        r = client.get(f"/audio/{bad}")
        assert r.status_code == 404, bad
        assert b"root:" not in r.content and b"CREATE TABLE" not in r.content


def test_traversal_on_the_wire(study):
    # httpx normalises "../"; a raw socket sends the path exactly as an attacker would.
    with BackgroundServer(study, TOKEN) as url:
        host, port = url.removeprefix("http://").split(":")
        for target in ("/audio/../../../../etc/passwd", "/audio/..%2f..%2fstudy.json",
                       "/audio/%2e%2e/%2e%2e/etc/passwd", "/../../etc/passwd"):
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                reply = b""
                while chunk := s.recv(65536):
                    reply += chunk
            status = reply.split(b" ", 2)[1]
            assert status in (b"400", b"404"), (target, reply[:80])
            assert b"root:" not in reply and b'"config"' not in reply


def test_admin_needs_the_token(client, study):
    st = _start(client)
    client.post("/api/answer", json=_answer(st["trial"]))
    for path in ("/admin/progress", "/admin/export.csv"):
        for headers in ({}, {"Authorization": "Bearer wrong-token-123"},
                        {"Authorization": TOKEN}, {"Authorization": "Bearer "}):
            r = client.get(path, headers=headers)
            assert r.status_code == 401
            assert r.json() == {"detail": "unauthorized"}  # nothing else leaks
        assert client.get(f"{path}?token={TOKEN}").status_code == 401  # header only
    prog = client.get("/admin/progress", headers=AUTH).json()
    assert prog["participants"] == 1 and prog["answers"] == 1 and prog["finished"] == 0
    rows = list(csv.DictReader(io.StringIO(client.get("/admin/export.csv", headers=AUTH).text)))
    assert len(rows) == 1 and rows[0]["pid"] == st["pid"] and rows[0]["naturalness"] == "4"


def _participant(url: str, dup: bool) -> int:
    """One simulated listener over real HTTP; returns how many re-submits were stored (0)."""
    stored_dups = 0
    with httpx.Client(base_url=url, timeout=60) as c:
        st = c.post("/api/consent").json()
        q = f"?pid={st['pid']}"
        st = c.post("/api/practice" + q, json={}).json()
        while st["stage"] == "trial":
            body = _answer(st["trial"])
            st = c.post("/api/answer" + q, json=body).json()
            if dup:
                stored_dups += c.post("/api/answer" + q, json=body).json()["stored"]
    assert st["stage"] == "done"
    return stored_dups


def test_fifty_concurrent_participants(study):
    n = 50
    t0 = time.monotonic()
    with BackgroundServer(study, TOKEN) as url, ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(_participant, url, i % 2 == 0) for i in range(n)]
        assert sum(f.result(timeout=240) for f in futures) == 0
        prog = httpx.get(url + "/admin/progress", headers=AUTH, timeout=30).json()
    rows = db.fetch_answers(study.db_path)
    assert len(rows) == n * CFG.trials_per_participant
    assert len({(r["pid"], r["trial_index"]) for r in rows}) == len(rows)
    assert prog["participants"] == n and prog["finished"] == n
    assert time.monotonic() - t0 < 240


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            if httpx.get(url + "/api/state", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("server did not come up")


def _spawn(study, port: int) -> subprocess.Popen:
    code = "import sys; from emosteer.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, "study", "serve", str(study.root),
                             "--port", str(port), "--admin-token", TOKEN],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkill_keeps_committed_answers(study):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = _spawn(study, port)
    try:
        _wait_up(url, proc)
        with httpx.Client(base_url=url, timeout=30) as c:
            st = c.post("/api/consent").json()
            q = f"?pid={st['pid']}"
            st = c.post("/api/practice" + q, json={}).json()
            for _ in range(4):
                st = c.post("/api/answer" + q, json=_answer(st["trial"])).json()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with sqlite3.connect(study.db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 4
    proc = _spawn(study, port)
    try:
        _wait_up(url, proc)
        with httpx.Client(base_url=url, timeout=30) as c:
            st = c.get("/api/state" + q).json()
            assert st["trial"]["trial_index"] == 4  # resumes after the kill
            while st["stage"] == "trial":
                st = c.post("/api/answer" + q, json=_answer(st["trial"])).json()
            text = c.get("/admin/export.csv", headers=AUTH).text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert len(list(csv.DictReader(io.StringIO(text)))) == CFG.trials_per_participant


def test_cli_serve_validates_before_starting(study, tmp_path, capsys):
    from emosteer.cli import main

    assert main(["study", "serve", str(study.root), "--admin-token", "short"]) == 2
    assert "at least 8" in capsys.readouterr().err
    assert main(["study", "serve", str(study.root), "--port", "70000",
                 "--admin-token", TOKEN]) == 2
    assert main(["study", "serve", str(tmp_path / "nowhere")]) == 2
    assert "study.json" in capsys.readouterr().err
