"""Layer-sweep probe: where in the model is emotion linearly decodable and axis-like?

Per layer, with a 95% percentile-bootstrap CI over speakers (speakers resampled with
replacement, because clips of one speaker are not independent):
- linear probe: balanced accuracy of logistic regression under leave-speakers-out CV
  (GroupKFold). Out-of-fold predictions are computed once; the CI resamples speakers'
  confusion counts instead of refitting, which keeps a 13-layer sweep cheap;
- axis consistency per emotion pair: mean pairwise cosine of per-speaker axes, resultant length;
- held-out-speaker axis AUC (leave-one-speaker-out, pooled), raw and speaker-centred;
- silhouette (cosine) of the emotion clusters; the CI resamples speakers' per-clip values.
Core functions are pure over arrays; `run_probe` wires an EmbeddingStore to them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from emosteer import __version__
from emosteer.axes import MIN_NORM, auc_score, consistency, speaker_differences
from emosteer.errors import ConfigError

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
    if reference is None:
        reference = "neutral" if "neutral" in present else present[0]
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
    present = tuple(e for e in (emotions_chosen or sorted(set(emotions))))
    missing = set(present) - set(emotions)
    if missing or len(present) < 2:
        raise ConfigError(f"need 2+ emotions present; missing {sorted(missing)}, "
                          f"available {sorted(set(emotions))}")
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
    from emosteer.axes import compute_axis

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


def synthetic_corpus(n_layers: int = 13, n_clips: int = 480, dim: int = 768,
                     n_speakers: int = 8, n_emotions: int = 8, seed: int = 0):
    """RAVDESS-shaped random data: speaker offsets dominate, emotion shifts are weaker."""
    rng = np.random.default_rng(seed)
    spk = np.repeat(np.arange(n_speakers), n_clips // n_speakers)
    emo = np.tile(np.arange(n_emotions), len(spk) // n_emotions + 1)[: len(spk)]
    spk_off = rng.normal(size=(n_speakers, dim)) * 2
    emo_off = rng.normal(size=(n_emotions, dim)) * 0.5
    layers = {k: (spk_off[spk] + emo_off[emo] * (k + 1) / n_layers
                  + rng.normal(size=(len(spk), dim))).astype(np.float32)
              for k in range(n_layers)}
    return layers, np.array([f"s{i}" for i in spk]), np.array([f"e{i}" for i in emo])


def benchmark_probe(n_layers: int = 13, n_clips: int = 480, dim: int = 768,
                    n_boot: int = N_BOOT) -> float:
    """Seconds for a full array-level probe sweep on synthetic data of the given size."""
    layers, spk, emo = synthetic_corpus(n_layers, n_clips, dim)
    t0 = time.perf_counter()
    probe_arrays(layers, spk, emo, n_boot=n_boot)
    return time.perf_counter() - t0



# --- controls: MFCC statistics ---------------------------------------------------------------
N_MFCC = 20  # the classic speech-emotion baseline size
DELTA_WIDTH = 9  # librosa's default delta window; shorter clips use the largest odd width that fits
MFCC_MODEL = f"mfcc{N_MFCC}-stats"


def mfcc_statistics(wav, sr: int) -> np.ndarray:
    """(4 * N_MFCC,) = mean and std over frames of 20 MFCCs and of their deltas."""
    import librosa

    m = librosa.feature.mfcc(y=np.asarray(wav, dtype=np.float32), sr=sr, n_mfcc=N_MFCC)
    width = min(DELTA_WIDTH, m.shape[1] if m.shape[1] % 2 else m.shape[1] - 1)
    d = librosa.feature.delta(m, width=width) if width >= 3 else np.zeros_like(m)
    return np.concatenate([m.mean(1), m.std(1), d.mean(1), d.std(1)]).astype(np.float32)


def mfcc_store(utterances, out_dir, force: bool = False, progress: bool = True):
    """An EmbeddingStore (layer 0 only) of MFCC statistics: the no-SSL control for `probe`.

    Bad audio files are reported and skipped, like every batch job."""
    from pathlib import Path

    from tqdm import tqdm

    from emosteer.audio import SAMPLE_RATE, load_audio
    from emosteer.errors import AudioError, EmosteerError
    from emosteer.store import EmbeddingStore, StoreConfig, clear_store, write_store

    out_dir = Path(out_dir)
    if (out_dir / "store.json").exists() and not force:
        raise EmosteerError(f"{out_dir}: already exists (use -f to overwrite)")
    index, feats, skipped = [], [], []
    for u in tqdm(utterances, desc="mfcc", unit="utt", disable=not progress):
        try:
            wav = load_audio(u.path, SAMPLE_RATE)
        except AudioError as e:
            log.warning("skipping %s: %s", u.path, e)
            skipped.append({"utt_id": u.utt_id, "path": str(u.path), "error": str(e)})
            continue
        feats.append(mfcc_statistics(wav, SAMPLE_RATE))
        index.append({"utt_id": u.utt_id, "path": str(u.path), "speaker": u.speaker,
                      "emotion": u.emotion, "sentence": u.sentence, "corpus": u.corpus,
                      "intensity": u.intensity, "n_frames": None,
                      "duration_s": round(len(wav) / SAMPLE_RATE, 3), "item": None})
    if not feats:
        raise EmosteerError(f"{out_dir}: no usable audio among {len(skipped)} file(s)")
    cfg = StoreConfig(model=MFCC_MODEL, layers=(0,), pooling="mean",
                      hidden_size=4 * N_MFCC, source="extract")
    out_dir.mkdir(parents=True, exist_ok=True)
    clear_store(out_dir)
    write_store(out_dir, cfg, index, {0: np.stack(feats)}, skipped)
    return EmbeddingStore.open(out_dir)


# --- stores and plots ------------------------------------------------------------------------
METRICS = (("linear_probe", "linear probe balanced acc."), ("silhouette", "silhouette (cosine)"),
           ("auc_raw", "held-out axis AUC (raw)"), ("auc_centred", "held-out axis AUC (centred)"),
           ("pairwise_cosine", "per-speaker axis cosine"), ("resultant_length", "resultant length"))


def metric_series(result: dict, metric: str, pair: str | None):
    """(layers, value, low, high) arrays of one metric across a probe result's layers."""
    ks = sorted(result["layers"])
    cells = [result["layers"][k][metric] if metric in ("linear_probe", "silhouette")
             else result["layers"][k]["axes"][pair][metric] for k in ks]
    return (np.array(ks), *(np.array([c[f] for c in cells], dtype=float)
                            for f in ("value", "ci_low", "ci_high")))


def store_arrays(store):
    layers = {k: store.pooled(k) for k in store.layers}
    return layers, store.labels("speaker"), store.labels("emotion")


def plot_metrics(result: dict, controls: dict, path_stem) -> None:
    import matplotlib.pyplot as plt

    pair = next(iter(result["layers"][result["best_layer"]]["axes"]), None)
    fig, axs = plt.subplots(2, 3, figsize=(14, 7.5), constrained_layout=True)
    for ax, (metric, title) in zip(axs.flat, METRICS, strict=True):
        if metric not in ("linear_probe", "silhouette") and pair is None:
            ax.set_axis_off()
            continue
        for i, (name, res) in enumerate([("model", result), *controls.items()]):
            k, v, lo, hi = metric_series(res, metric, pair)
            style = {"color": f"C{i}", "label": name, "ls": "-" if i == 0 else "--"}
            if len(k) == 1 and i > 0:  # a single-layer control (MFCC) spans the whole sweep
                ax.axhline(v[0], **style)
                ax.axhspan(lo[0], hi[0], color=f"C{i}", alpha=0.12)
            else:
                ax.plot(k, v, marker="o", ms=3, **style)
                ax.fill_between(k, lo, hi, color=f"C{i}", alpha=0.2)
                if len(k) == 1:  # a band needs two layers; show the CI as an error bar
                    ax.errorbar(k, v, yerr=[v - lo, hi - v], color=f"C{i}", capsize=4)
        ax.set_title(title + (f"\n{pair}" if metric not in ("linear_probe", "silhouette") else ""))
        ax.set_xlabel("layer")
    axs.flat[0].axhline(result["layers"][result["best_layer"]]["linear_probe"]["chance"],
                        color="gray", lw=0.8, ls=":", label="chance")
    axs.flat[0].legend(fontsize=8)
    for ext in ("png", "svg"):
        fig.savefig(f"{path_stem}.{ext}", dpi=120)
    plt.close(fig)


def plot_scatter(X, speakers, emotions, title: str, path_stem, umap: bool = True) -> str:
    """PCA and UMAP of one layer, coloured by emotion and by speaker. Returns the UMAP status."""
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    Z = {"PCA": PCA(n_components=2, random_state=0).fit_transform(X)}
    status = "disabled"
    if umap:
        try:
            import umap as umap_lib
        except ImportError:
            status = "UMAP not installed"
        else:
            Z["UMAP"] = umap_lib.UMAP(random_state=0, n_jobs=1).fit_transform(X)
            status = "ok"
    fig, axs = plt.subplots(2, 2, figsize=(11, 10), constrained_layout=True)
    for row, name in enumerate(("PCA", "UMAP")):
        for col, (key, labels) in enumerate((("emotion", emotions), ("speaker", speakers))):
            ax = axs[row, col]
            if name not in Z:
                ax.text(0.5, 0.5, status if status != "disabled" else "UMAP disabled",
                        ha="center", va="center", transform=ax.transAxes, fontsize=14)
                ax.set_axis_off()
                continue
            names = sorted(set(labels))
            cmap = plt.cm.tab10 if len(names) <= 10 else plt.cm.tab20
            for i, lab in enumerate(names):
                m = labels == lab
                ax.scatter(Z[name][m, 0], Z[name][m, 1], s=9, color=cmap(i % cmap.N),
                           label=lab)
            ax.set_title(f"{name} of {title}, by {key}")
            ax.legend(fontsize=7, markerscale=1.5, ncol=2)
    for ext in ("png", "svg"):
        fig.savefig(f"{path_stem}.{ext}", dpi=120)
    plt.close(fig)
    return status


def plot_cosine_matrix(cm: dict, title: str, path_stem) -> None:
    import matplotlib.pyplot as plt

    names, M = cm["emotions"], np.asarray(cm["cosine"])
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * max(len(names), 2),) * 2, constrained_layout=True)
    im = ax.imshow(M, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(names)), names, rotation=45)
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_title(f"{title}: cosine of axes vs {cm['reference']}")
    fig.colorbar(im, ax=ax, shrink=0.8)
    for ext in ("png", "svg"):
        fig.savefig(f"{path_stem}.{ext}", dpi=120)
    plt.close(fig)


def run_probe(store, out_dir, emotions=(), reference: str | None = None, controls=None,
              n_boot: int = N_BOOT, seed: int = 0, umap: bool = True) -> dict[str, Any]:
    """Probe every layer of `store` (and of each named control store); write plots and
    probe.json to `out_dir`. Returns the probe.json content."""
    import matplotlib

    matplotlib.use("Agg")
    from pathlib import Path

    from emosteer.artifacts import provenance, write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    layers, spk, emo = store_arrays(store)
    result = probe_arrays(layers, spk, emo, emotions, reference, n_boot, seed, progress=True)
    cfg: ProbeConfig = result["config"]
    ctrl = {}
    for name, cstore in (controls or {}).items():
        c_layers, c_spk, c_emo = store_arrays(cstore)
        ctrl[name] = probe_arrays(c_layers, c_spk, c_emo, cfg.emotions, cfg.reference,
                                  n_boot, seed, progress=True)
        ctrl[name]["model"] = cstore.config.model
    best = result["best_layer"]
    keep = select(spk, emo, cfg.emotions)
    Xb = layers[best][keep]
    title = f"{store.config.model} layer {best}"
    cm = axis_cosine_matrix(layers[best], spk, emo, cfg.reference)
    plot_metrics(result, ctrl, out_dir / "metrics_vs_layer")
    umap_status = plot_scatter(Xb, spk[keep], emo[keep], title, out_dir / "scatter_best_layer",
                               umap)
    plot_cosine_matrix(cm, title, out_dir / "axis_cosines")
    report = {"model": store.config.model, "store": str(store.root), **result,
              "axis_cosine_matrix": cm, "umap": umap_status, "controls": ctrl,
              "provenance": provenance()}
    write_json(out_dir / "probe.json", report)
    return report
