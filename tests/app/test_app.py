"""emosteer app: upload validation, the axis-name table and its labels, the model cache,
reference axes, the judges' numbers for an output, and the CLI's refusals."""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_LAYER, make_tiny_run
from emosteer.app import core as app_mod
from emosteer.app.core import (
    NO_EMOTION_JUDGE,
    AppConfig,
    SteeringApp,
    alpha_label,
    axis_label,
    check_delta,
    check_mode,
    delta_label,
    encoder_label,
    mode_help,
    parse_axis_specs,
    validate_upload,
)
from emosteer.audio import SAMPLE_RATE, load_audio, save_audio
from emosteer.axes import wrap_vector
from emosteer.cli import main
from emosteer.embeddings.encoders import EncoderIdentity
from emosteer.errors import ArtifactError, AudioError, ConfigError
from emosteer.evaluation.judges import DnsmosJudge

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


# -- what the page says: labels, slider ends, modes, footer -------------------------------------
def test_every_entry_is_labelled_with_emotions_layer_and_encoder(app, tiny_model_dir):
    # The tiny axis is a wrapped vector: its identity knows the model's name only.
    enc = f"{tiny_model_dir.name} (init not recorded)"
    assert app.axes["demo-run"].label == f"demo-run: calm → angry · layer {TINY_LAYER} · {enc}"
    assert app.axes["ponly"].label == f"ponly: calm → angry · layer {TINY_LAYER} · {enc}"
    assert (app.axes["demo-run"].source, app.axes["demo-run"].target) == ("calm", "angry")
    # The page shows labels and sends names; no label leaks a server folder.
    assert app.choices() == [(app.axes[n].label, n) for n in ("demo-run", "ponly")]
    assert not any(str(tiny_model_dir.parent) in label for label, _ in app.choices())


def test_encoder_and_axis_labels():
    hub = EncoderIdentity("facebook/wav2vec2-base", random_init=True, seed=0)
    assert encoder_label(hub) == "wav2vec2-base (random-init)"
    assert encoder_label(EncoderIdentity("/srv/models/hubert-large/")) == "hubert-large"
    assert encoder_label(EncoderIdentity("C:\\models\\w2v", random_init=None)) == \
        "w2v (init not recorded)"
    axis = wrap_vector(np.ones(4), model=hub, layer=5, source="calm", target="angry")
    assert axis_label("demo-out", axis.config) == \
        "demo-out: calm → angry · layer 5 · wav2vec2-base (random-init)"


def test_slider_ends_and_mode_lines(app):
    assert delta_label(app.ends("demo-run")) == \
        "delta: -1 = calmer (calm) … +1 = angrier (angry)"
    assert delta_label(("neutral", "surprise")) == \
        "delta: -1 = more neutral (neutral) … +1 = more surprised (surprise)"
    assert delta_label(("calm", "wistful")).endswith("+1 = more like wistful (wistful)")
    assert alpha_label(("calm", "sad")).startswith("alpha: -1 = calm … 0 = the synthesis")
    assert app.ends("../nope") is None and "toward" in delta_label(None)
    assert "copy synthesis" in mode_help("latent") and "differential" in mode_help("latent")
    assert all(w in mode_help("prosody") for w in ("WORLD", "F0", "effort", "rate"))
    assert mode_help("both").startswith("both: the prosody change first, then the latent push")


def test_decoding_is_differential_and_the_footer_names_the_vocoder(run_dir, monkeypatch):
    fresh = SteeringApp(parse_axis_specs([run_dir], []), AppConfig())
    assert AppConfig().vocoder == "auto"  # the packaged HiFi-GAN when its mels match
    assert "named once the first axis loads" in fresh.footer()
    steerer = fresh.steerer("demo-run")
    seen, real = [], steerer.steer
    monkeypatch.setattr(steerer, "steer", lambda wav, d, cfg: seen.append(cfg) or real(wav, d, cfg))
    fresh.steer(tone(1.0), "demo-run", 0.5, "latent")
    assert seen[0].decode == "differential"
    assert f"vocoder: {steerer.vocoder.name} ·" in fresh.footer()
    assert "Latent decoding: differential" in fresh.footer()


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
    y, sr, readout, judges = app.steer(wav, "demo-run", 0.5, "latent")
    assert sr == app.steerer("demo-run").vocoder.sample_rate
    assert abs(len(y) / sr - 1.0) < 0.05 and np.all(np.isfinite(y))
    assert readout.startswith("axis projection: input") and "calibration 2.500" in readout
    assert NO_EMOTION_JUDGE in judges
    y2, sr2, _, _ = app.steer(wav, "ponly", -1.0, "prosody")
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
    y, sr, readout, _ = app.steer(tone(1.0), "demo-run", 0.5, "latent", reference=ref)
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
    y, sr, readout, _ = app.synthesize("Hello there.", "ponly", 0.5, "prosody")
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


def test_cli_takes_banks_and_an_emotion_judge(run_dir, tmp_path, capsys):
    assert main(["app", "--run", str(run_dir), "--bank", str(tmp_path)]) == 2
    assert "NAME=DIR" in capsys.readouterr().err
    assert main(["app", "--run", str(run_dir), "--emotion-judge", str(tmp_path / "nope")]) == 2
    assert "emotion judge not found" in capsys.readouterr().err


# -- the judges' numbers for an output -----------------------------------------------------------
DNSMOS_OK, DNSMOS_WHY = DnsmosJudge().available()


def save_judge(path: Path, classes=("calm", "angry")) -> Path:
    """A binary eGeMAPS judge on two real feature columns (weights arbitrary): enough to put a
    number on a clip, with a calibration whose reference levels the readout repeats."""
    from emosteer.evaluation.emotion_judge import EmotionJudge, default_extractor

    names = default_extractor().feature_names
    cols = [n for n in names if n.startswith("F0semitone")][:2]
    cal = {"source": classes[0], "target": classes[1], "p_target_real_source": 0.2,
           "p_target_real_target": 0.8}
    EmotionJudge(classes, cols, np.zeros(2), np.ones(2), np.array([[0.01, -0.01]]),
                 np.array([0.1]), binary=True, meta={"calibration": cal}).save(path)
    return path


@pytest.fixture(scope="module")
def judged_run(tmp_path_factory, tiny_model_dir) -> Path:
    """A run whose evaluate stage saved an emotion judge (where `emosteer run` puts one)."""
    pytest.importorskip("opensmile")
    run = make_tiny_run(tmp_path_factory.mktemp("judged") / "judged-run", tiny_model_dir)
    save_judge(run / "evaluate" / "emotion_judge")
    return run


def test_output_is_judged_by_dnsmos_and_the_emotion_judge_beside_the_axis(judged_run):
    fresh = SteeringApp(parse_axis_specs([judged_run], []), AppConfig())
    assert fresh.axes["judged-run"].emotion_judge == (judged_run / "evaluate/emotion_judge").resolve()
    judges = fresh.steer(tone(1.0), "judged-run", 0.5, "prosody").judges
    assert re.search(r"P\(angry\) 0\.\d\d \(eGeMAPS emotion judge; real calm clips 0\.20, "
                     r"real angry 0\.80\)", judges), judges
    if not DNSMOS_OK:
        pytest.skip(f"the DNSMOS part is not checked: {DNSMOS_WHY}")
    assert re.search(r"DNSMOS OVRL \d\.\d\d \(SIG \d\.\d\d, BAK \d\.\d\d\)", judges), judges


def test_emotion_judge_flag_wins_and_must_know_the_target(judged_run, tmp_path):
    other = save_judge(tmp_path / "calm-sad", classes=("calm", "sad"))
    fresh = SteeringApp(parse_axis_specs([judged_run], []), AppConfig(emotion_judge=other))
    judges = fresh.steer(tone(1.0), "judged-run", 0.5, "prosody").judges
    assert "P(angry): the emotion judge knows calm, sad, not angry" in judges
    with pytest.raises(ArtifactError, match="emotion judge not found"):
        SteeringApp(fresh.axes, AppConfig(emotion_judge=tmp_path / "missing"))


def test_missing_dnsmos_is_a_note_and_judging_never_costs_the_audio(run_dir, monkeypatch):
    calls = []

    def no_dnsmos(names):
        calls.append(names)
        raise ConfigError("judge 'dnsmos' needs speechmos, which is not installed (pip install "
                          "speechmos) [speechmos: No module named 'speechmos']")

    monkeypatch.setattr(app_mod, "make_judges", no_dnsmos)
    fresh = SteeringApp(parse_axis_specs([run_dir], []), AppConfig())
    for _ in range(2):
        judges = fresh.steer(tone(1.0), "demo-run", 0.0, "prosody").judges
    assert judges.startswith("DNSMOS: not available (judge 'dnsmos' needs speechmos, which is not "
                             "installed (pip install speechmos))") and "No module" not in judges
    assert NO_EMOTION_JUDGE in judges and calls == [["dnsmos"]]  # tried once, not per request
    monkeypatch.setattr(fresh, "judge_output", lambda *a: 1 / 0)
    result = fresh.steer(tone(1.0), "demo-run", 0.0, "prosody")
    assert result.audio.size > 0 and result.judges.startswith("judges: failed (ZeroDivisionError)")


def test_long_outputs_are_judged_on_their_first_seconds(app, monkeypatch):
    monkeypatch.setattr(app_mod, "JUDGE_SECONDS", 0.5)
    judged = []
    monkeypatch.setattr(app, "_dnsmos_part", lambda clip, sr: judged.append(len(clip) / sr) or "D")
    out = app.judge_output(tone(2.0), SAMPLE_RATE, "angry")
    assert judged == [0.5] and out == f"D\n{NO_EMOTION_JUDGE}\n(judged on the first 0.5 s)"
