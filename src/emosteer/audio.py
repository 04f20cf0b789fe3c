"""Audio I/O: a few verb functions over float32 numpy arrays of shape (T,) (mono).

Supported input formats: WAV (PCM 8/16/24/32-bit, float 32/64), FLAC, OGG/Vorbis and MP3 through
libsndfile (MP3 needs libsndfile >= 1.1); anything else libsndfile cannot open (m4a, opus in
odd containers) falls back to librosa/audioread when a decoder for it is installed.
Output: WAV, FLAC and OGG (`save_audio`).

`load_audio` reads a file, downmixes to mono, resamples with a band-limited (soxr) resampler and
validates the signal; every failure is an AudioError that names the file. `iter_audio_chunks`
streams long files (an hour or more) with memory bounded by the chunk size.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from emosteer.artifacts import atomic_write_bytes
from emosteer.errors import AudioError, ConfigError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # every SSL model here (wav2vec2, HuBERT, WavLM, data2vec) is trained at 16 kHz
SSL_HOP = 320  # the CNN front end's total stride: 16000 / 320 = 50 frames per second
SSL_FRAME_RATE = SAMPLE_RATE / SSL_HOP
MIN_SAMPLES = 400  # the CNN front end's receptive field: shorter input yields zero frames
SILENCE_PEAK = 1e-4  # about -80 dBFS: below this peak a file carries no usable speech
CLIP_LEVEL = 0.999  # 16-bit full scale is 32767/32768 = 0.99997; anything this close has clipped
# Steered output peaks at most here: -1 dBFS, the EBU R128 true-peak ceiling, which leaves room
# for the overshoot of resampling and 16-bit rounding so a written file never reads as clipped.
PEAK_CEILING = 10 ** (-1 / 20)
# The limiter's gain follows the peaks over +-10 ms: short enough to leave syllable loudness
# alone, long enough (a full period of a 100 Hz voice) not to distort the waveform.
LIMITER_HALF_WINDOW_S = 0.010
READ_BLOCK_SECONDS = 4.0  # disk read size while streaming: large enough to amortise calls
# Plausible file rates: below 4 kHz there is no speech band left (telephony is 8 kHz); 384 kHz
# is the highest rate audio interfaces record. Outside this a header is corrupt or hostile (a
# 1 Hz header makes resampling to 16 kHz allocate 16000x the file's size).
MIN_FILE_SR, MAX_FILE_SR = 4_000, 384_000
RESAMPLE_QUALITY = "HQ"  # soxr 'HQ': 20-bit precision, -100 dB stopband, ample for 16-bit audio

# Suffixes libsndfile decodes itself; for these a failure means a bad file, so the slow
# librosa/audioread fallback would only repeat the failure.
_NATIVE_SUFFIXES = {".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".w64",
                    ".rf64", ".caf"}
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")  # what corpora scans and the CLI accepts

# soundfile raises LibsndfileError (a RuntimeError) for bad files; its Python-side header
# parsing can also raise these for garbage input.
_DECODE_ERRORS = (RuntimeError, TypeError, ValueError, EOFError, OverflowError, MemoryError)
# What libsndfile says about a file it has no decoder for. check_readable has made sure the file
# exists and is regular, so its "does not exist ... (possibly a pipe?)" only misleads.
_UNKNOWN_FORMAT = ("Format not recognised", "possibly a pipe", "not a regular file")
CLIPPED_LISTED = 5  # the worst clipping files named in a run's summary line; the rest counted


def _native(path: Path) -> bool:
    import soundfile as sf

    suffix = path.suffix.lower()
    return suffix in _NATIVE_SUFFIXES or (suffix == ".mp3" and "MP3" in sf.available_formats())


def _open_error(path: Path, e: BaseException) -> AudioError:
    text = str(e).strip() or type(e).__name__
    if isinstance(e, PermissionError) or "Permission denied" in text:
        return AudioError(f"{path}: permission denied")
    if any(s in text for s in _UNKNOWN_FORMAT):
        return AudioError(f"{path}: not a readable audio file (not an audio file, or a format "
                          "this build cannot decode)")
    return AudioError(f"{path}: not a readable audio file ({text})")


def _too_long(path: Path, frames: int, sr: int, max_seconds: float) -> AudioError:
    return AudioError(f"{path}: {frames / sr:.1f} s is over the {max_seconds:g} s limit")


def _read(path: Path, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode the file as float32 (T, C). With `max_seconds`, a header announcing more is
    refused before anything is decoded, and at most that much (plus one sample, to tell an
    over-long file whose header lies) is decoded: memory stays bounded by the limit, not by
    what a small, highly compressed file expands to."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            sr, limit = int(f.samplerate), -1
            if max_seconds is not None:
                _check_rate(path, sr)  # the limit in samples is only as sane as the rate
                if f.frames > max_seconds * sr:
                    raise _too_long(path, f.frames, sr, max_seconds)
                limit = int(max_seconds * sr) + 1
            data = f.read(limit, dtype="float32", always_2d=True)
    except _DECODE_ERRORS as e:
        if _native(path):
            raise _open_error(path, e) from e
        sf_error = e
    else:
        if max_seconds is not None and data.shape[0] > max_seconds * sr:
            raise _too_long(path, data.shape[0], sr, max_seconds)
        return data, sr
    try:
        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # audioread streams: `duration` stops decoding there (one second more, to tell an
            # over-long file), so memory is bounded here too.
            y, sr = librosa.load(str(path), sr=None, mono=False,
                                 duration=None if max_seconds is None else max_seconds + 1.0)
    except Exception as e:  # noqa: BLE001 - audioread backends raise anything; all mean "not audio"
        raise _open_error(path, sf_error) from e
    data = np.atleast_2d(y).T.astype(np.float32)
    if max_seconds is not None and data.shape[0] > max_seconds * sr:
        raise _too_long(path, data.shape[0], int(sr), max_seconds)
    return data, int(sr)


def check_readable(path: Path) -> None:
    """AudioError unless `path` is an existing, readable, non-empty regular file (its contents
    are not looked at): cheap enough to run before anything slow, such as loading models."""
    try:
        if not path.exists():
            raise AudioError(f"{path}: file not found")
        if path.is_dir():
            raise AudioError(f"{path}: is a directory, not an audio file")
        if not path.is_file():
            raise AudioError(f"{path}: not a regular file")
        if not os.access(path, os.R_OK):
            raise AudioError(f"{path}: permission denied")
        if path.stat().st_size == 0:
            raise AudioError(f"{path}: empty file (0 bytes)")
    except OSError as e:  # name too long, symlink loop, vanished between calls
        raise AudioError(f"{path}: cannot access ({e.strerror or e})") from e


def _check_rate(path: Path, file_sr: int) -> None:
    if not MIN_FILE_SR <= file_sr <= MAX_FILE_SR:
        raise AudioError(f"{path}: implausible sample rate {file_sr} Hz (expected "
                         f"{MIN_FILE_SR}-{MAX_FILE_SR}); the header is probably corrupt")


def _mono(data: np.ndarray) -> np.ndarray:
    # Mean, not sum: keeps the level of a multichannel file comparable to its mono version.
    return data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling (soxr, 'HQ'). Works on (T,) or (T, C)."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ConfigError(f"resample: sample rates must be positive (got {orig_sr} -> {target_sr})")
    if orig_sr == target_sr:
        return wav.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(wav, orig_sr, target_sr, quality=RESAMPLE_QUALITY).astype(np.float32)


def min_samples_at(sr: int) -> int:
    """MIN_SAMPLES (defined at 16 kHz) expressed at sample rate `sr`."""
    return int(np.ceil(MIN_SAMPLES * sr / SAMPLE_RATE))


def _check_level(source: object, peak: float) -> None:
    if peak < SILENCE_PEAK:
        raise AudioError(f"{source}: all silent (peak {peak:.2e}, below {SILENCE_PEAK:g})")
    if peak >= CLIP_LEVEL:
        # The extras let a ClippingSummary (a batch command's) hold this back and count it.
        log.warning("%s: audio clips (peak %.3f); continuing", source, peak,
                    extra={"clip_source": str(source), "clip_peak": peak})


class ClippingSummary(logging.Filter):
    """Holds back the per-file "audio clips" warnings while installed on this module's logger
    (by `clipping_summary`), keeping each file's worst peak for one summary line: a corpus
    with hundreds of clipped clips otherwise buries every other message."""

    def __init__(self) -> None:
        super().__init__()
        self.peaks: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        source = getattr(record, "clip_source", None)
        if source is None:
            return True
        self.peaks[source] = max(self.peaks.get(source, 0.0), float(record.clip_peak))
        return False

    def line(self) -> str:
        worst = sorted(self.peaks.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = ", ".join(f"{s} (peak {p:.3f})" for s, p in worst[:CLIPPED_LISTED])
        more = f" and {len(worst) - CLIPPED_LISTED} more" if len(worst) > CLIPPED_LISTED else ""
        return (f"{len(worst)} file(s) clip (peak >= {CLIP_LEVEL}), used as they are; worst: "
                f"{shown}{more}")


@contextlib.contextmanager
def clipping_summary() -> Iterator[ClippingSummary]:
    """Around a batch command's loop (also as a decorator): one summary line for all clipping
    files at the end instead of a warning per file. Nested uses share the outermost one."""
    active = next((f for f in log.filters if isinstance(f, ClippingSummary)), None)
    if active is not None:
        yield active
        return
    summary = ClippingSummary()
    log.addFilter(summary)
    try:
        yield summary
    finally:
        log.removeFilter(summary)
        if summary.peaks:
            log.warning("%s", summary.line())


def validate_audio(wav: np.ndarray, source: str | os.PathLike = "<array>",
                   min_samples: int = MIN_SAMPLES) -> np.ndarray:
    """Raise AudioError for empty, too short, non-finite or all-silent audio; warn on clipping."""
    if wav.size == 0:
        raise AudioError(f"{source}: contains no samples")
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"{source}: contains NaN or Inf samples")
    if wav.shape[0] < min_samples:
        raise AudioError(
            f"{source}: too short ({wav.shape[0]} samples; at least {min_samples} are needed "
            "for one model frame)"
        )
    _check_level(source, float(np.max(np.abs(wav))))
    return wav


def load_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE, validate: bool = True,
               max_seconds: float | None = None) -> np.ndarray:
    """Read an audio file as mono float32 at `sr` Hz, shape (T,).

    Raises AudioError (naming the file) when it is missing, unreadable, not audio, empty, or
    (with `validate`) shorter than one model frame, all silent or non-finite. With
    `max_seconds`, a longer file is refused from its header, before it is decoded."""
    path = Path(path)
    check_readable(path)
    data, file_sr = _read(path, max_seconds)
    _check_rate(path, file_sr)
    if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioError(f"{path}: contains no samples")
    # Checked before resampling: the resampler would smear one NaN over its whole filter span.
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{path}: contains NaN or Inf samples")
    wav = resample(_mono(data), file_sr, sr)
    if validate:
        validate_audio(wav, path, min_samples=min_samples_at(sr))
    return np.ascontiguousarray(wav, dtype=np.float32)


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(sample_rate, frames, channels) without decoding the whole file."""
    import soundfile as sf

    path = Path(path)
    check_readable(path)
    try:
        info = sf.info(str(path))
    except _DECODE_ERRORS as e:
        raise _open_error(path, e) from e
    return int(info.samplerate), int(info.frames), int(info.channels)


def _iter_blocks(path: Path) -> Iterator[tuple[np.ndarray, int]]:
    """Yield (mono block, file_sr), reading sequentially so memory stays bounded."""
    import soundfile as sf

    try:
        f = sf.SoundFile(str(path))
    except _DECODE_ERRORS as e:
        if _native(path):
            raise _open_error(path, e) from e
        # Formats only audioread decodes cannot be streamed: decode once, then slice.
        data, file_sr = _read(path)
        step = max(1, int(READ_BLOCK_SECONDS * file_sr))
        for i in range(0, data.shape[0], step):
            yield _mono(data[i:i + step]), file_sr
        return
    with f:
        file_sr = int(f.samplerate)
        step = max(1, int(READ_BLOCK_SECONDS * file_sr))
        while True:
            try:
                data = f.read(step, dtype="float32", always_2d=True)
            except _DECODE_ERRORS as e:
                raise AudioError(f"{path}: decoding failed near {f.tell() / file_sr:.1f} s "
                                 f"({e})") from e
            if data.shape[0] == 0:
                return
            yield _mono(data), file_sr


def iter_audio_chunks(path: str | os.PathLike, chunk_seconds: float = 30.0, sr: int = SAMPLE_RATE,
                      overlap_seconds: float = 0.0,
                      validate: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start_sample_at_sr, mono chunk at `sr`) of a long file with bounded memory.

    Chunk k starts at k * chunk_seconds and holds chunk_seconds + overlap_seconds of audio (the
    last one is shorter). The file is read block by block through one streaming resampler, so
    the chunks are slices of the same signal `load_audio` returns: no seams at chunk edges.
    Memory holds about one chunk plus one read block. With `validate`, NaN/Inf raise as soon as
    they are read; an all-silent file raises after its last chunk (silence is only known then).
    """
    path = Path(path)
    chunk = int(round(chunk_seconds * sr))
    overlap = int(round(overlap_seconds * sr))
    if chunk <= 0 or overlap < 0:
        raise ConfigError(f"{path}: chunk_seconds must be > 0 and overlap_seconds >= 0 "
                          f"(got {chunk_seconds}, {overlap_seconds})")
    check_readable(path)
    import soxr

    stream = None
    file_sr = 0
    buf = np.empty(0, dtype=np.float32)
    start, peak, read = 0, 0.0, 0
    blocks = _iter_blocks(path)
    done = False
    while not done:
        block = next(blocks, None)
        done = block is None
        if done:
            mono = np.empty(0, dtype=np.float32)
        else:
            mono, file_sr = block
            if read == 0:
                _check_rate(path, file_sr)
            if read == 0 and file_sr != sr:
                stream = soxr.ResampleStream(file_sr, sr, 1, dtype="float32",
                                             quality=RESAMPLE_QUALITY)
        if not np.all(np.isfinite(mono)):
            bad = read + int(np.argmin(np.isfinite(mono)))
            raise AudioError(f"{path}: contains NaN or Inf samples (first at {bad / file_sr:.2f} s)")
        read += mono.shape[0]
        if mono.size:
            peak = max(peak, float(np.max(np.abs(mono))))
        out = mono if stream is None else stream.resample_chunk(mono, last=done)
        buf = np.concatenate([buf, out]) if buf.size else out
        while buf.shape[0] >= chunk + overlap:
            yield start, np.array(buf[:chunk + overlap])
            buf = buf[chunk:]
            start += chunk
    if read == 0:
        raise AudioError(f"{path}: contains no samples")
    if validate and read < min_samples_at(file_sr):
        raise AudioError(f"{path}: too short ({read} samples at {file_sr} Hz; at least "
                         f"{min_samples_at(file_sr)} are needed for one model frame)")
    # The tail is new audio unless the previous chunk's overlap already covered all of it.
    if buf.shape[0] > overlap or (start == 0 and buf.size):
        yield start, np.array(buf)
    if validate:
        _check_level(path, peak)


def save_audio(path: str | os.PathLike, wav: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    """Write mono float audio atomically (wav, flac or ogg by suffix); samples are clipped to ±1."""
    import soundfile as sf

    path = Path(path)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"{path}: unsupported output format (use .wav, .flac or .ogg)")
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise AudioError(f"{path}: expected mono audio of shape (T,), got {wav.shape}")
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"{path}: refusing to write NaN or Inf samples")
    if fmt == "OGG":
        subtype = "VORBIS"
    buf = io.BytesIO()
    sf.write(buf, np.clip(wav, -1.0, 1.0), int(sr), format=fmt, subtype=subtype)
    return atomic_write_bytes(path, buf.getvalue())


def rms_db(wav: np.ndarray) -> float:
    """RMS level in dBFS."""
    return float(20 * np.log10(np.sqrt(np.mean(np.square(wav, dtype=np.float64))) + 1e-12))


def limit_peak(wav: np.ndarray, sr: int, ceiling: float = PEAK_CEILING) -> np.ndarray:
    """A look-ahead peak limiter: `wav` with every |sample| <= `ceiling`, touching only the
    +-LIMITER_HALF_WINDOW_S around the peaks that exceed it (the rest keeps its level, unlike
    scaling the whole signal down).

    The gain is the moving average, over a window of half-width h, of the minimum over the same
    half-width of the gain each sample needs; every term of that average is at most the need
    of the centre sample, so the output never exceeds the ceiling, and the gain is smooth."""
    wav = np.asarray(wav, dtype=np.float32)
    mag = np.abs(wav)
    if not mag.size or float(mag.max()) <= ceiling:
        return wav
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    need = np.minimum(1.0, ceiling / np.maximum(mag, np.finfo(np.float32).tiny))
    width = 2 * max(1, int(round(LIMITER_HALF_WINDOW_S * sr))) + 1
    gain = uniform_filter1d(minimum_filter1d(need, width, mode="nearest"), width, mode="nearest")
    # float rounding in the running mean may overshoot by an ulp; the clip only catches that
    return np.clip(wav * gain, -ceiling, ceiling).astype(np.float32)


def match_loudness(wav: np.ndarray, reference: np.ndarray, sr: int) -> np.ndarray:
    """Scale `wav` (at `sr`) to the RMS level of `reference`, peak-limited to PEAK_CEILING."""
    gain = 10 ** ((rms_db(reference) - rms_db(wav)) / 20)
    return limit_peak(wav * gain, sr)
