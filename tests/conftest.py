"""Shared fixtures. No test needs the network: models are tiny random-init configs saved with
save_pretrained and reloaded through the same from_pretrained path users take."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOSTEER_SHARED", REPO.parent / "shared")) / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real RAVDESS clips and real wav2vec2-base embeddings); skip if absent."""
    if not (SHARED / "ravdess").is_dir():
        pytest.skip(f"shared test data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def ravdess_dir(shared_data: Path) -> Path:
    return shared_data / "ravdess"


@pytest.fixture(scope="session")
def real_embeddings(shared_data: Path) -> Path:
    d = shared_data / "wav2vec2-base-layer5"
    if not (d / "embeddings.npy").is_file():
        pytest.skip(f"real embeddings not found at {d}")
    return d


def make_tiny_model_dir(path: Path, kind: str = "wav2vec2", num_layers: int = 4,
                        hidden: int = 32, seed: int = 0, **config) -> Path:
    """Save a tiny random-init SSL model (group-norm front end like the base models);
    `config` overrides or adds keyword arguments of the model's config class."""
    import torch
    from transformers import (
        Data2VecAudioConfig,
        Data2VecAudioModel,
        HubertConfig,
        HubertModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
        WavLMConfig,
        WavLMModel,
    )

    classes = {
        "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
        "hubert": (HubertConfig, HubertModel),
        "wavlm": (WavLMConfig, WavLMModel),
        "data2vec": (Data2VecAudioConfig, Data2VecAudioModel),
    }
    cfg_cls, model_cls = classes[kind]
    kwargs = dict(
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        layerdrop=0.1,  # deliberately non-zero: the encoder must disable it
    )
    if kind != "data2vec":
        kwargs["feat_extract_norm"] = "group"
    cfg = cfg_cls(**{**kwargs, **config})
    torch.manual_seed(seed)
    model = model_cls(cfg)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                             do_normalize=True, return_attention_mask=False).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny_w2v2"))


TINY_LAYER = 2  # a middle layer of the tiny 4-layer encoder
TINY_PROSODY = dict(f0_shift_st=3.0, f0_range_ratio=1.3, tilt_db=4.0, energy_db=3.0, rate_ratio=1.1)


def make_tiny_run(root: Path, model_dir: Path, *, axis=None, calibration: float = 2.5,
                  prosody: dict | None = None, n_blocks: int = 1) -> Path:
    """The artifacts a steer needs, for the tiny encoder: root/axis (a random 32-d calm -> angry
    axis at TINY_LAYER unless `axis` is given), root/axis/prosody.json (TINY_PROSODY updated by
    `prosody`) and root/mapper (untrained)."""
    import numpy as np

    from emosteer.axes import wrap_vector
    from emosteer.embeddings.encoders import EncoderIdentity
    from emosteer.prosody.world import ProsodyDelta
    from emosteer.synthesis.mapper import Mapper, MapperConfig

    if axis is None:
        axis = wrap_vector(np.random.default_rng(0).normal(size=32), model=str(model_dir),
                           layer=TINY_LAYER, source="calm", target="angry",
                           calibration=calibration)
    axis.save(root / "axis")
    ProsodyDelta(**{**TINY_PROSODY, **(prosody or {})}, source="calm", target="angry").save(
        root / "axis" / "prosody.json")
    # The mapper records Griffin-Lim as its vocoder, so "auto" decodes tiny runs without the
    # 14M-parameter HiFi-GAN (an untrained mapper's mel gains nothing from it); the packaged
    # vocoder has its own tests (tests/synthesis/test_pretrained_vocoder.py).
    Mapper(MapperConfig(in_dim=32, encoder=EncoderIdentity(str(model_dir)), layer=TINY_LAYER,
                        hidden=16, n_blocks=n_blocks, vocoder="griffinlim")).save(root / "mapper")
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_model_dir) -> Path:
    """make_tiny_run with its defaults, shared by every test that only reads it."""
    return make_tiny_run(tmp_path_factory.mktemp("tiny_run"), tiny_model_dir)


@pytest.fixture()
def study(tmp_path):
    """A created study over synthetic stimuli (studykit.CFG)."""
    from emosteer.study.design import create_study
    from emosteer.study.simulate import write_synthetic_stimuli
    from studykit import CFG

    src = write_synthetic_stimuli(tmp_path / "eval", n_clips=2, n_anchors=3)
    return create_study(src, tmp_path / "study", CFG)


@pytest.fixture()
def client(study):
    """A test client of the study's server, admin token studykit.TOKEN."""
    from fastapi.testclient import TestClient

    from emosteer.study.server import create_app
    from studykit import TOKEN

    with TestClient(create_app(study, TOKEN)) as c:
        yield c
