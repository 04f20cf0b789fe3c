"""Trust: no loader unpickles a user file; each refuses a malicious pickle with the project's
error, and the pickle's code never runs."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from emosteer.errors import EmosteerError

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- Trust: no loader unpickles a user file ----------------------------------------------------
# A pickle whose unpickling creates a marker file is put where each loader expects its input;
# each must refuse it with the project's error, and the marker must not appear. (The HiFi-GAN
# jik876 loader, the one torch.load call site, is tested in test_hifigan.py.)

class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _evil_torch(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"weight": _Payload(marker)}, path)
    return path


def _evil_npy(path: Path, marker: Path) -> Path:
    np.save(path, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    return path


def _mapper_dir(d: Path, marker: Path) -> None:
    from emosteer.synthesis.mapper import WEIGHTS_FILE, Mapper, MapperConfig, load_mapper

    Mapper(MapperConfig(in_dim=8, hidden=8, n_blocks=1)).save(d)
    _evil_torch(d / WEIGHTS_FILE, marker)
    load_mapper(d)


def _checkpoint_dir(d: Path, marker: Path) -> None:
    import torch

    from emosteer.training import load_checkpoint

    d.mkdir()
    _evil_torch(d / "ckpt-000001.safetensors", marker)
    (d / "state.json").write_text('{"tensors": "ckpt-000001.safetensors", "optimizer": {}}')
    model = torch.nn.Linear(2, 2)
    load_checkpoint(d, model, torch.optim.AdamW(model.parameters()))


def _tensors_file(d: Path, marker: Path) -> None:
    from emosteer.artifacts import load_tensors  # axes, stores, vocoder exports, caches

    d.mkdir()
    load_tensors(_evil_torch(d / "pooled.safetensors", marker))


def _embeddings_npy(d: Path, marker: Path) -> None:
    from emosteer.embeddings.store import import_embeddings

    d.mkdir()
    (d / "index.csv").write_text("utt_id,speaker,emotion\na,s1,angry\n")
    import_embeddings(_evil_npy(d / "emb.npy", marker), d / "index.csv", 5, d / "store")


def _axis_vector_npy(d: Path, marker: Path) -> None:
    from emosteer.cli.axis import _load_npy

    d.mkdir()
    _load_npy(_evil_npy(d / "vector.npy", marker))


def _encoder_dir(d: Path, marker: Path) -> None:
    from transformers import Wav2Vec2Config

    from emosteer.embeddings.encoders import load_encoder

    Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=16, conv_dim=(8,) * 7).save_pretrained(d)
    _evil_torch(d / "pytorch_model.bin", marker)  # the legacy pickle format, no safetensors
    load_encoder(d)


@pytest.mark.parametrize("loader", [_mapper_dir, _checkpoint_dir, _tensors_file,
                                    _embeddings_npy, _axis_vector_npy,
                                    _encoder_dir],
                         ids=lambda f: f.__name__.strip("_"))
def test_malicious_pickle_is_refused_everywhere(tmp_path, loader):
    marker = tmp_path / "pwned"
    with pytest.raises(EmosteerError):
        loader(tmp_path / "evil", marker)
    assert not marker.exists(), f"{loader.__name__} ran the pickle's code"
    # the payload is live: an unrestricted unpickle does run it
    import torch

    torch.load(_evil_torch(tmp_path / "probe.pt", marker), weights_only=False)
    assert marker.exists()


def test_malicious_encoder_checkpoint_never_runs(tmp_path):
    """Whatever error load_encoder gives today, the payload does not execute."""
    marker = tmp_path / "pwned"
    with pytest.raises((EmosteerError, pickle.UnpicklingError)):
        _encoder_dir(tmp_path / "evil", marker)
    assert not marker.exists()
