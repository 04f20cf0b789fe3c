"""Strength on real voices: does a strong-intensity prosody delta at 0.5 land near real
normal-intensity speech?

    python benchmarks/bank_strength.py [--data ../shared/data] [--cache DIR] [--out results.json]

RAVDESS records every emotion but neutral at a normal and a strong intensity. Per emotion, a
calm -> emotion ProsodyDelta is learned from actors 01-06 with only the strong clips as the
target (every calm clip as the source), and imposed on the calm clips of the unseen actors
07-08 at delta 0.5 and 1. The 8-class eGeMAPS emotion judge trained on every clip of actors
01-06 scores them, next to the same actors' real normal and real strong clips of that emotion:

- P(target): the judge's mean P(emotion), with a 95% bootstrap interval over clips;
- nearer: in the judge's own standardised feature space (the z-scored eGeMAPS features its
  logistic regression reads), the fraction of steered clips nearer to the centroid of the real
  normal clips than to that of the real strong ones; and the mean distance to each centroid.

If strength were linear, strong at 0.5 would sit with the normal clips and strong at 1 with
the strong ones. About 6 minutes on 2 CPU cores cold (the prosody analyses and eGeMAPS rows
are cached in --cache).
"""

from __future__ import annotations

import json
import time

import numpy as np
from _bank_split import SOURCE, load_split

from emosteer.audio import SAMPLE_RATE
from emosteer.evaluation.metrics import bootstrap_ci
from emosteer.prosody.world import apply_prosody, learn_prosody_delta

DELTAS = (0.5, 1.0)


def main() -> None:
    t_start = time.time()
    split, args = load_split(__doc__)
    utts, train, held, calm = split.utts, split.train, split.held, split.calm
    ex, judge = split.extractor, split.judge
    print(f"judge trained on {len(train)} clips of actors 01-06; {len(calm)} calm clips of "
          f"actors 07-08 to steer [{time.time() - t_start:.0f} s]")
    emotions = sorted({u.emotion for u in utts if u.intensity == "strong"} - {SOURCE})
    results = {}
    for emo in emotions:
        learn = [u for u in train if u.emotion == SOURCE
                 or (u.emotion == emo and u.intensity == "strong")]
        delta = learn_prosody_delta([u.path for u in learn], [u.speaker for u in learn],
                                    [u.emotion for u in learn], SOURCE, emo,
                                    cache_dir=args.cache)
        col = judge.classes.index(emo)
        real = {lvl: ex.features_many([u.path for u in held
                                       if u.emotion == emo and u.intensity == lvl])
                for lvl in ("normal", "strong")}
        centre = {lvl: judge._standardise(X).mean(axis=0) for lvl, X in real.items()}
        row = {lvl: _p(judge.class_proba(X)[:, col]) for lvl, X in real.items()}
        for d in DELTAS:
            X = ex.features_many([(apply_prosody(w, SAMPLE_RATE, delta, d), SAMPLE_RATE)
                                  for w in calm])
            Z = judge._standardise(X)
            dist = {lvl: np.linalg.norm(Z - c, axis=1) for lvl, c in centre.items()}
            row[f"strong x{d:g}"] = {**_p(judge.class_proba(X)[:, col]),
                                     "nearer_normal": float(np.mean(dist["normal"]
                                                                    < dist["strong"])),
                                     "dist_normal": float(dist["normal"].mean()),
                                     "dist_strong": float(dist["strong"].mean())}
        results[emo] = {"delta": delta.summary(), "n_strong_targets": delta.n_target, **row}
        print(f"{emo}: {delta.summary()} [{time.time() - t_start:.0f} s]")

    print(f"\nCalm clips of actors 07-08 (n={len(calm)}) steered by the strong-intensity delta "
          "(learned on actors 01-06); mean P(target) by the 8-class judge [95% CI], and where "
          "the steered clips lie in the judge's feature space:\n")
    print("| emotion | real normal | real strong | strong x0.5 | strong x1 | x0.5 nearer "
          "normal | x0.5 distance normal / strong | x1 nearer normal |")
    print("|---|---|---|---|---|---:|---|---:|")
    for emo, r in results.items():
        h, f = r["strong x0.5"], r["strong x1"]
        print(f"| {emo} | {_fmt(r['normal'])} | {_fmt(r['strong'])} | {_fmt(h)} | {_fmt(f)} "
              f"| {h['nearer_normal']:.2f} | {h['dist_normal']:.1f} / {h['dist_strong']:.1f} "
              f"| {f['nearer_normal']:.2f} |")
    print(f"\ntotal {time.time() - t_start:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


def _p(values: np.ndarray) -> dict:
    lo, hi = bootstrap_ci(np.asarray(values), np.mean, seed=0) or (float("nan"),) * 2
    return {"p": float(np.mean(values)), "lo": lo, "hi": hi, "n": int(len(values))}


def _fmt(cell: dict) -> str:
    return f"{cell['p']:.2f} [{cell['lo']:.2f}, {cell['hi']:.2f}] (n={cell['n']})"


if __name__ == "__main__":
    main()
