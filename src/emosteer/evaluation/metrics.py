"""Measurements behind `emosteer evaluate`: metric cells with bootstrap CIs, Spearman
monotonicity, the target-emotion posterior probe, speaker similarity, round-trip fidelity and the
optional external metrics.

Every number leaves this module as a cell, `{"value", "ci", "n"}`, or as
`{"status": "not measured", "reason"}`: a metric that cannot run never produces a number.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emosteer.audio import SAMPLE_RATE, resample
from emosteer.corpora.formats import normalize_emotion
from emosteer.errors import ConfigError, CorpusError
from emosteer.evaluation.judges import word_error_rate
from emosteer.synthesis.data import mel_cepstral_distortion
from emosteer.synthesis.mel import log_mel_spectrogram

log = logging.getLogger(__name__)

N_BOOT = 1000  # bootstrap resamples; the 2.5/97.5 percentiles of 1000 are stable to ~0.01 sd
CI_LEVEL = 0.95
PESQ_RATE = 16000  # wide-band PESQ (ITU-T P.862.2) is defined at 16 kHz only
# Logistic regression on 768-d pooled vectors of a few dozen clips: L2 with C=1 after
# standardisation keeps the probe from memorising speakers; max_iter so lbfgs converges.
PROBE_C = 1.0
PROBE_MAX_ITER = 2000


def not_measured(reason: str) -> dict:
    return {"status": "not measured", "reason": reason}


def bootstrap_ci(values: np.ndarray, stat, seed: int, n_boot: int = N_BOOT
                 ) -> list[float] | None:
    """Percentile CI of `stat` over resamples (with replacement) of the rows of `values`."""
    n = len(values)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        s = stat(values[rng.integers(0, n, n)])
        if np.isfinite(s):
            stats.append(s)
    if len(stats) < n_boot // 2:  # most resamples degenerate (e.g. constant): no honest CI
        return None
    alpha = (1 - CI_LEVEL) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return [float(lo), float(hi)]


def mean_cell(values: Sequence[float], seed: int, what: str = "metric", n_boot: int = N_BOOT
              ) -> dict:
    """Mean over clips with a bootstrap CI over clips; NaN values (undefined) are dropped."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return not_measured(f"{what}: undefined on every clip (e.g. no voiced frames)")
    return {"value": float(v.mean()), "ci": bootstrap_ci(v, np.mean, seed, n_boot),
            "n": int(v.size)}


def grouped_cell(values: Sequence[float], groups: Sequence[str], seed: int, what: str = "metric",
                 n_boot: int = N_BOOT) -> dict:
    """`mean_cell` over clips plus a speaker-level CI: speakers are resampled with replacement
    (each bringing all its clips), since clips of one speaker are not independent.
    `n_speakers` counts the speakers with a defined value; `ci_speakers` is None below two."""
    pairs = [(float(v), str(g)) for v, g in zip(values, groups, strict=True)
             if v is not None and np.isfinite(v)]
    cell = mean_cell([v for v, _ in pairs], seed, what, n_boot)
    if "value" not in cell:
        return cell
    speakers = sorted({g for _, g in pairs})
    by_spk = [np.array([v for v, g in pairs if g == s]) for s in speakers]

    def stat(idx: np.ndarray) -> float:
        return float(np.concatenate([by_spk[int(i)] for i in idx]).mean())

    cell["n_speakers"] = len(speakers)
    cell["ci_speakers"] = (bootstrap_ci(np.arange(len(speakers)), stat, seed, n_boot)
                           if len(speakers) > 1 else None)
    return cell


def auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """ROC AUC of `scores` for the `positive` labels; NaN unless both classes are present."""
    from sklearn.metrics import roc_auc_score

    s, y = np.asarray(scores, np.float64), np.asarray(positive, bool)
    keep = np.isfinite(s)
    s, y = s[keep], y[keep]
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, s))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def spearman_cell(rows: Sequence[tuple[str, float, float]], seed: int, what: str,
                  n_boot: int = N_BOOT) -> dict:
    """Spearman rho of value against delta over (clip, delta, value) rows; the CI resamples
    clips (all deltas of a clip together), since deltas of one clip are not independent."""
    rows = [(c, d, v) for c, d, v in rows if v is not None and np.isfinite(v)]
    clips = sorted({c for c, _, _ in rows})
    if len({d for _, d, _ in rows}) < 2 or not clips:
        return not_measured(f"{what}: needs values at two or more deltas")
    by_clip = {c: [(d, v) for cc, d, v in rows if cc == c] for c in clips}

    def rho(idx: np.ndarray) -> float:
        pts = [p for i in idx for p in by_clip[clips[int(i)]]]
        return spearman(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))

    value = rho(np.arange(len(clips)))
    if not np.isfinite(value):
        return not_measured(f"{what}: constant over the sweep, rho undefined")
    ci = bootstrap_ci(np.arange(len(clips)), rho, seed, n_boot) if len(clips) > 1 else None
    return {"value": value, "ci": ci, "n": len(rows)}


@dataclass
class PosteriorProbe:
    """Logistic regression source-vs-target on the training speakers' pooled store vectors."""

    model: object
    target: str
    train_speakers: tuple[str, ...]
    n_train: int

    @classmethod
    def fit(cls, X: np.ndarray, speakers: np.ndarray, emotions: np.ndarray, source: str,
            target: str, exclude_speakers: Sequence[str]) -> PosteriorProbe:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        keep = ~np.isin(speakers, list(exclude_speakers)) & np.isin(emotions, [source, target])
        y = emotions[keep] == target
        if y.all() or not y.any():
            raise ConfigError(f"the posterior probe needs both {source!r} and {target!r} clips "
                              "from speakers outside --speakers")
        model = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C,
                                                                   max_iter=PROBE_MAX_ITER))
        model.fit(X[keep], y)
        return cls(model, target, tuple(sorted(set(speakers[keep].tolist()))), int(keep.sum()))

    def posterior(self, X: np.ndarray) -> np.ndarray:
        """P(target emotion) per row of X (N, D)."""
        return self.model.predict_proba(np.atleast_2d(X))[:, 1]


class SpeakerSimilarity:
    """Cosine of resemblyzer d-vectors (GE2E; weights ship with the package, CPU only)."""

    def __init__(self):
        self.unavailable: str | None = None
        self._enc = None
        try:
            from resemblyzer import VoiceEncoder
        except ImportError as e:
            self.unavailable = f"resemblyzer not installed ({e})"
            return
        self._enc = VoiceEncoder("cpu", verbose=False)

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        from resemblyzer import preprocess_wav

        return self._enc.embed_utterance(preprocess_wav(np.asarray(wav, np.float32), source_sr=sr))

    def similarity(self, ref: np.ndarray, wav: np.ndarray, sr: int) -> float:
        a, b = ref, self.embed(wav, sr)
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def fidelity(ref16: np.ndarray, out: np.ndarray, sr: int, mel_cfg) -> dict[str, float]:
    """MCD (dB), wide-band PESQ and STOI of `out` against the 16 kHz input `ref16`.

    Both are brought to 16 kHz and cropped to the shorter (the round trip keeps length to
    within a vocoder hop). MCD uses the mapper's own mel front end at its rate."""
    from pesq import pesq
    from pystoi import stoi

    deg = resample(np.asarray(out, np.float32), sr, SAMPLE_RATE)
    n = min(len(ref16), len(deg))
    ref, deg = ref16[:n].astype(np.float64), deg[:n].astype(np.float64)
    res = {}
    mr = log_mel_spectrogram(resample(ref.astype(np.float32), SAMPLE_RATE, mel_cfg.sample_rate), mel_cfg)
    md = log_mel_spectrogram(resample(deg.astype(np.float32), SAMPLE_RATE, mel_cfg.sample_rate), mel_cfg)
    res["mcd_db"] = mel_cepstral_distortion(mr, md)
    try:
        res["pesq"] = float(pesq(PESQ_RATE, ref, deg, "wb"))
    except Exception as e:  # noqa: BLE001 - pesq raises its own bare classes (NoUtterancesError)
        log.warning("PESQ failed (%s); recorded as undefined", e)
        res["pesq"] = float("nan")
    res["stoi"] = float(stoi(ref, deg, SAMPLE_RATE, extended=False))
    return res


class ExternalMetrics:
    """Optional SER / ASR / MOS back ends. Each is None when not requested; when requested but
    unusable offline, `reasons[name]` says why and its cell is "not measured"."""

    def __init__(self, ser: str | None, asr: str | None, mos: str | None, target: str):
        self.target, self.reasons, self._ser, self._asr = target, {}, None, None
        for name, spec in (("ser", ser), ("asr_wer", asr), ("mos", mos)):
            if not spec:
                self.reasons[name] = "not requested"
        if ser:
            self._ser = self._load(
                "ser", ser, lambda: __import__("transformers").pipeline("audio-classification",
                                                                        model=ser))
        if asr:
            self._asr = self._load(
                "asr_wer", asr, lambda: __import__("faster_whisper").WhisperModel(
                    asr, device="cpu", compute_type="int8"))
        if mos:
            # No UTMOS/DNSMOS back end works offline here: UTMOS loads through torch.hub and
            # DNSMOS needs ONNX models fetched separately.
            self.reasons["mos"] = f"{mos}: no offline UTMOS/DNSMOS back end available"

    @property
    def active(self) -> bool:
        """Whether any back end loaded (then the outputs must be kept for `measure`)."""
        return self._ser is not None or self._asr is not None

    def _load(self, name: str, spec: str, loader):
        try:
            return loader()
        except ImportError as e:
            self.reasons[name] = f"{spec}: package missing ({e.name or e})"
        except (OSError, ValueError, RuntimeError) as e:
            self.reasons[name] = f"{spec}: could not load offline ({type(e).__name__}: {e})"[:300]
        return None

    def ser_target_prob(self, wav16: np.ndarray) -> float:
        scores = self._ser({"raw": wav16, "sampling_rate": SAMPLE_RATE}, top_k=None)
        for s in scores:
            try:
                if normalize_emotion(s["label"]) == self.target:
                    return float(s["score"])
            except CorpusError:  # a label outside the project's emotion set
                continue
        return float("nan")

    def transcribe(self, wav16: np.ndarray) -> str:
        segments, _ = self._asr.transcribe(wav16.astype(np.float32), language="en")
        return " ".join(s.text.strip() for s in segments)

    def measure(self, inputs16: dict[str, np.ndarray], outputs16: dict[str, np.ndarray],
                seed: int) -> dict:
        """Cells for `outputs16` (clip key -> 16 kHz audio); ASR WER is against the ASR
        transcript of the clip's input, so it measures intelligibility lost by steering."""
        cells = {k: not_measured(v) for k, v in self.reasons.items()}
        if self._ser is not None:
            cells["ser"] = mean_cell([self.ser_target_prob(w) for w in outputs16.values()],
                                     seed, "ser")
        if self._asr is not None:
            refs = {k: self.transcribe(w) for k, w in inputs16.items()}
            cells["asr_wer"] = mean_cell(
                [word_error_rate(refs[k.split("|")[0]], self.transcribe(w))
                 for k, w in outputs16.items()], seed, "asr_wer")
        return {k: cells[k] for k in ("ser", "asr_wer", "mos")}
