"""`emosteer probe`: sweep every layer of a store for emotion structure, with controls.

    emosteer probe STORE --out DIR [--emotions angry,happy] [--reference neutral]
                   [--controls random-init,mfcc] [--json]
    emosteer probe STORE --out DIR --controls mfcc=STORE3,random-init=STORE2
    emosteer mfcc-store CORPUS --format ravdess --out STORE3     # the MFCC-statistics control

--controls takes names, built from STORE's own audio and cached under DIR/controls/NAME:
random-init (STORE re-extracted, same layers and pooling, by a random-init encoder of the same
architecture) and mfcc (MFCC statistics); or NAME=DIR for a store built elsewhere. A store
imported from bare vectors has no audio, so named controls are skipped with a message.

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
    from emosteer.corpora.formats import FORMATS
    from emosteer.evaluation.probe import N_BOOT

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
    p.add_argument("--controls", default=None, metavar="LIST",
                   help="comma-separated controls: random-init, mfcc (built from STORE's audio "
                        "and cached under OUT/controls) and/or NAME=DIR control stores")
    p.add_argument("--control-store", action="append", default=[], metavar="NAME=DIR",
                   help="a control store probed the same way (repeatable)")
    p.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap resamples of speakers")
    p.add_argument("--seed", type=int, default=0,
                   help="bootstrap seed, also the random-init control's weight seed")
    p.add_argument("--no-umap", action="store_true", help="skip the UMAP scatter")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--device", default="cpu",
                   help="torch device for extracting the random-init control (default cpu)")
    add_force(p)
    p.set_defaults(func=run)

    m = subparsers.add_parser(
        "mfcc-store", help="MFCC-statistics control store (layer 0) for `emosteer probe`")
    m.add_argument("corpus", help="corpus directory (or manifest CSV for --format csv)")
    m.add_argument("--format", required=True, choices=FORMATS, help="corpus format")
    m.add_argument("--out", required=True, type=Path, help="output store directory")
    add_force(m)
    m.set_defaults(func=run_mfcc_store)


def parse_controls(items) -> tuple[tuple[str, ...], dict[str, Path]]:
    """(names of controls to build, {name: store dir}) from `--controls` items and
    `--control-store` values. An item without '=' is a control name if it is one of
    CONTROLS, else a directory named after itself."""
    from emosteer.evaluation.controls import CONTROLS

    names: list[str] = []
    dirs: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep and item in CONTROLS:
            name, path = item, None
        elif not sep:
            name, path = Path(item).name, item
        if not name or (sep and not path):
            raise ConfigError(f"control {item!r}: expected a name ({', '.join(CONTROLS)}) "
                          f"or NAME=DIR")
        if name in names or name in dirs or name == "model":
            raise ConfigError(f"control name {name!r} used twice or reserved")
        if path is None:
            names.append(name)
        else:
            dirs[name] = Path(path)
    return tuple(names), dirs


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
            "controls_skipped": report.get("controls_skipped", {}),
            "umap": report["umap"]}


def run(args) -> int:
    from emosteer.artifacts import jsonable
    from emosteer.embeddings.store import EmbeddingStore
    from emosteer.evaluation.controls import CONTROLS_DIR, build_controls
    from emosteer.evaluation.probe import run_probe

    if args.n_boot < 0:
        raise ConfigError(f"--n-boot {args.n_boot}: must be >= 0")
    for name in OUTPUTS:
        refuse_overwrite(args.out / name, args.force)
    names, dirs = parse_controls([*parse_list(args.controls), *args.control_store])
    store = EmbeddingStore.open(args.store)
    controls = {n: EmbeddingStore.open(p) for n, p in dirs.items()}
    built, skipped = build_controls(store, names, args.out / CONTROLS_DIR, seed=args.seed,
                                    device=args.device, force=args.force)
    report = run_probe(store, args.out, emotions=parse_list(args.emotions),
                       reference=args.reference, controls={**built, **controls},
                       n_boot=args.n_boot, seed=args.seed, umap=not args.no_umap,
                       controls_skipped=skipped)
    s = summary(report)
    if args.json:
        json.dump(jsonable(s), sys.stdout, indent=2)
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
    from emosteer.corpora.formats import scan_corpus
    from emosteer.evaluation.controls import mfcc_store

    refuse_overwrite(args.out / "store.json", args.force)
    store = mfcc_store(scan_corpus(args.corpus, args.format), args.out, force=args.force)
    print(f"wrote {args.out}: {len(store)} utterances, {store.config.hidden_size}-dim MFCC "
          f"statistics ({len(store.skipped)} skipped)")
    return 0
