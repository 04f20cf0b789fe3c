"""Embedding store: pooling weights, import of precomputed vectors, read API and its errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from emosteer.audio import SAMPLE_RATE, SSL_HOP
from emosteer.cli import main
from emosteer.embeddings.encoders import EncoderIdentity
from emosteer.embeddings.extract import _Pool, frame_weights
from emosteer.embeddings.store import EmbeddingStore, StoreConfig, import_embeddings, write_store
from emosteer.errors import ArtifactError, ConfigError


def _tone(n_frames: int, f0: float = 200.0) -> np.ndarray:
    t = np.arange(n_frames * SSL_HOP + 80) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def test_energy_weights_follow_hop_rms():
    wav = _tone(20)
    wav[: 10 * SSL_HOP] *= 0.1  # first ten 20 ms hops 20 dB quieter
    h = np.random.RandomState(0).randn(2, 20, 8).astype(np.float32)
    w = frame_weights("energy", h, wav)
    assert w.shape == (2, 20)
    np.testing.assert_allclose(w[0, :8] / w[0, 11:19], 0.1, rtol=1e-3)
    np.testing.assert_allclose(w[0, 12], 0.3 / np.sqrt(2), rtol=1e-2)
    np.testing.assert_array_equal(frame_weights("mean", h, wav), 1.0)
    np.testing.assert_allclose(frame_weights("norm", h, wav), np.linalg.norm(h, axis=2), rtol=1e-6)


def test_voiced_frames_exclude_silence_and_noise():
    wav = _tone(30)
    wav[: 10 * SSL_HOP] = 0.0
    wav[20 * SSL_HOP:] = 0.3 * np.random.RandomState(1).uniform(-1, 1, wav.size - 20 * SSL_HOP)
    w = frame_weights("voiced", np.zeros((1, 30, 4), np.float32), wav)[0]
    np.testing.assert_array_equal(w[:10], 0)  # silence
    np.testing.assert_array_equal(w[11:19], 1)  # a 200 Hz tone
    np.testing.assert_array_equal(w[21:], 0)  # white noise crosses zero every other sample
    with pytest.raises(ConfigError, match="pooling 'max'"):
        frame_weights("max", np.zeros((1, 3, 4)), wav)


@pytest.mark.parametrize("pooling", ["mean", "energy", "norm", "voiced"])
def test_pool_over_windows_equals_one_pass(pooling):
    rng = np.random.RandomState(2)
    h = rng.randn(3, 40, 6).astype(np.float32)
    wav = _tone(40) * np.concatenate([np.repeat(rng.uniform(0.01, 1, 40), SSL_HOP), np.ones(80)])
    whole = _Pool(pooling)
    whole.add(h, wav)
    parts = _Pool(pooling)
    parts.add(h[:, :15], wav[: 15 * SSL_HOP + 80])
    parts.add(h[:, 15:], wav[15 * SSL_HOP:])
    np.testing.assert_allclose(parts.result(), whole.result(), rtol=1e-6, atol=1e-6)
    w = frame_weights(pooling, h, wav)
    expect = (w[..., None] * h).sum(1) / w.sum(1)[:, None]
    np.testing.assert_allclose(whole.result(), expect, rtol=1e-5, atol=1e-6)


def test_pool_falls_back_to_mean_without_weight():
    h = np.random.RandomState(3).randn(1, 10, 4).astype(np.float32)
    p = _Pool("energy")
    p.add(h, np.zeros(10 * SSL_HOP + 80, np.float32))
    np.testing.assert_allclose(p.result()[0], h[0].mean(0), rtol=1e-6)


def _write_small(tmp_path, n=6, d=5):
    X = np.random.RandomState(4).randn(n, d).astype(np.float32)
    np.save(tmp_path / "emb.npy", X)
    with open(tmp_path / "index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["speaker", "emotion", "sentence"])
        for i in range(n):
            w.writerow([f"spk{i % 2}", ("calm", "angry")[i % 3 == 0], "01"])
    return X


def test_import_small_and_read_back(tmp_path):
    X = _write_small(tmp_path)
    st = import_embeddings(tmp_path / "emb.npy", tmp_path / "index.csv", 3, tmp_path / "st",
                           model="m")
    assert st.layers == (3,) and st.config.source == "import" and st.config.pooling == "norm"
    np.testing.assert_array_equal(st.pooled(3), X)
    assert list(st.labels("speaker")) == [f"spk{i % 2}" for i in range(6)]
    assert st.labels("utt_id")[5] == "import/000005"
    again = EmbeddingStore.open(tmp_path / "st")
    assert again.config == st.config and again.index == st.index and again.skipped == []
    with pytest.raises(ArtifactError, match="layer 5 not in store"):
        st.pooled(5)
    with pytest.raises(ArtifactError, match="no frames stored"):
        st.frames("import/000000", 3)
    with pytest.raises(ConfigError, match="label 'colour'"):
        st.labels("colour")
    with pytest.raises(ArtifactError, match="already exists"):
        import_embeddings(tmp_path / "emb.npy", tmp_path / "index.csv", 3, tmp_path / "st")
    import_embeddings(tmp_path / "emb.npy", tmp_path / "index.csv", 4, tmp_path / "st", force=True)
    assert EmbeddingStore.open(tmp_path / "st").layers == (4,)


def test_import_rejects_bad_inputs(tmp_path):
    _write_small(tmp_path)
    np.save(tmp_path / "short.npy", np.zeros((3, 5), np.float32))
    with pytest.raises(ArtifactError, match=r"index.csv: 6 rows but .*short.npy has 3"):
        import_embeddings(tmp_path / "short.npy", tmp_path / "index.csv", 3, tmp_path / "a")
    np.save(tmp_path / "nan.npy", np.full((6, 5), np.nan, np.float32))
    with pytest.raises(ArtifactError, match="nan.npy: expected a finite 2-D float"):
        import_embeddings(tmp_path / "nan.npy", tmp_path / "index.csv", 3, tmp_path / "b")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ArtifactError, match="junk.npy: not a numpy array"):
        import_embeddings(tmp_path / "junk.npy", tmp_path / "index.csv", 3, tmp_path / "c")
    with pytest.raises(ArtifactError, match="missing.npy: file not found"):
        import_embeddings(tmp_path / "missing.npy", tmp_path / "index.csv", 3, tmp_path / "d")


def test_open_errors(tmp_path):
    with pytest.raises(ArtifactError, match="store directory not found"):
        EmbeddingStore.open(tmp_path / "none")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "extract.json").write_text("{}")
    with pytest.raises(ArtifactError, match="unfinished extraction"):
        EmbeddingStore.open(tmp_path / "partial")


def test_store_config_validates():
    with pytest.raises(ConfigError, match="pooling 'max'"):
        StoreConfig(encoder=EncoderIdentity("m"), layers=(1,), pooling="max", hidden_size=4)
    with pytest.raises(ConfigError, match="frame layers"):
        StoreConfig(encoder=EncoderIdentity("m"), layers=(1,), pooling="mean", hidden_size=4, frame_layers=(2,))


def test_write_store_checks_shapes(tmp_path):
    cfg = StoreConfig(encoder=EncoderIdentity("m"), layers=(1,), pooling="mean", hidden_size=4)
    with pytest.raises(ArtifactError, match="layer 1 has shape"):
        write_store(tmp_path, cfg, [{"utt_id": "a"}], {1: np.zeros((2, 4), np.float32)})


def test_import_real_embeddings_cli(real_embeddings, tmp_path, capsys):
    out = tmp_path / "real"
    args = ["import-embeddings", str(real_embeddings / "embeddings.npy"),
            str(real_embeddings / "index.csv"), "--layer", "5", "--out", str(out),
            "--model", "facebook/wav2vec2-base"]
    assert main(args) == 0
    st = EmbeddingStore.open(out)
    X = np.load(real_embeddings / "embeddings.npy")
    np.testing.assert_array_equal(st.pooled(5), X)
    assert st.config.encoder.model == "facebook/wav2vec2-base" and st.config.hidden_size == 768
    assert set(st.labels("emotion")) == {"angry", "happy"}
    assert len(set(st.labels("speaker"))) == 8
    assert st.labels("utt_id")[0] == "ravdess/03-01-05-01-01-01-01"
    assert set(st.labels("corpus")) == {"ravdess"}
    assert main(args) == 2  # refuses to overwrite without -f
    assert "already exists" in capsys.readouterr().err
    assert main(args + ["-f"]) == 0
