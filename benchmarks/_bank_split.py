"""The emotion bank's acceptance split, shared by the bank benchmarks: RAVDESS actors 01-06
train the judge and the deltas, the calm clips of the unseen actors 07-08 are steered.
(A leading underscore: `make bench` runs the other scripts, not this one.)"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emosteer.audio import load_audio
from emosteer.corpora.formats import Utterance, scan_corpus
from emosteer.evaluation.emotion_judge import EgemapsExtractor, EmotionJudge, train_emotion_judge

TRAIN = tuple(f"ravdess_{i:02d}" for i in range(1, 7))
HELD_OUT = ("ravdess_07", "ravdess_08")
SOURCE = "calm"
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Split:
    utts: list[Utterance]
    train: list[Utterance]
    held: list[Utterance]
    calm: list[np.ndarray]  # the held-out actors' calm clips, 16 kHz
    extractor: EgemapsExtractor
    judge: EmotionJudge  # 8-class, every clip of the training actors
    cache: Path


def parse_args(doc: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/emosteer-prosody-bench"))
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return ap.parse_args()


def load_split(doc: str) -> tuple[Split, argparse.Namespace]:
    """The split of the RAVDESS under --data (`doc`: the script's docstring, for --help)."""
    args = parse_args(doc)
    utts = list(scan_corpus(args.data / "ravdess", "ravdess"))
    ex = EgemapsExtractor(cache_dir=args.cache, workers=2)
    train = [u for u in utts if u.speaker in TRAIN]
    judge = train_emotion_judge([u.path for u in train], [u.emotion for u in train],
                                [u.speaker for u in train], extractor=ex)
    held = [u for u in utts if u.speaker in HELD_OUT]
    calm = [load_audio(u.path) for u in held if u.emotion == SOURCE]
    return Split(utts, train, held, calm, ex, judge, args.cache), args
