"""Steering: latent arithmetic, the round trip, the prosody path, chunking and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from emosteer.audio import SAMPLE_RATE, load_audio, rms_db, save_audio
from emosteer.axes import wrap_vector
from emosteer.cli import main
from emosteer.errors import ConfigError, EmosteerError
from emosteer.prosody.correlates import acoustic_correlates
from emosteer.steering.steer import SteerConfig, Steerer, chunk_bounds, crossfade_join

LAYER = 2


def tone(seconds: float, f0: float = 140.0, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A voiced-like harmonic tone with a slow amplitude envelope (speech-ish, deterministic)."""
    t = np.arange(int(seconds * sr)) / sr
    f = f0 * (1 + 0.05 * np.sin(2 * np.pi * 1.5 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 2.0 * t) ** 2
    return (0.2 * wav * env / np.max(np.abs(wav))).astype(np.float32)


@pytest.fixture(scope="module")
def artifacts(tiny_run):
    """An axis (calibration 2.5), prosody delta and untrained mapper for the tiny encoder."""
    return tiny_run


@pytest.fixture(scope="module")
def steerer(artifacts) -> Steerer:
    return Steerer.from_artifacts(axis=artifacts / "axis", mapper=artifacts / "mapper", mode="both")


def test_latent_arithmetic_moves_projection_by_delta_times_calibration(steerer):
    wav = tone(1.0)
    frames = steerer.frames(wav)
    base = steerer.axis.project(frames)
    for delta in (-1.0, -0.5, 0.5, 1.0):
        moved = steerer.axis.project(steerer.axis.steer(frames, delta))
        np.testing.assert_allclose(moved - base, delta * 2.5, atol=1e-4)


def test_voiced_only_leaves_unvoiced_frames(steerer, monkeypatch):
    wav = tone(1.0)
    captured = {}
    monkeypatch.setattr(steerer, "decode", lambda frames, tracks: captured.update(f=frames, t=tracks)
                        or np.zeros(10, np.float32))
    steerer.latent(wav, 1.0, frames="voiced")
    feats = steerer.frames(wav)
    voiced = captured["t"][1] > 0.5
    assert voiced.any() and (~voiced).any() or voiced.all()
    np.testing.assert_array_equal(captured["f"][~voiced], feats[~voiced])
    assert np.allclose(steerer.axis.project(captured["f"][voiced]) -
                       steerer.axis.project(feats[voiced]), 2.5, atol=1e-4)


def test_round_trip_length_rate_and_loudness(steerer):
    wav = tone(1.5)
    y, sr = steerer.steer(wav, 0.0, SteerConfig(mode="latent"))
    assert sr == steerer.vocoder.sample_rate
    assert abs(len(y) / sr - 1.5) < 0.05
    assert abs(rms_db(y) - rms_db(wav)) < 0.5


def test_prosody_mode_raises_f0(steerer):
    wav = tone(1.5, f0=130.0)
    base = acoustic_correlates(wav, SAMPLE_RATE)["median_f0_st"]
    up, sr = steerer.steer(wav, 1.0, SteerConfig(mode="prosody"))
    down, _ = steerer.steer(wav, -1.0, SteerConfig(mode="prosody"))
    assert sr == SAMPLE_RATE
    f_up = acoustic_correlates(up, sr)["median_f0_st"]
    f_down = acoustic_correlates(down, sr)["median_f0_st"]
    assert f_down < base < f_up
    assert abs((f_up - base) - 3.0) < 1.0


def test_chunked_steering_keeps_length(steerer):
    wav = tone(5.0)
    cfg = SteerConfig(mode="prosody", chunk_seconds=2.0, overlap_seconds=0.25)
    y, sr = steerer.steer(wav, 0.5, cfg)
    expected = 5.0 / 1.1**0.5  # the delta speeds speech up by rate_ratio ** delta
    assert abs(len(y) / sr - expected) < 0.1


def test_chunk_bounds_cover_input_and_crossfade_is_exact_for_identity():
    n, sr = 10 * 1000, 1000
    bounds = chunk_bounds(n, sr, 3.0, 0.5)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(b[0] < a[1] for a, b in zip(bounds, bounds[1:], strict=False))  # overlapping
    x = np.random.default_rng(1).normal(size=n).astype(np.float32)
    pieces = [(a, b, x[a:b].copy()) for a, b in bounds]
    np.testing.assert_allclose(crossfade_join(pieces, n, sr, sr, 0.5), x, atol=1e-6)


def test_config_validation():
    with pytest.raises(ConfigError):
        SteerConfig(mode="loud")
    with pytest.raises(ConfigError):
        SteerConfig(frames="some")


def test_mapper_vocoder_mel_mismatch_is_refused(artifacts):
    with pytest.raises(ConfigError, match="mels"):
        Steerer.from_artifacts(axis=artifacts / "axis", mapper=artifacts / "mapper",
                               vocoder="griffinlim:16k")


def test_cli_single_and_sweep(artifacts, tmp_path, ravdess_dir):
    src = sorted(ravdess_dir.glob("Actor_07/03-01-02-*.flac"))[0]
    out = tmp_path / "out.wav"
    args = ["steer", "--input", str(src), "--delta", "1", "--output", str(out),
            "--axis", str(artifacts / "axis"), "--mode", "prosody"]
    assert main(args) == 0
    y = load_audio(out)
    before = acoustic_correlates(load_audio(src), SAMPLE_RATE)["median_f0_st"]
    assert acoustic_correlates(y, SAMPLE_RATE)["median_f0_st"] > before
    assert main(args) == 2  # refuses to overwrite without -f
    assert main(args + ["-f"]) == 0
    sweep = tmp_path / "sweep"
    assert main(["steer", "--input", str(src), "--deltas", "-1,0,1", "--output", str(sweep),
                 "--axis", str(artifacts / "axis"), "--mapper", str(artifacts / "mapper"),
                 "--mode", "both"]) == 0
    assert len(list(sweep.glob("*.wav"))) == 3 and (sweep / "sweep.json").is_file()


def test_cli_bad_input_is_a_clear_error(artifacts, tmp_path, capsys):
    bad = tmp_path / "not_audio.wav"
    bad.write_text("hello")
    rc = main(["steer", "--input", str(bad), "--delta", "1", "--output", str(tmp_path / "o.wav"),
               "--axis", str(artifacts / "axis"), "--mode", "prosody"])
    assert rc == 2
    assert "not_audio.wav" in capsys.readouterr().err


def test_prosody_mode_without_delta_is_refused(tmp_path):
    axis = wrap_vector(np.ones(8), model="m", layer=1, source="calm", target="angry")
    s = Steerer(axis)
    save_audio(tmp_path / "x.wav", tone(1.0), SAMPLE_RATE)
    with pytest.raises(EmosteerError, match="prosody"):
        s.steer(tone(1.0), 1.0, SteerConfig(mode="prosody"))
