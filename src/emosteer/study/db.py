"""The study's SQLite database (WAL mode).

One short-lived connection per call: sqlite3 connections must not cross threads, and the web
server answers from a thread pool. WAL lets readers (admin progress) run beside the writer, and
with synchronous=FULL every committed answer survives a SIGKILL or power cut. The
UNIQUE(participant, trial_index) constraint makes a re-submitted answer a no-op, not a duplicate.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from emosteer.errors import ArtifactError

BUSY_TIMEOUT_S = 30.0  # writers queue behind one another; 50 concurrent participants need < 1 s
# A 20-trial session of few-second clips takes about 10 minutes; 30 minutes without a consent
# or an answer means the participant has left. They may still come back and resume; balancing
# just stops holding their unanswered trials for them.
ABANDON_AFTER_S = 30 * 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS participants (
    pid TEXT PRIMARY KEY,
    created REAL NOT NULL,
    consent INTEGER NOT NULL DEFAULT 0,
    practice_done INTEGER NOT NULL DEFAULT 0,
    plan TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS exposure (
    stimulus_id TEXT PRIMARY KEY,
    n INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pid TEXT NOT NULL REFERENCES participants(pid),
    trial_index INTEGER NOT NULL,
    stimulus_id TEXT NOT NULL,
    emotion TEXT,
    intensity INTEGER,
    naturalness INTEGER,
    rt_ms INTEGER,
    created REAL NOT NULL,
    UNIQUE(pid, trial_index)
);
"""
ANSWER_COLUMNS = ("pid", "trial_index", "stimulus_id", "emotion", "intensity", "naturalness",
                  "rt_ms", "created")


@contextlib.contextmanager
def connect(path: str | Path) -> Iterator[sqlite3.Connection]:
    """A connection that commits on success, rolls back on error and is always closed."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: study database not found (run `emosteer study create`)")
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        yield conn
    except sqlite3.DatabaseError as e:
        raise ArtifactError(f"{path}: database error ({e})") from e
    finally:
        conn.close()


def init_db(path: str | Path) -> None:
    path = Path(path)
    path.touch(exist_ok=True)
    with connect(path) as conn:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise ArtifactError(f"{path}: could not enable WAL mode (got {mode})")
        conn.executescript(SCHEMA)


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    # BEGIN IMMEDIATE takes the write lock up front, so read-then-write sequences (exposure
    # counts -> plan) cannot interleave between two new participants.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def get_participant(path: str | Path, pid: str) -> dict[str, Any] | None:
    with connect(path) as conn:
        row = conn.execute("SELECT * FROM participants WHERE pid=?", (pid,)).fetchone()
        if row is None:
            return None
        n = conn.execute("SELECT COUNT(*) FROM answers WHERE pid=?", (pid,)).fetchone()[0]
    out = dict(row)
    out["plan"] = json.loads(out["plan"])
    out["n_answered"] = int(n)
    return out


def balance_counts(conn: sqlite3.Connection, now: float,
                   abandon_after_s: float = ABANDON_AFTER_S) -> dict[str, int]:
    """Per stimulus: the participants who rated it, plus the live ones who have yet to.

    Counting answers, not assignments, means consents that never answer (abandoned sessions,
    a script) stop steering the balance once they fall silent for `abandon_after_s`. Live
    participants' pending trials still count, so a crowd that consents at once is spread
    evenly before anyone has answered. A repeat is one rating, like one exposure."""
    counts = {r["stimulus_id"]: int(r["n"]) for r in conn.execute(
        "SELECT stimulus_id, COUNT(DISTINCT pid) AS n FROM answers GROUP BY stimulus_id")}
    # Last activity: the consent, or the latest answer (answers(pid, ...) is indexed).
    live = ("SELECT pid, plan FROM participants p WHERE MAX(p.created, COALESCE("
            "(SELECT MAX(a.created) FROM answers a WHERE a.pid = p.pid), 0)) >= ?")
    cutoff = (now - abandon_after_s,)
    answered: dict[str, set[str]] = {}
    for r in conn.execute(f"SELECT DISTINCT a.pid, a.stimulus_id FROM answers a "
                          f"WHERE a.pid IN (SELECT pid FROM ({live}))", cutoff):
        answered.setdefault(r["pid"], set()).add(r["stimulus_id"])
    for r in conn.execute(live, cutoff):
        for sid in set(json.loads(r["plan"])) - answered.get(r["pid"], set()):
            counts[sid] = counts.get(sid, 0) + 1
    return counts


def add_participant(path: str | Path, pid: str,
                    planner: Callable[[dict[str, int]], list[str]],
                    abandon_after_s: float = ABANDON_AFTER_S) -> dict[str, Any]:
    """Create `pid` (consented) with the plan `planner(balance counts)`; existing pid: unchanged."""
    with connect(path) as conn, _immediate(conn):
        if conn.execute("SELECT 1 FROM participants WHERE pid=?", (pid,)).fetchone() is None:
            now = time.time()
            plan = planner(balance_counts(conn, now, abandon_after_s))
            conn.execute("INSERT INTO participants(pid, created, consent, plan) VALUES (?,?,1,?)",
                         (pid, now, json.dumps(plan)))
            # A ledger of assignments for the record; planning reads balance_counts instead.
            # Repeats are consistency checks, not extra data: count each item once.
            for sid in sorted(set(plan)):
                conn.execute("INSERT INTO exposure(stimulus_id, n) VALUES (?, 1) "
                             "ON CONFLICT(stimulus_id) DO UPDATE SET n = n + 1", (sid,))
    found = get_participant(path, pid)
    assert found is not None  # just inserted inside a committed transaction
    return found


def mark_practice_done(path: str | Path, pid: str) -> None:
    with connect(path) as conn:
        conn.execute("UPDATE participants SET practice_done=1 WHERE pid=?", (pid,))


def insert_answer(path: str | Path, pid: str, trial_index: int, stimulus_id: str,
                  emotion: str | None, intensity: int | None, naturalness: int | None,
                  rt_ms: int | None) -> bool:
    """Commit one answer; True if stored, False if (pid, trial_index) was already answered."""
    with connect(path) as conn:
        cur = conn.execute(
            "INSERT OR IGNORE INTO answers(pid, trial_index, stimulus_id, emotion, intensity, "
            "naturalness, rt_ms, created) VALUES (?,?,?,?,?,?,?,?)",
            (pid, trial_index, stimulus_id, emotion, intensity, naturalness, rt_ms, time.time()))
        return cur.rowcount == 1


def fetch_answers(path: str | Path) -> list[dict[str, Any]]:
    with connect(path) as conn:
        rows = conn.execute(f"SELECT {', '.join(ANSWER_COLUMNS)} FROM answers "
                            "ORDER BY pid, trial_index").fetchall()
    return [dict(r) for r in rows]


def progress(path: str | Path) -> dict[str, Any]:
    """Counts for the admin page: participants, answers, finished participants, per stimulus."""
    with connect(path) as conn:
        parts = conn.execute("SELECT pid, plan FROM participants").fetchall()
        done = {r["pid"]: r["n"] for r in conn.execute(
            "SELECT pid, COUNT(*) AS n FROM answers GROUP BY pid")}
        per_stim = {r["stimulus_id"]: r["n"] for r in conn.execute(
            "SELECT stimulus_id, COUNT(*) AS n FROM answers GROUP BY stimulus_id")}
    finished = sum(1 for p in parts if done.get(p["pid"], 0) >= len(json.loads(p["plan"])))
    return {"participants": len(parts), "finished": finished,
            "answers": int(sum(done.values())), "answers_per_stimulus": per_stim}


def export_csv(path: str | Path) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(ANSWER_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(fetch_answers(path))
    return buf.getvalue()
