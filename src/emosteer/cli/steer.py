"""`emosteer steer`: push a recording along an emotion axis (the seed's emotion_steer_final.py)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from emosteer.cli._common import add_device, add_force, parse_floats
from emosteer.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_RUN = "demo-out"  # where `make demo` leaves its axis and mapper


def add_steering_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by `steer` and `tts`: which artifacts to steer with and how."""
    p.add_argument("--run", default=DEFAULT_RUN,
                   help="a pipeline run directory whose axis/ and mapper/ are the defaults "
                        f"(default {DEFAULT_RUN}, what `make demo` writes)")
    p.add_argument("--axis", help="axis directory (default RUN/axis)")
    p.add_argument("--mapper", help="mapper directory (default RUN/mapper)")
    p.add_argument("--vocoder", default="griffinlim",
                   help="griffinlim, a jik876 HiFi-GAN directory or a safetensors export")
    p.add_argument("--prosody", help="ProsodyDelta JSON (default: AXIS/prosody.json)")
    p.add_argument("--model", help="override the encoder checkpoint (hub id or directory)")
    p.add_argument("--mode", choices=("latent", "prosody", "both"), default="latent")
    p.add_argument("--frames", choices=("all", "voiced"), default="all",
                   help="which SSL frames are pushed along the axis")
    p.add_argument("--sr", type=int, help="output sample rate (default: the vocoder's)")
    p.add_argument("--keep-level", dest="match_loudness", action="store_false",
                   help="do not match the output loudness to the input")
    add_device(p)


def resolve_artifacts(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    run = Path(args.run)
    axis = Path(args.axis) if args.axis else run / "axis"
    mapper = Path(args.mapper) if args.mapper else run / "mapper"
    if not axis.exists():
        raise ConfigError(f"{axis}: no axis here; give --axis (or run `make demo` first)")
    if args.mode != "prosody" and not mapper.exists():
        raise ConfigError(f"{mapper}: no mapper here; give --mapper (or run `make demo` first)")
    return axis, (mapper if mapper.exists() else None)


def load_from_args(args: argparse.Namespace):
    from emosteer.steer import load_steerer

    axis, mapper = resolve_artifacts(args)
    return load_steerer(axis=axis, mapper=mapper, vocoder=args.vocoder, prosody=args.prosody,
                        model=args.model, mode=args.mode, device=args.device, bf16=args.bf16)


def run(args: argparse.Namespace) -> int:
    from emosteer.artifacts import refuse_overwrite, write_json
    from emosteer.audio import load_audio, save_audio
    from emosteer.steer import SteerConfig

    if (args.delta is None) == (args.deltas is None):
        raise ConfigError("give exactly one of --delta and --deltas")
    deltas = (args.delta,) if args.delta is not None else parse_floats(args.deltas)
    out = Path(args.output)
    if args.deltas is not None and out.suffix:
        raise ConfigError(f"--output {out}: with --deltas, give a directory for the sweep")
    targets = ([out] if args.delta is not None else
               [out / f"{Path(args.input).stem}_{args.mode}_{d:+.2f}.wav" for d in deltas])
    for t in targets:
        refuse_overwrite(t, args.force)
    if args.stream:
        return run_stream(args, deltas, targets)
    steerer = load_from_args(args)
    wav = load_audio(args.input)
    cfg = SteerConfig(mode=args.mode, frames=args.frames, match_loudness=args.match_loudness,
                      sample_rate=args.sr)
    rows = []
    for d, target in zip(deltas, targets, strict=True):
        y, sr = steerer.steer(wav, d, cfg, source=args.input)
        save_audio(target, y, sr)
        rows.append({"delta": d, "path": target.name, "sample_rate": sr})
        log.info("wrote %s (mode %s, delta %+.2f)", target, args.mode, d)
    if args.deltas is not None:
        write_json(out / "sweep.json", {"input": str(args.input), "config": cfg, "items": rows})
    return 0


def run_stream(args: argparse.Namespace, deltas, targets: list[Path]) -> int:
    """--stream: read the input block by block, as a live source would deliver it."""
    import numpy as np

    from emosteer.artifacts import write_json
    from emosteer.audio import iter_audio_chunks, save_audio
    from emosteer.stream import StreamConfig, StreamingSteerer

    if args.sr:
        raise ConfigError("--sr cannot be combined with --stream (output is at the vocoder's rate)")
    geometry = {k: getattr(args, k) for k in ("block_ms", "lookahead_ms", "context_ms")
                if getattr(args, k) is not None}  # unset: StreamConfig's defaults
    cfg = StreamConfig(mode=args.mode, frames=args.frames, match_loudness=args.match_loudness,
                       **geometry)
    steerer = load_from_args(args)
    rows = []
    for d, target in zip(deltas, targets, strict=True):
        s = StreamingSteerer(steerer, d, cfg)
        blocks = (c for _, c in iter_audio_chunks(args.input, chunk_seconds=cfg.block_ms / 1000))
        y = np.concatenate(list(s.stream(blocks)))
        save_audio(target, y, s.sample_rate)
        lat = s.latency_report()
        rows.append({"delta": d, "path": target.name, "sample_rate": s.sample_rate, "latency": lat})
        log.info("wrote %s (stream, mode %s, delta %+.2f): latency %.0f ms algorithmic + %.0f ms "
                 "compute (p95), real-time factor %.2f", target, args.mode, d,
                 lat["algorithmic_ms"], lat["compute_ms_p95"], lat["rtf"])
    if args.deltas is not None:
        write_json(Path(args.output) / "sweep.json",
                   {"input": str(args.input), "config": cfg, "items": rows})
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("steer", help="steer a recording along an emotion axis",
                       description="Steer speech: embedding + delta * axis -> mapper -> vocoder "
                                   "(latent), WORLD prosody shift (prosody), or both. "
                                   "delta -1 is calmer, +1 angrier.")
    p.add_argument("--input", required=True, help="input audio file")
    p.add_argument("--output", required=True,
                   help="output file (with --delta) or directory (with --deltas)")
    p.add_argument("--delta", type=float, help="how far to steer: -1 calmer ... +1 angrier")
    p.add_argument("--deltas", help="a sweep, e.g. -1,-0.5,0,0.5,1")
    add_steering_arguments(p)
    p.add_argument("--stream", action="store_true",
                   help="steer block by block with bounded latency (block + lookahead), "
                        "reading the input as a live source; see emosteer.stream")
    p.add_argument("--block-ms", type=float,
                   help="--stream block length, a multiple of 20 ms (default 100)")
    p.add_argument("--lookahead-ms", type=float,
                   help="--stream future context per block, a multiple of 20 ms (default 100)")
    p.add_argument("--context-ms", type=float,
                   help="--stream past context per window, a multiple of 20 ms (default 500)")
    add_force(p)
    p.set_defaults(func=run)
