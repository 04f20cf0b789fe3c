"""The panel of judges an evaluation runs: build them by name, say which cannot run and why,
and score one clip with all of them."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from emosteer.audio import SAMPLE_RATE, load_audio
from emosteer.errors import AudioError, ConfigError, EmosteerError
from emosteer.evaluation.emotion_judge import EmotionJudge
from emosteer.evaluation.judges import (
    AsrJudge,
    DnsmosJudge,
    HubSerJudge,
    Judge,
    Score,
    SpeakerJudge,
)

log = logging.getLogger(__name__)

JUDGE_NAMES = ("dnsmos", "asr", "speaker", "emotion", "ser")
DEFAULT_JUDGES = ("dnsmos", "asr", "speaker", "emotion", "ser")


def _parse_names(names: str | Iterable[str] | None) -> tuple[tuple[str, ...], bool]:
    if names is None or (isinstance(names, str) and names.strip().lower() in ("", "all", "default")):
        return DEFAULT_JUDGES, False
    if isinstance(names, str):
        names = names.split(",")
    out = tuple(dict.fromkeys(n.strip().lower() for n in names if n and n.strip()))
    unknown = [n for n in out if n not in JUDGE_NAMES]
    if unknown:
        raise ConfigError(f"--judges: unknown judge(s) {', '.join(unknown)} "
                          f"(known: {', '.join(JUDGE_NAMES)})")
    return out, True


def _build(name: str, *, cache_dir, asr_model, asr_language, emotion_model, ser_model,
           reference_wav, reference_sr) -> tuple[Judge | None, str]:
    """(judge, "") or (None, why it is not configured)."""
    if name == "dnsmos":
        return DnsmosJudge(cache_dir=cache_dir), ""
    if name == "asr":
        return AsrJudge(asr_model, language=asr_language, cache_dir=cache_dir), ""
    if name == "speaker":
        return SpeakerJudge(reference_wav, reference_sr, cache_dir=cache_dir), ""
    if name == "emotion":
        ok, why = EmotionJudge(cache_dir=cache_dir).available()  # untrained: only the check
        if not ok:
            return None, why
        if emotion_model is None:
            return None, ("no trained emotion judge given (train one on the run's training "
                          "speakers with train_emotion_judge)")
        if isinstance(emotion_model, Judge):
            return emotion_model, ""
        return EmotionJudge.load(emotion_model, cache_dir=cache_dir), ""
    if name == "ser":
        ok, why = HubSerJudge("unset").available()
        if not ok:
            return None, why
        if ser_model is None:
            return None, "no --ser model given (a Hugging Face audio-classification id or directory)"
        return HubSerJudge(ser_model, cache_dir=cache_dir), ""
    raise ConfigError(f"unknown judge {name!r}")


def available_judges(**options: Any) -> dict[str, tuple[bool, str]]:
    """name -> (usable, reason) for every judge; never raises. `options` as for make_judges."""
    out = {}
    for name in JUDGE_NAMES:
        try:
            judge, why = _build(name, **_options(options))
        except EmosteerError as e:
            out[name] = (False, str(e))
            continue
        out[name] = (False, why) if judge is None else judge.available()
    return out


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    known = dict(cache_dir=None, asr_model=None, asr_language="en", emotion_model=None,
                 ser_model=None, reference_wav=None, reference_sr=SAMPLE_RATE)
    unknown = set(options) - set(known)
    if unknown:
        raise ConfigError(f"make_judges: unknown option(s) {sorted(unknown)}")
    known.update(options)
    return known


def make_judges(names: str | Iterable[str] | None = None, **options: Any
                ) -> tuple[dict[str, Judge], dict[str, str]]:
    """Build judges by name -> ({name: judge}, {name: why it was skipped}).

    `names`: None (or "all") for every judge that is installed and configured, silently
    skipping (but reporting) the rest; or a comma-separated string / list, in which case a judge
    that cannot run is a ConfigError naming the missing package. Options: cache_dir,
    asr_model, asr_language, emotion_model (an EmotionJudge or its artifact directory),
    ser_model (hub id or directory), reference_wav/reference_sr (the speaker judge's default
    reference). Models load lazily, at the first score (or `judge.ensure_ready()`)."""
    wanted, explicit = _parse_names(names)
    opts = _options(options)
    judges: dict[str, Judge] = {}
    skipped: dict[str, str] = {}
    for name in wanted:
        judge, why = _build(name, **opts)
        if judge is not None:
            ok, why = judge.available()
            if ok:
                judges[name] = judge
                continue
        if explicit:
            raise ConfigError(why if why.startswith("judge ") else f"judge {name!r}: {why}")
        skipped[name] = why
        log.info("judge %s skipped: %s", name, why)
    return judges, skipped


def score_all(judges: Mapping[str, Judge], wav: np.ndarray, sr: int, **context: Any
              ) -> dict[str, Score]:
    """Every judge on one clip -> {judge name: its scores}; each judge reads its own context."""
    return {name: j.score(wav, sr, **context) for name, j in judges.items()}


def judge_files(paths: Iterable[str | os.PathLike], names: str | Iterable[str] | None = None, *,
                ref_text: str | None = None, ref_wav: str | os.PathLike | None = None,
                **options: Any) -> dict[str, Any]:
    """Score audio files with the panel -> {"files": [{path, scores | error}], "skipped": {...},
    "judges": [...]}. `ref_text` is the transcript for WER; `ref_wav` the speaker reference
    (and, with no transcript, the reference whose ASR the output is compared with). A file that
    cannot be read is reported in its row and the rest are still scored."""
    ref = None if ref_wav is None else load_audio(ref_wav, SAMPLE_RATE)
    if ref is not None:
        options = dict(options, reference_wav=ref, reference_sr=SAMPLE_RATE)
    judges, skipped = make_judges(names, **options)
    context: dict[str, Any] = {}
    if ref_text:
        context["text"] = ref_text
    elif ref is not None:
        context.update(reference_wav=ref, reference_sr=SAMPLE_RATE)
    rows = []
    for path in paths:
        try:
            wav = load_audio(path, SAMPLE_RATE)
        except AudioError as e:
            rows.append({"path": str(path), "error": str(e)})
            continue
        rows.append({"path": str(path), "scores": score_all(judges, wav, SAMPLE_RATE, **context)})
    return {"judges": sorted(judges), "skipped": skipped, "files": rows}
