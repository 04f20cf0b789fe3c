"""audio.py: loading, resampling, validation, streaming, saving and level helpers."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf

from emosteer.audio import (
    MIN_SAMPLES,
    PEAK_CEILING,
    SAMPLE_RATE,
    SSL_FRAME_RATE,
    audio_info,
    iter_audio_chunks,
    limit_peak,
    load_audio,
    match_loudness,
    min_samples_at,
    resample,
    rms_db,
    save_audio,
    validate_audio,
)
from emosteer.errors import AudioError, ConfigError
from signals import peak_freq, sine


def test_constants_agree():
    assert SSL_FRAME_RATE == 50.0
    assert min_samples_at(SAMPLE_RATE) == MIN_SAMPLES
    assert min_samples_at(8000) == MIN_SAMPLES // 2


def test_load_wav_roundtrip(tmp_path):
    x = sine(440, 1.0, SAMPLE_RATE)
    sf.write(tmp_path / "a.wav", x, SAMPLE_RATE, subtype="FLOAT")
    y = load_audio(tmp_path / "a.wav")
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-7)


def test_stereo_is_averaged_not_summed(tmp_path):
    left, right = sine(300, 1.0, SAMPLE_RATE, 0.4), sine(300, 1.0, SAMPLE_RATE, 0.2)
    sf.write(tmp_path / "s.flac", np.stack([left, right], 1), SAMPLE_RATE)
    y = load_audio(tmp_path / "s.flac")
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-4)


def test_resample_keeps_frequency_and_duration():
    x = sine(1000, 2.0, 44100)
    y = resample(x, 44100, SAMPLE_RATE)
    assert abs(len(y) - 2 * SAMPLE_RATE) <= 1
    assert abs(peak_freq(y, SAMPLE_RATE) - 1000) < 2
    # band-limited: a tone above the new Nyquist is removed, not aliased to 16000 - 9000 Hz
    alias = resample(sine(9000, 1.0, 44100), 44100, SAMPLE_RATE)
    assert rms_db(alias[2000:-2000]) < -80  # edges hold the filter's onset transient


def test_resample_rejects_bad_rates():
    with pytest.raises(ConfigError):
        resample(np.zeros(10, np.float32), 0, SAMPLE_RATE)


def test_validate_audio_errors():
    with pytest.raises(AudioError, match="no samples"):
        validate_audio(np.zeros(0, np.float32))
    with pytest.raises(AudioError, match="too short"):
        validate_audio(np.full(MIN_SAMPLES - 1, 0.1, np.float32), "x.wav")
    with pytest.raises(AudioError, match="silent"):
        validate_audio(np.zeros(MIN_SAMPLES, np.float32))
    with pytest.raises(AudioError, match="NaN"):
        validate_audio(np.array([0.1, np.inf] * MIN_SAMPLES, np.float32))
    ok = np.full(MIN_SAMPLES, 0.1, np.float32)
    assert validate_audio(ok) is ok


def test_clipping_warns_but_loads(tmp_path, caplog):
    x = np.clip(sine(200, 1.0, SAMPLE_RATE, 2.0), -1, 1)
    sf.write(tmp_path / "clip.wav", x, SAMPLE_RATE)
    with caplog.at_level(logging.WARNING, logger="emosteer.audio"):
        y = load_audio(tmp_path / "clip.wav")
    assert len(y) == SAMPLE_RATE
    assert any("clips" in r.getMessage() and "clip.wav" in r.getMessage() for r in caplog.records)


def test_validate_false_allows_silence(tmp_path):
    sf.write(tmp_path / "z.wav", np.zeros(100, np.float32), SAMPLE_RATE)
    assert load_audio(tmp_path / "z.wav", validate=False).shape == (100,)
    with pytest.raises(AudioError, match="z.wav"):
        load_audio(tmp_path / "z.wav")


def test_audio_info(tmp_path):
    sf.write(tmp_path / "i.wav", np.zeros((2205, 3), np.float32), 22050)
    assert audio_info(tmp_path / "i.wav") == (22050, 2205, 3)


@pytest.mark.parametrize("file_sr", [8000, 16000, 22050])
def test_chunks_equal_whole_load(tmp_path, file_sr):
    x = sine(220, 7.3, file_sr)
    sf.write(tmp_path / "long.wav", x, file_sr, subtype="FLOAT")
    whole = load_audio(tmp_path / "long.wav")
    chunks = list(iter_audio_chunks(tmp_path / "long.wav", chunk_seconds=2.0))
    assert [s for s, _ in chunks] == [0, 32000, 64000, 96000]
    assert all(len(c) == 32000 for _, c in chunks[:-1])
    joined = np.concatenate([c for _, c in chunks])
    assert joined.shape == whole.shape
    # one streaming resampler: no seams at chunk boundaries
    np.testing.assert_allclose(joined, whole, atol=1e-5)


def test_chunks_with_overlap(tmp_path):
    sf.write(tmp_path / "o.wav", sine(220, 5.0, SAMPLE_RATE), SAMPLE_RATE)
    whole = load_audio(tmp_path / "o.wav")
    chunks = list(iter_audio_chunks(tmp_path / "o.wav", chunk_seconds=2.0, overlap_seconds=0.5))
    assert [(s, len(c)) for s, c in chunks] == [(0, 40000), (32000, 40000), (64000, 16000)]
    for start, c in chunks:
        np.testing.assert_array_equal(c, whole[start:start + len(c)])


def test_chunks_tail_inside_overlap_not_repeated(tmp_path):
    sf.write(tmp_path / "t.wav", sine(220, 4.25, SAMPLE_RATE), SAMPLE_RATE)
    chunks = list(iter_audio_chunks(tmp_path / "t.wav", chunk_seconds=2.0, overlap_seconds=0.5))
    # 0-2.5 s, 2-4.25 s: the 0.25 s after 4 s is already inside the second chunk
    assert [(s, len(c)) for s, c in chunks] == [(0, 40000), (32000, 36000)]


def test_chunk_args_validated(tmp_path):
    sf.write(tmp_path / "a.wav", sine(220, 1.0, SAMPLE_RATE), SAMPLE_RATE)
    with pytest.raises(ConfigError):
        next(iter_audio_chunks(tmp_path / "a.wav", chunk_seconds=0))
    with pytest.raises(ConfigError):
        next(iter_audio_chunks(tmp_path / "a.wav", overlap_seconds=-1))


def test_chunks_report_nan_position_and_silence(tmp_path):
    x = sine(220, 3.0, SAMPLE_RATE)
    x[int(2.5 * SAMPLE_RATE)] = np.nan
    sf.write(tmp_path / "n.wav", x, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"n\.wav.*NaN.*2\.50 s"):
        list(iter_audio_chunks(tmp_path / "n.wav", chunk_seconds=1.0))
    sf.write(tmp_path / "quiet.wav", np.zeros(3 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    it = iter_audio_chunks(tmp_path / "quiet.wav", chunk_seconds=1.0)
    with pytest.raises(AudioError, match="quiet.wav.*silent"):
        list(it)
    assert len(list(iter_audio_chunks(tmp_path / "quiet.wav", 1.0, validate=False))) == 3


def test_save_audio_roundtrip_and_errors(tmp_path):
    x = sine(330, 0.5, SAMPLE_RATE)
    for suffix in (".wav", ".flac", ".ogg"):
        out = save_audio(tmp_path / f"o{suffix}", x, SAMPLE_RATE)
        y = load_audio(out)
        assert abs(len(y) - len(x)) <= 1
        tol = 0.1 if suffix == ".ogg" else 1e-3  # vorbis is lossy
        assert abs(rms_db(y) - rms_db(x)) < tol
    with pytest.raises(AudioError, match="unsupported"):
        save_audio(tmp_path / "o.mp4", x, SAMPLE_RATE)
    with pytest.raises(AudioError, match="NaN"):
        save_audio(tmp_path / "bad.wav", np.array([np.nan] * 10, np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match="mono"):
        save_audio(tmp_path / "st.wav", np.zeros((10, 2), np.float32), SAMPLE_RATE)
    assert not (tmp_path / "bad.wav").exists()


def test_rms_and_match_loudness():
    x = sine(100, 1.0, SAMPLE_RATE, 1.0)
    assert abs(rms_db(x) - 20 * np.log10(1 / np.sqrt(2))) < 0.01
    quiet = x * 0.01
    matched = match_loudness(quiet, x * 0.5, SAMPLE_RATE)
    assert abs(rms_db(matched) - rms_db(x * 0.5)) < 0.01
    limited = match_loudness(quiet, np.ones(100, np.float32) * 0.999, SAMPLE_RATE)
    assert np.max(np.abs(limited)) <= PEAK_CEILING


def test_limit_peak_touches_only_the_peaks():
    """A loud burst in a quiet sine is brought under the ceiling; a second away the signal is
    sample-for-sample unchanged, so the level of everything else survives."""
    x = sine(200, 2.0, SAMPLE_RATE, 0.3)
    x[SAMPLE_RATE // 2:SAMPLE_RATE // 2 + 800] *= 3.0  # a 50 ms burst peaking at 0.9 -> clip
    x[SAMPLE_RATE // 2 + 400] = 1.4
    y = limit_peak(x, SAMPLE_RATE)
    assert np.max(np.abs(y)) <= PEAK_CEILING
    far = slice(SAMPLE_RATE + SAMPLE_RATE // 4, None)
    np.testing.assert_array_equal(y[far], x[far])
    quiet = sine(200, 1.0, SAMPLE_RATE, 0.5)
    np.testing.assert_array_equal(limit_peak(quiet, SAMPLE_RATE), quiet)
