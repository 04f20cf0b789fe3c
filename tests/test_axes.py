"""Axes: checked against independent numpy / scikit-learn recomputations on real wav2vec2-base
layer-5 embeddings (RAVDESS angry & happy), plus calibration, persistence and error paths."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from emosteer.axes import (
    EmotionAxis,
    auc_score,
    compute_axis,
    holdout_auc,
    wrap_vector,
)
from emosteer.cli import main
from emosteer.embeddings import store as store_mod
from emosteer.errors import ArtifactError, ConfigError

HOLDOUT = ("ravdess_07", "ravdess_08")


@pytest.fixture(scope="module")
def real(real_embeddings):
    X = np.load(real_embeddings / "embeddings.npy")
    with open(real_embeddings / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    spk = np.array([r["speaker"] for r in rows])
    emo = np.array([r["emotion"] for r in rows])
    return X, spk, emo


def reference_axis(X, spk, emo, source, target, speakers=None):
    """Plain numpy: per-speaker mean difference, averaged."""
    speakers = sorted(set(spk)) if speakers is None else speakers
    d = np.stack([X[(spk == s) & (emo == target)].astype(np.float64).mean(0)
                  - X[(spk == s) & (emo == source)].astype(np.float64).mean(0) for s in speakers])
    return d.mean(0), d


def reference_holdout(X, spk, emo, source, target, test):
    train = [s for s in sorted(set(spk)) if s not in test]
    v, _ = reference_axis(X, spk, emo, source, target, train)
    u = v / np.linalg.norm(v)
    m = np.isin(spk, test) & np.isin(emo, [source, target])
    Xt = X[m].astype(np.float64)
    y = (emo[m] == target).astype(int)
    raw = roc_auc_score(y, Xt @ u)
    C = Xt.copy()
    for s in test:
        C[spk[m] == s] -= Xt[spk[m] == s].mean(0)
    return raw, roc_auc_score(y, C @ u)


def test_axis_and_diagnostics_match_numpy(real):
    X, spk, emo = real
    fit = compute_axis(X, spk, emo, "happy", "angry")
    v, d = reference_axis(X, spk, emo, "happy", "angry")
    np.testing.assert_allclose(fit.vector, v, atol=1e-6)
    U = d / np.linalg.norm(d, axis=1, keepdims=True)
    cos = [U[i] @ U[j] for i in range(8) for j in range(8) if i != j]
    assert fit.diagnostics["mean_pairwise_cosine"] == pytest.approx(np.mean(cos), abs=1e-9)
    assert fit.diagnostics["resultant_length"] == pytest.approx(np.linalg.norm(U.mean(0)), abs=1e-9)
    assert fit.diagnostics["n_speakers"] == 8
    # without per-speaker normalisation the calibration is the axis norm itself
    assert fit.calibration == pytest.approx(np.linalg.norm(v), rel=1e-6)


def test_normalised_axis_calibration_is_mean_shift_along_unit(real):
    X, spk, emo = real
    fit = compute_axis(X, spk, emo, "happy", "angry", normalize_per_speaker=True)
    _, d = reference_axis(X, spk, emo, "happy", "angry")
    U = d / np.linalg.norm(d, axis=1, keepdims=True)
    np.testing.assert_allclose(fit.vector, U.mean(0), atol=1e-6)
    u = U.mean(0) / np.linalg.norm(U.mean(0))
    assert fit.calibration == pytest.approx(np.mean(d @ u), rel=1e-9)
    assert abs(fit.calibration - np.linalg.norm(fit.vector)) > 1e-3


@pytest.mark.parametrize("holdout", [HOLDOUT, None])
def test_holdout_auc_matches_sklearn(real, holdout):
    X, spk, emo = real
    res = holdout_auc(X, spk, emo, "happy", "angry", holdout)
    if holdout:
        raw, cen = reference_holdout(X, spk, emo, "happy", "angry", list(holdout))
    else:  # LOSO: pool each fold's held-out scores, then one AUC
        scores_raw, scores_cen, ys = [], [], []
        for s in sorted(set(spk)):
            train = [t for t in sorted(set(spk)) if t != s]
            v, _ = reference_axis(X, spk, emo, "happy", "angry", train)
            u = v / np.linalg.norm(v)
            Xs = X[spk == s].astype(np.float64)
            scores_raw.append(Xs @ u)
            scores_cen.append((Xs - Xs.mean(0)) @ u)
            ys.append(emo[spk == s] == "angry")
        ys = np.concatenate(ys)
        raw = roc_auc_score(ys, np.concatenate(scores_raw))
        cen = roc_auc_score(ys, np.concatenate(scores_cen))
    assert res["auc_raw"] == pytest.approx(raw, abs=1e-9)
    assert res["auc_centred"] == pytest.approx(cen, abs=1e-9)
    assert res["auc_raw"] > 0.7  # real layer-5 embeddings do separate angry from happy


def test_auc_score_with_ties_matches_sklearn():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200).astype(float)
    y = rng.random(200) < 0.4
    assert auc_score(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("delta", [-1.0, 0.0, 0.3, 2.0])
def test_steer_moves_projection_by_delta_times_calibration(real, delta):
    X, spk, emo = real
    fit = compute_axis(X, spk, emo, "happy", "angry", normalize_per_speaker=True)
    axis = EmotionAxis.from_fit(fit, model="facebook/wav2vec2-base", layer=5,
                                source="happy", target="angry")
    frames = np.random.default_rng(1).normal(size=(37, 768)).astype(np.float32)
    moved = axis.project(axis.steer(frames, delta)) - axis.project(frames)
    np.testing.assert_allclose(moved, delta * axis.calibration, atol=1e-5)
    # the orthogonal complement is untouched
    rest = axis.steer(frames, delta) - frames
    np.testing.assert_allclose(rest - np.outer(rest @ axis.unit, axis.unit), 0, atol=1e-5)


def test_save_load_roundtrip_and_errors(tmp_path, real):
    X, spk, emo = real
    fit = compute_axis(X, spk, emo, "happy", "angry")
    axis = EmotionAxis.from_fit(fit, model="facebook/wav2vec2-base", layer=5,
                                source="happy", target="angry")
    axis.save(tmp_path / "ax")
    back = EmotionAxis.load(tmp_path / "ax")
    np.testing.assert_array_equal(back.vector, axis.vector)
    assert back.config == axis.config and back.config.speakers == fit.speakers
    assert back.calibration == pytest.approx(axis.calibration)
    with pytest.raises(ConfigError, match="768"):
        back.project(np.zeros((3, 32)))
    with pytest.raises(ArtifactError, match="not an axis"):
        EmotionAxis.load(tmp_path / "missing")
    meta = json.loads((tmp_path / "ax" / "axis.json").read_text())
    meta["config"]["bogus"] = 1
    (tmp_path / "ax" / "axis.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="bogus"):
        EmotionAxis.load(tmp_path / "ax")


def test_speakers_lacking_an_emotion_are_skipped():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 4))
    spk = np.array(["a", "a", "b", "b", "c", "c"])
    emo = np.array(["sad", "angry", "sad", "angry", "sad", "sad"])
    fit = compute_axis(X, spk, emo, "sad", "angry")
    assert fit.speakers == ("a", "b")
    np.testing.assert_allclose(fit.vector, ((X[1] - X[0]) + (X[3] - X[2])) / 2, atol=1e-6)
    with pytest.raises(ConfigError, match="no speaker has both"):
        compute_axis(X, spk, emo, "sad", "happy")


def test_wrap_vector_and_cli_from_npy(tmp_path, capsys):
    v = np.random.default_rng(0).normal(size=768).astype(np.float32)
    axis = wrap_vector(v, "facebook/wav2vec2-base", 5, "calm", "angry")
    frames = np.zeros((2, 768), np.float32)
    np.testing.assert_allclose(axis.steer(frames, 1.0), frames + v, atol=1e-5)  # seed semantics
    np.save(tmp_path / "vec.npy", v)
    args = ["axis", "--from-npy", str(tmp_path / "vec.npy"), "--model", "facebook/wav2vec2-base",
            "--layer", "5", "--source", "calm", "--target", "angry", "--out", str(tmp_path / "ax"),
            "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["axes"][0]["config"]["origin"] == "npy"
    back = EmotionAxis.load(tmp_path / "ax")
    np.testing.assert_array_equal(back.vector, v)
    assert back.config.layer == 5 and back.config.encoder.model == "facebook/wav2vec2-base"
    assert main(args) == 2  # refuses to overwrite without -f
    assert "already exists" in capsys.readouterr().err
    assert main(args + ["-f"]) == 0
    np.save(tmp_path / "bad.npy", np.zeros((3, 3), np.float32))
    assert main(["axis", "--from-npy", str(tmp_path / "bad.npy"), "--model", "m", "--layer", "5",
                 "--source", "calm", "--target", "angry", "--out", str(tmp_path / "b")]) == 2
    assert "bad.npy" in capsys.readouterr().err


@pytest.fixture(scope="module")
def real_store(real_embeddings, tmp_path_factory):
    store = store_mod
    out = tmp_path_factory.mktemp("store") / "w2v2-l5"
    store.import_embeddings(real_embeddings / "embeddings.npy", real_embeddings / "index.csv",
                            5, out, model="facebook/wav2vec2-base")
    return out


def test_cli_axis_json_matches_numpy_and_sklearn(real_store, real, tmp_path, capsys):
    """ACCEPTANCE: the axis and held-out AUC `emosteer axis --json` reports agree to 1e-6."""
    X, spk, emo = real
    rc = main(["axis", str(real_store), "--layer", "5", "--source", "happy", "--target", "angry",
               "--out", str(tmp_path / "ax"), "--holdout-speakers", ",".join(HOLDOUT), "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)["axes"][0]
    raw, cen = reference_holdout(X, spk, emo, "happy", "angry", list(HOLDOUT))
    assert rep["holdout"]["auc_raw"] == pytest.approx(raw, abs=1e-6)
    assert rep["holdout"]["auc_centred"] == pytest.approx(cen, abs=1e-6)
    assert rep["holdout"]["test_speakers"] == list(HOLDOUT)
    # the saved axis is built from the training speakers only, so the held-out ones stay unseen
    train = [s for s in sorted(set(spk)) if s not in HOLDOUT]
    v, _ = reference_axis(X, spk, emo, "happy", "angry", train)
    axis = EmotionAxis.load(tmp_path / "ax")
    np.testing.assert_allclose(axis.vector, v, atol=1e-6)
    assert rep["diagnostics"]["norm"] == pytest.approx(np.linalg.norm(v), abs=1e-6)
    assert axis.config.speakers == tuple(train)
    assert axis.config.encoder.model == "facebook/wav2vec2-base" and axis.config.layer == 5
    assert axis.config.pooling == "norm"


def test_cli_axis_multi_target_and_errors(real_store, tmp_path, capsys):
    out = tmp_path / "axes"
    assert main(["axis", str(real_store), "--layer", "5", "--source", "happy",
                 "--target", "angry", "--out", str(out), "--loso"]) == 0
    assert "loso AUC" in capsys.readouterr().out
    # several targets -> a directory of axes; a missing emotion is a clean error
    assert main(["axis", str(real_store), "--layer", "5", "--source", "happy",
                 "--target", "angry,sad", "--out", str(tmp_path / "multi")]) == 2
    assert "'sad'" in capsys.readouterr().err
    assert not (tmp_path / "multi").exists()  # nothing half-written
    assert main(["axis", str(real_store), "--layer", "7", "--source", "happy",
                 "--target", "angry", "--out", str(tmp_path / "l7")]) == 2
    assert "layer" in capsys.readouterr().err


def test_cli_axis_directory_of_axes(tmp_path, capsys):
    store = store_mod
    rng = np.random.default_rng(0)
    rows = [{"speaker": f"s{s}", "emotion": e} for s in range(3)
            for e in ("neutral", "angry", "sad") for _ in range(2)]
    np.save(tmp_path / "x.npy", rng.normal(size=(len(rows), 16)).astype(np.float32))
    with open(tmp_path / "i.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["speaker", "emotion"])
        w.writeheader()
        w.writerows(rows)
    store.import_embeddings(tmp_path / "x.npy", tmp_path / "i.csv", 2, tmp_path / "st", model="m")
    assert main(["axis", str(tmp_path / "st"), "--layer", "2", "--source", "neutral",
                 "--target", "angry,sad", "--out", str(tmp_path / "axes")]) == 0
    index = json.loads((tmp_path / "axes" / "axes.json").read_text())
    assert index["targets"] == ["angry", "sad"]
    for t in ("angry", "sad"):
        ax = EmotionAxis.load(tmp_path / "axes" / t)
        assert (ax.config.source, ax.config.target, ax.config.layer) == ("neutral", t, 2)
