"""`emosteer probe`: sweep every layer of a store for emotion structure, with controls.

    emosteer probe STORE --out DIR [--emotions angry,happy] [--reference neutral]
                   [--control-store random-init=STORE2 --control-store mfcc=STORE3] [--json]
    emosteer mfcc-store CORPUS --format ravdess --out STORE3     # the MFCC-statistics control

DIR receives metrics_vs_layer.{png,svg} (every metric with 95% bootstrap bands, controls dashed),
scatter_best_layer.{png,svg} (PCA and UMAP coloured by emotion and by speaker),
axis_cosines.{png,svg} (emotion x emotion cosines of the axes against the reference) and
probe.json with every number.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emosteer.artifacts import refuse_overwrite
from emosteer.cli._common import add_force, parse_list
from emosteer.errors import ConfigError

OUTPUTS = ("probe.json", "metrics_vs_layer.png", "scatter_best_layer.png", "axis_cosines.png")


def register(subparsers) -> None:
    from emosteer.probe import N_BOOT

    p = subparsers.add_parser(
        "probe", help="layer sweep: linear probe, axis consistency/AUC, silhouette with CIs",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", help="embedding store directory")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--emotions", default=None,
                   help="comma-separated emotions to use (default: all in the store)")
    p.add_argument("--reference", default=None,
                   help="emotion every axis starts from (default neutral if present, "
                        "else the first emotion)")
    p.add_argument("--control-store", action="append", default=[], metavar="NAME=DIR",
                   help="a control store probed the same way (repeatable), e.g. "
                        "random-init=stores/rand mfcc=stores/mfcc")
    p.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap resamples of speakers")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--no-umap", action="store_true", help="skip the UMAP scatter")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    add_force(p)
    p.set_defaults(func=run)

    m = subparsers.add_parser(
        "mfcc-store", help="MFCC-statistics control store (layer 0) for `emosteer probe`")
    m.add_argument("corpus", help="corpus directory (or manifest CSV for --format csv)")
    m.add_argument("--format", required=True, help="cremad, ravdess, emodb, tess or csv")
    m.add_argument("--out", required=True, type=Path, help="output store directory")
    add_force(m)
    m.set_defaults(func=run_mfcc_store)


def parse_controls(items: list[str]) -> dict[str, Path]:
    controls: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:  # a bare directory is named after itself
            name, path = Path(item).name, item
        if not name or not path:
            raise ConfigError(f"--control-store {item!r}: expected NAME=DIR")
        if name in controls or name == "model":
            raise ConfigError(f"--control-store: name {name!r} used twice or reserved")
        controls[name] = Path(path)
    return controls


def summary(report: dict) -> dict:
    """The headline numbers: per layer, each metric's value and CI."""
    keys = ("value", "ci_low", "ci_high")
    layers = {}
    for k, res in report["layers"].items():
        row = {m: {f: res[m][f] for f in keys} for m in ("linear_probe", "silhouette")}
        for pair, ax in res["axes"].items():
            row[pair] = {m: {f: ax[m][f] for f in keys} for m in
                         ("auc_raw", "auc_centred", "pairwise_cosine", "resultant_length")}
        layers[k] = row
    return {"model": report["model"], "best_layer": report["best_layer"],
            "emotions": list(report["config"].emotions), "reference": report["config"].reference,
            "n_clips": report["n_clips"], "n_speakers": report["n_speakers"], "layers": layers,
            "controls": {n: c["best_layer"] for n, c in report["controls"].items()},
            "umap": report["umap"]}


def run(args) -> int:
    from emosteer.artifacts import _jsonable
    from emosteer.probe import run_probe
    from emosteer.store import EmbeddingStore

    if args.n_boot < 0:
        raise ConfigError(f"--n-boot {args.n_boot}: must be >= 0")
    for name in OUTPUTS:
        refuse_overwrite(args.out / name, args.force)
    store = EmbeddingStore.open(args.store)
    controls = {n: EmbeddingStore.open(p) for n, p in parse_controls(args.control_store).items()}
    report = run_probe(store, args.out, emotions=parse_list(args.emotions),
                       reference=args.reference, controls=controls, n_boot=args.n_boot,
                       seed=args.seed, umap=not args.no_umap)
    s = summary(report)
    if args.json:
        json.dump(_jsonable(s), sys.stdout, indent=2)
        print()
        return 0
    cfg = report["config"]
    print(f"{report['model']}: {report['n_clips']} clips, {report['n_speakers']} speakers, "
          f"emotions {','.join(cfg.emotions)} (reference {cfg.reference}); "
          f"best layer {report['best_layer']}")
    for k, row in s["layers"].items():
        lp = row["linear_probe"]
        line = f"  layer {k:>2}: probe {lp['value']:.3f} [{lp['ci_low']:.3f}, {lp['ci_high']:.3f}]"
        for pair in cfg.pairs[:1]:
            a = row[f"{pair[0]}->{pair[1]}"]["auc_centred"]
            line += (f"  {pair[0]}->{pair[1]} AUC(centred) {a['value']:.3f} "
                     f"[{a['ci_low']:.3f}, {a['ci_high']:.3f}]")
        print(line)
    print(f"wrote {args.out}/probe.json and plots")
    return 0


def run_mfcc_store(args) -> int:
    from emosteer.corpora import scan_corpus
    from emosteer.probe import mfcc_store

    refuse_overwrite(args.out / "store.json", args.force)
    store = mfcc_store(scan_corpus(args.corpus, args.format), args.out, force=args.force)
    print(f"wrote {args.out}: {len(store)} utterances, {store.config.hidden_size}-dim MFCC "
          f"statistics ({len(store.skipped)} skipped)")
    return 0
