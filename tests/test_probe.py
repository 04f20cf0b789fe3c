"""Probe: numbers checked against independent scikit-learn computations on the real
wav2vec2-base layer-5 embeddings; plots, controls, MFCC features and the run-cost benchmark."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, silhouette_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emosteer.cli import main
from emosteer.probe import (
    N_MFCC,
    benchmark_probe,
    mfcc_statistics,
    probe_arrays,
    speaker_resamples,
    synthetic_corpus,
)


@pytest.fixture(scope="module")
def real(real_embeddings):
    X = np.load(real_embeddings / "embeddings.npy")
    with open(real_embeddings / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return X, np.array([r["speaker"] for r in rows]), np.array([r["emotion"] for r in rows])


@pytest.fixture(scope="module")
def real_store(real_embeddings, tmp_path_factory):
    store = pytest.importorskip("emosteer.store")
    out = tmp_path_factory.mktemp("pstore") / "w2v2-l5"
    store.import_embeddings(real_embeddings / "embeddings.npy", real_embeddings / "index.csv",
                            5, out, model="facebook/wav2vec2-base")
    return out


def sklearn_loso_auc(X, spk, emo, source, target):
    raw, cen, y = [], [], []
    for s in sorted(set(spk)):
        tr = spk != s
        d = [X[tr & (spk == t) & (emo == target)].mean(0) - X[tr & (spk == t) & (emo == source)]
             .mean(0) for t in sorted(set(spk[tr]))]
        u = np.mean(d, 0) / np.linalg.norm(np.mean(d, 0))
        Xs = X[spk == s].astype(np.float64)
        raw.append(Xs @ u)
        cen.append((Xs - Xs.mean(0)) @ u)
        y.append(emo[spk == s] == target)
    y = np.concatenate(y)
    return roc_auc_score(y, np.concatenate(raw)), roc_auc_score(y, np.concatenate(cen))


def test_cli_probe_matches_sklearn_on_real_embeddings(real_store, real, tmp_path, capsys):
    """ACCEPTANCE: angry vs happy held-out AUC and linear-probe balanced accuracy, with CIs."""
    X, spk, emo = real
    rc = main(["probe", str(real_store), "--out", str(tmp_path / "p"), "--emotions",
               "angry,happy", "--no-umap", "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    row = rep["layers"]["5"]
    pred = cross_val_predict(make_pipeline(StandardScaler(),
                                           LogisticRegression(C=1.0, max_iter=2000)),
                             X, emo, groups=spk, cv=GroupKFold(n_splits=5))
    acc = balanced_accuracy_score(emo, pred)
    lp = row["linear_probe"]
    assert lp["value"] == pytest.approx(acc, abs=1e-9)
    assert lp["value"] > 0.8  # real layer-5 embeddings: angry/happy are linearly separable
    raw, cen = sklearn_loso_auc(X, spk, emo, "angry", "happy")
    assert row["angry->happy"]["auc_raw"]["value"] == pytest.approx(raw, abs=1e-6)
    assert row["angry->happy"]["auc_centred"]["value"] == pytest.approx(cen, abs=1e-6)
    sil = silhouette_score(X, emo, metric="cosine")
    assert row["silhouette"]["value"] == pytest.approx(sil, abs=1e-5)
    for cell in (lp, row["angry->happy"]["auc_raw"], row["angry->happy"]["auc_centred"],
                 row["angry->happy"]["pairwise_cosine"], row["silhouette"]):
        assert cell["ci_low"] < cell["value"] < cell["ci_high"], cell
    full = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert full["umap"] == "disabled" and full["best_layer"] == 5
    for name in ("metrics_vs_layer", "scatter_best_layer", "axis_cosines"):
        assert (tmp_path / "p" / f"{name}.png").stat().st_size > 0
        assert (tmp_path / "p" / f"{name}.svg").stat().st_size > 0
    # outputs are not overwritten without -f
    assert main(["probe", str(real_store), "--out", str(tmp_path / "p"), "--no-umap"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_axis_consistency_matches_axes_module(real):
    from emosteer.axes import compute_axis

    X, spk, emo = real
    res = probe_arrays({5: X}, spk, emo, n_boot=20)
    ax = res["layers"][5]["axes"]["angry->happy"]
    diag = compute_axis(X, spk, emo, "angry", "happy").diagnostics
    assert ax["pairwise_cosine"]["value"] == pytest.approx(diag["mean_pairwise_cosine"])
    assert ax["resultant_length"]["value"] == pytest.approx(diag["resultant_length"])


def test_bootstrap_is_seeded_and_resamples_speakers():
    a, b = speaker_resamples(8, 50, 3), speaker_resamples(8, 50, 3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (50, 8) and a.min() >= 0 and a.max() < 8
    assert any(len(set(r)) < 8 for r in a)  # with replacement


def test_sweep_finds_the_layer_with_most_emotion():
    layers, spk, emo = synthetic_corpus(n_layers=3, n_clips=160, dim=24, n_emotions=4)
    res = probe_arrays(layers, spk, emo, reference="e0", n_boot=20)
    acc = [res["layers"][k]["linear_probe"]["value"] for k in range(3)]
    assert acc[2] > acc[0]  # the synthetic emotion offset grows with depth
    assert res["best_layer"] == int(np.argmax(acc))
    assert set(res["layers"][0]["axes"]) == {"e0->e1", "e0->e2", "e0->e3"}


def test_bad_emotions_and_controls_are_clean_errors(real_store, tmp_path, capsys):
    assert main(["probe", str(real_store), "--out", str(tmp_path / "a"),
                 "--emotions", "angry,sad", "--no-umap"]) == 2
    assert "sad" in capsys.readouterr().err
    assert main(["probe", str(real_store), "--out", str(tmp_path / "b"),
                 "--reference", "neutral", "--no-umap"]) == 2
    assert "neutral" in capsys.readouterr().err
    assert main(["probe", str(real_store), "--out", str(tmp_path / "c"),
                 "--control-store", f"x={tmp_path / 'nope'}", "--no-umap"]) == 2
    assert "nope" in capsys.readouterr().err


def test_mfcc_statistics_match_librosa():
    import librosa

    sr = 16000
    t = np.arange(sr) / sr
    wav = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    f = mfcc_statistics(wav, sr)
    m = librosa.feature.mfcc(y=wav, sr=sr, n_mfcc=N_MFCC)
    d = librosa.feature.delta(m)
    assert f.shape == (4 * N_MFCC,)
    np.testing.assert_allclose(f, np.concatenate([m.mean(1), m.std(1), d.mean(1), d.std(1)]),
                               rtol=1e-5, atol=1e-4)
    short = mfcc_statistics(wav[:1200], sr)  # fewer frames than the delta window
    assert short.shape == (4 * N_MFCC,) and np.all(np.isfinite(short))


def test_mfcc_control_store_and_umap_fallback(real_store, ravdess_dir, tmp_path, monkeypatch,
                                              capsys):
    pytest.importorskip("emosteer.corpora")
    from emosteer.corpora import scan_corpus
    from emosteer.probe import mfcc_store

    utts = [u for u in scan_corpus(ravdess_dir, "ravdess")
            if u.emotion in ("angry", "happy") and u.speaker in ("ravdess_01", "ravdess_02")
            and u.intensity in (None, "normal", "01")][:16]
    assert len({u.speaker for u in utts}) == 2
    st = mfcc_store(utts, tmp_path / "mfcc", progress=False)
    assert st.layers == (0,) and st.pooled(0).shape == (len(utts), 4 * N_MFCC)
    assert st.config.model.startswith("mfcc")
    monkeypatch.setitem(sys.modules, "umap", None)  # import umap -> ImportError
    assert main(["probe", str(real_store), "--out", str(tmp_path / "p"), "--emotions",
                 "angry,happy", "--n-boot", "20", "--control-store",
                 f"mfcc={tmp_path / 'mfcc'}"]) == 0
    capsys.readouterr()
    rep = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert rep["umap"] == "UMAP not installed"
    ctrl = rep["controls"]["mfcc"]
    assert ctrl["model"].startswith("mfcc") and set(ctrl["layers"]) == {"0"}
    assert 0.0 <= ctrl["layers"]["0"]["linear_probe"]["value"] <= 1.0


@pytest.mark.slow
def test_probe_cost_13_layers_480_clips():
    """Run-cost budget: a 13 x 480 x 768 sweep in under 2 CPU-minutes."""
    assert benchmark_probe(13, 480, 768) < 120.0
