"""int8 encoders: quantised transformer linears, close to fp32, CPU only, not with bf16."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_tiny_model_dir
from emosteer.audio import SAMPLE_RATE
from emosteer.embeddings.encoders import load_encoder
from emosteer.errors import ConfigError

# int8 rounds each activation tensor to 255 levels: frames stay this close to fp32 (the issue's
# bound for turning it on; wav2vec2-base geometry measures 0.9997, README).
MIN_COSINE = 0.99


def _wav(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.RandomState(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wav = np.sin(2 * np.pi * rng.uniform(100, 200) * t) * (0.5 + 0.5 * np.sin(5 * t))
    return (0.2 * wav + 0.01 * rng.randn(t.size)).astype(np.float32)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "wavlm", "data2vec"])
def test_int8_close_to_fp32(tmp_path, kind):
    d = make_tiny_model_dir(tmp_path / kind, kind=kind)
    fp, q = load_encoder(d, layers=[0, 4]), load_encoder(d, layers=[0, 4], int8=True)
    assert q.config.int8 and not fp.config.int8
    assert q.config.weights_hash == fp.config.weights_hash  # the same weights, another precision
    kinds = {type(m).__module__ for m in q.model.encoder.layers.modules()}
    assert any("quantized" in k for k in kinds)
    for seed, seconds in enumerate((0.6, 1.2)):
        w = _wav(seconds, seed)
        a, b = fp.encode(w), q.encode(w)
        np.testing.assert_array_equal(a[0], b[0])  # layer 0 comes before any int8 layer
        assert _cosines(a[1], b[1]).mean() >= MIN_COSINE


def test_int8_batches_close_to_one_at_a_time(tiny_model_dir):
    """Each int8 layer's activation scale spans its whole input tensor, so a batch's other clips
    move the rounding: batched int8 is as close to unbatched as int8 is to fp32, not closer."""
    q = load_encoder(tiny_model_dir, layers=[4], int8=True)
    wavs = [_wav(s, i) for i, s in enumerate((0.5, 1.1, 0.8))]
    for w, h in zip(wavs, q.encode_batch(wavs, batch_size=3), strict=True):
        assert _cosines(h[0], q.encode(w)[0]).mean() >= MIN_COSINE


def test_int8_refuses_bf16_and_non_cpu(tiny_model_dir):
    with pytest.raises(ConfigError, match="int8"):
        load_encoder(tiny_model_dir, layers=[2], int8=True, bf16=True)
    with pytest.raises(ConfigError, match="int8"):
        load_encoder(tiny_model_dir, layers=[2], int8=True, device="meta")
    assert torch.backends.quantized.engine in torch.backends.quantized.supported_engines
