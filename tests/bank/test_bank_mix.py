"""Mixing a bank's emotions: parsing mix specs, the mixed axis's push, the mixed prosody."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from bankkit import REFERENCE, synthetic_store

from emosteer.bank import EmotionBank, build_bank, mix_label, parse_mix
from emosteer.errors import ConfigError
from emosteer.prosody.world import ProsodyDelta
from emosteer.steering.steer import Steerer

KNOWN = ("angry", "happy", "sad", "surprise")


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> EmotionBank:
    root = tmp_path_factory.mktemp("mix")
    store = synthetic_store(root / "store")
    return build_bank(store.root, root / "bank", reference=REFERENCE, holdout_speakers=("s4",))


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(1).normal(size=(7, 16)).astype(np.float32)


def test_parse_mix():
    assert parse_mix("sad", KNOWN) == (("sad", 1.0),)
    assert parse_mix(" happy:0.5, surprise:0.5 ", KNOWN) == (("happy", 0.5), ("surprise", 0.5))
    assert parse_mix("surprised:1,ANGRY:-0.25", KNOWN) == (("surprise", 1.0), ("angry", -0.25))
    assert mix_label(parse_mix("sad", KNOWN)) == "sad"
    assert mix_label(parse_mix("happy:0.5,sad:0.5", KNOWN)) == "0.5*happy+0.5*sad"


@pytest.mark.parametrize("spec, match", [
    ("joyous", "unknown emotion 'joyous' .*angry, happy, sad, surprise"),
    ("happy:0.5,wistful:0.5", "'wistful'"),
    ("happy:lots", "'lots' of 'happy' is not a number"),
    ("happy:", "not a number"),
    ("happy:nan", "finite"),
    ("happy:inf", "finite"),
    ("happy,happy:2", "twice"),
    ("happy,surprised", None),  # aliases resolve: fine
    ("", "expected e.g."),
    (":0.5", "no emotion name"),
    ("happy,,sad", "no emotion name"),
])
def test_parse_mix_errors(spec, match):
    if match is None:
        assert len(parse_mix(spec, KNOWN)) == 2
        return
    with pytest.raises(ConfigError, match=match):
        parse_mix(spec, KNOWN)


def test_bank_parse_mix_uses_its_emotions(bank):
    with pytest.raises(ConfigError, match="this bank has: angry, happy, sad"):
        bank.parse_mix("surprise")
    assert bank.parse_mix([("sad", 2)]) == (("sad", 2.0),)
    with pytest.raises(ConfigError, match="calm"):
        bank.axis("calm")  # the reference is no emotion of the bank


def test_single_emotion_mix_is_that_axis(bank, frames):
    for spec in ("sad", "sad:1"):
        mixed = bank.mixed_axis(spec)
        for delta in (-1.0, 0.5, 1.0):
            np.testing.assert_allclose(mixed.steer(frames, delta),
                                       bank.axis("sad").steer(frames, delta), atol=1e-5)
        assert mixed.config.target == "sad" and mixed.config.source == REFERENCE
        assert mixed.calibration == pytest.approx(bank.axis("sad").calibration, rel=1e-6)


def test_half_and_half_pushes_by_the_mean_of_the_pushes(bank, frames):
    mixed = bank.mixed_axis("happy:0.5,angry:0.5")
    for delta in (0.7, -1.0):
        push = mixed.steer(frames, delta) - frames
        mean = 0.5 * ((bank.axis("happy").steer(frames, delta) - frames)
                      + (bank.axis("angry").steer(frames, delta) - frames))
        np.testing.assert_allclose(push, mean, atol=1e-5)
    assert mixed.config.target == "0.5*happy+0.5*angry" and mixed.config.origin == "bank-mix"
    assert mixed.config.layer == bank.config.layer and mixed.config.dim == bank.config.dim
    assert mixed.diagnostics["mix"] == [["happy", 0.5], ["angry", 0.5]]
    # a doubled weight doubles the push
    np.testing.assert_allclose(bank.mixed_axis("sad:2").steer(frames, 1) - frames,
                               2 * (bank.axis("sad").steer(frames, 1) - frames), atol=1e-5)


def test_a_mix_without_direction_is_refused(bank):
    with pytest.raises(ConfigError, match="no direction"):
        bank.mixed_axis("happy:0")


DELTAS = {"angry": dict(f0_shift_st=4.0, f0_range_ratio=1.5, tilt_db=4.0, energy_db=6.0,
                        rate_ratio=1.2),
          "happy": dict(f0_shift_st=2.0, f0_range_ratio=1.2, tilt_db=2.0, energy_db=2.0,
                        rate_ratio=1.1),
          "sad": dict(f0_shift_st=-2.0, f0_range_ratio=0.8, tilt_db=-2.0, energy_db=-4.0,
                      rate_ratio=0.9)}


@pytest.fixture()
def bank_with_prosody(bank, tmp_path) -> EmotionBank:
    """The bank's files plus a prosody.json per emotion, as a store with audio would give."""
    copy = tmp_path / "bank"
    shutil.copytree(bank.path, copy)
    for e, fields in DELTAS.items():
        ProsodyDelta(**fields, source=REFERENCE, target=e).save(copy / e / "prosody.json")
    return EmotionBank.load(copy)


def test_mixed_prosody_is_prosody_delta_mix(bank_with_prosody):
    b = bank_with_prosody
    assert b.prosody("sad").f0_shift_st == -2.0
    mixed = b.mixed_prosody("angry:0.5,happy:0.5")
    assert mixed == ProsodyDelta.mix([(b.prosody("angry"), 0.5), (b.prosody("happy"), 0.5)])
    assert mixed.f0_shift_st == pytest.approx(3.0) and mixed.energy_db == pytest.approx(4.0)
    assert mixed.rate_ratio == pytest.approx(np.sqrt(1.2 * 1.1))  # geometric in the ratios
    assert b.mixed_prosody("sad") == ProsodyDelta.mix([(b.prosody("sad"), 1.0)])


def test_mixed_prosody_is_none_when_an_emotion_has_none(bank):
    assert bank.mixed_prosody("sad") is None


def test_steerer_takes_the_mix_on_the_base_models(bank_with_prosody, frames):
    base = Steerer(None)  # the prosody path alone: no models to share
    s = bank_with_prosody.steerer(base, "angry:0.5,happy:0.5")
    np.testing.assert_allclose(s.axis.vector,
                               bank_with_prosody.mixed_axis("angry:0.5,happy:0.5").vector)
    assert s.prosody.f0_shift_st == pytest.approx(3.0)
    assert s.encoder is None and s.mapper is None
