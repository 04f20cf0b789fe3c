r"""`emosteer judge`: score anyone's audio with the offline judges.

    emosteer judge FILE... [--judges dnsmos,asr,speaker,emotion,ser] [--ref-text T]
        [--ref-wav W] [--emotion-judge DIR] [--ser MODEL] [--asr MODEL] [--json]

dnsmos: DNSMOS P.835 (SIG, BAK, OVRL); asr: Whisper WER/CER against --ref-text (else against
the ASR of --ref-wav); speaker: resemblyzer cosine to --ref-wav; emotion: a trained emosteer
emotion judge (--emotion-judge DIR); ser: a Hugging Face audio-classification model. By default
every judge that is installed and configured runs; the others are listed with the reason.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("judge", help="score audio files with the offline judges",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path, help="audio files")
    p.add_argument("--judges", default=None, help="comma-separated judges (default: all usable)")
    p.add_argument("--ref-text", default=None, help="the transcript, for WER/CER")
    p.add_argument("--ref-wav", type=Path, default=None,
                   help="reference clip: speaker similarity, and the ASR reference without --ref-text")
    p.add_argument("--emotion-judge", type=Path, default=None, help="trained emotion judge directory")
    p.add_argument("--ser", default=None, help="hub id or directory of an audio-classification model")
    p.add_argument("--asr", default=None, help="faster-whisper model name or directory "
                   "(default: the bundled tiny.en)")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.set_defaults(func=run)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def run(args: argparse.Namespace) -> int:
    from emosteer.evaluation.panel import judge_files

    result = judge_files(args.files, args.judges, ref_text=args.ref_text, ref_wav=args.ref_wav,
                         emotion_model=args.emotion_judge, ser_model=args.ser,
                         asr_model=args.asr)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        for name, why in result["skipped"].items():
            print(f"# {name}: not run ({why})")
        for row in result["files"]:
            if "error" in row:
                print(f"{row['path']}: skipped ({row['error']})")
                continue
            parts = [f"{j}.{k}={_fmt(v)}" for j, s in row["scores"].items() for k, v in s.items()
                     if k not in ("hypothesis", "reference")]
            print(f"{row['path']}: " + " ".join(parts))
    return 1 if any("error" in r for r in result["files"]) else 0
