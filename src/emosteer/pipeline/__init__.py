"""Whole runs from a recipe: corpus -> extract -> axis -> bank -> probe -> mapper -> steer ->
tts -> evaluate -> report, resumable stage by stage; the offline demo corpus and bundled recipes."""

from emosteer.pipeline.democorpus import DEMO_NOTICE, build_demo_corpus
from emosteer.pipeline.recipe import (
    DEMO_RECIPES,
    Recipe,
    apply_overrides,
    bundled_recipes,
    load_recipe,
    recipe_from_dict,
)
from emosteer.pipeline.run import (
    STAGES,
    demo_dir,
    run_demo,
    run_notices,
    run_pipeline,
    run_recipe,
)

__all__ = ["DEMO_NOTICE", "DEMO_RECIPES", "STAGES", "Recipe", "apply_overrides",
           "build_demo_corpus", "bundled_recipes", "demo_dir", "load_recipe", "recipe_from_dict",
           "run_demo", "run_notices", "run_pipeline", "run_recipe"]
