"""`emosteer evaluate --bank`: every emotion of a bank steered and judged by a multi-class judge
trained on the other speakers, against the held-out speakers' real clips of that emotion."""

from __future__ import annotations

import json

import pytest
from bankkit import audio_store

from emosteer.bank import build_bank
from emosteer.cli import main
from emosteer.errors import ConfigError
from emosteer.evaluation.bank_eval import BankEvalConfig, bank_table, evaluate_bank


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bank_eval")
    store = audio_store(root, n_speakers=4)
    bank = build_bank(store.root, root / "bank", reference="calm", holdout_speakers=["s3"],
                      cache_dir=root / "cache")
    return store, bank, root


def test_every_emotion_is_steered_judged_and_tabled(setup, tmp_path):
    store, bank, _ = setup
    cfg = BankEvalConfig(speakers=("s3",), deltas=(0.0, 1.0), judges=())
    res = evaluate_bank(store.root, bank.path, tmp_path / "ev", cfg, progress=False)
    assert [r["emotion"] for r in res["rows"]] == list(bank.emotions)
    assert res["judge"]["train_speakers"] == ["s0", "s1", "s2"]
    for row in res["rows"]:
        cells = row["modes"]["prosody"]["cells"]
        assert row["real"]["n"] == 2 and cells["+1.00"]["p_target"]["n"] == 2
        assert row["modes"]["prosody"]["spearman"]["n"] == 4
    real = res["confusion"]["real"]
    assert sum(map(sum, real["matrix"])) == 4  # s3's two angry and two sad clips
    steered = res["confusion"]["prosody +1.00"]
    assert sum(map(sum, steered["matrix"])) == 4
    assert set(steered["classes"]) == {"angry", "calm", "sad"}
    saved = json.loads((tmp_path / "ev" / "bank_eval.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(res["rows"]))
    for rec in res["clips"]:
        assert (tmp_path / "ev" / "audio" / rec / "angry_prosody_+1.00.wav").is_file()
    table = bank_table(res)
    assert "| angry | prosody |" in table and "Confusion, real" in table


def test_cli_bank_mode_and_its_errors(setup, tmp_path, capsys):
    store, bank, _ = setup
    base = ["evaluate", "--store", str(store.root), "--speakers", "s3", "--judges", "none",
            "--deltas", "0,1"]
    assert main(base + ["--bank", str(bank.path), "--emotions", "sad",
                        "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "| sad | prosody |" in out and "| angry | prosody |" not in out
    assert main(base + ["--bank", str(bank.path), "--axis", str(bank.path / "sad"),
                        "--out", str(tmp_path / "x")]) == 2
    assert "exactly one of --axis and --bank" in capsys.readouterr().err
    assert main(base + ["--bank", str(bank.path), "--emotions", "bored",
                        "--out", str(tmp_path / "y")]) == 2
    assert "bored" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="need --mapper"):
        evaluate_bank(store.root, bank.path, tmp_path / "z",
                      BankEvalConfig(speakers=("s3",), modes=("both",), judges=()))
