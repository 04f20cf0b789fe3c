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
from emosteer.errors import ConfigError
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
    res["mcd_db"] = mel_cepstral_distortion(mr, md, log=mel_cfg.log)
    try:
        res["pesq"] = float(pesq(PESQ_RATE, ref, deg, "wb"))
    except Exception as e:  # noqa: BLE001 - pesq raises its own bare classes (NoUtterancesError)
        log.warning("PESQ failed (%s); recorded as undefined", e)
        res["pesq"] = float("nan")
    res["stoi"] = float(stoi(ref, deg, SAMPLE_RATE, extended=False))
    return res
