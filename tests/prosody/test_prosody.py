"""Prosody: extraction and correlates on synthetic voices with known answers, WORLD modification
by construction, and the acceptance checks on real RAVDESS calm/angry speech."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from emosteer.audio import load_audio, save_audio
from emosteer.cli import main
from emosteer.errors import ArtifactError, AudioError, ConfigError
from emosteer.prosody.correlates import acoustic_correlates, compare_correlates, extract_prosody
from emosteer.prosody.world import (
    ProsodyDelta,
    apply_prosody,
    delta_from_correlates,
    learn_prosody_delta,
)

SR = 16_000
PAD_S = 0.3


def voice(f0=150.0, f0_end=None, amp=0.2, slope=1.0, syll_s=0.15, gap_s=0.1, n_syll=6,
          sr=SR, seed=0, return_f0=False):
    """Syllable-like harmonic bursts (harmonic k has amplitude 1/k**slope) between silences,
    over a faint noise floor, with F0 gliding linearly from f0 to f0_end; with `return_f0`
    also the F0 (Hz) of the samples inside the bursts."""
    rng = np.random.default_rng(seed)
    n_on, n_gap, n_pad = int(syll_s * sr), int(gap_s * sr), int(PAD_S * sr)
    gate = np.concatenate([np.r_[np.hanning(n_on), np.zeros(n_gap)] for _ in range(n_syll)])
    gate = np.concatenate([np.zeros(n_pad), np.sqrt(gate), np.zeros(n_pad)])
    track = np.linspace(f0, f0 if f0_end is None else f0_end, len(gate))
    phase = 2 * np.pi * np.cumsum(track) / sr
    ks = np.arange(1, int(5000 / max(f0, f0_end or 0)) + 1)
    tone = sum(np.sin(k * phase) / k**slope for k in ks)
    wav = amp * gate * tone / np.max(np.abs(tone)) + 1e-4 * rng.standard_normal(len(gate))
    wav = wav.astype(np.float32)
    return (wav, track[gate > 0.5]) if return_f0 else wav


def st(f0: float) -> float:
    return 12 * math.log2(f0 / 55.0)


# --- extraction and correlates ------------------------------------------------------------

def test_extract_prosody_finds_f0_voicing_and_energy():
    wav = voice(f0=150.0, syll_s=1.0, gap_s=0.0, n_syll=1)
    p = extract_prosody(wav, SR)
    assert p.frame_rate == 100.0 and len(p.f0) == len(p.voiced) == len(p.energy_db)
    t = np.arange(len(p.f0)) / p.frame_rate
    core = (t > PAD_S + 0.2) & (t < PAD_S + 0.8)
    assert p.voiced[core].mean() > 0.95
    assert np.median(p.f0[core]) == pytest.approx(150.0, rel=0.02)
    assert not p.voiced[t < PAD_S - 0.05].any() and np.all(p.f0[~p.voiced] == 0)
    assert p.energy_db[core].max() > p.energy_db[t < PAD_S - 0.05].max() + 40


def test_correlates_match_construction():
    c = acoustic_correlates(voice(f0=150.0), SR)
    assert set(c) >= {"median_f0_st", "f0_range_st", "level_db", "alpha_ratio_db",
                      "spectral_tilt", "voiced_ratio", "speaking_rate", "duration_s"}
    assert c["median_f0_st"] == pytest.approx(st(150.0), abs=0.2)
    assert c["f0_range_st"] < 0.5
    assert c["duration_s"] == pytest.approx(len(voice()) / SR)
    assert c["speaking_rate"] == pytest.approx(1 / 0.25, rel=0.2)  # one syllable per 250 ms
    wav, f0 = voice(f0=120.0, f0_end=240.0, return_f0=True)
    lo, hi = np.percentile(12 * np.log2(f0 / 55.0), [10, 90])
    assert acoustic_correlates(wav, SR)["f0_range_st"] == pytest.approx(hi - lo, abs=0.5)


def test_level_and_effort_measures_respond_to_what_they_measure():
    soft = acoustic_correlates(voice(amp=0.1), SR)
    loud = acoustic_correlates(voice(amp=0.2), SR)
    assert loud["level_db"] - soft["level_db"] == pytest.approx(6.02, abs=0.3)
    dull = acoustic_correlates(voice(slope=2.0), SR)
    bright = acoustic_correlates(voice(slope=0.7), SR)
    assert bright["alpha_ratio_db"] > dull["alpha_ratio_db"] + 6
    assert bright["spectral_tilt"] > dull["spectral_tilt"]


def test_correlates_are_rate_independent():
    from emosteer.audio import resample

    a = acoustic_correlates(voice(), SR)
    b = acoustic_correlates(resample(voice(), SR, 22050), 22050)
    for k in ("median_f0_st", "level_db", "alpha_ratio_db", "duration_s"):
        assert b[k] == pytest.approx(a[k], abs=0.3), k


@pytest.mark.parametrize("bad", [np.zeros(0), np.zeros(8000), np.full(8000, np.nan), np.ones(10)])
def test_bad_audio_is_an_audio_error(bad):
    with pytest.raises(AudioError):
        acoustic_correlates(bad.astype(np.float32), SR)


def test_compare_correlates_is_the_fraction_of_the_gap():
    src = [{"a": 0.0, "b": 1.0}, {"a": 2.0, "b": 1.0}]
    tgt = {"a": 5.0, "b": 1.0}
    frac = compare_correlates({"a": 3.0, "b": 4.0}, src, tgt)
    assert frac["a"] == pytest.approx(0.5)  # source mean 1, target 5, steered 3
    assert math.isnan(frac["b"])  # no real gap to close


# --- learning deltas ------------------------------------------------------------------------

def _row(f0, rng, lvl, alpha, rate):
    return {"median_f0_st": f0, "f0_range_st": rng, "level_db": lvl, "alpha_ratio_db": alpha,
            "speaking_rate": rate}


def test_delta_is_speaker_normalised():
    rows = [_row(10, 4, -40, -10, 4), _row(13, 8, -30, -6, 5),    # speaker a
            _row(30, 4, -20, -8, 4), _row(35, 2, -14, -6, 4),     # speaker b: higher, louder
            _row(99, 1, 0, 0, 1)]                                 # c: source only, skipped
    d = delta_from_correlates(rows, ["a", "a", "b", "b", "c"],
                              ["calm", "angry", "calm", "angry", "calm"], "calm", "angry")
    assert d.f0_shift_st == pytest.approx(4.0)
    assert d.f0_range_ratio == pytest.approx(1.0)  # geometric mean of x2 and x0.5
    assert d.energy_db == pytest.approx(8.0) and d.tilt_db == pytest.approx(3.0)
    assert d.rate_ratio == pytest.approx(math.sqrt(1.25))
    assert d.speakers == ("a", "b") and (d.n_source, d.n_target) == (2, 2)
    with pytest.raises(ConfigError, match="calm"):
        delta_from_correlates(rows[4:], ["c"], ["calm"], "calm", "angry")
    with pytest.raises(ConfigError):
        delta_from_correlates(rows, ["a"], ["calm"], "calm", "angry")


def test_learn_from_audio_skips_bad_files(tmp_path, caplog):
    wavs = [voice(120, amp=0.05), voice(160, amp=0.1), voice(110, amp=0.05, seed=1),
            voice(147, amp=0.1, seed=1), str(tmp_path / "missing.wav"), voice(300)]
    d = learn_prosody_delta(wavs, ["s1", "s1", "s2", "s2", "s2", "s2"],
                            ["calm", "angry", "calm", "angry", "angry", "happy"], "calm", "angry")
    assert d.f0_shift_st == pytest.approx((st(160) - st(120) + st(147) - st(110)) / 2, abs=0.3)
    assert d.energy_db == pytest.approx(6.02, abs=0.5)
    assert d.n_target == 2 and "missing.wav" in caplog.text


def test_delta_json_roundtrip_and_validation(tmp_path):
    d = ProsodyDelta(3.0, 1.2, 4.0, 6.0, 1.1, source="calm", target="angry", speakers=("x",))
    d.save(tmp_path / "d.json")
    assert ProsodyDelta.load(tmp_path / "d.json") == d
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["emosteer_version"] and data["sample_rate"] == SR
    (tmp_path / "bad.json").write_text(json.dumps({**data, "surprise": 1}))
    with pytest.raises(ArtifactError, match="bad.json"):
        ProsodyDelta.load(tmp_path / "bad.json")
    (tmp_path / "neg.json").write_text(json.dumps({**data, "rate_ratio": -1}))
    with pytest.raises(ArtifactError, match="neg.json"):
        ProsodyDelta.load(tmp_path / "neg.json")
    with pytest.raises(ConfigError):
        ProsodyDelta(float("nan"), 1, 0, 0, 1)


# --- applying deltas (WORLD) ----------------------------------------------------------------

def _apply(wav, scale=1.0, preserve_level=False, **fields):
    base = dict(f0_shift_st=0.0, f0_range_ratio=1.0, tilt_db=0.0, energy_db=0.0, rate_ratio=1.0)
    out = apply_prosody(wav, SR, ProsodyDelta(**{**base, **fields}), scale, preserve_level)
    return acoustic_correlates(out, SR)


def test_scale_zero_resynthesises_the_input():
    wav = voice(f0=140.0, f0_end=180.0)
    a = acoustic_correlates(wav, SR)
    b = _apply(wav, 0.0, f0_shift_st=5, f0_range_ratio=2, tilt_db=6, energy_db=6, rate_ratio=2)
    assert b["median_f0_st"] == pytest.approx(a["median_f0_st"], abs=0.2)
    assert b["f0_range_st"] == pytest.approx(a["f0_range_st"], abs=0.3)
    assert b["level_db"] == pytest.approx(a["level_db"], abs=0.5)
    assert b["alpha_ratio_db"] == pytest.approx(a["alpha_ratio_db"], abs=1.0)
    assert b["duration_s"] == pytest.approx(a["duration_s"], abs=0.01)


def test_f0_shift_and_range():
    wav = voice(f0=140.0, f0_end=180.0)
    a = acoustic_correlates(wav, SR)
    up, down = _apply(wav, 1.0, f0_shift_st=3.0), _apply(wav, -1.0, f0_shift_st=3.0)
    assert up["median_f0_st"] - a["median_f0_st"] == pytest.approx(3.0, abs=0.3)
    assert down["median_f0_st"] - a["median_f0_st"] == pytest.approx(-3.0, abs=0.3)
    wide = _apply(wav, 1.0, f0_range_ratio=2.0)
    assert wide["f0_range_st"] / a["f0_range_st"] == pytest.approx(2.0, rel=0.15)
    assert wide["median_f0_st"] == pytest.approx(a["median_f0_st"], abs=0.3)


def test_effort_level_and_rate():
    wav = voice()
    a = acoustic_correlates(wav, SR)
    bright = _apply(wav, 1.0, tilt_db=6.0, preserve_level=True)
    assert bright["alpha_ratio_db"] - a["alpha_ratio_db"] == pytest.approx(6.0, abs=1.5)
    assert bright["level_db"] == pytest.approx(a["level_db"], abs=0.5)
    loud = _apply(wav, 1.0, energy_db=6.0)
    assert loud["level_db"] - a["level_db"] == pytest.approx(6.0, abs=0.5)
    assert _apply(wav, 1.0, energy_db=6.0, preserve_level=True)["level_db"] == pytest.approx(
        a["level_db"], abs=0.5)
    fast = _apply(wav, 1.0, rate_ratio=1.5)
    assert fast["duration_s"] == pytest.approx(a["duration_s"] / 1.5, rel=0.02)
    assert fast["speaking_rate"] / a["speaking_rate"] == pytest.approx(1.5, rel=0.1)
    assert fast["median_f0_st"] == pytest.approx(a["median_f0_st"], abs=0.2)


def test_apply_rejects_bad_input():
    d = ProsodyDelta(1, 1, 0, 0, 1)
    with pytest.raises(AudioError):
        apply_prosody(np.full(4000, np.nan, dtype=np.float32), SR, d)
    with pytest.raises(ConfigError):
        apply_prosody(voice(), SR, d, scale=float("inf"))


# --- CLI --------------------------------------------------------------------------------------

def test_cli_measure_reports_and_skips(tmp_path, capsys):
    good = save_audio(tmp_path / "a.wav", voice(), SR)
    bad = tmp_path / "b.wav"
    bad.write_bytes(b"not audio at all")
    assert main(["prosody", "measure", str(good), str(bad), "--json"]) == 1
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in rows] == [str(good)]
    assert rows[0]["median_f0_st"] == pytest.approx(st(150.0), abs=0.2)
    assert "b.wav" in err
    assert main(["prosody", "measure", str(good)]) == 0
    assert "median_f0_st" in capsys.readouterr().out


def test_cli_apply(tmp_path, capsys):
    from emosteer.audio import audio_info, resample

    src = save_audio(tmp_path / "in.wav", resample(voice(), SR, 22050), 22050)
    ProsodyDelta(4.0, 1.0, 0.0, 0.0, 1.0).save(tmp_path / "d.json")
    out = tmp_path / "out.wav"
    argv = ["prosody", "apply", str(src), "--delta-file", str(tmp_path / "d.json"),
            "--scale", "0.5", "--out", str(out)]
    assert main(argv) == 0
    shift = (acoustic_correlates(load_audio(out), SR)["median_f0_st"]
             - acoustic_correlates(load_audio(src), SR)["median_f0_st"])
    assert shift == pytest.approx(2.0, abs=0.3)
    assert audio_info(out)[0] == 22050  # WORLD runs at the input's own rate
    assert main(argv) == 2 and "already exists" in capsys.readouterr().err
    assert main(argv + ["-f"]) == 0
    (tmp_path / "d.json").write_text("{")
    assert main(argv + ["-f"]) == 2 and "d.json" in capsys.readouterr().err


def test_cli_learn(ravdess_dir: Path, tmp_path):
    out = tmp_path / "delta.json"
    assert main(["prosody", "learn", str(ravdess_dir), "--format", "ravdess", "--source", "calm",
                 "--target", "angry", "--speakers", "ravdess_01", "--out", str(out)]) == 0
    d = ProsodyDelta.load(out)
    assert d.speakers == ("ravdess_01",) and d.n_source == d.n_target == 8
    assert d.f0_shift_st > 2 and d.energy_db > 5


# --- acceptance on real speech (RAVDESS calm 02 vs angry 05, actors 01-08) ---------------------

@pytest.fixture(scope="module")
def ravdess_calm_angry(ravdess_dir: Path):
    """Correlates of every calm and angry clip, plus the calm audio of actors 07-08."""
    rows, calm_audio = [], {}
    for actor in range(1, 9):
        for code, emotion in (("02", "calm"), ("05", "angry")):
            files = sorted((ravdess_dir / f"Actor_{actor:02d}").glob(f"03-01-{code}-*.flac"))
            assert len(files) == 8, (actor, emotion)
            for f in files:
                wav = load_audio(f)
                rows.append((actor, emotion, acoustic_correlates(wav, SR, source=str(f))))
                if emotion == "calm" and actor >= 7:
                    calm_audio.setdefault(actor, []).append(wav)
    return rows, calm_audio


def _select(rows, actor, emotion):
    return [c for a, e, c in rows if a == actor and e == emotion]


def test_real_angry_is_higher_and_louder_than_calm(ravdess_calm_angry):
    from emosteer.prosody.correlates import mean_correlates

    rows, _ = ravdess_calm_angry
    higher = louder = 0
    for actor in range(1, 9):
        calm = mean_correlates(_select(rows, actor, "calm"))
        angry = mean_correlates(_select(rows, actor, "angry"))
        higher += angry["median_f0_st"] > calm["median_f0_st"]
        louder += angry["level_db"] > calm["level_db"]
    assert higher >= 7 and louder >= 7, (higher, louder)


def test_learned_delta_moves_held_out_actors_toward_angry(ravdess_calm_angry):
    rows, calm_audio = ravdess_calm_angry
    train = [r for r in rows if r[0] <= 6]
    d = delta_from_correlates([c for _, _, c in train], [f"a{a}" for a, _, _ in train],
                              [e for _, e, _ in train], "calm", "angry")
    assert d.f0_shift_st > 0 and d.tilt_db > 0 and d.energy_db > 0 and len(d.speakers) == 6
    for actor in (7, 8):
        steered = [acoustic_correlates(apply_prosody(w, SR, d, 1.0), SR)
                   for w in calm_audio[actor]]
        closed = compare_correlates(steered, _select(rows, actor, "calm"),
                                    _select(rows, actor, "angry"))
        print(f"actor {actor:02d} gap closed:",
              {k: round(v, 2) for k, v in closed.items()})
        # Both rise, and by a real share of the actor's own calm->angry gap.
        assert closed["median_f0_st"] > 0.3 and closed["alpha_ratio_db"] > 0.3, closed


def test_real_scale_zero_keeps_and_negative_scale_lowers(ravdess_calm_angry):
    rows, calm_audio = ravdess_calm_angry
    d = ProsodyDelta(4.0, 1.3, 5.0, 10.0, 1.1)
    for wav in calm_audio[7][:2] + calm_audio[8][:2]:
        a = acoustic_correlates(wav, SR)
        same = acoustic_correlates(apply_prosody(wav, SR, d, 0.0), SR)
        # WORLD resynthesis of real speech moves F0 by < 0.5 st and the alpha ratio by ~1 dB:
        # an order of magnitude below the real calm->angry gaps (~7 st, ~6 dB).
        for k, tol in (("median_f0_st", 0.5), ("level_db", 0.5), ("alpha_ratio_db", 1.5),
                       ("duration_s", 0.01)):
            assert same[k] == pytest.approx(a[k], abs=tol), k
        lower = acoustic_correlates(apply_prosody(wav, SR, d, -1.0), SR)
        assert lower["median_f0_st"] < a["median_f0_st"] - 3.0
