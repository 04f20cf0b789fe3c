"""Streaming steering: block geometry, latency accounting, streamed vs offline, the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_tiny_run
from emosteer.audio import SAMPLE_RATE, load_audio, save_audio
from emosteer.cli import main
from emosteer.errors import AudioError, ConfigError
from emosteer.steering.compare import compare_outputs
from emosteer.steering.steer import SteerConfig, Steerer
from emosteer.steering.stream import StreamConfig, StreamingSteerer

LAYER = 2


def speechlike(seconds: float, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A gliding harmonic tone with a syllable-rate envelope over a -45 dB noise floor, so
    every mel band carries energy (the log-mel floor would otherwise dominate MCD)."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f = f0 * (1 + 0.05 * np.sin(2 * np.pi * 1.5 * t))
    phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    wav = sum(np.sin(k * phase) / k for k in range(1, 25))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 2.0 * t) ** 2
    noise = np.random.default_rng(seed).normal(size=len(t)) * 10 ** (-45 / 20)
    return (0.2 * wav * env / np.max(np.abs(wav)) + noise).astype(np.float32)


@pytest.fixture(scope="module")
def steerer(tmp_path_factory, tiny_model_dir) -> Steerer:
    """Tiny encoder + untrained mapper + a small random HiFi-GAN (deterministic, unlike
    Griffin-Lim's random initial phase) + a prosody delta without a rate change."""
    from emosteer.synthesis.hifigan import HiFiGANConfig
    from emosteer.synthesis.vocoders import HiFiGAN

    root = make_tiny_run(tmp_path_factory.mktemp("stream"), tiny_model_dir,
                         prosody=dict(rate_ratio=1.0), n_blocks=2)
    s = Steerer.from_artifacts(axis=root / "axis", mapper=root / "mapper", mode="both")
    import torch

    torch.manual_seed(0)
    s.vocoder = HiFiGAN(HiFiGANConfig(upsample_initial_channel=32)).eval()
    s.root = root
    return s


class Identity(StreamingSteerer):
    """The stream machinery around an identity 'steering': exposes the geometry alone."""

    def _window_output(self, window, w0, s):
        return window.copy()


def test_config_validation():
    with pytest.raises(ConfigError, match="multiple"):
        StreamConfig(block_ms=30)
    with pytest.raises(ConfigError, match="crossfade"):
        StreamConfig(lookahead_ms=20, crossfade_ms=40)
    with pytest.raises(ConfigError, match="lookahead"):
        StreamConfig(mode="latent", lookahead_ms=0, crossfade_ms=0)
    StreamConfig(mode="prosody", lookahead_ms=0, crossfade_ms=0)


@pytest.mark.parametrize("chunk", [1, 333, 1600, 5000])
def test_geometry_reassembles_the_input_exactly(steerer, chunk):
    """Windows, crops and crossfades line up: an identity window function gives the input back
    sample for sample, whatever size the incoming blocks have."""
    wav = speechlike(1.37)
    s = Identity(steerer, 1.0, StreamConfig(mode="prosody", match_loudness=False))
    out = np.concatenate(list(s.stream(wav[i:i + chunk] for i in range(0, len(wav), chunk))))
    np.testing.assert_allclose(out, wav, atol=1e-6)  # crossfade a*(1-r)+a*r rounds


def test_latency_accounting_matches_formula(steerer):
    """Output for [s, s+B) appears exactly when the input reaches s + B + L: after n input
    samples, floor((n - L) / B) blocks are out. latency_report states B + L."""
    cfg = StreamConfig(mode="prosody", block_ms=60, lookahead_ms=40, context_ms=100)
    s = Identity(steerer, 0.0, cfg)
    wav, step, got = speechlike(1.0), 160, 0
    for n in range(step, len(wav) + 1, step):
        got += len(s.process(wav[n - step:n]))
        assert got == max(0, (n - cfg.lookahead) // cfg.block) * cfg.block, n
    rep = s.latency_report()
    assert rep["algorithmic_ms"] == 100.0 == cfg.block_ms + cfg.lookahead_ms
    assert rep["steps"] == len(s.step_seconds) == got // cfg.block
    assert rep["rtf"] == pytest.approx(np.mean(s.step_seconds) / 0.06)
    assert rep["latency_ms_p95"] == pytest.approx(100.0 + rep["compute_ms_p95"])


def test_prosody_delta_zero_is_transparent(steerer):
    wav = speechlike(1.0)
    y = StreamingSteerer(steerer, 0.0, StreamConfig(mode="prosody")).run(wav)
    np.testing.assert_allclose(y, wav, atol=1e-3)


def test_prosody_stream_close_to_offline(steerer):
    """Metric: median F0 difference (semitones) over frames voiced in both. The streamed
    shift lands within 0.5 st of the offline one; delta +1 vs 0 offline differ by ~3 st."""
    wav = speechlike(2.0)
    off, sr = steerer.steer(wav, 1.0, SteerConfig(mode="prosody"))
    off0, _ = steerer.steer(wav, 0.0, SteerConfig(mode="prosody"))
    y = StreamingSteerer(steerer, 1.0, StreamConfig(mode="prosody")).run(wav)
    assert abs(len(y) - len(off)) <= StreamConfig().block
    near, far = compare_outputs(y, off, sr), compare_outputs(off0, off, sr)
    assert far["f0_diff_st"] > 2.5
    assert near["f0_diff_st"] < 0.5
    assert abs(near["level_db"]) < 1.0


def test_latent_stream_with_whole_file_windows_is_offline(steerer):
    """When every window holds the whole input the stream must reproduce offline steering
    exactly: the crops, the global mel grid and the crossfades add nothing of their own."""
    wav = speechlike(1.0)
    off, sr = steerer.steer(wav, 1.0, SteerConfig(mode="latent", match_loudness=False))
    cfg = StreamConfig(mode="latent", block_ms=200, lookahead_ms=1000, context_ms=1000,
                       match_loudness=False)
    y = StreamingSteerer(steerer, 1.0, cfg).run(wav)
    assert len(y) == len(off)
    np.testing.assert_allclose(y, off, atol=1e-6)


def test_latent_stream_close_to_offline(steerer):
    """Metric: MCD (dB, active frames) and SNR between streamed and offline output of the tiny
    encoder + random HiFi-GAN, 1 s of left context. Measured ~1.5 dB / ~28 dB (the SNR is
    bounded by the running loudness gain); offline delta 0 vs 1 differ by several dB MCD."""
    wav = speechlike(1.5)
    off, sr = steerer.steer(wav, 1.0, SteerConfig(mode="latent"))
    off0, _ = steerer.steer(wav, 0.0, SteerConfig(mode="latent"))
    s = StreamingSteerer(steerer, 1.0, StreamConfig(mode="latent", block_ms=200,
                                                    context_ms=1000))
    y = s.run(wav)
    assert sr == s.sample_rate and len(y) == len(off)
    near, far = compare_outputs(y, off, sr), compare_outputs(off0, off, sr)
    assert near["mcd_db"] < 2.0 and near["mcd_db"] < far["mcd_db"] / 2, (near, far)
    assert near["snr_db"] > 20.0
    assert abs(near["level_db"]) < 0.5


def test_bad_blocks_are_clear_errors(steerer):
    s = StreamingSteerer(steerer, 1.0, StreamConfig(mode="prosody"))
    with pytest.raises(AudioError, match="NaN"):
        s.process(np.array([0.0, np.nan], np.float32))
    with pytest.raises(AudioError, match="mono"):
        s.process(np.zeros((2, 10), np.float32))
    s.reset()
    s.process(np.zeros(100, np.float32))
    with pytest.raises(AudioError, match="too short"):
        s.flush()
    with pytest.raises(ConfigError):
        StreamingSteerer(steerer, float("nan"))


def test_cli_stream(steerer, tmp_path):
    src = tmp_path / "in.wav"
    wav = speechlike(1.2)
    save_audio(src, wav, SAMPLE_RATE)
    out = tmp_path / "out.wav"
    args = ["steer", "--input", str(src), "--delta", "1", "--output", str(out), "--axis",
            str(steerer.root / "axis"), "--mode", "prosody", "--stream", "--block-ms", "80"]
    assert main(args) == 0
    y = load_audio(out)
    assert abs(len(y) - len(wav)) <= 2  # 16-bit file round trip, same length
    assert compare_outputs(y, load_audio(src), SAMPLE_RATE)["f0_diff_st"] > 2.0
    assert main(args) == 2  # refuses to overwrite without -f
    assert main(args + ["-f", "--block-ms", "30"]) == 2  # not a multiple of 20 ms
    assert main(args + ["-f", "--sr", "22050"]) == 2
    sweep = tmp_path / "sweep"
    assert main(["steer", "--input", str(src), "--deltas", "0,1", "--output", str(sweep),
                 "--axis", str(steerer.root / "axis"), "--mapper", str(steerer.root / "mapper"),
                 "--mode", "latent", "--stream", "--block-ms", "200"]) == 0
    assert len(list(sweep.glob("*.wav"))) == 2 and (sweep / "sweep.json").is_file()
