"""Test signals and tiny corpora shared by the tests (imported as a plain module: pytest puts tests/ on
sys.path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def sine(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_freq(wav: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / sr)[np.argmax(spec)])


def tone_corpus(root: Path, n: int = 6, seconds: float = 0.8, n_speakers: int = 3) -> Path:
    """n wobbling tones as a CSV corpus (speakers s0.., angry/calm alternating); the manifest."""
    from emosteer.audio import SAMPLE_RATE, save_audio

    rng = np.random.RandomState(5)
    rows = ["path,speaker,emotion"]
    for i in range(n):
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        wav = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 250) * t) * (1 + 0.5 * np.sin(7 * t))
        save_audio(root / f"c{i}.wav", (wav + 0.01 * rng.randn(t.size)).astype(np.float32),
                   SAMPLE_RATE)
        rows.append(f"c{i}.wav,s{i % n_speakers},{('angry', 'calm')[i % 2]}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"
