"""study create: input formats, validation, frozen config, balanced randomised presentation."""

from __future__ import annotations

import csv
import json
import sqlite3
from collections import Counter

import pytest

from emosteer.cli import main
from emosteer.errors import AudioError, ConfigError, EmosteerError
from emosteer.study import db
from emosteer.study.design import (
    StudyConfig,
    create_study,
    load_study_config,
    open_study,
    plan_trials,
)
from emosteer.study.simulate import write_synthetic_stimuli

CFG = StudyConfig(trials_per_participant=10, anchors_per_participant=2,
                  repeats_per_participant=2, seed=7)


@pytest.fixture()
def stim_dir(tmp_path):
    return write_synthetic_stimuli(tmp_path / "eval", n_clips=3, n_anchors=4)


def test_create_from_stimuli_json(stim_dir, tmp_path):
    study = create_study(stim_dir, tmp_path / "study", CFG)
    listed = json.loads((stim_dir / "stimuli.json").read_text())
    assert len(study.stimuli) == len(listed) == 3 * 3 * 2 + 4
    saved = json.loads((tmp_path / "study" / "study.json").read_text())
    assert saved["config"]["trials_per_participant"] == 10 and saved["config"]["seed"] == 7
    assert "emosteer_version" in saved["provenance"]
    for s in study.stimuli:
        assert (tmp_path / "study" / "stimuli" / s.path).is_file()
        assert s.sample_rate == 16000 and s.duration_s == pytest.approx(0.3)
    reopened = open_study(tmp_path / "study")
    assert reopened.config == CFG and reopened.stimuli == study.stimuli
    with sqlite3.connect(study.db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 0


def test_create_from_plain_dir_and_csv(stim_dir, tmp_path):
    rows = json.loads((stim_dir / "stimuli.json").read_text())
    (stim_dir / "stimuli.json").unlink()
    with (tmp_path / "list.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ConfigError, match="no stimuli.json"):
        create_study(stim_dir, tmp_path / "s0", CFG)
    study = create_study(stim_dir, tmp_path / "s1", CFG, csv_path=tmp_path / "list.csv")
    assert [s.id for s in study.stimuli] == [r["id"] for r in rows]
    assert {s.delta for s in study.stimuli if s.kind == "steered"} == {0.0, 0.5, 1.0}


def test_refuses_overwrite_without_force(stim_dir, tmp_path):
    create_study(stim_dir, tmp_path / "study", CFG)
    with pytest.raises(EmosteerError, match="already exists"):
        create_study(stim_dir, tmp_path / "study", CFG)
    create_study(stim_dir, tmp_path / "study", CFG, force=True)


def test_non_audio_stimulus_rejected_or_skipped(stim_dir, tmp_path):
    (stim_dir / "wavs" / "clip0_latent_d0.wav").write_text("this is not audio")
    with pytest.raises(AudioError, match="clip0_latent_d0.wav"):
        create_study(stim_dir, tmp_path / "study", CFG)
    assert not (tmp_path / "study").exists()
    study = create_study(stim_dir, tmp_path / "study", CFG, skip_bad=True)
    assert "clip0_latent_d0" not in study.by_id and len(study.stimuli) == 21
    skipped = json.loads((tmp_path / "study" / "study.json").read_text())["skipped"]
    assert len(skipped) == 1 and "clip0_latent_d0.wav" in skipped[0]


@pytest.mark.parametrize("field,value,match", [
    ("path", "../../etc/passwd", "outside"),
    ("path", "/etc/passwd", "outside"),
    ("id", "../../etc/passwd", "must match"),
    ("id", "a/b", "must match"),
    ("kind", "fake", "kind"),
    ("delta", "lots", "not a number"),
])
def test_bad_stimulus_rows_rejected(stim_dir, tmp_path, field, value, match):
    rows = json.loads((stim_dir / "stimuli.json").read_text())
    rows[0][field] = value
    (stim_dir / "stimuli.json").write_text(json.dumps(rows))
    with pytest.raises(EmosteerError, match=match):
        create_study(stim_dir, tmp_path / "study", CFG)


def test_config_files_and_validation(tmp_path):
    (tmp_path / "c.yaml").write_text("seed: 3\ntrials_per_participant: 12\n"
                                     "emotions: [angry, calm]\ntasks: [identify, naturalness]\n")
    cfg = load_study_config(tmp_path / "c.yaml")
    assert cfg.seed == 3 and cfg.emotions == ("angry", "calm")
    assert cfg.tasks == ("identify", "naturalness")
    (tmp_path / "c.json").write_text(json.dumps({"seed": 1, "colour": "red"}))
    with pytest.raises(EmosteerError, match="colour"):
        load_study_config(tmp_path / "c.json")
    with pytest.raises(ConfigError, match="tasks"):
        StudyConfig(tasks=("identify", "dance"))
    with pytest.raises(ConfigError, match="repeats"):
        StudyConfig(trials_per_participant=4, anchors_per_participant=0, repeats_per_participant=2)


def test_plan_is_deterministic_and_well_formed(stim_dir, tmp_path):
    study = create_study(stim_dir, tmp_path / "study", CFG)
    a1, a2 = plan_trials(study, "alice", {}), plan_trials(study, "alice", {})
    bob = plan_trials(study, "bob", {})
    assert a1 == a2 and a1 != bob
    for plan in (a1, bob):
        assert len(plan) == CFG.trials_per_participant
        assert study.practice_id not in plan
        counts = Counter(plan)
        repeated = [s for s, n in counts.items() if n == 2]
        assert len(repeated) == CFG.repeats_per_participant and max(counts.values()) == 2
        for s in repeated:
            first = plan.index(s)
            assert plan.index(s, first + 1) > first + 1  # never back to back
        anchors = {s for s in plan if study.by_id[s].kind == "anchor"}
        assert len(anchors) == CFG.anchors_per_participant


def test_assignment_is_balanced(stim_dir, tmp_path):
    study = create_study(stim_dir, tmp_path / "study", CFG)
    for i in range(25):
        pid = f"participant-{i:03d}"
        db.add_participant(study.db_path, pid, lambda c, p=pid: plan_trials(study, p, c))
    with sqlite3.connect(study.db_path) as conn:
        exposure = dict(conn.execute("SELECT stimulus_id, n FROM exposure").fetchall())
    distinct: Counter = Counter()
    with sqlite3.connect(study.db_path) as conn:
        for (plan,) in conn.execute("SELECT plan FROM participants"):
            distinct.update(set(json.loads(plan)))
    for kind in ("steered", "anchor"):
        ids = [s.id for s in study.stimuli if s.kind == kind and s.id != study.practice_id]
        n = [distinct[s] for s in ids]
        assert max(n) - min(n) <= 1, (kind, n)
    assert exposure == dict(distinct)  # a repeat is not a second exposure
    assert sum(exposure.values()) == 25 * (CFG.trials_per_participant - CFG.repeats_per_participant)


def test_cli_create(stim_dir, tmp_path, capsys):
    (tmp_path / "cfg.json").write_text(json.dumps({"trials_per_participant": 8, "seed": 2}))
    rc = main(["study", "create", str(stim_dir), str(tmp_path / "study"), "--config",
               str(tmp_path / "cfg.json"), "--trials", "9"])
    assert rc == 0
    assert open_study(tmp_path / "study").config.trials_per_participant == 9
    assert main(["study", "create", str(stim_dir), str(tmp_path / "study")]) == 2
    assert "already exists" in capsys.readouterr().err


def _evaluate_run(root, clips=("ravdess_03-01-02-01-01-01-07", "ravdess_03-01-02-02-01-01-08"),
                  modes=("latent", "prosody"), deltas=(-1.0, 0.0, 0.5)):
    """An `emosteer evaluate` output directory in the shared-contract layout:
    audio/<clip_id>/{input,real_target,<mode>_<delta:+.2f>}.wav plus stimuli.json and
    evaluate.json, with ids spelled the way emosteer.evaluate spells them."""
    import numpy as np

    from emosteer.audio import save_audio

    t = np.arange(4800) / 16000
    rows, recs = [], []

    def wav(rel, hz):
        save_audio(root / rel, 0.3 * np.sin(2 * np.pi * hz * t), 16000)
        return rel

    for c, cid in enumerate(clips):
        base = {"source_clip": cid, "speaker": f"ravdess_{7 + c:02d}"}
        inp = wav(f"audio/{cid}/input.wav", 150 + c)
        tgt = wav(f"audio/{cid}/real_target.wav", 220 + c)
        rows.append({"id": f"{cid}.original", "path": inp, **base, "mode": "original",
                     "delta": 0.0, "target_emotion": "calm", "kind": "original"})
        rows.append({"id": f"{cid}.anchor", "path": tgt, **base, "mode": "anchor",
                     "delta": 0.0, "target_emotion": "angry", "kind": "anchor"})
        outputs = {}
        for mode in modes:
            for d in deltas:
                rel = wav(f"audio/{cid}/{mode}_{d:+.2f}.wav", 150 + c + 40 * d)
                outputs.setdefault(mode, {})[f"{d:+.2f}"] = rel
                rows.append({"id": f"{cid}.{mode}.{'p' if d >= 0 else 'm'}{abs(d):.2f}",
                             "path": rel, **base, "mode": mode, "delta": d,
                             "target_emotion": "angry", "kind": "steered"})
        recs.append({"id": cid, "speaker": base["speaker"], "emotion": "calm", "input": inp,
                     "real_target": tgt, "outputs": outputs})
    (root / "stimuli.json").write_text(json.dumps(rows))
    (root / "evaluate.json").write_text(json.dumps({"kind": "evaluate", "clips": recs}))
    return root, rows


def test_create_from_evaluate_run_layout(tmp_path, capsys):
    run, rows = _evaluate_run(tmp_path / "run" / "evaluate")
    rc = main(["study", "create", str(run), str(tmp_path / "study"), "--trials", "8"])
    assert rc == 0, capsys.readouterr().err
    study = open_study(tmp_path / "study")
    assert [s.id for s in study.stimuli] == [r["id"] for r in rows]
    kinds = Counter(s.kind for s in study.stimuli)
    assert kinds == {"original": 2, "anchor": 2, "steered": 2 * 2 * 3}
    by_id = study.by_id
    steered = by_id["ravdess_03-01-02-01-01-01-07.prosody.m1.00"]
    assert (steered.mode, steered.delta, steered.target_emotion) == ("prosody", -1.0, "angry")
    assert by_id["ravdess_03-01-02-02-01-01-08.anchor"].speaker == "ravdess_08"
    for s in study.stimuli:  # every clip was copied under its id; none kept a nested path
        assert study.audio_path(s.id) == (tmp_path / "study" / "stimuli" / f"{s.id}.wav").resolve()
        assert s.sample_rate == 16000 and s.duration_s == pytest.approx(0.3)
    plan = plan_trials(study, "p1", {})
    assert len(plan) == 8 and set(plan) <= set(by_id)
