"""`emosteer vocoder`: inspect, convert and try vocoders.

    emosteer vocoder info hifigan-universal         # origin and licence of the packaged weights
    emosteer vocoder info griffinlim:16k            # or a jik876 / export directory
    emosteer vocoder export hifigan/UNIVERSAL_V1 vocoders/v1 [-f]
    emosteer vocoder resynth a.wav b.flac --vocoder vocoders/v1 --out resynth/ [-f]

`export` reads a jik876 checkpoint (config.json + g_XXXXXXXX, with torch.load(weights_only=True))
and writes vocoder.safetensors + vocoder.json, which load without any pickle. `resynth` is copy
synthesis (audio -> log-mel -> vocoder): the quality ceiling of any mel-based steering.
The default vocoder, auto, is hifigan-universal (jik876's pretrained UNIVERSAL_V1, from the
`vocoder` extra) when it is installed, else Griffin-Lim.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emosteer.artifacts import refuse_overwrite
from emosteer.cli._common import add_device, add_force
from emosteer.errors import ConfigError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "vocoder", help="inspect, export (jik876 -> safetensors) and try vocoders",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="vocoder_command", metavar="ACTION")

    info = sub.add_parser("info", help="describe a vocoder (name or directory)")
    info.add_argument("vocoder", help="auto, hifigan-universal, hifigan-lj, griffinlim, "
                      "griffinlim:16k, a jik876 or export directory")
    info.add_argument("--json", action="store_true", help="print JSON on stdout")
    info.set_defaults(func=run_info)

    exp = sub.add_parser("export", help="convert a jik876 HiFi-GAN checkpoint to safetensors")
    exp.add_argument("src", type=Path, help="jik876 directory (config.json + g_*) or g_ file")
    exp.add_argument("dst", type=Path, help="output directory")
    add_force(exp)
    exp.set_defaults(func=run_export)

    res = sub.add_parser("resynth", help="copy synthesis: audio -> log-mel -> vocoder -> audio")
    res.add_argument("inputs", nargs="+", type=Path, help="audio files")
    res.add_argument("--vocoder", default="auto",
                     help="vocoder name or directory (default auto: hifigan-universal if "
                          "installed, else griffinlim)")
    res.add_argument("--out", required=True, type=Path, help="output directory (<stem>.wav)")
    add_force(res)
    add_device(res)
    res.set_defaults(func=run_resynth)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def run_info(args) -> int:
    from emosteer.synthesis.vocoders import describe_vocoder, load_vocoder

    summary = describe_vocoder(load_vocoder(args.vocoder))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            if key == "origin":  # provenance of packaged weights, one line each
                print("origin:")
                for k, v in value.items():
                    print(f"  {k}: {v}")
            else:
                print(f"{key}: {value}")
    return 0


def run_export(args) -> int:
    from emosteer.synthesis.vocoders import HiFiGAN, export_vocoder, load_vocoder

    refuse_overwrite(args.dst, args.force)
    vocoder = load_vocoder(args.src)
    if not isinstance(vocoder, HiFiGAN):
        raise ConfigError(f"{args.src}: only HiFi-GAN checkpoints can be exported")
    export_vocoder(vocoder, args.dst, source=str(args.src))
    print(f"wrote {args.dst} ({vocoder.hifigan_config.upsample_initial_channel}-channel "
          f"HiFi-GAN, {vocoder.sample_rate} Hz)", file=sys.stderr)
    return 0


def run_resynth(args) -> int:
    from emosteer.synthesis.vocoders import load_vocoder, resynthesize

    vocoder = load_vocoder(args.vocoder, device=args.device)
    done = resynthesize(args.inputs, vocoder, args.out, device=args.device, bf16=args.bf16,
                        force=args.force)
    return 1 if None in done.values() else 0
