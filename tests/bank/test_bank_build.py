"""Building a bank on a synthetic store: the axes are build_axis's, the diagnostics say what
they should on separable data, and bad requests are refused before anything is written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bankkit import HOLDOUT, OTHERS, REFERENCE, synthetic_store

from emosteer.artifacts import read_json
from emosteer.axes import EmotionAxis, build_axis
from emosteer.bank import BankConfig, EmotionBank, build_bank
from emosteer.bank.build import agreement
from emosteer.errors import ArtifactError, ConfigError, EmosteerError

LAYER = 2


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return synthetic_store(tmp_path_factory.mktemp("syn") / "store", layer=LAYER)


@pytest.fixture(scope="module")
def bank(store, tmp_path_factory) -> EmotionBank:
    return build_bank(store.root, tmp_path_factory.mktemp("bank") / "b", reference=REFERENCE,
                      holdout_speakers=HOLDOUT)


def test_axes_are_build_axis_per_emotion(bank, store):
    assert bank.emotions == ("angry", "happy", "sad")  # corpus order, not the store's
    for e in OTHERS:
        expected = build_axis(store, LAYER, REFERENCE, e, exclude_speakers=HOLDOUT)
        np.testing.assert_allclose(bank.axis(e).vector, expected.vector, atol=1e-6)
        assert bank.axis(e).calibration == pytest.approx(expected.calibration, rel=1e-6)
        # each emotion is an ordinary axis directory
        alone = EmotionAxis.load(bank.path / e)
        assert (alone.config.source, alone.config.target) == (REFERENCE, e)
        assert alone.config.speakers == ("s0", "s1", "s2")
        assert bank.prosody(e) is None  # no audio in this store
        assert not (bank.path / e / "prosody.json").exists()


def test_bank_json_records_what_it_was_built_from(bank, store):
    cfg = bank.config
    assert isinstance(cfg, BankConfig)
    assert (cfg.reference, cfg.layer, cfg.emotions) == (REFERENCE, LAYER, ("angry", "happy", "sad"))
    assert cfg.encoder == store.config.encoder and cfg.dim == 16 and cfg.pooling == "mean"
    assert cfg.speakers == ("s0", "s1", "s2") and cfg.holdout == HOLDOUT
    assert cfg.prosody_speakers == ()
    raw = read_json(bank.path / "bank.json")
    assert raw["encoder"]["model"] == "syn-model" and raw["emosteer_version"]


def test_diagnostics_on_separable_data(bank):
    d = json.loads((bank.path / "diagnostics.json").read_text())
    assert d == json.loads(json.dumps(bank.diagnostics))
    assert set(d) >= {"reference", "layer", "emotions", "auc", "consistency", "per_emotion",
                      "cosines"}
    assert "leave-one-speaker-out" in d["consistency"] and "s3" in d["auc"]
    for e in OTHERS:
        p = d["per_emotion"][e]
        assert p["n_speakers"] == 3 and p["speakers"] == ["s0", "s1", "s2"]
        h = p["holdout"]
        assert h["scheme"] == "holdout" and h["test_speakers"] == list(HOLDOUT)
        assert h["auc_raw"] == 1.0 and h["auc_centred"] == 1.0 and h["n_test"] == 12
        assert p["mean_pairwise_cosine"] > 0.9 and p["agreement"] == 1.0
        assert p["calibration"] == pytest.approx(bank.axis(e).calibration)
        assert p["prosody"] is None and "no audio" in p["prosody_note"]


def test_cosine_matrix_is_symmetric_with_unit_diagonal(bank):
    c = bank.diagnostics["cosines"]
    assert c["emotions"] == list(bank.emotions)
    M = np.array(c["matrix"])
    np.testing.assert_allclose(M, M.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(M), 1.0, atol=1e-6)
    a, s = bank.axis("angry").unit, bank.axis("sad").unit
    assert M[0, 2] == pytest.approx(float(a @ s) / float(np.linalg.norm(a) * np.linalg.norm(s)),
                                    abs=1e-6)


def test_without_holdout_the_auc_is_leave_one_speaker_out(store, tmp_path):
    bank = build_bank(store.root, tmp_path / "b", emotions=["sad", "anger"])  # an alias
    assert bank.emotions == ("sad", "angry")
    assert bank.config.holdout == () and bank.config.speakers == tuple(f"s{i}" for i in range(5))
    h = bank.diagnostics["per_emotion"]["sad"]["holdout"]
    # pooled over five speakers' own offsets the raw projection overlaps; centred it does not
    assert h["scheme"] == "loso" and len(h["test_speakers"]) == 5 and h["auc_centred"] == 1.0


def test_agreement_counts_speakers_the_others_point_to():
    D = np.array([[1.0, 0], [1.0, 0.1], [0.9, -0.1], [-1.0, 0]])
    assert agreement(D) == 0.75
    assert np.isnan(agreement(D[:1]))


@pytest.mark.parametrize("kwargs, match", [
    ({"reference": "boredom"}, "reference 'boredom'"),
    ({"emotions": ["angry", "wistful"]}, "wistful"),
    ({"emotions": ["angry", "calm"]}, "reference"),
    ({"layer": 7}, "layer 7"),
    ({"holdout_speakers": ["s9"]}, "s9"),
    ({"holdout_speakers": ["s0", "s1", "s2", "s3", "s4"]}, "held out"),
])
def test_bad_requests_are_refused_and_write_nothing(store, tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_bank(store.root, tmp_path / "b", **kwargs)
    assert not (tmp_path / "b").exists()


def test_refuses_to_overwrite_without_force(store, tmp_path):
    build_bank(store.root, tmp_path / "b", emotions=["sad"])
    with pytest.raises(EmosteerError, match="already exists"):
        build_bank(store.root, tmp_path / "b", emotions=["sad"])
    assert build_bank(store.root, tmp_path / "b", emotions=["sad"], force=True).emotions == ("sad",)


def test_load_names_the_broken_file(bank, tmp_path):
    with pytest.raises(ArtifactError, match="not an emotion bank"):
        EmotionBank.load(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    cfg = read_json(bank.path / "bank.json")
    (broken / "bank.json").write_text(json.dumps({**cfg, "emotions": ["angry"]}))
    with pytest.raises(ArtifactError, match="angry"):
        EmotionBank.load(broken)  # bank.json lists an axis directory that is not there
    (broken / "bank.json").write_text(json.dumps({**cfg, "unknown_key": 1}))
    with pytest.raises(ArtifactError, match="bank.json"):
        EmotionBank.load(broken)
