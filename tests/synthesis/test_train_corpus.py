"""train_mapper_on_corpus and resynthesize called directly (no CLI)."""

from __future__ import annotations

import numpy as np
import pytest

from emosteer.audio import save_audio
from emosteer.errors import ConfigError, EmosteerError
from emosteer.synthesis.mapper import load_mapper
from emosteer.synthesis.mel import SSL_16K
from emosteer.synthesis.train import train_mapper_on_corpus
from emosteer.synthesis.vocoders import describe_vocoder, load_vocoder, resynthesize
from emosteer.training import TrainConfig


def _voice(f0, seconds=0.6, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    return (0.2 * tone * ((t > 0.1) & (t < seconds - 0.1))).astype(np.float32)


def _corpus(root, n_spk=3):
    rows = ["path,speaker,emotion"]
    for s in range(n_spk):
        for u in range(2):
            save_audio(root / f"s{s}_u{u}.wav", _voice(110 + 20 * s + 7 * u), 16000)
            rows.append(f"s{s}_u{u}.wav,spk{s},{('calm', 'angry')[u]}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def test_train_mapper_on_corpus_with_speaker_selection(tmp_path, tiny_model_dir):
    manifest = _corpus(tmp_path / "corpus")
    out = tmp_path / "mapper"
    kw = dict(root=manifest, format="csv", val_speakers=("spk1",), test_speakers=("spk2",),
              mel=SSL_16K, train_cfg=TrainConfig(max_epochs=1, seed=1), random_init=True,
              hidden=16, n_blocks=1, progress=False)
    report = train_mapper_on_corpus(out, str(tiny_model_dir), 2, **kw)
    assert report["train_speakers"] == ["spk0"] and report["val_speakers"] == ["spk1"]
    assert report["test_speakers"] == ["spk2"] and report["test_mcd_db"] is not None
    cfg = load_mapper(out).config
    assert cfg.layer == 2 and cfg.encoder.random_init and cfg.encoder.seed == 1
    with pytest.raises(EmosteerError, match="already exists"):
        train_mapper_on_corpus(out, str(tiny_model_dir), 2, **kw)
    with pytest.raises(ConfigError, match="no speaker 'spk9'"):
        train_mapper_on_corpus(tmp_path / "o2", str(tiny_model_dir), 2,
                               **{**kw, "test_speakers": ("spk9",)})
    with pytest.raises(ConfigError, match="give a corpus"):
        train_mapper_on_corpus(tmp_path / "o3", str(tiny_model_dir), 2)


def test_resynthesize_skips_bad_files(tmp_path):
    good, bad = tmp_path / "tone.wav", tmp_path / "bad.wav"
    save_audio(good, _voice(200), 16000)
    bad.write_text("not audio")
    vocoder = load_vocoder("griffinlim:16k")
    assert describe_vocoder(vocoder)["class"] == "GriffinLim"
    done = resynthesize([good, bad], vocoder, tmp_path / "out", progress=False)
    assert done == {good: tmp_path / "out" / "tone.wav", bad: None}
    assert (tmp_path / "out" / "tone.wav").is_file()
    with pytest.raises(EmosteerError, match="already exists"):
        resynthesize([good], vocoder, tmp_path / "out")
