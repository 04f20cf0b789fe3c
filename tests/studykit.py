"""A small listening study for the study tests (a plain module: pytest puts tests/ on sys.path);
its fixtures are in conftest.py."""

from __future__ import annotations

from emosteer.study.design import StudyConfig

TOKEN = "s3cret-admin-token"
CFG = StudyConfig(trials_per_participant=6, anchors_per_participant=1,
                  repeats_per_participant=1, seed=11, emotions=("angry", "calm", "sad"))
