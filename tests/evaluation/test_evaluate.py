"""emosteer evaluate: schema of evaluate.json/stimuli.json, "not measured" cells, the posterior
probe's speaker split, monotone F0 in prosody mode, skipped bad clips and the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import make_tiny_run
from emosteer.audio import SAMPLE_RATE, save_audio
from emosteer.axes import build_axis
from emosteer.cli import main
from emosteer.corpora.formats import Utterance
from emosteer.embeddings.encoders import load_encoder
from emosteer.embeddings.extract import extract_store
from emosteer.errors import ConfigError
from emosteer.evaluation.evaluate import EvaluateConfig, evaluate
from emosteer.evaluation.metrics import PosteriorProbe, mean_cell, spearman_cell
from emosteer.evaluation.select import clip_id, resolve_speakers, select_clips
from emosteer.prosody.correlates import CORRELATE_KEYS

LAYER = 2
SPEAKERS = {"synth_01": 110.0, "synth_02": 150.0, "synth_03": 125.0}  # base F0 per speaker
HELD_OUT = ("synth_03",)
DELTAS = (-1.0, 0.0, 1.0)


def voice(seconds: float, f0: float, bright: float) -> np.ndarray:
    """Harmonic tone with a syllable-rate envelope; `bright` tilts energy to high harmonics."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f = f0 * (1 + 0.06 * np.sin(2 * np.pi * 1.3 * t))
    phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    wav = sum(np.sin(k * phase) / k ** (1.5 - bright) for k in range(1, 20))
    env = 0.3 + 0.7 * np.sin(2 * np.pi * 2.5 * t) ** 2
    return (0.2 * wav * env / np.max(np.abs(wav))).astype(np.float32)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir):
    """Store (3 synthetic speakers, calm = low and dull, angry = high and bright), axis from
    the training speakers, prosody delta and an untrained mapper for the tiny encoder."""
    root = tmp_path_factory.mktemp("evaluate")
    utts = []
    for spk, f0 in SPEAKERS.items():
        for emo, (f0x, bright) in {"calm": (1.0, 0.0), "angry": (1.5, 0.8)}.items():
            for i in range(2):
                path = root / "audio" / f"{spk}_{emo}_{i}.wav"
                save_audio(path, voice(1.0 + 0.1 * i, f0 * f0x, bright), SAMPLE_RATE)
                utts.append(Utterance(f"synth/{spk}_{emo}_{i}", str(path), spk, emo, "synth",
                                      sentence=str(i)))
    store = extract_store(utts, load_encoder(tiny_model_dir, layers=[LAYER]), root / "store",
                          progress=False)
    axis = build_axis(store, LAYER, "calm", "angry", exclude_speakers=HELD_OUT)
    make_tiny_run(root, tiny_model_dir, axis=axis, prosody=dict(f0_shift_st=5.0, f0_range_ratio=1.2,
                                                                 rate_ratio=1.0))
    return root


@pytest.fixture(scope="module")
def report(setup):
    cfg = EvaluateConfig(speakers=HELD_OUT, deltas=DELTAS, n_boot=200)
    return evaluate(setup / "store", setup / "axis", setup / "mapper", setup / "out", cfg,
                    progress=False)


def assert_cell(cell):
    if "value" in cell:
        assert set(cell) == {"value", "ci", "n"}
        assert np.isfinite(cell["value"]) and cell["n"] >= 1
        assert cell["ci"] is None or cell["ci"][0] <= cell["ci"][1]
    else:
        assert cell["status"] == "not measured" and cell["reason"]


def test_every_table_cell_is_a_number_or_not_measured(report, setup):
    assert [(r["mode"], r["delta"]) for r in report["table"]] == [
        (m, d) for m in ("latent", "prosody", "both") for d in DELTAS]
    for row in report["table"]:
        for cell in (row["posterior"], row["speaker_similarity"], *row["correlates"].values(),
                     *row["gap_closed"].values()):
            assert_cell(cell)
        assert set(row["correlates"]) == set(CORRELATE_KEYS) == set(row["gap_closed"])
        assert "value" in row["posterior"] and "value" in row["speaker_similarity"]
    for k in ("mcd_db", "pesq", "stoi"):
        assert_cell(report["fidelity"][k])
    assert "value" in report["fidelity"]["mcd_db"] and "value" in report["fidelity"]["stoi"]
    for cells in report["monotonicity"].values():
        assert {"posterior", "axis_projection", *CORRELATE_KEYS} <= set(cells)
        for cell in cells.values():
            assert_cell(cell)
    saved = json.loads((setup / "out" / "evaluate.json").read_text())
    assert saved["kind"] == "evaluate" and saved["config"]["source"] == "calm"


def test_outputs_follow_the_layout_and_stimuli_parse(report, setup):
    from emosteer.study.design import read_stimuli

    out = setup / "out"
    assert len(report["clips"]) == 2  # both calm clips of the held-out speaker
    for clip in report["clips"]:
        assert (out / clip["input"]).is_file() and (out / clip["real_target"]).is_file()
        assert clip["outputs"]["prosody"]["+1.00"] == f"audio/{clip['id']}/prosody_+1.00.wav"
        for by_delta in clip["outputs"].values():
            assert all((out / p).is_file() for p in by_delta.values())
    stimuli = read_stimuli(out)
    kinds = [s.kind for s in stimuli]
    assert kinds.count("original") == kinds.count("anchor") == 2
    assert kinds.count("steered") == 2 * 3 * len(DELTAS)


def test_external_metrics_not_requested_by_default(report):
    for name in ("ser", "asr_wer", "mos"):
        assert report["external"][name] == {"status": "not measured", "reason": "not requested"}


def test_posterior_probe_trains_only_on_other_speakers(report):
    assert report["probe"]["train_speakers"] == ["synth_01", "synth_02"]
    assert report["probe"]["n_train"] == 8
    # A held-out speaker whose labels contradict the training speakers: the probe follows the
    # training speakers, so it never saw the held-out labels.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    spk = np.repeat(["a", "b", "c"], 10)
    emo = np.tile(["calm"] * 5 + ["angry"] * 5, 3)
    X[:, 0] += np.where(emo == "angry", 3.0, -3.0) * np.where(spk == "c", -1, 1)
    probe = PosteriorProbe.fit(X, spk, emo, "calm", "angry", exclude_speakers=["c"])
    assert probe.train_speakers == ("a", "b") and probe.n_train == 20
    p = probe.posterior(X[spk == "c"])
    assert p[emo[spk == "c"] == "angry"].max() < 0.5 < p[emo[spk == "c"] == "calm"].min()


def test_prosody_mode_raises_f0_monotonically(report):
    f0 = [r["correlates"]["median_f0_st"]["value"] for r in report["table"]
          if r["mode"] == "prosody"]
    assert f0 == sorted(f0) and f0[-1] - f0[0] > 6.0  # +-1 x 5 st
    assert report["monotonicity"]["prosody"]["median_f0_st"]["value"] > 0.9
    gap = [r["gap_closed"]["median_f0_st"]["value"] for r in report["table"]
           if r["mode"] == "prosody"]
    assert gap[0] < 0 < gap[2]


def test_bad_clip_is_reported_and_skipped(setup, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(setup / "store", store)
    index = json.loads((store / "index.json").read_text())
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really audio")
    victim = next(r for r in index if r["speaker"] == "synth_03" and r["emotion"] == "calm")
    victim["path"] = str(bad)
    (store / "index.json").write_text(json.dumps(index))
    cfg = EvaluateConfig(speakers=HELD_OUT, deltas=(0.0, 1.0), modes=("prosody",), n_boot=50)
    rep = evaluate(store, setup / "axis", None, tmp_path / "out", cfg, progress=False)
    assert [s["path"] for s in rep["skipped"]] == [str(bad)]
    assert len(rep["clips"]) == 1 and rep["clips"][0]["id"] != clip_id(victim["utt_id"])
    assert rep["fidelity"]["mcd_db"]["status"] == "not measured"  # no latent mode in the sweep


def test_cli_refuses_overwrite_without_force(setup, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "evaluate.json").write_text("{}")
    args = ["evaluate", "--store", str(setup / "store"), "--axis", str(setup / "axis"),
            "--modes", "prosody", "--speakers", "synth_03", "--deltas", "-1,0,1", "--out", str(out)]
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert (out / "evaluate.json").read_text() == "{}"
    assert main(args[:-2] + ["--modes", "latent", "--out", str(tmp_path / "o2")]) == 2
    assert "--mapper" in capsys.readouterr().err


def test_cli_runs_prosody_sweep_with_bare_speaker_id(setup, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["evaluate", "--store", str(setup / "store"), "--axis", str(setup / "axis"),
               "--modes", "prosody", "--speakers", "03", "--deltas", "0,1", "--out", str(out),
               "--clips-per-speaker", "1", "--no-progress", "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["config"]["speakers"] == ["synth_03"] and len(rep["clips"]) == 1


def test_speaker_names_and_clip_pairing():
    assert resolve_speakers(["07", "ravdess_08"], {"ravdess_07", "ravdess_08"}) == (
        "ravdess_07", "ravdess_08")
    with pytest.raises(ConfigError):
        resolve_speakers(["9"], {"ravdess_07"})
    index = [{"utt_id": f"c/{e}{s}{i}", "speaker": "x", "emotion": e, "sentence": s,
              "intensity": i, "path": "p"} for e in ("calm", "angry") for s in "12" for i in "ab"]
    clips = select_clips(index, ["x"], "calm", "angry", None, seed=0)
    assert len(clips) == 4
    for c in clips:
        assert (c.target_row["sentence"], c.target_row["intensity"]) == (
            c.row["sentence"], c.row["intensity"])


def test_cells_and_spearman():
    c = mean_cell([1.0, 2.0, 3.0, float("nan")], seed=0)
    assert c["value"] == 2.0 and c["n"] == 3 and c["ci"][0] <= 2.0 <= c["ci"][1]
    assert mean_cell([float("nan")], seed=0)["status"] == "not measured"
    rows = [(f"c{i}", d, d * (i + 1)) for i in range(4) for d in (-1.0, 0.0, 1.0)]
    rho = spearman_cell(rows, seed=0, what="x")
    assert rho["value"] > 0.8 and rho["n"] == 12
    down = spearman_cell([(c, d, -v) for c, d, v in rows], seed=0, what="x")
    assert down["value"] == pytest.approx(-rho["value"])
    assert spearman_cell([(c, d, 1.0) for c, d, _ in rows], 0, "x")["status"] == "not measured"


def test_delta_zero_outputs_are_made_once(report, setup):
    """Differential decoding at delta 0 is copy synthesis: latent and both at delta 0 are the
    copy-synthesis audio itself (made once), and prosody at delta 0 is the input."""
    out = setup / "out"
    assert report["clips"]
    for clip in report["clips"]:
        zero = {m: (out / clip["outputs"][m]["+0.00"]).read_bytes()
                for m in ("latent", "both", "prosody")}
        assert zero["latent"] == zero["both"]
        assert zero["prosody"] == (out / clip["input"]).read_bytes()
        assert clip["copy_synthesis"]
        assert (out / clip["copy_synthesis"]).read_bytes() == zero["latent"]
