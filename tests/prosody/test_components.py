"""The richer ProsodyDelta components (F0 contour, energy dynamics, spectral envelope,
aperiodicity, pauses): each is learned back from a change imposed by construction, each shows
on the output and goes when switched off, scale 0 stays WORLD's plain resynthesis, old files
load, and deltas mix."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from emosteer.audio import PEAK_CEILING, resample, save_audio
from emosteer.cli import main
from emosteer.errors import ArtifactError, ConfigError
from emosteer.prosody.correlates import acoustic_correlates, envelope_correlates, speech_level_db
from emosteer.prosody.world import (
    COMPONENTS,
    LEGACY_COMPONENTS,
    NEUTRAL,
    EnvelopeShift,
    ProsodyDelta,
    apply_prosody,
    learn_prosody_delta,
)

SR = 16_000
LEGACY = dict(f0_shift_st=0.0, f0_range_ratio=1.0, tilt_db=0.0, energy_db=0.0, rate_ratio=1.0)
# A brighter envelope (WORLD's coded envelope: c1 < 0 lifts the highs; -0.6 is ~ +-3.5 dB at
# the ends of the band, about the size of RAVDESS's calm -> angry change).
MCEP = (-0.6, -0.15, 0.15) + (0.0,) * 21


def sentence(f0=140.0, f0_end=170.0, n_syll=8, syll_s=0.2, gap_s=0.05, pause_s=0.0,
             breath=0.0, amp=0.2, sr=SR, seed=0) -> np.ndarray:
    """A sentence-like voice: harmonic syllables (Hann-gated) with short gaps, a pause of
    `pause_s` of near-silence after every second syllable, F0 gliding f0 -> f0_end, and
    `breath` x aspiration noise (above 1.5 kHz, following the syllables) for breathiness."""
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(seed)
    parts = []
    for i in range(n_syll):
        parts.append(np.hanning(int(syll_s * sr)))
        parts.append(np.zeros(int((pause_s if i % 2 == 1 and i < n_syll - 1 else gap_s) * sr)))
    pad = np.zeros(int(0.3 * sr))
    gate = np.sqrt(np.concatenate([pad, *parts, pad]))
    track = np.linspace(f0, f0_end, len(gate))
    phase = 2 * np.pi * np.cumsum(track) / sr
    tone = sum(np.sin(k * phase) / k for k in range(1, int(5000 / max(f0, f0_end)) + 1))
    wav = gate * tone / np.max(np.abs(tone))
    if breath:
        noise = sosfilt(butter(4, 1500, "highpass", fs=sr, output="sos"), rng.standard_normal(len(gate)))
        wav = wav + breath * gate * noise / np.std(noise)
    wav = amp * wav / np.max(np.abs(wav)) + 1e-4 * rng.standard_normal(len(gate))
    return wav.astype(np.float32)


VOICES = (dict(f0=140.0, f0_end=170.0), dict(f0=210.0, f0_end=180.0, seed=1))


def _delta(**fields) -> ProsodyDelta:
    return ProsodyDelta(**{**LEGACY, **fields})


def _learn_back(delta: ProsodyDelta, components, voices=VOICES, **sentence_kw) -> ProsodyDelta:
    """Two 'speakers': each a voice resynthesised as it is (calm: WORLD's own colouring of
    the voice is then on both sides) and with `delta` imposed (target); the delta learned."""
    wavs, spk, emo = [], [], []
    for i, v in enumerate(voices):
        src = sentence(**v, **sentence_kw)
        wavs += [_resynth(src), apply_prosody(src, SR, delta, 1.0)]
        spk += [f"s{i}"] * 2
        emo += ["calm", "target"]
    return learn_prosody_delta(wavs, spk, emo, "calm", "target", components=components)


def _resynth(wav):
    return apply_prosody(wav, SR, None)


# --- learning recovers what was imposed -----------------------------------------------------

def test_contour_is_learned_back():
    d = _learn_back(_delta(f0_final_slope_st_s=6.0, f0_onset_st=2.0).only("contour"),
                    ("f0", "contour"))
    assert d.components == ("f0", "contour")
    assert d.f0_final_slope_st_s == pytest.approx(6.0, abs=1.2)
    assert d.f0_onset_st == pytest.approx(2.0, abs=0.5)
    assert d.f0_shift_st == pytest.approx(0.0, abs=0.3)  # shape only: the median stays


def test_energy_dynamics_are_learned_back():
    d = _learn_back(_delta(energy_range_ratio=1.5).only("dynamics"), ("energy", "dynamics"))
    # The 25 ms analysis window smears the steepest level changes: ~85% of the expansion shows.
    assert 1.3 < d.energy_range_ratio < 1.6
    assert d.energy_db == pytest.approx(0.0, abs=0.5)
    compressed = _learn_back(_delta(energy_range_ratio=0.7).only("dynamics"), ("dynamics",))
    assert 0.65 < compressed.energy_range_ratio < 0.8


def test_spectral_envelope_is_learned_back():
    d = _learn_back(_delta(mcep=MCEP).only("mcep"), ("mcep",))
    assert len(d.mcep) == len(MCEP)
    np.testing.assert_allclose(d.mcep[:3], MCEP[:3], atol=0.08)
    assert np.max(np.abs(d.mcep[3:])) < 0.05


def test_aperiodicity_is_learned_back():
    d = _learn_back(_delta(ap_db=(6.0,)).only("aperiodicity"), ("aperiodicity",))
    # D4C re-measures only part of a change WORLD synthesised (~40% here): the loop compresses.
    assert 0.25 * 6.0 < d.ap_db[0] < 1.2 * 6.0
    # Real breathiness (aspiration noise in the voice) reads as more aperiodicity.
    wavs = [sentence(**VOICES[0]), sentence(**VOICES[0], breath=0.5)]
    breathy = learn_prosody_delta(wavs, ["s", "s"], ["calm", "breathy"], "calm", "breathy",
                                  components=("aperiodicity",))
    assert breathy.ap_db[0] > 2.0


def test_pauses_are_learned_back_apart_from_the_rate():
    src = sentence(pause_s=0.25)
    a = acoustic_correlates(src, SR)
    assert a["pause_s"] == pytest.approx(3 * 0.25, abs=0.12)  # three pauses of 0.25 s
    longer = acoustic_correlates(apply_prosody(src, SR, _delta(pause_ratio=1.6), 1.0), SR)
    assert longer["pause_s"] / a["pause_s"] == pytest.approx(1.6, rel=0.12)
    assert longer["articulation_rate"] == pytest.approx(a["articulation_rate"], rel=0.05)
    # With pauses on, the rate is the articulation rate and pauses keep their length.
    fast = acoustic_correlates(apply_prosody(src, SR, _delta(rate_ratio=1.5, pause_ratio=1.0,
                                                            components=("rate", "pauses")),
                                             1.0), SR)
    assert fast["articulation_rate"] / a["articulation_rate"] == pytest.approx(1.5, rel=0.12)
    assert fast["pause_s"] == pytest.approx(a["pause_s"], abs=0.05)
    d = _learn_back(_delta(pause_ratio=1.6).only("pauses"), ("rate", "pauses"), pause_s=0.25)
    p = a["pause_s"]
    assert d.pause_ratio == pytest.approx((1.6 * p + 0.1) / (p + 0.1), rel=0.1)  # floor 0.1 s
    assert d.rate_ratio == pytest.approx(1.0, abs=0.05)


# --- each component shows on the output, and switching it off removes it -------------------

FULL = _delta(f0_shift_st=2.0, f0_range_ratio=1.3, tilt_db=3.0, energy_db=3.0, rate_ratio=1.1,
              f0_final_slope_st_s=6.0, f0_onset_st=2.0, energy_range_ratio=1.4, mcep=MCEP,
              ap_db=(-4.0,), pause_ratio=1.5)


def _measure(wav) -> dict:
    return {**acoustic_correlates(wav, SR), **envelope_correlates(wav, SR)}


# component -> (measure, the change it makes on its own, given FULL's fields)
EFFECTS = {
    "contour": lambda m, r: m["f0_final_slope_st_s"] - r["f0_final_slope_st_s"],
    "dynamics": lambda m, r: m["energy_range_db"] / r["energy_range_db"] - 1,
    "mcep": lambda m, r: m["mcep"][0] - r["mcep"][0],
    "aperiodicity": lambda m, r: m["ap_db"][0] - r["ap_db"][0],
    "pauses": lambda m, r: m["pause_s"] / r["pause_s"] - 1,
}


def test_each_component_shows_and_switching_it_off_removes_it():
    src = sentence(pause_s=0.25)
    plain = _measure(_resynth(src))
    # Without the tilt: with it, the shelf takes over the mcep's tilt when mcep is switched
    # off (by design, see test_tilt_and_mcep_do_not_double_count), which c1 would show.
    full_delta = FULL.without("tilt")
    full = _measure(apply_prosody(src, SR, full_delta, 1.0))
    for comp, effect in EFFECTS.items():
        alone = effect(_measure(apply_prosody(src, SR, FULL.only(comp), 1.0)), plain)
        assert abs(alone) > {"contour": 3.0, "dynamics": 0.2, "mcep": 0.3, "aperiodicity": 1.0,
                             "pauses": 0.3}[comp], (comp, alone)
        without = _measure(apply_prosody(src, SR, full_delta.without(comp), 1.0))
        removed = effect(full, without)  # what switching it off took away
        assert np.sign(removed) == np.sign(alone), (comp, removed, alone)
        assert abs(removed) == pytest.approx(abs(alone), rel=0.5), (comp, removed, alone)
        assert np.array_equal(apply_prosody(src, SR, FULL.only(comp).without(comp), 1.0),
                              _resynth(src))


def test_tilt_and_mcep_do_not_double_count():
    src = sentence()
    plain = acoustic_correlates(_resynth(src), SR)["alpha_ratio_db"]
    mcep_only = acoustic_correlates(apply_prosody(src, SR, _delta(mcep=MCEP).only("mcep"), 1.0),
                                    SR)["alpha_ratio_db"] - plain
    assert mcep_only > 1.5  # the mcep change brightens on its own
    both = acoustic_correlates(apply_prosody(src, SR, _delta(tilt_db=4.0, mcep=MCEP), 1.0),
                               SR)["alpha_ratio_db"] - plain
    # The shelf supplies only what the mcep change left: the total is tilt_db, not the sum.
    assert both == pytest.approx(4.0, abs=1.0)


def test_scale_zero_is_plain_world_resynthesis_for_every_component():
    src = sentence(pause_s=0.25)
    plain = _resynth(src)
    assert np.array_equal(apply_prosody(src, SR, FULL, 0.0), plain)
    for comp in COMPONENTS:
        assert np.array_equal(apply_prosody(src, SR, FULL.only(comp), 0.0), plain), comp
    assert np.array_equal(apply_prosody(src, SR, NEUTRAL, 1.0), plain)


def _rms_db(x) -> float:
    return 10 * math.log10(float(np.mean(np.asarray(x, np.float64) ** 2)))


def _rumble(n: int, seed: int = 3) -> np.ndarray:
    """A room's noise floor: low-passed noise, the colour WORLD's white-noise rendering loses."""
    from scipy.signal import butter, sosfilt

    noise = np.random.default_rng(seed).standard_normal(n)
    return (3e-3 * sosfilt(butter(2, 300, "lowpass", fs=SR, output="sos"), noise)).astype(np.float32)


def test_unvoiced_stretches_are_the_recording():
    src = sentence(pause_s=0.3)
    src = src + _rumble(len(src))
    pad = slice(0, int(0.25 * SR))  # the leading silence: room noise only
    out = apply_prosody(src, SR, _delta(f0_shift_st=3.0, tilt_db=4.0, mcep=MCEP,
                                        ap_db=(-4.0,)), 1.0)
    # The same samples up to the level match, where WORLD would render other noise.
    assert np.corrcoef(out[pad], src[pad])[0, 1] > 0.999
    assert abs(np.corrcoef(_resynth_everything(src)[pad], src[pad])[0, 1]) < 0.5
    # Time changes move the noise, and it keeps its level.
    pad = slice(0, int(0.15 * SR))  # inside the leading silence at 1.3x too
    for d in (_delta(rate_ratio=1.3).only("rate"), _delta(rate_ratio=0.75).only("rate"),
              _delta(pause_ratio=1.6).only("pauses")):
        moved = apply_prosody(src, SR, d, 1.0)
        assert _rms_db(moved[pad]) == pytest.approx(_rms_db(src[pad]), abs=1.0), d.summary()


def _resynth_everything(wav):
    """WORLD resynthesis of every frame: an envelope shift (here a null one) keeps none of the
    recording."""
    shift = EnvelopeShift(np.zeros((2, 2)), np.array([0.0, SR / 2]), np.array([0.0, 1.0]))
    return apply_prosody(wav, SR, None, envelope=shift)


def test_a_louder_voice_leaves_the_room_noise_where_it_was():
    src = sentence(pause_s=0.3, amp=0.05)  # +10 dB stays below the peak limiter
    src = src + _rumble(len(src))
    pad = slice(0, int(0.25 * SR))
    out = apply_prosody(src, SR, _delta(energy_db=10.0).only("energy"), 1.0)
    assert speech_level_db(out, SR) - speech_level_db(src, SR) == pytest.approx(10.0, abs=0.5)
    assert _rms_db(out[pad]) == pytest.approx(_rms_db(src[pad]), abs=1.0)
    quiet = apply_prosody(src, SR, _delta(energy_db=10.0).only("energy"), 1.0,
                          preserve_level=True)
    assert speech_level_db(quiet, SR) == pytest.approx(speech_level_db(src, SR), abs=0.5)


def test_loud_input_never_clips():
    loud = sentence(amp=0.95)
    out = apply_prosody(loud, SR, FULL.only("energy", "dynamics", "mcep", "tilt"), 2.0)
    assert float(np.max(np.abs(out))) <= PEAK_CEILING + 1e-6


def test_envelope_changes_apply_at_other_sample_rates():
    src = sentence()
    d = _delta(mcep=MCEP, ap_db=(-4.0,)).only("mcep", "aperiodicity")  # learned at 16 kHz
    for sr in (SR, 22050):
        wav = resample(src, SR, sr) if sr != SR else src
        plain = envelope_correlates(apply_prosody(wav, sr, None), sr)
        moved = envelope_correlates(apply_prosody(wav, sr, d, 1.0), sr)
        assert moved["mcep"][0] - plain["mcep"][0] == pytest.approx(MCEP[0], abs=0.12), sr
        assert moved["ap_db"][0] - plain["ap_db"][0] < -0.8, sr


# --- the artifact ---------------------------------------------------------------------------

def test_components_default_and_switches():
    assert NEUTRAL.components == LEGACY_COMPONENTS
    assert _delta(f0_shift_st=1.0).components == LEGACY_COMPONENTS
    assert _delta(mcep=MCEP, pause_ratio=1.2).components == LEGACY_COMPONENTS + ("mcep", "pauses")
    assert FULL.components == COMPONENTS
    assert FULL.without("mcep", "f0").components == tuple(c for c in COMPONENTS
                                                          if c not in ("mcep", "f0"))
    assert FULL.only("pauses", "contour").components == ("contour", "pauses")  # canonical order
    assert FULL.only("contour").value("f0_shift_st") == 0.0  # off counts as neutral
    assert FULL.only("contour").value("mcep") == ()
    for bad in (lambda: FULL.without("bogus"), lambda: FULL.only("f0", "pitch"),
                lambda: _delta(components=("loudness",)), lambda: _delta(pause_ratio=0.0),
                lambda: _delta(mcep=(float("nan"),)), lambda: _delta(components="f0")):
        with pytest.raises(ConfigError):
            bad()


def test_old_json_loads_unchanged(tmp_path):
    # What emosteer wrote before the new components existed: the five plus metadata.
    old = {"f0_shift_st": 3.0, "f0_range_ratio": 1.2, "tilt_db": 4.0, "energy_db": 6.0,
           "rate_ratio": 1.1, "source": "calm", "target": "angry", "speakers": ["ravdess_01"],
           "n_source": 8, "n_target": 8, "sample_rate": 16000, "frame_period_ms": 10.0,
           "st_reference_hz": 55.0, "emosteer_version": "0.1.0"}
    (tmp_path / "prosody.json").write_text(json.dumps(old))
    d = ProsodyDelta.load(tmp_path / "prosody.json")
    assert d.components == LEGACY_COMPONENTS
    assert (d.f0_final_slope_st_s, d.f0_onset_st, d.energy_range_ratio, d.mcep, d.ap_db,
            d.pause_ratio) == (0.0, 0.0, 1.0, (), (), 1.0)
    src = sentence()
    assert np.array_equal(apply_prosody(src, SR, d, 1.0),
                          apply_prosody(src, SR, ProsodyDelta(3.0, 1.2, 4.0, 6.0, 1.1), 1.0))
    # A full delta round-trips, components and vectors included; unknown names are refused.
    FULL.without("tilt").save(tmp_path / "full.json")
    assert ProsodyDelta.load(tmp_path / "full.json") == FULL.without("tilt")
    data = json.loads((tmp_path / "full.json").read_text())
    (tmp_path / "bad.json").write_text(json.dumps({**data, "components": ["f0", "bogus"]}))
    with pytest.raises(ArtifactError, match="bad.json"):
        ProsodyDelta.load(tmp_path / "bad.json")


def test_mix_is_weighted_and_halfway_at_half():
    a = _delta(f0_shift_st=4.0, f0_range_ratio=2.0, tilt_db=2.0, f0_final_slope_st_s=6.0,
               energy_range_ratio=1.5, mcep=MCEP, ap_db=(2.0,), pause_ratio=2.0, source="calm",
               target="angry", speakers=("a",), n_source=3, n_target=4)
    b = _delta(f0_shift_st=-2.0, f0_range_ratio=0.5, source="calm", target="sad",
               speakers=("b",), n_source=1, n_target=1).without("tilt")
    m = ProsodyDelta.mix([(a, 0.5), (b, 0.5)])
    assert m.f0_shift_st == pytest.approx(1.0)
    assert m.f0_range_ratio == pytest.approx(1.0)  # geometric: sqrt(2 * 0.5)
    assert m.tilt_db == pytest.approx(1.0)  # b's tilt is off: neutral
    assert m.f0_final_slope_st_s == pytest.approx(3.0)
    assert m.energy_range_ratio == pytest.approx(math.sqrt(1.5))
    assert m.pause_ratio == pytest.approx(math.sqrt(2.0))
    np.testing.assert_allclose(m.mcep, np.asarray(MCEP) / 2)  # b has none: zero
    assert m.ap_db == pytest.approx((1.0,))
    assert m.components == a.components
    assert (m.source, m.target, m.speakers, m.n_source, m.n_target) == (
        "calm", "0.5*angry+0.5*sad", ("a", "b"), 4, 5)
    assert ProsodyDelta.mix([(a, 1.0)]) == dataclasses.replace(a, target="1*angry")
    with pytest.raises(ConfigError):
        ProsodyDelta.mix([])
    with pytest.raises(ConfigError):
        ProsodyDelta.mix([(a, 0.5), (_delta(sample_rate=22050), 0.5)])
    with pytest.raises(ConfigError):
        ProsodyDelta.mix([(a, 0.5), (_delta(mcep=(0.1, 0.2)), 0.5)])


def test_learning_caches_each_clip(tmp_path):
    wavs = [sentence(f0=140.0, f0_end=170.0), sentence(f0=180.0, f0_end=200.0)]
    args = (wavs, ["s", "s"], ["calm", "angry"], "calm", "angry")
    d = learn_prosody_delta(*args, cache_dir=tmp_path / "cache")
    entries = sorted((tmp_path / "cache" / "prosody").glob("*.json"))
    assert len(entries) == 2
    assert learn_prosody_delta(*args, cache_dir=tmp_path / "cache") == d
    # The cache holds what was computed: a learner of the five alone reads the same entries.
    assert learn_prosody_delta(*args, cache_dir=tmp_path / "cache",
                               components=LEGACY_COMPONENTS).f0_shift_st == d.f0_shift_st
    assert d.components == COMPONENTS and d.f0_shift_st > 3


# --- CLI --------------------------------------------------------------------------------------

def test_cli_learn_components(ravdess_dir: Path, tmp_path, capsys):
    out = tmp_path / "delta.json"
    argv = ["prosody", "learn", str(ravdess_dir), "--format", "ravdess", "--source", "calm",
            "--target", "angry", "--speakers", "ravdess_01", "--out", str(out)]
    assert main(argv + ["--components", "f0,contour,mcep", "--cache-dir",
                        str(tmp_path / "cache")]) == 0
    d = ProsodyDelta.load(out)
    assert d.components == ("f0", "contour", "mcep") and len(d.mcep) == 24
    assert d.f0_shift_st > 2
    assert main(argv + ["-f", "--components", "f0,bogus"]) == 2
    assert "bogus" in capsys.readouterr().err


def test_cli_apply_without(tmp_path):
    src = save_audio(tmp_path / "in.wav", sentence(), SR)
    _delta(f0_shift_st=4.0, mcep=MCEP).save(tmp_path / "d.json")
    base = ["prosody", "apply", str(src), "--delta-file", str(tmp_path / "d.json")]
    assert main(base + ["--out", str(tmp_path / "all.wav")]) == 0
    assert main(base + ["--without", "f0", "--out", str(tmp_path / "no_f0.wav")]) == 0
    from emosteer.audio import load_audio

    f0 = {n: acoustic_correlates(load_audio(tmp_path / n), SR)["median_f0_st"]
          for n in ("in.wav", "all.wav", "no_f0.wav")}
    assert f0["all.wav"] - f0["in.wav"] == pytest.approx(4.0, abs=0.3)
    assert f0["no_f0.wav"] == pytest.approx(f0["in.wav"], abs=0.3)
    assert main(base + ["--without", "pitch", "--out", str(tmp_path / "x.wav")]) == 2
