"""The demo's embedded corpus, generated locally and offline.

The bundled Piper voice reads a few sentences; WORLD analysis-resynthesis turns that one voice
into several pseudo-speakers (F0 and formant shifts) and renders each sentence with a calm and an
angry prosody. The result is a small labelled corpus in the generic CSV-manifest format, so every
later stage (extract, axis, mapper, steering, evaluation) runs on it exactly as on a real corpus.

The renderings follow the acoustic correlates that separate calm from angry acted speech
(Banse & Scherer 1996; measured on RAVDESS by `emosteer prosody`): angry speech has a higher and
wider F0, more high-frequency energy (vocal effort) and a faster rate. Sad and happy renderings
(lower, narrower, slower and softer; higher, wider and a little faster) are there to ask for
(`corpus.emotions`); the bundled demo renders calm and angry only, to stay within its time.

Every emotion here is a fixed WORLD transform, so prosody numbers measured on this corpus are
circular (DEMO_NOTICE); `emosteer demo --corpus ravdess` runs the same stages on acted speech.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emosteer.artifacts import atomic_write_text, read_json, write_json
from emosteer.audio import SAMPLE_RATE, resample, save_audio
from emosteer.errors import ArtifactError, ConfigError
from emosteer.tts.backends import synthesize

log = logging.getLogger(__name__)

FRAME_PERIOD_MS = 5.0  # WORLD's default analysis hop; fine enough for pitch-accurate resynthesis

SENTENCES = (  # short on purpose: every stage's cost grows with the seconds of audio
    "Kids are talking by the door.",
    "Dogs are sitting by the door.",
    "Please give me back my keys.",
    "The meeting starts at nine.",
    "We are going to the market.",
    "Nobody told me about it.",
    "The train was late again.",
    "Open the window, please.",
)

# What the run says on the console and at the top of its report (run.json "notices") whenever
# its corpus is this one: a reader must not take prosody numbers learned from it at face value.
DEMO_NOTICE = (
    "The offline demo corpus is synthetic: one Piper voice turned into pseudo-speakers by WORLD, "
    "and its emotions are WORLD renderings of fixed prosody transforms (F0 level and range, "
    "spectral tilt, rate, level), not acted speech. Its prosody numbers are circular: "
    "`prosody learn` learns back the very transform that made the \"angry\" clips. For real "
    "acted emotion run `emosteer demo --corpus ravdess` (downloads RAVDESS speech, about 200 MB, "
    "md5-checked and resumable).")


@dataclass(frozen=True)
class Voice:
    """A pseudo-speaker: a pitch shift in semitones and a formant (envelope) warp factor."""

    name: str
    pitch_st: float
    formant: float


@dataclass(frozen=True)
class Rendering:
    """An emotional prosody rendering, relative to the TTS voice's own delivery."""

    emotion: str
    f0_shift_st: float
    f0_range: float  # multiplier on the F0 excursion around the utterance median
    tilt_db: float  # high-shelf gain above SHELF_HZ: vocal effort
    rate: float  # > 1 is faster
    gain_db: float


VOICES = (
    Voice("spk_a", 0.0, 1.0),
    Voice("spk_b", -3.0, 0.94),
    Voice("spk_c", 4.0, 1.08),
    Voice("spk_d", 7.0, 1.14),
    Voice("spk_e", -5.0, 0.9),
)

RENDERINGS = (
    Rendering("calm", -1.5, 0.6, -4.0, 0.9, -4.0),
    Rendering("angry", 3.5, 1.6, 6.0, 1.12, 4.0),
    # sad sits below calm on every correlate (lower, flatter, slower, softer, duller), so the
    # two stay separable; happy is raised and wide like angry but with far less vocal effort
    Rendering("sad", -3.0, 0.45, -6.0, 0.82, -7.0),
    Rendering("happy", 3.0, 1.5, 2.0, 1.06, 1.0),
)
DEFAULT_EMOTIONS = ("calm", "angry")
# Bump when the renderings or the manifest change, so an older corpus on disk is rebuilt.
CORPUS_VERSION = 3

SHELF_HZ = 1000.0  # the alpha-ratio split: effort shows as energy above ~1 kHz


def _shelf(n_bins: int, sr: int, gain_db: float) -> np.ndarray:
    """Smooth first-order high-shelf power gain over WORLD's envelope bins."""
    freqs = np.linspace(0, sr / 2, n_bins)
    ramp = 1.0 / (1.0 + (SHELF_HZ / np.maximum(freqs, 1.0)) ** 2)
    return 10 ** (gain_db * ramp / 10)


def _warp_envelope(sp: np.ndarray, factor: float) -> np.ndarray:
    """Scale formant frequencies by `factor` (envelope read at f / factor)."""
    if factor == 1.0:
        return sp
    n = sp.shape[1]
    src = np.clip(np.arange(n) / factor, 0, n - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    w = src - lo
    return np.ascontiguousarray(sp[:, lo] * (1 - w) + sp[:, hi] * w)


def analyze(wav: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """WORLD analysis (F0 by Harvest, envelope, aperiodicity); done once per sentence, since every
    pseudo-speaker and rendering of it starts from the same analysis."""
    import pyworld

    x = wav.astype(np.float64)
    f0, t = pyworld.harvest(x, sr, frame_period=FRAME_PERIOD_MS)
    return f0, pyworld.cheaptrick(x, f0, t, sr), pyworld.d4c(x, f0, t, sr)


def transform(analysis: tuple[np.ndarray, np.ndarray, np.ndarray], sr: int, voice: Voice,
              rendering: Rendering | None) -> np.ndarray:
    """Voice and emotion modifications of a WORLD analysis, then resynthesis."""
    import pyworld

    f0, sp, ap = analysis
    voiced = f0 > 0
    log_f0 = np.where(voiced, np.log2(np.maximum(f0, 1e-3)), 0.0)
    semis = voice.pitch_st
    range_mult, rate, tilt, gain = 1.0, 1.0, 0.0, 0.0
    if rendering is not None:
        semis += rendering.f0_shift_st
        range_mult, rate = rendering.f0_range, rendering.rate
        tilt, gain = rendering.tilt_db, rendering.gain_db
    if voiced.any():
        centre = np.median(log_f0[voiced])
        log_f0 = np.where(voiced, centre + (log_f0 - centre) * range_mult + semis / 12.0, 0.0)
    f0_new = np.where(voiced, 2.0**log_f0, 0.0)
    sp = _warp_envelope(sp, voice.formant) * _shelf(sp.shape[1], sr, tilt)
    if rate != 1.0:
        n_out = max(2, int(round(len(f0_new) / rate)))
        idx = np.clip(np.round(np.linspace(0, len(f0_new) - 1, n_out)).astype(int), 0, len(f0_new) - 1)
        f0_new, sp, ap = f0_new[idx], sp[idx], ap[idx]
    y = pyworld.synthesize(np.ascontiguousarray(f0_new), np.ascontiguousarray(sp),
                           np.ascontiguousarray(ap), sr, frame_period=FRAME_PERIOD_MS)
    y = y * 10 ** (gain / 20)
    peak = np.max(np.abs(y)) if y.size else 0.0
    if peak > 0.95:
        y = y * (0.95 / peak)
    return y.astype(np.float32)


def _renderings(emotions) -> tuple[Rendering, ...]:
    by_name = {r.emotion: r for r in RENDERINGS}
    names = tuple(emotions) or DEFAULT_EMOTIONS
    unknown = [e for e in names if e not in by_name]
    if unknown:
        raise ConfigError(f"demo corpus emotions {unknown}: expected some of {', '.join(by_name)}")
    return tuple(by_name[e] for e in dict.fromkeys(names))


def _same_corpus(out_dir: Path, spec: dict) -> bool:
    """Whether out_dir holds a finished corpus built to `spec` (a stale one is rebuilt: `-f` keeps
    RUN/corpus, and a manifest of other sentences would silently change the run)."""
    if not (out_dir / "manifest.csv").is_file():
        return False
    try:
        data = read_json(out_dir / "corpus.json")
    except ArtifactError:
        return False
    return isinstance(data, dict) and data.get("spec") == spec


def build_demo_corpus(out_dir: str | Path, n_sentences: int = 4, n_voices: int = 4,
                      voice_path: str | None = None, emotions=DEFAULT_EMOTIONS) -> Path:
    """Write `out_dir/manifest.csv` plus audio; returns the manifest path. Idempotent: a corpus
    already there with the same sentences, voices and emotions is reused."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    manifest = out_dir / "manifest.csv"
    if not 1 <= n_sentences <= len(SENTENCES):
        raise ConfigError(f"corpus.n_sentences {n_sentences}: must be 1-{len(SENTENCES)}")
    if not 1 <= n_voices <= len(VOICES):
        raise ConfigError(f"corpus.n_voices {n_voices}: must be 1-{len(VOICES)}")
    sentences = SENTENCES[:n_sentences]
    voices = VOICES[:n_voices]
    renderings = _renderings(emotions)
    spec = {"version": CORPUS_VERSION, "sentences": list(sentences),
            "voices": [v.name for v in voices], "emotions": [r.emotion for r in renderings],
            "voice": voice_path}
    if _same_corpus(out_dir, spec):
        log.info("demo corpus: reusing %s", manifest)
        return manifest
    manifest.unlink(missing_ok=True)  # first: a half-rebuilt corpus must not pass as finished
    rows = []
    jobs = [(i, v, r) for i in range(len(sentences)) for v in voices for r in renderings]
    base: dict[int, tuple[tuple, int]] = {}
    for i, voice, rendering in tqdm(jobs, desc="demo corpus", unit="clip"):
        if i not in base:
            wav, sr = synthesize(sentences[i], backend="piper", voice=voice_path)
            base[i] = (analyze(wav, sr), sr)
        analysis, sr = base[i]
        y = resample(transform(analysis, sr, voice, rendering), sr, SAMPLE_RATE)
        rel = Path(voice.name) / f"{voice.name}_s{i:02d}_{rendering.emotion}.wav"
        save_audio(out_dir / rel, y, SAMPLE_RATE)
        # the text is the ASR judge's reference: WER against what was read, not against the
        # ASR of the unsteered input
        rows.append({"path": str(rel), "speaker": voice.name, "emotion": rendering.emotion,
                     "sentence": f"s{i:02d}", "text": sentences[i]})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["path", "speaker", "emotion", "sentence", "text"])
    writer.writeheader()
    writer.writerows(rows)
    write_json(out_dir / "corpus.json", {
        "description": "emosteer demo corpus: Piper voice, WORLD pseudo-speakers and prosody renderings",
        "notice": DEMO_NOTICE, "spec": spec,
        "sentences": list(sentences), "voices": voices, "renderings": renderings,
        "sample_rate": SAMPLE_RATE,
    })
    atomic_write_text(manifest, buf.getvalue())  # last: its presence marks a finished corpus
    return manifest
