"""`emosteer app`: the steering tool behind an interactive page (the UI lives in app_ui.py).

This module holds everything the page calls and nothing Gradio-specific, so it is tested
without a browser:

- which axes exist: a fixed table name -> directories, built once from the command line
  (`--run DIR`, `--axis NAME=DIR`). The page only ever sends a *name*; a name that is not in
  the table is refused, so no server path is ever taken from user input;
- upload validation: size cap (checked on disk before decoding), real decoding through
  emosteer.audio, duration cap, and the file must lie in the upload folder;
- one Steerer per axis, built lazily on first use and cached on the SteeringApp object (models
  load once; the lock keeps two first requests from loading the same models twice);
- an axis built from two reference clips exactly as `emosteer tts` builds one
  (emosteer.tts.references: mean-pooled layer embeddings through compute_axis, plus a ProsodyDelta
  from the clips' acoustic correlates), run on the encoder, mapper and vocoder of a saved axis.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emosteer import __version__
from emosteer.audio import SAMPLE_RATE, audio_info, load_audio, resample
from emosteer.bank.bank import EmotionBank
from emosteer.errors import AudioError, ConfigError, EmosteerError
from emosteer.steering.steer import MODES, SteerConfig, Steerer
from emosteer.tts.backends import load_voice, synthesize_long
from emosteer.tts.references import (
    MIN_REF_SECONDS,
    reference_axis,
    reference_prosody,
    steering_delta,
)

log = logging.getLogger(__name__)

# Names become dropdown labels and nothing else; the pattern still rules out separators and
# leading dots so that a name can never read as a path, even in a log line.
AXIS_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_DELTA = 1.0  # the slider's range; larger pushes leave the region the mapper was trained on
MAX_TTS_CHARS = 1000  # about a minute of speech at Piper's rate, the same as the duration cap
BYTES_PER_MB = 1024 * 1024
DECODED_BYTES_PER_SAMPLE = 4  # float32, what the decoder expands every channel's samples to


@dataclass(frozen=True)
class AppConfig:
    """Limits and runtime settings of one app server (saved nowhere: nothing is written)."""

    max_upload_mb: float = 20.0  # a minute of 16-bit 48 kHz stereo WAV is about 11 MB
    max_seconds: float = 60.0  # bounds one request's compute; long inputs are steered in chunks
    # Bounds what an upload may expand to when decoded (all channels, float32): a few MB of
    # FLAC silence can announce hours of 6-channel 96 kHz audio, i.e. gigabytes. 256 MB holds
    # a minute of 8-channel 96 kHz audio.
    max_decoded_mb: float = 256.0
    concurrency: int = 2  # requests steered at once; the rest wait in the queue
    queue_size: int = 32  # beyond this a request is turned away instead of waiting
    vocoder: str = "auto"
    device: str = "cpu"
    bf16: bool = False
    host: str = "127.0.0.1"
    port: int | None = None
    emosteer_version: str = __version__

    def __post_init__(self) -> None:
        if not (self.max_upload_mb > 0 and self.max_seconds > 0 and self.max_decoded_mb > 0):
            raise ConfigError("--max-upload-mb, --max-seconds and max_decoded_mb must be positive")
        if self.concurrency < 1 or self.queue_size < 1:
            raise ConfigError("concurrency and queue size must be at least 1")


@dataclass(frozen=True)
class AxisEntry:
    name: str
    axis_dir: Path
    mapper_dir: Path | None  # None: only the prosody path is available
    label: str = ""  # what a page shows ("BANK: calm → sad" for a bank's emotion); "": name


@dataclass(frozen=True)
class ReferenceAxis:
    """An axis built in the page from two clips, held in that user's session state."""

    base: str  # the saved axis whose encoder, mapper and vocoder it runs on
    axis: object  # EmotionAxis
    prosody: object | None  # ProsodyDelta, or None when the clips have no voiced speech


def check_name(name: str, what: str = "axis name") -> str:
    if not isinstance(name, str) or not AXIS_NAME_RE.match(name) or ".." in name:
        raise ConfigError(f"{what} {name!r}: expected letters, digits, '_', '-' or '.' "
                          "(no path separators)")
    return name


def parse_axis_specs(runs: list[str | Path], specs: list[str],
                     banks: list[str] = ()) -> dict[str, AxisEntry]:
    """`--run DIR` (name: the directory's name; axis DIR/axis, mapper DIR/mapper),
    `--axis NAME=DIR` (mapper: DIR/../mapper if present) and `--bank NAME=DIR` (one entry
    NAME.<emotion> per emotion of the bank, mapper DIR/../mapper) -> name -> AxisEntry."""
    table: dict[str, AxisEntry] = {}

    def add(name: str, axis_dir: Path, mapper_dir: Path, label: str = "") -> None:
        check_name(name)
        if name in table:
            raise ConfigError(f"axis name {name!r} is given twice")
        if not (axis_dir / "axis.json").is_file():
            raise ConfigError(f"{axis_dir}: not an axis directory (no axis.json)")
        table[name] = AxisEntry(name, axis_dir.resolve(),
                                mapper_dir.resolve() if (mapper_dir / "mapper.json").is_file()
                                else None, label)

    for run in runs:
        run = Path(run)
        add(run.resolve().name, run / "axis", run / "mapper")
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not path:
            raise ConfigError(f"--axis {spec!r}: expected NAME=DIR")
        add(name, Path(path), Path(path).parent / "mapper")
    for spec in banks:
        name, sep, path = spec.partition("=")
        if not sep or not path:
            raise ConfigError(f"--bank {spec!r}: expected NAME=DIR")
        check_name(name, "bank name")
        bank = EmotionBank.load(path)
        for emotion in bank.emotions:
            add(f"{name}.{emotion}", Path(path) / emotion, Path(path).parent / "mapper",
                f"{name}: {bank.reference} → {emotion}")
    if not table:
        raise ConfigError("no axes: give --run DIR, --axis NAME=DIR and/or --bank NAME=DIR")
    return table


def validate_upload(path: str | Path | None, cfg: AppConfig, roots: tuple[Path, ...] = (),
                    label: str = "upload") -> np.ndarray:
    """Decode an uploaded clip to 16 kHz mono, or raise AudioError with a message fit to show
    the user (it names the file, never the server's folders). `roots`: the only folders an
    upload may live in (Gradio's upload cache); empty means no check (tests, library use)."""
    if path is None or str(path) == "":
        raise AudioError(f"{label}: no audio given (upload or record a clip)")
    path = Path(path)
    shown = path.name
    resolved = path.resolve()
    if roots and not any(resolved.is_relative_to(r.resolve()) for r in roots):
        raise AudioError(f"{label} {shown}: not an uploaded file")
    try:
        size = resolved.stat().st_size
    except OSError as e:
        raise AudioError(f"{label} {shown}: cannot be read ({e.strerror or e})") from e
    if size > cfg.max_upload_mb * BYTES_PER_MB:
        raise AudioError(f"{label} {shown}: {size / BYTES_PER_MB:.1f} MB is over the "
                         f"{cfg.max_upload_mb:g} MB limit")
    try:
        # The header first: duration and decoded size are refused before anything is decoded.
        # A format libsndfile cannot parse has no header here; load_audio's max_seconds still
        # stops its decoder at the limit.
        try:
            file_sr, frames, channels = audio_info(resolved)
        except AudioError:
            file_sr = 0
        if file_sr > 0:
            if frames / file_sr > cfg.max_seconds:
                raise AudioError(f"{label} {shown}: {frames / file_sr:.1f} s is over the "
                                 f"{cfg.max_seconds:g} s limit")
            decoded = frames * channels * DECODED_BYTES_PER_SAMPLE
            if decoded > cfg.max_decoded_mb * BYTES_PER_MB:
                raise AudioError(f"{label} {shown}: decodes to {decoded / BYTES_PER_MB:.0f} MB "
                                 f"({channels} channels at {file_sr} Hz), over the "
                                 f"{cfg.max_decoded_mb:g} MB limit")
        wav = load_audio(resolved, SAMPLE_RATE, max_seconds=cfg.max_seconds)
    except AudioError as e:
        raise AudioError(str(e).replace(str(resolved), shown).replace(str(path), shown)) from e
    seconds = wav.shape[0] / SAMPLE_RATE
    if seconds > cfg.max_seconds:
        raise AudioError(f"{label} {shown}: {seconds:.1f} s is over the {cfg.max_seconds:g} s "
                         "limit")
    return wav


def check_delta(delta: float) -> float:
    try:
        delta = float(delta)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"delta {delta!r} is not a number") from e
    if not math.isfinite(delta) or abs(delta) > MAX_DELTA:
        raise ConfigError(f"delta {delta}: must lie in [-{MAX_DELTA:g}, {MAX_DELTA:g}]")
    return delta


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    return mode


@dataclass
class SteeringApp:
    """The app's server-side state: the axis table, limits and the model caches."""

    axes: dict[str, AxisEntry]
    config: AppConfig = field(default_factory=AppConfig)
    upload_roots: tuple[Path, ...] = ()
    _steerers: dict[str, Steerer] = field(default_factory=dict, repr=False)
    _voice: object = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def names(self) -> list[str]:
        return list(self.axes)

    def entry(self, name: str) -> AxisEntry:
        if name not in self.axes:  # the only way from a request to a directory
            raise ConfigError(f"unknown axis {name!r}; choose one of {', '.join(self.axes)}")
        return self.axes[name]

    def steerer(self, name: str) -> Steerer:
        """The cached Steerer of a saved axis (loaded on first use, once)."""
        entry = self.entry(name)
        with self._lock:
            if name not in self._steerers:
                log.info("loading axis %s from %s", name, entry.axis_dir)
                self._steerers[name] = Steerer.from_artifacts(
                    axis=entry.axis_dir, mapper=entry.mapper_dir, vocoder=self.config.vocoder,
                    prosody=None, mode="both" if entry.mapper_dir else "prosody",
                    device=self.config.device, bf16=self.config.bf16)
            return self._steerers[name]

    def _resolve(self, name: str, reference: ReferenceAxis | None) -> Steerer:
        if reference is None:
            return self.steerer(name)
        return self.steerer(reference.base).with_axis(reference.axis, reference.prosody)

    def load_clip(self, path, label: str = "upload") -> np.ndarray:
        return validate_upload(path, self.config, self.upload_roots, label)

    def steer(self, wav: np.ndarray, name: str, delta: float, mode: str,
              reference: ReferenceAxis | None = None) -> tuple[np.ndarray, int, str]:
        """Steer a validated 16 kHz clip; returns (audio, sample rate, projection readout)."""
        delta, mode = check_delta(delta), check_mode(mode)
        steerer = self._resolve(name, reference)
        if mode != "prosody" and steerer.mapper is None:
            raise ConfigError(f"axis {name!r} has no mapper: only the prosody mode is available")
        y, sr = steerer.steer(wav, delta, SteerConfig(mode=mode))
        return y, sr, projection_readout(steerer, wav, y, sr)

    def build_reference_axis(self, base: str, source_clip, target_clip) -> ReferenceAxis:
        """An axis from two uploads, source (e.g. calm) and target (e.g. angry), built the way
        `emosteer tts` builds its reference axis (emosteer.tts.references)."""
        steerer = self.steerer(base)
        if steerer.encoder is None:
            raise ConfigError(f"axis {base!r} has no mapper/encoder to embed reference clips")
        labels = ("source reference", "target reference")
        wavs = [self.load_clip(source_clip, labels[0]), self.load_clip(target_clip, labels[1])]
        for label, w in zip(labels, wavs, strict=True):
            if w.shape[0] < MIN_REF_SECONDS * SAMPLE_RATE:
                raise AudioError(f"{label}: {w.shape[0] / SAMPLE_RATE:.2f} s is too short "
                                 f"(at least {MIN_REF_SECONDS} s)")
        if hashlib.sha256(wavs[0].tobytes()).digest() == hashlib.sha256(wavs[1].tobytes()).digest():
            raise ConfigError("the two reference clips are the same audio")
        # calibration: delta = 1 moves a clip by the full source->target distance.
        axis = reference_axis(steerer.encoder, steerer.axis.config.layer, wavs[0], wavs[1], labels)
        try:
            prosody = reference_prosody(wavs[0], wavs[1], labels)
        except ConfigError as e:  # no voiced speech in a reference: latent steering still works
            log.warning("reference prosody delta unavailable: %s", e)
            prosody = None
        return ReferenceAxis(base, axis, prosody)

    def synthesize(self, text: str, name: str, alpha: float, mode: str,
                   reference: ReferenceAxis | None = None) -> tuple[np.ndarray, int, str]:
        """Piper TTS of `text`, then steered along the chosen axis with `emosteer tts`'s alpha
        rule (emosteer.tts.references.steering_delta: the synthesis is taken as neutral, so alpha = 1
        is half the axis's source->target shift)."""
        text = (text or "").strip()
        if not text:
            raise ConfigError("text: type something to say")
        if len(text) > MAX_TTS_CHARS:
            raise ConfigError(f"text: {len(text)} characters is over the {MAX_TTS_CHARS} limit")
        check_delta(alpha)
        with self._lock:
            if self._voice is None:
                self._voice = load_voice(None, "piper")
        wav, _ = synthesize_long(text, voice=self._voice, sr_out=SAMPLE_RATE, progress=False)
        return self.steer(wav, name, steering_delta(alpha), mode, reference)


def mean_projection(steerer: Steerer, wav: np.ndarray, sr: int) -> float:
    """Mean projection onto the axis of a clip's frames (re-encoded at 16 kHz)."""
    return float(np.mean(steerer.axis.project(steerer.frames(resample(wav, sr, SAMPLE_RATE)))))


def projection_readout(steerer: Steerer, wav_in: np.ndarray, wav_out: np.ndarray,
                       sr_out: int) -> str:
    """Input and output projections; the shift is also given in calibration units (delta)."""
    if steerer.encoder is None or steerer.axis is None:
        return "projection: not available (this axis has no encoder/mapper)"
    a = mean_projection(steerer, wav_in, SAMPLE_RATE)
    b = mean_projection(steerer, wav_out, sr_out)
    cal = steerer.axis.calibration
    return (f"axis projection: input {a:+.3f}, output {b:+.3f} "
            f"(shift {b - a:+.3f} = {(b - a) / cal:+.2f} x calibration {cal:.3f})")


def user_message(e: Exception) -> str:
    """What the page shows for an error: our own messages verbatim, anything else generic."""
    if isinstance(e, EmosteerError):
        return str(e)
    return f"internal error ({type(e).__name__}); see the server log"


__all__ = ["AppConfig", "AxisEntry", "ReferenceAxis", "SteeringApp", "check_delta", "check_mode",
           "check_name", "parse_axis_specs", "validate_upload"]
