"""Whole runs from a recipe: corpus -> extract -> axis -> probe -> mapper -> steer -> tts ->
evaluate -> report, resumable stage by stage; the offline demo corpus and bundled recipes."""

from emosteer.pipeline.democorpus import build_demo_corpus
from emosteer.pipeline.recipe import Recipe, bundled_recipes, load_recipe, recipe_from_dict
from emosteer.pipeline.run import STAGES, run_pipeline

__all__ = ["STAGES", "Recipe", "build_demo_corpus", "bundled_recipes", "load_recipe",
           "recipe_from_dict", "run_pipeline"]
