"""Perceptual listening study: create (design.py), serve (server.py, db.py), analyze (analyze.py).

The heavy parts (FastAPI, matplotlib) are imported by the submodules that need them only.
"""

from emosteer.study.design import (
    Stimulus,
    Study,
    StudyConfig,
    create_study,
    load_study_config,
    open_study,
    plan_trials,
)

__all__ = ["Stimulus", "Study", "StudyConfig", "create_study", "load_study_config",
           "open_study", "plan_trials"]
