"""Which clips `emosteer evaluate` steers: held-out speakers' source-emotion clips, each paired
with the same speaker's real target-emotion recording, and their ids and reference correlates;
the real clips the emotion judge is trained (other speakers) and calibrated (held-out speakers)
on, and each clip's reference transcript."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from emosteer.audio import SAMPLE_RATE, load_audio
from emosteer.corpora.formats import match_speakers
from emosteer.corpora.transcripts import language, transcript
from emosteer.errors import AudioError, ConfigError
from emosteer.prosody.correlates import acoustic_correlates
from emosteer.steering.steer import MODES, mode_config

log = logging.getLogger(__name__)


@dataclass
class Clip:
    id: str
    row: dict
    target_row: dict | None  # the paired real target-emotion recording, if any


def delta_key(delta: float) -> str:
    return f"{delta:+.2f}"


def clip_id(utt_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", utt_id).strip("_.-")


def resolve_speakers(requested, available) -> tuple[str, ...]:
    """The store's speakers that `--speakers` names ('07', 'ravdess_07', '01-06'): the rule
    of `emosteer.corpora.match_speakers`, shared with train-mapper."""
    return match_speakers(requested, available, "--speakers")


def select_clips(index, speakers, source, target, per_speaker, seed) -> list[Clip]:
    """Source-emotion clips of each held-out speaker, each paired with a real target-emotion
    recording of the same speaker: same sentence (and intensity) when the corpus has one."""
    rng = np.random.default_rng(seed)
    clips = []
    for spk in speakers:
        rows = sorted((r for r in index if r["speaker"] == spk and r["emotion"] == source),
                      key=lambda r: r["utt_id"])
        targets = [r for r in index if r["speaker"] == spk and r["emotion"] == target]
        if not rows:
            raise ConfigError(f"speaker {spk}: no {source!r} clips in the store")
        if per_speaker is not None and per_speaker < len(rows):
            pick = sorted(rng.choice(len(rows), per_speaker, replace=False))
            rows = [rows[i] for i in pick]
        for r in rows:
            def rank(t, r=r):
                return (t.get("sentence") != r.get("sentence"),
                        t.get("intensity") != r.get("intensity"), t["utt_id"])
            best = min(targets, key=rank) if targets else None
            clips.append(Clip(clip_id(r["utt_id"]), r, best))
    return clips


def speaker_reference(index, speaker, emotion) -> list[dict]:
    """Correlates of every real clip of one speaker and emotion; unreadable clips skipped."""
    out = []
    for r in index:
        if r["speaker"] == speaker and r["emotion"] == emotion:
            try:
                out.append(acoustic_correlates(load_audio(r["path"]), SAMPLE_RATE, r["path"]))
            except AudioError as e:
                log.warning("%s; skipped as a reference", e)
    return out


def real_rows(index, speakers, emotions, held_out: bool) -> list[dict]:
    """Index rows of `emotions` whose speaker is in `speakers` (held_out=True: the calibration
    clips) or not (held_out=False: the training clips), sorted by utt_id."""
    speakers, emotions = set(speakers), set(emotions)
    return sorted((r for r in index if r.get("emotion") in emotions
                   and (r.get("speaker") in speakers) == held_out), key=lambda r: r["utt_id"])


def reference_text(row) -> tuple[str | None, str]:
    """(transcript, where it came from) for an index row: the row's own `text` (a CSV
    manifest's text column) -> "manifest"; the corpus's fixed text for its sentence code ->
    "corpus"; else (None, "none"), and the ASR judge falls back to the ASR of the input."""
    if row is None:
        return None, "none"
    text = (row.get("text") or "").strip() if isinstance(row.get("text"), str) else ""
    if text:
        return text, "manifest"
    fixed = transcript(row.get("corpus") or "", row.get("sentence"))
    return (fixed, "corpus") if fixed else (None, "none")


def corpus_language(rows, default: str = "en") -> str:
    """The one language of the rows' corpora (transcripts.language), else `default`."""
    langs = {language(r.get("corpus") or "") for r in rows} - {None}
    return langs.pop() if len(langs) == 1 else default


def check_sweep(speakers, deltas, modes, clips_per_speaker, frames: str = "all") -> None:
    """The checks every held-out sweep shares: speakers named, deltas finite, each mode a
    "mode" or "mode:decode" that steering knows, a positive clip count."""
    if not speakers:
        raise ConfigError("--speakers: name at least one held-out speaker")
    if not deltas or not all(np.isfinite(d) for d in deltas):
        raise ConfigError(f"--deltas {deltas}: need finite numbers")
    if not modes:
        raise ConfigError(f"--modes: expected some of {', '.join(MODES)}")
    for spec in modes:
        mode_config(spec, frames=frames)  # raises on an unknown mode or decoder
    if clips_per_speaker is not None and clips_per_speaker < 1:
        raise ConfigError(f"--clips-per-speaker {clips_per_speaker}: must be >= 1")
