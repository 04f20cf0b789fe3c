"""Figures of a probe result (`probe`): metrics against layer with CI bands, a PCA/UMAP
scatter of one layer, and the emotion x emotion cosine matrix of the axes.

Every figure is written as PNG (for a quick look and the HTML report) and SVG (for a paper).
Matplotlib is imported lazily with the Agg backend, so probing needs no display.
"""

from __future__ import annotations

import numpy as np

FORMATS = ("png", "svg")
DPI = 120  # 14 x 7.5 in at 120 dpi keeps the PNG legible and under ~200 kB
BAND_ALPHA = 0.2  # CI band opacity: the curve stays readable through overlapping bands
CELL_INCHES = 0.8  # per emotion in the cosine matrix, enough for a two-decimal label
DARK_CELL = 0.6  # |cosine| beyond which RdBu_r is dark enough to need a white label
UMAP_SEED = 0
METRICS = (("linear_probe", "linear probe balanced acc."), ("silhouette", "silhouette (cosine)"),
           ("auc_raw", "held-out axis AUC (raw)"), ("auc_centred", "held-out axis AUC (centred)"),
           ("pairwise_cosine", "per-speaker axis cosine"), ("resultant_length", "resultant length"))
LAYER_METRICS = ("linear_probe", "silhouette")  # the others are per emotion pair


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path_stem) -> None:
    for ext in FORMATS:
        fig.savefig(f"{path_stem}.{ext}", dpi=DPI)
    plt.close(fig)


def metric_series(result: dict, metric: str, pair: str | None):
    """(layers, value, low, high) arrays of one metric across a probe result's layers."""
    ks = sorted(result["layers"])
    cells = [result["layers"][k][metric] if metric in LAYER_METRICS
             else result["layers"][k]["axes"][pair][metric] for k in ks]
    return (np.array(ks), *(np.array([c[f] for c in cells], dtype=float)
                            for f in ("value", "ci_low", "ci_high")))


def plot_metrics(result: dict, controls: dict, path_stem) -> None:
    """One panel per metric; the model solid, each control dashed, 95% CI as a band. The axis
    metrics show the first emotion pair (probe.json holds every pair)."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    pair = next(iter(result["layers"][result["best_layer"]]["axes"]), None)
    fig, axs = plt.subplots(2, 3, figsize=(14, 7.5), constrained_layout=True)
    for ax, (metric, title) in zip(axs.flat, METRICS, strict=True):
        if metric not in LAYER_METRICS and pair is None:
            ax.set_axis_off()
            continue
        for i, (name, res) in enumerate([("model", result), *controls.items()]):
            if metric not in LAYER_METRICS and pair not in res["layers"][res["best_layer"]]["axes"]:
                continue  # a control lacking this pair (fewer emotions survived) has no curve
            k, v, lo, hi = metric_series(res, metric, pair)
            style = {"color": f"C{i}", "label": name, "ls": "-" if i == 0 else "--"}
            if len(k) == 1 and i > 0:  # a single-layer control (MFCC) spans the whole sweep
                ax.axhline(v[0], **style)
                ax.axhspan(lo[0], hi[0], color=f"C{i}", alpha=BAND_ALPHA / 2)
            else:
                ax.plot(k, v, marker="o", ms=3, **style)
                ax.fill_between(k, lo, hi, color=f"C{i}", alpha=BAND_ALPHA)
                if len(k) == 1:  # a band needs two layers; show the CI as an error bar
                    ax.errorbar(k, v, yerr=[v - lo, hi - v], color=f"C{i}", capsize=4)
        ax.set_title(title + (f"\n{pair}" if metric not in LAYER_METRICS else ""))
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are whole numbers
    axs.flat[0].axhline(result["layers"][result["best_layer"]]["linear_probe"]["chance"],
                        color="gray", lw=0.8, ls=":", label="chance")
    axs.flat[0].legend(fontsize=8)
    _save(plt, fig, path_stem)


def _embed_2d(X, umap: bool) -> tuple[dict[str, np.ndarray], str]:
    from sklearn.decomposition import PCA

    Z = {"PCA": PCA(n_components=2, random_state=0).fit_transform(X)}
    if not umap:
        return Z, "disabled"
    try:
        import umap as umap_lib
    except ImportError:
        return Z, "UMAP not installed"
    Z["UMAP"] = umap_lib.UMAP(random_state=UMAP_SEED, n_jobs=1).fit_transform(X)
    return Z, "ok"


def plot_scatter(X, speakers, emotions, title: str, path_stem, umap: bool = True) -> str:
    """PCA and UMAP of one layer, coloured by emotion and by speaker. Returns the UMAP status:
    "ok", "disabled" or "UMAP not installed" (the panel then says so instead of a scatter)."""
    plt = _pyplot()
    Z, status = _embed_2d(np.asarray(X), umap)
    speakers, emotions = np.asarray(speakers).astype(str), np.asarray(emotions).astype(str)
    fig, axs = plt.subplots(2, 2, figsize=(11, 10), constrained_layout=True)
    for row, name in enumerate(("PCA", "UMAP")):
        for col, (key, labels) in enumerate((("emotion", emotions), ("speaker", speakers))):
            ax = axs[row, col]
            if name not in Z:
                ax.text(0.5, 0.5, status if status != "disabled" else "UMAP disabled",
                        ha="center", va="center", transform=ax.transAxes, fontsize=14)
                ax.set_axis_off()
                continue
            names = sorted(set(labels.tolist()))
            cmap = plt.cm.tab10 if len(names) <= 10 else plt.cm.tab20
            for i, lab in enumerate(names):
                m = labels == lab
                ax.scatter(Z[name][m, 0], Z[name][m, 1], s=9, color=cmap(i % cmap.N),
                           label=lab)
            ax.set_title(f"{name} of {title}, by {key}")
            ax.legend(fontsize=7, markerscale=1.5, ncol=2)
    _save(plt, fig, path_stem)
    return status


def plot_cosine_matrix(cm: dict, title: str, path_stem) -> None:
    """Heat map of `probe.axis_cosine_matrix` output (every emotion in the store against
    its reference, whatever subset the sweep used), each cell labelled."""
    plt = _pyplot()
    names, M = cm["emotions"], np.asarray(cm["cosine"])
    side = 1.2 + CELL_INCHES * max(len(names), 2)
    fig, ax = plt.subplots(figsize=(side, side), constrained_layout=True)
    im = ax.imshow(M, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(names)), names, rotation=45)
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(M[i, j]) > DARK_CELL else "black")
    ax.set_title(f"{title}: cosine of axes vs {cm['reference']}")
    fig.colorbar(im, ax=ax, shrink=0.8)
    _save(plt, fig, path_stem)


def plot_all(result: dict, controls: dict, X_best, speakers, emotions, cosines: dict,
             title: str, out_dir, umap: bool = True) -> str:
    """The three figures of a probe run into `out_dir`; returns the UMAP status."""
    plot_metrics(result, controls, out_dir / "metrics_vs_layer")
    status = plot_scatter(X_best, speakers, emotions, title, out_dir / "scatter_best_layer", umap)
    plot_cosine_matrix(cosines, title, out_dir / "axis_cosines")
    return status
