r"""`emosteer evaluate`: did steering work, objectively?

    emosteer evaluate --store STORE --axis AXIS --mapper MAPPER \
        --speakers ravdess_07,ravdess_08 --deltas -1,-0.5,0,0.5,1 --out DIR \
        [--modes latent,prosody,both] [--clips-per-speaker N] [--vocoder auto] \
        [--judges dnsmos,asr,speaker,emotion,ser] [--emotion-judge DIR] [--ser MODEL] \
        [--asr MODEL] [--mos dnsmos] [--json] [-f]

The held-out --speakers' source-emotion clips are steered over every delta and mode, and every
output is scored by the offline judges: DNSMOS (sig/bak/ovrl), Whisper WER (against the
corpus transcript, else the ASR of the input), speaker similarity to the input, the
calibrated P(target) of an eGeMAPS emotion judge trained here on the other speakers' real
clips (or --emotion-judge DIR) and, with --ser, a hub SER model. Reference rows: the input,
copy-synthesis through the vocoder and the real target clips. Each cell: value [95% CI] n.
By default every installed judge runs and the missing ones are listed with the reason; a judge
named in --judges that cannot run is an error. Also measured: the probe posterior (same
encoder), acoustic correlates and the fraction of the real source->target gap closed,
delta-0 round-trip fidelity and Spearman monotonicity. DIR gets evaluate.json, stimuli.json,
audio/, emotion_judge/ and cache/.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from emosteer.audio import clipping_summary
from emosteer.cli._common import add_device, add_force, parse_floats, parse_list
from emosteer.errors import ConfigError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="objective evaluation of steering on held-out speakers",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True, type=Path, help="embedding store (labelled)")
    p.add_argument("--axis", type=Path, default=None,
                   help="axis directory (with prosody.json for the prosody/both modes)")
    p.add_argument("--bank", type=Path, default=None,
                   help="an emotion bank instead of --axis: each emotion is steered to and "
                        "judged by a multi-class judge trained on the other speakers "
                        "(default --deltas 0,0.5,1 --modes prosody)")
    p.add_argument("--emotions", default=None, help="with --bank: these emotions only")
    p.add_argument("--mapper", type=Path, default=None,
                   help="mapper directory (needed for the latent and both modes)")
    p.add_argument("--speakers", required=True,
                   help="held-out speakers, as the store names them (ravdess_07) or bare (07)")
    p.add_argument("--deltas", default=None,
                   help="comma-separated deltas (default -1,-0.5,0,0.5,1; 0,0.5,1 with --bank)")
    p.add_argument("--modes", default=None,
                   help="some of latent,prosody,both, each optionally with its latent decoder "
                        "(differential, the default; envelope; full): e.g. latent,latent:full,"
                        "both,both:envelope compares decoders on the same clips "
                        "(default latent,prosody,both; prosody with --bank)")
    p.add_argument("--clips-per-speaker", type=int, default=None,
                   help="evaluate this many source clips per speaker (seeded pick; default all)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--vocoder", default="auto", help="vocoder name or directory (default auto)")
    p.add_argument("--model", default=None, help="encoder override (default: the store's)")
    p.add_argument("--prosody", type=Path, default=None,
                   help="prosody delta JSON (default: AXIS/prosody.json)")
    p.add_argument("--frames", default="all", choices=("all", "voiced"),
                   help="which frames the latent push moves")
    p.add_argument("--seed", type=int, default=0, help="clip pick and bootstrap seed")
    p.add_argument("--judges", default=None,
                   help="comma-separated judges among dnsmos,asr,speaker,emotion,ser, or 'none' "
                        "(default: every installed judge)")
    p.add_argument("--emotion-judge", type=Path, default=None,
                   help="a saved emotion judge directory (default: train one on the training "
                        "speakers' real clips)")
    p.add_argument("--ser", default=None,
                   help="hub SER model for the ser judge (Hugging Face audio-classification id or "
                        "directory)")
    p.add_argument("--asr", default=None,
                   help="faster-whisper model name or directory for the asr judge "
                        "(default: the bundled tiny.en)")
    p.add_argument("--mos", default=None,
                   help="legacy: 'dnsmos' also fills external.mos from the dnsmos judge")
    p.add_argument("--json", action="store_true", help="print evaluate.json on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device(p)
    add_force(p)
    p.set_defaults(func=run)


def _fmt(cell) -> str:
    if not isinstance(cell, dict) or "value" not in cell:
        return "n/m"
    ci = cell.get("ci")
    text = f"{cell['value']:.3f}" + (f" [{ci[0]:.3f},{ci[1]:.3f}]" if ci else "")
    return text + (f" n={cell['n']}" if cell.get("n") is not None else "")


# (heading, judge, metric) of the compact table's judge columns
COLUMNS = (("DNSMOS ovrl", "dnsmos", "ovrl"), ("DNSMOS sig", "dnsmos", "sig"),
           ("DNSMOS bak", "dnsmos", "bak"), ("WER", "asr", "wer"),
           ("speaker cos", "speaker", "cosine"), ("emotion P(tgt)", "emotion", "p_target"),
           ("SER P(tgt)", "ser", "p_target"))
WIDTH = 28


def _line(lead: str, cells) -> str:
    return lead + " ".join(f"{_fmt(c):{WIDTH}}" for c in cells).rstrip()


def print_report(report: dict, path: Path) -> None:
    """The compact console view of evaluate.json: every judge with n and CI."""
    print(f"{path}: {len(report['clips'])} clips, {len(report['skipped'])} skipped "
          f"({report['encoder_note']})")
    judges = report.get("judges") or {}
    for name, why in (judges.get("skipped") or {}).items():
        print(f"# judge {name}: not run ({why})")
    cols = [c for c in COLUMNS if c[1] in judges.get("run", [])]
    emo = report.get("emotion_judge") or {}
    if "auc" in emo:
        print(f"emotion judge ({emo.get('status')}, {emo.get('features')}): "
              f"AUC {emo['auc']:.3f} on the real {emo['source']}/{emo['target']} clips of "
              f"{', '.join(emo.get('calibration_speakers') or [])}; P({emo['target']}) real "
              f"{emo['source']} {_fmt(emo['p_target_real_source'])}, real {emo['target']} "
              f"{_fmt(emo['p_target_real_target'])}")
    head = ["probe posterior (same encoder)", *(h for h, _, _ in cols)]
    print(f"{'row':22} " + " ".join(f"{h:{WIDTH}}" for h in head).rstrip())
    for ref in report.get("references") or []:
        cells = [None, *(ref["judges"][j][m] for _, j, m in cols)]
        print(_line(f"{ref['kind']:22} ", cells))
    for row in report["table"]:
        cells = [row["posterior"], *(row["judges"][j][m] for _, j, m in cols)]
        print(_line(f"{row['mode']:8} {row['delta']:+6.2f}{'':7} ", cells))
    fid = report["fidelity"]
    print("round trip: " + ", ".join(f"{k} {_fmt(fid[k])}" for k in ("mcd_db", "pesq", "stoi")))


def _judges(value: str | None) -> tuple[str, ...] | None:
    if value is None or value.strip().lower() in ("", "all", "default"):
        return None
    if value.strip().lower() == "none":
        return ()
    return tuple(dict.fromkeys(j.lower() for j in parse_list(value)))


@clipping_summary()  # one line for all clipping files, not one per file
def run(args: argparse.Namespace) -> int:
    from emosteer.artifacts import refuse_overwrite
    from emosteer.evaluation.evaluate import EVALUATE_JSON, EvaluateConfig, evaluate

    if (args.axis is None) == (args.bank is None):
        raise ConfigError("give exactly one of --axis and --bank")
    if args.bank is not None:
        return run_bank(args)
    modes = parse_list(args.modes or "latent,prosody,both")
    if any(m.partition(":")[0] in ("latent", "both") for m in modes) and args.mapper is None:
        raise ConfigError("--modes latent/both need --mapper")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a directory")
    refuse_overwrite(args.out / EVALUATE_JSON, args.force)
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # one line per clip otherwise
    cfg = EvaluateConfig(speakers=parse_list(args.speakers),
                         deltas=parse_floats(args.deltas or "-1,-0.5,0,0.5,1"),
                         modes=modes, clips_per_speaker=args.clips_per_speaker, seed=args.seed,
                         vocoder=args.vocoder, model=args.model, frames=args.frames,
                         ser=args.ser, asr=args.asr, mos=args.mos,
                         judges=_judges(args.judges),
                         emotion_judge=str(args.emotion_judge) if args.emotion_judge else None)
    report = evaluate(args.store, args.axis, args.mapper, args.out, cfg, prosody=args.prosody,
                      device=args.device, force=args.force, progress=not args.no_progress)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print_report(report, args.out / EVALUATE_JSON)
    return 0


def run_bank(args: argparse.Namespace) -> int:
    from emosteer.evaluation.bank_eval import (
        BANK_EVAL_JSON,
        BankEvalConfig,
        bank_table,
        evaluate_bank,
    )

    modes = tuple(parse_list(args.modes or "prosody"))
    if any(m.partition(":")[0] in ("latent", "both") for m in modes) and args.mapper is None:
        raise ConfigError("--modes latent/both need --mapper")
    judges = _judges(args.judges)
    cfg = BankEvalConfig(speakers=tuple(parse_list(args.speakers)),
                         deltas=parse_floats(args.deltas or "0,0.5,1"), modes=modes,
                         emotions=tuple(parse_list(args.emotions)) if args.emotions else None,
                         clips_per_speaker=args.clips_per_speaker, vocoder=args.vocoder,
                         seed=args.seed,
                         **({} if judges is None else {"judges": judges}))
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    result = evaluate_bank(args.store, args.bank, args.out, cfg, mapper_dir=args.mapper,
                           device=args.device, force=args.force, progress=not args.no_progress)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.out / BANK_EVAL_JSON}: {len(result['clips'])} clips, "
          f"{len(result['skipped'])} skipped")
    print(bank_table(result), end="")
    return 0
