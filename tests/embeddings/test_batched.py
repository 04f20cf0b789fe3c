"""Padded batches of mixed lengths equal encoding one utterance at a time, for every front end
and encoder the encoder supports (group norm, layer norm + pre-norm, WavLM's relative position
bias, data2vec-audio's stack of positional convolutions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_tiny_model_dir
from emosteer.audio import SAMPLE_RATE, save_audio
from emosteer.cli import build_parser
from emosteer.corpora.formats import Utterance
from emosteer.embeddings.encoders import load_encoder, n_frames
from emosteer.embeddings.extract import extract_store

# The bound on batched vs unbatched hidden states. Float rounding differs (other matmul
# shapes, masked sums) at ~1e-6 on these O(1) activations; any padding leak is ~1e-2 or more.
TOL = 1e-4
# Lengths in seconds: all different, with gaps of many positional-convolution widths (16 frames
# = 0.32 s here), and one under a frame's worth above the minimum.
SECONDS = (0.5, 1.3, 0.8, 1.3, 0.03, 1.01)
LAYERS = (0, 1, 3)


def _speechy(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.RandomState(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = rng.uniform(100, 200) * (1 + 0.2 * np.sin(2 * np.pi * 0.7 * t))
    wav = np.sin(2 * np.pi * np.cumsum(f0) / SAMPLE_RATE) * (0.5 + 0.5 * np.sin(6 * t))
    return (rng.uniform(0.05, 0.5) * wav + 0.01 * rng.randn(t.size)).astype(np.float32)


def _model(path, kind: str, norm: str | None, stable: bool):
    """A tiny random model: `norm` is feat_extract_norm ("group": wav2vec2-base and the base
    models; "layer" with stable layer norm: wav2vec2-large, HuBERT-large, WavLM-large)."""
    kw = {}
    if kind == "data2vec":  # a stack of 3 positional convolutions, 5 frames wide each
        kw.update(num_conv_pos_embeddings=3, conv_pos_kernel_size=5)
    else:
        kw.update(feat_extract_norm=norm, do_stable_layer_norm=stable)
    if kind == "hubert":
        kw.update(feat_proj_layer_norm=stable)
    if kind == "wavlm":  # relative positions reach across every length used here
        kw.update(num_buckets=32, max_bucket_distance=64)
    return make_tiny_model_dir(path, kind, num_layers=3, **kw)


ARCHS = [("wav2vec2", "group", False), ("wav2vec2", "layer", True), ("hubert", "group", False),
         ("hubert", "layer", True), ("wavlm", "group", False), ("wavlm", "layer", True),
         ("data2vec", None, False)]


@pytest.mark.parametrize(("kind", "norm", "stable"), ARCHS,
                         ids=[f"{k}-{n or 'layer'}{'-stable' if s else ''}" for k, n, s in ARCHS])
def test_padded_batch_equals_unbatched(tmp_path, kind, norm, stable):
    enc = load_encoder(_model(tmp_path, kind, norm, stable), layers=LAYERS)
    wavs = [_speechy(s, i) for i, s in enumerate(SECONDS)]
    single = [enc.encode(w) for w in wavs]
    for batch_size in (2, 3, len(wavs)):
        batched = enc.encode_batch(wavs, batch_size=batch_size)
        for w, a, b in zip(wavs, single, batched, strict=True):
            assert b.shape == a.shape == (len(LAYERS), n_frames(len(w)), 32)
            np.testing.assert_allclose(b, a, atol=TOL, rtol=0)


def test_the_precautions_matter(tiny_model_dir):
    """HF's own padded forward (attention mask, but group norm over the padding) is off by far
    more than TOL: the test above would notice a leak."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_model_dir).eval()
    short, long = _speechy(0.5, 0), _speechy(1.3, 1)
    x = torch.zeros(2, len(long))
    for row, w in enumerate((short, long)):  # the feature extractor's normalisation, as ours
        x[row, :len(w)] = torch.from_numpy((w - w.mean()) / np.sqrt(w.var() + 1e-7))
    mask = (torch.arange(len(long))[None] < torch.tensor([len(short), len(long)])[:, None]).long()
    with torch.no_grad():
        padded = model(x, attention_mask=mask, output_hidden_states=True).hidden_states[2][0]
        alone = model(x[:1, :len(short)], output_hidden_states=True).hidden_states[2][0]
    t = n_frames(len(short))
    assert float((padded[:t] - alone).abs().max()) > 100 * TOL
    ours = load_encoder(tiny_model_dir, layers=[2]).encode_batch([short, long], batch_size=2)[0]
    np.testing.assert_allclose(ours[0], alone.numpy(), atol=TOL, rtol=0)


def test_bf16_batched_close_to_unbatched(tiny_model_dir):
    """Under bf16 both paths round differently; they stay as close as bf16 is to fp32."""
    enc = load_encoder(tiny_model_dir, layers=[4], bf16=True)
    wavs = [_speechy(s, i) for i, s in enumerate(SECONDS)]
    for w, b in zip(wavs, enc.encode_batch(wavs, batch_size=len(wavs)), strict=True):
        a = enc.encode(w)
        assert np.linalg.norm(b - a) / np.linalg.norm(a) < 0.05


def test_extract_batches_mixed_lengths(tiny_model_dir, tmp_path):
    utts = []
    for i, seconds in enumerate((1.0, 0.8, 0.45, 1.3, 0.8, 0.6, 1.1)):
        p = save_audio(tmp_path / f"c{i}.wav", _speechy(seconds, i), SAMPLE_RATE)
        utts.append(Utterance(f"t/c{i}", p, f"s{i % 2}", "calm", "t"))
    enc = load_encoder(tiny_model_dir, layers=[1, 4])
    one = extract_store(utts, enc, tmp_path / "one", pooling="energy", frame_layers=(4,),
                        progress=False)
    many = extract_store(utts, enc, tmp_path / "many", pooling="energy", frame_layers=(4,),
                         batch_size=4, progress=False)
    assert one.index == many.index
    for k in (1, 4):
        np.testing.assert_allclose(many.pooled(k), one.pooled(k), atol=TOL, rtol=0)
    for u in one.labels("utt_id"):  # frames are stored as float16: compare at its precision
        np.testing.assert_allclose(many.frames(u, 4), one.frames(u, 4), atol=2e-3, rtol=2e-3)


def test_extract_cli_batch_flag():
    p = build_parser()
    base = ["extract", "root", "--format", "csv", "--model", "m", "--out", "o"]
    assert p.parse_args(base).batch_size == 1
    assert p.parse_args([*base, "--batch", "16"]).batch_size == 16
    assert p.parse_args([*base, "--batch-size", "8"]).batch_size == 8
