"""The listening-test web app (FastAPI; the plain HTML/JS page is in page.py).

Flow: consent -> one practice trial (not stored) -> the participant's trials -> thanks.
The server mints every participant id; it lives in a cookie and may also be given as ?pid=...
so a reload or a link resumes where the participant left off. Every answer is committed before
the next trial is served. Audio is looked up by stimulus id in study.json only: no path ever
comes from a request. Admin endpoints (/admin/progress, /admin/export.csv) need the start-up
token as `Authorization: Bearer TOKEN` (scheme name in any case); anything else gets a bare 401.

Hostile input: request bodies are capped by the bytes actually read (BodyLimit), JSON is parsed
strictly (no NaN, Infinity or overflowing numbers) and validated with strict types, and new
consents are rate-limited per client address.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import threading
import time
from typing import Any, NoReturn, TypeVar

from fastapi import Cookie, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emosteer.errors import ConfigError, EmosteerError
from emosteer.study import db
from emosteer.study.design import Study, plan_trials
from emosteer.study.page import PAGE

MAX_BODY_BYTES = 4096  # an answer is ~200 bytes of JSON; anything larger is not ours
PID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
PID_BYTES = 12  # 96 random bits (16 url-safe characters): not guessable, matches PID_RE
COOKIE = "emosteer_pid"
AUDIO_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg",
               ".mp3": "audio/mpeg"}
SCALE = (1, 5)  # intensity and naturalness (MOS) are 1-5 ratings
ModelT = TypeVar("ModelT", bound=BaseModel)
# Consents per client address: a lab session of up to 60 seats behind one NAT (or a reverse
# proxy) may all press Start at once; after that one new participant per 10 s per address is
# far above any human pace, yet caps a script at 360 an hour instead of thousands a minute.
CONSENT_BURST = 60
CONSENT_REFILL_S = 10.0
# The limiter remembers addresses only until their allowance refills (at most
# CONSENT_BURST * CONSENT_REFILL_S = 10 min); this bounds its memory when many addresses call.
MAX_TRACKED_ADDRESSES = 10_000


class StudyRequestError(EmosteerError):
    """A request the study server refuses; `status` and `detail` become the HTTP answer."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(detail if isinstance(detail, str) else json.dumps(detail))
        self.status, self.detail = status, detail


class Answer(BaseModel):
    # strict: "3", true and 3.0 are not the rating 3 (true would be stored as 1).
    model_config = ConfigDict(extra="forbid", strict=True)
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


class BodyLimit:
    """ASGI middleware: refuse a request whose body exceeds `max_bytes`, counting the bytes
    actually received, so neither a small Content-Length nor chunked framing can smuggle more.

    A request that carries both Content-Length and Transfer-Encoding is refused outright: the
    two disagree about where the body ends (RFC 9112 section 6.1), the classic smuggling setup.
    The body (at most max_bytes) is buffered here and replayed to the app."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lengths = [v for k, v in scope["headers"] if k.lower() == b"content-length"]
        encoded = any(k.lower() == b"transfer-encoding" for k, _ in scope["headers"])
        refusal = None
        if lengths and encoded:
            refusal = (400, "Content-Length and Transfer-Encoding together are not accepted")
        elif len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
            refusal = (400, "malformed Content-Length")
        elif lengths and int(lengths[0]) > self.max_bytes:
            refusal = (413, f"payload larger than {self.max_bytes} bytes")
        if refusal is not None:
            await _refuse(scope, receive, send, *refusal)
            return
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nobody to answer
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await _refuse(scope, receive, send, 413,
                              f"payload larger than {self.max_bytes} bytes")
                return
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(parts), False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:  # later calls wait for the disconnect, as the server's receive does
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _refuse(scope: dict, receive: Any, send: Any, status: int, detail: str) -> None:
    # Connection: close, because the unread rest of a refused body must not be parsed as the
    # next request on a kept-alive connection.
    await JSONResponse({"detail": detail}, status_code=status,
                       headers={"Connection": "close"})(scope, receive, send)


def _refuse_constant(name: str) -> NoReturn:
    raise StudyRequestError(422, f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses to inf
        raise StudyRequestError(422, f"number {text[:40]} is out of range")
    return value


def parse_json(raw: bytes) -> Any:
    """Strict JSON: NaN, Infinity and numbers beyond a double are StudyRequestError (422)."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as e:  # "[[[[..." nests deeper than the parser's stack
        raise StudyRequestError(422, "body nests too deeply to be an answer") from e
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise StudyRequestError(422, f"body is not valid JSON ({e})") from e


async def _json_body(request: Request) -> Any:
    # Only application/json: a cross-site form cannot send it without a CORS preflight.
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise StudyRequestError(415, "send the body as application/json")
    return parse_json(await request.body())


def _errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Never echo the input (or the ctx): it may hold values JSON cannot carry, and it is the
    # attacker's own text anyway.
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in errors]


def validate(model: type[ModelT], data: Any) -> ModelT:
    """`data` as `model`, or a 422 StudyRequestError that lists the fields (not their values)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise StudyRequestError(422, _errors(e.errors(include_url=False))) from e


class ConsentLimiter:
    """Token bucket per client address: `burst` consents at once, then one per `refill_s`."""

    def __init__(self, burst: int = CONSENT_BURST, refill_s: float = CONSENT_REFILL_S,
                 max_tracked: int = MAX_TRACKED_ADDRESSES) -> None:
        if burst < 1 or refill_s <= 0:
            raise ConfigError(f"consent limit: burst must be >= 1 and refill_s > 0, got "
                              f"{burst} and {refill_s}")
        self.burst, self.refill_s, self.max_tracked = burst, refill_s, max_tracked
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, at)
        self._lock = threading.Lock()  # endpoints run in a thread pool

    def _tokens(self, address: str, now: float) -> float:
        tokens, at = self._buckets.get(address, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) / self.refill_s)

    def retry_after_s(self, address: str, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        with self._lock:
            missing = 1.0 - self._tokens(address, now)
        return max(1, math.ceil(missing * self.refill_s))

    def allow(self, address: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            if address not in self._buckets and len(self._buckets) >= self.max_tracked:
                self._buckets = {a: b for a, b in self._buckets.items()
                                 if self._tokens(a, now) < self.burst}
                if len(self._buckets) >= self.max_tracked:
                    return False  # too many addresses inside one refill horizon
            tokens = self._tokens(address, now)
            if tokens < 1.0:
                self._buckets[address] = (tokens, now)
                return False
            self._buckets[address] = (tokens - 1.0, now)
            return True


def create_app(study: Study, admin_token: str, consent_burst: int = CONSENT_BURST,
               consent_refill_s: float = CONSENT_REFILL_S) -> FastAPI:
    """The app for one study directory. `admin_token` guards the admin endpoints; each client
    address may consent `consent_burst` times at once, then once per `consent_refill_s`."""
    if len(admin_token) < 8:
        raise ConfigError("admin token must have at least 8 characters")
    app = FastAPI(title=f"emosteer study: {study.config.name}", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    cfg = study.config
    dbp = study.db_path
    limiter = ConsentLimiter(consent_burst, consent_refill_s)

    @app.exception_handler(StudyRequestError)
    async def refused(request: Request, exc: StudyRequestError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input, and an inf in it made rendering the 422 fail.
        return JSONResponse({"detail": _errors(list(exc.errors()))}, status_code=422)

    def _pid(cookie_pid: str | None, query_pid: str | None) -> str | None:
        """The participant this request speaks for: the link's id, else the cookie's. Only ids
        the server minted count, so a stale or invented ?pid= cannot shadow the cookie."""
        for pid in (query_pid, cookie_pid):
            if pid and PID_RE.match(pid) and db.get_participant(dbp, pid) is not None:
                return pid
        return None

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
    def consent(request: Request, pid: str | None = Query(default=None, max_length=64),
                emosteer_pid: str | None = Cookie(default=None)) -> JSONResponse:
        known = _pid(emosteer_pid, pid)
        if known is not None:
            # A double click or a reload of a consented session resumes it; nothing is created.
            return _with_cookie(_state(known))
        # Any other id the client sends is ignored: an id chosen by the client would choose its
        # trial order (plans are seeded by the id) and could be guessed by someone else.
        address = request.client.host if request.client else ""
        if not limiter.allow(address):
            wait = limiter.retry_after_s(address)
            return JSONResponse({"detail": f"too many new participants from this address; "
                                 f"retry in {wait} s"}, status_code=429,
                                headers={"Retry-After": str(wait)})
        p = secrets.token_urlsafe(PID_BYTES)
        db.add_participant(dbp, p, lambda counts: plan_trials(study, p, counts))
        return _with_cookie(_state(p))

    @app.post("/api/practice")
    def practice(data: Any = Depends(_json_body),
                 pid: str | None = Query(default=None, max_length=64),
                 emosteer_pid: str | None = Cookie(default=None)) -> JSONResponse:
        validate(Practice, data)
        p = _pid(emosteer_pid, pid)
        if p is None:
            return JSONResponse({"detail": "no participant; give consent first"}, status_code=403)
        db.mark_practice_done(dbp, p)
        return _with_cookie(_state(p))

    @app.post("/api/answer")
    def answer(data: Any = Depends(_json_body),
               pid: str | None = Query(default=None, max_length=64),
               emosteer_pid: str | None = Cookie(default=None)) -> JSONResponse:
        body = validate(Answer, data)
        p = _pid(emosteer_pid, pid)
        part = db.get_participant(dbp, p) if p else None
        if part is None:
            return JSONResponse({"detail": "no participant; give consent first"}, status_code=403)
        if not part["practice_done"]:
            return JSONResponse({"detail": "do the practice trial first"}, status_code=409)
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
        # The auth scheme name is case-insensitive (RFC 9110 section 11.1): "bearer" is Bearer.
        scheme, _, credentials = (authorization or "").partition(" ")
        credentials = credentials.lstrip(" ")
        if scheme.lower() != "bearer" or not credentials:
            return False
        return secrets.compare_digest(credentials.encode(), admin_token.encode())

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
                 start_timeout_s: float = 20.0, **app_options: Any) -> None:
        self.study, self.token, self.host, self.timeout = study, admin_token, host, start_timeout_s
        self.app_options = app_options  # create_app's keywords, e.g. consent_burst

    def __enter__(self) -> str:
        import socket

        import uvicorn

        with socket.socket() as s:
            s.bind((self.host, 0))
            port = s.getsockname()[1]
        app = create_app(self.study, self.token, **self.app_options)
        config = uvicorn.Config(app, host=self.host, port=port, log_level="warning",
                                access_log=False)
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
