"""Corpus adapters: turn a directory of emotional speech (or a CSV manifest) into Utterances.

Each adapter parses a corpus's official file naming:

- CREMA-D `1001_DFA_ANG_XX.wav`: actor, sentence code, emotion (ANG DIS FEA HAP NEU SAD), level.
- RAVDESS `03-01-05-02-01-01-12.wav`: modality, vocal channel, emotion, intensity, statement,
  repetition, actor. Speech only (vocal channel 01); .wav or .flac, usually in Actor_XX/.
- EmoDB `03a01Wa.wav`: speaker, text code, emotion letter (German initials), version.
- TESS `OAF_back_angry.wav`: speaker (OAF/YAF), word, emotion (ps = pleasant surprise).
- csv: a manifest with columns path, speaker, emotion [, sentence][, text]; relative paths are
  resolved against the CSV's folder. `text` is the transcript (the ASR judge's reference).

Labels are normalised to EMOTIONS. Badly named files are reported in one warning and skipped;
a corpus with no usable file is a CorpusError.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from emosteer.audio import AUDIO_SUFFIXES
from emosteer.errors import ConfigError, CorpusError

log = logging.getLogger(__name__)

EMOTIONS = ("angry", "calm", "neutral", "happy", "sad", "fear", "disgust", "surprise", "boredom")
FORMATS = ("cremad", "ravdess", "emodb", "tess", "csv")
MAX_LISTED = 10  # skipped files named in the warning; the rest are counted

_ALIASES = {
    "angry": ("anger", "ang", "mad"),
    "calm": (),
    "neutral": ("neu", "neutrality"),
    "happy": ("happiness", "hap", "joy", "happily"),
    "sad": ("sadness", "sadly"),
    "fear": ("fearful", "fea", "afraid", "fearfully", "anxiety"),
    "disgust": ("disgusted", "dis"),
    "surprise": ("surprised", "sur", "ps", "pleasant_surprise", "pleasant surprise",
                 "pleasant_surprised"),
    "boredom": ("bored",),
}
_LOOKUP = {alias: canon for canon, al in _ALIASES.items() for alias in (canon, *al)}


@dataclass(frozen=True)
class Utterance:
    """One labelled recording. `utt_id` is unique and stable: `<corpus>/<file stem>`, or for a
    manifest's files that share a stem, `<corpus>/<path from the manifest's folder>` (see
    `read_manifest`)."""

    utt_id: str
    path: Path
    speaker: str
    emotion: str
    corpus: str
    sentence: str | None = None
    intensity: str | None = None
    text: str | None = None  # the transcript, when the manifest gives one (CSV `text` column)


def normalize_emotion(label: str) -> str:
    """Map a corpus label ('ANG', 'fearful', 'ps', ...) to one of EMOTIONS; CorpusError if unknown."""
    key = str(label).strip().lower().replace("-", "_")
    try:
        return _LOOKUP[key]
    except KeyError:
        raise CorpusError(f"unknown emotion label {label!r} (known: {', '.join(EMOTIONS)})") from None


class _BadName(ValueError):
    """A file whose name does not follow the corpus's convention (reported, then skipped)."""


# --- per-corpus name parsers: stem -> Utterance fields ----------------------------------------

_RAVDESS = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_RAVDESS_EMO = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                "06": "fear", "07": "disgust", "08": "surprise"}
_RAVDESS_INTENSITY = {"01": "normal", "02": "strong"}


def _ravdess(stem: str) -> dict:
    m = _RAVDESS.match(stem)
    if not m:
        raise _BadName("expected MM-VV-EE-II-SS-RR-AA")
    modality, channel, emo, inten, stmt, _rep, actor = m.groups()
    if modality != "03":
        raise _BadName(f"modality {modality} is not audio-only (03)")
    if channel != "01":
        raise _BadName(f"vocal channel {channel} is song, not speech (01)")
    if emo not in _RAVDESS_EMO or inten not in _RAVDESS_INTENSITY or stmt not in ("01", "02"):
        raise _BadName("emotion, intensity or statement code out of range")
    return dict(speaker=f"ravdess_{actor}", emotion=_RAVDESS_EMO[emo], sentence=stmt,
                intensity=_RAVDESS_INTENSITY[inten])


_CREMAD = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
_CREMAD_SENTENCES = {"IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI",
                     "WSI"}
_CREMAD_EMO = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral",
               "SAD": "sad"}
_CREMAD_LEVEL = {"LO": "low", "MD": "medium", "HI": "high", "XX": None}


def _cremad(stem: str) -> dict:
    m = _CREMAD.match(stem)
    if not m:
        raise _BadName("expected AAAA_SSS_EEE_LL")
    actor, sentence, emo, level = m.groups()
    if sentence not in _CREMAD_SENTENCES or emo not in _CREMAD_EMO or level not in _CREMAD_LEVEL:
        raise _BadName("unknown sentence, emotion or level code")
    return dict(speaker=f"cremad_{actor}", emotion=_CREMAD_EMO[emo], sentence=sentence,
                intensity=_CREMAD_LEVEL[level])


_EMODB = re.compile(r"^(\d\d)([a-z]\d\d)([WLEAFTN])([a-z])$")
_EMODB_EMO = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy",
              "T": "sad", "N": "neutral"}


def _emodb(stem: str) -> dict:
    m = _EMODB.match(stem)
    if not m:
        raise _BadName("expected SStttEv (e.g. 03a01Wa)")
    speaker, text, emo, _version = m.groups()
    return dict(speaker=f"emodb_{speaker}", emotion=_EMODB_EMO[emo], sentence=text)


# The distributed TESS has one file spelled "OA_bite_neutral": treat OA as OAF.
_TESS = re.compile(r"^(OAF|YAF|OA)_(.+)_(angry|disgust|fear|happy|neutral|ps|sad)$", re.IGNORECASE)


def _tess(stem: str) -> dict:
    m = _TESS.match(stem)
    if not m:
        raise _BadName("expected OAF|YAF_word_emotion")
    speaker, word, emo = m.groups()
    speaker = "OAF" if speaker.upper() == "OA" else speaker.upper()
    return dict(speaker=f"tess_{speaker}", emotion=normalize_emotion(emo), sentence=word.lower())


_PARSERS: dict[str, Callable[[str], dict]] = {
    "ravdess": _ravdess, "cremad": _cremad, "emodb": _emodb, "tess": _tess,
}


def _report_skipped(root: Path, skipped: list[tuple[Path, str]]) -> None:
    if not skipped:
        return
    shown = "; ".join(f"{p.name}: {why}" for p, why in skipped[:MAX_LISTED])
    more = f" (and {len(skipped) - MAX_LISTED} more)" if len(skipped) > MAX_LISTED else ""
    log.warning("%s: skipped %d file(s): %s%s", root, len(skipped), shown, more)


def _scan_dir(root: Path, fmt: str) -> tuple[list[Utterance], list[tuple[Path, str]]]:
    parse = _PARSERS[fmt]
    utts: dict[str, Utterance] = {}
    skipped: list[tuple[Path, str]] = []
    files = []
    # Absolute but not symlink-resolved: stores record paths the user recognises.
    for dirpath, dirnames, filenames in os.walk(root.absolute()):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    for path in files:
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            continue  # READMEs, spreadsheets, videos: not part of the audio corpus
        try:
            fields = parse(path.stem)
        except (_BadName, CorpusError) as e:
            skipped.append((path, str(e)))
            continue
        utt_id = f"{fmt}/{path.stem}"
        if utt_id in utts:
            skipped.append((path, f"duplicate of {utts[utt_id].path}"))
            continue
        utts[utt_id] = Utterance(utt_id=utt_id, path=path, corpus=fmt, **fields)
    return sorted(utts.values(), key=lambda u: u.utt_id), skipped


def _manifest_path(root: Path) -> Path:
    if root.is_dir():
        candidate = root / "manifest.csv"
        if not candidate.is_file():
            raise CorpusError(f"{root}: is a directory without manifest.csv; pass the CSV file")
        return candidate
    return root


def _manifest_ids(entries: list[tuple[str, Path]], base: Path) -> list[str]:
    """Unique ids for distinct (corpus, file) pairs. A stem unique within its corpus keeps the
    folder adapters' `<corpus>/<stem>` (so stores of RAVDESS- or CREMA-D-named clips stay
    compatible); stems shared by several files (spk1/000.flac, spk2/000.flac) take the path
    from the manifest's folder without the suffix (with it where only the suffix differs), and
    files outside that folder the stem plus a hash of the absolute path."""
    def count(keys) -> dict:
        n: dict = {}
        for k in keys:
            n[k] = n.get(k, 0) + 1
        return n

    def relative(audio: Path) -> str | None:
        try:
            return audio.relative_to(base).as_posix()
        except ValueError:
            return None

    def without_suffix(rel: str, audio: Path) -> str:
        return rel[:len(rel) - len(audio.suffix)] if audio.suffix else rel

    stems = count((corpus, audio.stem) for corpus, audio in entries)
    rels = {audio: relative(audio) for _, audio in entries}
    bare = count((corpus, without_suffix(rels[audio], audio)) for corpus, audio in entries
                 if stems[corpus, audio.stem] > 1 and rels[audio] is not None)
    ids = []
    for corpus, audio in entries:
        rel = rels[audio]
        if stems[corpus, audio.stem] == 1:
            ids.append(f"{corpus}/{audio.stem}")
        elif rel is None:
            digest = hashlib.sha1(str(audio).encode("utf-8")).hexdigest()[:8]
            ids.append(f"{corpus}/{audio.stem}-{digest}")
        else:
            short = without_suffix(rel, audio)
            ids.append(f"{corpus}/{short if bare[corpus, short] == 1 else rel}")
    return ids


def read_manifest(path: str | os.PathLike) -> tuple[list[Utterance], list[tuple[Path, str]]]:
    """Parse a CSV manifest (path, speaker, emotion[, sentence][, corpus|dataset][, intensity]
    [, text]).

    utt_id is `<corpus>/<file stem>` (corpus from a corpus/dataset column, else 'csv') when the
    stem is unique within the corpus, else `<corpus>/<path relative to the manifest's folder,
    without its suffix>` (see `_manifest_ids`): every listed file gets its own id.
    Returns (utterances sorted by utt_id, skipped rows as (path, reason)). Rows with a missing
    file, an empty field or an unknown emotion are skipped, and so is a row listing a file an
    earlier row already listed (a duplicate, reported); structural problems are CorpusErrors.
    """
    path = _manifest_path(Path(path))
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError as e:
        raise CorpusError(f"{path}: manifest not found") from e
    except OSError as e:
        raise CorpusError(f"{path}: cannot read manifest ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: manifest is not UTF-8 text ({e.reason} at byte {e.start})") from e
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fieldnames = reader.fieldnames or []
        rows = list(reader)
    except csv.Error as e:
        raise CorpusError(f"{path}: malformed CSV ({e})") from e
    header = {h.strip().lower() for h in fieldnames if isinstance(h, str)}
    missing = {"path", "speaker", "emotion"} - header
    if missing:
        raise CorpusError(f"{path}: manifest needs columns path, speaker, emotion; missing "
                          f"{', '.join(sorted(missing))}")
    base = Path(os.path.normpath(path.parent.absolute()))
    kept: dict[tuple[str, Path], tuple[int, dict]] = {}  # (corpus, file) -> (line, row)
    skipped: list[tuple[Path, str]] = []
    for line, raw in enumerate(rows, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items()
               if isinstance(k, str) and isinstance(v, str)}
        where = Path(f"{path.name}:{line}")
        if not row.get("path") or not row.get("speaker") or not row.get("emotion"):
            skipped.append((where, "empty path, speaker or emotion"))
            continue
        try:
            emotion = normalize_emotion(row["emotion"])
            audio = Path(os.path.normpath((base / row["path"]).absolute()))
            if not audio.is_file():
                skipped.append((audio, f"line {line}: file not found"))
                continue
        except (CorpusError, OSError, ValueError) as e:
            skipped.append((where, str(e)))
            continue
        corpus = row.get("corpus") or row.get("dataset") or "csv"
        if (corpus, audio) in kept:
            skipped.append((where, f"duplicate: {audio} is already listed on line "
                                   f"{kept[corpus, audio][0]}"))
            continue
        kept[corpus, audio] = (line, {**row, "emotion": emotion})
    # Same id scheme as the folder adapters where stems are unique, so a manifest and a scan
    # of one corpus agree; files that share a stem still get one id each.
    ids = _manifest_ids(list(kept), base)
    utts = [Utterance(utt_id=utt_id, path=audio, speaker=row["speaker"],
                      emotion=row["emotion"], corpus=corpus,
                      sentence=row.get("sentence") or None,
                      intensity=row.get("intensity") or None, text=row.get("text") or None)
            for utt_id, ((corpus, audio), (_, row)) in zip(ids, kept.items(), strict=True)]
    return sorted(utts, key=lambda u: u.utt_id), skipped


def scan_corpus(root: str | os.PathLike, format: str,
                skipped: list[tuple[Path, str]] | None = None) -> list[Utterance]:
    """All usable utterances of the corpus at `root` (a directory, or a CSV for format 'csv').

    Sorted by utt_id. Badly named files, duplicates and a manifest's missing files are logged
    in one warning and skipped (and appended to `skipped` as (path, reason), for a batch
    command's count); CorpusError if `root` is missing, `format` unknown, or nothing usable is
    found."""
    root = Path(root)
    if format not in FORMATS:
        raise CorpusError(f"unknown corpus format {format!r} (choose from {', '.join(FORMATS)})")
    if not root.exists():
        raise CorpusError(f"{root}: not found")
    if format == "csv":
        utts, passed = read_manifest(root)
    else:
        if not root.is_dir():
            raise CorpusError(f"{root}: not a directory (format {format} scans a corpus folder)")
        utts, passed = _scan_dir(root, format)
    _report_skipped(root, passed)
    if skipped is not None:
        skipped.extend(passed)
    if not utts:
        raise CorpusError(f"{root}: no usable {format} audio files found"
                          + (f" ({len(passed)} skipped)" if passed else ""))
    return utts


def count_table(utts: list[Utterance]) -> dict:
    """Speaker x emotion counts: {'speakers': [...], 'emotions': [...], 'counts': {spk: {emo: n}}}.

    Emotions are listed in EMOTIONS order, only those present."""
    speakers = sorted({u.speaker for u in utts})
    present = {u.emotion for u in utts}
    emotions = [e for e in EMOTIONS if e in present]
    counts = {s: {e: 0 for e in emotions} for s in speakers}
    for u in utts:
        counts[u.speaker][u.emotion] += 1
    return {"speakers": speakers, "emotions": emotions, "counts": counts, "total": len(utts)}


def format_table(table: dict) -> str:
    """Plain-text rendering of `count_table`, with row and column totals."""
    emotions, speakers = table["emotions"], table["speakers"]
    first = max([len("speaker"), len("total")] + [len(s) for s in speakers])
    widths = [max(len(e), 3) for e in emotions]
    header = "speaker".ljust(first) + "".join(f"  {e:>{w}}" for e, w in zip(emotions, widths, strict=True))
    lines = [header + "  total"]
    for s in speakers:
        row = table["counts"][s]
        lines.append(s.ljust(first) + "".join(f"  {row[e]:>{w}}" for e, w in zip(emotions, widths, strict=True))
                     + f"  {sum(row.values()):>5}")
    col = [sum(table["counts"][s][e] for s in speakers) for e in emotions]
    lines.append("total".ljust(first) + "".join(f"  {n:>{w}}" for n, w in zip(col, widths, strict=True))
                 + f"  {table['total']:>5}")
    return "\n".join(lines)


def match_speakers(requested: Iterable[str], available: Iterable[str],
                   flag: str = "--speakers") -> tuple[str, ...]:
    """The speakers that `requested` names, in request order: a full name ('ravdess_07'), a
    corpus-less suffix ('07': every speaker whose name ends in '_07') or a numeric range
    ('01-06', zero padding kept). A token naming no speaker is a ConfigError naming `flag`."""
    available = set(available)
    out: dict[str, None] = {}
    for token in requested:
        token = token.strip()
        if not token:
            continue
        for tok in ([token] if token in available else _expand_range(token)):
            hits = [tok] if tok in available else sorted(
                s for s in available if s.endswith(f"_{tok}"))
            if not hits:
                shown = ", ".join(sorted(available)[:8]) + (", ..." if len(available) > 8 else "")
                raise ConfigError(f"{flag}: no speaker {tok!r} in the data "
                                  f"({len(available)} speakers: {shown})")
            out.update(dict.fromkeys(hits))
    return tuple(out)


def _expand_range(token: str) -> list[str]:
    """'01-06' -> 01..06 (zero padding kept); any other token unchanged."""
    a, sep, b = token.partition("-")
    if sep and a.isdigit() and b.isdigit() and int(a) <= int(b):
        return [str(i).zfill(len(a)) for i in range(int(a), int(b) + 1)]
    return [token]
