"""`emosteer train-mapper`: train the SSL-frames -> mel mapper on a corpus (and/or extra audio).

    emosteer train-mapper /data/ravdess --format ravdess --model facebook/wav2vec2-base \
        --layer 5 --out mappers/w2v2-l5 --speakers 01-06 --test-speakers 07,08 --max-minutes 15

Resumable: rerunning the same command after a kill continues from the last epoch checkpoint in
OUT/checkpoint; encoded utterances are cached in OUT/cache. -f discards a finished mapper and
its checkpoint (the cache is kept: its keys name everything it depends on). Fine-tune an
existing mapper on unlabelled speech (e.g. a TTS voice) with --init MAPPER --extra-audio DIR.

Distributed: the same command under `accelerate launch --multi_gpu --num_processes N
$(which emosteer) train-mapper ...` (CPUs: see `emosteer extract --help`) encodes the utterances sharded over the processes and trains with DDP
(--batch-size is the global batch of one step; --grad-accum splits it into micro-batches; --bf16
is bf16 mixed precision on CUDA and ignored on CPU). --device is then accelerate's per process.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path

from emosteer.cli._common import add_device, add_force, parse_list
from emosteer.errors import ConfigError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclass(frozen=True)
class _Audio:
    """An unlabelled recording from --extra-audio: all that data prep needs."""

    utt_id: str
    path: Path
    speaker: str


def register(subparsers) -> None:
    from emosteer.training import TrainConfig

    d = TrainConfig()
    p = subparsers.add_parser(
        "train-mapper", help="train the SSL-frames -> mel mapper (resumable)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, nargs="?", default=None,
                   help="corpus directory (or manifest CSV for --format csv); optional with "
                        "--extra-audio")
    p.add_argument("--format", default=None, help="corpus format: cremad, ravdess, emodb, tess, csv")
    p.add_argument("--model", required=True, help="SSL model: hub id or local directory")
    p.add_argument("--random-init", action="store_true", help="random-init encoder (a control)")
    p.add_argument("--layer", type=int, default=5, help="SSL layer to map from (default 5)")
    p.add_argument("--out", required=True, type=Path, help="output mapper directory")
    p.add_argument("--speakers", default=None,
                   help="train/validate on these speakers only, e.g. 'ravdess_01,02' or '01-06'")
    p.add_argument("--val-speakers", default=None, help="validation speakers (default: a seeded 20%%)")
    p.add_argument("--test-speakers", default=None,
                   help="unseen speakers: excluded from training, MCD reported in train_report.json")
    p.add_argument("--mel", default="hifigan22k", choices=("hifigan22k", "ssl16k"),
                   help="target mel definition (default hifigan22k: 22.05 kHz, hop 256)")
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


def _expand(tokens: tuple[str, ...]) -> list[str]:
    """'01-06' -> 01..06 (zero padding kept); other tokens unchanged."""
    out: list[str] = []
    for t in tokens:
        a, sep, b = t.partition("-")
        if sep and a.isdigit() and b.isdigit() and int(a) <= int(b):
            out.extend(str(i).zfill(len(a)) for i in range(int(a), int(b) + 1))
        else:
            out.append(t)
    return out


def _select(spec: str | None, speakers: set[str], flag: str) -> set[str]:
    """Speakers named in `spec`, by full name ('ravdess_07') or corpus-less suffix ('07')."""
    chosen: set[str] = set()
    for tok in _expand(parse_list(spec)):
        hits = {s for s in speakers if s == tok or s.endswith(f"_{tok}")}
        if not hits:
            raise ConfigError(f"{flag}: no speaker {tok!r} in the data ({len(speakers)} speakers)")
        chosen |= hits
    return chosen


def _extra_audio(root: Path) -> list[_Audio]:
    if not root.is_dir():
        raise ConfigError(f"--extra-audio {root}: not a directory")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ConfigError(f"--extra-audio {root}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return [_Audio(f"extra/{p.relative_to(root).with_suffix('')}", p, f"extra_{root.name}")
            for p in files]


def run(args: argparse.Namespace) -> int:
    from emosteer.artifacts import load_config, refuse_overwrite
    from emosteer.mapper import (
        CONFIG_FILE,
        WEIGHTS_FILE,
        MapperConfig,
        prepare_examples,
    )
    from emosteer.mapper_train import train_mapper
    from emosteer.mel import HIFIGAN_22K, SSL_16K
    from emosteer.training import TrainConfig

    if args.root is None and args.extra_audio is None:
        raise ConfigError("give a corpus (ROOT --format F) and/or --extra-audio DIR")
    if args.root is not None and not args.format:
        raise ConfigError("--format is required with a corpus")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a directory")
    refuse_overwrite(args.out / WEIGHTS_FILE, args.force)
    train_cfg = TrainConfig(lr=args.lr, batch_size=args.batch_size, max_epochs=args.epochs,
                            patience=args.patience, max_minutes=args.max_minutes, seed=args.seed,
                            grad_accum=args.grad_accum)
    mel = {"hifigan22k": HIFIGAN_22K, "ssl16k": SSL_16K}[args.mel]
    init_cfg = load_config(MapperConfig, args.init / CONFIG_FILE) if args.init else None
    if init_cfg is not None and (init_cfg.layer != args.layer or init_cfg.mel_config != mel):
        raise ConfigError(f"--init {args.init}: trained on layer {init_cfg.layer} with "
                          f"{init_cfg.mel_config}; pass the same --layer and --mel")

    utts = []
    if args.root is not None:
        from emosteer.corpora import scan_corpus

        utts = scan_corpus(args.root, args.format)
    all_speakers = {u.speaker for u in utts}
    test = _select(args.test_speakers, all_speakers, "--test-speakers")
    pool = (_select(args.speakers, all_speakers, "--speakers") if args.speakers
            else all_speakers - test)
    if pool & test:
        raise ConfigError(f"--speakers and --test-speakers overlap: {sorted(pool & test)}")
    val = _select(args.val_speakers, pool, "--val-speakers")
    extra = _extra_audio(args.extra_audio) if args.extra_audio else []
    train_utts = [u for u in utts if u.speaker in pool] + extra
    test_utts = [u for u in utts if u.speaker in test]

    from emosteer.distributed import Dist
    from emosteer.encoders import load_encoder

    dist = Dist.from_env(args.device, args.bf16)
    encoder = load_encoder(args.model, layers=(args.layer,), device=dist.device, bf16=args.bf16,
                           random_init=args.random_init, seed=args.seed)
    progress = not args.no_progress and dist.is_main
    cache = args.out / "cache"
    if dist.distributed:  # each rank fills the shared cache with its share; then all read it
        every = train_utts + test_utts
        prepare_examples([every[i] for i in dist.shard(len(every))], encoder, args.layer, mel,
                         cache, progress=progress)
        dist.barrier()
    examples = prepare_examples(train_utts, encoder, args.layer, mel, cache, progress=progress)
    tests = prepare_examples(test_utts, encoder, args.layer, mel, cache, progress=progress)
    if init_cfg is not None:
        cfg = init_cfg
    else:
        ec = encoder.config
        cfg = MapperConfig.for_mel(mel, in_dim=ec.hidden_size, model=ec.model, layer=args.layer,
                                   encoder_random_init=ec.random_init, in_rate=ec.frame_rate,
                                   hidden=args.hidden, n_blocks=args.blocks,
                                   n_transformer_layers=args.transformer_layers,
                                   use_prosody=not args.no_prosody)
    if args.force and dist.is_main and (args.out / "checkpoint").exists():
        shutil.rmtree(args.out / "checkpoint")
    dist.barrier()
    _, report = train_mapper(examples, cfg, args.out, train_cfg=train_cfg,
                             val_speakers=sorted(val) or None,
                             train_only_speakers={u.speaker for u in extra}, init=args.init,
                             test_examples=tests, progress=progress, dist=dist)
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
