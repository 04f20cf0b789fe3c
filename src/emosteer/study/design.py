"""Study design: stimuli, the frozen study config, and balanced randomised presentation.

Input (what `emosteer evaluate` writes, or anything hand-made in the same shape): a directory
with `stimuli.json`, a list (or {"stimuli": [...]}) of objects
  {id, path (relative audio file), source_clip, speaker, mode, delta, target_emotion,
   kind: steered|anchor|original}
or a plain directory of audio files plus a CSV with the same columns.
`anchor` stimuli are real recordings whose emotion is known; they double as attention checks.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from emosteer import __version__
from emosteer.artifacts import config_from_dict, provenance, read_json, refuse_overwrite, write_json
from emosteer.audio import audio_info
from emosteer.errors import AudioError, ConfigError, EmosteerError
from emosteer.study.db import init_db

TASKS = ("identify", "intensity", "naturalness")
KINDS = ("steered", "anchor", "original")
DEFAULT_EMOTIONS = ("angry", "calm", "happy", "sad", "neutral")
# Ids end up in URLs and file names: no slashes, no dots at the start, so none can be a path.
STIMULUS_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
STUDY_JSON = "study.json"
STIMULI_DIR = "stimuli"
DB_NAME = "study.sqlite"


@dataclass(frozen=True)
class Stimulus:
    id: str
    path: str  # relative to the study's stimuli/ directory once created
    source_clip: str
    speaker: str
    mode: str
    delta: float
    target_emotion: str
    kind: str
    sample_rate: int = 0
    duration_s: float = 0.0


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study; saved as study.json and never changed after create."""

    name: str = "emosteer-study"
    seed: int = 0
    trials_per_participant: int = 20  # includes anchors and repeats
    tasks: tuple[str, ...] = TASKS
    emotions: tuple[str, ...] = DEFAULT_EMOTIONS
    anchors_per_participant: int = 2
    repeats_per_participant: int = 2  # items shown twice, for the consistency check
    practice_stimulus: str | None = None  # default: the first anchor (else the first stimulus)
    min_anchor_accuracy: float = 0.5
    min_repeat_agreement: float = 0.5
    consent_text: str = ("You will hear short speech clips and rate them. Your answers are stored "
                         "anonymously. You may stop at any time.")
    emosteer_version: str = __version__

    def __post_init__(self) -> None:
        bad = set(self.tasks) - set(TASKS)
        if not self.tasks or bad:
            raise ConfigError(f"tasks: expected a non-empty subset of {TASKS}, got {self.tasks}")
        if len(set(self.emotions)) < 2:
            raise ConfigError("emotions: offer at least two distinct emotions")
        fixed = self.anchors_per_participant + self.repeats_per_participant
        if self.anchors_per_participant < 0 or self.repeats_per_participant < 0:
            raise ConfigError("anchors_per_participant and repeats_per_participant must be >= 0")
        if self.trials_per_participant < fixed + 1:
            raise ConfigError(f"trials_per_participant={self.trials_per_participant} leaves no "
                              f"room for test items after {fixed} anchors + repeats")
        if 2 * self.repeats_per_participant >= self.trials_per_participant:
            raise ConfigError("repeats_per_participant must be under half the trials (each "
                              "repeat needs a distinct first showing)")
        for name in ("min_anchor_accuracy", "min_repeat_agreement"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1]")


@dataclass(frozen=True)
class Study:
    root: Path
    config: StudyConfig
    stimuli: tuple[Stimulus, ...] = field(default_factory=tuple)

    @property
    def by_id(self) -> dict[str, Stimulus]:
        return {s.id: s for s in self.stimuli}

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def practice_id(self) -> str:
        if self.config.practice_stimulus:
            return self.config.practice_stimulus
        anchors = [s.id for s in self.stimuli if s.kind == "anchor"]
        return anchors[0] if anchors else self.stimuli[0].id

    def audio_path(self, stimulus_id: str) -> Path | None:
        """The file for a known stimulus id, or None. Never built from anything but study.json."""
        stim = self.by_id.get(stimulus_id)
        if stim is None:
            return None
        base = (self.root / STIMULI_DIR).resolve()
        path = (base / stim.path).resolve()
        return path if path.is_relative_to(base) and path.is_file() else None


def load_study_config(path: str | Path) -> StudyConfig:
    """A JSON or YAML config file -> StudyConfig (unknown keys are an error)."""
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: could not read YAML ({e})") from e
    else:
        data = read_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys")
    return config_from_dict(StudyConfig, data, source=str(path))


def _coerce_stimulus(row: dict[str, Any], source: str) -> Stimulus:
    missing = [k for k in ("id", "path", "kind", "target_emotion") if not row.get(k)]
    if missing:
        raise ConfigError(f"{source}: stimulus {row.get('id', '?')!r} lacks {missing}")
    sid = str(row["id"])
    if not STIMULUS_ID_RE.match(sid):
        raise ConfigError(f"{source}: stimulus id {sid!r} must match {STIMULUS_ID_RE.pattern}")
    if row["kind"] not in KINDS:
        raise ConfigError(f"{source}: stimulus {sid}: kind {row['kind']!r} not in {KINDS}")
    try:
        delta = float(row.get("delta") or 0.0)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: stimulus {sid}: delta {row.get('delta')!r} is not a number") from e
    return Stimulus(id=sid, path=str(row["path"]), source_clip=str(row.get("source_clip") or sid),
                    speaker=str(row.get("speaker") or ""), mode=str(row.get("mode") or row["kind"]),
                    delta=delta, target_emotion=str(row["target_emotion"]), kind=str(row["kind"]))


def read_stimuli(input_dir: str | Path, csv_path: str | Path | None = None) -> list[Stimulus]:
    """Parse stimuli.json (or the CSV) of an evaluate run; paths stay relative to input_dir."""
    input_dir = Path(input_dir)
    if csv_path is not None:
        csv_path = Path(csv_path)
        try:
            with csv_path.open(newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        except OSError as e:
            raise ConfigError(f"{csv_path}: could not read ({e.strerror or e})") from e
        source = str(csv_path)
    else:
        js = input_dir / "stimuli.json"
        if not js.is_file():
            raise ConfigError(f"{input_dir}: no stimuli.json (pass --csv for a plain directory)")
        data = read_json(js)
        rows = data.get("stimuli") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise ConfigError(f"{js}: expected a list of stimuli")
        source = str(js)
    stimuli = [_coerce_stimulus(dict(r), source) for r in rows]
    if not stimuli:
        raise ConfigError(f"{source}: lists no stimuli")
    ids = [s.id for s in stimuli]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"{source}: duplicate stimulus ids {dup[:5]}")
    return stimuli


def _check_audio(stim: Stimulus, input_dir: Path) -> Stimulus:
    base = input_dir.resolve()
    src = (base / stim.path).resolve()
    if Path(stim.path).is_absolute() or not src.is_relative_to(base):
        raise ConfigError(f"{stim.path}: stimulus {stim.id} points outside {input_dir}")
    sr, frames, _ = audio_info(src)  # AudioError names the file when it is not audio
    if frames == 0:
        raise AudioError(f"{src}: contains no samples")
    return dataclasses.replace(stim, sample_rate=sr, duration_s=round(frames / sr, 3))


def create_study(input_dir: str | Path, out_dir: str | Path, config: StudyConfig,
                 csv_path: str | Path | None = None, force: bool = False,
                 skip_bad: bool = False) -> Study:
    """Validate the stimuli, copy them into out_dir/stimuli, write study.json and an empty DB.

    A stimulus that is not readable audio is an error listing every bad file; with
    skip_bad=True such files are reported in study.json["skipped"] and left out."""
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    refuse_overwrite(out_dir, force)
    checked, bad = [], []
    for stim in tqdm(read_stimuli(input_dir, csv_path), desc="checking stimuli", unit="file",
                     file=sys.stderr, leave=False):
        try:
            checked.append(_check_audio(stim, input_dir))
        except EmosteerError as e:
            bad.append(str(e))
    if bad and not skip_bad:
        raise AudioError(f"{len(bad)} bad stimulus file(s): " + "; ".join(bad[:10]))
    ids = {s.id for s in checked}
    if config.practice_stimulus and config.practice_stimulus not in ids:
        raise ConfigError(f"practice_stimulus {config.practice_stimulus!r} is not a stimulus id")
    if len(checked) < config.trials_per_participant - config.repeats_per_participant:
        raise ConfigError(f"{len(checked)} stimuli cannot fill {config.trials_per_participant} "
                          f"trials with {config.repeats_per_participant} repeats")
    if force and out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / STIMULI_DIR).mkdir(parents=True)
    final = []
    for stim in checked:
        name = stim.id + Path(stim.path).suffix.lower()
        shutil.copyfile(input_dir / stim.path, out_dir / STIMULI_DIR / name)
        final.append(dataclasses.replace(stim, path=name))
    write_json(out_dir / STUDY_JSON, {"config": config, "stimuli": final, "skipped": bad,
                                      "provenance": provenance()})
    study = Study(out_dir, config, tuple(final))
    init_db(study.db_path)
    return study


def open_study(root: str | Path) -> Study:
    root = Path(root)
    data = read_json(root / STUDY_JSON)
    if not isinstance(data, dict) or "config" not in data or "stimuli" not in data:
        raise ConfigError(f"{root / STUDY_JSON}: not a study file (run `emosteer study create`)")
    cfg = config_from_dict(StudyConfig, data["config"], source=str(root / STUDY_JSON))
    stimuli = tuple(config_from_dict(Stimulus, s, source=str(root / STUDY_JSON))
                    for s in data["stimuli"])
    return Study(root, cfg, stimuli)


def participant_rng(study_seed: int, participant_id: str) -> np.random.Generator:
    """Deterministic per participant: the same id in the same study always gets the same order."""
    digest = int.from_bytes(hashlib.sha256(participant_id.encode()).digest()[:8], "little")
    return np.random.default_rng([study_seed, digest])


def _least_exposed(pool: list[str], k: int, counts: dict[str, int],
                   rng: np.random.Generator) -> list[str]:
    # Random tie-break first, then a stable sort on exposure: least-rated items win.
    order = [pool[i] for i in rng.permutation(len(pool))]
    order.sort(key=lambda s: counts.get(s, 0))
    return order[:k]


def plan_trials(study: Study, participant_id: str, counts: dict[str, int]) -> list[str]:
    """Trial order (stimulus ids) for one participant.

    Anchors and test items are taken least-exposed first (`counts`: ratings collected plus those
    still due from live participants, db.balance_counts) so every stimulus collects a similar
    number of ratings; the selection is shuffled and each repeated item is re-inserted at a
    random later position, never straight after its first showing."""
    cfg = study.config
    rng = participant_rng(cfg.seed, participant_id)
    practice = study.practice_id
    anchors = [s.id for s in study.stimuli if s.kind == "anchor" and s.id != practice]
    tests = [s.id for s in study.stimuli if s.kind != "anchor" and s.id != practice]
    n_anchor = min(cfg.anchors_per_participant, len(anchors))
    n_unique = cfg.trials_per_participant - cfg.repeats_per_participant
    chosen = _least_exposed(anchors, n_anchor, counts, rng)
    chosen += _least_exposed(tests, n_unique - n_anchor, counts, rng)
    if len(chosen) < n_unique:  # few test items: top up with the remaining anchors
        spare = [a for a in anchors if a not in chosen]
        chosen += _least_exposed(spare, n_unique - len(chosen), counts, rng)
    plan = [chosen[i] for i in rng.permutation(len(chosen))]
    # The last item cannot be repeated "later", so it is never drawn for a repeat.
    n_pick = max(1, len(plan) - 1)
    picks = rng.choice(n_pick, size=min(cfg.repeats_per_participant, n_pick), replace=False)
    for item in [plan[i] for i in sorted(picks)]:
        first = plan.index(item)
        pos = int(rng.integers(first + 2, len(plan) + 1)) if first + 2 <= len(plan) else len(plan)
        plan.insert(pos, item)
    return plan
