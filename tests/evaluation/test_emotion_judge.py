"""The eGeMAPS emotion judge: trained on RAVDESS actors 01-06, calibrated on real clips of
actors 07-08 (../shared/data; skipped when absent), level-invariant, and saved as JSON +
safetensors that load without scikit-learn or pickle."""

from __future__ import annotations

import csv
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from emosteer.errors import ArtifactError, ConfigError

pytest.importorskip("opensmile")

from emosteer.evaluation import emotion_judge as EJ  # noqa: E402

TRAIN = tuple(f"ravdess_{i:02d}" for i in range(1, 7))
HELD_OUT = ("ravdess_07", "ravdess_08")
BINARY = ("calm", "angry")
MULTI_STATEMENT = "01"  # the multi-class judge uses one statement: half the extraction time


@pytest.fixture(scope="module")
def ravdess(shared_data: Path) -> dict:
    """The clips the tests need, with their eGeMAPS features extracted once for the module:
    every calm and angry clip (binary), plus every emotion of statement 01 (multi-class)."""
    rows = []
    with open(shared_data / "manifest.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["dataset"] != "ravdess":
                continue
            if r["emotion"] in BINARY or r["sentence"] == MULTI_STATEMENT:
                rows.append(r)
    paths = [shared_data / r["path"] for r in rows]
    extractor = EJ.EgemapsExtractor()
    X = extractor.features_many(paths)
    return {"paths": paths, "X": X, "extractor": extractor,
            "emotion": np.array([r["emotion"] for r in rows]),
            "speaker": np.array([r["speaker"] for r in rows]),
            "sentence": np.array([r["sentence"] for r in rows])}


def _subset(d: dict, mask: np.ndarray) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    idx = np.flatnonzero(mask)
    return [d["paths"][i] for i in idx], d["emotion"][idx], d["speaker"][idx], d["X"][idx]


@pytest.fixture(scope="module")
def binary_judge(ravdess) -> EJ.EmotionJudge:
    mask = np.isin(ravdess["speaker"], TRAIN) & np.isin(ravdess["emotion"], BINARY)
    paths, emo, spk, X = _subset(ravdess, mask)
    return EJ.train_emotion_judge(paths, emo, spk, classes=BINARY, extractor=ravdess["extractor"],
                                  features=X)


def test_calm_vs_angry_auc_on_held_out_actors(ravdess, binary_judge):
    assert binary_judge.binary and binary_judge.classes == BINARY
    assert binary_judge.meta["training"]["speakers"] == list(TRAIN)
    mask = np.isin(ravdess["speaker"], HELD_OUT) & np.isin(ravdess["emotion"], BINARY)
    paths, emo, spk, _ = _subset(ravdess, mask)
    cal = binary_judge.calibrate(paths, emo, spk)  # features come from the extractor's cache
    print(f"\nbinary calm->angry, actors 07-08: AUC {cal['auc']:.3f} (n={cal['n']}), "
          f"mean P(angry) real calm {cal['p_target_real_source']:.3f}, "
          f"real angry {cal['p_target_real_target']:.3f}, C={binary_judge.meta['C']}")
    assert cal["n"] == 32 and cal["speakers"] == list(HELD_OUT)
    assert cal["auc"] >= 0.85
    assert cal["p_target_real_target"] > cal["p_target_real_source"] + 0.3


def test_multiclass_balanced_accuracy_on_held_out_actors(ravdess):
    st = ravdess["sentence"] == MULTI_STATEMENT
    paths, emo, spk, X = _subset(ravdess, st & np.isin(ravdess["speaker"], TRAIN))
    judge = EJ.train_emotion_judge(paths, emo, spk, extractor=ravdess["extractor"], features=X)
    assert not judge.binary and len(judge.classes) == 8
    paths, emo, spk, X = _subset(ravdess, st & np.isin(ravdess["speaker"], HELD_OUT))
    cal = judge.calibrate(paths, emo, spk, source="calm", target="angry", features=X)
    width = max(len(c) for c in judge.classes)
    lines = [" " * width + " " + " ".join(f"{c[:5]:>5}" for c in judge.classes)]
    lines += [f"{c:>{width}} " + " ".join(f"{v:5d}" for v in row)
              for c, row in zip(judge.classes, cal["confusion_matrix"], strict=True)]
    print(f"\nmulti-class ({len(judge.classes)} emotions, statement 01), actors 07-08: balanced "
          f"accuracy {cal['balanced_accuracy']:.3f} (chance {cal['chance']:.3f}, n={cal['n']}), "
          f"C={judge.meta['C']}\nconfusion (rows true, columns predicted):\n" + "\n".join(lines))
    assert np.asarray(cal["confusion_matrix"]).sum() == cal["n"] == len(emo)
    assert cal["balanced_accuracy"] > cal["chance"] == 0.125


def test_recording_level_does_not_decide(ravdess, binary_judge):
    """A quiet calm clip made 30 dB louder (or an angry one 30 dB quieter) keeps its P(angry):
    the input is loudness-normalised and no level feature is used."""
    assert not any(EJ.level_dependent(n) for n in binary_judge.feature_names)
    assert all("loudness" not in n for n in binary_judge.feature_names)
    from emosteer.audio import load_audio

    i_calm = int(np.flatnonzero(ravdess["emotion"] == "calm")[0])
    i_angry = int(np.flatnonzero(ravdess["emotion"] == "angry")[0])
    for i, db in ((i_calm, 30.0), (i_angry, -30.0)):
        wav = load_audio(ravdess["paths"][i])
        gain = min(10 ** (db / 20), 0.95 / float(np.max(np.abs(wav))))  # never clip
        p = binary_judge.score(wav, 16000)["p_angry"]
        q = binary_judge.score(wav * gain, 16000)["p_angry"]
        assert abs(p - q) < 0.02, (ravdess["paths"][i].name, 20 * np.log10(gain), p, q)


def test_judge_interface_scores_match_predict_proba(ravdess, binary_judge):
    from emosteer.audio import load_audio

    path = ravdess["paths"][0]
    s = binary_judge.score(load_audio(path), 16000)
    assert set(s) == {"p_calm", "p_angry"} and s["p_calm"] + s["p_angry"] == pytest.approx(1)
    assert s["p_angry"] == pytest.approx(float(binary_judge.proba_clips([path])[0]), abs=1e-9)


# --- artifact (no shared data needed) --------------------------------------------------------

def _tone(f0: float, seconds: float, rng, noise: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    f = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f) / 16000
    wav = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(np.pi * t / seconds))
    return (0.1 * wav + noise * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def toy_judge() -> tuple[EJ.EmotionJudge, list[np.ndarray]]:
    """A binary judge on synthetic 'calm' (low, clean) and 'angry' (high, breathy) tones."""
    rng = np.random.default_rng(0)
    clips, labels, speakers = [], [], []
    for s in range(3):
        for k in range(3):
            clips.append(_tone(110 + 10 * s + 3 * k, 1.0, rng, 0.002))
            labels.append("calm")
            clips.append(_tone(220 + 10 * s + 3 * k, 1.0, rng, 0.02))
            labels.append("angry")
            speakers += [f"spk{s}"] * 2
    judge = EJ.train_emotion_judge(clips, labels, speakers, classes=("calm", "angry"), C=1.0,
                                   extractor=EJ.EgemapsExtractor())
    return judge, clips


def test_artifact_round_trip_without_sklearn(tmp_path, toy_judge, monkeypatch):
    judge, clips = toy_judge
    p = judge.proba_clips(clips)
    assert p[1::2].mean() > p[0::2].mean()
    judge.calibrate(clips, ["calm", "angry"] * (len(clips) // 2))
    out = judge.save(tmp_path / "judge")
    assert sorted(f.name for f in out.iterdir()) == [EJ.CONFIG_NAME, EJ.WEIGHTS_NAME]
    monkeypatch.setitem(sys.modules, "sklearn", None)  # loading and scoring need no sklearn
    loaded = EJ.EmotionJudge.load(out, extractor=judge.extractor)
    assert loaded.classes == judge.classes and loaded.feature_names == judge.feature_names
    assert loaded.calibration["auc"] == judge.calibration["auc"]
    np.testing.assert_allclose(loaded.proba_clips(clips), p, rtol=0, atol=1e-12)
    assert loaded.score(clips[1], 16000) == pytest.approx(judge.score(clips[1], 16000))
    assert EJ.EmotionJudge.load(out / EJ.CONFIG_NAME).cache_token() == judge.cache_token()


def test_loading_refuses_pickles(tmp_path, toy_judge):
    judge, _ = toy_judge
    d = judge.save(tmp_path / "judge")
    blob = pickle.dumps({"coef": judge.coef})
    (tmp_path / "judge.pkl").write_bytes(blob)
    with pytest.raises(ArtifactError, match="pickle"):
        EJ.EmotionJudge.load(tmp_path / "judge.pkl")
    (d / EJ.WEIGHTS_NAME).write_bytes(blob)
    with pytest.raises(ArtifactError, match="pickle"):
        EJ.EmotionJudge.load(d)
    with pytest.raises(ArtifactError, match="not found"):
        EJ.EmotionJudge.load(tmp_path / "nowhere")


def test_training_input_errors():
    with pytest.raises(ConfigError, match="one label and one speaker"):
        EJ.train_emotion_judge([np.zeros(16000)], ["calm", "angry"], ["s"])
    with pytest.raises(ConfigError, match="too few clips"):
        EJ.train_emotion_judge([np.zeros(16000)] * 3, ["calm", "calm", "angry"], ["s"] * 3,
                               classes=("calm", "angry"))


def test_loudness_normalisation():
    rng = np.random.default_rng(1)
    wav = _tone(150, 1.0, rng, 0.001)
    a = EJ.normalize_loudness(wav)
    b = EJ.normalize_loudness(wav * 0.01)
    assert EJ.active_level_db(a) == pytest.approx(EJ.TARGET_LEVEL_DBFS, abs=0.01)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert np.all(EJ.normalize_loudness(np.zeros(100, np.float32)) == 0)
