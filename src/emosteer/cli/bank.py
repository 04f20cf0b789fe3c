r"""`emosteer bank`: an emotion bank, one axis (and prosody delta) per emotion of a store.

    emosteer bank STORE --reference calm --out BANK [--emotions happy,sad] \
        [--holdout-speakers 07,08] [--prosody-speakers 01-06] [--layer 5] [-f]

Writes BANK/<emotion>/ (an ordinary axis directory, with prosody.json when the store lists its
audio), BANK/diagnostics.json and BANK/bank.json, and prints per emotion the speakers used, the
AUC (reference vs emotion on the held-out speakers, or leave-one-speaker-out without them) and
the consistency of the speakers' shifts, then the cosines between the axes. Steer with a bank:
`emosteer steer --bank BANK --emotion sad --strength 0.7` or `--emotion happy:0.5,surprise:0.5`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emosteer.artifacts import jsonable
from emosteer.bank.build import build_bank, diagnostics_table
from emosteer.cli._common import add_force, parse_list


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bank", help="build an emotion bank: an axis and prosody delta per emotion",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", type=Path, help="embedding store directory")
    p.add_argument("--reference", default="calm",
                   help="the emotion every axis starts from (default calm)")
    p.add_argument("--out", required=True, type=Path, help="output bank directory")
    p.add_argument("--emotions", default=None,
                   help="comma-separated emotions (default: every other one in the store)")
    p.add_argument("--layer", type=int, default=None,
                   help="layer of the store (default: its only one)")
    p.add_argument("--holdout-speakers", default=None,
                   help="speakers kept out of the bank, e.g. '07,08'; the AUC is measured on "
                        "them (default: leave-one-speaker-out)")
    p.add_argument("--prosody-speakers", default=None,
                   help="speakers the prosody deltas are learned from, e.g. '01-06' "
                        "(default: each axis's own speakers)")
    p.add_argument("--no-prosody", action="store_true", help="axes only, no prosody deltas")
    p.add_argument("--normalize-per-speaker", action="store_true",
                   help="average unit per-speaker shifts instead of raw ones")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="keep each clip's prosody analysis here, so a rebuild skips it")
    p.add_argument("--json", action="store_true", help="print the diagnostics as JSON")
    add_force(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    emotions = parse_list(args.emotions) if args.emotions is not None else None
    bank = build_bank(args.store, args.out, reference=args.reference, layer=args.layer,
                      emotions=emotions, holdout_speakers=parse_list(args.holdout_speakers),
                      prosody_speakers=parse_list(args.prosody_speakers) or None,
                      force=args.force, prosody=not args.no_prosody,
                      normalize_per_speaker=args.normalize_per_speaker,
                      cache_dir=args.cache_dir, progress=True)
    if args.json:
        json.dump(jsonable(bank.diagnostics), sys.stdout, indent=2)
        print()
        return 0
    n = len(bank.emotions)
    print(f"bank {args.out}: {n} emotion{'s' * (n != 1)} from {bank.reference} "
          f"({', '.join(bank.emotions)})")
    print(diagnostics_table(bank.diagnostics))
    return 0
