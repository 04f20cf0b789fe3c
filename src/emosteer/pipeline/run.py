"""`emosteer run RECIPE.yaml`: the whole experiment, stage by stage, resumable.

corpus -> extract -> axis (+ prosody delta) -> probe -> mapper -> steer -> tts -> evaluate
-> report (the stage functions are in `stages`, what they share in `context`).

Each stage writes its artifacts under the run directory (layout in docs/design.md) and is
recorded in RUN/run.json when it finishes; a rerun skips finished stages and the stages
themselves resume (extract per utterance, mapper training per checkpoint), so a killed run
loses at most the work in flight. The encoder is loaded once and shared by the stages.
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
from emosteer.pipeline.recipe import Recipe
from emosteer.pipeline.stages import STAGE_FUNCS, STAGES

log = logging.getLogger(__name__)

RUN_JSON = "run.json"


def enabled_stages(recipe: Recipe) -> list[str]:
    off = {"probe": not recipe.probe, "evaluate": not recipe.evaluate, "report": not recipe.report,
           "tts": not recipe.tts.text}
    return [s for s in STAGES if not off.get(s, False)]


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
    state.update({"kind": "run", "recipe": recipe_json, "emosteer_version": __version__})
    state.setdefault("stages", {})
    if force:
        state["stages"] = {}
    ctx = RunContext(recipe, run_dir, state, force=force, progress=progress)
    stages = enabled_stages(recipe)
    if stop_after is not None and stop_after not in stages:
        raise ConfigError(f"--stop-after {stop_after!r}: expected one of {', '.join(stages)}")
    for i, name in enumerate(stages, start=1):
        if state["stages"].get(name, {}).get("status") == "done":
            log.info("[%d/%d] %s: done earlier, skipped", i, len(stages), name)
        else:
            log.info("[%d/%d] %s ...", i, len(stages), name)
            t0 = time.perf_counter()
            result = STAGE_FUNCS[name](ctx)
            state["stages"][name] = {"status": "done", "seconds": round(time.perf_counter() - t0, 1),
                                     "result": result}
            state["provenance"] = provenance()
            write_json(state_path, state)
            log.info("[%d/%d] %s: done in %.0f s", i, len(stages), name,
                     state["stages"][name]["seconds"])
        if name == stop_after:
            break
    return state
