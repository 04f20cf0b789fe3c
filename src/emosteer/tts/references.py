"""Emotion control for text to speech: reference axis, reference prosody delta, mapper adaptation.

`emosteer tts` speaks the text with a TTS backend (`backends`), then steers that neutral
synthesis with the ordinary `Steerer` (latent, prosody or both). The direction comes either from
a saved corpus axis or from two reference clips, one calm and one angry:

- reference axis: the two clips' mean-pooled SSL embeddings at the encoder's layer go through
  `compute_axis` as one speaker with one clip per emotion, so the axis is angry - calm and its
  calibration (delta = 1) is the whole calm->angry shift between the references;
- reference prosody delta: `learn_prosody_delta` on the same two clips (median F0, F0 range,
  vocal effort, level and rate of angry minus calm).

Alpha semantics. Both kinds of direction are speaker-normalised differences, so where the TTS
voice itself sits between calm and angry cannot be measured; its plain synthesis is taken to be
neutral, halfway between the references. ``alpha`` = +1 then moves the synthesis by half the
calm->angry shift towards angry, which puts it as far above neutral as the angry reference sits
above the references' midpoint ("as angry as the angry one"); -1 moves it as far towards calm
("as calm as the calm one"); 0 is the neutral synthesis (in latent mode its plain mapper +
vocoder round trip); in between is linear: steering delta = alpha * REFERENCE_HALF_SPAN.
With --axis the same rule applies to the corpus axis's calibrated shift and its prosody.json.

XTTS-v2 (coqui) steers by interpolating its conditioning latents instead (`coqui_conditioning`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emosteer.artifacts import jsonable, provenance, read_json, write_json
from emosteer.audio import SAMPLE_RATE, load_audio, save_audio
from emosteer.axes import EmotionAxis, compute_axis
from emosteer.errors import AudioError, ConfigError
from emosteer.prosody.correlates import acoustic_correlates
from emosteer.prosody.world import ProsodyDelta, learn_prosody_delta
from emosteer.steering.steer import Steerer
from emosteer.synthesis.data import evaluate_mcd, prepare_examples
from emosteer.synthesis.mapper import CONFIG_FILE, WEIGHTS_FILE, load_mapper
from emosteer.synthesis.train import train_mapper
from emosteer.training import TrainConfig
from emosteer.tts.backends import synthesize

if TYPE_CHECKING:
    from emosteer.axes import EmotionAxis
    from emosteer.prosody.world import ProsodyDelta
    from emosteer.tts.backends import Voice

log = logging.getLogger(__name__)

MIN_REF_SECONDS = 0.5  # below this a reference holds too few syllables to carry an emotion
# The neutral synthesis sits halfway between the references: alpha = 1 is half their shift.
REFERENCE_HALF_SPAN = 0.5
REFERENCE_SPEAKER = "references"  # the two clips form one "speaker" for compute_axis
ADAPT_DIR = "tts-mappers"  # under the cache root: one directory per adapted mapper
ADAPT_REPORT = "adapt.json"  # written last, so its presence marks a complete cache entry
ADAPT_FORMAT = 1  # bump when an adapted mapper's meaning changes (invalidates the cache)
# Harvard sentences (IEEE 1969), phonetically balanced: unlabelled speech in the TTS voice.
# The last ADAPT_HELDOUT are never trained on; round-trip MCD before/after is measured on them.
ADAPT_SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
)
ADAPT_HELDOUT = 2
ADAPT_MAX_TRAIN = len(ADAPT_SENTENCES) - ADAPT_HELDOUT


def check_alpha(alpha: float) -> None:
    if not -1.0 <= alpha <= 1.0:
        raise ConfigError(f"--alpha {alpha}: must lie in [-1, 1]")


def check_references(ref_calm: str | os.PathLike, ref_angry: str | os.PathLike,
                     min_seconds: float = MIN_REF_SECONDS,
                     sr: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Load and validate the two reference clips; returns (calm, angry) at `sr`.

    Raises AudioError for a clip shorter than `min_seconds` and ConfigError when both are the
    same clip, by resolved path or by identical decoded audio."""
    calm_p, angry_p = Path(ref_calm), Path(ref_angry)
    if calm_p.exists() and calm_p.resolve() == angry_p.resolve():
        raise ConfigError(f"{calm_p}: the same clip is given as both --ref-calm and --ref-angry")
    wavs = []
    for path in (calm_p, angry_p):
        wav = load_audio(path, sr)
        if wav.shape[0] < min_seconds * sr:
            raise AudioError(f"{path}: reference too short ({wav.shape[0] / sr:.2f} s; "
                             f"at least {min_seconds} s needed)")
        wavs.append(wav)
    if hashlib.sha256(wavs[0].tobytes()).digest() == hashlib.sha256(wavs[1].tobytes()).digest():
        raise ConfigError(f"{calm_p} and {angry_p}: identical audio given as both references")
    return wavs[0], wavs[1]


def alpha_to_delta(alpha: float, neutral: float, calm: float, angry: float,
                   calibration: float = 1.0) -> float:
    """Steering delta (in `EmotionAxis.calibration` units) for `alpha` in [-1, 1].

    `neutral`, `calm` and `angry` are positions along the axis of the plain synthesis and
    the two references; +1 lands the synthesis on `angry`, -1 on `calm`, 0 leaves it."""
    check_alpha(alpha)
    if calibration == 0:
        raise ConfigError("axis calibration is zero: the axis cannot move the projection")
    target = angry if alpha >= 0 else calm
    return float(abs(alpha) * (target - neutral) / calibration)


def steering_delta(alpha: float) -> float:
    """The delta `emosteer tts` steers by: the module docstring's rule, neutral at the midpoint
    of the references (calm at -REFERENCE_HALF_SPAN, angry at +REFERENCE_HALF_SPAN)."""
    return alpha_to_delta(alpha, 0.0, -REFERENCE_HALF_SPAN, REFERENCE_HALF_SPAN)


def coqui_conditioning(voice: Voice, ref_calm: str | os.PathLike, ref_angry: str | os.PathLike,
                       alpha: float = 0.0) -> tuple[Any, Any]:
    """XTTS conditioning interpolated between the references: t = (alpha + 1) / 2 of the way
    from calm to angry, for both gpt_cond_latent and speaker_embedding."""
    check_alpha(alpha)
    if voice.backend != "coqui":
        raise ConfigError(f"coqui_conditioning needs a coqui voice, not {voice.backend}")
    check_references(ref_calm, ref_angry)
    calm = voice.engine.get_conditioning_latents(audio_path=[str(ref_calm)])
    angry = voice.engine.get_conditioning_latents(audio_path=[str(ref_angry)])
    t = (alpha + 1.0) / 2.0
    return tuple(c + t * (a - c) for c, a in zip(calm, angry, strict=True))


def reference_axis(encoder, layer: int, calm: np.ndarray, angry: np.ndarray,
                   names: tuple[str, str] = ("<calm>", "<angry>")) -> EmotionAxis:
    """The calm->angry axis of two 16 kHz reference clips at `layer`, built exactly like a
    corpus axis (mean-pooled frames, `compute_axis` with the clips as one speaker)."""
    layers = tuple(encoder.config.layers)
    if layer not in layers:
        raise ConfigError(f"the encoder computes layers {layers}, not layer {layer}")
    pooled = np.stack([encoder.encode(w)[layers.index(layer)].mean(axis=0) for w in (calm, angry)])
    try:
        fit = compute_axis(pooled, [REFERENCE_SPEAKER] * 2, ["calm", "angry"], "calm", "angry")
    except ConfigError as e:
        raise ConfigError(f"{names[0]} and {names[1]}: no calm->angry direction ({e})") from e
    ec = encoder.config
    return EmotionAxis.from_fit(fit, encoder=ec.identity(), layer=int(layer), source="calm",
                                target="angry", origin="references",
                                sample_rate=ec.sample_rate, frame_rate=ec.frame_rate)


def reference_prosody(calm: np.ndarray, angry: np.ndarray,
                      names: tuple[str, str] = ("<calm>", "<angry>")) -> ProsodyDelta:
    """The calm->angry ProsodyDelta measured between the two 16 kHz reference clips."""
    try:
        return learn_prosody_delta([calm, angry], [REFERENCE_SPEAKER] * 2, ["calm", "angry"],
                                   "calm", "angry", sr=SAMPLE_RATE)
    except ConfigError as e:
        raise ConfigError(f"{names[0]} and {names[1]}: no prosody delta ({e}); are both "
                          "references voiced speech?") from e


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/emosteer, else ~/.cache/emosteer."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "emosteer"


@dataclass(frozen=True)
class AdaptConfig:
    """What an adapted mapper depends on besides the base mapper's weights and the voice."""

    n_sentences: int = ADAPT_MAX_TRAIN
    epochs: int = 20
    minutes: float = 5.0
    lr: float = 3e-4  # lower than from-scratch training: fine-tuning, not relearning
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.n_sentences <= ADAPT_MAX_TRAIN:
            raise ConfigError(f"--adapt-sentences {self.n_sentences}: expected 1..{ADAPT_MAX_TRAIN}")
        if self.epochs < 1 or self.minutes <= 0:
            raise ConfigError("--adapt-epochs and --adapt-minutes must be positive")


@dataclass(frozen=True)
class _Clip:
    """A synthesised sentence, shaped like the utterances `prepare_examples` takes."""

    utt_id: str
    path: Path
    speaker: str


def adaptation_key(mapper_dir: Path, voice: Voice, synth: dict[str, Any], cfg: AdaptConfig) -> str:
    """Cache key: the base mapper's bytes, the voice, the synthesis settings and `cfg`."""
    digest = hashlib.sha256()
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        digest.update((mapper_dir / name).read_bytes())
    ident = {"mapper": digest.hexdigest(), "backend": voice.backend, "voice": voice.name,
             "synth": synth, "adapt": cfg, "format": ADAPT_FORMAT}
    blob = json.dumps(jsonable(ident), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def adapt_mapper(mapper_dir: str | os.PathLike, voice: Voice, cfg: AdaptConfig,
                 cache_root: str | os.PathLike, synth: dict[str, Any] | None = None,
                 model: str | None = None, device: str = "cpu", bf16: bool = False,
                 progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Fine-tune a mapper on unlabelled synthesis from `voice` (train-mapper's --init route),
    cached under cache_root/tts-mappers/KEY. Returns (adapted mapper dir, report); the report
    holds the round-trip MCD of the held-out sentences before and after (`mcd_before_db`,
    `mcd_after_db`) and `cached` (True when an earlier run's result was reused).

    `model` overrides the encoder checkpoint the mapper names; `device` runs the encoder
    (training itself runs where `train_mapper` puts it)."""
    mapper_dir, synth = Path(mapper_dir), dict(synth or {})
    base = load_mapper(mapper_dir)  # on the CPU, where evaluate_mcd and train_mapper work
    key = adaptation_key(mapper_dir, voice, {**synth, "encoder": model}, cfg)
    out = Path(cache_root) / ADAPT_DIR / key
    if (out / ADAPT_REPORT).is_file():
        log.info("adapted mapper found in the cache: %s", out)
        return out, {**read_json(out / ADAPT_REPORT), "cached": True}
    speaker = f"tts_{voice.backend}"
    sentences = ADAPT_SENTENCES[:cfg.n_sentences] + ADAPT_SENTENCES[-ADAPT_HELDOUT:]
    clips = []
    for i, sentence in enumerate(sentences):
        wav, sr = synthesize(sentence, voice=voice, **synth)
        path = save_audio(out / "audio" / f"{i:02d}.wav", wav, sr)
        clips.append(_Clip(f"{speaker}/{i:02d}", path, speaker))
    mc = base.config
    encoder = mc.encoder.load((mc.layer,), source=str(mapper_dir / CONFIG_FILE), model=model,
                              device=device, bf16=bf16)
    prep = {"encoder": encoder, "layer": mc.layer, "mel": mc.mel,
            "cache_dir": out / "cache", "progress": progress}
    train = prepare_examples(clips[:cfg.n_sentences], **prep)
    held = prepare_examples(clips[cfg.n_sentences:], **prep)
    if not train or not held:
        raise ConfigError(f"{voice.name}: no usable synthesis to adapt the mapper on")
    before = evaluate_mcd(base, held)
    train_cfg = TrainConfig(lr=cfg.lr, max_epochs=cfg.epochs, max_minutes=cfg.minutes,
                            patience=cfg.epochs, seed=cfg.seed)
    _, rep = train_mapper(train, mc, out, train_cfg=train_cfg, train_only_speakers={speaker},
                          init=mapper_dir, test_examples=held, progress=progress)
    shutil.rmtree(out / "checkpoint", ignore_errors=True)  # the optimiser state is not needed
    report = {"key": key, "base_mapper": str(mapper_dir), "mapper": str(out),
              "backend": voice.backend, "voice": voice.name, "synth": synth, "config": cfg,
              "n_train": len(train), "n_heldout": len(held), "mcd_before_db": before,
              "mcd_after_db": rep["test_mcd_db"], "epochs": rep["result"]["epochs"],
              "stop_reason": rep["result"]["stop_reason"], "provenance": provenance()}
    write_json(out / ADAPT_REPORT, report)
    log.info("adapted mapper %s: held-out round-trip MCD %.2f -> %.2f dB", out, before,
             rep["test_mcd_db"])
    return out, {**report, "cached": False}


@dataclass(frozen=True)
class TtsConfig:
    """Every setting of one `emosteer tts` output (the sidecar's top level)."""

    text: str
    backend: str
    voice: str
    alpha: float
    delta: float
    mode: str
    axis_source: str  # "references" or the corpus axis directory
    ref_calm: str | None = None
    ref_angry: str | None = None
    layer: int | None = None
    model: str | None = None
    mapper: str | None = None
    vocoder: str | None = None
    prosody: str | None = None  # "references", a ProsodyDelta file or the axis's prosody.json
    frames: str = "all"
    match_loudness: bool = True
    length_scale: float = 1.0
    noise_scale: float | None = None
    pitch: int | None = None
    pause_s: float = 0.0
    sentences: int = 1
    sample_rate: int = SAMPLE_RATE
    emosteer_version: str = ""


def reference_steerer(calm: np.ndarray, angry: np.ndarray, names: tuple[str, str], mode: str,
                      mapper=None, vocoder: str = "auto", prosody=None, model=None,
                      layer: int | None = None, device: str = "cpu", bf16: bool = False):
    """A Steerer whose axis and (unless `prosody` names a file) prosody delta come from the
    two references. Loads only what `mode` needs; the encoder is the mapper's."""
    pdelta = None
    if mode in ("prosody", "both"):
        pdelta = ProsodyDelta.load(prosody) if prosody else reference_prosody(calm, angry, names)
    if mode == "prosody":
        return Steerer(None, prosody=pdelta)
    if mapper is None:
        raise ConfigError(f"--mode {mode} needs --mapper")
    base = Steerer.from_artifacts(mapper=mapper, vocoder=vocoder, mode=mode, model=model,
                                  device=device, bf16=bf16)
    mlayer = base.mapper.config.layer
    if layer is not None and layer != mlayer:
        raise ConfigError(f"--layer {layer}: the mapper {mapper} reads layer {mlayer}")
    return base.with_axis(reference_axis(base.encoder, mlayer, calm, angry, names), pdelta)


def measure_change(neutral: np.ndarray, neutral_sr: int, out: np.ndarray, out_sr: int
                   ) -> dict[str, Any]:
    """Median F0 (semitones) and active-speech level (dB) of the neutral synthesis and the
    output, and their change (output - neutral)."""
    a = acoustic_correlates(neutral, neutral_sr, source="<neutral synthesis>")
    b = acoustic_correlates(out, out_sr, source="<steered output>")
    keys = ("median_f0_st", "level_db")
    return {"neutral": {k: a[k] for k in keys}, "output": {k: b[k] for k in keys},
            "median_f0_change_st": b["median_f0_st"] - a["median_f0_st"],
            "level_change_db": b["level_db"] - a["level_db"],
            "duration_s": len(out) / out_sr}
