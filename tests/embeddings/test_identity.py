"""Artifacts carry their encoder: the nested EncoderIdentity (and the mapper's MelConfig), the
0.1.0 flat layout migrated on load, and a rebuilt encoder checked against the recorded hash."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from emosteer.artifacts import config_from_dict, load_config, save_config
from emosteer.axes import EmotionAxis, wrap_vector
from emosteer.cli import main
from emosteer.embeddings.encoders import EncoderIdentity, load_encoder
from emosteer.embeddings.store import EmbeddingStore, StoreConfig
from emosteer.errors import ArtifactError
from emosteer.steering.steer import Steerer
from emosteer.synthesis.mapper import MapperConfig, load_mapper
from emosteer.synthesis.mel import HIFIGAN_22K, SSL_16K
from signals import tone_corpus

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "v0_1_0"
LAYER = 2


# --- config_from_dict learns nested dataclasses ------------------------------------------------

@dataclass(frozen=True)
class _Inner:
    a: int
    b: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Outer:
    inner: _Inner
    maybe: _Inner | None = None
    name: str = ""


def test_config_from_dict_builds_nested_and_optional_dataclasses():
    got = config_from_dict(_Outer, {"inner": {"a": 1, "b": [2, 3]}, "maybe": {"a": 4}})
    assert got == _Outer(_Inner(1, (2, 3)), _Inner(4))
    assert config_from_dict(_Outer, {"inner": {"a": 1}, "maybe": None}).maybe is None
    with pytest.raises(ArtifactError, match=r"inner: unknown keys for _Inner: \['c'\]"):
        config_from_dict(_Outer, {"inner": {"a": 1, "c": 2}})


def test_configs_round_trip_with_nested_identity_and_mel(tmp_path):
    ident = EncoderIdentity("m", model_type="wav2vec2", weights_hash="ab" * 8, random_init=True,
                            seed=3, num_layers=4, hidden_size=32)
    cfg = MapperConfig(in_dim=32, encoder=ident, layer=2, mel=SSL_16K, hidden=8, n_blocks=1)
    save_config(cfg, tmp_path / "mapper.json")
    saved = json.loads((tmp_path / "mapper.json").read_text())
    assert saved["encoder"]["seed"] == 3 and saved["mel"]["sample_rate"] == 16000
    assert "mel_sample_rate" not in saved and "model" not in saved
    assert load_config(MapperConfig, tmp_path / "mapper.json") == cfg
    store = StoreConfig(encoder=ident, layers=(1, 2), pooling="mean", hidden_size=32)
    save_config(store, tmp_path / "store.json")
    assert load_config(StoreConfig, tmp_path / "store.json") == store


# --- 0.1.0 artifacts still load -----------------------------------------------------------------

def test_v0_1_0_fixtures_load_with_migrated_identity():
    store = EmbeddingStore.open(FIXTURES / "store")
    assert store.config.encoder == EncoderIdentity(
        model="/tmp/fixmodel", model_type="wav2vec2", revision=None,
        config_hash="82e038fe09d71cb3", weights_hash="f029e545a88cc455", random_init=True,
        seed=0, num_layers=2, hidden_size=32)
    assert store.layers == (1,) and store.pooled(1).shape == (len(store), 32)

    axis = EmotionAxis.load(FIXTURES / "axis")
    assert axis.config.encoder.model == "/tmp/fixmodel" and axis.config.layer == 1
    assert axis.config.encoder.weights_hash is None  # 0.1.0 axes recorded only the name
    assert axis.config.encoder.random_init is None and axis.config.dim == 32

    mapper = load_mapper(FIXTURES / "mapper")
    enc = mapper.config.encoder
    assert (enc.model, enc.random_init, enc.seed) == ("/tmp/fixmodel", True, 0)
    assert enc.weights_hash is None
    assert mapper.config.mel == HIFIGAN_22K and mapper.config.layer == 1


@pytest.mark.parametrize("name,file", [("store", "store.json"), ("mapper", "mapper.json")])
def test_unknown_keys_are_still_refused(tmp_path, name, file):
    d = tmp_path / name
    shutil.copytree(FIXTURES / name, d)
    data = json.loads((d / file).read_text())
    data["surprise"] = 1
    (d / file).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="unknown keys.*surprise"):
        EmbeddingStore.open(d) if name == "store" else load_mapper(d)


def test_unknown_keys_in_an_old_axis_are_still_refused(tmp_path):
    d = tmp_path / "axis"
    shutil.copytree(FIXTURES / "axis", d)
    meta = json.loads((d / "axis.json").read_text())
    meta["config"]["surprise"] = 1
    (d / "axis.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="unknown keys.*surprise"):
        EmotionAxis.load(d)


# --- a rebuilt encoder is the one the artifact was made with ----------------------------------

def test_identity_load_checks_the_weights_hash(tiny_model_dir):
    enc = load_encoder(tiny_model_dir, layers=[LAYER], random_init=True, seed=1)
    ident = enc.identity
    assert ident.seed == 1 and ident.random_init and ident.hidden_size == 32
    again = ident.load((LAYER,), source="x.json")
    assert again.identity.weights_hash == ident.weights_hash
    # the hash covers the whole checkpoint: keeping fewer layers does not change it
    assert ident.load((1,), source="x.json").identity.weights_hash == ident.weights_hash
    wrong = EncoderIdentity(str(tiny_model_dir), weights_hash=ident.weights_hash,
                            random_init=True, seed=0)
    with pytest.raises(ArtifactError) as e:
        wrong.load((LAYER,), source="x.json")
    assert "x.json" in str(e.value) and ident.weights_hash in str(e.value)


@pytest.fixture(scope="module")
def seeded_mapper(tmp_path_factory, tiny_model_dir):
    """A mapper trained by `train-mapper --random-init --seed 1`, and an axis to steer with."""
    root = tmp_path_factory.mktemp("seeded")
    manifest = tone_corpus(root, n_speakers=2, n=4)
    out = root / "mapper"
    rc = main(["train-mapper", str(manifest), "--format", "csv", "--model", str(tiny_model_dir),
               "--random-init", "--seed", "1", "--layer", str(LAYER), "--out", str(out),
               "--mel", "ssl16k", "--hidden", "16", "--blocks", "1", "--batch-size", "2",
               "--epochs", "1", "--patience", "1000", "--val-speakers", "s1", "--no-progress"])
    assert rc == 0
    wrap_vector(np.random.default_rng(0).normal(size=32), model=str(tiny_model_dir),
                layer=LAYER, source="calm", target="angry").save(root / "axis")
    return root


def test_seeded_random_init_mapper_steers_through_its_own_weights(seeded_mapper, tiny_model_dir,
                                                                  tmp_path):
    recorded = json.loads((seeded_mapper / "mapper" / "mapper.json").read_text())["encoder"]
    seed1 = load_encoder(tiny_model_dir, layers=[LAYER], random_init=True, seed=1).identity
    seed0 = load_encoder(tiny_model_dir, layers=[LAYER], random_init=True, seed=0).identity
    assert (recorded["random_init"], recorded["seed"]) == (True, 1)
    assert recorded["weights_hash"] == seed1.weights_hash != seed0.weights_hash

    st = Steerer.from_artifacts(axis=seeded_mapper / "axis", mapper=seeded_mapper / "mapper")
    assert st.encoder.identity.weights_hash == recorded["weights_hash"]
    assert st.encoder.config.seed == 1

    out = tmp_path / "out.wav"
    rc = main(["steer", "--input", str(seeded_mapper / "c0.wav"), "--output", str(out),
               "--axis", str(seeded_mapper / "axis"), "--mapper", str(seeded_mapper / "mapper"),
               "--delta", "0.5"])
    assert rc == 0 and out.is_file()


def test_tampered_mapper_hash_is_a_clear_error(seeded_mapper, tmp_path, capsys):
    bad = tmp_path / "mapper"
    shutil.copytree(seeded_mapper / "mapper", bad)
    cfg = json.loads((bad / "mapper.json").read_text())
    real = cfg["encoder"]["weights_hash"]
    cfg["encoder"]["weights_hash"] = "0123456789abcdef"
    (bad / "mapper.json").write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError) as e:
        Steerer.from_artifacts(axis=seeded_mapper / "axis", mapper=bad)
    msg = str(e.value)
    assert str(bad / "mapper.json") in msg and "0123456789abcdef" in msg and real in msg

    rc = main(["steer", "--input", str(seeded_mapper / "c0.wav"), "--output",
               str(tmp_path / "o.wav"), "--axis", str(seeded_mapper / "axis"), "--mapper",
               str(bad), "--delta", "0.5"])
    err = capsys.readouterr().err
    assert rc == 2 and "0123456789abcdef" in err and real in err
