r"""`emosteer app`: an interactive page to steer clips and TTS along saved axes.

    emosteer app --run demo-out --axis other=runs/x/axis --bank moods=runs/bank \
        --emotion-judge demo-out/evaluate/emotion_judge --port 7860

Only the axes named here can be chosen in the page; it never takes a path from a visitor.
Every output is scored by the offline judges that are installed: DNSMOS, and P(target) from
--emotion-judge (or a trained judge saved beside the axis, e.g. a run's evaluate/emotion_judge).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from emosteer.app.core import AppConfig, SteeringApp, parse_axis_specs
from emosteer.app.ui import launch, upload_roots
from emosteer.cli._common import add_device

log = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    cfg = AppConfig(max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds,
                    concurrency=args.concurrency, queue_size=args.queue_size,
                    vocoder=args.vocoder, device=args.device, bf16=args.bf16,
                    host=args.host, port=args.port, emotion_judge=args.emotion_judge)
    axes = parse_axis_specs(args.run or [], args.axis or [], args.bank or [])
    app = SteeringApp(axes, cfg, upload_roots())
    log.info("axes: %s", ", ".join(f"{n} ({e.axis_dir})" for n, e in axes.items()))
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: anyone who can reach it can use this machine's CPU/GPU",
                    cfg.host)
    launch(app, block=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("app", help="interactive steering page (Gradio)",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", metavar="DIR",
                   help="a run directory (its axis/ and mapper/); the name shown is DIR's name. "
                        "Repeatable")
    p.add_argument("--axis", action="append", metavar="NAME=DIR",
                   help="an axis directory under a name (mapper: DIR/../mapper). Repeatable")
    p.add_argument("--bank", action="append", metavar="NAME=DIR",
                   help="an emotion bank (`emosteer bank`): one axis NAME.<emotion> per emotion "
                        "(mapper: DIR/../mapper). Repeatable")
    p.add_argument("--emotion-judge", type=Path, metavar="DIR",
                   help="a saved emotion judge (e.g. a run's evaluate/emotion_judge) for the "
                        "P(target) shown with every output (default: one saved beside the "
                        "axis, if any)")
    p.add_argument("--vocoder", default=AppConfig.vocoder,
                   help="auto (default: hifigan-universal if installed and the mels match, else "
                        "griffinlim), hifigan-universal, griffinlim, a jik876 HiFi-GAN "
                        "directory or a safetensors export")
    p.add_argument("--host", default=AppConfig.host, help=f"bind address (default {AppConfig.host})")
    p.add_argument("--port", type=int, help="port (default: Gradio's, 7860 or the next free)")
    p.add_argument("--max-upload-mb", type=float, default=AppConfig.max_upload_mb,
                   help=f"upload size cap in MB (default {AppConfig.max_upload_mb:g})")
    p.add_argument("--max-seconds", type=float, default=AppConfig.max_seconds,
                   help=f"upload duration cap in s (default {AppConfig.max_seconds:g})")
    p.add_argument("--concurrency", type=int, default=AppConfig.concurrency,
                   help="requests processed at once; others wait in the queue")
    p.add_argument("--queue-size", type=int, default=AppConfig.queue_size, help="longest queue before refusing")
    add_device(p)
    p.set_defaults(func=run)
