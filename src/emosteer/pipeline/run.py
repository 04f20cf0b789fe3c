"""`emosteer run RECIPE.yaml`: the whole experiment, stage by stage, resumable.

corpus -> extract -> axis (+ prosody delta) -> bank -> probe -> mapper -> steer -> tts ->
evaluate -> report (the stage functions are in `stages`, what they share in `context`).

Each stage writes its artifacts under the run directory (layout in docs/design.md) and is
recorded in RUN/run.json when it finishes; a rerun skips finished stages and the stages
themselves resume (extract per utterance, mapper training per checkpoint), so a killed run
loses at most the work in flight. The encoder is loaded once and shared by the stages.

A run's notices (`run_notices`: caveats of the whole run, e.g. a synthetic corpus) go to
run.json's "notices", which the report shows on top, and to the console at the start and the
end of the run, where a reader of either sees them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from emosteer import __version__
from emosteer.artifacts import jsonable, provenance, read_json, write_json
from emosteer.errors import ConfigError
from emosteer.pipeline.context import RunContext
from emosteer.pipeline.democorpus import DEMO_NOTICE
from emosteer.pipeline.recipe import DEMO_RECIPES, Recipe, apply_overrides, load_recipe
from emosteer.pipeline.stages import STAGE_FUNCS, STAGES

log = logging.getLogger(__name__)

RUN_JSON = "run.json"


def enabled_stages(recipe: Recipe) -> list[str]:
    off = {"probe": not recipe.probe, "bank": not recipe.bank, "evaluate": not recipe.evaluate,
           "report": not recipe.report, "tts": not recipe.tts.text}
    return [s for s in STAGES if not off.get(s, False)]


def run_notices(recipe: Recipe) -> list[str]:
    """What a reader of this run's numbers must know first (run.json "notices")."""
    return [DEMO_NOTICE] if recipe.corpus.kind == "demo" else []


def _announce(state: dict[str, Any]) -> None:
    for notice in state.get("notices", []):
        log.warning("NOTICE: %s", notice)


def _finish(state: dict[str, Any], run_dir: Path) -> None:
    """The end of a run on the console: its notices again, the encoder's caveat, the report."""
    _announce(state)
    note = state.get("encoder", {}).get("note")
    if note:
        log.warning("NOTE: %s", note)
    index = run_dir / "index.html"
    if index.is_file():
        log.info("open %s", index.resolve())


def run_pipeline(recipe: Recipe, run_dir: str | Path, force: bool = False, progress: bool = True,
                 stop_after: str | None = None) -> dict[str, Any]:
    """Execute `recipe` into `run_dir`, skipping stages a previous run finished."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / RUN_JSON
    recipe_json = jsonable(dataclasses.asdict(recipe))
    state: dict[str, Any] = {}
    if state_path.is_file() and not force:
        state = read_json(state_path)
        if state.get("recipe") != recipe_json:
            raise ConfigError(f"{run_dir}: holds a run of a different recipe "
                              f"({state.get('recipe', {}).get('name')!r}); use -f to redo it")
    state.update({"kind": "run", "recipe": recipe_json, "emosteer_version": __version__,
                  "notices": run_notices(recipe)})
    state.setdefault("stages", {})
    if force:
        state["stages"] = {}
    ctx = RunContext(recipe, run_dir, state, force=force, progress=progress)
    stages = enabled_stages(recipe)
    if stop_after is not None and stop_after not in stages:
        raise ConfigError(f"--stop-after {stop_after!r}: expected one of {', '.join(stages)}")
    _announce(state)
    write_json(state_path, state)  # the notices are in run.json from the first stage on
    for i, name in enumerate(stages, start=1):
        if state["stages"].get(name, {}).get("status") == "done":
            log.info("[%d/%d] %s: done earlier, skipped", i, len(stages), name)
        else:
            log.info("[%d/%d] %s ...", i, len(stages), name)
            t0, c0 = time.perf_counter(), time.process_time()
            result = STAGE_FUNCS[name](ctx)
            # CPU seconds beside wall seconds: on a shared machine the wall clock measures the
            # other users too, the CPU time (all threads) what the stage itself costs
            state["stages"][name] = {"status": "done", "seconds": round(time.perf_counter() - t0, 1),
                                     "cpu_seconds": round(time.process_time() - c0, 1),
                                     "result": result}
            state["provenance"] = provenance()
            write_json(state_path, state)
            log.info("[%d/%d] %s: done in %.0f s (CPU %.0f s)", i, len(stages), name,
                     state["stages"][name]["seconds"], state["stages"][name]["cpu_seconds"])
        if name == stop_after:
            break
    _finish(state, run_dir)
    return state


def run_recipe(recipe: str | Path | Recipe, run_dir: str | Path | None = None,
               overrides: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """`emosteer run`: a recipe (file, bundled name or Recipe) with `overrides` applied
    ({section: {key: value}}), run into `run_dir` (default runs/<recipe name>). `options` go
    to run_pipeline (force, progress, stop_after)."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    if overrides:
        recipe = apply_overrides(recipe, overrides)
    return run_pipeline(recipe, run_dir or Path("runs") / recipe.name, **options)


def demo_dir(corpus: str = "demo") -> str:
    """The default run directory of `emosteer demo --corpus CORPUS`: one per corpus, so the
    RAVDESS demo never meets the offline one's run.json (a different recipe, refused)."""
    return "demo-out" if corpus == "demo" else f"demo-{corpus}-out"


def run_demo(corpus: str = "demo", run_dir: str | Path | None = None,
             overrides: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """`emosteer demo`: the bundled demo recipe of `corpus` (DEMO_RECIPES: the offline generated
    corpus, or RAVDESS downloaded and run demo-sized) into `run_dir` (default demo_dir)."""
    if corpus not in DEMO_RECIPES:
        raise ConfigError(f"--corpus {corpus!r}: expected one of {', '.join(DEMO_RECIPES)}")
    return run_recipe(DEMO_RECIPES[corpus], run_dir or demo_dir(corpus), overrides, **options)
