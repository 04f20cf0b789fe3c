"""Resume recovers from a corrupt item: an unfinished store whose item file was truncated (or
holds the wrong shapes, or another utterance) used to count it as done on every rerun and then
fail at the merge, forever. Each item is now verified on resume; the bad ones are logged by
name and encoded again, and the finished store equals an uninterrupted one."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from emosteer.artifacts import save_config, save_tensors
from emosteer.corpora.formats import scan_corpus
from emosteer.embeddings.encoders import load_encoder
from emosteer.embeddings.extract import _item_name, extract_store
from emosteer.embeddings.store import ITEMS_DIR, STORE_FILES, EmbeddingStore
from signals import tone_corpus


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("corpus")
    utts = scan_corpus(tone_corpus(root, n=4), "csv")
    enc = load_encoder(tiny_model_dir, layers=[1, 2])
    ref = extract_store(utts, enc, root / "ref", frame_layers=[2], progress=False)
    return utts, enc, ref


def unfinished_copy(ref: EmbeddingStore, out: Path) -> Path:
    """The state a killed extraction leaves: items/ and extract.json, no store.json."""
    (out / ITEMS_DIR).mkdir(parents=True)
    for item in (ref.root / ITEMS_DIR).iterdir():
        (out / ITEMS_DIR / item.name).write_bytes(item.read_bytes())
    save_config(ref.config, out / "extract.json")
    assert not any((out / f).exists() for f in STORE_FILES if f != "extract.json")
    return out


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def wrong_shape(path: Path) -> None:
    save_tensors(path, {"pooled": np.zeros((2, 5), np.float32),
                        "frames_2": np.zeros((3, 5), np.float16)},
                 {"utt_id": "csv/c0", "n_frames": "3", "duration_s": "0.8"})


def other_utterance(path: Path) -> None:
    other = path.parent / _item_name("csv/c1")
    path.write_bytes(other.read_bytes())


def nan_pooled(path: Path) -> None:
    save_tensors(path, {"pooled": np.full((2, 32), np.nan, np.float32),
                        "frames_2": np.zeros((40, 32), np.float16)},
                 {"utt_id": "csv/c0", "n_frames": "40", "duration_s": "0.8"})


@pytest.mark.parametrize("damage", [truncate, wrong_shape, other_utterance, nan_pooled])
def test_a_corrupt_item_is_redone_on_resume(setup, tmp_path, caplog, damage):
    utts, enc, ref = setup
    out = unfinished_copy(ref, tmp_path / "store")
    bad = out / ITEMS_DIR / _item_name("csv/c0")
    damage(bad)
    with caplog.at_level(logging.INFO, logger="emosteer.embeddings"):
        store = extract_store(utts, enc, out, frame_layers=[2], progress=False)
    assert f"{bad} (csv/c0)" in caplog.text and "encoding it again" in caplog.text
    assert "encoded 1 new utterances, 3 already done" in caplog.text
    assert store.index == ref.index and store.skipped == []
    np.testing.assert_array_equal(store.pooled(2), ref.pooled(2))
    np.testing.assert_array_equal(store.frames("csv/c0", 2), ref.frames("csv/c0", 2))


def test_good_items_are_kept_untouched(setup, tmp_path, caplog):
    utts, enc, ref = setup
    out = unfinished_copy(ref, tmp_path / "store")
    before = {p.name: p.stat().st_mtime_ns for p in (out / ITEMS_DIR).iterdir()}
    with caplog.at_level(logging.INFO, logger="emosteer.embeddings"):
        extract_store(utts, enc, out, frame_layers=[2], progress=False)
    assert "encoding it again" not in caplog.text
    assert "encoded 0 new utterances, 4 already done" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in (out / ITEMS_DIR).iterdir()} == before
