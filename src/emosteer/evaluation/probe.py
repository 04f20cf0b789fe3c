"""Layer-sweep probe: where in the model is emotion linearly decodable and axis-like?

Per layer, with a 95% percentile-bootstrap CI over speakers (speakers resampled with
replacement, because clips of one speaker are not independent):
- linear probe: balanced accuracy of logistic regression under leave-speakers-out CV
  (GroupKFold). Out-of-fold predictions are computed once; the CI resamples speakers'
  confusion counts instead of refitting, which keeps a 13-layer sweep cheap;
- axis consistency per emotion pair: mean pairwise cosine of per-speaker axes, resultant length;
- held-out-speaker axis AUC (leave-one-speaker-out, pooled), raw and speaker-centred;
- silhouette (cosine) of the emotion clusters; the CI resamples speakers' per-clip values.
Core functions are pure over arrays; `run_probe` wires an EmbeddingStore to them and writes
probe.json plus the figures of `plots`. Control stores: `controls`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emosteer import __version__
from emosteer.artifacts import provenance, write_json
from emosteer.axes import MIN_NORM, auc_score, compute_axis, consistency, speaker_differences
from emosteer.errors import ConfigError
from emosteer.evaluation.plots import plot_all

log = logging.getLogger(__name__)

N_BOOT = 200  # resamples: enough for a stable 95% percentile CI of these cheap statistics
CI_LEVEL = 0.95
PROBE_FOLDS = 5  # GroupKFold splits, capped at the number of speakers
PROBE_C = 1.0  # inverse L2 strength of the logistic regression, on standardised features
PROBE_MAX_ITER = 2000
SILHOUETTE_METRIC = "cosine"  # loudness scales SSL embeddings; direction carries the content


@dataclass(frozen=True)
class ProbeConfig:
    emotions: tuple[str, ...]
    reference: str
    pairs: tuple[tuple[str, str], ...]
    n_boot: int = N_BOOT
    ci_level: float = CI_LEVEL
    folds: int = PROBE_FOLDS
    probe_c: float = PROBE_C
    silhouette_metric: str = SILHOUETTE_METRIC
    seed: int = 0
    emosteer_version: str = __version__


def _ci(value: float, boots: np.ndarray, level: float) -> dict[str, float]:
    boots = np.asarray(boots, dtype=np.float64)
    boots = boots[np.isfinite(boots)]
    if boots.size == 0:
        return {"value": value, "ci_low": float("nan"), "ci_high": float("nan")}
    a = (1 - level) / 2
    lo, hi = np.quantile(boots, [a, 1 - a])
    return {"value": float(value), "ci_low": float(lo), "ci_high": float(hi)}


def speaker_resamples(n_speakers: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_speakers) speaker indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n_speakers, size=(n_boot, n_speakers))


def _balanced_accuracy(counts: np.ndarray) -> float:
    """counts (C, C) true x predicted -> mean per-class recall over classes present."""
    support = counts.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(counts)[present] / support[present]))


def linear_probe(X, speakers, emotions, folds: int = PROBE_FOLDS, n_boot: int = N_BOOT,
                 seed: int = 0, level: float = CI_LEVEL) -> dict[str, Any]:
    """Speaker-independent balanced accuracy with a speaker-bootstrap CI."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    spk_names, spk = np.unique(np.asarray(speakers).astype(str), return_inverse=True)
    classes, y = np.unique(np.asarray(emotions).astype(str), return_inverse=True)
    if len(spk_names) < 2 or len(classes) < 2:
        raise ConfigError("the linear probe needs at least 2 speakers and 2 emotions")
    pred = np.empty_like(y)
    for train, test in GroupKFold(n_splits=min(folds, len(spk_names))).split(X, y, spk):
        clf = make_pipeline(StandardScaler(),
                            LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER))
        pred[test] = clf.fit(X[train], y[train]).predict(X[test])
    C = len(classes)
    counts = np.zeros((len(spk_names), C, C))
    np.add.at(counts, (spk, y, pred), 1)
    value = _balanced_accuracy(counts.sum(axis=0))
    boots = speaker_resamples(len(spk_names), n_boot, seed)
    boot_vals = [_balanced_accuracy(counts[idx].sum(axis=0)) for idx in boots]
    out = _ci(value, np.array(boot_vals), level)
    out["chance"] = 1.0 / C
    out["per_speaker"] = {s: _balanced_accuracy(counts[i]) for i, s in enumerate(spk_names)}
    return out


def axis_metrics(X, speakers, emotions, source: str, target: str, n_boot: int = N_BOOT,
                 seed: int = 0, level: float = CI_LEVEL) -> dict[str, Any]:
    """Consistency and leave-one-speaker-out AUC of the source->target axis, with CIs over the
    speakers having both emotions."""
    X = np.asarray(X, dtype=np.float64)
    speakers = np.asarray(speakers).astype(str)
    emotions = np.asarray(emotions).astype(str)
    used, D = speaker_differences(X, speakers, emotions, source, target)
    S = len(used)
    U = D / np.maximum(np.linalg.norm(D, axis=1, keepdims=True), MIN_NORM)
    G = U @ U.T
    cos, resultant = consistency(D)
    raw, cen, lab = [], [], []
    total = D.sum(axis=0)
    for i, s in enumerate(used):
        m = (speakers == s) & np.isin(emotions, [source, target])
        # The LOSO axis in closed form: the mean of the other speakers' shifts.
        v = (total - D[i]) / max(S - 1, 1)
        u = v / max(np.linalg.norm(v), MIN_NORM)
        Xs = X[m]
        raw.append(Xs @ u)
        cen.append((Xs - Xs.mean(axis=0)) @ u)
        lab.append(emotions[m] == target)
    out: dict[str, Any] = {"speakers": list(used), "norm": float(np.linalg.norm(D.mean(0)))}
    auc_raw = auc_score(np.concatenate(raw), np.concatenate(lab)) if S > 1 else float("nan")
    auc_cen = auc_score(np.concatenate(cen), np.concatenate(lab)) if S > 1 else float("nan")
    b_cos, b_res, b_raw, b_cen = [], [], [], []
    for idx in speaker_resamples(S, n_boot, seed):
        # A speaker drawn twice is not a second speaker agreeing with itself: only pairs of
        # distinct speakers count, and the resultant follows from that cosine by the exact
        # identity |mean u|^2 = 1/S + (S-1)/S * mean pairwise cosine at the original S.
        distinct = idx[:, None] != idx[None, :]
        b = float(G[np.ix_(idx, idx)][distinct].mean()) if distinct.any() else np.nan
        b_cos.append(b)
        b_res.append(np.sqrt(max(1 / S + (S - 1) / S * b, 0.0)))
        if S > 1:
            lb = np.concatenate([lab[i] for i in idx])
            b_raw.append(auc_score(np.concatenate([raw[i] for i in idx]), lb))
            b_cen.append(auc_score(np.concatenate([cen[i] for i in idx]), lb))
    out["pairwise_cosine"] = _ci(cos, np.array(b_cos), level)
    out["resultant_length"] = _ci(resultant, np.array(b_res), level)
    out["auc_raw"] = _ci(auc_raw, np.array(b_raw), level)
    out["auc_centred"] = _ci(auc_cen, np.array(b_cen), level)
    return out


def silhouette(X, speakers, emotions, n_boot: int = N_BOOT, seed: int = 0,
               level: float = CI_LEVEL) -> dict[str, Any]:
    from sklearn.metrics import silhouette_samples

    spk_names, spk = np.unique(np.asarray(speakers).astype(str), return_inverse=True)
    vals = silhouette_samples(X, np.asarray(emotions).astype(str), metric=SILHOUETTE_METRIC)
    by_spk = [vals[spk == i] for i in range(len(spk_names))]
    boot_vals = [np.concatenate([by_spk[i] for i in idx]).mean()
                 for idx in speaker_resamples(len(spk_names), n_boot, seed)]
    return _ci(float(vals.mean()), np.array(boot_vals), level)


def select(speakers, emotions, chosen) -> np.ndarray:
    emotions = np.asarray(emotions).astype(str)
    return np.isin(emotions, list(chosen)) if chosen else np.ones(len(emotions), bool)


def default_pairs(present: tuple[str, ...], reference: str | None
                  ) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Every emotion against the reference (default neutral, else the first one given)."""
    present = tuple(str(e) for e in present)  # plain str: no np.str_(...) in messages
    if reference is None:
        reference = "neutral" if "neutral" in present else present[0]
    reference = str(reference)
    if reference not in present:
        raise ConfigError(f"--reference {reference!r} not among the emotions {list(present)}")
    return reference, tuple((reference, e) for e in present if e != reference)


def probe_layer(X, speakers, emotions, cfg: ProbeConfig) -> dict[str, Any]:
    """All metrics for one layer's pooled embeddings (rows already restricted to cfg.emotions)."""
    b = {"n_boot": cfg.n_boot, "seed": cfg.seed, "level": cfg.ci_level}
    res: dict[str, Any] = {
        "linear_probe": linear_probe(X, speakers, emotions, cfg.folds, **b),
        "silhouette": silhouette(X, speakers, emotions, **b),
        "axes": {},
    }
    for src, tgt in cfg.pairs:
        res["axes"][f"{src}->{tgt}"] = axis_metrics(X, speakers, emotions, src, tgt, **b)
    return res


def probe_arrays(layers: dict[int, np.ndarray], speakers, emotions, emotions_chosen=(),
                 reference: str | None = None, n_boot: int = N_BOOT, seed: int = 0,
                 progress: bool = False) -> dict[str, Any]:
    """Sweep `layers` ({layer: (N, D)}) with shared speaker/emotion labels."""
    from tqdm import tqdm

    keep = select(speakers, emotions, emotions_chosen)
    speakers = np.asarray(speakers).astype(str)[keep]
    emotions = np.asarray(emotions).astype(str)[keep]
    available = sorted(set(emotions.tolist()))  # plain str: no np.str_(...) in messages
    present = tuple(str(e) for e in (emotions_chosen or available))
    missing = set(present) - set(available)
    if missing or len(present) < 2:
        raise ConfigError(f"need 2+ emotions present; missing {sorted(missing)}, "
                          f"available {available}")
    ref, pairs = default_pairs(present, reference)
    cfg = ProbeConfig(emotions=present, reference=ref, pairs=pairs, n_boot=n_boot, seed=seed)
    out = {"config": cfg, "n_clips": int(keep.sum()),
           "n_speakers": len(set(speakers.tolist())), "layers": {}}
    for layer in tqdm(sorted(layers), desc="probe", unit="layer", disable=not progress):
        X = np.asarray(layers[layer])[keep]
        out["layers"][int(layer)] = probe_layer(X, speakers, emotions, cfg)
    lp = {k: v["linear_probe"]["value"] for k, v in out["layers"].items()}
    out["best_layer"] = max(lp, key=lambda k: (lp[k], -k))
    return out


def axis_cosine_matrix(X, speakers, emotions, reference: str) -> dict[str, Any]:
    """Cosines between every emotion's axis against `reference` (speaker-averaged shifts)."""
    names, vecs = [], []
    for e in sorted(set(np.asarray(emotions).astype(str).tolist()) - {reference}):
        try:
            v = compute_axis(X, speakers, emotions, reference, e).vector.astype(np.float64)
        except ConfigError as err:
            log.warning("cosine matrix: skipping %s (%s)", e, err)
            continue
        names.append(e)
        vecs.append(v / np.linalg.norm(v))
    M = np.stack(vecs) @ np.stack(vecs).T if vecs else np.zeros((0, 0))
    return {"reference": str(reference), "emotions": names, "cosine": M}


def store_arrays(store) -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray]:
    """({layer: (N, D)}, speakers, emotions) of an EmbeddingStore."""
    return {k: store.pooled(k) for k in store.layers}, store.labels("speaker"), \
        store.labels("emotion")


def run_probe(store, out_dir, emotions=(), reference: str | None = None, controls=None,
              n_boot: int = N_BOOT, seed: int = 0, umap: bool = True,
              controls_skipped: dict[str, str] | None = None) -> dict[str, Any]:
    """Probe every layer of `store` (and of each named control store); write plots and
    probe.json to `out_dir`. Returns the probe.json content."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    layers, spk, emo = store_arrays(store)
    result = probe_arrays(layers, spk, emo, emotions, reference, n_boot, seed, progress=True)
    cfg: ProbeConfig = result["config"]
    ctrl = {}
    for name, cstore in (controls or {}).items():
        ctrl[name] = probe_arrays(*store_arrays(cstore), cfg.emotions, cfg.reference,
                                  n_boot, seed, progress=True)
        ctrl[name]["model"] = cstore.config.encoder.model
    best = result["best_layer"]
    keep = select(spk, emo, cfg.emotions)
    cm = axis_cosine_matrix(layers[best], spk, emo, cfg.reference)
    umap_status = plot_all(result, ctrl, layers[best][keep], spk[keep], emo[keep], cm,
                           f"{store.config.encoder.model} layer {best}", out_dir, umap)
    report = {"model": store.config.encoder.model, "store": str(store.root), **result,
              "axis_cosine_matrix": cm, "umap": umap_status, "controls": ctrl,
              "controls_skipped": dict(controls_skipped or {}), "provenance": provenance()}
    write_json(out_dir / "probe.json", report)
    return report
