"""Extraction into a store: RAVDESS integration, bad files, resume after SIGKILL, long files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from emosteer.audio import SAMPLE_RATE, save_audio
from emosteer.cli import main
from emosteer.corpora.formats import Utterance, scan_corpus
from emosteer.embeddings.encoders import load_encoder, n_frames
from emosteer.embeddings.extract import extract_store
from emosteer.embeddings.store import EmbeddingStore
from emosteer.errors import ArtifactError

SUBSET_SPEAKERS = ("ravdess_01", "ravdess_02", "ravdess_03")


def _same_store(a: Path, b: Path) -> None:
    sa, sb = EmbeddingStore.open(a), EmbeddingStore.open(b)
    assert sa.config == sb.config
    assert sa.index == sb.index
    assert sa.skipped == sb.skipped
    for k in sa.layers:
        np.testing.assert_array_equal(sa.pooled(k), sb.pooled(k))


def test_extract_ravdess_subset_cli(ravdess_dir, tiny_model_dir, tmp_path):
    out = tmp_path / "store"
    rc = main(["extract", str(ravdess_dir), "--format", "ravdess", "--model", str(tiny_model_dir),
               "--layers", "0-4", "--out", str(out), "--emotions", "calm,angry",
               "--speakers", ",".join(SUBSET_SPEAKERS), "--frame-layers", "2", "--no-progress"])
    assert rc == 0
    st = EmbeddingStore.open(out)
    expected = [u for u in scan_corpus(ravdess_dir, "ravdess")
                if u.emotion in ("calm", "angry") and u.speaker in SUBSET_SPEAKERS]
    assert len(expected) == 48 and len(st) == 48 and st.skipped == []
    assert list(st.labels("utt_id")) == [u.utt_id for u in expected]
    assert list(st.labels("emotion")) == [u.emotion for u in expected]
    assert list(st.labels("speaker")) == [u.speaker for u in expected]
    assert list(st.labels("sentence")) == [str(u.sentence) for u in expected]
    cfg = st.config
    assert cfg.layers == (0, 1, 2, 3, 4) and cfg.frame_layers == (2,)
    assert cfg.encoder.model == str(tiny_model_dir) and cfg.encoder.model_type == "wav2vec2"
    assert (cfg.sample_rate, cfg.frame_rate, cfg.pooling) == (16000, 50.0, "mean")
    assert cfg.encoder.num_layers == 4 and cfg.hidden_size == 32 and len(cfg.encoder.weights_hash) == 16
    for k in cfg.layers:
        X = st.pooled(k)
        assert X.shape == (48, 32) and X.dtype == np.float32 and np.all(np.isfinite(X))
    assert not np.allclose(st.pooled(1), st.pooled(4))
    row = st.index[0]
    assert row["n_frames"] == n_frames(round(row["duration_s"] * SAMPLE_RATE))
    frames = st.frames(row["utt_id"], 2)
    assert frames.shape == (row["n_frames"], 32)
    # mean pooling of the stored (fp16) frames gives the pooled vector
    np.testing.assert_allclose(frames.mean(0), st.pooled(2)[0], atol=2e-3)
    # a finished store is not overwritten without -f
    assert main(["extract", str(ravdess_dir), "--format", "ravdess", "--model",
                 str(tiny_model_dir), "--out", str(out), "--limit", "1", "--no-progress"]) == 2


def test_bad_files_are_skipped(tiny_model_dir, tmp_path, shared_data):
    good = sorted((shared_data / "ravdess" / "Actor_01").glob("*.flac"))[:2]
    (tmp_path / "broken.wav").write_bytes(b"RIFF....garbage")
    save_audio(tmp_path / "silent.wav", np.zeros(8000, np.float32), SAMPLE_RATE)
    utts = [Utterance(f"t/{p.stem}", p, "s1", "calm", "t") for p in good]
    utts += [Utterance("t/broken", tmp_path / "broken.wav", "s1", "angry", "t"),
             Utterance("t/silent", tmp_path / "silent.wav", "s1", "angry", "t"),
             Utterance("t/missing", tmp_path / "missing.wav", "s1", "angry", "t")]
    enc = load_encoder(tiny_model_dir, layers=[1])
    st = extract_store(utts, enc, tmp_path / "st", pooling="energy", progress=False)
    assert [r["utt_id"] for r in st.index] == [u.utt_id for u in utts[:2]]
    skipped = {s["utt_id"]: s["error"] for s in st.skipped}
    assert set(skipped) == {"t/broken", "t/silent", "t/missing"}
    assert "broken.wav" in skipped["t/broken"] and "silent" in skipped["t/silent"]
    assert "not found" in skipped["t/missing"]


def test_changed_settings_on_unfinished_store_refused(tiny_model_dir, tmp_path, shared_data):
    p = sorted((shared_data / "ravdess" / "Actor_02").glob("*.flac"))[0]
    utts = [Utterance("t/a", p, "s", "calm", "t")]
    st = extract_store(utts, load_encoder(tiny_model_dir, layers=[1]), tmp_path / "s",
                       progress=False)
    # the state a kill before consolidation leaves: settings in extract.json, no store.json
    (st.root / "store.json").rename(st.root / "extract.json")
    with pytest.raises(ArtifactError, match="different settings.*layers"):
        extract_store(utts, load_encoder(tiny_model_dir, layers=[2]), tmp_path / "s",
                      progress=False)
    again = extract_store(utts, load_encoder(tiny_model_dir, layers=[2]), tmp_path / "s",
                          force=True, progress=False)
    assert again.layers == (2,)
    (again.root / "store.json").unlink()  # items of unknown settings are never reused
    with pytest.raises(ArtifactError, match="items of unknown settings"):
        extract_store(utts, load_encoder(tiny_model_dir, layers=[2]), tmp_path / "s",
                      progress=False)


def test_long_file_path_pools_over_windows(tiny_model_dir, tmp_path, shared_data):
    """A file routed through Encoder.iter_long (one window covers it whole here) gives exactly
    the pooled vector and frames of the one-pass path."""
    p = sorted((shared_data / "ravdess" / "Actor_03").glob("*.flac"))[5]
    utts = [Utterance("t/a", p, "s", "angry", "t")]
    enc = load_encoder(tiny_model_dir, layers=[0, 3])
    a = extract_store(utts, enc, tmp_path / "a", pooling="energy", frame_layers=[3],
                      progress=False)
    b = extract_store(utts, enc, tmp_path / "b", pooling="energy", frame_layers=[3],
                      long_seconds=1.0, progress=False)
    for k in (0, 3):
        np.testing.assert_allclose(a.pooled(k), b.pooled(k), atol=1e-6)
    np.testing.assert_array_equal(a.frames("t/a", 3), b.frames("t/a", 3))
    assert a.index[0]["n_frames"] == b.index[0]["n_frames"]


def _slowish_model(path: Path) -> Path:
    """Tiny transformer behind a 128-channel CNN front end: ~0.1-0.3 s a clip on a shared CPU,
    slow enough to kill a run between items."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    cfg = Wav2Vec2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=128, conv_dim=(128,) * 7, num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=4)
    torch.manual_seed(0)
    Wav2Vec2Model(cfg).save_pretrained(path)
    return path


def _extract_cmd(ravdess_dir: Path, model: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", "import sys; from emosteer.cli import main; sys.exit(main())",
            "extract", str(ravdess_dir), "--format",
            "ravdess", "--model", str(model), "--layers", "1,2", "--out", str(out),
            "--speakers", "ravdess_04", "--emotions", "sad,happy", "--limit", "12",
            "--pooling", "voiced", "--no-progress", "--bf16", "off"]  # the reference is fp32


def _items(out: Path) -> dict[str, float]:
    d = out / "items"
    return {p.name: p.stat().st_mtime_ns for p in d.glob("*.safetensors")} if d.is_dir() else {}


def test_resume_after_sigkill(ravdess_dir, tmp_path):
    model = _slowish_model(tmp_path / "model")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    ref = tmp_path / "ref"  # the uninterrupted run, in-process: same code, one start-up less
    utts = [u for u in scan_corpus(ravdess_dir, "ravdess")
            if u.speaker == "ravdess_04" and u.emotion in ("sad", "happy")][:12]
    extract_store(utts, load_encoder(model, layers=[1, 2]), ref, pooling="voiced",
                  progress=False)
    out = tmp_path / "killed"
    proc = subprocess.Popen(_extract_cmd(ravdess_dir, model, out), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while len(_items(out)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _items(out)
    assert 3 <= len(before) < 12, "the run finished before it could be killed"
    assert not (out / "store.json").exists()
    with pytest.raises(ArtifactError, match="unfinished extraction"):
        EmbeddingStore.open(out)
    res = subprocess.run(_extract_cmd(ravdess_dir, model, out), env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (f"encoded {12 - len(before)} new utterances, {len(before)} already done, "
            "0 skipped") in res.stderr
    after = _items(out)
    assert len(after) == 12
    assert {k: after[k] for k in before} == before  # finished items were not rewritten
    assert not list((out / "items").glob(".*.tmp"))
    _same_store(out, ref)
    assert not (out / "extract.json").exists()
    assert json.loads((out / "store.json").read_text())["pooling"] == "voiced"


def test_batched_extraction_matches_one_at_a_time(tiny_model_dir, tmp_path):
    rng = np.random.RandomState(6)
    utts = []
    for i, seconds in enumerate((1.0, 0.8, 1.0, 1.0, 0.8, 1.3)):
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        wav = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.01 * rng.randn(t.size)
        p = save_audio(tmp_path / f"c{i}.wav", wav.astype(np.float32), SAMPLE_RATE)
        utts.append(Utterance(f"t/c{i}", p, f"s{i % 2}", "calm", "t"))
    enc = load_encoder(tiny_model_dir, layers=[1, 4])
    one = extract_store(utts, enc, tmp_path / "one", pooling="norm", progress=False)
    many = extract_store(utts, enc, tmp_path / "many", pooling="norm", batch_size=3,
                         progress=False)
    assert one.index == many.index
    for k in (1, 4):
        np.testing.assert_allclose(many.pooled(k), one.pooled(k), atol=1e-4)
