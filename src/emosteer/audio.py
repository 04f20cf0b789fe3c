"""Audio I/O: a few verb functions over float32 numpy arrays of shape (T,) (mono).

`load_audio` reads wav/flac/ogg/mp3, downmixes to mono, resamples with a proper (soxr) resampler
and validates the signal; every failure is an AudioError that names the file.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from emosteer.artifacts import atomic_write_bytes
from emosteer.errors import AudioError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # every SSL model here (wav2vec2, HuBERT, WavLM, data2vec) is trained at 16 kHz
SSL_HOP = 320  # the CNN front end's total stride: 16000 / 320 = 50 frames per second
SSL_FRAME_RATE = SAMPLE_RATE / SSL_HOP
MIN_SAMPLES = 400  # the CNN front end's receptive field: shorter input yields zero frames
SILENCE_PEAK = 1e-4  # about -80 dBFS: below this peak a file carries no usable speech
CLIP_LEVEL = 0.999


def _read(path: Path, start: int = 0, frames: int = -1) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
        return data, int(sr)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        sf_error = e
    # Some containers (older mp3, odd ogg) are beyond libsndfile: fall back to librosa/audioread.
    try:
        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y, sr = librosa.load(str(path), sr=None, mono=False)
    except Exception as e:  # noqa: BLE001 - any decoder failure means "not audio" to the user
        raise AudioError(f"{path}: not a readable audio file ({sf_error})") from e
    y = np.atleast_2d(y).T.astype(np.float32)
    return y, int(sr)


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: permission denied")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling (soxr, 'HQ'). Works on (T,) or (T, C)."""
    if orig_sr == target_sr:
        return wav.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(wav, orig_sr, target_sr, quality="HQ").astype(np.float32)


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
    peak = float(np.max(np.abs(wav)))
    if peak < SILENCE_PEAK:
        raise AudioError(f"{source}: all silent (peak {peak:.2e})")
    if peak >= CLIP_LEVEL:
        log.warning("%s: audio clips (peak %.3f); continuing", source, peak)
    return wav


def load_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE, validate: bool = True) -> np.ndarray:
    """Read an audio file as mono float32 at `sr` Hz, shape (T,)."""
    path = Path(path)
    _check_path(path)
    data, file_sr = _read(path)
    if data.ndim != 2 or data.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{path}: contains NaN or Inf samples")
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    wav = resample(wav, file_sr, sr)
    if validate:
        validate_audio(wav, path, min_samples=int(np.ceil(MIN_SAMPLES * sr / SAMPLE_RATE)))
    return np.ascontiguousarray(wav, dtype=np.float32)


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(sample_rate, frames, channels) without decoding the whole file."""
    import soundfile as sf

    path = Path(path)
    _check_path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"{path}: not a readable audio file ({e})") from e
    return int(info.samplerate), int(info.frames), int(info.channels)


def iter_audio_chunks(path: str | os.PathLike, chunk_seconds: float = 30.0, sr: int = SAMPLE_RATE,
                      overlap_seconds: float = 0.0) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start_sample_at_sr, mono chunk) of a long file with bounded memory.

    Chunks are read from disk block by block; each is resampled independently, which is
    exact enough for feature extraction (the resampler's edge effect spans a few ms)."""
    path = Path(path)
    file_sr, n_frames, _ = audio_info(path)
    step = int(chunk_seconds * file_sr)
    ov = int(overlap_seconds * file_sr)
    if step <= 0:
        raise AudioError(f"{path}: chunk_seconds must be positive")
    pos = 0
    while pos < n_frames:
        data, _ = _read(path, start=pos, frames=min(step + ov, n_frames - pos))
        if not np.all(np.isfinite(data)):
            raise AudioError(f"{path}: contains NaN or Inf samples")
        wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        yield int(round(pos * sr / file_sr)), resample(wav, file_sr, sr)
        pos += step


def save_audio(path: str | os.PathLike, wav: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    """Write mono float audio atomically (wav or flac by suffix)."""
    import soundfile as sf

    path = Path(path)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"{path}: unsupported output format (use .wav, .flac or .ogg)")
    if fmt == "OGG":
        subtype = "VORBIS"
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0), sr, format=fmt,
             subtype=subtype)
    return atomic_write_bytes(path, buf.getvalue())


def rms_db(wav: np.ndarray) -> float:
    """RMS level in dBFS."""
    return float(20 * np.log10(np.sqrt(np.mean(np.square(wav, dtype=np.float64))) + 1e-12))


def match_loudness(wav: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Scale `wav` to the RMS level of `reference` (limited so it does not clip)."""
    gain = 10 ** ((rms_db(reference) - rms_db(wav)) / 20)
    out = wav * gain
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > CLIP_LEVEL:
        out = out * (CLIP_LEVEL / peak)
    return out.astype(np.float32)
