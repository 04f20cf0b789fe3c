"""`emosteer train-mapper`: train the SSL-frames -> mel mapper on a corpus (and/or extra audio).

    emosteer train-mapper /data/ravdess --format ravdess --model facebook/wav2vec2-base \
        --layer 5 --out mappers/w2v2-l5 --speakers 01-06 --test-speakers 07,08 --max-minutes 15

Resumable: rerunning the same command after a kill continues from the last epoch checkpoint in
OUT/checkpoint; encoded utterances are cached in OUT/cache. -f discards a finished mapper and
its checkpoint (the cache is kept: its keys name everything it depends on). Fine-tune an
existing mapper on unlabelled speech (e.g. a TTS voice) with --init MAPPER --extra-audio DIR.
--vocoder microsoft/speecht5_hifigan (or charactr/vocos-mel-24khz, a vocoder name or directory)
makes the mapper emit exactly the mels that vocoder takes; steer with the same --vocoder.

Distributed: the same command under `accelerate launch --multi_gpu --num_processes N
$(which emosteer) train-mapper ...` (CPUs: see `emosteer extract --help`) encodes the utterances sharded over the processes and trains with DDP
(--batch-size is the global batch of one step; --grad-accum splits it into micro-batches; --bf16
is bf16 mixed precision on CUDA and ignored on CPU). --device is then accelerate's per process.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emosteer.audio import clipping_summary
from emosteer.cli._common import add_device, add_force, parse_list


def register(subparsers) -> None:
    from emosteer.corpora.formats import FORMATS
    from emosteer.training import TrainConfig

    d = TrainConfig()
    p = subparsers.add_parser(
        "train-mapper", help="train the SSL-frames -> mel mapper (resumable)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, nargs="?", default=None,
                   help="corpus directory (or manifest CSV for --format csv); optional with "
                        "--extra-audio")
    p.add_argument("--format", default=None, choices=FORMATS, help="corpus format")
    p.add_argument("--model", required=True, help="SSL model: hub id or local directory")
    p.add_argument("--random-init", action="store_true", help="random-init encoder (a control)")
    p.add_argument("--layer", type=int, default=5, help="SSL layer to map from (default 5)")
    p.add_argument("--out", required=True, type=Path, help="output mapper directory")
    p.add_argument("--speakers", default=None,
                   help="train/validate on these speakers only, e.g. 'ravdess_01,02' or '01-06'")
    p.add_argument("--val-speakers", default=None, help="validation speakers (default: a seeded 20%%)")
    p.add_argument("--test-speakers", default=None,
                   help="unseen speakers: excluded from training, MCD reported in train_report.json")
    p.add_argument("--mel", default=None, choices=("hifigan22k", "ssl16k"),
                   help="target mel definition (default hifigan22k: 22.05 kHz, hop 256, or "
                        "--vocoder's)")
    p.add_argument("--vocoder", default=None, metavar="ID|NAME|DIR",
                   help="target exactly this vocoder's mel definition: a hub id "
                        "(microsoft/speecht5_hifigan, charactr/vocos-mel-24khz), a registered "
                        "name (e.g. hifigan-universal) or a local directory (jik876, export, or "
                        "the hub repository's files); it is loaded once to read it. With --mel "
                        "too, the two must agree")
    p.add_argument("--extra-audio", type=Path, default=None,
                   help="directory of unlabelled audio added to the training set")
    p.add_argument("--init", type=Path, default=None, help="fine-tune this existing mapper")
    p.add_argument("--max-minutes", type=float, default=d.max_minutes,
                   help=f"wall-time budget of the training loop, encoding not included "
                        f"(default {d.max_minutes:g})")
    p.add_argument("--epochs", type=int, default=d.max_epochs, help=f"max epochs (default {d.max_epochs})")
    p.add_argument("--patience", type=int, default=d.patience,
                   help=f"early-stopping patience in epochs (default {d.patience})")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"utterances per optimizer step, all processes together (default {d.batch_size})")
    p.add_argument("--grad-accum", type=int, default=d.grad_accum,
                   help=f"micro-batches per optimizer step (default {d.grad_accum})")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--hidden", type=int, default=256, help="mapper channels (default 256)")
    p.add_argument("--blocks", type=int, default=6, help="residual conv blocks (default 6)")
    p.add_argument("--transformer-layers", type=int, default=0)
    p.add_argument("--no-prosody", action="store_true", help="no F0/voicing/energy conditioning")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_device(p)
    add_force(p)
    p.set_defaults(func=run)


@clipping_summary()  # one line for all clipping files, not one per file
def run(args: argparse.Namespace) -> int:
    from emosteer.synthesis.mel import HIFIGAN_22K, SSL_16K
    from emosteer.synthesis.train import train_mapper_on_corpus
    from emosteer.training import TrainConfig

    train_cfg = TrainConfig(lr=args.lr, batch_size=args.batch_size, max_epochs=args.epochs,
                            patience=args.patience, max_minutes=args.max_minutes, seed=args.seed,
                            grad_accum=args.grad_accum)
    named = {"hifigan22k": HIFIGAN_22K, "ssl16k": SSL_16K}[args.mel] if args.mel else None
    report = train_mapper_on_corpus(
        args.out, args.model, args.layer, root=args.root, format=args.format,
        extra=args.extra_audio, speakers=parse_list(args.speakers),
        val_speakers=parse_list(args.val_speakers), test_speakers=parse_list(args.test_speakers),
        mel=named, vocoder=args.vocoder, mel_name=f"--mel {args.mel}", init=args.init,
        random_init=args.random_init, train_cfg=train_cfg, hidden=args.hidden,
        n_blocks=args.blocks, n_transformer_layers=args.transformer_layers,
        use_prosody=not args.no_prosody, device=args.device, bf16=args.bf16, force=args.force,
        progress=not args.no_progress)
    if report is None:  # not rank 0: it reports
        return 0
    r = report["result"]
    line = (f"{args.out}: {r['epochs']} epochs ({r['stop_reason']}), best val loss "
            f"{r['best_val']:.4f} at epoch {r['best_epoch']}")
    for key in ("val", "test"):
        if report[f"{key}_mcd_db"] is not None:
            line += f"; {key} MCD {report[f'{key}_mcd_db']:.2f} dB"
    if report.get("test_mean_mel_mcd_db") is not None:
        line += f" (mean-mel baseline {report['test_mean_mel_mcd_db']:.2f} dB)"
    print(line)
    return 0
