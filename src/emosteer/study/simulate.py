"""Synthetic stimuli and simulated listeners with a known ground truth.

Used to dry-run a study end to end before real participants arrive (does the analysis recover
what was put in?) and by the tests. The synthetic stimuli are tones, not speech.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from emosteer.artifacts import write_json
from emosteer.audio import SAMPLE_RATE, save_audio
from emosteer.study import db
from emosteer.study.design import Stimulus, Study, plan_trials

TONE_BASE_HZ = 180.0  # a typical speaking f0, so the tones are audible on any speaker
TONE_LEVEL = 0.3
RATING_NOISE = ((-1, 0, 1), (0.15, 0.7, 0.15))  # a careful listener's rating jitter, mean 0


def write_synthetic_stimuli(out_dir: str | Path, n_clips: int = 3,
                            deltas: tuple[float, ...] = (0.0, 0.5, 1.0),
                            modes: tuple[str, ...] = ("latent", "prosody"), n_anchors: int = 3,
                            target: str = "angry", anchor_emotions: tuple[str, ...] = ("calm",),
                            duration_s: float = 0.3, sr: int = SAMPLE_RATE) -> Path:
    """An evaluate-style directory: wavs/*.wav plus stimuli.json (clips x deltas x modes + anchors)."""
    out_dir = Path(out_dir)
    t = np.arange(int(duration_s * sr)) / sr
    rows = []

    def tone(name: str, hz: float) -> str:
        rel = f"wavs/{name}.wav"
        save_audio(out_dir / rel, TONE_LEVEL * np.sin(2 * np.pi * hz * t), sr)
        return rel

    for c in range(n_clips):
        for mode in modes:
            for d in deltas:
                sid = f"clip{c}_{mode}_d{d:g}"
                rows.append({"id": sid, "path": tone(sid, TONE_BASE_HZ * (1 + c / 10 + d / 4)),
                             "source_clip": f"clip{c}", "speaker": f"spk{c % 2}", "mode": mode,
                             "delta": d, "target_emotion": target, "kind": "steered"})
    for a in range(n_anchors):
        sid = f"anchor{a}"
        emo = target if a % 2 == 0 else anchor_emotions[a % len(anchor_emotions)]
        rows.append({"id": sid, "path": tone(sid, TONE_BASE_HZ * (2 + a / 10)),
                     "source_clip": sid, "speaker": f"spk{a % 2}", "mode": "real",
                     "delta": 0.0, "target_emotion": emo, "kind": "anchor"})
    write_json(out_dir / "stimuli.json", rows)
    return out_dir


def simulated_answers(study: Study, pid: str, plan: list[str], rng: np.random.Generator,
                      p_identify: Callable[[Stimulus], float],
                      mos: Callable[[Stimulus], int], careless: bool = False) -> list[dict]:
    """One listener's answers. A careful listener picks the target with p_identify(stim) (else
    a uniformly random other emotion) and rates naturalness mos(stim) + RATING_NOISE; a
    careless one answers uniformly at random. Repeats get a fresh draw, like a real listener."""
    emotions = list(study.config.emotions)
    out = []
    for i, sid in enumerate(plan):
        s = study.by_id[sid]
        if careless:
            emo = emotions[int(rng.integers(len(emotions)))]
            nat, inten = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        else:
            others = [e for e in emotions if e != s.target_emotion]
            emo = s.target_emotion if rng.random() < p_identify(s) else \
                others[int(rng.integers(len(others)))]
            jitter = rng.choice(RATING_NOISE[0], size=2, p=RATING_NOISE[1])
            nat = int(np.clip(mos(s) + jitter[0], 1, 5))
            inten = int(np.clip(round(1 + 4 * p_identify(s)) + jitter[1], 1, 5))
        out.append({"trial_index": i, "stimulus_id": sid, "emotion": emo, "intensity": inten,
                    "naturalness": nat, "rt_ms": int(rng.integers(500, 5000))})
    return out


def simulate_study(study: Study, n_careful: int, n_careless: int, seed: int,
                   p_identify: Callable[[Stimulus], float],
                   mos: Callable[[Stimulus], int]) -> tuple[list[str], list[str]]:
    """Enrol simulated listeners through the same DB path as the server; returns (careful,
    careless) participant ids."""
    rng = np.random.default_rng(seed)
    ids = ([f"careful-{i:04d}" for i in range(n_careful)],
           [f"careless-{i:04d}" for i in range(n_careless)])
    for careless, group in ((False, ids[0]), (True, ids[1])):
        for pid in group:
            part = db.add_participant(study.db_path, pid,
                                      lambda counts, p=pid: plan_trials(study, p, counts))
            for a in simulated_answers(study, pid, part["plan"], rng, p_identify, mos, careless):
                db.insert_answer(study.db_path, pid, a["trial_index"], a["stimulus_id"],
                                 a["emotion"], a["intensity"], a["naturalness"], a["rt_ms"])
    return ids
