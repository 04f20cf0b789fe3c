r"""`emosteer tts`: text to speech with emotion control (the seed's tts.py).

    emosteer tts --text "Kids are talking by the door." --ref-calm calm.wav \
        --ref-angry angry.wav --alpha 0.3 --mapper RUN/mapper --out out.wav

The text is spoken by a TTS backend (piper by default, offline), then steered like any
recording (`emosteer steer`) along the calm->angry direction of the two references (or a
corpus --axis). alpha -1 is as calm as the calm reference, +1 as angry as the angry one, 0 the
plain synthesis, which is taken to sit halfway between them (see emosteer.tts_steer). Writes
OUT and OUT's .json sidecar with every setting and the measured F0 and level change.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from pathlib import Path

from emosteer.cli._common import add_force
from emosteer.errors import ConfigError

log = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".wav", ".flac", ".ogg")


def register(subparsers) -> None:
    from emosteer.cli.steer import add_steering_arguments
    from emosteer.tts import add_tts_arguments
    from emosteer.tts_steer import ADAPT_MAX_TRAIN, AdaptConfig

    d = AdaptConfig()
    p = subparsers.add_parser(
        "tts", help="text to speech with emotion control (alpha -1 calm .. +1 angry)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tts_arguments(p, steering_flags=False)  # --axis/--model/... come from the steer flags
    add_steering_arguments(p)
    p.add_argument("--adapt-mapper", action="store_true",
                   help="fine-tune the mapper on unlabelled synthesis from this voice first "
                        "(cached; the sidecar records round-trip MCD before and after)")
    p.add_argument("--adapt-sentences", type=int, default=d.n_sentences,
                   help=f"sentences synthesised for adaptation, 1..{ADAPT_MAX_TRAIN} "
                        f"(default {d.n_sentences})")
    p.add_argument("--adapt-epochs", type=int, default=d.epochs,
                   help=f"adaptation epochs (default {d.epochs})")
    p.add_argument("--adapt-minutes", type=float, default=d.minutes,
                   help=f"adaptation wall-time budget (default {d.minutes:g})")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="where adapted mappers are cached (default ~/.cache/emosteer)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_force(p)
    p.set_defaults(func=run)


def _references(args: argparse.Namespace):
    from emosteer.tts_steer import check_references

    if (args.ref_calm is None) != (args.ref_angry is None):
        raise ConfigError("give both --ref-calm and --ref-angry (or neither, with --axis)")
    if args.ref_calm is None:
        return None
    if args.axis:
        raise ConfigError("give either --ref-calm/--ref-angry or --axis, not both")
    return check_references(args.ref_calm, args.ref_angry)


def _synth_settings(args: argparse.Namespace) -> dict:
    if args.length_scale <= 0:
        raise ConfigError(f"--length-scale {args.length_scale}: must be positive")
    return {"length_scale": args.length_scale, "noise_scale": args.noise_scale,
            "pitch": args.pitch}


def run(args: argparse.Namespace) -> int:
    from emosteer import __version__
    from emosteer.artifacts import provenance, refuse_overwrite, write_json
    from emosteer.audio import SAMPLE_RATE, save_audio
    from emosteer.steer import PROSODY_FILE, SteerConfig
    from emosteer.tts import load_voice, read_text, synthesize_long
    from emosteer.tts_steer import (
        TtsConfig,
        check_alpha,
        coqui_conditioning,
        measure_change,
        steering_delta,
    )

    text = read_text(args.text, args.text_file)
    check_alpha(args.alpha)
    out = Path(args.out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(f"--out {out}: expected one of {', '.join(OUTPUT_SUFFIXES)}")
    sidecar = out.with_suffix(".json")
    refuse_overwrite(out, args.force)
    refuse_overwrite(sidecar, args.force)
    refs = _references(args)
    synth = _synth_settings(args)
    voice = load_voice(args.coqui_model if args.backend == "coqui" else args.voice,
                       args.backend, args.language)
    progress = not args.no_progress
    speak = {"voice": voice, "pause_s": args.pause, "progress": progress, **synth}
    names = (str(args.ref_calm), str(args.ref_angry))
    settings = {"text": text, "backend": voice.backend, "voice": voice.name, "alpha": args.alpha,
                "ref_calm": args.ref_calm, "ref_angry": args.ref_angry, "frames": args.frames,
                "match_loudness": args.match_loudness, "pause_s": args.pause,
                "sentences": _count_sentences(text), "emosteer_version": __version__, **synth}

    if voice.backend == "coqui":
        # XTTS steers inside the model: its conditioning latents blend the two references.
        if refs is None:
            raise ConfigError("--backend coqui needs --ref-calm and --ref-angry")
        neutral, sr = synthesize_long(text, conditioning=coqui_conditioning(voice, *names, 0.0),
                                      **speak)
        y, out_sr = synthesize_long(text, conditioning=coqui_conditioning(
            voice, *names, args.alpha), **speak)
        cfg = TtsConfig(**settings, delta=0.0, mode="xtts-latents", axis_source="references",
                        sample_rate=out_sr)
        steerer = adaptation = None
    else:
        steerer, axis, mapper, adaptation = _steerer(args, refs, names, voice, synth, progress)
        neutral, sr = synthesize_long(text, sr_out=SAMPLE_RATE, **speak)
        delta = steering_delta(args.alpha)
        scfg = SteerConfig(mode=args.mode, frames=args.frames,
                           match_loudness=args.match_loudness, sample_rate=args.sr)
        y, out_sr = steerer.steer(neutral, delta, scfg, source=f"{voice.backend} synthesis")
        latent = args.mode != "prosody"
        prosody_src = args.prosody or ("references" if axis is None else
                                       str(Path(axis) / PROSODY_FILE))
        cfg = TtsConfig(
            **settings, delta=delta, mode=args.mode,
            axis_source="references" if axis is None else str(axis),
            layer=steerer.axis.config.layer if latent else None,
            model=steerer.encoder.config.model if latent else None,
            mapper=str(mapper) if latent else None, vocoder=args.vocoder if latent else None,
            prosody=prosody_src if args.mode != "latent" else None, sample_rate=out_sr)

    measured = measure_change(neutral, sr, y, out_sr)
    save_audio(out, y, out_sr)
    record = {"kind": "tts", **dataclasses.asdict(cfg), "measured": measured,
              "axis": _axis_summary(steerer), "prosody_delta": getattr(steerer, "prosody", None),
              "adaptation": adaptation, "provenance": provenance()}
    write_json(sidecar, record)
    print(f"{out}: {measured['duration_s']:.2f} s, alpha {args.alpha:+.2f} (delta {cfg.delta:+.2f}),"
          f" median F0 {_change(measured['median_f0_change_st'], 'st')}, level "
          f"{_change(measured['level_change_db'], 'dB')} vs the neutral synthesis")
    return 0


def _steerer(args: argparse.Namespace, refs, names, voice, synth: dict, progress: bool):
    """(Steerer, corpus axis dir or None, mapper dir or None, adaptation report or None):
    the references' axis and prosody delta, or a saved axis; the mapper adapted first when
    --adapt-mapper asks."""
    from emosteer.cli.steer import resolve_artifacts
    from emosteer.steer import load_steerer
    from emosteer.tts_steer import AdaptConfig, adapt_mapper, default_cache_dir, reference_steerer

    if refs is None:
        axis, mapper = resolve_artifacts(args)
    else:
        axis, mapper = None, Path(args.mapper) if args.mapper else Path(args.run) / "mapper"
        if args.mode != "prosody" and not mapper.exists():
            raise ConfigError(f"{mapper}: no mapper here; give --mapper")
    adaptation = None
    if args.adapt_mapper:
        if args.mode == "prosody":
            raise ConfigError("--adapt-mapper adapts the mapper: use --mode latent or both")
        adapt = AdaptConfig(n_sentences=args.adapt_sentences, epochs=args.adapt_epochs,
                            minutes=args.adapt_minutes)
        mapper, adaptation = adapt_mapper(
            mapper, voice, adapt, args.cache_dir or default_cache_dir(), synth,
            model=args.model, device=args.device, bf16=args.bf16, progress=progress)
    if refs is not None:
        steerer = reference_steerer(*refs, names, args.mode, mapper=mapper, vocoder=args.vocoder,
                                    prosody=args.prosody, model=args.model, layer=args.layer,
                                    device=args.device, bf16=args.bf16)
        return steerer, None, mapper, adaptation
    steerer = load_steerer(axis=axis, mapper=mapper, vocoder=args.vocoder, prosody=args.prosody,
                           model=args.model, mode=args.mode, device=args.device, bf16=args.bf16)
    if args.layer is not None and args.layer != steerer.axis.config.layer:
        raise ConfigError(f"--layer {args.layer}: the axis {axis} is at layer "
                          f"{steerer.axis.config.layer}")
    return steerer, axis, mapper, adaptation


def _change(value: float, unit: str) -> str:
    # An unvoiced output (say, an untrained mapper's noise) has no F0 to compare.
    return f"{value:+.2f} {unit}" if math.isfinite(value) else "unmeasurable"


def _count_sentences(text: str) -> int:
    from emosteer.tts import split_sentences

    return len(split_sentences(text))


def _axis_summary(steerer) -> dict | None:
    axis = getattr(steerer, "axis", None)
    if axis is None:
        return None
    c = axis.config
    return {"model": c.model, "layer": c.layer, "source": c.source, "target": c.target,
            "origin": c.origin, "dim": c.dim, "calibration": axis.calibration,
            "sample_rate": c.sample_rate, "frame_rate": c.frame_rate}
