"""emosteer.report: a fake run directory built by the real probe and study code plus an
evaluate.json written to the shared contract becomes one self-contained page; every table
cell, plot and audio player is on it, and it loads in headless Chromium without errors."""

from __future__ import annotations

import base64
import logging
import re
from html import escape
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

from emosteer.artifacts import read_json, write_json
from emosteer.audio import SAMPLE_RATE, save_audio
from emosteer.cli import main
from emosteer.embeddings.encoders import EncoderIdentity
from emosteer.errors import ArtifactError
from emosteer.report.build import build_report, find_inputs, render_page
from emosteer.report.sections import num

ENCODER_NOTE = "random-init control: pretrained weights were not reachable"
EMOTIONS = ("neutral", "angry", "calm")
MODES = ("latent", "prosody", "both")
DELTAS = (-1.0, 0.0, 0.5, 1.0)
CORRELATES = ("median_f0_st", "alpha_ratio_db", "level_db")
NOT_MEASURED_REASON = "pesq <not installed> & co"  # markup on purpose: must be escaped
TONE_S = 0.25
SKIPPED_CONTROL = "weights <unreachable>"
SKIP_REASON = "not <audio> & empty"


def synthetic_store(root: Path, n_layers: int, dim: int, seed: int, model: str,
                    n_speakers: int = 4, per_cell: int = 4):
    """A store of speaker offsets plus emotion shifts that grow with depth, plus noise."""
    from emosteer.embeddings.store import EmbeddingStore, StoreConfig, write_store

    rng = np.random.default_rng(seed)
    spk = np.repeat(np.arange(n_speakers), len(EMOTIONS) * per_cell)
    emo = np.tile(np.repeat(np.arange(len(EMOTIONS)), per_cell), n_speakers)
    spk_off = rng.normal(size=(n_speakers, dim)) * 2
    emo_off = rng.normal(size=(len(EMOTIONS), dim))
    layers = {k: (spk_off[spk] + emo_off[emo] * (k + 1) / n_layers
                  + rng.normal(size=(len(spk), dim))).astype(np.float32) for k in range(n_layers)}
    index = [{"utt_id": f"syn/{i:03d}", "path": f"syn/{i:03d}.wav", "speaker": f"syn_{spk[i]}",
              "emotion": EMOTIONS[emo[i]], "corpus": "syn"} for i in range(len(spk))]
    write_store(root, StoreConfig(encoder=EncoderIdentity(model), layers=tuple(range(n_layers)), pooling="mean",
                                  hidden_size=dim), index, layers)
    return EmbeddingStore.open(root)


def cell(rng, n=8):
    lo, hi = sorted(rng.uniform(-1, 1, 2))
    return {"value": float((lo + hi) / 2), "ci": [float(lo), float(hi)], "n": n}


def not_measured(reason=NOT_MEASURED_REASON):
    return {"status": "not measured", "reason": reason}


def at(v: float, n: int = 8, half: float = 0.05) -> dict:
    return {"value": v, "ci": [v - half, v + half], "n": n}


# The judged numbers of the fake evaluation, chosen so that each mode tells a different story:
# P(angry) of the real calm input / real angry clips, DNSMOS of input, copy-synthesis, target.
P_INPUT, P_REAL, Q_INPUT, Q_COPY, Q_REAL = 0.1, 0.8, 3.2, 2.9, 3.0
# mode -> (P(angry), DNSMOS, probe posterior) as functions of delta: latent stays below the real
# level and loses quality; prosody reaches it with a small DNSMOS drop while the same-encoder
# probe posterior falls (a contradiction the verdict flags); both overshoots, quality drops.
STORIES = {"latent": (lambda d: 0.1 + 0.2 * (d + 1), lambda d: 3.2 - 0.4 * (d + 1),
                      lambda d: 0.3 + 0.2 * (d + 1)),
           "prosody": (lambda d: 0.1 + 0.35 * (d + 1), lambda d: 3.2 - 0.05 * (d + 1),
                       lambda d: 0.7 - 0.2 * (d + 1)),
           "both": (lambda d: 0.15 + 0.4 * (d + 1), lambda d: 3.0 - 0.2 * (d + 1),
                    lambda d: 0.3 + 0.3 * (d + 1))}
ASR_REASON = "judge asr not run: faster-whisper <not installed>"
SER_REASON = "judge ser not run: no --ser model given"


def judges(p: float, q: float) -> dict:
    """One row's judge cells as evaluate.judge_cells writes them; ASR and SER did not run."""
    return {"dnsmos": {"ovrl": at(q), "sig": at(q + 0.3), "bak": at(3.5)},
            "asr": {"wer": not_measured(ASR_REASON), "cer": not_measured(ASR_REASON)},
            "speaker": {"cosine": at(0.9)},
            "emotion": {"p_target": at(p), "auc": 0.9, "p_target_real_source": P_INPUT,
                        "p_target_real_target": P_REAL},
            "ser": {"p_target": not_measured(SER_REASON)}}


def write_evaluate(out: Path, n_clips: int = 2, seed: int = 0, modes=MODES) -> dict:
    """evaluate.json + tiny tones, in the layout `emosteer evaluate` writes (a mode's decoder
    suffix, as in "latent:full", tells its story from STORIES by the mode before the colon)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(TONE_S * SAMPLE_RATE)) / SAMPLE_RATE
    clips = []

    def tone(rel: str, hz: float) -> str:
        save_audio(out / rel, 0.3 * np.sin(2 * np.pi * hz * t), SAMPLE_RATE)
        return rel

    for c in range(n_clips):
        cid = f"ravdess_07-calm-{c}"
        outputs = {m: {f"{d:+.2f}": tone(f"audio/{cid}/{m.replace(':', '-')}_{d:+.2f}.wav",
                                         150 + 40 * j + 10 * i)
                       for i, d in enumerate(DELTAS)} for j, m in enumerate(modes)}
        real = tone(f"audio/{cid}/real_target.wav", 300) if c == 0 else None
        clips.append({"id": cid, "speaker": "ravdess_07", "emotion": "calm",
                      "input": tone(f"audio/{cid}/input.wav", 140), "real_target": real,
                      "outputs": outputs})
    table = [{"mode": m, "delta": d, "posterior": at(STORIES[m.split(":")[0]][2](d)),
              "speaker_similarity": not_measured("resemblyzer not installed") if m == "both"
              else cell(rng),
              "correlates": {k: cell(rng) for k in CORRELATES},
              "gap_closed": {k: cell(rng) for k in CORRELATES},
              "judges": judges(STORIES[m.split(":")[0]][0](d), STORIES[m.split(":")[0]][1](d))}
             for m in modes for d in DELTAS]
    references = [{"kind": k, "label": f"{k} reference", "n_clips": n_clips,
                   "judges": judges(p, q)}
                  for k, p, q in (("input", P_INPUT, Q_INPUT), ("copy_synthesis", P_INPUT, Q_COPY),
                                  ("real_target", P_REAL, Q_REAL))]
    ev = {"kind": "evaluate", "emosteer_version": "0.1.0", "provenance": {"argv": ["x"]},
          "config": {"deltas": list(DELTAS), "modes": list(modes), "speakers": ["ravdess_07"],
                     "source": "calm", "target": "angry", "clips_per_speaker": n_clips,
                     "seed": 0},
          "axis": {"model": "facebook/wav2vec2-base", "layer": 5, "source": "calm",
                   "target": "angry"},
          "encoder_note": ENCODER_NOTE, "clips": clips, "table": table,
          "references": references,
          "emotion_judge": {"auc": 0.9, "source": "calm", "target": "angry",
                            "train_speakers": ["ravdess_01"], "p_target_real_source": at(P_INPUT),
                            "p_target_real_target": at(P_REAL)},
          "probe": {"train_speakers": ["ravdess_01", "ravdess_02"], "n_train": 40,
                    "pooling": "mean"},
          "skipped": [{"clip": "bad", "path": "ravdess/bad.wav", "reason": SKIP_REASON}],
          "fidelity": {"mode": "latent", "delta": 0.0, "mcd_db": cell(rng),
                       "pesq": not_measured(), "stoi": cell(rng)},
          "monotonicity": {m: {"posterior": cell(rng), **{k: cell(rng) for k in CORRELATES}}
                           for m in modes},
          "external": {"ser": not_measured("off by default (needs a download)"),
                       "asr_wer": not_measured("faster-whisper model not given"),
                       "mos": not_measured("UTMOS not installed")}}
    write_json(out / "evaluate.json", ev)
    return ev


def write_study(run: Path) -> dict:
    """A genuine analysis.json from simulated listeners (emosteer.study.analyze)."""
    from emosteer.study.analyze import analyze_study
    from emosteer.study.design import StudyConfig, create_study
    from emosteer.study.simulate import simulate_study, write_synthetic_stimuli

    src = write_synthetic_stimuli(run / "study-stimuli", n_clips=2, n_anchors=3)
    cfg = StudyConfig(trials_per_participant=6, anchors_per_participant=1,
                      repeats_per_participant=1, seed=2)
    study = create_study(src, run / "study", cfg)
    simulate_study(study, n_careful=4, n_careless=1, seed=0, p_identify=lambda s: 0.8,
                   mos=lambda s: 4)
    return analyze_study(study.root, n_boot=50)


SWEEP_DELTAS = (-1.0, 0.0, 1.0)


def write_sweep(out: Path) -> dict:
    """steer/sweep.json as the pipeline's steer stage writes it (one clip, every mode/delta)."""
    t = np.arange(int(TONE_S * SAMPLE_RATE)) / SAMPLE_RATE
    save_audio(out / "input.wav", 0.3 * np.sin(2 * np.pi * 120 * t), SAMPLE_RATE)
    items = []
    for j, m in enumerate(MODES):
        for d in SWEEP_DELTAS:
            name = f"{m}_{d:+.2f}.wav"
            save_audio(out / name, 0.3 * np.sin(2 * np.pi * (130 + 20 * j + 5 * d) * t),
                       SAMPLE_RATE)
            items.append({"mode": m, "delta": d, "path": name, "sample_rate": SAMPLE_RATE,
                          "axis_projection": 0.5 + 0.25 * d + j})
    sweep = {"input": "/corpus/spk_c/spk_c_s00_calm.wav", "speaker": "spk_c", "emotion": "calm",
             "items": items}
    write_json(out / "sweep.json", sweep)
    return sweep


WORLD_NOTICE = "this corpus's emotions are WORLD renderings, not acted <speech>"
BANK_EMOTIONS = ("angry", "calm", "sad")


def write_bank(out: Path) -> dict:
    """BANK/diagnostics.json in the layout `emosteer bank` writes (emosteer.bank.build): notes,
    per_emotion entries (holdout AUC report, consistency, prosody; "sad" without a prosody
    delta), the cosine matrix."""
    diag = {"reference": "calm", "layer": 2, "emotions": list(BANK_EMOTIONS),
            "auc": "held-out speakers s2: calm vs each emotion, projected on its axis",
            "consistency": "mean_pairwise_cosine: <how alike> the speakers' shifts are",
            "per_emotion": {emo: {"n_speakers": 4, "speakers": ["s0", "s1", "s3", "s4"],
                                  "holdout": {"scheme": "holdout", "test_speakers": ["s2"],
                                              "n_test": 12, "auc_raw": 0.7 + 0.1 * i,
                                              "auc_centred": None},
                                  "mean_pairwise_cosine": 0.5 + 0.1 * i,
                                  "resultant_length": 0.8, "agreement": 1.0, "norm": 3.0,
                                  "calibration": 2.0,
                                  "prosody": None if emo == "sad" else {
                                      "summary": f"{emo}: f0 +2.0 st", "f0_shift_st": 2.0},
                                  "prosody_note": "no audio" if emo == "sad" else None}
                            for i, emo in enumerate(BANK_EMOTIONS)},
            "cosines": {"emotions": list(BANK_EMOTIONS),
                        "matrix": [[1.0 if a == b else 0.25 for b in BANK_EMOTIONS]
                                   for a in BANK_EMOTIONS]},
            "provenance": {"argv": ["emosteer", "bank"]}}
    write_json(out / "diagnostics.json", diag)
    write_json(out / "bank.json", {"reference": "calm", "emotions": list(BANK_EMOTIONS)})
    return diag


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return build_run_dir(tmp_path_factory.mktemp("report"))


def build_run_dir(root: Path) -> Path:
    """The fake run under `root`: probe (+ a skipped control), evaluate, sweep, study, bank,
    run.json (with a notice)."""
    from emosteer.evaluation.probe import run_probe

    run = root / "run"
    store = synthetic_store(root / "store", n_layers=3, dim=16, seed=0, model="tiny-w2v2")
    ctrl = synthetic_store(root / "ctrl", n_layers=1, dim=8, seed=1, model="mfcc20-stats")
    run_probe(store, run / "probe", controls={"mfcc": ctrl}, n_boot=20, umap=False)
    probe = read_json(run / "probe" / "probe.json")  # a control that could not run, as the
    probe["controls_skipped"] = {"random-init": SKIPPED_CONTROL}  # CLI records it
    write_json(run / "probe" / "probe.json", probe)
    write_evaluate(run / "evaluate")
    write_sweep(run / "steer")
    write_study(run)
    write_bank(run / "bank")
    write_json(run / "run.json", {
        "kind": "run", "encoder_note": ENCODER_NOTE, "notices": [WORLD_NOTICE],
        "recipe": {"model": "facebook/wav2vec2-base", "layer": 5,
                   "evaluate": {"deltas": list(DELTAS), "modes": list(MODES)}},
        "stages": {"extract": {"seconds": 12.5, "status": "done"},
                   "axis": {"seconds": 0.25, "status": "done"}}})
    return run


@pytest.fixture(scope="module")
def page(run_dir) -> str:
    return build_report(run_dir).read_text(encoding="utf-8")


def test_run_summary_and_encoder_note(run_dir, page):
    assert page.count(f'<p class="banner warn" id="encoder-note"><b>Encoder:</b> '
                      f"{escape(ENCODER_NOTE)}</p>") == 1  # run.json and evaluate agree: once
    assert page.index("encoder-note") < page.index('<section id="run">')  # above everything
    for text in ("<h3>Recipe</h3>", "evaluate.deltas", "[-1.0, 0.0, 0.5, 1.0]", "extract", "12.5"):
        assert text in page


def test_pipeline_encoder_record_is_the_banner():
    from emosteer.report.build import run_encoder_notes

    rec = {"requested": "facebook/wav2vec2-base", "loaded": "facebook/wav2vec2-base",
           "random_init": True}
    assert run_encoder_notes({"encoder": {**rec, "note": ENCODER_NOTE}}) == [ENCODER_NOTE]
    assert run_encoder_notes({"encoder": {**rec, "note": ""}}) == [
        "random-init facebook/wav2vec2-base (untrained control)"]
    assert run_encoder_notes({"encoder": {**rec, "random_init": False, "note": ""}}) == []


def test_probe_tables_show_every_layer_with_ci(run_dir, page):
    probe = read_json(run_dir / "probe" / "probe.json")
    sec = page[page.index('<section id="probe">'):page.index('<section id="evaluate">')]
    for name, res in [("model", probe), *probe["controls"].items()]:
        for k, layer in res["layers"].items():
            lp, sil = layer["linear_probe"], layer["silhouette"]
            for c in (lp, sil, *(a[m] for a in layer["axes"].values()
                                 for m in ("auc_raw", "auc_centred", "pairwise_cosine",
                                           "resultant_length"))):
                assert (f"{num(c['value'])} <span class=\"ci\">[{num(c['ci_low'])}, "
                        f"{num(c['ci_high'])}]</span>") in sec, (name, k)
    assert f"{probe['best_layer']} (best)" in sec
    assert "control mfcc: mfcc20-stats" in sec
    for pair in ("neutral-&gt;angry", "neutral-&gt;calm"):
        assert f"axis {pair}" in sec
    assert sec.count("<img ") == 3 and sec.count('src="data:image/png;base64,') == 3
    assert "plot missing" not in sec
    assert f"control random-init not run ({escape(SKIPPED_CONTROL)})" in sec


def test_every_evaluate_cell_is_rendered(run_dir, page):
    ev = read_json(run_dir / "evaluate" / "evaluate.json")
    sec = page[page.index('<section id="evaluate">'):page.index('<h3 id="audio-grid">')]
    cells = [c for r in ev["table"] for c in (r["posterior"], r["speaker_similarity"],
                                               *r["correlates"].values(),
                                               *r["gap_closed"].values())]
    cells += [ev["fidelity"][k] for k in ("mcd_db", "pesq", "stoi")]
    cells += [c for d in ev["monotonicity"].values() for c in d.values()]
    cells += list(ev["external"].values())
    assert sec.count('<td class="m">') + sec.count('<td class="nm">') == len(cells)
    for c in cells:
        if "status" in c:
            assert f"not measured ({escape(c['reason'])})" in sec
        else:
            assert (f"{num(c['value'])} <span class=\"ci\">[{num(c['ci'][0])}, "
                    f"{num(c['ci'][1])}]</span> <span class=\"n\">n={c['n']}</span>") in sec
    assert NOT_MEASURED_REASON not in page  # only its escaped form
    assert f"<li>ravdess/bad.wav: {escape(SKIP_REASON)}</li>" in sec
    assert "posterior probe.train_speakers" in sec
    assert escape('["ravdess_01", "ravdess_02"]') in sec
    assert "absent" not in sec
    assert sec.count('<img src="data:image/png;base64,') == 1  # metric-vs-delta panels


def test_audio_grid_embeds_every_recording(run_dir, page):
    ev = read_json(run_dir / "evaluate" / "evaluate.json")
    grid = page[page.index('<h3 id="audio-grid">'):]
    srcs = re.findall(r'<audio controls preload="metadata" src="([^"]+)"', grid)
    expected = []
    for c in ev["clips"]:
        row = [c["input"], c["real_target"]] + [c["outputs"][m][f"{d:+.2f}"]
                                                for m in MODES for d in DELTAS]
        expected += [r for r in row if r]
    assert len(srcs) == len(expected) == 2 * (2 + len(MODES) * len(DELTAS)) - 1
    for src, rel in zip(srcs, expected, strict=True):  # row order: input, target, modes x deltas
        assert src.startswith("data:audio/wav;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == (run_dir / "evaluate" / rel).read_bytes()
    assert "no real recording" in grid  # the second clip has none
    heads = re.findall(r"<th[^>]*>([^<]+)</th>", grid[:grid.index("<tbody>")])
    assert heads == ["clip", "original input", "real target", *MODES,
                     *[f"delta {d:+.2f}" for _ in MODES for d in DELTAS]]


def test_steering_sweep_section(run_dir, page):
    sweep = read_json(run_dir / "steer" / "sweep.json")
    sec = page[page.index('<section id="steer">'):page.index('<section id="evaluate">')]
    srcs = re.findall(r'<audio controls preload="metadata" src="([^"]+)"', sec)
    names = ["input.wav"] + [it["path"] for it in sweep["items"]]
    assert len(srcs) == len(names) == 1 + len(MODES) * len(SWEEP_DELTAS)
    for src, name in zip(srcs, names, strict=True):
        assert base64.b64decode(src.split(",", 1)[1]) == (run_dir / "steer" / name).read_bytes()
    for it in sweep["items"]:
        assert f"<td>{it['mode']}</td><td>{it['delta']:+.2f}</td>" \
               f"<td>{it['axis_projection']:.4g}</td>" in sec


def test_study_section_and_no_external_urls(run_dir, page):
    s = read_json(run_dir / "study" / "analysis" / "analysis.json")
    sec = page[page.index('<section id="study">'):]
    assert f"{s['n_included']} of {s['n_participants']} participants" in sec
    assert sec.count('<img src="data:image/png;base64,') == len(s["plots"]) == 2
    assert escape(s["exclusion_rule"]) in sec
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_rebuild_is_deterministic(run_dir, tmp_path, page):
    a = build_report(run_dir, tmp_path / "a.html").read_bytes()
    assert a == build_report(run_dir, tmp_path / "b.html").read_bytes()
    assert a == page.encode("utf-8")  # the page's location does not matter when embedded


def test_links_instead_of_embedding(run_dir, tmp_path, caplog):
    out = build_report(run_dir, tmp_path / "sub" / "linked.html", embed_audio=False)
    srcs = re.findall(r'<audio controls preload="metadata" src="([^"]+)"', out.read_text())
    assert srcs and not any(s.startswith("data:") for s in srcs)
    assert all((out.parent / unquote(s)).resolve().is_file() for s in srcs)
    with caplog.at_level(logging.WARNING, logger="emosteer"):
        capped = render_page(find_inputs(run_dir), run_dir, embed_audio=True, cap=1000)
    assert "data:audio" not in capped and "embedding cap" in caplog.text
    assert 'src="evaluate/audio/' in capped


def test_partial_runs_and_bad_input(tmp_path):
    ev_dir = tmp_path / "ev"
    ev = write_evaluate(ev_dir, n_clips=1)
    html = build_report(ev_dir).read_text()
    assert '<section id="evaluate">' in html
    assert '<section id="run">' not in html and '<section id="probe">' not in html
    with pytest.raises(ArtifactError, match="nothing to report"):
        build_report(tmp_path / "ev" / "audio")
    ev["table"][1]["posterior"] = {"val": 1.0}
    write_json(ev_dir / "evaluate.json", ev)
    with pytest.raises(ArtifactError, match=r"evaluate\.json: table\[1\]\.posterior"):
        build_report(ev_dir)
    ev["table"][1]["posterior"] = cell(np.random.default_rng(0))
    ev["clips"][0]["input"] = "../../etc/passwd"
    write_json(ev_dir / "evaluate.json", ev)
    with pytest.raises(ArtifactError, match="points outside"):
        build_report(ev_dir)
    ev["clips"][0]["input"] = "audio/ravdess_07-calm-0/input.wav"
    ev["clips"][0]["outputs"] = ["latent_+0.00.wav"]  # a list where a mode mapping belongs
    write_json(ev_dir / "evaluate.json", ev)
    with pytest.raises(ArtifactError, match=r"evaluate\.json: unexpected structure"):
        build_report(ev_dir)
    (ev_dir / "evaluate.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        build_report(ev_dir)


def test_cli_refuses_overwrite(run_dir, tmp_path, capsys):
    out = tmp_path / "cli.html"
    assert main(["report", str(run_dir), "--out", str(out), "--no-embed-audio"]) == 0
    assert "data:audio" not in out.read_text() and "wrote" in capsys.readouterr().out
    assert main(["report", str(run_dir), "--out", str(out)]) == 2
    assert "already exists (use -f" in capsys.readouterr().err
    assert main(["report", str(run_dir), "--out", str(out), "-f"]) == 0
    assert "data:audio/wav;base64," in out.read_text()
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err
