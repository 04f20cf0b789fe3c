"""Which cues does prosody steering still miss? The judge's verdict with one group of features
moved to where the real target clips are.

    python benchmarks/bank_cues.py [--data ../shared/data] [--cache DIR] [--out results.json]

The bank's acceptance split: per RAVDESS emotion a calm -> emotion ProsodyDelta (every
component) learned from actors 01-06, imposed at delta 1 on the calm clips of the unseen actors
07-08, and scored by the 8-class eGeMAPS emotion judge trained on every clip of actors 01-06.
Then, in the judge's own standardised feature space, the steered clips' features of one group
are shifted by the gap between the mean of the real target clips (same actors) and the mean of
the steered ones, everything else left as it is, and the mean P(target) is read again. A group
whose shift lifts P(target) to the real clips' is a cue the transform fails to impose; a group
that changes nothing is one it already imposes, or one the judge ignores.

The groups split the judge's eGeMAPS features by what they measure: F0 (level, range, slopes),
formants (F1-F3 frequency, bandwidth, level), spectral balance (alpha ratio, Hammarberg index,
spectral slopes, MFCC 1-4), voice quality (jitter, shimmer, HNR, H1-H2, H1-A3) and timing
(voiced and unvoiced segment lengths, rates). Last, the unvoiced spectrum (z units) of the
calm clips, of their resynthesis as `apply_prosody` makes it (voiced speech only) and of a
WORLD resynthesis of every frame. About 3 minutes on 2 CPU cores cold.
"""

from __future__ import annotations

import json
import time

import numpy as np
from _bank_split import SOURCE, load_split

from emosteer.audio import SAMPLE_RATE
from emosteer.prosody.world import EnvelopeShift, apply_prosody, learn_prosody_delta

# Substrings of the eGeMAPS v02 names (openSMILE) of each group; every feature the judge keeps
# falls in exactly one (checked at run time).
GROUPS = {"F0": ("F0semitone",),
          "formants": ("F1frequency", "F1bandwidth", "F1amplitude", "F2frequency",
                       "F2bandwidth", "F2amplitude", "F3frequency", "F3bandwidth",
                       "F3amplitude"),
          "spectral balance": ("alphaRatio", "hammarberg", "slope", "mfcc"),
          "voice quality": ("jitter", "shimmer", "HNR", "H1-H2", "H1-A3"),
          "timing": ("Segment", "PerSec", "Rate")}


UNVOICED_SPECTRUM = ("slopeUV0-500_sma3nz_amean", "alphaRatioUV_sma3nz_amean",
                     "hammarbergIndexUV_sma3nz_amean")


def group_masks(names) -> dict[str, np.ndarray]:
    masks = {g: np.array([any(k in n for k in keys) for n in names]) for g, keys in GROUPS.items()}
    count = np.sum(list(masks.values()), axis=0)
    if not np.all(count == 1):
        odd = [n for n, c in zip(names, count, strict=True) if c != 1]
        raise SystemExit(f"features in no group or in two: {odd}")
    return masks


def main() -> None:
    t_start = time.time()
    split, args = load_split(__doc__)
    utts, train, held, calm = split.utts, split.train, split.held, split.calm
    ex, judge = split.extractor, split.judge
    masks = group_masks(judge.feature_names)
    learn = ([u.path for u in train], [u.speaker for u in train], [u.emotion for u in train])

    def p_target(Z: np.ndarray, col: int) -> float:
        logits = Z @ judge.coef.T + judge.intercept
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return float((p[:, col] / p.sum(axis=1)).mean())

    results = {}
    for emo in sorted({u.emotion for u in utts} - {SOURCE}):
        delta = learn_prosody_delta(*learn, SOURCE, emo, cache_dir=args.cache)
        steered = judge._standardise(ex.features_many(
            [(apply_prosody(w, SAMPLE_RATE, delta, 1.0), SAMPLE_RATE) for w in calm]))
        real = judge._standardise(ex.features_many([u.path for u in held if u.emotion == emo]))
        col = judge.classes.index(emo)
        gap = real.mean(axis=0) - steered.mean(axis=0)
        row = {"steered": p_target(steered, col)}
        for g, m in masks.items():
            row[g] = p_target(steered + np.where(m, gap, 0.0), col)
        row["real"] = p_target(real, col)
        results[emo] = row
        print(f"{emo}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items())
              + f" [{time.time() - t_start:.0f} s]")
    # Why only voiced speech goes through WORLD: the unvoiced spectrum of the calm clips, of
    # their resynthesis as apply_prosody does it, and of a WORLD resynthesis of every frame
    # (what an envelope shift gets), in the judge's z units.
    every_frame = EnvelopeShift(np.zeros((2, 2)), np.array([0.0, SAMPLE_RATE / 2]),
                                np.array([0.0, 1.0]))
    uv = [judge.feature_names.index(n) for n in UNVOICED_SPECTRUM]
    for name, wavs in (("calm", calm),
                       ("voiced-only resynthesis", [apply_prosody(w, SAMPLE_RATE, None)
                                                    for w in calm]),
                       ("whole WORLD resynthesis", [apply_prosody(w, SAMPLE_RATE, None,
                                                                  envelope=every_frame)
                                                    for w in calm])):
        z = judge._standardise(ex.features_many([(w, SAMPLE_RATE) for w in wavs])).mean(axis=0)
        print(f"{name}: " + ", ".join(f"{n} {z[i]:+.2f}" for n, i in
                                       zip(UNVOICED_SPECTRUM, uv, strict=True)))
    cols = list(next(iter(results.values())))
    print(f"\nMean P(target) by the 8-class judge, calm clips of actors 07-08 (n={len(calm)}) "
          "steered at delta 1, with one feature group moved to the real target clips' mean:\n")
    print("| emotion | " + " | ".join(cols) + " |\n|---|" + "---:|" * len(cols))
    for emo, row in results.items():
        print(f"| {emo} | " + " | ".join(f"{row[c]:.2f}" for c in cols) + " |")
    print("\nfeatures per group: " + ", ".join(f"{g} {int(m.sum())}" for g, m in masks.items())
          + f"; total {time.time() - t_start:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
