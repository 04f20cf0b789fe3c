"""Hostile inputs for the audio loader: every case gives an AudioError naming the file, or loads
correctly. Each file is generated here in a tmp dir; nothing is checked in."""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emosteer.audio import SAMPLE_RATE, iter_audio_chunks, load_audio
from emosteer.errors import AudioError, EmosteerError
from signals import peak_freq, sine

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def drain(path: Path) -> np.ndarray:
    return np.concatenate([c for _, c in iter_audio_chunks(path, chunk_seconds=1.0)])


def wav_bytes(x: np.ndarray, sr: int = SAMPLE_RATE, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def assert_audio_error(path: Path, match: str) -> None:
    """Both entry points must fail with our error, naming the file."""
    for reader in (load_audio, drain):
        with pytest.raises(AudioError, match=match) as info:
            reader(path)
        assert path.name in str(info.value)


def test_truncated_header(tmp_path):
    p = tmp_path / "truncated.wav"
    p.write_bytes(wav_bytes(sine(440, 1, SAMPLE_RATE))[:20])
    assert_audio_error(p, "not a readable audio file")


def test_truncated_data_loads_what_is_there(tmp_path):
    p = tmp_path / "cut.wav"
    data = wav_bytes(sine(440, 1, SAMPLE_RATE))
    p.write_bytes(data[: 44 + 2 * 8000])  # header + 0.5 s of 16-bit samples
    assert len(load_audio(p)) == 8000
    assert len(drain(p)) == 8000


def test_zero_length(tmp_path):
    p = tmp_path / "empty.wav"
    p.touch()
    assert_audio_error(p, "empty file")


def test_one_sample(tmp_path):
    p = tmp_path / "one.wav"
    sf.write(p, np.array([0.5], np.float32), SAMPLE_RATE)
    assert_audio_error(p, "too short")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_floats(tmp_path, bad):
    x = sine(440, 1, SAMPLE_RATE)
    x[100] = bad
    p = tmp_path / "nonfinite.wav"
    sf.write(p, x, SAMPLE_RATE, subtype="FLOAT")
    assert_audio_error(p, "NaN or Inf")


@pytest.mark.parametrize("file_sr", [8000, 96000])
def test_rates_are_resampled(tmp_path, file_sr):
    p = tmp_path / f"tone_{file_sr}.wav"
    sf.write(p, sine(1000, 2.0, file_sr), file_sr)
    for y in (load_audio(p), drain(p)):
        assert abs(len(y) - 2 * SAMPLE_RATE) <= 1  # duration kept
        assert abs(peak_freq(y, SAMPLE_RATE) - 1000) < 2  # pitch kept


def test_six_channels_downmixed(tmp_path):
    base = sine(500, 1.0, SAMPLE_RATE, 0.6)
    gains = np.array([1.0, 0.5, 0.25, 0.0, -0.25, 0.5], np.float32)
    p = tmp_path / "surround.wav"
    sf.write(p, base[:, None] * gains[None, :], SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(p), base * gains.mean(), atol=1e-6)
    np.testing.assert_allclose(drain(p), base * gains.mean(), atol=1e-6)


@pytest.mark.parametrize("subtype,tol", [("PCM_U8", 1 / 64), ("FLOAT", 1e-7)])
def test_sample_formats(tmp_path, subtype, tol):
    x = sine(300, 1.0, SAMPLE_RATE)
    p = tmp_path / f"{subtype}.wav"
    sf.write(p, x, SAMPLE_RATE, subtype=subtype)
    assert sf.info(str(p)).subtype == subtype
    np.testing.assert_allclose(load_audio(p), x, atol=tol)


@pytest.mark.parametrize("fmt,subtype,suffix", [("MP3", "MPEG_LAYER_III", ".mp3"),
                                                ("OGG", "VORBIS", ".ogg")])
def test_compressed_formats(tmp_path, fmt, subtype, suffix):
    if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} cannot write {fmt}/{subtype}")
    p = tmp_path / f"tone{suffix}"
    sf.write(p, sine(800, 2.0, 22050), 22050, format=fmt, subtype=subtype)
    y = load_audio(p)
    # mp3 adds encoder delay/padding (a few ms): duration within 0.1 s, pitch exact
    assert abs(len(y) / SAMPLE_RATE - 2.0) < 0.1
    assert abs(peak_freq(y, SAMPLE_RATE) - 800) < 3
    assert abs(len(drain(p)) - len(y)) <= 1


@pytest.mark.parametrize("rate", [1, 1_000_000])
def test_implausible_sample_rate(tmp_path, rate):
    # Patch the header: a 1 Hz claim would make resampling allocate 16000x the file size.
    data = bytearray(wav_bytes(sine(440, 1, SAMPLE_RATE)))
    data[24:28] = rate.to_bytes(4, "little")
    data[28:32] = (rate * 2).to_bytes(4, "little")  # byte rate of mono 16-bit
    p = tmp_path / "rate.wav"
    p.write_bytes(bytes(data))
    assert_audio_error(p, "implausible sample rate")


def test_text_file_named_wav(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("these are not the samples you are looking for\n" * 20)
    assert_audio_error(p, "not a readable audio file")


def test_unknown_container_falls_back_then_fails_cleanly(tmp_path):
    # .m4a is not libsndfile's: the librosa/audioread fallback runs and must fail with our error
    p = tmp_path / "voice memo.m4a"
    p.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    assert_audio_error(p, "not a readable audio file")


def test_wav_data_with_wrong_suffix_still_loads(tmp_path):
    p = tmp_path / "actually_wav.flac"
    p.write_bytes(wav_bytes(sine(440, 1, SAMPLE_RATE)))
    assert len(load_audio(p)) == SAMPLE_RATE


def test_directory_named_wav(tmp_path):
    p = tmp_path / "folder.wav"
    p.mkdir()
    assert_audio_error(p, "is a directory")


def test_missing_and_dangling_symlink(tmp_path):
    assert_audio_error(tmp_path / "nowhere.wav", "file not found")
    link = tmp_path / "dangling.wav"
    link.symlink_to(tmp_path / "gone.wav")
    assert_audio_error(link, "file not found")


def test_unreadable_file(tmp_path):
    p = tmp_path / "locked.wav"
    sf.write(p, sine(440, 1, SAMPLE_RATE), SAMPLE_RATE)
    p.chmod(0)
    try:
        if os.access(p, os.R_OK):
            pytest.skip("running as root: permission bits do not stop reads "
                        "(test_permission_denied_message covers the message)")
        assert_audio_error(p, "permission denied")
    finally:
        p.chmod(0o644)


def test_permission_denied_message(tmp_path, monkeypatch):
    # What a non-root user sees; root cannot produce the condition with chmod.
    p = tmp_path / "locked.wav"
    sf.write(p, sine(440, 1, SAMPLE_RATE), SAMPLE_RATE)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda q, mode: False if Path(q) == p else real_access(q, mode))
    assert_audio_error(p, "permission denied")


def test_spaces_and_unicode_path(tmp_path):
    d = tmp_path / "dir with spaces" / "Émotions 日本語"
    d.mkdir(parents=True)
    p = d / "ünïcødé clip ☺.flac"
    x = sine(440, 1, SAMPLE_RATE)
    sf.write(p, x, SAMPLE_RATE)
    np.testing.assert_allclose(load_audio(p), x, atol=1e-4)
    bad = d / "späce bröken.wav"
    bad.write_bytes(b"RIFF garbage")
    assert_audio_error(bad, "not a readable")


def _write_long(path: Path, seconds: int, sr: int) -> None:
    with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16") as f:
        block = sine(440, 60, sr, 0.3)  # 60 s of whole periods: blocks join seamlessly
        for _ in range(seconds // 60):
            f.write(block)


def _stream_peak(path: Path, chunk_seconds: float) -> tuple[int, int, int]:
    tracemalloc.start()
    try:
        n, total = 0, 0
        for start, chunk in iter_audio_chunks(path, chunk_seconds=chunk_seconds):
            assert start == total
            n, total = n + 1, total + len(chunk)
        return n, total, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _check_long(tmp_path, seconds: int) -> None:
    p = tmp_path / "long.wav"
    _write_long(p, seconds, 8000)  # 8 kHz so the streaming resampler is exercised
    n, total, peak = _stream_peak(p, chunk_seconds=30.0)
    assert total == seconds * SAMPLE_RATE and n == seconds // 30
    decoded = seconds * SAMPLE_RATE * 4  # what load_audio would hold as float32
    chunk_bytes = 30 * SAMPLE_RATE * 4
    # a chunk, one read block, the resampler's output and slack; independent of file length
    assert peak < 4 * chunk_bytes, (peak, chunk_bytes)
    assert peak < decoded / 4


def test_long_file_streams_with_bounded_memory(tmp_path):
    _check_long(tmp_path, 10 * 60)


@pytest.mark.slow
def test_two_hour_file_streams_with_bounded_memory(tmp_path):
    _check_long(tmp_path, 2 * 60 * 60)


def _fuzz_one(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    for reader in (load_audio, drain):
        try:
            y = reader(path)
        except EmosteerError as e:
            assert path.name in str(e)
        else:
            assert y.dtype == np.float32 and y.ndim == 1 and np.all(np.isfinite(y))


@FUZZ
@given(data=st.binary(min_size=0, max_size=4096),
       suffix=st.sampled_from([".wav", ".flac", ".mp3", ".ogg", ".m4a"]))
def test_fuzz_random_bytes(tmp_path, data, suffix):
    _fuzz_one(tmp_path / f"fuzz{suffix}", data)


_VALID = {".wav": wav_bytes(sine(440, 0.2, SAMPLE_RATE)),
          ".flac": None}


def _valid(suffix: str) -> bytes:
    if _VALID.get(suffix) is None:
        buf = io.BytesIO()
        sf.write(buf, sine(440, 0.2, SAMPLE_RATE), SAMPLE_RATE, format="FLAC")
        _VALID[suffix] = buf.getvalue()
    return _VALID[suffix]


@FUZZ
@given(suffix=st.sampled_from([".wav", ".flac"]),
       edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 6400)))
def test_fuzz_corrupted_headers(tmp_path, suffix, edits, cut):
    # Random bytes rarely get past the magic number; flipping bytes of a valid file's first
    # 200 bytes exercises the header and frame parsers instead.
    data = bytearray(_valid(suffix))
    for pos, value in edits:
        data[pos % len(data)] = value
    _fuzz_one(tmp_path / f"mutant{suffix}", bytes(data[:cut] if cut is not None else data))
