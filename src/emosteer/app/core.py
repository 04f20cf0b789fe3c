"""`emosteer app`: the steering tool behind an interactive page (the UI lives in ui.py).

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
  from the clips' acoustic correlates), run on the encoder, mapper and vocoder of a saved axis;
- what the page says about an axis (its label: emotions, layer, encoder; which slider end is
  which), a mode, and the decoder and vocoder in use;
- the offline judges' numbers for every output: DNSMOS when installed, and P(target) from a
  trained emotion judge (--emotion-judge DIR, or one saved beside the axis).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from emosteer import __version__
from emosteer.audio import SAMPLE_RATE, audio_info, load_audio, resample
from emosteer.axes import AxisConfig, EmotionAxis
from emosteer.bank.bank import EmotionBank
from emosteer.embeddings.encoders import EncoderIdentity
from emosteer.errors import AudioError, ConfigError, EmosteerError
from emosteer.evaluation.emotion_judge import CONFIG_NAME as JUDGE_CONFIG
from emosteer.evaluation.emotion_judge import EmotionJudge
from emosteer.evaluation.panel import make_judges
from emosteer.steering.steer import MODES, SteerConfig, Steerer
from emosteer.steering.steer import check_delta as check_steering_delta
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
# The latent decoder the page always uses: only the change the push makes is vocoded, so the
# mapper's reconstruction error cancels and delta 0 is copy synthesis (see steering.steer).
DECODE = "differential"
# The judges score at most this much of an output: DNSMOS averages 9 s windows 1 s apart, so a
# minute-long output would cost ~50 windows; the first seconds answer "did it work" as well.
JUDGE_SECONDS = 10.0
# Where an emotion judge saved beside an axis is looked for, relative to the axis directory:
# in it, beside it (a run or bank directory), and where a run's evaluate stage saves one.
JUDGE_DIRS = ("emotion_judge", "../emotion_judge", "../evaluate/emotion_judge")
NO_EMOTION_JUDGE = "P(target): no emotion judge configured (--emotion-judge DIR)"
MODE_HELP = {
    "latent": "latent: pushes the SSL frames along the axis and vocodes only the change the push "
              "makes (differential decoding), so delta 0 is copy synthesis",
    "prosody": "prosody: WORLD resynthesis with the axis's F0 (level and range), vocal-effort "
               "and speaking-rate change; no vocoder",
    "both": "both: the prosody change first, then the latent push on the prosody-shifted audio",
}
# How a slider end reads ("-1 = calmer"); an emotion not listed reads "more like <emotion>".
COMPARATIVES = {"calm": "calmer", "angry": "angrier", "happy": "happier", "sad": "sadder",
                "neutral": "more neutral", "fear": "more fearful", "fearful": "more fearful",
                "surprise": "more surprised", "surprised": "more surprised",
                "disgust": "more disgusted", "disgusted": "more disgusted"}


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
    emotion_judge: Path | None = None  # a saved EmotionJudge directory for P(target)
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
    # What a page shows: "NAME: calm → angry · layer 5 · wav2vec2-base (random-init)" (NAME is
    # the bank's name for a bank's emotion); "": the name.
    label: str = ""
    source: str = ""  # the axis's emotions, for the slider's ends
    target: str = ""
    emotion_judge: Path | None = None  # a trained judge found beside the axis (JUDGE_DIRS)

    @property
    def shown(self) -> str:
        return self.label or self.name


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


def short_name(name: str) -> str:
    """The last component of a path or hub id: what a page may show of a server-side name."""
    return re.split(r"[/\\]", str(name or "").rstrip("/\\"))[-1]


def encoder_label(identity: EncoderIdentity) -> str:
    """"wav2vec2-base (random-init)": the checkpoint's last path component (a hub id's name, a
    local directory's name: never the server's full path) and how its weights were made."""
    short = short_name(identity.model) or "unknown encoder"
    if identity.random_init is None:  # a 0.1.0 axis recorded only the model's name
        return f"{short} (init not recorded)"
    return f"{short} (random-init)" if identity.random_init else short


def axis_label(prefix: str, config: AxisConfig) -> str:
    """"demo-out: calm → angry · layer 5 · wav2vec2-base (random-init)": what a dropdown shows."""
    return (f"{prefix}: {config.source} → {config.target} · layer {config.layer} · "
            f"{encoder_label(config.encoder)}")


def find_emotion_judge(axis_dir: Path) -> Path | None:
    """The first trained emotion judge saved beside an axis (JUDGE_DIRS), or None."""
    for rel in JUDGE_DIRS:
        d = (axis_dir / rel).resolve()
        if (d / JUDGE_CONFIG).is_file():
            return d
    return None


def parse_axis_specs(runs: list[str | Path], specs: list[str],
                     banks: list[str] = ()) -> dict[str, AxisEntry]:
    """`--run DIR` (name: the directory's name; axis DIR/axis, mapper DIR/mapper),
    `--axis NAME=DIR` (mapper: DIR/../mapper if present) and `--bank NAME=DIR` (one entry
    NAME.<emotion> per emotion of the bank, mapper DIR/../mapper) -> name -> AxisEntry.
    Every axis is loaded here, so a broken one stops the server before it serves, and its
    config gives the entry's label."""
    table: dict[str, AxisEntry] = {}

    def add(name: str, axis_dir: Path, mapper_dir: Path, prefix: str = "",
            config: AxisConfig | None = None) -> None:
        check_name(name)
        if name in table:
            raise ConfigError(f"axis name {name!r} is given twice")
        if not (axis_dir / "axis.json").is_file():
            raise ConfigError(f"{axis_dir}: not an axis directory (no axis.json)")
        if config is None:
            config = EmotionAxis.load(axis_dir).config
        table[name] = AxisEntry(name, axis_dir.resolve(),
                                mapper_dir.resolve() if (mapper_dir / "mapper.json").is_file()
                                else None, axis_label(prefix or name, config),
                                config.source, config.target, find_emotion_judge(axis_dir))

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
                name, bank.axes[emotion].config)
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
    """The steering bound first (a number, finite, |delta| <= steering's MAX_DELTA), then the
    slider's narrower range."""
    delta = check_steering_delta(delta)
    if abs(delta) > MAX_DELTA:
        raise ConfigError(f"delta {delta}: must lie in [-{MAX_DELTA:g}, {MAX_DELTA:g}]")
    return delta


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    return mode


def mode_help(mode: str) -> str:
    return MODE_HELP.get(mode, "")


def comparative(emotion: str) -> str:
    return COMPARATIVES.get(emotion.lower(), f"more like {emotion}")


def delta_label(ends: tuple[str, str] | None) -> str:
    """"delta: -1 = calmer (calm) … +1 = angrier (angry)": which slider end is which."""
    if not ends:
        return "delta: -1 = toward the axis's source … +1 = toward its target"
    source, target = ends
    return f"delta: -1 = {comparative(source)} ({source}) … +1 = {comparative(target)} ({target})"


def alpha_label(ends: tuple[str, str] | None) -> str:
    """The TTS slider: `emosteer tts` takes the synthesis as neutral, so its ends are the
    emotions themselves rather than a push away from the input."""
    source, target = ends or ("the source", "the target")
    return (f"alpha: -1 = {source} … 0 = the synthesis as it is … +1 = {target} "
            "(as `emosteer tts`)")


class SteerResult(NamedTuple):
    audio: np.ndarray
    sr: int
    readout: str  # the input's and output's projections on the axis
    judges: str  # the offline judges' numbers for the output, or why a number is missing


@dataclass
class SteeringApp:
    """The app's server-side state: the axis table, limits and the model caches."""

    axes: dict[str, AxisEntry]
    config: AppConfig = field(default_factory=AppConfig)
    upload_roots: tuple[Path, ...] = ()
    _steerers: dict[str, Steerer] = field(default_factory=dict, repr=False)
    _voice: object = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _dnsmos: object = field(default=None, repr=False)  # the DNSMOS judge, once loaded
    _dnsmos_note: str = field(default="", repr=False)  # why there is none, once known
    _emotion_judges: dict[Path, EmotionJudge] = field(default_factory=dict, repr=False)
    # Building a judge and scoring with one have their own locks: a first request loading
    # models does not hold up the judging of another's output, and two requests never load a
    # judge twice or run one extractor from two threads.
    _judge_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _score_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        # A bad --emotion-judge stops the server before it serves, not at the first steer.
        if self.config.emotion_judge is not None:
            self.emotion_judge_at(self.config.emotion_judge)

    @property
    def names(self) -> list[str]:
        return list(self.axes)

    def choices(self) -> list[tuple[str, str]]:
        """(label, name) per axis: the page shows the label and sends back only the name."""
        return [(e.shown, n) for n, e in self.axes.items()]

    def ends(self, name: str | None, reference: ReferenceAxis | None = None
             ) -> tuple[str, str] | None:
        """(source, target) emotions of a saved axis or a reference axis; None if unknown."""
        if reference is not None:
            return reference.axis.config.source, reference.axis.config.target
        entry = self.axes.get(name) if isinstance(name, str) else None
        return (entry.source, entry.target) if entry is not None else None

    def footer(self) -> str:
        """The page's last line: the decoder, and the vocoder by the loaded one's name."""
        loaded = list(self._steerers.values())  # a snapshot: another request may be adding one
        names = sorted({short_name(getattr(s.vocoder, "name", "") or type(s.vocoder).__name__)
                        for s in loaded if s.vocoder is not None})
        if names:
            vocoder = ", ".join(names)
        elif loaded:
            vocoder = "none loaded (prosody-only axes)"
        else:
            vocoder = f"{short_name(self.config.vocoder)} (named once the first axis loads)"
        return (f"Latent decoding: {DECODE} (delta 0 = copy synthesis) · vocoder: {vocoder} · "
                f"prosody: WORLD · emosteer {self.config.emosteer_version}")

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
              reference: ReferenceAxis | None = None) -> SteerResult:
        """Steer a validated 16 kHz clip; returns the audio, its rate, the projection readout
        and the judges' numbers."""
        delta, mode = check_delta(delta), check_mode(mode)
        steerer = self._resolve(name, reference)
        if mode != "prosody" and steerer.mapper is None:
            raise ConfigError(f"axis {name!r} has no mapper: only the prosody mode is available")
        y, sr = steerer.steer(wav, delta, SteerConfig(mode=mode, decode=DECODE))
        readout = projection_readout(steerer, wav, y, sr)
        try:
            judges = self.judge_output(y, sr, self.ends(name, reference)[1],
                                       self.entry(name).emotion_judge)
        except Exception as e:  # noqa: BLE001 - a failing judge costs its numbers, not the audio
            log.exception("judging the output failed")
            judges = f"judges: failed ({type(e).__name__}); see the server log"
        return SteerResult(y, sr, readout, judges)

    # -- judges ------------------------------------------------------------------------------
    def dnsmos(self):
        """The DNSMOS judge, built and loaded once; None when it cannot run (`dnsmos_note`)."""
        with self._judge_lock:
            if self._dnsmos is None and not self._dnsmos_note:
                try:
                    self._dnsmos = make_judges(["dnsmos"])[0]["dnsmos"].ensure_ready()
                except EmosteerError as e:
                    # The bracketed import details are for the log, not the page.
                    self._dnsmos_note = f"DNSMOS: not available ({str(e).split(' [')[0]})"
                    log.warning("%s", e)
            return self._dnsmos

    @property
    def dnsmos_note(self) -> str:
        return self._dnsmos_note

    def emotion_judge_at(self, path: str | Path) -> EmotionJudge:
        """A saved EmotionJudge, loaded once per directory."""
        path = Path(path).resolve()
        with self._judge_lock:
            if path not in self._emotion_judges:
                self._emotion_judges[path] = EmotionJudge.load(path)
            return self._emotion_judges[path]

    def _score(self, judge, clip: np.ndarray, sr: int) -> dict:
        with self._score_lock:
            return judge.score(clip, sr)

    def judge_output(self, y: np.ndarray, sr: int, target: str,
                     judge_dir: Path | None = None) -> str:
        """The offline judges on (the first JUDGE_SECONDS of) an output: DNSMOS and P(target)
        by the --emotion-judge, else by a judge saved beside the axis (`judge_dir`)."""
        n = int(JUDGE_SECONDS * sr)
        clip = np.asarray(y, np.float32)[:n]
        parts = [self._dnsmos_part(clip, sr),
                 self._p_target_part(clip, sr, target, self.config.emotion_judge or judge_dir)]
        if len(y) > n:
            parts.append(f"(judged on the first {JUDGE_SECONDS:g} s)")
        return "\n".join(parts)  # one judge a line: the box beside the player is narrow

    def _dnsmos_part(self, clip: np.ndarray, sr: int) -> str:
        judge = self.dnsmos()
        if judge is None:
            return self._dnsmos_note
        s = self._score(judge, clip, sr)
        return f"DNSMOS OVRL {s['ovrl']:.2f} (SIG {s['sig']:.2f}, BAK {s['bak']:.2f})"

    def _p_target_part(self, clip: np.ndarray, sr: int, target: str,
                       judge_dir: Path | None) -> str:
        if judge_dir is None:
            return NO_EMOTION_JUDGE
        try:
            judge = self.emotion_judge_at(judge_dir)
        except EmosteerError as e:  # its message names server folders: those go to the log
            log.warning("emotion judge %s: %s", judge_dir, e)
            return f"P({target}): the emotion judge cannot be read (see the server log)"
        ok, why = judge.available()
        if not ok:
            return f"P({target}): {why.split(' [')[0]}"
        if target not in judge.classes:
            return (f"P({target}): the emotion judge knows {', '.join(judge.classes)}, "
                    f"not {target}")
        p = self._score(judge, clip, sr)[f"p_{target}"]
        text = f"P({target}) {p:.2f} (eGeMAPS emotion judge"
        cal = judge.calibration or {}
        if cal.get("target") == target and "p_target_real_source" in cal:
            # The judge's own levels on real clips: what "steered far enough" means for it.
            text += (f"; real {cal.get('source')} clips {cal['p_target_real_source']:.2f}, "
                     f"real {target} {cal['p_target_real_target']:.2f}")
        return text + ")"

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
                   reference: ReferenceAxis | None = None) -> SteerResult:
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


__all__ = ["AppConfig", "AxisEntry", "ReferenceAxis", "SteerResult", "SteeringApp", "alpha_label",
           "axis_label", "check_delta", "check_mode", "check_name", "delta_label",
           "encoder_label", "mode_help", "parse_axis_specs", "validate_upload"]
