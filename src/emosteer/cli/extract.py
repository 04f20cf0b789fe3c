r"""`emosteer extract`: encode a corpus with an SSL model into an embedding store.

    emosteer extract /data/ravdess --format ravdess --model facebook/wav2vec2-base \
        --layers 0-12 --out stores/ravdess-w2v2 [--pooling energy] [--frame-layers 5]

Resumable: rerunning the same command after an interruption encodes only what is missing.
-f discards an existing (finished or unfinished) store at --out and starts over.

Distributed: the same command under `accelerate launch --multi_gpu --num_processes N
$(which emosteer) extract ...` shards the utterances over N processes (each on accelerate's
device for it; --device is then ignored) and merges them into the same store one process would
write. On CPUs, N gloo processes come from the same launcher on a machine without CUDA or with
ACCELERATE_USE_CPU=true (accelerate's `--cpu --num_processes N` starts one process unless MPI is
set up). --out must be on a filesystem every process sees.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emosteer.audio import clipping_summary
from emosteer.cli._common import (
    POOLING_CHOICES,
    add_device,
    add_force,
    parse_layers,
    parse_list,
)
from emosteer.errors import ConfigError


def register(subparsers) -> None:
    from emosteer.corpora.formats import FORMATS

    p = subparsers.add_parser(
        "extract", help="encode a corpus into an embedding store (resumable)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, help="corpus directory (or manifest CSV for --format csv)")
    p.add_argument("--format", required=True, choices=FORMATS, help="corpus format")
    p.add_argument("--model", required=True, help="hub id or local model directory")
    p.add_argument("--layers", default=None,
                   help="layers to keep, e.g. '5', '0-12', '3,5,7-9' (default: all)")
    p.add_argument("--out", required=True, type=Path, help="output store directory")
    p.add_argument("--pooling", default="mean", choices=POOLING_CHOICES, metavar="POOLING",
                   help="how frames are pooled per utterance: %(choices)s (default mean)")
    p.add_argument("--frame-layers", default=None,
                   help="also store fp16 frame sequences for these layers (e.g. '5')")
    p.add_argument("--random-init", action="store_true",
                   help="random-init control: same architecture, weights drawn with --seed")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-init (default 0)")
    p.add_argument("--batch", "--batch-size", dest="batch_size", type=int, default=1,
                   metavar="N",
                   help="utterances encoded together as one padded batch, sorted by length so "
                        "that little is padded; the result equals one at a time up to float "
                        "rounding (default 1, the fastest on a CPU, where big tensors fall out "
                        "of cache; batches pay on a GPU)")
    p.add_argument("--int8", action="store_true",
                   help="dynamic int8 quantisation of the transformer's linear layers (CPU, not "
                        "with bf16): faster on CPUs without native bf16, at a small accuracy "
                        "cost (README, Benchmarks)")
    p.add_argument("--emotions", default=None, help="only these emotions (comma-separated)")
    p.add_argument("--speakers", default=None, help="only these speakers (comma-separated)")
    p.add_argument("--limit", type=int, default=None, help="only the first N utterances")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device(p)
    add_force(p)
    p.set_defaults(func=run)


@clipping_summary()  # one line for all clipping files, not one per file
def run(args: argparse.Namespace) -> int:
    from emosteer.embeddings.extract import extract_corpus

    if args.int8 and args.bf16_mode == "on":
        raise ConfigError("--int8 and --bf16 on: choose one (--int8 runs without bf16)")
    store = extract_corpus(
        args.root, args.format, args.model, args.out,
        layers=parse_layers(args.layers) if args.layers else None,
        frame_layers=parse_layers(args.frame_layers) if args.frame_layers else (),
        emotions=parse_list(args.emotions), speakers=parse_list(args.speakers), limit=args.limit,
        pooling=args.pooling, batch_size=args.batch_size, random_init=args.random_init,
        seed=args.seed, device=args.device, bf16=args.bf16 and not args.int8, force=args.force,
        progress=not args.no_progress, int8=args.int8)
    if store is not None:
        print(f"{store.root}: {len(store)} utterances, layers {list(store.layers)}, "
              f"{len(store.skipped)} skipped")
    return 0
