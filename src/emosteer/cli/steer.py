"""`emosteer steer`: push a recording along an emotion axis (latent arithmetic on SSL frames, WORLD prosody, or both)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from emosteer.audio import check_readable
from emosteer.bank.bank import bank_steerer
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
    p.add_argument("--vocoder", default="auto",
                   help="auto (default: hifigan-universal if installed and the mels match, else "
                        "griffinlim), hifigan-universal, griffinlim, a jik876 HiFi-GAN "
                        "directory or a safetensors export")
    p.add_argument("--prosody", help="ProsodyDelta JSON (default: AXIS/prosody.json)")
    p.add_argument("--bank", help="an emotion bank (`emosteer bank`): the axis and prosody are "
                                  "its --emotion's, instead of --axis/--prosody")
    p.add_argument("--emotion", help="with --bank: an emotion or a weighted mix, e.g. 'sad' or "
                                     "'happy:0.5,surprise:0.5'")
    p.add_argument("--model", help="override the encoder checkpoint (hub id or directory)")
    p.add_argument("--mode", choices=("latent", "prosody", "both"), default="latent")
    p.add_argument("--frames", choices=("all", "voiced"), default="all",
                   help="which SSL frames are pushed along the axis")
    p.add_argument("--decode", choices=("differential", "envelope", "full"),
                   default="differential",
                   help="how the latent push becomes audio: differential (default) adds the "
                        "mel change the push makes to the input's own mel, so delta 0 is copy "
                        "synthesis; envelope applies that change to WORLD's spectral envelope "
                        "(one resynthesis with the prosody shift, no vocoder); full vocodes the "
                        "mapper's own mel")
    p.add_argument("--sr", type=int, help="output sample rate (default: the vocoder's)")
    p.add_argument("--keep-level", dest="match_loudness", action="store_false",
                   help="do not match the output loudness to the input")
    add_device(p)


def resolve_artifacts(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """(axis, mapper) directories; the axis is None with --bank, which brings its own."""
    if (args.bank is None) != (args.emotion is None):
        raise ConfigError("--bank and --emotion go together")
    if args.bank and (args.axis or args.prosody):
        raise ConfigError("--bank brings the axis and prosody: drop --axis/--prosody")
    run = Path(args.run)
    axis = None if args.bank else Path(args.axis) if args.axis else run / "axis"
    mapper = Path(args.mapper) if args.mapper else run / "mapper"
    if axis is not None and not axis.exists():
        raise ConfigError(f"{axis}: no axis here; give --axis (or run `make demo` first)")
    if args.mode != "prosody" and not mapper.exists():
        raise ConfigError(f"{mapper}: no mapper here; give --mapper (or run `make demo` first)")
    return axis, (mapper if mapper.exists() else None)


def load_from_args(args: argparse.Namespace):
    from emosteer.steering.steer import Steerer

    axis, mapper = resolve_artifacts(args)
    parts = dict(mapper=mapper, vocoder=args.vocoder, model=args.model, mode=args.mode,
                 device=args.device, bf16=args.bf16, int8=args.int8)
    if args.bank:  # the bank and the mix are checked before any model loads
        return bank_steerer(args.bank, args.emotion, **parts)
    return Steerer.from_artifacts(axis=axis, prosody=args.prosody, **parts)


def run(args: argparse.Namespace) -> int:
    from emosteer.artifacts import refuse_overwrite
    from emosteer.steering.files import steer_file, sweep_targets
    from emosteer.steering.steer import SteerConfig, check_delta
    from emosteer.steering.stream import StreamConfig

    check_readable(Path(args.input))  # a missing input is known before seconds of model loading
    if args.strength is not None:  # --strength is --delta under the name a bank's user knows
        if args.delta is not None:
            raise ConfigError("give --delta or --strength, not both")
        args.delta = args.strength
    if (args.delta is None) == (args.deltas is None):
        raise ConfigError("give exactly one of --delta (or --strength) and --deltas")
    deltas = (args.delta,) if args.delta is not None else parse_floats(args.deltas)
    deltas = tuple(check_delta(d) for d in deltas)  # before any model loads
    out = Path(args.output)
    sweep = args.deltas is not None
    if sweep and out.suffix:
        raise ConfigError(f"--output {out}: with --deltas, give a directory for the sweep")
    targets = sweep_targets(args.input, out, deltas, args.mode) if sweep else [out]
    for t in targets:
        refuse_overwrite(t, args.force)
    if args.stream:
        if args.sr:
            raise ConfigError("--sr cannot be combined with --stream "
                              "(output is at the vocoder's rate)")
        geometry = {k: getattr(args, k) for k in ("block_ms", "lookahead_ms", "context_ms")
                    if getattr(args, k) is not None}  # unset: StreamConfig's defaults
        cfg = StreamConfig(mode=args.mode, decode=args.decode, frames=args.frames,
                           match_loudness=args.match_loudness, **geometry)
    else:
        cfg = SteerConfig(mode=args.mode, decode=args.decode, frames=args.frames,
                          match_loudness=args.match_loudness, sample_rate=args.sr)
    steer_file(load_from_args(args), args.input, deltas, targets, cfg,
               sweep_dir=out if sweep else None)
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
    p.add_argument("--strength", type=float,
                   help="--delta by another name: how far towards a --bank's --emotion")
    p.add_argument("--deltas", help="a sweep, e.g. -1,-0.5,0,0.5,1")
    add_steering_arguments(p)
    p.add_argument("--int8", action="store_true",
                   help="the encoder's transformer linears in dynamic int8 (CPU): faster where "
                        "bf16 is not native, frame cosine 0.9997 to fp32 (README benchmarks)")
    p.add_argument("--stream", action="store_true",
                   help="steer block by block with bounded latency (block + lookahead), "
                        "reading the input as a live source; see emosteer.steering.stream")
    p.add_argument("--block-ms", type=float,
                   help="--stream block length, a multiple of 20 ms (default 100)")
    p.add_argument("--lookahead-ms", type=float,
                   help="--stream future context per block, a multiple of 20 ms (default 100)")
    p.add_argument("--context-ms", type=float,
                   help="--stream past context per window, a multiple of 20 ms (default 500)")
    add_force(p)
    p.set_defaults(func=run)
