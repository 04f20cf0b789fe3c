"""study serve under hostile input (issue 16, items 2, 5, 8 and the admin token of 9): body
smuggling, non-finite JSON, flow order, strict rating types, server-minted ids, consent rate
limit, balancing that abandoned consents cannot skew, and the Bearer scheme in any case.

Every server here listens on 127.0.0.1 only, and every loop is bounded."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
import time
from collections import Counter

import httpx
import pytest
from fastapi.testclient import TestClient

from emosteer.study import db
from emosteer.study.design import plan_trials
from emosteer.study.server import (
    MAX_BODY_BYTES,
    BackgroundServer,
    BodyLimit,
    ConsentLimiter,
    create_app,
)
from studykit import CFG, TOKEN

JSON = {"Content-Type": "application/json"}
SMUGGLED_BYTES = 20_000  # about 5x the cap, yet small enough for the server to drain before it closes


def _answer(trial: dict) -> dict:
    return {"trial_index": trial["trial_index"], "stimulus_id": trial["stimulus_id"],
            "emotion": "angry", "intensity": 3, "naturalness": 4, "rt_ms": 1200}


def _start(c) -> dict:
    st = c.post("/api/consent").json()
    return c.post(f"/api/practice?pid={st['pid']}", json={}).json()


def _n_answers(study) -> int:
    with sqlite3.connect(study.db_path) as conn:
        return conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]


def _n_participants(study) -> int:
    with sqlite3.connect(study.db_path) as conn:
        return conn.execute("SELECT COUNT(*) FROM participants").fetchone()[0]


def _raw(url: str, request: bytes) -> bytes:
    """Send bytes exactly as given (httpx would fix the framing) and read the whole reply."""
    host, port = url.removeprefix("http://").split(":")
    assert host == "127.0.0.1"
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def _post_chunked(pid: str, body: bytes, extra_headers: str = "") -> bytes:
    head = (f"POST /api/answer?pid={pid} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\n{extra_headers}"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    return head.encode() + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"


# --- item 2: the body cap counts bytes read ---------------------------------------------------


def test_content_length_plus_chunked_is_refused_and_nothing_stored(study):
    with BackgroundServer(study, TOKEN) as url:
        with httpx.Client(base_url=url, timeout=30) as c:
            st = _start(c)
        pid = st["pid"]
        padded = json.dumps(_answer(st["trial"])).encode() + b" " * SMUGGLED_BYTES
        reply = _raw(url, _post_chunked(pid, padded, "Content-Length: 10\r\n"))
        assert _status(reply) == 400, reply[:200]
        assert b"Transfer-Encoding" in reply
        # Chunked alone is fine while small, and refused once the bytes read pass the cap.
        reply = _raw(url, _post_chunked(pid, padded))
        assert _status(reply) == 413, reply[:200]
        assert _n_answers(study) == 0
        small = json.dumps(_answer(st["trial"])).encode()
        assert _status(_raw(url, _post_chunked(pid, small))) == 200
    assert _n_answers(study) == 1


def test_body_cap_ignores_a_lying_content_length():
    # Whatever the HTTP parser lets through, the middleware counts the bytes it hands over.
    reached = []

    async def app(scope, receive, send):  # pragma: no cover - must not run
        reached.append(True)

    sent = []

    async def send(message):
        sent.append(message)

    messages = [{"type": "http.request", "body": b"x" * 1000, "more_body": True}] * 5
    messages.append({"type": "http.request", "body": b"", "more_body": False})

    async def receive():
        return messages.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/api/answer",
             "headers": [(b"content-length", b"10")]}
    asyncio.run(BodyLimit(app, max_bytes=MAX_BODY_BYTES)(scope, receive, send))
    assert reached == []
    assert sent[0]["status"] == 413


# --- item 5: non-finite JSON numbers ----------------------------------------------------------


NON_FINITE = [b'{"trial_index": NaN, "stimulus_id": "x"}',
              b'{"trial_index": 0, "stimulus_id": "x", "intensity": Infinity}',
              b'{"trial_index": 0, "stimulus_id": "x", "rt_ms": -Infinity}',
              b'{"trial_index": 1e400, "stimulus_id": "x"}',
              b'{"trial_index": 0, "stimulus_id": "x", "naturalness": -1e400}']


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_non_finite_numbers_get_422_without_a_traceback(study):
    records = _Records()
    with BackgroundServer(study, TOKEN) as url:
        # uvicorn configures its loggers at start-up (replacing handlers), so attach after.
        logger = logging.getLogger("uvicorn")
        logger.addHandler(records)
        try:
            with httpx.Client(base_url=url, timeout=30) as anonymous:
                for body in NON_FINITE:
                    r = anonymous.post("/api/answer", content=body, headers=JSON)
                    assert r.status_code == 422, (body, r.text)
                    assert "out of range" in r.text or "not a number JSON allows" in r.text
                    r = anonymous.post("/api/practice", content=body, headers=JSON)
                    assert r.status_code == 422, (body, r.text)
            with httpx.Client(base_url=url, timeout=30) as c:
                _start(c)
                for body in NON_FINITE:
                    assert c.post("/api/answer", content=body, headers=JSON).status_code == 422
        finally:
            logger.removeHandler(records)
    assert not [r for r in records.records if r.exc_info or r.levelno >= logging.ERROR], \
        [r.getMessage() for r in records.records]
    assert _n_answers(study) == 0


# Each under the body cap, so the JSON parser (not the cap) must turn them away.
HOSTILE_JSON = [b"[" * 2000 + b"]" * 2000, b'{"trial_index": ' + b"9" * 4000 + b"}",
                b"\xff\xfe{", b"", b"null", b"[1, 2]"]


@pytest.mark.parametrize("body", HOSTILE_JSON)
def test_other_hostile_json_gets_422(client, study, body):
    assert len(body) <= MAX_BODY_BYTES
    _start(client)
    r = client.post("/api/answer", content=body, headers=JSON)
    assert r.status_code == 422, r.text
    assert _n_answers(study) == 0


def test_json_body_must_be_declared_json(client, study):
    st = _start(client)
    body = json.dumps(_answer(st["trial"]))
    r = client.post("/api/answer", content=body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert _n_answers(study) == 0


# --- item 8: flow, strict types, ids, rate limit, balancing, bearer ---------------------------


def test_answer_before_practice_is_refused(client, study):
    st = client.post("/api/consent").json()
    assert st["stage"] == "practice"
    plan = db.get_participant(study.db_path, st["pid"])["plan"]
    first = {"trial_index": 0, "stimulus_id": plan[0]}
    r = client.post("/api/answer", json=_answer(first))
    assert r.status_code == 409 and "practice" in r.json()["detail"]
    assert _n_answers(study) == 0
    client.post("/api/practice", json={})
    assert client.post("/api/answer", json=_answer(first)).status_code == 200
    assert _n_answers(study) == 1


# Each value means the right number in lax mode ("3" -> 3, True -> 1, 3.0 -> 3), so only a
# strict type check refuses it.
STRICT_CASES = [(f, v) for f in ("intensity", "naturalness") for v in ("3", True, 3.0)] + \
    [("trial_index", v) for v in ("0", False, 0.0)] + [("rt_ms", v) for v in ("1200", True, 1.0)]


@pytest.mark.parametrize(("field", "value"), STRICT_CASES)
def test_ratings_have_strict_types(client, study, field, value):
    st = _start(client)
    assert st["trial"]["trial_index"] == 0
    r = client.post("/api/answer", json={**_answer(st["trial"]), field: value})
    assert r.status_code == 422, (field, value, r.text)
    assert _n_answers(study) == 0


def test_emotion_must_be_a_string(client, study):
    st = _start(client)
    for value in (1, True, ["angry"]):
        r = client.post("/api/answer", json={**_answer(st["trial"]), "emotion": value})
        assert r.status_code == 422
    assert _n_answers(study) == 0


def test_consent_ignores_a_client_chosen_participant_id(study):
    chosen = "attacker-chosen-id"
    with TestClient(create_app(study, TOKEN)) as c:
        by_query = c.post(f"/api/consent?pid={chosen}").json()["pid"]
    with TestClient(create_app(study, TOKEN), cookies={"emosteer_pid": chosen + "2"}) as c:
        by_cookie = c.post("/api/consent").json()["pid"]
    assert chosen not in (by_query, by_cookie) and chosen + "2" not in (by_query, by_cookie)
    assert by_query != by_cookie
    assert db.get_participant(study.db_path, chosen) is None
    assert db.get_participant(study.db_path, chosen + "2") is None
    # An id the server minted earlier resumes (a double click); it does not enrol anyone new.
    with TestClient(create_app(study, TOKEN)) as c:
        assert c.post(f"/api/consent?pid={by_query}").json()["pid"] == by_query
    assert _n_participants(study) == 2


def test_an_invented_link_id_does_not_strand_the_participant(client, study):
    # A link with an id the server never minted: consent mints a fresh one (set as the cookie)
    # and the stale ?pid= on later calls and reloads must not hide it.
    link = "?pid=invented-by-someone"
    st = client.post("/api/consent" + link).json()
    minted = st["pid"]
    assert minted != "invented-by-someone" and st["stage"] == "practice"
    st = client.post("/api/practice" + link, json={}).json()
    assert st["stage"] == "trial" and st["pid"] == minted
    assert client.get("/api/state" + link).json()["pid"] == minted
    assert client.post("/api/consent" + link).json()["pid"] == minted  # a reload + click
    assert _n_participants(study) == 1


def test_consent_is_rate_limited_per_address(study):
    burst = 5
    with BackgroundServer(study, TOKEN, consent_burst=burst, consent_refill_s=600) as url:
        codes, retry = [], []
        for _ in range(burst + 3):  # a fresh client each time: no cookie, a new participant
            with httpx.Client(base_url=url, timeout=30) as c:
                r = c.post("/api/consent")
                codes.append(r.status_code)
                retry.append(r.headers.get("Retry-After"))
    assert codes == [200] * burst + [429] * 3
    assert all(int(s) > 0 for s in retry[burst:])
    assert _n_participants(study) == burst


def test_consent_limiter_refills_and_bounds_memory():
    lim = ConsentLimiter(burst=2, refill_s=10.0, max_tracked=3)
    assert [lim.allow("a", now=0.0) for _ in range(3)] == [True, True, False]
    assert lim.retry_after_s("a", now=0.0) == 10
    assert lim.allow("a", now=10.0) and not lim.allow("a", now=10.0)
    assert lim.allow("b", now=10.0) and lim.allow("c", now=10.0)
    assert not lim.allow("d", now=10.0)  # three addresses still inside their refill window
    assert lim.allow("d", now=40.0)  # refilled ones are forgotten to make room


def _enrol(study, pid: str, n_answered: int) -> None:
    """A listener through the server's own DB path who answers the first n_answered trials;
    the answers go in one transaction (one fsync) to keep the test fast."""
    plan = db.add_participant(study.db_path, pid,
                              lambda counts: plan_trials(study, pid, counts))["plan"]
    with sqlite3.connect(study.db_path) as conn:
        conn.executemany(
            "INSERT INTO answers(pid, trial_index, stimulus_id, emotion, intensity, naturalness,"
            " rt_ms, created) VALUES (?, ?, ?, 'angry', 3, 4, 1200, ?)",
            [(pid, i, sid, time.time()) for i, sid in enumerate(plan[:n_answered])])


def _age_everyone(study) -> None:
    """Move every consent and answer so far past the abandonment horizon."""
    with sqlite3.connect(study.db_path) as conn:
        for table in ("participants", "answers"):
            conn.execute(f"UPDATE {table} SET created = created - ?", (2 * db.ABANDON_AFTER_S,))


def _rating_spread(study) -> dict[str, list[int]]:
    """Per stimulus kind: how many participants rated each stimulus (a repeat counts once)."""
    rated = Counter(sid for _pid, sid in {(r["pid"], r["stimulus_id"])
                                          for r in db.fetch_answers(study.db_path)})
    return {kind: sorted(rated[s.id] for s in study.stimuli
                         if s.kind == kind and s.id != study.practice_id)
            for kind in ("steered", "anchor")}


def test_abandoned_consents_do_not_skew_the_balance(study):
    n_abandoned, n_real = 100, 7
    with TestClient(create_app(study, TOKEN, consent_burst=n_abandoned)) as c:
        for _ in range(n_abandoned):
            c.cookies.clear()
            assert c.post("/api/consent").status_code == 200
    _age_everyone(study)  # they consented and never answered
    with db.connect(study.db_path) as conn:
        assert db.balance_counts(conn, now=time.time()) == {}  # they hold nothing any more
    for i in range(n_real):
        _enrol(study, f"listener-{i:04d}", CFG.trials_per_participant)
    for kind, n in _rating_spread(study).items():
        assert max(n) - min(n) <= 1, (kind, n)


def test_drop_outs_after_one_trial_do_not_skew_the_balance(study):
    # 100 listeners answer their first trial and leave: the old planner counted their whole
    # plans as exposures, so later listeners evened out assignments, not ratings (spread ~8).
    n_dropped, n_real = 100, 25
    for i in range(n_dropped):
        _enrol(study, f"dropped-{i:04d}", 1)
    _age_everyone(study)
    for i in range(n_real):
        _enrol(study, f"listener-{i:04d}", CFG.trials_per_participant)
    for kind, n in _rating_spread(study).items():
        assert max(n) - min(n) <= 1, (kind, n)


def test_live_consents_still_spread_evenly(study):
    # Before anyone answers, live participants' pending trials balance the crowd.
    with TestClient(create_app(study, TOKEN)) as c:
        for _ in range(12):
            c.cookies.clear()
            c.post("/api/consent")
    with db.connect(study.db_path) as conn:
        counts = db.balance_counts(conn, now=time.time())
    steered = [counts.get(s.id, 0) for s in study.stimuli if s.kind == "steered"]
    assert max(steered) - min(steered) <= 1


def test_bearer_scheme_is_case_insensitive(client):
    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
        r = client.get("/admin/progress", headers={"Authorization": f"{scheme} {TOKEN}"})
        assert r.status_code == 200, scheme
    for bad in (f"Basic {TOKEN}", f"bearer{TOKEN}", "bearer ", f"bearer {TOKEN}x",
                f"Bearerx {TOKEN}"):
        assert client.get("/admin/progress", headers={"Authorization": bad}).status_code == 401


# --- item 9: the admin token belongs in the environment ---------------------------------------


def test_serve_help_steers_the_token_to_the_environment(capsys):
    from emosteer.cli import main

    with pytest.raises(SystemExit) as e:
        main(["study", "serve", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "EMOSTEER_ADMIN_TOKEN" in out and "ps" in out


def test_token_from_the_environment_is_checked_by_name(study, monkeypatch, capsys):
    from emosteer.cli import main

    monkeypatch.setenv("EMOSTEER_ADMIN_TOKEN", "short")
    assert main(["study", "serve", str(study.root)]) == 2
    assert "$EMOSTEER_ADMIN_TOKEN: use at least 8" in capsys.readouterr().err
    assert main(["study", "serve", str(study.root), "--admin-token", "short"]) == 2
    err = capsys.readouterr().err
    assert "visible to other users in ps" in err and "--admin-token: use at least 8" in err
