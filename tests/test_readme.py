"""The README's Python API example runs as written, on a tiny random model and a tiny corpus."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from emosteer.audio import SAMPLE_RATE, save_audio

README = Path(__file__).resolve().parents[1] / "README.md"


def api_example() -> str:
    text = README.read_text()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _corpus(root: Path) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(int(0.8 * SAMPLE_RATE)) / SAMPLE_RATE
    rows = []
    for s, base in (("a", 110.0), ("b", 140.0), ("c", 180.0)):
        for emotion, f0 in (("calm", base), ("angry", base * 1.5)):
            for k in range(2):
                vib = 1 + 0.03 * np.sin(2 * np.pi * (4 + k) * t)
                wav = 0.3 * np.sin(2 * np.pi * f0 * np.cumsum(vib) / SAMPLE_RATE)
                wav = (wav + 0.003 * rng.normal(size=t.size)).astype(np.float32)
                path = save_audio(root / f"{s}_{emotion}_{k}.wav", wav, SAMPLE_RATE)
                rows.append({"path": path.name, "speaker": s, "emotion": emotion})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "speaker", "emotion"])
        w.writeheader()
        w.writerows(rows)
    return root / "manifest.csv"


def test_readme_example_runs(tmp_path, tiny_model_dir, monkeypatch):
    code = api_example()
    manifest = _corpus(tmp_path)
    # Only the constants change: a tiny model (4 layers), the tiny corpus, a short training.
    swaps = {
        'MODEL, LAYER = "facebook/wav2vec2-base", 5': f'MODEL, LAYER = "{tiny_model_dir}", 2',
        'CORPUS, FORMAT = "data/ravdess", "ravdess"': f'CORPUS, FORMAT = "{manifest}", "csv"',
        'format=FORMAT)': 'format=FORMAT, hidden=16, n_blocks=1, train_cfg=es.training.TrainConfig('
                          'max_epochs=2), progress=False)',
        '"voice.wav"': f'"{tmp_path / "a_calm_0.wav"}"',
    }
    for old, new in swaps.items():
        assert old in code, old
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    exec(compile("import emosteer.training\n" + code, "README.md", "exec"), {})
    assert (tmp_path / "angrier.wav").is_file() and (tmp_path / "runs" / "store").is_dir()
