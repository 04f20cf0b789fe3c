"""emosteer evaluate with the judge panel, on a few real RAVDESS clips: every judge cell has its
n and CIs, the emotion judge's reference lines are reported, the reference rows are judged, and
without the optional judge packages evaluate still runs and names the missing judges."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from emosteer.axes import build_axis
from emosteer.cli import main
from emosteer.corpora.formats import scan_corpus
from emosteer.embeddings.encoders import load_encoder
from emosteer.embeddings.extract import extract_store
from emosteer.errors import ConfigError
from emosteer.evaluation.evaluate import (
    JUDGE_METRICS,
    EvaluateConfig,
    Panel,
    evaluate,
    score_items,
)
from emosteer.prosody.world import ProsodyDelta

LAYER = 2
TRAIN = ("ravdess_01", "ravdess_02")
HELD_OUT = ("ravdess_07", "ravdess_08")
JUDGES = ("dnsmos", "asr", "speaker", "emotion")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir, ravdess_dir):
    """Store of 4 actors x (2 calm + 2 angry) RAVDESS clips (statement 01, normal and strong
    intensity, repetition 1), tiny encoder; axis and prosody delta from the training actors."""
    root = tmp_path_factory.mktemp("evaluate_judges")
    utts = [u for u in scan_corpus(ravdess_dir, "ravdess")
            if u.speaker in TRAIN + HELD_OUT and u.emotion in ("calm", "angry")
            and u.sentence == "01" and u.path.stem.split("-")[5] == "01"]
    assert len(utts) == 16
    store = extract_store(utts, load_encoder(tiny_model_dir, layers=[LAYER]), root / "store",
                          progress=False)
    build_axis(store, LAYER, "calm", "angry", exclude_speakers=HELD_OUT).save(root / "axis")
    ProsodyDelta(f0_shift_st=4.0, f0_range_ratio=1.2, tilt_db=3.0, energy_db=3.0, rate_ratio=1.0,
                 source="calm", target="angry").save(root / "axis" / "prosody.json")
    return root


@pytest.fixture(scope="module")
def report(setup):
    """The CLI with explicit judges: one calm clip per held-out actor, deltas 0 and 1."""
    out = setup / "out"
    rc = main(["evaluate", "--store", str(setup / "store"), "--axis", str(setup / "axis"),
               "--modes", "prosody", "--speakers", "07,08", "--deltas", "0,1",
               "--clips-per-speaker", "1", "--judges", ",".join(JUDGES), "--out", str(out),
               "--no-progress"])
    assert rc == 0
    return json.loads((out / "evaluate.json").read_text())


def assert_judge_cell(cell, n):
    assert cell["n"] == n and np.isfinite(cell["value"]), cell
    assert cell["ci"] is not None and cell["ci"][0] <= cell["ci"][1]
    assert cell["n_speakers"] == 2 and cell["ci_speakers"] is not None


def test_every_judge_cell_has_n_and_ci(report, capsys):
    assert report["judges"]["run"] == list(JUDGES)
    assert set(report["judges"]["skipped"]) == set()
    for row in report["table"]:
        for name in JUDGES:
            for metric in JUDGE_METRICS[name]:
                assert_judge_cell(row["judges"][name][metric], 2)
        assert row["judges"]["asr"]["reference"] == {"transcript": 2}
        assert row["judges"]["ser"]["p_target"]["status"] == "not measured"
        assert row["judges"]["emotion"]["auc"] == report["emotion_judge"]["auc"]
        assert set(row["posterior"]) == {"value", "ci", "n"}  # the legacy cells are unchanged
    assert "same encoder" in report["labels"]["posterior"]
    assert report["probe"]["label"] == "probe posterior (same encoder)"
    # prosody delta 0 is the input itself; the clean input beats the copy synthesis
    rows = {r["kind"]: r for r in report["references"]}
    assert list(rows) == ["input", "copy_synthesis", "real_target"]
    for ref in rows.values():
        for name in JUDGES:
            for metric in JUDGE_METRICS[name]:
                assert_judge_cell(ref["judges"][name][metric], 2)
    zero = next(r for r in report["table"] if r["delta"] == 0.0)
    assert zero["judges"]["dnsmos"]["ovrl"]["value"] == pytest.approx(
        rows["input"]["judges"]["dnsmos"]["ovrl"]["value"])
    assert rows["input"]["judges"]["asr"]["wer"]["value"] <= 0.2
    assert rows["input"]["judges"]["speaker"]["cosine"]["value"] == pytest.approx(1.0)
    assert rows["real_target"]["judges"]["speaker"]["cosine"]["value"] < 1.0
    assert "emotion_p_target" in report["monotonicity"]["prosody"]
    for clip in report["clips"]:
        assert clip["copy_synthesis"].endswith("copy_synthesis.wav")


def test_emotion_judge_reference_lines(report, setup):
    emo = report["emotion_judge"]
    assert emo["status"] == "trained" and emo["train_speakers"] == list(TRAIN)
    assert emo["calibration_speakers"] == list(HELD_OUT) and 0.0 <= emo["auc"] <= 1.0
    src, tgt = emo["p_target_real_source"], emo["p_target_real_target"]
    assert src["n"] == tgt["n"] == 4 and src["ci"] is not None and tgt["ci"] is not None
    assert tgt["value"] > src["value"]  # real angry clips look angrier than real calm ones
    assert (setup / "out" / "emotion_judge" / "emotion_judge.json").is_file()
    assert any((setup / "out" / "cache" / "egemaps").iterdir())


def test_saved_emotion_judge_is_reused(setup, tmp_path):
    cfg = EvaluateConfig(speakers=HELD_OUT[:1], deltas=(0.0,), modes=("prosody",),
                         clips_per_speaker=1, n_boot=50, judges=("emotion",),
                         emotion_judge=str(setup / "out" / "emotion_judge"))
    rep = evaluate(setup / "store", setup / "axis", None, tmp_path / "out", cfg, progress=False)
    assert rep["emotion_judge"]["status"] == "loaded"
    assert rep["judges"]["run"] == ["emotion"]
    assert rep["table"][0]["judges"]["emotion"]["p_target"]["n"] == 1


def test_missing_judge_packages_are_named_not_fatal(setup, tmp_path, monkeypatch):
    # transformers stays: the steering encoder needs it (ser is skipped for want of --ser)
    for module in ("speechmos", "faster_whisper", "resemblyzer", "opensmile"):
        monkeypatch.setitem(sys.modules, module, None)
    cfg = EvaluateConfig(speakers=HELD_OUT[:1], deltas=(0.0,), modes=("prosody",),
                         clips_per_speaker=1, n_boot=50)
    rep = evaluate(setup / "store", setup / "axis", None, tmp_path / "out", cfg, progress=False)
    assert rep["judges"]["run"] == []
    skipped = rep["judges"]["skipped"]
    assert set(skipped) == {"dnsmos", "asr", "speaker", "emotion", "ser"}
    for name, package in (("dnsmos", "speechmos"), ("asr", "faster-whisper"),
                          ("speaker", "resemblyzer"), ("emotion", "opensmile"),
                          ("ser", "--ser")):
        assert package in skipped[name]
    cell = rep["table"][0]["judges"]["dnsmos"]["ovrl"]
    assert cell["status"] == "not measured" and "speechmos" in cell["reason"]
    assert rep["emotion_judge"]["status"] == "not measured"
    assert rep["table"][0]["speaker_similarity"]["status"] == "not measured"
    assert "value" in rep["table"][0]["posterior"]
    # named explicitly, a missing judge is an error that names its package
    with pytest.raises(ConfigError, match="speechmos"):
        evaluate(setup / "store", setup / "axis", None, tmp_path / "o2",
                 EvaluateConfig(speakers=HELD_OUT[:1], deltas=(0.0,), modes=("prosody",),
                                judges=("dnsmos",)), progress=False)


def test_csv_text_column_reaches_the_store_index(tmp_path, tiny_model_dir):
    """A CSV manifest's `text` is kept per utterance, so evaluate can score WER against it."""
    from emosteer.audio import SAMPLE_RATE, save_audio
    from emosteer.corpora import scan_corpus
    from emosteer.embeddings import EmbeddingStore, extract_store, load_encoder

    t = np.arange(int(0.5 * SAMPLE_RATE)) / SAMPLE_RATE
    save_audio(tmp_path / "a.wav", (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32),
               SAMPLE_RATE)
    (tmp_path / "m.csv").write_text("path,speaker,emotion,text\na.wav,s1,calm,Hello there\n")
    utts = scan_corpus(tmp_path / "m.csv", "csv")
    extract_store(utts, load_encoder(tiny_model_dir, layers=[1]), tmp_path / "store",
                  progress=False)
    assert EmbeddingStore.open(tmp_path / "store").index[0]["text"] == "Hello there"


class _CountingJudge:
    """Scores each clip by its mean and counts the clips it was given."""

    def __init__(self):
        self.seen = 0

    def cache_token(self):
        return "counting"

    def score_many(self, batch):
        self.seen += len(batch)
        return [{"ovrl": float(np.mean(b["wav"])), "sig": 0.0, "bak": 0.0} for b in batch]


def test_identical_items_are_judged_once_and_counted():
    judge = _CountingJudge()
    panel = Panel(judges={"dnsmos": judge}, skipped={}, requested=None, emotion={},
                  target="angry", failures={"dnsmos": []})
    wav = np.random.default_rng(0).standard_normal(1600).astype(np.float32)
    other = wav + 1.0
    items = [{"row": "input", "wav": wav, "sr": 16000, "text": "a"},
             {"row": "steered", "mode": "prosody", "delta": 0.0, "wav": wav.copy(),
              "sr": 16000, "text": "a"},
             {"row": "steered", "mode": "prosody", "delta": 1.0, "wav": other, "sr": 16000,
              "text": "a"},
             {"row": "real_target", "wav": wav, "sr": 16000, "text": "b"}]
    score_items(panel, "c0", "s0", wav, items)
    assert judge.seen == 3 and panel.deduplicated == 1
    scores = [r["score"]["ovrl"] for r in panel.records]
    assert len(scores) == 4
    assert scores[0] == scores[1] == scores[3] and scores[2] == pytest.approx(scores[0] + 1.0)
    assert panel.summary()["deduplicated_items"] == 1
