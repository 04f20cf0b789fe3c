"""`emosteer vocoder`: inspect, convert and try vocoders.

    emosteer vocoder info griffinlim:16k            # or a jik876 / export directory
    emosteer vocoder export hifigan/UNIVERSAL_V1 vocoders/v1 [-f]
    emosteer vocoder resynth a.wav b.flac --vocoder vocoders/v1 --out resynth/ [-f]

`export` reads a jik876 checkpoint (config.json + g_XXXXXXXX, with torch.load(weights_only=True))
and writes vocoder.safetensors + vocoder.json, which load without any pickle. `resynth` is copy
synthesis (audio -> log-mel -> vocoder): the quality ceiling of any mel-based steering.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from emosteer.artifacts import refuse_overwrite
from emosteer.cli._common import add_device, add_force
from emosteer.errors import ConfigError, EmosteerError

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "vocoder", help="inspect, export (jik876 -> safetensors) and try vocoders",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="vocoder_command", metavar="ACTION")

    info = sub.add_parser("info", help="describe a vocoder (name or directory)")
    info.add_argument("vocoder", help="griffinlim, griffinlim:16k, a jik876 or export directory")
    info.add_argument("--json", action="store_true", help="print JSON on stdout")
    info.set_defaults(func=run_info)

    exp = sub.add_parser("export", help="convert a jik876 HiFi-GAN checkpoint to safetensors")
    exp.add_argument("src", type=Path, help="jik876 directory (config.json + g_*) or g_ file")
    exp.add_argument("dst", type=Path, help="output directory")
    add_force(exp)
    exp.set_defaults(func=run_export)

    res = sub.add_parser("resynth", help="copy synthesis: audio -> log-mel -> vocoder -> audio")
    res.add_argument("inputs", nargs="+", type=Path, help="audio files")
    res.add_argument("--vocoder", default="griffinlim", help="vocoder name or directory")
    res.add_argument("--out", required=True, type=Path, help="output directory (<stem>.wav)")
    add_force(res)
    add_device(res)
    res.set_defaults(func=run_resynth)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def describe(vocoder) -> dict:
    """A JSON-able summary of a loaded vocoder."""
    from emosteer.vocoders import HiFiGAN

    out = {"class": type(vocoder).__name__, "sample_rate": vocoder.sample_rate,
           "hop_length": vocoder.hop_length, "frame_rate": vocoder.mel_config.frame_rate,
           "mel": vocoder.mel_config.__dict__.copy()}
    if isinstance(vocoder, HiFiGAN):
        out["hifigan"] = vocoder.hifigan_config.__dict__.copy()
        out["parameters"] = sum(p.numel() for p in vocoder.parameters())
    else:
        out["n_iter"] = getattr(vocoder, "n_iter", None)
    return out


def run_info(args) -> int:
    from emosteer.vocoders import load_vocoder

    summary = describe(load_vocoder(args.vocoder))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")
    return 0


def run_export(args) -> int:
    from emosteer.vocoders import HiFiGAN, export_vocoder, load_vocoder

    refuse_overwrite(args.dst, args.force)
    vocoder = load_vocoder(args.src)
    if not isinstance(vocoder, HiFiGAN):
        raise ConfigError(f"{args.src}: only HiFi-GAN checkpoints can be exported")
    export_vocoder(vocoder, args.dst, source=str(args.src))
    print(f"wrote {args.dst} ({vocoder.hifigan_config.upsample_initial_channel}-channel "
          f"HiFi-GAN, {vocoder.sample_rate} Hz)", file=sys.stderr)
    return 0


def run_resynth(args) -> int:
    import torch
    from tqdm import tqdm

    from emosteer.audio import load_audio, save_audio
    from emosteer.mel import log_mel_spectrogram
    from emosteer.vocoders import load_vocoder

    vocoder = load_vocoder(args.vocoder, device=args.device)
    outputs = [args.out / f"{path.stem}.wav" for path in args.inputs]
    if len(set(outputs)) != len(outputs):
        raise ConfigError("two inputs share a file stem; their outputs would collide")
    for out in outputs:
        refuse_overwrite(out, args.force)
    autocast = (torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16)
                if args.bf16 else contextlib.nullcontext())
    failed = 0
    for path, out in tqdm(list(zip(args.inputs, outputs, strict=True)), desc="resynth",
                          unit="file", file=sys.stderr, disable=len(outputs) < 2):
        try:
            wav = load_audio(path, sr=vocoder.sample_rate)
            mel = log_mel_spectrogram(torch.from_numpy(wav)[None].to(args.device),
                                      vocoder.mel_config)
            with torch.inference_mode(), autocast:
                audio = vocoder(mel)[0].float().cpu().numpy()
            save_audio(out, audio, vocoder.sample_rate)
        except EmosteerError as e:  # batch job: report, skip, carry on
            log.error("skipped: %s", e)
            failed += 1
    if failed:
        log.error("%d of %d files failed", failed, len(outputs))
    return 1 if failed else 0
