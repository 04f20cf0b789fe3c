"""An emotion judge trained by emosteer on real clips: eGeMAPS functionals + logistic regression.

The judge that decides whether steered speech "sounds angry" must not be the encoder that did
the steering, and must be calibrated on real speech of speakers it never saw. This one is:

- features: the 88 eGeMAPS v02 functionals (Eyben et al. 2016, openSMILE) of the clip after
  loudness normalisation (its active speech level set to TARGET_LEVEL_DBFS), minus the
  level-dependent ones (LEVEL_DEPENDENT: loudness contour statistics, the equivalent sound
  level and the unnormalised spectral flux, all of which scale with the recording gain);
- classifier: a standardised logistic regression (z-scored features, L2, C chosen by
  speaker-grouped cross-validation), binary (source vs target: P(target)) or multi-class (every
  emotion in the training data);
- calibration: AUC (binary) or balanced accuracy and confusion matrix (multi-class) on the real
  clips of held-out speakers, plus the mean P(target) of their real source and real target
  clips: the two reference lines a steered clip's P(target) is read against.

Saved as JSON (classes, feature names, settings, calibration) + safetensors (scaler mean and
scale, coefficients, intercept); loading needs neither scikit-learn nor pickle.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from emosteer.artifacts import load_tensors, provenance, read_json, save_tensors, write_json
from emosteer.audio import SAMPLE_RATE, load_audio, resample
from emosteer.errors import ArtifactError, ConfigError
from emosteer.evaluation.judges import EMOTIONS, EXTRA_HINT, Judge, Score, _as_mono, audio_hash

log = logging.getLogger(__name__)

FORMAT = "emosteer.emotion_judge"
FORMAT_VERSION = 1
CONFIG_NAME = "emotion_judge.json"
WEIGHTS_NAME = "emotion_judge.safetensors"
FEATURE_SET = "eGeMAPSv02"

TARGET_LEVEL_DBFS = -26.0  # active speech level after normalisation; speech peaks stay < 0 dBFS
LEVEL_FRAME = 320  # 20 ms frames at 16 kHz for the active-level estimate
ACTIVE_RANGE_DB = 30.0  # frames within 30 dB of the loudest count as active speech
PEAK_LIMIT = 0.98  # openSMILE converts to int16: louder samples would wrap around
# Substrings of the eGeMAPS names whose value scales with the recording gain.
LEVEL_DEPENDENT = ("loudness", "equivalentSoundLevel", "spectralFlux")
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
MAX_ITER = 5000
PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol >= 2, zip (torch.save / joblib)


# --- features -----------------------------------------------------------------------------

def active_level_db(wav: np.ndarray) -> float:
    """Active speech level in dBFS: the mean power of the 20 ms frames within ACTIVE_RANGE_DB
    of the loudest frame (pauses and the noise floor do not count)."""
    x = np.asarray(wav, dtype=np.float64)
    n = max(1, len(x) // LEVEL_FRAME)
    frames = x[: n * LEVEL_FRAME].reshape(n, -1) if len(x) >= LEVEL_FRAME else x[None, :]
    power = np.mean(frames ** 2, axis=1)
    top = float(power.max()) if power.size else 0.0
    if top <= 0.0:
        return -np.inf
    active = power[power >= top * 10 ** (-ACTIVE_RANGE_DB / 10)]
    return float(10 * np.log10(active.mean()))


def normalize_loudness(wav: np.ndarray, target_dbfs: float = TARGET_LEVEL_DBFS) -> np.ndarray:
    """Scale `wav` so that its active speech level is `target_dbfs` (then, rarely, down so that
    no sample exceeds PEAK_LIMIT). Digital silence is returned unchanged."""
    x = np.asarray(wav, dtype=np.float32)
    level = active_level_db(x)
    if not np.isfinite(level):
        return x
    y = x * np.float32(10 ** ((target_dbfs - level) / 20))
    peak = float(np.max(np.abs(y)))
    if peak > PEAK_LIMIT:
        y = y * np.float32(PEAK_LIMIT / peak)
    return y.astype(np.float32)


def level_dependent(name: str) -> bool:
    return any(s.lower() in name.lower() for s in LEVEL_DEPENDENT)


def _file_hash(path: Path) -> str:
    h = hashlib.sha256(b"file:")
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


Clip = Any  # a path, a (wav, sr) pair, or a 16 kHz mono array


class EgemapsExtractor:
    """eGeMAPS v02 functionals (88 per clip) of loudness-normalised 16 kHz audio, cached by the
    hash of the file bytes (paths) or of the samples (arrays): in memory, and as JSON in
    `cache_dir` if given. `workers` threads run openSMILE (it releases the GIL)."""

    def __init__(self, cache_dir: str | os.PathLike | None = None, workers: int | None = None):
        try:
            import opensmile
        except ImportError as e:
            raise ConfigError(f"the emotion judge needs opensmile ({EXTRA_HINT}): {e}") from e
        self._smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                      feature_level=opensmile.FeatureLevel.Functionals)
        self.feature_names: tuple[str, ...] = tuple(self._smile.feature_names)
        self.version = f"opensmile-{getattr(opensmile, '__version__', '?')}/{FEATURE_SET}"
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.workers = workers or min(4, os.cpu_count() or 1)
        self._memo: dict[str, np.ndarray] = {}

    def _token(self) -> str:
        return f"{self.version}/level={TARGET_LEVEL_DBFS}/{ACTIVE_RANGE_DB}/{PEAK_LIMIT}"

    def _key_and_loader(self, clip: Clip):
        if isinstance(clip, (str, os.PathLike)):
            path = Path(clip)
            if not path.is_file():
                raise ArtifactError(f"{path}: file not found")
            return (_file_hash(path),
                    lambda: load_audio(path, SAMPLE_RATE, validate=False))
        if isinstance(clip, tuple) and len(clip) == 2:
            wav, sr = _as_mono(clip[0]), int(clip[1])
        else:
            wav, sr = _as_mono(clip), SAMPLE_RATE
        return audio_hash(wav, sr), lambda: resample(wav, sr, SAMPLE_RATE)

    def _compute(self, wav16: np.ndarray) -> np.ndarray:
        x = normalize_loudness(wav16)
        if len(x) < SAMPLE_RATE // 4:  # openSMILE needs a few frames; pad short clips with silence
            x = np.pad(x, (0, SAMPLE_RATE // 4 - len(x)))
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Segment too short": returned as NaN, imputed later
            values = self._smile.process_signal(x, SAMPLE_RATE).to_numpy(dtype=np.float64)[0]
        return values

    def _disk(self, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / "egemaps" / f"{hashlib.sha256((self._token() + key).encode()).hexdigest()}.json"

    def _get(self, key: str, loader) -> np.ndarray:
        if key in self._memo:
            return self._memo[key]
        path = self._disk(key)
        if path is not None and path.is_file():
            try:
                data = read_json(path)
                v = np.array([np.nan if x is None else x for x in data["features"]], np.float64)
                if v.shape == (len(self.feature_names),):
                    self._memo[key] = v
                    return v
            except (ArtifactError, KeyError, TypeError, ValueError):
                pass
        v = self._compute(loader())
        self._memo[key] = v
        if path is not None:
            write_json(path, {"extractor": self._token(), "features": v})
        return v

    def features(self, clip: Clip) -> np.ndarray:
        """(88,) eGeMAPS functionals of one clip."""
        return self._get(*self._key_and_loader(clip))

    def features_many(self, clips: Sequence[Clip], progress: bool = False) -> np.ndarray:
        """(N, 88) for N clips, extracted in parallel (cached clips are not recomputed)."""
        jobs = [self._key_and_loader(c) for c in clips]
        if not jobs:
            return np.zeros((0, len(self.feature_names)))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(jobs), desc="eGeMAPS", unit="clip")

        def run(job):
            v = self._get(*job)
            if bar is not None:
                bar.update(1)
            return v

        try:
            if self.workers > 1 and len(jobs) > 1:
                with ThreadPoolExecutor(self.workers) as ex:
                    rows = list(ex.map(run, jobs))
            else:
                rows = [run(j) for j in jobs]
        finally:
            if bar is not None:
                bar.close()
        return np.stack(rows)


_DEFAULT_EXTRACTOR: EgemapsExtractor | None = None


def default_extractor() -> EgemapsExtractor:
    """One process-wide extractor, so that its in-memory cache is shared."""
    global _DEFAULT_EXTRACTOR
    if _DEFAULT_EXTRACTOR is None:
        _DEFAULT_EXTRACTOR = EgemapsExtractor()
    return _DEFAULT_EXTRACTOR


# --- the classifier -------------------------------------------------------------------------

def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


class EmotionJudge(Judge):
    """eGeMAPS logistic-regression emotion judge (see the module docstring).

    Why loudness is normalised and the level features dropped: recording level is not emotion,
    but in acted corpora it is confounded with it (RAVDESS calm and sad clips are recorded
    20-30 dB quieter than angry ones, the same actor at the same microphone), so a classifier
    given level would learn "quiet = calm" and then judge a steered clip by the gain the steerer
    chose (`--keep-level`, or loudness matched to the input) rather than by how it is spoken.
    openSMILE's voicing, F0 and formant trackers also have absolute energy thresholds, so the
    input is first brought to one active speech level; then the features that still follow
    the gain (loudness statistics, equivalent sound level, the unnormalised spectral flux) or
    that would leak it through the amplified noise floor of a quiet recording are removed. What
    remains is F0, voice quality (jitter, shimmer, HNR, H1-H2, H1-A3), spectral balance
    (alpha ratio, Hammarberg index, slopes, MFCC 1-4: vocal effort shows up here, not in level),
    formants and timing.

    Binary judges have classes (source, target) and `predict_proba` returns P(target) per row;
    multi-class judges return an (N, K) matrix in `classes` order. `score(wav, sr)` returns
    {"p_<class>": ...} for every class."""

    name = "emotion"

    def __init__(self, classes: Sequence[str] = (), feature_names: Sequence[str] = (),
                 mean: np.ndarray | None = None, scale: np.ndarray | None = None,
                 coef: np.ndarray | None = None, intercept: np.ndarray | None = None,
                 binary: bool = False, meta: dict | None = None,
                 extractor: EgemapsExtractor | None = None,
                 cache_dir: str | os.PathLike | None = None):
        super().__init__(cache_dir)
        self.classes = tuple(str(c) for c in classes)
        self.feature_names = tuple(feature_names)
        self.mean = None if mean is None else np.asarray(mean, np.float64)
        self.scale = None if scale is None else np.asarray(scale, np.float64)
        self.coef = None if coef is None else np.atleast_2d(np.asarray(coef, np.float64))
        self.intercept = None if intercept is None else np.atleast_1d(np.asarray(intercept, np.float64))
        self.binary = bool(binary)
        self.meta = dict(meta or {})
        self.calibration: dict | None = self.meta.get("calibration")
        self._extractor = extractor
        self._columns: np.ndarray | None = None
        if self.coef is not None:
            self._check()

    # structure -----------------------------------------------------------------------------
    def _check(self, source: str = "emotion judge") -> None:
        d, k = len(self.feature_names), len(self.classes)
        rows = 1 if self.binary else k
        if k < 2 or (self.binary and k != 2):
            raise ArtifactError(f"{source}: needs 2 classes (binary) or more, got {self.classes}")
        shapes = {"mean": (self.mean.shape, (d,)), "scale": (self.scale.shape, (d,)),
                  "coef": (self.coef.shape, (rows, d)), "intercept": (self.intercept.shape, (rows,))}
        for name, (got, want) in shapes.items():
            if got != want:
                raise ArtifactError(f"{source}: {name} has shape {got}, expected {want}")
        for name in ("mean", "scale", "coef", "intercept"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ArtifactError(f"{source}: {name} contains NaN or Inf")
        if np.any(self.scale <= 0):
            raise ArtifactError(f"{source}: scale must be positive")

    @property
    def trained(self) -> bool:
        return self.coef is not None

    @property
    def source(self) -> str | None:
        return self.classes[0] if self.binary else self.meta.get("source")

    @property
    def target(self) -> str | None:
        return self.classes[1] if self.binary else self.meta.get("target")

    def requirements(self):
        return (("opensmile", "opensmile"),)

    def cache_token(self) -> str:
        h = hashlib.sha256()
        for a in (self.mean, self.scale, self.coef, self.intercept):
            if a is not None:
                h.update(np.ascontiguousarray(a).tobytes())
        h.update(repr((self.classes, self.feature_names, self.binary)).encode())
        return f"{super().cache_token()}/{FEATURE_SET}/{h.hexdigest()[:16]}"

    @property
    def extractor(self) -> EgemapsExtractor:
        if self._extractor is None:
            self._extractor = default_extractor()
        return self._extractor

    def _load(self) -> None:
        if not self.trained:
            raise ConfigError("emotion judge: not trained (use train_emotion_judge or "
                              "EmotionJudge.load)")
        self._select(self.extractor.feature_names)

    def _select(self, all_names: Sequence[str]) -> np.ndarray:
        if self._columns is None:
            index = {n: i for i, n in enumerate(all_names)}
            missing = [n for n in self.feature_names if n not in index]
            if missing:
                raise ArtifactError(f"emotion judge: features {missing[:3]} not produced by this "
                                    "openSMILE (a different eGeMAPS version?)")
            self._columns = np.array([index[n] for n in self.feature_names], dtype=np.int64)
        return self._columns

    # prediction ----------------------------------------------------------------------------
    def _standardise(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, np.float64))
        if X.shape[1] != len(self.feature_names):
            X = X[:, self._select(self.extractor.feature_names)]
        Z = (X - self.mean) / self.scale
        return np.where(np.isfinite(Z), Z, 0.0)  # an undefined feature counts as the mean

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Binary: P(target) per row (N,). Multi-class: (N, K) in `classes` order. `X` holds
        either the judge's own feature columns or all 88 eGeMAPS functionals."""
        if not self.trained:
            raise ConfigError("emotion judge: not trained")
        z = self._standardise(X) @ self.coef.T + self.intercept
        return _sigmoid(z[:, 0]) if self.binary else _softmax(z)

    def class_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, K) probabilities in `classes` order, for binary judges too."""
        p = self.predict_proba(X)
        return np.stack([1 - p, p], axis=1) if self.binary else p

    def features(self, clips: Sequence[Clip], progress: bool = False) -> np.ndarray:
        return self.extractor.features_many(list(clips), progress=progress)

    def proba_clips(self, clips: Sequence[Clip], progress: bool = False) -> np.ndarray:
        """predict_proba of clips (paths, (wav, sr) pairs or 16 kHz arrays)."""
        self.ensure_ready()
        return self.predict_proba(self.features(clips, progress))

    def p_target(self, X: np.ndarray, target: str | None = None) -> np.ndarray:
        target = target or self.target
        if target not in self.classes:
            raise ConfigError(f"emotion judge: target {target!r} is not one of {self.classes}")
        return self.class_proba(X)[:, self.classes.index(target)]

    def _score_batch(self, wavs: list[np.ndarray], contexts: list[dict]) -> list[Score]:
        P = self.class_proba(self.extractor.features_many(wavs))
        return [{f"p_{c}": float(p) for c, p in zip(self.classes, row, strict=True)} for row in P]

    def _score(self, wav16: np.ndarray, **context: Any) -> Score:
        return self._score_batch([wav16], [context])[0]

    # calibration ---------------------------------------------------------------------------
    def calibrate(self, clips: Sequence[Clip], labels: Sequence[str],
                  speakers: Sequence[str] | None = None, source: str | None = None,
                  target: str | None = None, progress: bool = False,
                  features: np.ndarray | None = None) -> dict:
        """Measure the judge on real clips of held-out speakers; stored in `self.calibration`
        (and saved with the judge). Binary: AUC of P(target) for source vs target clips.
        Multi-class: balanced accuracy (chance 1/K) and the confusion matrix (rows: true class,
        columns: predicted, `classes` order). Both: the mean P(target) of the real source and
        the real target clips, the reference lines for steered clips (for a multi-class judge
        when `source` and `target` are given). Clips with other labels are ignored."""
        from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score

        self.ensure_ready()
        labels = np.asarray([str(x) for x in labels])
        if len(labels) != len(clips):
            raise ConfigError(f"calibrate: {len(clips)} clips but {len(labels)} labels")
        spk = np.asarray([str(s) for s in speakers]) if speakers is not None else None
        source = source or self.source
        target = target or self.target
        X = self.features(clips, progress) if features is None else np.asarray(features)
        keep = np.isin(labels, self.classes)
        if keep.sum() == 0:
            raise ConfigError(f"calibrate: no clip is labelled one of {self.classes}")
        X, y = X[keep], labels[keep]
        P = self.class_proba(X)
        out: dict[str, Any] = {"classes": list(self.classes), "n": int(len(y)),
                               "n_per_class": {c: int((y == c).sum()) for c in self.classes},
                               "n_ignored": int((~keep).sum()),
                               "speakers": sorted(set(spk[keep].tolist())) if spk is not None else None}
        if self.binary:
            both = len(set(y.tolist())) == 2
            out["auc"] = float(roc_auc_score(y == target, P[:, 1])) if both else float("nan")
            out["accuracy"] = float(np.mean((P[:, 1] >= 0.5) == (y == target)))
        else:
            pred = np.asarray(self.classes)[np.argmax(P, axis=1)]
            out["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
            out["chance"] = 1.0 / len(self.classes)
            out["confusion_matrix"] = confusion_matrix(y, pred, labels=list(self.classes)).tolist()
        if source in self.classes and target in self.classes:
            col = self.classes.index(target)
            for name, cls in (("source", source), ("target", target)):
                m = y == cls
                out[f"p_target_real_{name}"] = float(P[m, col].mean()) if m.any() else float("nan")
                out[f"n_real_{name}"] = int(m.sum())
            out["source"], out["target"] = source, target
        self.calibration = out
        self.meta["calibration"] = out
        return out

    # artifact --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write `path`/emotion_judge.json + emotion_judge.safetensors (atomic, no pickle)."""
        if not self.trained:
            raise ConfigError("emotion judge: not trained, nothing to save")
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        save_tensors(d / WEIGHTS_NAME, {"mean": self.mean, "scale": self.scale, "coef": self.coef,
                                        "intercept": self.intercept},
                     metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
        cfg = {"format": FORMAT, "format_version": FORMAT_VERSION, "feature_set": FEATURE_SET,
               "binary": self.binary, "classes": list(self.classes),
               "feature_names": list(self.feature_names),
               "level_normalisation": {"target_dbfs": TARGET_LEVEL_DBFS,
                                       "frame_samples": LEVEL_FRAME,
                                       "active_range_db": ACTIVE_RANGE_DB,
                                       "peak_limit": PEAK_LIMIT,
                                       "dropped_patterns": list(LEVEL_DEPENDENT)},
               **{k: v for k, v in self.meta.items() if k not in ("calibration",)},
               "calibration": self.calibration}
        write_json(d / CONFIG_NAME, cfg)
        return d

    @classmethod
    def load(cls, path: str | os.PathLike, extractor: EgemapsExtractor | None = None,
             cache_dir: str | os.PathLike | None = None) -> EmotionJudge:
        """Load a saved judge (its directory or its JSON file). Refuses pickles."""
        p = Path(path)
        if p.is_file() and p.suffix == ".json":
            p = p.parent
        if p.is_file():
            _refuse_pickle(p)
            raise ArtifactError(f"{p}: an emotion judge is a directory with {CONFIG_NAME} and "
                                f"{WEIGHTS_NAME}")
        if not p.is_dir():
            raise ArtifactError(f"{p}: emotion judge not found")
        strays = [f.name for f in p.iterdir() if f.suffix.lower() in (".pkl", ".pickle", ".joblib")]
        if strays:
            raise ArtifactError(f"{p}: contains pickle files ({', '.join(strays)}); emosteer never "
                                "loads pickles")
        wpath = p / WEIGHTS_NAME
        if wpath.is_file():
            _refuse_pickle(wpath)
        cfg = read_json(p / CONFIG_NAME)
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
            raise ArtifactError(f"{p / CONFIG_NAME}: not an emosteer emotion judge")
        if int(cfg.get("format_version", -1)) > FORMAT_VERSION:
            raise ArtifactError(f"{p / CONFIG_NAME}: format version {cfg.get('format_version')} is "
                                f"newer than this emosteer reads ({FORMAT_VERSION})")
        t = load_tensors(wpath)
        missing = {"mean", "scale", "coef", "intercept"} - set(t)
        if missing:
            raise ArtifactError(f"{wpath}: missing tensors {sorted(missing)}")
        meta = {k: v for k, v in cfg.items()
                if k not in ("format", "format_version", "feature_set", "binary", "classes",
                             "feature_names", "level_normalisation")}
        try:
            judge = cls(classes=cfg["classes"], feature_names=cfg["feature_names"],
                        mean=t["mean"], scale=t["scale"], coef=t["coef"],
                        intercept=t["intercept"], binary=bool(cfg["binary"]), meta=meta,
                        extractor=extractor, cache_dir=cache_dir)
        except KeyError as e:
            raise ArtifactError(f"{p / CONFIG_NAME}: missing key {e}") from e
        except ArtifactError as e:
            raise ArtifactError(f"{p}: {e}") from e
        return judge


def _refuse_pickle(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(4)
    if any(head.startswith(m) for m in PICKLE_MAGIC) or path.suffix.lower() in (
            ".pkl", ".pickle", ".joblib", ".pt", ".pth"):
        raise ArtifactError(f"{path}: looks like a pickle; emosteer never loads pickles "
                            f"(an emotion judge is {CONFIG_NAME} + {WEIGHTS_NAME})")


# --- training -------------------------------------------------------------------------------

def _order(classes: Iterable[str]) -> tuple[str, ...]:
    cs = set(classes)
    return tuple(e for e in EMOTIONS if e in cs) + tuple(sorted(cs - set(EMOTIONS)))


def _fit(Z: np.ndarray, y: np.ndarray, C: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=MAX_ITER).fit(Z, y)


def _standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = np.nanmean(X, axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    scale = np.nanstd(X, axis=0)
    scale = np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)
    return mean, scale


def _z(X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    Z = (X - mean) / scale
    return np.where(np.isfinite(Z), Z, 0.0)


def _choose_c(X: np.ndarray, y: np.ndarray, groups: np.ndarray, binary: bool,
              grid: Sequence[float]) -> tuple[float, dict[str, float]]:
    """C by leave-speakers-out cross-validation (AUC or balanced accuracy)."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score
    from sklearn.model_selection import GroupKFold

    n_groups = len(set(groups.tolist()))
    if n_groups < 3 or len(grid) == 1:
        return float(grid[len(grid) // 2] if len(grid) > 1 else grid[0]), {}
    folds = list(GroupKFold(n_splits=min(5, n_groups)).split(X, y, groups))
    scores = {}
    for C in grid:
        vals = []
        for tr, te in folds:
            if len(set(y[tr].tolist())) < 2 or len(set(y[te].tolist())) < 2:
                continue
            mean, scale = _standardiser(X[tr])
            model = _fit(_z(X[tr], mean, scale), y[tr], C)
            Zte = _z(X[te], mean, scale)
            if binary:
                vals.append(roc_auc_score(y[te], model.predict_proba(Zte)[:, 1]))
            else:
                vals.append(balanced_accuracy_score(y[te], model.predict(Zte)))
        scores[str(C)] = float(np.mean(vals)) if vals else float("nan")
    best = max(grid, key=lambda c: (np.nan_to_num(scores[str(c)], nan=-1.0), -c))
    return float(best), scores


def train_emotion_judge(clips: Sequence[Clip], labels: Sequence[str], speakers: Sequence[str],
                        classes: Sequence[str] | None = None, *, C: float | None = None,
                        c_grid: Sequence[float] = C_GRID,
                        extractor: EgemapsExtractor | None = None,
                        features: np.ndarray | None = None,
                        cache_dir: str | os.PathLike | None = None,
                        progress: bool = False) -> EmotionJudge:
    """Train an EmotionJudge on real clips (paths, (wav, sr) pairs or 16 kHz arrays).

    `classes`: (source, target) for a binary judge (P(target)); three or more for a multi-class
    judge over those; None for multi-class over every emotion in `labels`. Clips with other
    labels are left out. `speakers` (one per clip) group the cross-validation that picks C
    (unless `C` is given) and are recorded in the artifact as the training speakers.
    `features`: precomputed all-88 eGeMAPS rows (N, 88) for `clips` (skips extraction)."""
    labels = np.asarray([str(x) for x in labels])
    spk = np.asarray([str(s) for s in speakers])
    if not (len(clips) == len(labels) == len(spk)):
        raise ConfigError(f"train_emotion_judge: {len(clips)} clips, {len(labels)} labels, "
                          f"{len(spk)} speakers: need one label and one speaker per clip")
    if classes is None:
        classes = _order(labels.tolist())
        binary = False
    else:
        classes = tuple(str(c) for c in classes)
        if len(set(classes)) != len(classes) or len(classes) < 2:
            raise ConfigError(f"train_emotion_judge: classes {classes} need 2+ distinct labels")
        binary = len(classes) == 2
    present = {c: int((labels == c).sum()) for c in classes}
    lacking = [c for c, n in present.items() if n < 2]
    if lacking:
        raise ConfigError(f"train_emotion_judge: too few clips (< 2) for {', '.join(lacking)} "
                          f"(have {present})")
    if len(classes) < 2:
        raise ConfigError(f"train_emotion_judge: need at least two emotions, got {classes}")
    keep = np.isin(labels, classes)
    ex = extractor or default_extractor()
    if features is None:
        kept = [c for c, k in zip(clips, keep, strict=True) if k]
        X_all = ex.features_many(kept, progress=progress)
    else:
        features = np.asarray(features, np.float64)
        if features.shape != (len(clips), len(ex.feature_names)):
            raise ConfigError(f"train_emotion_judge: features has shape {features.shape}, "
                              f"expected ({len(clips)}, {len(ex.feature_names)})")
        X_all = features[keep]
    y_lab, groups = labels[keep], spk[keep]
    cols = [i for i, n in enumerate(ex.feature_names) if not level_dependent(n)]
    X = X_all[:, cols]
    y = (y_lab == classes[1]).astype(int) if binary else y_lab
    if C is None:
        C, cv = _choose_c(X, y, groups, binary, tuple(c_grid))
    else:
        cv = {}
    mean, scale = _standardiser(X)
    model = _fit(_z(X, mean, scale), y, float(C))
    if binary:
        coef, intercept = model.coef_, model.intercept_
    else:  # sklearn sorts classes; put the rows in our order
        order = [list(model.classes_).index(c) for c in classes]
        coef, intercept = model.coef_[order], model.intercept_[order]
    meta = {"C": float(C), "cv_score": cv, "cv_metric": "auc" if binary else "balanced_accuracy",
            "training": {"speakers": sorted(set(groups.tolist())),
                         "n_per_class": {c: int((y_lab == c).sum()) for c in classes},
                         "n": int(len(y_lab))},
            "dropped_features": [n for n in ex.feature_names if level_dependent(n)],
            "provenance": provenance(opensmile=ex.version)}
    return EmotionJudge(classes=classes, feature_names=[ex.feature_names[i] for i in cols],
                        mean=mean, scale=scale, coef=coef, intercept=intercept, binary=binary,
                        meta=meta, extractor=ex, cache_dir=cache_dir)
