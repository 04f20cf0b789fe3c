"""Prosody components on real voices: does each one help an emotion judge hear the emotion?

    python benchmarks/prosody_components.py [--data ../shared/data] [--cache DIR] [--out results.json]
        [--statement 01] [--no-dnsmos] [--no-ablations]

For every RAVDESS emotion, a calm -> emotion ProsodyDelta is learned from actors 01-06 (both
statements, all components) and imposed at delta 1 on the calm clips of the unseen actors 07-08
(statement --statement: 8 clips). Each steered clip is scored by the 8-class eGeMAPS emotion
judge trained on actors 01-06 (statement --statement, as the README's confusion matrix), and
the tables give the mean P(target emotion) and the fraction of clips whose top class is the
target, per emotion and condition:

- real calm: the unsteered calm clips (where steering starts); resynth: them through WORLD at
  scale 0 (what the vocoder alone does);
- old five: a delta of the original five components learned as before (speaking rate over the
  whole span); all: every component; -X: all but component X (the ablation);
- real target: the same speakers' real clips of the target emotion (where steering should go).

Also the DNSMOS overall quality of real calm, resynthesised, old-five and all-component clips
(--no-dnsmos skips it), and per delta the alpha-ratio change the mcep component makes on its own
next to the learned tilt (the shelf supplies only the rest: no double counting). Each clip's
prosody analysis and eGeMAPS features are cached in --cache, so a rerun is quicker: about
8 minutes on 2 shared CPU cores cold (80 s of it learning the 14 deltas from 360 clips), 4.5
warm; the WORLD resynthesis of the ~700 steered clips is most of the rest.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from emosteer.audio import SAMPLE_RATE, load_audio
from emosteer.corpora.formats import scan_corpus
from emosteer.evaluation.emotion_judge import EgemapsExtractor, train_emotion_judge
from emosteer.prosody.correlates import acoustic_correlates
from emosteer.prosody.world import COMPONENTS, LEGACY_COMPONENTS, apply_prosody, learn_prosody_delta

TRAIN = tuple(f"ravdess_{i:02d}" for i in range(1, 7))
HELD_OUT = ("ravdess_07", "ravdess_08")
SOURCE = "calm"
REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/emosteer-prosody-bench"))
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--statement", default="01")
    ap.add_argument("--no-dnsmos", action="store_true")
    ap.add_argument("--no-ablations", action="store_true")
    args = ap.parse_args()
    t_start = time.time()
    utts = list(scan_corpus(args.data / "ravdess", "ravdess"))
    emotions = sorted({u.emotion for u in utts} - {SOURCE})

    # The judge: 8 classes, actors 01-06, one statement (as in the README).
    ex = EgemapsExtractor(cache_dir=args.cache, workers=2)
    jtrain = [u for u in utts if u.speaker in TRAIN and u.sentence == args.statement]
    judge = train_emotion_judge([u.path for u in jtrain], [u.emotion for u in jtrain],
                                [u.speaker for u in jtrain], extractor=ex)
    held = [u for u in utts if u.speaker in HELD_OUT and u.sentence == args.statement]
    cal = judge.calibrate([u.path for u in held], [u.emotion for u in held],
                          [u.speaker for u in held])
    print(f"judge: balanced accuracy {cal['balanced_accuracy']:.3f} on actors 07-08 "
          f"(n={cal['n']}, chance {cal['chance']:.3f}) [{time.time() - t_start:.0f} s]")

    def p_target(clips, target: str) -> tuple[float, float]:
        """(mean P(target), fraction of clips judged to be the target: the top class)."""
        P = judge.class_proba(judge.features(clips))
        col = judge.classes.index(target)
        return float(P[:, col].mean()), float(np.mean(np.argmax(P, axis=1) == col))

    # The deltas: calm -> emotion, actors 01-06, both statements.
    train = [u for u in utts if u.speaker in TRAIN]
    learn_args = ([u.path for u in train], [u.speaker for u in train], [u.emotion for u in train])
    deltas, legacy = {}, {}
    for emo in emotions:
        deltas[emo] = learn_prosody_delta(*learn_args, SOURCE, emo, cache_dir=args.cache)
        legacy[emo] = learn_prosody_delta(*learn_args, SOURCE, emo, cache_dir=args.cache,
                                          components=LEGACY_COMPONENTS)
        print(f"{emo}: {deltas[emo].summary()}")
    print(f"[deltas learned, {time.time() - t_start:.0f} s]")

    calm = [load_audio(u.path) for u in held if u.emotion == SOURCE]
    resynth = [apply_prosody(w, SAMPLE_RATE, None) for w in calm]
    conditions = {"old five": lambda e: legacy[e], "all": lambda e: deltas[e]}
    if not args.no_ablations:
        for c in COMPONENTS:
            conditions[f"-{c}"] = lambda e, c=c: deltas[e].without(c)
    rows: dict[str, dict[str, tuple[float, float]]] = {}
    kept: dict[str, dict[str, list]] = {"old five": {}, "all": {}}
    for emo in emotions:
        real = [u.path for u in held if u.emotion == emo]
        row = {"real calm": p_target([(w, SAMPLE_RATE) for w in calm], emo),
               "resynth": p_target([(w, SAMPLE_RATE) for w in resynth], emo)}
        for name, make in conditions.items():
            out = [apply_prosody(w, SAMPLE_RATE, make(emo), 1.0) for w in calm]
            row[name] = p_target([(y, SAMPLE_RATE) for y in out], emo)
            if name in kept:
                kept[name][emo] = out
        row["real target"] = p_target(real, emo)
        rows[emo] = row
        print(f"{emo}: " + ", ".join(f"{k} {v[0]:.3f}/{v[1]:.2f}" for k, v in row.items())
              + f" [{time.time() - t_start:.0f} s]")

    # Double counting check: the alpha ratio the mcep change moves on its own vs tilt_db.
    alpha = {}
    plain = np.mean([acoustic_correlates(w, SAMPLE_RATE)["alpha_ratio_db"] for w in resynth])
    for emo in emotions:
        moved = [acoustic_correlates(apply_prosody(w, SAMPLE_RATE, deltas[emo].only("mcep"), 1.0),
                                     SAMPLE_RATE)["alpha_ratio_db"] for w in calm]
        alpha[emo] = {"tilt_db": deltas[emo].tilt_db, "mcep_alone_db": float(np.mean(moved) - plain)}

    dnsmos = {}
    if not args.no_dnsmos:
        from emosteer.evaluation.judges import DnsmosJudge

        dj = DnsmosJudge(cache_dir=args.cache)

        def ovrl(wavs) -> float:
            return float(np.mean([dj.score(w, SAMPLE_RATE)["ovrl"] for w in wavs]))

        dnsmos["real calm"] = ovrl(calm)
        dnsmos["resynth"] = ovrl(resynth)
        for name in kept:
            dnsmos[name] = {e: ovrl(v) for e, v in kept[name].items()}
        dnsmos["real target"] = {e: ovrl([load_audio(u.path) for u in held if u.emotion == e])
                                 for e in emotions}

    cols = list(next(iter(rows.values())))
    for k, what in enumerate(("Mean P(target)", "Fraction judged the target (top class)")):
        print(f"\n{what} by the 8-class judge, calm clips of actors 07-08 (statement "
              f"{args.statement}, n={len(calm)}) steered at delta 1:\n")
        print("| target | " + " | ".join(cols) + " |")
        print("|---|" + "---:|" * len(cols))
        for emo, row in rows.items():
            print(f"| {emo} | " + " | ".join(f"{row[c][k]:.2f}" for c in cols) + " |")
        means = {c: float(np.mean([r[c][k] for r in rows.values()])) for c in cols}
        print("| mean | " + " | ".join(f"{means[c]:.2f}" for c in cols) + " |")
    print("\nAlpha ratio change (dB) of the mcep component alone vs the learned tilt_db:")
    for emo, a in alpha.items():
        print(f"  {emo}: tilt_db {a['tilt_db']:+.2f}, mcep alone {a['mcep_alone_db']:+.2f}")
    if dnsmos:
        print(f"\nDNSMOS OVRL: real calm {dnsmos['real calm']:.2f}, resynth "
              f"{dnsmos['resynth']:.2f}")
        print("| target | old five | all | real target |\n|---|---:|---:|---:|")
        for emo in emotions:
            print(f"| {emo} | {dnsmos['old five'][emo]:.2f} | {dnsmos['all'][emo]:.2f} | "
                  f"{dnsmos['real target'][emo]:.2f} |")
    print(f"\ntotal {time.time() - t_start:.0f} s")
    if args.out:
        args.out.write_text(json.dumps({"judge": cal, "p_target": rows, "alpha": alpha,
                                        "dnsmos": dnsmos,
                                        "deltas": {e: d.summary() for e, d in deltas.items()}},
                                       indent=2, default=str))


if __name__ == "__main__":
    main()
