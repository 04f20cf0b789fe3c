"""Artifact numbers are validated when an artifact loads: every number finite (NaN and Infinity
pass JSON), sizes and rates positive, dimensions consistent between a config and its arrays,
and every such error names the artifact's file. Covers axis.json + axis.safetensors,
mapper.json + mapper.safetensors, store.json + pooled.safetensors + index.json, prosody.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from emosteer.artifacts import load_tensors, save_tensors
from emosteer.axes import EmotionAxis
from emosteer.embeddings.store import EmbeddingStore, import_embeddings
from emosteer.errors import ArtifactError
from emosteer.prosody.world import ProsodyDelta
from emosteer.synthesis.mapper import load_mapper

NAN, INF = float("nan"), float("inf")


@pytest.fixture()
def run(tiny_run, tmp_path) -> Path:
    """A private copy of the tiny run's axis and mapper, to break."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def edit_json(path: Path, change) -> Path:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))  # json.dumps writes NaN / Infinity literals as they are
    return path


def raises_naming(path: Path, match: str):
    class Check:
        def __enter__(self):
            self.ctx = pytest.raises(ArtifactError, match=match)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            out = self.ctx.__exit__(*exc)
            assert str(path) in str(self.info.value), f"{path} not named in: {self.info.value}"
            return out

    return Check()


# --- axis ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("cal", [NAN, INF, -1.0, 0.0])
def test_axis_calibration_must_be_finite_and_positive(run, cal):
    meta = edit_json(run / "axis" / "axis.json",
                     lambda d: d["diagnostics"].__setitem__("calibration", cal))
    with raises_naming(meta, "calibration"):
        EmotionAxis.load(run / "axis")


def test_axis_diagnostics_numbers_must_be_finite(run):
    meta = edit_json(run / "axis" / "axis.json",
                     lambda d: d["diagnostics"].__setitem__("norm", INF))
    with raises_naming(meta, "diagnostics.norm"):
        EmotionAxis.load(run / "axis")


@pytest.mark.parametrize("key,value,match", [
    ("frame_rate", NAN, "finite"), ("sample_rate", 0, "sample_rate"), ("layer", -1, "layer"),
    ("dim", 0, "dim"), ("layer", 2.5, "whole number"),
])
def test_axis_config_numbers(run, key, value, match):
    meta = edit_json(run / "axis" / "axis.json", lambda d: d["config"].__setitem__(key, value))
    with raises_naming(meta, match):
        EmotionAxis.load(run / "axis")


def test_axis_dimension_error_names_both_files(run):
    edit_json(run / "axis" / "axis.json", lambda d: d["config"].__setitem__("dim", 64))
    with raises_naming(run / "axis" / "axis.safetensors", "32 dims") as info:
        EmotionAxis.load(run / "axis")
    assert "axis.json says 64" in str(info.value)


def test_axis_vector_nan_names_the_vector_file(run):
    save_tensors(run / "axis" / "axis.safetensors", {"vector": np.full(32, np.nan, np.float32)})
    with raises_naming(run / "axis" / "axis.safetensors", "not finite"):
        EmotionAxis.load(run / "axis")


# --- mapper -------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,match", [
    ("in_rate", NAN, "finite"), ("in_rate", -50.0, "in_rate"), ("dropout", INF, "finite"),
    ("kernel", 4, "odd"), ("hidden", 0, "positive"),
])
def test_mapper_config_numbers(run, key, value, match):
    cfg = edit_json(run / "mapper" / "mapper.json", lambda d: d.__setitem__(key, value))
    with raises_naming(cfg, match):
        load_mapper(run / "mapper")


@pytest.mark.parametrize("key,value", [("in_dim", 768), ("hidden", 1_000_000_000),
                                       ("n_blocks", 1_000_000_000)])
def test_mapper_sizes_are_checked_against_the_weights_before_building(run, key, value):
    edit_json(run / "mapper" / "mapper.json", lambda d: d.__setitem__(key, value))
    with raises_naming(run / "mapper" / "mapper.safetensors", "mapper.json says"):
        load_mapper(run / "mapper")


def test_mapper_nan_weight_names_the_weights_file(run):
    w = run / "mapper" / "mapper.safetensors"
    t = load_tensors(w)
    t["out_proj.bias"][0] = np.nan
    save_tensors(w, t)
    with raises_naming(w, "non-finite weights in out_proj.bias"):
        load_mapper(run / "mapper")


def test_mapper_mel_numbers(run):
    cfg = edit_json(run / "mapper" / "mapper.json",
                    lambda d: d["mel"].__setitem__("sample_rate", NAN))
    with raises_naming(cfg, "finite"):
        load_mapper(run / "mapper")


# --- store --------------------------------------------------------------------------------------

@pytest.fixture()
def store(tmp_path) -> Path:
    X = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    (tmp_path / "i.csv").write_text("speaker,emotion\na,calm\na,angry\nb,calm\nb,angry\n")
    return import_embeddings(tmp_path / "X.npy", tmp_path / "i.csv", 5, tmp_path / "s").root


@pytest.mark.parametrize("key,value,match", [
    ("hidden_size", 0, "hidden_size"), ("frame_rate", NAN, "finite"), ("sample_rate", -1, "sample_rate"),
    ("layers", [-1], "layers"), ("chunk_seconds", INF, "finite"),
])
def test_store_config_numbers(store, key, value, match):
    cfg = edit_json(store / "store.json", lambda d: d.__setitem__(key, value))
    with raises_naming(cfg, match):
        EmbeddingStore.open(store)


def test_store_pooled_dims_must_match_the_config(store):
    edit_json(store / "store.json", lambda d: d.__setitem__("hidden_size", 64))
    with raises_naming(store / "pooled.safetensors", "8 dims") as info:
        EmbeddingStore.open(store).pooled(5)
    assert "store.json says 64" in str(info.value)


def test_store_pooled_nan_is_refused(store):
    save_tensors(store / "pooled.safetensors", {"layer_5": np.full((4, 8), np.nan, np.float32)})
    with raises_naming(store / "pooled.safetensors", "non-finite"):
        EmbeddingStore.open(store).pooled(5)


def test_store_index_numbers(store):
    idx = edit_json(store / "index.json", lambda d: d[1].__setitem__("duration_s", NAN))
    with raises_naming(idx, "duration_s"):
        EmbeddingStore.open(store)


# --- prosody.json -------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value", [("f0_shift_st", NAN), ("rate_ratio", INF),
                                       ("sample_rate", NAN), ("frame_period_ms", INF)])
def test_prosody_numbers_name_the_file(run, key, value):
    p = edit_json(run / "axis" / "prosody.json", lambda d: d.__setitem__(key, value))
    with raises_naming(p, key):
        ProsodyDelta.load(p)
