"""`emosteer axis`: build emotion axes from an embedding store, or wrap a bare .npy vector.

    emosteer axis STORE --layer 5 --source happy --target angry --out AXIS [--loso] [--json]
    emosteer axis STORE --layer 5 --source neutral --target angry,happy,sad --out AXES
    emosteer axis --from-npy emotion_axis_layer5.npy --model facebook/wav2vec2-base --layer 5 \
        --source calm --target angry --out AXIS

One target writes one axis directory (axis.safetensors + axis.json) at --out. Several targets
write a directory of axes, --out/<target>/, plus --out/axes.json listing them.

From a store that knows each clip's audio (an extracted store, not an import), each axis
directory also gets prosody.json, the source->target ProsodyDelta learned from the axis's own
speakers, so `steer --mode prosody --axis AXIS` works at once; --no-prosody skips it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from emosteer.artifacts import refuse_overwrite
from emosteer.bank.build import build_axis_dirs
from emosteer.cli._common import add_force, parse_list
from emosteer.errors import ArtifactError, ConfigError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "axis", help="build an emotion axis from a store (or wrap a .npy vector)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", nargs="?", help="embedding store directory")
    p.add_argument("--layer", type=int, required=True, help="layer the axis lives in")
    p.add_argument("--source", required=True, help="source (reference) emotion, e.g. neutral")
    p.add_argument("--target", required=True,
                   help="target emotion, or several comma-separated (one axis each)")
    p.add_argument("--out", required=True, type=Path, help="output axis directory")
    p.add_argument("--normalize-per-speaker", action="store_true",
                   help="average unit per-speaker shifts (each speaker weighs the same) instead of raw ones")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--holdout-speakers", default=None,
                   help="comma-separated speakers kept out of the axis; report AUC on them")
    g.add_argument("--loso", action="store_true",
                   help="report leave-one-speaker-out AUC (the saved axis uses all speakers)")
    p.add_argument("--from-npy", type=Path, default=None, metavar="VEC.npy",
                   help="wrap a bare (D,) vector instead of computing from a store")
    p.add_argument("--model", default=None, help="model id the --from-npy vector belongs to")
    p.add_argument("--calibration", type=float, default=None,
                   help="--from-npy: shift along the axis that delta=1 means "
                        "(default: the vector's norm, i.e. delta=1 adds the vector)")
    p.add_argument("--no-prosody", action="store_true",
                   help="do not learn the source->target prosody delta (AXIS/prosody.json) "
                        "from the store's audio")
    p.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    add_force(p)
    p.set_defaults(func=run)


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    try:
        v = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: not a numpy .npy array ({e})") from e
    v = np.squeeze(v)
    if v.ndim != 1 or not np.issubdtype(v.dtype, np.floating):
        raise ArtifactError(f"{path}: expected a 1-D float vector, got {v.dtype} {v.shape}")
    return v


def _wrap(args, targets: tuple[str, ...]) -> list[dict]:
    from emosteer.axes import wrap_vector

    if args.store:
        raise ConfigError("give either STORE or --from-npy, not both")
    if not args.model:
        raise ConfigError("--from-npy needs --model (the model id the vector belongs to)")
    if len(targets) != 1:
        raise ConfigError("--from-npy wraps one vector: give a single --target")
    refuse_overwrite(args.out, args.force)
    axis = wrap_vector(_load_npy(args.from_npy), args.model, args.layer, args.source,
                       targets[0], calibration=args.calibration)
    axis.save(args.out)
    return [{"source": args.source, "target": targets[0], "out": str(args.out),
             "config": axis.config, "diagnostics": axis.diagnostics}]


def _from_store(args, targets: tuple[str, ...]) -> list[dict]:
    if args.calibration is not None or args.model:
        raise ConfigError("--model/--calibration only apply with --from-npy")
    results = build_axis_dirs(args.store, args.layer, args.source, targets, args.out,
                              force=args.force,
                              holdout_speakers=parse_list(args.holdout_speakers),
                              loso=args.loso, normalize_per_speaker=args.normalize_per_speaker,
                              prosody=not args.no_prosody, progress=True)
    return [r.report() for r in results]


def _print_human(results: list[dict]) -> None:
    for r in results:
        d = r["diagnostics"]
        line = (f"{r['source']}->{r['target']}: saved {r['out']}  norm={d['norm']:.4g} "
                f"calibration={d['calibration']:.4g}")
        if "mean_pairwise_cosine" in d:
            line += (f"  speakers={d['n_speakers']} pairwise_cos={d['mean_pairwise_cosine']:.3f}"
                     f" resultant={d['resultant_length']:.3f}")
        print(line)
        if "holdout" in r:
            h = r["holdout"]
            print(f"  {h['scheme']} AUC on {len(h['test_speakers'])} unseen speaker(s), "
                  f"{h['n_test']} clips: raw={h['auc_raw']:.4f} "
                  f"speaker-centred={h['auc_centred']:.4f}")
        if r.get("prosody"):
            print(f"  prosody: saved {r['prosody']} (steer --mode prosody/both --axis uses it)")
        elif "prosody_note" in r:
            print(f"  prosody: none ({r['prosody_note']})")


def run(args) -> int:
    from emosteer.artifacts import jsonable

    targets = parse_list(args.target)
    if not targets:
        raise ConfigError("--target: need at least one emotion")
    if args.source in targets:
        raise ConfigError(f"--target includes the source emotion {args.source!r}")
    if args.from_npy is not None:
        results = _wrap(args, targets)
    elif args.store:
        results = _from_store(args, targets)
    else:
        raise ConfigError("need a STORE directory or --from-npy VEC.npy")
    if args.json:
        json.dump(jsonable({"axes": results}), sys.stdout, indent=2)
        print()
    else:
        _print_human(results)
    return 0
