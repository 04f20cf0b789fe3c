"""Encoders: layer convention against the full HF forward, truncation, batching, chunking."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import make_tiny_model_dir
from emosteer.audio import SAMPLE_RATE, save_audio
from emosteer.embeddings.encoders import BF16_MAX_REL_ERROR, load_encoder, n_frames
from emosteer.errors import AudioError, ConfigError

KINDS = ("wav2vec2", "hubert", "wavlm", "data2vec")


def _speechy(seconds: float, seed: int = 0) -> np.ndarray:
    """A harmonic tone with an amplitude envelope and a little noise: not silent, not stationary."""
    rng = np.random.RandomState(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    wav = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
    return (0.2 * wav + 0.01 * rng.randn(t.size)).astype(np.float32)


def _reference(model_dir, wav: np.ndarray):
    """The full, untruncated HF model's hidden states on per-utterance normalised input."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir).eval()
    x = torch.from_numpy(wav)[None]
    x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)
    with torch.no_grad():
        return [h[0].numpy() for h in model(x, output_hidden_states=True).hidden_states]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    return {k: make_tiny_model_dir(tmp_path_factory.mktemp(k), kind=k, num_layers=3) for k in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_layers_equal_full_model(model_dirs, kind):
    wav = _speechy(1.3)
    ref = _reference(model_dirs[kind], wav)
    assert len(ref) == 4  # num_layers + 1: layerdrop must not drop any
    for layers in ([0], [1], [0, 2], [3], [0, 1, 2, 3]):
        enc = load_encoder(model_dirs[kind], layers=layers)
        assert len(enc.model.encoder.layers) == max(1, max(layers))
        assert not enc.model.training and enc.model.config.layerdrop == 0.0
        h = enc.encode(wav)
        assert h.shape == (len(layers), n_frames(len(wav)), 32)
        for i, k in enumerate(layers):
            np.testing.assert_allclose(h[i], ref[k], atol=1e-5, rtol=1e-5)


def test_stable_layer_norm_last_layer_is_not_normed(tmp_path):
    """Pre-norm checkpoints (wav2vec2-large style) apply a final layer norm only after the last
    layer: a truncated model must give layer k as the full model does, never normed."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                         intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=4, do_stable_layer_norm=True,
                         feat_extract_norm="layer")
    torch.manual_seed(1)
    Wav2Vec2Model(cfg).save_pretrained(tmp_path)
    wav = _speechy(1.0, seed=3)
    ref = _reference(tmp_path, wav)
    full = load_encoder(tmp_path).encode(wav)
    for k in range(4):
        np.testing.assert_allclose(load_encoder(tmp_path, layers=[k]).encode(wav)[0], ref[k],
                                   atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(full[k], ref[k], atol=1e-5, rtol=1e-5)


def test_batched_equals_unbatched(tiny_model_dir):
    enc = load_encoder(tiny_model_dir, layers=[0, 2, 4])
    wavs = [_speechy(s, seed=i) for i, s in enumerate((1.0, 0.7, 1.0, 1.31, 0.7, 1.0))]
    single = [enc.encode(w) for w in wavs]
    batched = enc.encode_batch(wavs, batch_size=4)
    for a, b in zip(single, batched, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_input_normalisation_follows_feature_extractor(tmp_path):
    d = make_tiny_model_dir(tmp_path / "m")
    wav = _speechy(1.0)
    enc = load_encoder(d, layers=[2])
    assert enc.config.do_normalize
    np.testing.assert_allclose(enc.encode(wav), enc.encode(4 * wav + 0.01), atol=1e-4)
    fe = json.loads((d / "preprocessor_config.json").read_text())
    fe["do_normalize"] = False
    (d / "preprocessor_config.json").write_text(json.dumps(fe))
    raw = load_encoder(d, layers=[2])
    assert not raw.config.do_normalize
    assert not np.allclose(raw.encode(wav), raw.encode(4 * wav + 0.01), atol=1e-3)


def test_random_init_control(tiny_model_dir):
    trained = load_encoder(tiny_model_dir, layers=[2])
    a = load_encoder(tiny_model_dir, layers=[2], random_init=True, seed=7)
    b = load_encoder(tiny_model_dir, layers=[2], random_init=True, seed=7)
    c = load_encoder(tiny_model_dir, layers=[2], random_init=True, seed=8)
    assert a.config.random_init and a.config.seed == 7 and trained.config.seed is None
    assert a.config.weights_hash == b.config.weights_hash != c.config.weights_hash
    assert a.config.weights_hash != trained.config.weights_hash
    assert a.config.config_hash == trained.config.config_hash
    np.testing.assert_array_equal(a.encode(_speechy(0.5)), b.encode(_speechy(0.5)))


def test_bf16_close_to_fp32_or_refused(tiny_model_dir):
    """bf16 stays within rounding of fp32, or (on a CPU whose bf16 kernels are wrong for this
    geometry) load_encoder's probe refuses it and the encoder is exactly fp32."""
    wav = _speechy(1.0, seed=3)
    ref = load_encoder(tiny_model_dir, layers=[4]).encode(wav)
    enc = load_encoder(tiny_model_dir, layers=[4], bf16=True)
    h = enc.encode(wav)
    assert h.dtype == np.float32
    rel = np.linalg.norm(h - ref) / np.linalg.norm(ref)
    if enc.config.bf16:
        assert 0 < rel < BF16_MAX_REL_ERROR
    else:
        np.testing.assert_array_equal(h, ref)


def test_wrong_bf16_kernels_fall_back_to_fp32(tiny_model_dir, monkeypatch, caplog):
    """A bf16 path that is wrong rather than rounded (here: the first CNN layer's output
    reversed in time under autocast, as a broken kernel might give) is refused at load, with a
    warning."""
    import torch

    real_conv1d = torch.nn.functional.conv1d

    def broken_conv1d(x, w, *args, **kwargs):
        out = real_conv1d(x, w, *args, **kwargs)
        return out.flip(-1) if torch.is_autocast_enabled("cpu") and x.shape[1] == 1 else out

    monkeypatch.setattr(torch.nn.functional, "conv1d", broken_conv1d)
    with caplog.at_level("WARNING", logger="emosteer.embeddings.encoders"):
        enc = load_encoder(tiny_model_dir, layers=[4], bf16=True)
    assert not enc.config.bf16
    assert "bf16" in caplog.text and "using fp32" in caplog.text
    assert next(enc.model.encoder.parameters()).dtype == torch.float32


def test_encode_long_alignment_and_shape(tiny_model_dir, tmp_path):
    """With context covering the whole file every window sees the whole file, so the stitched
    result must equal a single pass exactly: this checks the frame bookkeeping of the chunking."""
    wav = _speechy(7.37, seed=5)
    path = save_audio(tmp_path / "long.wav", wav, SAMPLE_RATE, subtype="FLOAT")
    enc = load_encoder(tiny_model_dir, layers=[0, 3])
    whole = enc.encode(wav)
    stitched = enc.encode_long(path, chunk_seconds=1.5, context_seconds=8.0)
    assert stitched.shape == whole.shape
    np.testing.assert_allclose(stitched, whole, atol=1e-5)
    pieces = list(enc.iter_long(path, chunk_seconds=1.5, context_seconds=8.0))
    assert [p[0] for p in pieces] == list(range(0, whole.shape[1], 75))
    # Short context: windows see only part of the file, but frames stay aligned and similar.
    short = enc.encode_long(path, chunk_seconds=2.0, context_seconds=1.0)
    assert short.shape == whole.shape
    cos = np.sum(short * whole, -1) / (np.linalg.norm(short, axis=-1) * np.linalg.norm(whole, axis=-1))
    assert np.median(cos) > 0.9


def test_bad_inputs(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="layers must be within 0..4"):
        load_encoder(tiny_model_dir, layers=[5])
    with pytest.raises(ConfigError, match="not a model directory"):
        load_encoder(tmp_path / "nope")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match="not supported"):
        load_encoder(tmp_path / "bert")
    enc = load_encoder(tiny_model_dir, layers=[1])
    with pytest.raises(AudioError, match="at least 400 samples"):
        enc.encode(np.zeros(100, dtype=np.float32))
    silent = save_audio(tmp_path / "silent.wav", np.zeros(16000, np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match="silent"):
        enc.encode_long(silent)


def test_missing_weights_are_an_error_not_random(tmp_path):
    from safetensors.numpy import load_file, save_file

    d = make_tiny_model_dir(tmp_path / "m", num_layers=2)
    weights = load_file(str(d / "model.safetensors"))
    dropped = next(k for k in weights if "layers.1." in k)
    del weights[dropped]
    save_file(weights, str(d / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ConfigError, match="checkpoint lacks weights"):
        load_encoder(d)
