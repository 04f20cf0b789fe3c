"""Synthetic stores for the bank tests (imported as a plain module, like tests/studykit.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emosteer.audio import SAMPLE_RATE, save_audio
from emosteer.embeddings.encoders import EncoderIdentity
from emosteer.embeddings.store import EmbeddingStore, StoreConfig, write_store

REFERENCE = "calm"
OTHERS = ("angry", "happy", "sad")
HOLDOUT = ("s3", "s4")


def synthetic_store(root: Path, model: str = "syn-model", dim: int = 16, layer: int = 2,
                    emotions=(REFERENCE, *OTHERS), n_speakers: int = 5, per_cell: int = 3,
                    seed: int = 0, paths: dict | None = None) -> EmbeddingStore:
    """Speaker offsets (large) + one offset per emotion + small noise: every emotion separates
    from the reference on any speaker. `paths[(speaker, emotion, k)]`: the clip's audio file."""
    rng = np.random.default_rng(seed)
    spk_off = rng.normal(size=(n_speakers, dim)) * 3
    emo_off = {e: rng.normal(size=dim) * 2 for e in emotions}
    rows, X = [], []
    for s in range(n_speakers):
        for e in emotions:
            for k in range(per_cell):
                X.append(spk_off[s] + emo_off[e] + 0.2 * rng.normal(size=dim))
                path = (paths or {}).get((f"s{s}", e, k))
                rows.append({"utt_id": f"syn/s{s}-{e}-{k}", "speaker": f"s{s}", "emotion": e,
                             "corpus": "syn", "path": None if path is None else str(path)})
    cfg = StoreConfig(encoder=EncoderIdentity(model), layers=(layer,), pooling="mean",
                      hidden_size=dim)
    write_store(root, cfg, rows, {layer: np.asarray(X, np.float32)})
    return EmbeddingStore.open(root)


def voice(f0: float, amp: float, seconds: float = 1.2, seed: int = 0) -> np.ndarray:
    """Syllable-like harmonic bursts at `f0` (Hz) between short silences, with a noise floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * f0 * (t + 0.01 * np.sin(2 * np.pi * 3 * t))
    tone = sum(np.sin(k * phase) / k for k in range(1, int(4000 / f0)))
    gate = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5
    wav = amp * gate * tone / np.max(np.abs(tone)) + 1e-4 * rng.standard_normal(t.size)
    return wav.astype(np.float32)


# f0 (Hz) and amplitude of each emotion's clips: angry and sad are 4 semitones above calm.
VOICES = {"calm": (120.0, 0.05), "angry": (120.0 * 2 ** (4 / 12), 0.2),
          "sad": (120.0 * 2 ** (4 / 12), 0.05)}


def audio_store(root: Path, emotions=("calm", "angry", "sad"), n_speakers: int = 3,
                per_cell: int = 2) -> EmbeddingStore:
    """A synthetic store whose rows point at synthetic voices (VOICES), one file per row."""
    paths = {}
    for s in range(n_speakers):
        for e in emotions:
            for k in range(per_cell):
                f0, amp = VOICES[e]
                p = root / "audio" / f"s{s}-{e}-{k}.wav"
                save_audio(p, voice(f0 * (1 + 0.05 * s), amp, seed=10 * s + k), SAMPLE_RATE)
                paths[(f"s{s}", e, k)] = p
    return synthetic_store(root / "store", emotions=emotions, n_speakers=n_speakers,
                           per_cell=per_cell, paths=paths)
