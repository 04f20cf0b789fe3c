"""The listening-test web app (FastAPI; the plain HTML/JS page is in page.py).

Flow: consent -> one practice trial (not stored) -> the participant's trials -> thanks.
The participant id lives in a cookie and may also be given as ?pid=... so a reload or a link
resumes where the participant left off. Every answer is committed before the next trial is
served. Audio is looked up by stimulus id in study.json only: no path ever comes from a request.
Admin endpoints (/admin/progress, /admin/export.csv) need the start-up token as
`Authorization: Bearer TOKEN`; anything else gets a bare 401.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from fastapi import Cookie, FastAPI, Header, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from emosteer.study import db
from emosteer.study.design import Study, plan_trials
from emosteer.study.page import PAGE

MAX_BODY_BYTES = 4096  # an answer is ~200 bytes of JSON; anything larger is not ours
PID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
COOKIE = "emosteer_pid"
AUDIO_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg",
               ".mp3": "audio/mpeg"}
SCALE = (1, 5)  # intensity and naturalness (MOS) are 1-5 ratings


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    trial_index: int = Field(ge=0, le=10_000)
    stimulus_id: str = Field(min_length=1, max_length=128)
    emotion: str | None = Field(default=None, max_length=64)
    intensity: int | None = Field(default=None, ge=SCALE[0], le=SCALE[1])
    naturalness: int | None = Field(default=None, ge=SCALE[0], le=SCALE[1])
    rt_ms: int | None = Field(default=None, ge=0, le=3_600_000)


class Practice(BaseModel):
    model_config = ConfigDict(extra="allow")


def _unauthorized() -> Response:
    return JSONResponse({"detail": "unauthorized"}, status_code=401,
                        headers={"WWW-Authenticate": "Bearer"})


def create_app(study: Study, admin_token: str) -> FastAPI:
    """The app for one study directory. `admin_token` guards the admin endpoints."""
    if len(admin_token) < 8:
        raise ValueError("admin token must have at least 8 characters")
    app = FastAPI(title=f"emosteer study: {study.config.name}", docs_url=None, redoc_url=None,
                  openapi_url=None)
    cfg = study.config
    dbp = study.db_path

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        # Reject by declared length before reading; uvicorn refuses bodies longer than declared.
        if request.method in ("POST", "PUT", "PATCH"):
            length = request.headers.get("content-length")
            if length is None:
                return JSONResponse({"detail": "Content-Length required"}, status_code=411)
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                return JSONResponse({"detail": f"payload larger than {MAX_BODY_BYTES} bytes"},
                                    status_code=413)
        return await call_next(request)

    def _pid(cookie_pid: str | None, query_pid: str | None) -> str | None:
        pid = query_pid or cookie_pid
        return pid if pid and PID_RE.match(pid) else None

    def _state(pid: str | None) -> dict[str, Any]:
        base = {"study": cfg.name, "emotions": list(cfg.emotions), "tasks": list(cfg.tasks),
                "consent_text": cfg.consent_text}
        part = db.get_participant(dbp, pid) if pid else None
        if part is None:
            return {**base, "stage": "consent"}
        plan, done = part["plan"], part["n_answered"]
        base.update(pid=pid, progress={"done": done, "total": len(plan)})
        if not part["practice_done"]:
            return {**base, "stage": "practice",
                    "trial": {"trial_index": -1, "stimulus_id": study.practice_id,
                              "audio": f"/audio/{study.practice_id}"}}
        if done >= len(plan):
            return {**base, "stage": "done"}
        return {**base, "stage": "trial",
                "trial": {"trial_index": done, "stimulus_id": plan[done],
                          "audio": f"/audio/{plan[done]}"}}

    def _with_cookie(body: dict[str, Any], status: int = 200) -> JSONResponse:
        resp = JSONResponse(body, status_code=status)
        if body.get("pid"):
            resp.set_cookie(COOKIE, body["pid"], httponly=True, samesite="strict",
                            max_age=30 * 24 * 3600)
        return resp

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return PAGE

    @app.get("/api/state")
    def state(pid: str | None = Query(default=None, max_length=64),
              emosteer_pid: str | None = Cookie(default=None)) -> JSONResponse:
        return _with_cookie(_state(_pid(emosteer_pid, pid)))

    @app.post("/api/consent")
    def consent(pid: str | None = Query(default=None, max_length=64),
                emosteer_pid: str | None = Cookie(default=None)) -> JSONResponse:
        p = _pid(emosteer_pid, pid) or secrets.token_urlsafe(12)
        db.add_participant(dbp, p, lambda counts: plan_trials(study, p, counts))
        return _with_cookie(_state(p))

    @app.post("/api/practice")
    def practice(body: Practice, pid: str | None = Query(default=None, max_length=64),
                 emosteer_pid: str | None = Cookie(default=None)) -> JSONResponse:
        p = _pid(emosteer_pid, pid)
        if p is None or db.get_participant(dbp, p) is None:
            return JSONResponse({"detail": "no participant; give consent first"}, status_code=403)
        db.mark_practice_done(dbp, p)
        return _with_cookie(_state(p))

    @app.post("/api/answer")
    def answer(body: Answer, pid: str | None = Query(default=None, max_length=64),
               emosteer_pid: str | None = Cookie(default=None)) -> JSONResponse:
        p = _pid(emosteer_pid, pid)
        part = db.get_participant(dbp, p) if p else None
        if part is None:
            return JSONResponse({"detail": "no participant; give consent first"}, status_code=403)
        plan = part["plan"]
        if body.trial_index >= len(plan) or plan[body.trial_index] != body.stimulus_id:
            return JSONResponse({"detail": "trial_index/stimulus_id do not match this "
                                 "participant's plan"}, status_code=422)
        if body.trial_index > part["n_answered"]:
            return JSONResponse({"detail": "answer the trials in order"}, status_code=409)
        missing = [t for t, v in (("identify", body.emotion), ("intensity", body.intensity),
                                  ("naturalness", body.naturalness)) if t in cfg.tasks and v is None]
        if missing:
            return JSONResponse({"detail": f"missing answers for {missing}"}, status_code=422)
        if body.emotion is not None and body.emotion not in cfg.emotions:
            return JSONResponse({"detail": "emotion not offered in this study"}, status_code=422)
        stored = db.insert_answer(dbp, p, body.trial_index, body.stimulus_id, body.emotion,
                                  body.intensity, body.naturalness, body.rt_ms)
        return _with_cookie({**_state(p), "stored": stored})

    @app.get("/audio/{stimulus_id}")
    def audio(stimulus_id: str) -> Response:
        path = study.audio_path(stimulus_id)  # dict lookup by id; None for anything unknown
        if path is None:
            return JSONResponse({"detail": "unknown stimulus"}, status_code=404)
        return FileResponse(path, media_type=AUDIO_TYPES.get(path.suffix, "application/octet-stream"))

    def _authorized(authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        return secrets.compare_digest(authorization[7:].encode(), admin_token.encode())

    @app.get("/admin/progress")
    def admin_progress(authorization: str | None = Header(default=None)) -> Response:
        if not _authorized(authorization):
            return _unauthorized()
        return JSONResponse(db.progress(dbp))

    @app.get("/admin/export.csv")
    def admin_export(authorization: str | None = Header(default=None)) -> Response:
        if not _authorized(authorization):
            return _unauthorized()
        return Response(db.export_csv(dbp), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="answers.csv"'})

    return app


def serve(study: Study, host: str = "127.0.0.1", port: int = 8000,
          admin_token: str | None = None) -> None:
    """Run the app with uvicorn until interrupted (blocking)."""
    import uvicorn

    uvicorn.run(create_app(study, admin_token or secrets.token_urlsafe(16)), host=host,
                port=port, log_level="warning")


class BackgroundServer:
    """Run the app in a daemon thread on a free local port (notebooks, pilots, tests).

    with BackgroundServer(study, token) as url: ...   # url like http://127.0.0.1:PORT
    """

    def __init__(self, study: Study, admin_token: str, host: str = "127.0.0.1",
                 start_timeout_s: float = 20.0) -> None:
        self.study, self.token, self.host, self.timeout = study, admin_token, host, start_timeout_s

    def __enter__(self) -> str:
        import socket
        import threading
        import time

        import uvicorn

        with socket.socket() as s:
            s.bind((self.host, 0))
            port = s.getsockname()[1]
        config = uvicorn.Config(create_app(self.study, self.token), host=self.host, port=port,
                                log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + self.timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"study server did not start on {self.host}:{port}")
            time.sleep(0.05)
        return f"http://{self.host}:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=self.timeout)
