"""emosteer app: upload validation, the axis-name table, the model cache, reference axes, the
page's handlers, and a real headless-Chromium session (skips when Chromium is absent)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import make_tiny_run
from emosteer.app import core as app_mod
from emosteer.app.core import (
    AppConfig,
    SteeringApp,
    check_delta,
    check_mode,
    parse_axis_specs,
    validate_upload,
)
from emosteer.audio import SAMPLE_RATE, load_audio, save_audio
from emosteer.cli import main
from emosteer.errors import AudioError, ConfigError

LAYER = 2
CALIBRATION = 2.5


def tone(seconds: float, f0: float = 140.0) -> np.ndarray:
    """A harmonic tone with a slow envelope: voiced-like and deterministic."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 1.5 * t))) / SAMPLE_RATE
    wav = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 2.0 * t) ** 2
    return (0.2 * wav * env / np.max(np.abs(wav))).astype(np.float32)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A run directory: axis (+ prosody.json) and an untrained mapper for the tiny encoder."""
    return make_tiny_run(tmp_path_factory.mktemp("apprun") / "demo-run", tiny_model_dir,
                         calibration=CALIBRATION)


@pytest.fixture(scope="module")
def prosody_only(tmp_path_factory, run_dir) -> Path:
    """An axis directory with no mapper beside it: prosody steering only."""
    d = tmp_path_factory.mktemp("prosody_only") / "axis"
    shutil.copytree(run_dir / "axis", d)
    return d


@pytest.fixture(scope="module")
def app(run_dir, prosody_only) -> SteeringApp:
    return SteeringApp(parse_axis_specs([run_dir], [f"ponly={prosody_only}"]), AppConfig())


@pytest.fixture()
def clip(tmp_path) -> Path:
    return save_audio(tmp_path / "clip.wav", tone(1.0), SAMPLE_RATE)


# -- the axis table: names in, directories never -------------------------------------------
def test_axis_table_names_and_mappers(app, run_dir, prosody_only):
    assert app.names == ["demo-run", "ponly"]
    assert app.axes["demo-run"].mapper_dir == (run_dir / "mapper").resolve()
    assert app.axes["ponly"].mapper_dir is None
    assert app.axes["ponly"].axis_dir == prosody_only.resolve()


@pytest.mark.parametrize("spec", ["../evil={d}", "a/b={d}", ".hidden={d}", "={d}", "x..y={d}",
                                  "noequals"])
def test_bad_axis_specs_refused(spec, run_dir):
    with pytest.raises(ConfigError):
        parse_axis_specs([], [spec.format(d=run_dir / "axis")])


def test_axis_spec_errors(run_dir, tmp_path):
    with pytest.raises(ConfigError, match="twice"):
        parse_axis_specs([run_dir], [f"demo-run={run_dir / 'axis'}"])
    with pytest.raises(ConfigError, match="not an axis directory"):
        parse_axis_specs([tmp_path], [])
    with pytest.raises(ConfigError, match="no axes"):
        parse_axis_specs([], [])


@pytest.mark.parametrize("name", ["../demo-run", "/etc/passwd", "demo-run/../../x",
                                  "..\\demo-run", "", None])
def test_path_traversal_in_axis_name_is_refused(app, name, clip, monkeypatch):
    monkeypatch.setattr(app_mod.Steerer, "from_artifacts",
                        lambda **kw: pytest.fail("loaded a model"))
    with pytest.raises(ConfigError, match="unknown axis"):
        app.steer(tone(1.0), name, 0.5, "prosody")
    with pytest.raises(ConfigError, match="unknown axis"):
        app.build_reference_axis(name, clip, clip)


# -- upload validation ---------------------------------------------------------------------
def test_valid_upload_decodes_to_16k(tmp_path):
    path = save_audio(tmp_path / "in.wav", tone(1.0)[::2], SAMPLE_RATE // 2)
    wav = validate_upload(path, AppConfig(), roots=(tmp_path,))
    assert wav.dtype == np.float32 and abs(wav.shape[0] - SAMPLE_RATE) < 10


def test_oversized_upload_refused_before_decoding(tmp_path, monkeypatch):
    path = save_audio(tmp_path / "big.wav", tone(2.0), SAMPLE_RATE)  # 64 kB
    monkeypatch.setattr(app_mod, "load_audio", lambda *a: pytest.fail("decoded an oversized file"))
    with pytest.raises(AudioError, match=r"big\.wav: 0\.1 MB is over the 0\.05 MB limit"):
        validate_upload(path, AppConfig(max_upload_mb=0.05))


def test_non_audio_upload_refused_without_server_paths(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_bytes(b"this is plain text, not RIFF audio\n" * 20)
    with pytest.raises(AudioError, match="notes.wav") as e:
        validate_upload(path, AppConfig())
    assert str(tmp_path) not in str(e.value)


def test_too_long_upload_refused(tmp_path):
    path = save_audio(tmp_path / "long.wav", tone(3.0), SAMPLE_RATE)
    with pytest.raises(AudioError, match=r"3\.0 s is over the 2 s limit"):
        validate_upload(path, AppConfig(max_seconds=2.0))
    assert validate_upload(path, AppConfig(max_seconds=3.5)).shape[0] == 3 * SAMPLE_RATE


def test_upload_outside_upload_folder_refused(tmp_path, clip):
    inside = tmp_path / "uploads"
    inside.mkdir()
    with pytest.raises(AudioError, match="not an uploaded file"):
        validate_upload(clip, AppConfig(), roots=(inside,))
    sneaky = inside / ".." / clip.name  # resolves outside the folder
    with pytest.raises(AudioError, match="not an uploaded file"):
        validate_upload(sneaky, AppConfig(), roots=(inside,))
    with pytest.raises(AudioError, match="no audio given"):
        validate_upload(None, AppConfig(), roots=(inside,))


@pytest.mark.parametrize("bad", [1.5, -1.01, float("nan"), float("inf"), "x", None])
def test_delta_outside_slider_range_refused(bad):
    with pytest.raises(ConfigError):
        check_delta(bad)
    assert check_delta("-0.25") == -0.25


def test_mode_and_config_validation():
    with pytest.raises(ConfigError):
        check_mode("../latent")
    with pytest.raises(ConfigError):
        AppConfig(max_upload_mb=0)
    with pytest.raises(ConfigError):
        AppConfig(concurrency=0)


# -- steering, caching, reference axes ---------------------------------------------------------
def test_steering_returns_audio_and_readout(app):
    wav = tone(1.0)
    y, sr, readout = app.steer(wav, "demo-run", 0.5, "latent")
    assert sr == app.steerer("demo-run").vocoder.sample_rate
    assert abs(len(y) / sr - 1.0) < 0.05 and np.all(np.isfinite(y))
    assert readout.startswith("axis projection: input") and "calibration 2.500" in readout
    y2, sr2, _ = app.steer(wav, "ponly", -1.0, "prosody")
    assert sr2 == SAMPLE_RATE and y2.size > 0
    with pytest.raises(ConfigError, match="no mapper"):
        app.steer(wav, "ponly", 0.5, "latent")


def test_models_load_once_under_concurrent_requests(run_dir, monkeypatch):
    calls = []
    real = app_mod.Steerer.from_artifacts

    def counting(**kw):
        calls.append(kw["axis"])
        time.sleep(0.2)  # widen the race window a first-request stampede would fall into
        return real(**kw)

    monkeypatch.setattr(app_mod.Steerer, "from_artifacts", counting)
    fresh = SteeringApp(parse_axis_specs([run_dir], []), AppConfig())
    got = []
    threads = [threading.Thread(target=lambda: got.append(fresh.steerer("demo-run")))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(s) for s in got}) == 1


def test_reference_axis_from_two_clips(app, tmp_path):
    low = save_audio(tmp_path / "calm.wav", tone(1.0, f0=120.0), SAMPLE_RATE)
    high = save_audio(tmp_path / "angry.wav", tone(1.0, f0=200.0), SAMPLE_RATE)
    ref = app.build_reference_axis("demo-run", low, high)
    base = app.steerer("demo-run")
    expected = base.frames(load_audio(high)).mean(0) - base.frames(load_audio(low)).mean(0)
    np.testing.assert_allclose(ref.axis.vector, expected, rtol=1e-4, atol=1e-5)
    # delta = 1 means the full distance between the two references along the axis.
    assert ref.axis.calibration == pytest.approx(np.linalg.norm(expected), rel=1e-5)
    assert ref.prosody is not None and ref.prosody.f0_shift_st > 5.0  # 120 -> 200 Hz: ~8.8 st
    y, sr, readout = app.steer(tone(1.0), "demo-run", 0.5, "latent", reference=ref)
    assert y.size > 0 and "axis projection" in readout
    with pytest.raises(ConfigError, match="same audio"):
        app.build_reference_axis("demo-run", low, save_audio(tmp_path / "copy.wav",
                                                             tone(1.0, 120.0), SAMPLE_RATE))
    short = save_audio(tmp_path / "short.wav", tone(0.2), SAMPLE_RATE)
    with pytest.raises(AudioError, match="too short"):
        app.build_reference_axis("demo-run", short, high)


def test_tts_tab_speaks_and_steers(app, monkeypatch):
    from emosteer.tts.backends import list_backends

    if not list_backends().get("piper"):
        pytest.skip("piper is not installed")
    seen = []
    real_steer = app.steer
    monkeypatch.setattr(app, "steer", lambda wav, name, delta, mode, ref=None: (
        seen.append(delta) or real_steer(wav, name, delta, mode, ref)))
    y, sr, readout = app.synthesize("Hello there.", "ponly", 0.5, "prosody")
    assert sr == SAMPLE_RATE and len(y) > SAMPLE_RATE // 4
    assert seen == [0.25]  # emosteer tts's rule: alpha 1 is half the source->target shift
    with pytest.raises(ConfigError, match="limit"):
        app.synthesize("a" * (app_mod.MAX_TTS_CHARS + 1), "ponly", 0.5, "prosody")
    with pytest.raises(ConfigError, match="type something"):
        app.synthesize("   ", "ponly", 0.5, "prosody")


def test_cli_refuses_bad_axis_before_serving(run_dir, capsys):
    assert main(["app", "--axis", f"../x={run_dir / 'axis'}"]) == 2
    assert "no path separators" in capsys.readouterr().err
    assert main(["app", "--run", str(run_dir / "nope")]) == 2
    assert "not an axis directory" in capsys.readouterr().err
