r"""`emosteer import-embeddings`: turn precomputed pooled vectors into an embedding store.

    emosteer import-embeddings embeddings.npy index.csv --layer 5 --out STORE \
        [--model facebook/wav2vec2-base --pooling norm]

INDEX.csv has one row per matrix row with at least speaker and emotion columns (optional:
sentence, intensity, corpus, path, utt_id or ravdess_file).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emosteer.cli._common import POOLING_CHOICES, add_force
from emosteer.errors import ConfigError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "import-embeddings", help="make a store from a precomputed (N, D) .npy + index CSV",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("npy", type=Path, help="(N, D) float matrix, one pooled vector per row")
    p.add_argument("index", type=Path, help="CSV with one row per vector")
    p.add_argument("--layer", type=int, required=True, help="layer the vectors come from")
    p.add_argument("--out", required=True, type=Path, help="output store directory")
    p.add_argument("--model", default="unknown", help="model id the vectors came from")
    p.add_argument("--pooling", default="norm", choices=POOLING_CHOICES, metavar="POOLING",
                   help="how the vectors were pooled: %(choices)s (default norm, as the shared "
                        "embeddings)")
    add_force(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from emosteer.embeddings.store import import_embeddings

    if args.layer < 0:
        raise ConfigError(f"--layer {args.layer}: must be non-negative")
    store = import_embeddings(args.npy, args.index, args.layer, args.out, model=args.model,
                              pooling=args.pooling, force=args.force)
    print(f"{store.root}: {len(store)} vectors of dim {store.config.hidden_size} at layer "
          f"{args.layer}")
    return 0
