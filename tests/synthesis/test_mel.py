"""The log-mel front end against an independent librosa computation of jik876's definition."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from emosteer.artifacts import config_from_dict, load_config, save_config
from emosteer.errors import AudioError, ConfigError
from emosteer.synthesis.mel import (
    HIFIGAN_22K,
    SSL_16K,
    MelConfig,
    log_mel_spectrogram,
    mel_basis,
    mel_to_magnitude,
    min_samples,
    n_frames,
)


def _signal(sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Noise plus two tones: every mel band carries energy well above the log clamp."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    wav = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * 220 * t)
    wav += 0.2 * np.sin(2 * np.pi * 1500 * t)
    return wav.astype(np.float32)


def _librosa_reference(wav: np.ndarray, cfg: MelConfig) -> np.ndarray:
    import librosa

    pad = (cfg.n_fft - cfg.hop_length) // 2
    y = np.pad(wav.astype(np.float64), (pad, pad), mode="reflect")
    spec = librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                        window="hann", center=False)
    fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                             fmin=cfg.fmin, fmax=cfg.fmax)
    return np.log(np.maximum(fb @ np.abs(spec), cfg.clamp))


@pytest.mark.parametrize("cfg", [HIFIGAN_22K, SSL_16K], ids=["hifigan22k", "ssl16k"])
def test_matches_independent_librosa_definition(cfg):
    wav = _signal(cfg.sample_rate, 0.5)
    ours = log_mel_spectrogram(wav, cfg)
    ref = _librosa_reference(wav, cfg)
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape == (cfg.n_mels, n_frames(wav.size, cfg))
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_default_config_is_jik876_v1():
    c = HIFIGAN_22K
    assert (c.sample_rate, c.n_fft, c.win_length, c.hop_length, c.n_mels, c.fmin, c.fmax) == (
        22050, 1024, 1024, 256, 80, 0.0, 8000.0)
    assert c.clamp == 1e-5 and c.center is False and c.pad == 384
    assert c.frame_rate == pytest.approx(86.1328125)
    assert SSL_16K.frame_rate == 50.0 and SSL_16K.sample_rate == 16000


@pytest.mark.parametrize("cfg", [HIFIGAN_22K, SSL_16K, SSL_16K.replace(n_fft=640)])
@pytest.mark.parametrize("num", [1000, 5000, 16000, 22050, 22051, 12345])
def test_frame_count_formula(cfg, num):
    wav = _signal(cfg.sample_rate, num / cfg.sample_rate)
    frames = log_mel_spectrogram(wav, cfg).shape[1]
    assert frames == n_frames(num, cfg)
    # (n_fft - hop) even: one frame per hop, so a vocoder returns frames * hop samples.
    assert frames == num // cfg.hop_length


def test_torch_batch_matches_numpy_and_keeps_device():
    a, b = _signal(22050, 0.3, seed=1), _signal(22050, 0.3, seed=2)
    batch = log_mel_spectrogram(torch.from_numpy(np.stack([a, b])), HIFIGAN_22K)
    assert isinstance(batch, torch.Tensor) and batch.shape == (2, 80, n_frames(a.size))
    np.testing.assert_allclose(batch[1].numpy(), log_mel_spectrogram(b), atol=1e-5)
    single = log_mel_spectrogram(torch.from_numpy(a))
    assert single.shape == (80, n_frames(a.size))


def test_bf16_autocast_and_bf16_input_stay_float32():
    wav = torch.from_numpy(_signal(16000, 0.2))[None]
    ref = log_mel_spectrogram(wav, SSL_16K)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = log_mel_spectrogram(wav, SSL_16K)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref)
    low = log_mel_spectrogram(wav.bfloat16(), SSL_16K)
    assert low.dtype == torch.float32 and low.shape == ref.shape


def test_silence_hits_the_log_floor():
    out = log_mel_spectrogram(np.zeros(4000, np.float32), HIFIGAN_22K)
    np.testing.assert_allclose(out, np.log(1e-5), atol=1e-3)


def test_bad_input_raises_project_errors():
    with pytest.raises(AudioError, match="too short"):
        log_mel_spectrogram(np.zeros(min_samples(HIFIGAN_22K) - 1, np.float32))
    log_mel_spectrogram(np.ones(min_samples(HIFIGAN_22K), np.float32))
    with pytest.raises(AudioError, match="mono"):
        log_mel_spectrogram(np.zeros((2, 5000), np.float32))
    with pytest.raises(AudioError):
        log_mel_spectrogram([0.0] * 5000)
    with pytest.raises(ConfigError, match="fmax"):
        MelConfig(sample_rate=16000, fmax=9000.0)
    with pytest.raises(ConfigError, match="win_length"):
        MelConfig(win_length=2048)


def test_config_is_frozen_and_round_trips_json(tmp_path):
    with pytest.raises(dataclasses.FrozenInstanceError):
        SSL_16K.hop_length = 1  # type: ignore[misc]
    save_config(SSL_16K, tmp_path / "mel.json")
    assert load_config(MelConfig, tmp_path / "mel.json") == SSL_16K
    nyquist = config_from_dict(MelConfig, {"sample_rate": 16000, "fmax": None})
    assert nyquist.fmax == 8000.0 and nyquist == MelConfig(sample_rate=16000, fmax=8000)


def test_mel_basis_is_slaney_and_read_only():
    import librosa

    fb = mel_basis(SSL_16K)
    assert fb.shape == (80, 513)
    np.testing.assert_allclose(fb, librosa.filters.mel(sr=16000, n_fft=1024, n_mels=80,
                                                       fmin=0.0, fmax=8000.0), rtol=1e-6)
    with pytest.raises(ValueError):
        fb[0, 0] = 1.0


def test_mel_inverse_reproduces_the_mel():
    lm = log_mel_spectrogram(_signal(16000, 0.3), SSL_16K)
    mag = mel_to_magnitude(lm, SSL_16K)
    assert mag.shape == (513, lm.shape[1]) and mag.min() >= 0
    again = np.log(np.maximum(mel_basis(SSL_16K) @ mag, SSL_16K.clamp))
    # Linear-scale least squares favours loud bands: a weak band beside a pure tone keeps a
    # small log error, so the bound is on the mean (0.01 nepers = 1 %), the max is loose.
    assert np.abs(again - lm).mean() < 1e-2
    assert np.abs(again - lm).max() < 1.0
    rough = np.log(np.maximum(mel_basis(SSL_16K) @ mel_to_magnitude(lm, SSL_16K, n_iter=0),
                              SSL_16K.clamp))
    assert np.abs(again - lm).mean() < np.abs(rough - lm).mean()  # the refinement helps
    batch = mel_to_magnitude(torch.from_numpy(np.stack([lm, lm])), SSL_16K)
    assert isinstance(batch, torch.Tensor) and batch.shape == (2, 513, lm.shape[1])
    with pytest.raises(ConfigError, match="bands"):
        mel_to_magnitude(lm[:40], SSL_16K)
