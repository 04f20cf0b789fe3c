r"""`emosteer evaluate`: did steering work, objectively?

    emosteer evaluate --store STORE --axis AXIS --mapper MAPPER \
        --speakers ravdess_07,ravdess_08 --deltas -1,-0.5,0,0.5,1 --out DIR \
        [--modes latent,prosody,both] [--clips-per-speaker N] [--vocoder griffinlim] \
        [--ser MODEL] [--asr MODEL] [--mos NAME] [--json] [-f]

The held-out --speakers' source-emotion clips are steered over every delta and mode; each output
is measured (target-emotion posterior of a probe trained on the other speakers, acoustic
correlates and the fraction of the real source->target gap closed, speaker similarity, delta-0
round-trip fidelity, Spearman monotonicity). DIR gets evaluate.json, stimuli.json and audio/.
External metrics (--ser, --asr, --mos) are off by default; one that cannot run offline is
reported as "not measured" with the reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emosteer.cli._common import add_device, add_force, parse_floats, parse_list
from emosteer.errors import ConfigError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="objective evaluation of steering on held-out speakers",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True, type=Path, help="embedding store (labelled)")
    p.add_argument("--axis", required=True, type=Path,
                   help="axis directory (with prosody.json for the prosody/both modes)")
    p.add_argument("--mapper", type=Path, default=None,
                   help="mapper directory (needed for the latent and both modes)")
    p.add_argument("--speakers", required=True,
                   help="held-out speakers, as the store names them (ravdess_07) or bare (07)")
    p.add_argument("--deltas", default="-1,-0.5,0,0.5,1", help="comma-separated deltas")
    p.add_argument("--modes", default="latent,prosody,both", help="some of latent,prosody,both")
    p.add_argument("--clips-per-speaker", type=int, default=None,
                   help="evaluate this many source clips per speaker (seeded pick; default all)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--vocoder", default="griffinlim", help="vocoder name or directory")
    p.add_argument("--model", default=None, help="encoder override (default: the store's)")
    p.add_argument("--prosody", type=Path, default=None,
                   help="prosody delta JSON (default: AXIS/prosody.json)")
    p.add_argument("--frames", default="all", choices=("all", "voiced"),
                   help="which frames the latent push moves")
    p.add_argument("--seed", type=int, default=0, help="clip pick and bootstrap seed")
    p.add_argument("--ser", default=None, help="external SER model (transformers audio-classification)")
    p.add_argument("--asr", default=None, help="faster-whisper model name or path, for WER")
    p.add_argument("--mos", default=None, help="MOS predictor (UTMOS/DNSMOS)")
    p.add_argument("--json", action="store_true", help="print evaluate.json on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device(p)
    add_force(p)
    p.set_defaults(func=run)


def _fmt(cell: dict) -> str:
    if "value" not in cell:
        return "n/m"
    ci = cell.get("ci")
    return f"{cell['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def run(args: argparse.Namespace) -> int:
    from emosteer.artifacts import refuse_overwrite
    from emosteer.evaluation.evaluate import EVALUATE_JSON, EvaluateConfig, evaluate

    modes = parse_list(args.modes)
    if any(m in ("latent", "both") for m in modes) and args.mapper is None:
        raise ConfigError("--modes latent/both need --mapper")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a directory")
    refuse_overwrite(args.out / EVALUATE_JSON, args.force)
    cfg = EvaluateConfig(speakers=parse_list(args.speakers), deltas=parse_floats(args.deltas),
                         modes=modes, clips_per_speaker=args.clips_per_speaker, seed=args.seed,
                         vocoder=args.vocoder, model=args.model, frames=args.frames,
                         ser=args.ser, asr=args.asr, mos=args.mos)
    report = evaluate(args.store, args.axis, args.mapper, args.out, cfg, prosody=args.prosody,
                      device=args.device, force=args.force, progress=not args.no_progress)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.out / EVALUATE_JSON}: {len(report['clips'])} clips, "
          f"{len(report['skipped'])} skipped ({report['encoder_note']})")
    print(f"{'mode':8} {'delta':>6}  {'posterior':28} {'median_f0_st gap':28} speaker_sim")
    for row in report["table"]:
        print(f"{row['mode']:8} {row['delta']:+6.2f}  {_fmt(row['posterior']):28} "
              f"{_fmt(row['gap_closed']['median_f0_st']):28} {_fmt(row['speaker_similarity'])}",
              file=sys.stdout)
    fid = report["fidelity"]
    print("round trip: " + ", ".join(f"{k} {_fmt(fid[k])}" for k in ("mcd_db", "pesq", "stoi")))
    return 0
