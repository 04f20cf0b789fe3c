"""Steering: latent arithmetic, the round trip, the prosody path, chunking and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from emosteer.audio import PEAK_CEILING, SAMPLE_RATE, load_audio, rms_db, save_audio
from emosteer.axes import wrap_vector
from emosteer.cli import main
from emosteer.errors import ConfigError, EmosteerError
from emosteer.prosody.correlates import acoustic_correlates
from emosteer.prosody.world import EnvelopeShift
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


def test_voiced_only_leaves_unvoiced_frames(steerer):
    wav = tone(1.0)
    feats, steered, tracks = steerer.push(wav, 1.0, frames="voiced")
    voiced = tracks[1] > 0.5
    assert voiced.any() and (~voiced).any() or voiced.all()
    np.testing.assert_array_equal(steered[~voiced], feats[~voiced])
    assert np.allclose(steerer.axis.project(steered[voiced]) -
                       steerer.axis.project(feats[voiced]), 2.5, atol=1e-4)


def test_differential_delta_zero_is_exactly_copy_synthesis(steerer):
    wav = tone(1.2)
    n = steerer.mapper.out_length(steerer.frames(wav).shape[0])
    np.testing.assert_array_equal(steerer.latent_mel(wav, 0.0), steerer.input_mel(wav, n))
    y, sr = steerer.steer(wav, 0.0, SteerConfig(mode="latent", match_loudness=False))
    np.testing.assert_array_equal(y, steerer.vocode(steerer.input_mel(wav, n)))


def test_delta_zero_runs_neither_encoder_nor_mapper(steerer, monkeypatch):
    """The shape comes from the CNN geometry alone, and it is the shape a pushed pass has."""
    lengths = (1.0, 1.2371, 0.73)
    pushed = [steerer.mel_difference(tone(s), 0.5).shape for s in lengths]

    def refuse(*args, **kwargs):
        raise AssertionError("ran a model at delta 0")

    monkeypatch.setattr(steerer.encoder, "encode", refuse)
    monkeypatch.setattr(steerer, "map_frames", refuse)
    for s, shape in zip(lengths, pushed, strict=True):
        diff = steerer.mel_difference(tone(s), 0.0)
        assert diff.shape == shape and not diff.any()


def test_same_output_as_names_a_config_with_the_identical_output(steerer):
    wav = tone(1.1)
    for cfg in (SteerConfig(mode="both"), SteerConfig(mode="both", frames="voiced"),
                SteerConfig(mode="latent", frames="voiced")):
        simple = Steerer.same_output_as(cfg, 0.0)
        assert (simple.mode, simple.frames) == ("latent", "all")
        np.testing.assert_array_equal(steerer.steer(wav, 0.0, simple)[0],
                                      steerer.steer(wav, 0.0, cfg)[0])
        assert Steerer.same_output_as(cfg, 1.0) == cfg
    envelope = SteerConfig(mode="both", decode="envelope")
    assert Steerer.same_output_as(envelope, 0.0) == envelope


def test_differential_adds_only_what_the_push_changes(steerer):
    """mel(input) + mapper(steered) - mapper(frames); the fused batch of two equals two passes."""
    wav = tone(1.2)
    feats, steered, tracks = steerer.push(wav, 1.0, "all")
    alone = steerer.map_frames([steered], tracks)[0] - steerer.map_frames([feats], tracks)[0]
    diff = steerer.latent_mel(wav, 1.0) - steerer.input_mel(wav, alone.shape[1])
    np.testing.assert_allclose(diff, alone, atol=1e-4)
    assert np.abs(alone).max() > 1e-3  # the push does change the mapper's output
    np.testing.assert_allclose(steerer.latent_mel(wav, 1.0, decode="full"),
                               steerer.map_frames([steered], tracks)[0], atol=1e-5)


def test_both_applies_the_latent_difference_to_the_prosody_shifted_mel(steerer, monkeypatch):
    wav = tone(1.2)
    shifted = tone(1.2, f0=180.0)
    monkeypatch.setattr(steerer, "prosody_shift", lambda w, d: shifted)
    seen = []
    real = steerer.latent_mel
    monkeypatch.setattr(steerer, "latent_mel", lambda w, *a: seen.append(w) or real(w, *a))
    steerer.steer(wav, 1.0, SteerConfig(mode="both"))
    assert len(seen) == 1 and seen[0] is shifted


def band_db(wav: np.ndarray, lo: float, hi: float, sr: int = SAMPLE_RATE) -> float:
    spec = np.abs(np.fft.rfft(wav)) ** 2
    f = np.fft.rfftfreq(len(wav), 1 / sr)
    return float(10 * np.log10(spec[(f >= lo) & (f < hi)].sum()))


def test_envelope_decoding_is_one_world_resynthesis_with_the_push(steerer, monkeypatch):
    """decode=envelope: 16 kHz, no vocoder; a +6 dB envelope change above 800 Hz tilts the
    spectrum by 6 dB (WORLD then restores the overall level)."""
    wav = tone(1.2)
    cfg = SteerConfig(mode="latent", decode="envelope", match_loudness=False)
    plain, sr = steerer.steer(wav, 0.0, cfg)
    assert sr == SAMPLE_RATE and abs(len(plain) - len(wav)) < 200
    shift = steerer.envelope_shift(wav, 1.0)
    fmax = steerer.mapper.config.mel_config.fmax
    assert np.all(np.diff(shift.freqs) > 0) and 0 < shift.freqs[0] and shift.freqs[-1] < fmax
    hop_s = steerer.mapper.config.mel_config.hop_length / steerer.mapper.config.mel_config.sample_rate
    np.testing.assert_allclose(np.diff(shift.times), hop_s)
    tilt = EnvelopeShift(np.log(np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0], [2.0, 2.0]])),
                         np.array([0.0, 700.0, 800.0, 8000.0]), np.array([0.0, 10.0]))
    monkeypatch.setattr(steerer, "envelope_shift", lambda w, d, f: tilt)
    tilted, _ = steerer.steer(wav, 1.0, cfg)
    gain = (band_db(tilted, 900, 2000) - band_db(tilted, 50, 600)) \
        - (band_db(plain, 900, 2000) - band_db(plain, 50, 600))
    assert abs(gain - 6.02) < 1.0


def test_no_steered_output_clips(steerer, caplog, tmp_path):
    """A loud input pushed +1 with a prosody delta that adds level: the output stays under the
    peak ceiling and reads back without the clipping warning."""
    wav = tone(1.5) * (0.98 / 0.2)
    for mode in ("prosody", "latent", "both"):
        y, sr = steerer.steer(wav, 1.0, SteerConfig(mode=mode, match_loudness=False))
        assert np.max(np.abs(y)) <= PEAK_CEILING, mode
        save_audio(tmp_path / f"{mode}.wav", y, sr)
        with caplog.at_level("WARNING"):
            load_audio(tmp_path / f"{mode}.wav", sr=sr)
        assert "clips" not in caplog.text, mode


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
    with pytest.raises(ConfigError, match="decode"):
        SteerConfig(decode="magic")


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


def test_int8_encoder_steers_close_to_fp32(artifacts, tmp_path, monkeypatch):
    """from_artifacts(int8=True) (steer --int8) quantises the encoder only: the weights hash
    still matches the mapper's record, and the pushed mel moves little from fp32's."""
    fp32 = Steerer.from_artifacts(axis=artifacts / "axis", mapper=artifacts / "mapper")
    int8 = Steerer.from_artifacts(axis=artifacts / "axis", mapper=artifacts / "mapper", int8=True)
    assert int8.encoder.config.int8 and not fp32.encoder.config.int8
    wav = tone(1.2)
    a, b = fp32.latent_mel(wav, 1.0), int8.latent_mel(wav, 1.0)
    assert not np.array_equal(a, b)
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 0.05
    loaded = []
    real = Steerer.from_artifacts.__func__

    def spy(cls, *args, **kwargs):
        loaded.append(kwargs.get("int8"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(Steerer, "from_artifacts", classmethod(spy))
    assert main(["steer", "--input", str(save_audio(tmp_path / "in.wav", wav, SAMPLE_RATE)),
                 "--delta", "1", "--output", str(tmp_path / "out.wav"), "--int8",
                 "--axis", str(artifacts / "axis"), "--mapper", str(artifacts / "mapper")]) == 0
    assert loaded == [True]


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
