"""A store that lists its audio: `emosteer axis` writes prosody.json next to the axis, a bank
learns a prosody delta per emotion, and both steer in prosody mode at once."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bankkit import audio_store, voice

from emosteer.audio import SAMPLE_RATE, load_audio, save_audio
from emosteer.bank import build_bank
from emosteer.cli import main
from emosteer.errors import ConfigError
from emosteer.prosody.correlates import acoustic_correlates
from emosteer.prosody.world import ProsodyDelta

SEMITONES = 4.0  # angry and sad are this far above calm in bankkit.VOICES (angry also louder)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return audio_store(tmp_path_factory.mktemp("audio"))


def test_cli_axis_writes_prosody_next_to_the_axis(store, tmp_path, capsys):
    out = tmp_path / "ax"
    assert main(["axis", str(store.root), "--layer", "2", "--source", "calm", "--target",
                 "angry", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"prosody: saved {out / 'prosody.json'}" in text and "--mode prosody" in text
    d = ProsodyDelta.load(out / "prosody.json")
    assert (d.source, d.target, d.speakers) == ("calm", "angry", ("s0", "s1", "s2"))
    assert d.f0_shift_st == pytest.approx(SEMITONES, abs=0.5) and d.energy_db > 6
    # steer --mode prosody --axis finds it without a second command
    src, steered = tmp_path / "in.wav", tmp_path / "out.wav"
    save_audio(src, voice(130.0, 0.05, seed=3), SAMPLE_RATE)
    assert main(["steer", "--input", str(src), "--delta", "1", "--output", str(steered),
                 "--axis", str(out), "--mode", "prosody"]) == 0
    before = acoustic_correlates(load_audio(src), SAMPLE_RATE)["median_f0_st"]
    after = acoustic_correlates(load_audio(steered), SAMPLE_RATE)["median_f0_st"]
    assert after - before == pytest.approx(d.f0_shift_st, abs=1.0)


def test_cli_axis_no_prosody_and_held_out_speakers(store, tmp_path, capsys):
    out = tmp_path / "ax"
    assert main(["axis", str(store.root), "--layer", "2", "--source", "calm", "--target",
                 "angry,sad", "--out", str(out), "--holdout-speakers", "s2", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)["axes"]
    for r in rep:  # the held-out speaker is in neither the axis nor the prosody delta
        assert r["config"]["speakers"] == ["s0", "s1"] and r["holdout"]["test_speakers"] == ["s2"]
        assert ProsodyDelta.load(r["prosody"]).speakers == ("s0", "s1")
    # -f --no-prosody: no prosody.json is left behind for steer to pick up
    assert main(["axis", str(store.root), "--layer", "2", "--source", "calm", "--target",
                 "angry,sad", "--out", str(out), "--no-prosody", "-f"]) == 0
    assert "prosody: none (not asked for)" in capsys.readouterr().out
    assert not (out / "angry" / "prosody.json").exists()
    assert (out / "angry" / "axis.json").is_file() and (out / "axes.json").is_file()


def test_bank_learns_a_prosody_delta_per_emotion(store, tmp_path):
    bank = build_bank(store.root, tmp_path / "bank", reference="calm", holdout_speakers=["s2"],
                      prosody_speakers=["s0"], cache_dir=tmp_path / "cache")
    assert bank.config.prosody_speakers == ("s0",)
    for e in ("angry", "sad"):
        d = bank.prosody(e)
        assert d.speakers == ("s0",) and d.target == e
        assert d.f0_shift_st == pytest.approx(SEMITONES, abs=0.5)
        p = bank.diagnostics["per_emotion"][e]["prosody"]
        assert p["f0_shift_st"] == pytest.approx(d.f0_shift_st) and p["speakers"] == ["s0"]
    assert bank.prosody("angry").energy_db - bank.prosody("sad").energy_db > 6
    # the cache holds each clip once: s0's calm clips served both emotions
    assert len(list((tmp_path / "cache" / "prosody").glob("*.json"))) == 6
    mixed = bank.mixed_prosody("angry:0.5,sad:0.5")
    assert mixed.energy_db == pytest.approx(
        np.mean([bank.prosody(e).energy_db for e in ("angry", "sad")]))


def test_prosody_speakers_must_not_be_held_out(store, tmp_path):
    with pytest.raises(ConfigError, match="held out"):
        build_bank(store.root, tmp_path / "bank", holdout_speakers=["s2"],
                   prosody_speakers=["s2"])
