"""Steered text to speech, end to end: synthesise the text, steer it along the calm->angry
direction of two reference clips (or a saved corpus axis), and write the audio with a JSON
sidecar that records every setting and the measured F0 and level change.

alpha -1 is as calm as the calm reference, +1 as angry as the angry one, 0 the plain
synthesis, which is taken to sit halfway between them (`emosteer.tts.references`). XTTS
(`backend="coqui"`) steers inside the model instead, by blending the references' latents.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emosteer import __version__
from emosteer.artifacts import provenance, refuse_overwrite, write_json
from emosteer.audio import SAMPLE_RATE, save_audio
from emosteer.bank.bank import EmotionBank, bank_steerer
from emosteer.errors import ConfigError
from emosteer.steering.steer import MODES, PROSODY_FILE, SteerConfig, Steerer
from emosteer.tts.backends import (
    DEFAULT_BACKEND,
    ESPEAK_PITCH,
    PIPER_NOISE_SCALE,
    SENTENCE_PAUSE_S,
    Voice,
    load_voice,
    normalize_text,
    split_sentences,
    synthesize_long,
)
from emosteer.tts.references import (
    AdaptConfig,
    TtsConfig,
    adapt_mapper,
    check_alpha,
    check_references,
    coqui_conditioning,
    default_cache_dir,
    measure_change,
    reference_steerer,
    steering_delta,
)

log = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class SpeakConfig:
    """Everything one steered synthesis depends on besides its text.

    The emotion direction comes from `ref_calm` + `ref_angry`, from a corpus `axis`
    directory, or from an emotion `bank` and its `emotion` mix ('sad', 'happy:0.5,sad:0.5')
    (exactly one of the three); `mapper` is needed unless `mode` is "prosody".
    `voice` is a Piper .onnx (None: the bundled voice), an espeak-ng voice name or, for
    `backend="coqui"`, an XTTS-v2 model directory. `adapt` fine-tunes the mapper on this
    voice first (cached under `cache_dir`, default ~/.cache/emosteer)."""

    alpha: float = 0.0
    ref_calm: str | None = None
    ref_angry: str | None = None
    axis: str | None = None
    bank: str | None = None  # an emotion bank directory (emosteer.bank), with `emotion`
    emotion: str | None = None  # the bank's emotion or mix to steer towards
    mapper: str | None = None
    prosody: str | None = None
    vocoder: str = "auto"
    model: str | None = None
    layer: int | None = None
    mode: str = "latent"
    decode: str = "differential"  # how the latent push becomes audio (steering.steer)
    frames: str = "all"
    match_loudness: bool = True
    sample_rate: int | None = None
    backend: str = DEFAULT_BACKEND
    voice: str | None = None
    language: str = "en"
    length_scale: float = 1.0
    noise_scale: float = PIPER_NOISE_SCALE
    pitch: int = ESPEAK_PITCH
    pause_s: float = SENTENCE_PAUSE_S
    adapt: AdaptConfig | None = None
    cache_dir: str | None = None
    device: str = "cpu"
    bf16: bool = False

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        if self.mode not in MODES:
            raise ConfigError(f"--mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.length_scale <= 0:
            raise ConfigError(f"--length-scale {self.length_scale}: must be positive")
        if (self.ref_calm is None) != (self.ref_angry is None):
            raise ConfigError("give both --ref-calm and --ref-angry (or neither, with --axis)")
        if self.ref_calm is not None and self.axis:
            raise ConfigError("give either --ref-calm/--ref-angry or --axis, not both")
        if (self.bank is None) != (self.emotion is None):
            raise ConfigError("--bank and --emotion go together")
        if self.bank is not None and (self.axis or self.ref_calm is not None or self.prosody):
            raise ConfigError("--bank brings the axis and prosody: no --axis, "
                              "--ref-calm/--ref-angry or --prosody with it")
        if self.adapt is not None and self.mode == "prosody":
            raise ConfigError("--adapt-mapper adapts the mapper: use --mode latent or both")

    @property
    def synth(self) -> dict[str, Any]:
        """The synthesis settings `synthesize` takes (and adaptation keys its cache on)."""
        return {"length_scale": self.length_scale, "noise_scale": self.noise_scale,
                "pitch": self.pitch}


@dataclass(frozen=True)
class SpeakResult:
    out: Path
    sidecar: Path
    config: TtsConfig
    measured: dict[str, Any]  # measure_change: F0 and level of the output vs the neutral synthesis
    record: dict[str, Any]  # the sidecar's content


def speak(text: str, cfg: SpeakConfig, out: str | os.PathLike, force: bool = False,
          progress: bool = True) -> SpeakResult:
    """Speak `text` with the emotion `cfg.alpha`, writing OUT (.wav/.flac/.ogg) and OUT's
    .json sidecar (both atomically; existing files are refused unless `force`)."""
    text = normalize_text(text)
    out = Path(out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(f"--out {out}: expected one of {', '.join(OUTPUT_SUFFIXES)}")
    sidecar = out.with_suffix(".json")
    refuse_overwrite(out, force)
    refuse_overwrite(sidecar, force)
    refs = (check_references(cfg.ref_calm, cfg.ref_angry) if cfg.ref_calm is not None
            else None)
    bank = EmotionBank.load(cfg.bank) if cfg.bank is not None else None
    if bank is not None:
        bank.parse_mix(cfg.emotion)  # a bad mix is refused before the voice and models load
    voice = load_voice(cfg.voice, cfg.backend, cfg.language)
    speak_kw = {"voice": voice, "pause_s": cfg.pause_s, "progress": progress, **cfg.synth}
    settings = {"text": text, "backend": voice.backend, "voice": voice.name, "alpha": cfg.alpha,
                "ref_calm": cfg.ref_calm, "ref_angry": cfg.ref_angry, "frames": cfg.frames,
                "match_loudness": cfg.match_loudness, "pause_s": cfg.pause_s,
                "sentences": len(split_sentences(text)), "emosteer_version": __version__,
                **cfg.synth}
    names = (str(cfg.ref_calm), str(cfg.ref_angry))

    if voice.backend == "coqui":
        # XTTS steers inside the model: its conditioning latents blend the two references.
        if refs is None:
            raise ConfigError("--backend coqui needs --ref-calm and --ref-angry")
        neutral, sr = synthesize_long(text, conditioning=coqui_conditioning(voice, *names, 0.0),
                                      **speak_kw)
        y, out_sr = synthesize_long(text, conditioning=coqui_conditioning(
            voice, *names, cfg.alpha), **speak_kw)
        tcfg = TtsConfig(**settings, delta=0.0, mode="xtts-latents", axis_source="references",
                         sample_rate=out_sr)
        steerer = adaptation = None
    else:
        steerer, mapper, adaptation = _steerer(cfg, refs, names, voice, progress, bank)
        neutral, sr = synthesize_long(text, sr_out=SAMPLE_RATE, **speak_kw)
        delta = steering_delta(cfg.alpha)
        scfg = SteerConfig(mode=cfg.mode, decode=cfg.decode, frames=cfg.frames,
                           match_loudness=cfg.match_loudness, sample_rate=cfg.sample_rate)
        y, out_sr = steerer.steer(neutral, delta, scfg, source=f"{voice.backend} synthesis")
        tcfg = _tts_config(cfg, settings, delta, steerer, mapper, out_sr)

    measured = measure_change(neutral, sr, y, out_sr)
    save_audio(out, y, out_sr)
    record = {"kind": "tts", **dataclasses.asdict(tcfg), "measured": measured,
              "axis": _axis_summary(steerer), "prosody_delta": getattr(steerer, "prosody", None),
              "adaptation": adaptation, "provenance": provenance()}
    write_json(sidecar, record)
    return SpeakResult(out, sidecar, tcfg, measured, record)


def _tts_config(cfg: SpeakConfig, settings: dict, delta: float, steerer: Steerer,
                mapper: Path | None, out_sr: int) -> TtsConfig:
    latent = cfg.mode != "prosody"
    axis_source = "references" if cfg.axis is None else str(cfg.axis)
    prosody = cfg.prosody or ("references" if cfg.axis is None else
                              str(Path(cfg.axis) / PROSODY_FILE))
    if cfg.bank is not None:
        axis_source = prosody = f"{cfg.bank} ({cfg.emotion})"
    return TtsConfig(
        **settings, delta=delta, mode=cfg.mode, axis_source=axis_source,
        layer=steerer.axis.config.layer if latent else None,
        model=steerer.encoder.config.model if latent else None,
        mapper=str(mapper) if latent else None, vocoder=(steerer.vocoder.name or cfg.vocoder) if latent else None,
        prosody=prosody if cfg.mode != "latent" else None, sample_rate=out_sr)


def _steerer(cfg: SpeakConfig, refs: tuple[np.ndarray, np.ndarray] | None,
             names: tuple[str, str], voice: Voice, progress: bool,
             bank: EmotionBank | None = None) -> tuple[Steerer, Path | None, dict | None]:
    """(Steerer, mapper dir or None, adaptation report or None): the references' axis and
    prosody delta, a saved axis, or a bank's mix; the mapper adapted to the voice first when
    `cfg.adapt`."""
    mapper = Path(cfg.mapper) if cfg.mapper else None
    if refs is None and bank is None:
        if cfg.axis is None:
            raise ConfigError("give --ref-calm and --ref-angry, a saved --axis, or --bank "
                              "with --emotion")
        if not Path(cfg.axis).exists():
            raise ConfigError(f"{cfg.axis}: no axis here; give --axis")
    if cfg.mode != "prosody" and mapper is None:
        raise ConfigError(f"--mode {cfg.mode} needs --mapper")
    if cfg.mode != "prosody" and not mapper.exists():
        raise ConfigError(f"{mapper}: no mapper here; give --mapper")
    if mapper is not None and not mapper.exists():
        mapper = None  # prosody mode: no mapper needed
    adaptation = None
    if cfg.adapt is not None:
        mapper, adaptation = adapt_mapper(
            mapper, voice, cfg.adapt, cfg.cache_dir or default_cache_dir(), cfg.synth,
            model=cfg.model, device=cfg.device, bf16=cfg.bf16, progress=progress)
    if refs is not None:
        steerer = reference_steerer(*refs, names, cfg.mode, mapper=mapper, vocoder=cfg.vocoder,
                                    prosody=cfg.prosody, model=cfg.model, layer=cfg.layer,
                                    device=cfg.device, bf16=cfg.bf16)
        return steerer, mapper, adaptation
    parts = dict(mapper=mapper, vocoder=cfg.vocoder, model=cfg.model, mode=cfg.mode,
                 device=cfg.device, bf16=cfg.bf16)
    steerer = (bank_steerer(bank, cfg.emotion, **parts) if bank is not None else
               Steerer.from_artifacts(axis=cfg.axis, prosody=cfg.prosody, **parts))
    if cfg.layer is not None and cfg.layer != steerer.axis.config.layer:
        raise ConfigError(f"--layer {cfg.layer}: the axis {cfg.axis or cfg.bank} is at layer "
                          f"{steerer.axis.config.layer}")
    return steerer, mapper, adaptation


def format_change(value: float, unit: str) -> str:
    """'+1.23 st', or 'unmeasurable' when there is no F0 (say, an untrained mapper's noise)."""
    return f"{value:+.2f} {unit}" if math.isfinite(value) else "unmeasurable"


def _axis_summary(steerer: Steerer | None) -> dict | None:
    axis = getattr(steerer, "axis", None)
    if axis is None:
        return None
    c = axis.config
    return {"model": c.encoder.model, "layer": c.layer, "source": c.source, "target": c.target,
            "origin": c.origin, "dim": c.dim, "calibration": axis.calibration,
            "sample_rate": c.sample_rate, "frame_rate": c.frame_rate}
