r"""`emosteer run RECIPE.yaml` and `emosteer demo`: the whole pipeline in one command.

    emosteer demo --out demo-out                # offline, generated corpus (10-11 CPU minutes)
    emosteer demo --corpus ravdess              # the same on real acted speech (downloads RAVDESS)
    emosteer run recipes/ravdess.yaml --out runs/ravdess
    emosteer run ravdess --set encoder.model=microsoft/wavlm-base --set mapper.max_minutes=30

A rerun resumes: finished stages are skipped. -f redoes every stage.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from emosteer.cli._common import add_force
from emosteer.errors import ConfigError
from emosteer.pipeline.recipe import DEMO_RECIPES
from emosteer.pipeline.run import STAGES, demo_dir, run_demo, run_recipe

DEMO_HELP = r"""
--corpus demo (the default, offline): the bundled Piper voice reads 8 sentences, WORLD turns it
  into 5 pseudo-speakers and renders each sentence calm and angry. Its emotions are WORLD
  renderings, so prosody numbers on it are circular (the run says so on the console and in the
  report). Stages: corpus, extract, axis (+ prosody delta), bank, probe, mapper, steer, tts,
  evaluate (16 held-out clips of spk_d and spk_e x latent/prosody/both x delta -1/0/+1, judged
  with the real vocoder), report.
--corpus ravdess: downloads RAVDESS speech from Zenodo (about 200 MB; md5-checked, resumable,
  with progress; kept in data/ravdess, or --set corpus.root=DIR, so a rerun or -f does not fetch
  it again) and runs the same stages, demo-sized, on real acted speech: actors 01-06, calm, angry,
  happy and sad; actors 05 and 06 held out (16 calm clips evaluated); a bank of angry, happy and
  sad. About twice the offline demo's time (more clips, and longer ones).
"""


def parse_overrides(items: list[str] | None) -> dict[str, dict]:
    """['encoder.model=x', 'probe=false'] -> {'encoder': {'model': 'x'}, 'probe': False}."""
    out: dict = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        value = yaml.safe_load(raw) if raw else None
        section, dot, field = key.partition(".")
        if dot:
            out.setdefault(section, {})[field] = tuple(value) if isinstance(value, list) else value
        else:
            out[section] = value
    return out


def _options(args: argparse.Namespace) -> dict:
    return {"force": args.force, "progress": not args.no_progress, "stop_after": args.stop_after}


def run(args: argparse.Namespace) -> int:
    run_recipe(args.recipe, args.out, parse_overrides(args.set), **_options(args))
    return 0


def demo(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.set)
    if args.model:
        overrides.setdefault("encoder", {})["model"] = args.model
    run_demo(args.corpus, Path(args.out or demo_dir(args.corpus)), overrides, **_options(args))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override a recipe value (YAML syntax), repeatable")
    p.add_argument("--stop-after", help=f"stop after this stage ({', '.join(STAGES)})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_force(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a recipe: corpus -> extract -> axis -> bank -> probe -> "
                                   "mapper -> steer -> tts -> evaluate -> report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", help="a recipe YAML file, or a bundled recipe: demo, demo-ravdess, "
                                  "ravdess, cremad")
    p.add_argument("--out", help="run directory (default runs/<recipe name>)")
    _common(p)
    p.set_defaults(func=run)

    d = sub.add_parser("demo", help="the whole pipeline offline on a generated corpus "
                                    "(what `make demo` runs), or on RAVDESS (--corpus ravdess)",
                       description=__doc__ + DEMO_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--corpus", choices=sorted(DEMO_RECIPES), default="demo",
                   help="demo: offline generated corpus (default); ravdess: download RAVDESS "
                        "and run the same demo on real acted speech")
    d.add_argument("--out", help=f"run directory (default {demo_dir('demo')}, or "
                                 f"{demo_dir('ravdess')} with --corpus ravdess)")
    d.add_argument("--model", help="encoder hub id or directory (default facebook/wav2vec2-base; "
                                   "offline without weights: a random-init model of its architecture)")
    _common(d)
    d.set_defaults(func=demo)
