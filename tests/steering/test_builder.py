"""One builder: every check lives in Steerer.__init__, so the constructor, from_artifacts and
with_axis all refuse the same inconsistent parts with the same clear message."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from emosteer.axes import EmotionAxis, wrap_vector
from emosteer.embeddings.encoders import EncoderIdentity, load_encoder
from emosteer.errors import ArtifactError, ConfigError
from emosteer.prosody.world import ProsodyDelta
from emosteer.steering.steer import Steerer
from emosteer.synthesis.mapper import Mapper, MapperConfig, load_mapper
from emosteer.synthesis.mel import HIFIGAN_22K, SSL_16K
from emosteer.synthesis.vocoders import load_vocoder

LAYER = 2
WRONG_HASH = "0123456789abcdef"


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return load_encoder(tiny_model_dir, layers=[1, LAYER])


@pytest.fixture(scope="module")
def vocoder():
    return load_vocoder("griffinlim", mel_config=SSL_16K)


def _axis(encoder, layer=LAYER, dim=32, **identity) -> EmotionAxis:
    ident = dataclasses.replace(encoder.identity, **identity)
    return wrap_vector(np.random.default_rng(0).normal(size=dim), ident, layer, "calm", "angry")


def _mapper(encoder, layer=LAYER, in_dim=32, mel=SSL_16K, **identity) -> Mapper:
    ident = dataclasses.replace(encoder.identity, **identity)
    return Mapper(MapperConfig(in_dim=in_dim, encoder=ident, layer=layer, mel=mel, hidden=8,
                               n_blocks=1)).eval()


def _both(encoder, axis, mapper, vocoder):
    """Build through the constructor and through from_artifacts (loaded parts)."""
    yield lambda: Steerer(axis, encoder=encoder, mapper=mapper, vocoder=vocoder)
    yield lambda: Steerer.from_artifacts(axis=axis, mapper=mapper, vocoder=vocoder,
                                         encoder=encoder)


def _refused(builders, exc, match):
    for build in builders:
        with pytest.raises(exc, match=match):
            build()


def test_consistent_parts_build_every_way(encoder, vocoder, tmp_path, tiny_model_dir):
    axis, mapper = _axis(encoder), _mapper(encoder)
    for build in _both(encoder, axis, mapper, vocoder):
        st = build()
        assert st.encoder is encoder and st.mapper is mapper and st.vocoder is vocoder
    axis.save(tmp_path / "axis")
    mapper.save(tmp_path / "mapper")
    ProsodyDelta(f0_shift_st=1.0, f0_range_ratio=1.0, tilt_db=0.0, energy_db=0.0, rate_ratio=1.0,
                 source="calm", target="angry").save(tmp_path / "axis" / "prosody.json")
    st = Steerer.from_artifacts(axis=tmp_path / "axis", mapper=tmp_path / "mapper", mode="both")
    assert st.encoder.identity.weights_hash == encoder.identity.weights_hash
    assert st.encoder.layers == (LAYER,) and st.prosody is not None
    assert st.vocoder.mel_config == SSL_16K
    only = Steerer.from_artifacts(axis=tmp_path / "axis", mode="prosody")
    assert only.encoder is None and only.mapper is None and only.prosody is not None
    with pytest.raises(ConfigError, match="needs --axis and --mapper"):
        Steerer.from_artifacts(axis=tmp_path / "axis", mode="latent")


def test_mel_mismatch_between_mapper_and_vocoder(encoder, vocoder):
    axis, mapper = _axis(encoder), _mapper(encoder, mel=HIFIGAN_22K)
    _refused(_both(encoder, axis, mapper, vocoder), ConfigError,
             "mapper produces 80 mels at 22050 Hz / hop 256, the vocoder expects 80 at 16000")


def test_axis_layer_the_encoder_does_not_compute(tiny_model_dir, vocoder, encoder):
    only1 = load_encoder(tiny_model_dir, layers=[1])
    axis, mapper = _axis(encoder), _mapper(encoder)
    _refused(_both(only1, axis, mapper, vocoder), ConfigError,
             f"does not compute the axis layer {LAYER}")


def test_mapper_layer_differs_from_axis_layer(encoder, vocoder):
    axis, mapper = _axis(encoder, layer=1), _mapper(encoder, layer=LAYER)
    _refused(_both(encoder, axis, mapper, vocoder), ConfigError,
             f"reads layer {LAYER}, the axis is at layer 1")


def test_hidden_sizes_must_agree(encoder, vocoder):
    # encoder 32 dims vs axis and mapper 16
    axis, mapper = _axis(encoder, dim=16), _mapper(encoder, in_dim=16)
    _refused(_both(encoder, axis, mapper, vocoder), ConfigError,
             "the encoder has 32 dims, the axis 16")
    # mapper vs axis
    axis, mapper = _axis(encoder), _mapper(encoder, in_dim=16)
    _refused(_both(encoder, axis, mapper, vocoder), ConfigError,
             "the mapper reads 16-dim frames, the axis has 32")
    # encoder vs mapper, no axis (a reference axis is added later)
    with pytest.raises(ConfigError, match="the encoder has 32 dims, the mapper reads 16"):
        Steerer(None, encoder=encoder, mapper=_mapper(encoder, in_dim=16), vocoder=vocoder)


def test_mapper_identity_mismatch_names_both_hashes(encoder, vocoder, tmp_path):
    real = encoder.identity.weights_hash
    axis, mapper = _axis(encoder), _mapper(encoder, weights_hash=WRONG_HASH)
    _refused(_both(encoder, axis, mapper, vocoder), ArtifactError,
             f"the mapper: recorded encoder weights hash {WRONG_HASH}.*{real}")
    mapper.save(tmp_path / "mapper")
    with pytest.raises(ArtifactError, match=f"{WRONG_HASH}.*{real}") as e:
        Steerer.from_artifacts(axis=axis, mapper=tmp_path / "mapper", vocoder=vocoder)
    assert str(tmp_path / "mapper" / "mapper.json") in str(e.value)
    with pytest.raises(ArtifactError, match=str(tmp_path / "mapper" / "mapper.json")):
        Steerer(axis, encoder=encoder, mapper=load_mapper(tmp_path / "mapper"), vocoder=vocoder)


def test_axis_identity_mismatch_names_both_hashes(encoder, vocoder, tmp_path):
    real = encoder.identity.weights_hash
    axis, mapper = _axis(encoder, weights_hash=WRONG_HASH), _mapper(encoder)
    _refused(_both(encoder, axis, mapper, vocoder), ArtifactError,
             f"the axis: recorded encoder weights hash {WRONG_HASH}.*{real}")
    axis.save(tmp_path / "axis")
    with pytest.raises(ArtifactError, match=f"{WRONG_HASH}.*{real}") as e:
        Steerer.from_artifacts(axis=tmp_path / "axis", mapper=mapper, vocoder=vocoder,
                               encoder=encoder)
    assert str(tmp_path / "axis" / "axis.json") in str(e.value)


def test_identity_unrecorded_is_not_checked(encoder, vocoder):
    axis = wrap_vector(np.ones(32), "elsewhere", LAYER, "calm", "angry")  # a name only
    mapper = Mapper(MapperConfig(in_dim=32, encoder=EncoderIdentity("elsewhere"), layer=LAYER,
                                 mel=SSL_16K, hidden=8, n_blocks=1))
    assert Steerer(axis, encoder=encoder, mapper=mapper, vocoder=vocoder).axis is axis


def test_from_artifacts_rebuilds_the_recorded_encoder_and_checks_it(encoder, tmp_path,
                                                                    tiny_model_dir):
    seeded = load_encoder(tiny_model_dir, layers=[LAYER], random_init=True, seed=5)
    _mapper(seeded).save(tmp_path / "good")
    st = Steerer.from_artifacts(axis=_axis(seeded), mapper=tmp_path / "good")
    assert st.encoder.config.random_init and st.encoder.config.seed == 5
    assert st.encoder.identity.weights_hash == seeded.identity.weights_hash
    # same checkpoint and hash, but a different seed recorded: the rebuilt weights differ
    wrong_seed = _mapper(seeded, seed=6)
    wrong_seed.save(tmp_path / "bad")
    with pytest.raises(ArtifactError, match=f"{seeded.identity.weights_hash}") as e:
        Steerer.from_artifacts(axis=_axis(seeded), mapper=tmp_path / "bad")
    assert str(tmp_path / "bad" / "mapper.json") in str(e.value)


def test_with_axis_shares_parts_and_runs_the_checks(encoder, vocoder):
    base = Steerer(_axis(encoder), encoder=encoder, mapper=_mapper(encoder), vocoder=vocoder)
    other = base.with_axis(_axis(encoder))
    assert (other.encoder, other.mapper, other.vocoder) == (base.encoder, base.mapper,
                                                            base.vocoder)
    assert other.axis is not base.axis and other.prosody is None
    with pytest.raises(ConfigError, match="the axis is at layer 1"):
        base.with_axis(_axis(encoder, layer=1))
    with pytest.raises(ArtifactError, match=WRONG_HASH):
        base.with_axis(_axis(encoder, weights_hash=WRONG_HASH))
    # a Steerer without an axis (tts references) takes one later
    bare = Steerer.from_artifacts(mapper=base.mapper, vocoder=vocoder, encoder=encoder)
    assert bare.axis is None and bare.with_axis(_axis(encoder)).axis is not None
