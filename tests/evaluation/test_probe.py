"""Probe: numbers checked against independent scikit-learn computations on the real
wav2vec2-base layer-5 embeddings; plots, controls, MFCC features and the run-cost benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, silhouette_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import test_axes
from conftest import make_tiny_model_dir
from emosteer.cli import main
from emosteer.cli.probe import parse_controls
from emosteer.embeddings.encoders import EncoderIdentity
from emosteer.errors import ArtifactError, ConfigError
from emosteer.evaluation.controls import N_MFCC, build_controls, mfcc_statistics
from emosteer.evaluation.probe import probe_arrays, speaker_resamples

REPO = Path(__file__).resolve().parents[2]
# The real layer-5 embeddings as arrays and as an imported store, shared with test_axes.
real, real_store = test_axes.real, test_axes.real_store


def layered_corpus(n_layers=3, n_clips=160, dim=24, n_speakers=8, n_emotions=4, seed=0):
    """Speaker offsets dominate; the emotion offset grows with depth."""
    rng = np.random.default_rng(seed)
    spk = np.repeat(np.arange(n_speakers), n_clips // n_speakers)
    emo = np.tile(np.arange(n_emotions), n_clips // n_emotions)
    spk_off, emo_off = rng.normal(size=(n_speakers, dim)) * 2, rng.normal(size=(n_emotions, dim))
    layers = {k: spk_off[spk] + emo_off[emo] * (k + 1) / n_layers
              + rng.normal(size=(n_clips, dim)) for k in range(n_layers)}
    return layers, np.array([f"s{i}" for i in spk]), np.array([f"e{i}" for i in emo])


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


def test_cli_probe_matches_sklearn_on_real_embeddings(real_store, real, tmp_path, capsys,
                                                      caplog):
    """ACCEPTANCE: angry vs happy held-out AUC and linear-probe balanced accuracy, with CIs."""
    X, spk, emo = real
    rc = main(["probe", str(real_store), "--out", str(tmp_path / "p"), "--emotions",
               "angry,happy", "--no-umap", "--json", "--controls", "random-init,mfcc"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    # imported vectors have no audio: both named controls are skipped with the reason, no crash
    assert set(rep["controls_skipped"]) == {"random-init", "mfcc"} and rep["controls"] == {}
    assert all("no audio paths" in why for why in rep["controls_skipped"].values())
    assert "skipping the random-init control" in caplog.text  # logged to stderr by the CLI
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
    layers, spk, emo = layered_corpus()
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
    from emosteer.corpora.formats import scan_corpus
    from emosteer.evaluation.controls import mfcc_store

    utts = [u for u in scan_corpus(ravdess_dir, "ravdess")
            if u.emotion in ("angry", "happy") and u.speaker in ("ravdess_01", "ravdess_02")
            and u.intensity in (None, "normal", "01")][:16]
    assert len({u.speaker for u in utts}) == 2
    st = mfcc_store(utts, tmp_path / "mfcc", progress=False)
    assert st.layers == (0,) and st.pooled(0).shape == (len(utts), 4 * N_MFCC)
    assert st.config.encoder.model.startswith("mfcc")
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


def test_parse_controls_names_and_dirs(tmp_path):
    names, dirs = parse_controls(["random-init", "mfcc", f"rand2={tmp_path / 'r'}",
                                  str(tmp_path / "other")])
    assert names == ("random-init", "mfcc")
    assert dirs == {"rand2": tmp_path / "r", "other": tmp_path / "other"}
    for bad in (["mfcc", "mfcc"], ["model=x"], ["x="], ["=x"]):
        with pytest.raises(ConfigError):
            parse_controls(bad)


@pytest.fixture(scope="module")
def audio_store(ravdess_dir, tmp_path_factory):
    """A 16-clip store (2 actors x angry/happy x 4) from a tiny encoder, with audio paths. Its
    weights come from seed 7, so the random-init control (seed 0) is a different network."""
    from emosteer.corpora.formats import scan_corpus
    from emosteer.embeddings.encoders import load_encoder
    from emosteer.embeddings.extract import extract_store

    utts = [u for u in scan_corpus(ravdess_dir, "ravdess")
            if u.speaker in ("ravdess_01", "ravdess_02") and u.emotion in ("angry", "happy")]
    utts = [u for s in ("ravdess_01", "ravdess_02") for e in ("angry", "happy")
            for u in [v for v in utts if v.speaker == s and v.emotion == e][:4]]
    model = make_tiny_model_dir(tmp_path_factory.mktemp("tiny7"), seed=7)
    enc = load_encoder(model, layers=(0, 2, 4))
    return extract_store(utts, enc, tmp_path_factory.mktemp("astore") / "s", pooling="mean",
                         progress=False)


def test_named_controls_are_built_cached_and_plotted(audio_store, tmp_path, capsys):
    from emosteer.embeddings.store import EmbeddingStore

    out = tmp_path / "p"
    args = ["probe", str(audio_store.root), "--out", str(out), "--controls", "random-init,mfcc",
            "--n-boot", "20", "--no-umap", "--json"]
    assert main(args) == 0
    rep = json.loads(capsys.readouterr().out)
    assert set(rep["controls"]) == {"random-init", "mfcc"} and rep["controls"]["mfcc"] == 0
    assert rep["controls_skipped"] == {}
    rand = EmbeddingStore.open(out / "controls" / "random-init")
    assert rand.config.encoder.random_init and rand.config.encoder.model == audio_store.config.encoder.model
    assert rand.layers == audio_store.layers and rand.config.pooling == "mean"
    assert [r["utt_id"] for r in rand.index] == [r["utt_id"] for r in audio_store.index]
    # a different network: same clips, other vectors
    assert not np.allclose(rand.pooled(4), audio_store.pooled(4))
    full = json.loads((out / "probe.json").read_text())
    assert set(full["controls"]["random-init"]["layers"]) == {"0", "2", "4"}
    assert set(full["controls"]["mfcc"]["layers"]) == {"0"}
    # a rerun reuses the cached control stores instead of re-extracting them
    stamp = {n: (out / "controls" / n / "store.json").stat().st_mtime_ns
             for n in ("random-init", "mfcc")}
    stores, skipped = build_controls(audio_store, ("random-init", "mfcc"), out / "controls")
    assert skipped == {} and set(stores) == {"random-init", "mfcc"}
    assert stamp == {n: (out / "controls" / n / "store.json").stat().st_mtime_ns
                     for n in ("random-init", "mfcc")}
    # another seed is another network: the stale cache is not silently reused or overwritten
    with pytest.raises(ArtifactError, match="already exists"):
        build_controls(audio_store, ("random-init",), out / "controls", seed=1, progress=False)


def test_control_whose_audio_is_all_gone_is_skipped(tmp_path):
    from emosteer.embeddings.store import EmbeddingStore, StoreConfig, write_store

    index = [{"utt_id": f"x/{i}", "path": str(tmp_path / f"gone{i}.wav"), "speaker": f"s{i % 2}",
              "emotion": "angry" if i < 2 else "happy"} for i in range(4)]
    write_store(tmp_path / "s", StoreConfig(encoder=EncoderIdentity("m"), layers=(1,),
                                            pooling="mean", hidden_size=3), index,
                {1: np.zeros((4, 3), np.float32)})
    stores, skipped = build_controls(EmbeddingStore.open(tmp_path / "s"), ["mfcc"],
                                     tmp_path / "c", progress=False)
    assert stores == {} and "no usable audio" in skipped["mfcc"]
    with pytest.raises(ConfigError, match="eGeMAPS"):
        build_controls(EmbeddingStore.open(tmp_path / "s"), ["eGeMAPS"], tmp_path / "c")


@pytest.mark.slow
def test_probe_cost_13_layers_480_clips():
    """Run-cost budget: a 13 x 480 x 768 sweep (plots and UMAP included) in < 2 CPU-minutes."""
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "probe.py")],
                         capture_output=True, text=True, check=True)
    assert res.stdout.strip().endswith("ok"), res.stdout + res.stderr
