"""The vocoder interface: HiFi-GAN lengths, bf16 and safetensors export, Griffin-Lim, the
load_vocoder registry and the `emosteer vocoder` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from emosteer.cli import main
from emosteer.errors import ConfigError
from emosteer.synthesis import vocoders
from emosteer.synthesis.hifigan import V1, V2, V3, HiFiGANConfig, split_weight_norm
from emosteer.synthesis.mel import HIFIGAN_22K, SSL_16K, log_mel_spectrogram
from emosteer.synthesis.vocoders import (
    GriffinLim,
    HiFiGAN,
    export_vocoder,
    load_vocoder,
    register_vocoder,
)


@pytest.mark.parametrize("cfg", [V1, V2, V3], ids=["v1", "v2", "v3"])
def test_output_length_is_hop_times_frames(cfg):
    voc = HiFiGAN(cfg).eval()
    with torch.no_grad():
        assert voc(torch.randn(2, 80, 1)).shape == (2, 256)
    wav = voc.vocode(np.random.default_rng(0).standard_normal((80, 3)).astype(np.float32))
    assert wav.shape == (3 * 256,) and wav.dtype == np.float32
    assert voc.device == torch.device("cpu") and GriffinLim().device == torch.device("cpu")


def test_safetensors_export_round_trip(tmp_path):
    torch.manual_seed(3)
    voc = HiFiGAN(V2).eval()
    out = export_vocoder(voc, tmp_path / "exp", source="test")
    assert {p.name for p in out.iterdir()} == {"vocoder.safetensors", "vocoder.json"}
    meta = json.loads((out / "vocoder.json").read_text())
    assert meta["mel"]["hop_length"] == 256 and meta["provenance"]["source"] == "test"
    assert "emosteer_version" in meta["provenance"]
    again = load_vocoder(out)
    assert again.hifigan_config == V2 and again.mel_config == HIFIGAN_22K
    mel = torch.randn(1, 80, 4) - 4
    with torch.no_grad():
        torch.testing.assert_close(again(mel), voc(mel), atol=0, rtol=0)


def test_bf16_autocast_path():
    torch.manual_seed(4)
    voc = HiFiGAN(V3).eval()
    mel = torch.randn(1, 80, 8) - 4
    with torch.no_grad():
        ref = voc(mel)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = voc(mel)
    assert low.dtype == torch.float32 and low.shape == ref.shape and torch.isfinite(low).all()
    assert torch.corrcoef(torch.stack([low[0], ref[0]]))[0, 1] > 0.95


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_matches_cpu():
    torch.manual_seed(7)
    cpu = HiFiGAN(V3).eval()
    gpu = HiFiGAN(V3).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.to("cuda")
    mel = torch.randn(1, 80, 8) - 4
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        out = gpu(mel.cuda())
    ref = cpu(mel).detach()
    assert out.device.type == "cuda" and out.dtype == torch.float32
    assert torch.corrcoef(torch.stack([out[0].cpu(), ref[0]]))[0, 1] > 0.95
    gl = load_vocoder("griffinlim:16k", device="cuda")
    assert gl.device.type == "cuda" and gl.vocode(np.full((80, 4), -5, np.float32)).shape == (1280,)


def test_mismatched_mels_are_config_errors():
    voc = HiFiGAN(V3).eval()
    with pytest.raises(ConfigError, match="100 mel bands"):
        voc(torch.randn(1, 100, 4))
    with pytest.raises(ConfigError):
        voc.vocode(np.zeros((80,), np.float32))
    with pytest.raises(ConfigError, match="hop"):
        HiFiGAN(V1, SSL_16K)
    with pytest.raises(ConfigError):
        HiFiGANConfig(resblock="3")


def _tone(sr: int, f0: float, seconds: float) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.4 * np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(2 * np.pi * 2 * f0 * t)
            + 0.1 * np.sin(2 * np.pi * 3 * f0 * t)).astype(np.float32)


@pytest.mark.parametrize("cfg", [HIFIGAN_22K, SSL_16K], ids=["22k", "16k"])
def test_griffinlim_reconstructs_a_harmonic_tone(cfg):
    f0 = 330.0
    wav = _tone(cfg.sample_rate, f0, 0.5)
    mel = log_mel_spectrogram(wav, cfg)
    voc = load_vocoder("griffinlim", mel_config=cfg)
    out = voc.vocode(mel)
    assert out.shape == (mel.shape[1] * cfg.hop_length,) and np.isfinite(out).all()
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    freqs = np.fft.rfftfreq(out.size, 1 / cfg.sample_rate)
    assert abs(freqs[spectrum.argmax()] - f0) < 10  # bin spacing is 2 Hz; mel bands ~30 Hz here
    # The re-analysed mel is close to the target (GL phase errors smear a little energy).
    again = log_mel_spectrogram(out, cfg)
    loud = mel > mel.max() - 6  # bands within 6 nepers of the peak carry the tone
    assert np.abs(again - mel)[loud].mean() < 0.5


def test_griffinlim_registry_names_and_options():
    assert load_vocoder("griffinlim").mel_config == HIFIGAN_22K
    assert load_vocoder("griffinlim:16k").sample_rate == 16000
    gl = GriffinLim(SSL_16K, n_iter=0)
    assert gl(torch.zeros(1, 80, 3) - 11).shape == (1, 960)
    assert GriffinLim(HIFIGAN_22K, n_iter=2)(torch.zeros(2, 80, 1) - 5).shape == (2, 256)
    with pytest.raises(ConfigError):
        load_vocoder("griffinlim:16k", mel_config=HIFIGAN_22K)
    with pytest.raises(ConfigError):
        GriffinLim(HIFIGAN_22K, momentum=1.5)


def test_register_vocoder_plugin(monkeypatch):
    monkeypatch.setattr(vocoders, "_REGISTRY", dict(vocoders._REGISTRY))
    calls = []

    def factory(device, mel_config):
        calls.append((device, mel_config))
        return GriffinLim(SSL_16K, n_iter=1)

    register_vocoder("my-plugin", factory)
    assert "my-plugin" in vocoders.available_vocoders()
    voc = load_vocoder("my-plugin")
    assert isinstance(voc, GriffinLim) and calls == [("cpu", None)]
    with pytest.raises(ConfigError, match="already registered"):
        register_vocoder("my-plugin", factory)


def test_cli_export_info_and_resynth(tmp_path, capsys, caplog):
    torch.manual_seed(6)
    model = HiFiGAN(V3).eval()
    src = tmp_path / "jik876"
    src.mkdir()
    h = {"resblock": "2", "upsample_rates": [8, 8, 4], "upsample_kernel_sizes": [16, 16, 8],
         "upsample_initial_channel": 256, "resblock_kernel_sizes": [3, 5, 7],
         "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]], "num_mels": 80, "n_fft": 1024,
         "hop_size": 256, "win_size": 1024, "sampling_rate": 22050, "fmin": 0, "fmax": 8000}
    (src / "config.json").write_text(json.dumps(h))
    torch.save({"generator": split_weight_norm(model.state_dict())}, src / "g_00000042")
    dst = tmp_path / "exported"
    assert main(["vocoder", "export", str(src), str(dst)]) == 0
    assert main(["vocoder", "export", str(src), str(dst)]) == 2  # refuses to overwrite
    assert main(["vocoder", "export", str(src), str(dst), "-f"]) == 0
    mel = torch.randn(1, 80, 3) - 4
    with torch.no_grad():
        torch.testing.assert_close(load_vocoder(dst)(mel), model(mel), atol=1e-5, rtol=1e-4)
    capsys.readouterr()
    assert main(["vocoder", "info", str(dst), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["class"] == "HiFiGAN" and info["hop_length"] == 256 and info["parameters"] > 0

    t = np.arange(8000) / 16000
    sf.write(tmp_path / "tone.wav", 0.3 * np.sin(2 * np.pi * 200 * t), 16000)
    (tmp_path / "broken.wav").write_text("not audio")
    out = tmp_path / "resynth"
    rc = main(["vocoder", "resynth", str(tmp_path / "tone.wav"), str(tmp_path / "broken.wav"),
               "--vocoder", "griffinlim:16k", "--out", str(out)])
    assert rc == 1  # one file skipped, the other written
    wav, sr = sf.read(out / "tone.wav")
    assert sr == 16000 and wav.shape == (8000 // 320 * 320,)
    assert not (out / "broken.wav").exists()
    assert "broken.wav" in caplog.text and "1 of 2 files failed" in caplog.text


def test_griffinlim_copy_synthesis_of_real_speech(ravdess_dir):
    from emosteer.audio import load_audio

    wav = load_audio(ravdess_dir / "Actor_01" / "03-01-05-02-01-01-01.flac", SSL_16K.sample_rate)
    mel = log_mel_spectrogram(wav, SSL_16K)
    errors = {}
    for n_iter in (0, GriffinLim().n_iter):
        out = GriffinLim(SSL_16K, n_iter=n_iter).vocode(mel)
        assert out.shape == (mel.shape[1] * SSL_16K.hop_length,)
        again = log_mel_spectrogram(out, SSL_16K)
        active = mel > mel.max() - 8  # ignore the silent floor, where any error is inaudible
        errors[n_iter] = float(np.abs(again - mel)[active].mean())
    # Measured: 0.60 nepers with random phase, 0.05 after 32 iterations (angry, actor 01).
    assert errors[GriffinLim().n_iter] < 0.15
    assert errors[GriffinLim().n_iter] < errors[0] / 4
