r"""`emosteer run RECIPE.yaml` and `emosteer demo`: the whole pipeline in one command.

    emosteer demo --out demo-out                # offline, generated corpus, < 10 min on 2 cores
    emosteer run recipes/ravdess.yaml --out runs/ravdess
    emosteer run ravdess --set encoder.model=microsoft/wavlm-base --set mapper.max_minutes=30

A rerun resumes: finished stages are skipped. -f redoes every stage.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import yaml

from emosteer.cli._common import add_force
from emosteer.errors import ConfigError

log = logging.getLogger(__name__)

DEMO_OUT = "demo-out"


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


def _apply(recipe, overrides: dict):
    import dataclasses

    from emosteer.pipeline.recipe import recipe_from_dict

    data = dataclasses.asdict(recipe)
    for section, values in overrides.items():
        if isinstance(values, dict):
            if not isinstance(data.get(section), dict):
                raise ConfigError(f"--set {section}.*: {section!r} is not a recipe section")
            data[section].update(values)
        else:
            data[section] = values
    return recipe_from_dict(data, "--set")


def _execute(recipe, out: Path, args: argparse.Namespace) -> int:
    from emosteer.pipeline.run import run_pipeline

    state = run_pipeline(recipe, out, force=args.force, progress=not args.no_progress,
                         stop_after=args.stop_after)
    note = state.get("encoder", {}).get("note")
    if note:
        log.warning("NOTE: %s", note)
    index = out / "index.html"
    if index.is_file():
        log.info("open %s", index.resolve())
    return 0


def run(args: argparse.Namespace) -> int:
    from emosteer.pipeline.recipe import load_recipe

    recipe = _apply(load_recipe(args.recipe), parse_overrides(args.set))
    out = Path(args.out) if args.out else Path("runs") / recipe.name
    return _execute(recipe, out, args)


def demo(args: argparse.Namespace) -> int:
    from emosteer.pipeline.recipe import load_recipe

    overrides = parse_overrides(args.set)
    if args.model:
        overrides.setdefault("encoder", {})["model"] = args.model
    recipe = _apply(load_recipe("demo"), overrides)
    return _execute(recipe, Path(args.out), args)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override a recipe value (YAML syntax), repeatable")
    p.add_argument("--stop-after", help="stop after this stage (corpus, extract, axis, probe, "
                                        "mapper, steer, evaluate, report)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_force(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a recipe: corpus -> extract -> axis -> probe -> mapper "
                                   "-> steer -> evaluate -> report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", help="a recipe YAML file, or a bundled recipe: demo, ravdess, cremad")
    p.add_argument("--out", help="run directory (default runs/<recipe name>)")
    _common(p)
    p.set_defaults(func=run)

    d = sub.add_parser("demo", help="the whole pipeline offline on a generated corpus "
                                    "(what `make demo` runs)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--out", default=DEMO_OUT, help=f"run directory (default {DEMO_OUT})")
    d.add_argument("--model", help="encoder hub id or directory (default facebook/wav2vec2-base; "
                                   "offline without weights: a random-init model of its architecture)")
    _common(d)
    d.set_defaults(func=demo)
