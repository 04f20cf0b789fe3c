"""Fuzz the manifest, embedding-index and store readers: only emosteer's own errors come out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emosteer.errors import EmosteerError

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- Fuzz: manifest and index readers --------------------------------------------------------
# Text that looks like a CSV some of the time: header words, commas, quotes, newlines, unicode.
_CSV_TEXT = st.lists(st.one_of(
    st.sampled_from(["path", "speaker", "emotion", "sentence", "utt_id", "angry", "calm", "a.wav",
                     ",", ",", "\n", "\n", '"', "\r\n", "\x00", "é", "../", "-1", "nan", " "]),
    st.text(max_size=8)), max_size=40).map("".join)


@FUZZ
@given(text=_CSV_TEXT, raw=st.one_of(st.none(), st.binary(max_size=64)))
def test_fuzz_csv_manifest(tmp_path, text, raw):
    from emosteer.corpora.formats import scan_corpus

    p = tmp_path / "manifest.csv"
    p.write_bytes(raw if raw is not None else text.encode("utf-8"))
    try:
        utts = scan_corpus(p, "csv")
    except EmosteerError:
        return
    assert all(u.utt_id and u.speaker and u.emotion for u in utts)


@FUZZ
@given(text=_CSV_TEXT)
def test_fuzz_embedding_index_csv(tmp_path, text):
    from emosteer.embeddings.store import import_embeddings

    npy = tmp_path / "emb.npy"
    np.save(npy, np.ones((2, 4), np.float32))
    (tmp_path / "index.csv").write_text(text, encoding="utf-8")
    try:
        st_ = import_embeddings(npy, tmp_path / "index.csv", 5, tmp_path / "store", force=True)
    except EmosteerError:
        return
    assert len(st_) == 2 and st_.pooled(5).shape == (2, 4)


_JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False),
              st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["utt_id", "speaker", "emotion",
                                                             "layers", "model", "x"]),
                                            inner, max_size=4)),
    max_leaves=12)


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    from emosteer.embeddings.store import import_embeddings

    d = tmp_path_factory.mktemp("fuzz_store")
    np.save(d / "emb.npy", np.ones((2, 4), np.float32))
    (d / "index.csv").write_text("utt_id,speaker,emotion\na,s1,angry\nb,s2,calm\n")
    import_embeddings(d / "emb.npy", d / "index.csv", 5, d / "store")
    return d / "store"


@FUZZ
@given(name=st.sampled_from(["store.json", "skipped.json"]),
       value=_JSON_VALUES, raw=st.one_of(st.none(), st.binary(max_size=32)))
def test_fuzz_store_json_files(tmp_path, tiny_store, name, value, raw):
    _open_mutated_store(tmp_path, tiny_store, name, value, raw)


@FUZZ
@given(value=_JSON_VALUES, raw=st.one_of(st.none(), st.binary(max_size=32)))
def test_fuzz_store_index_json(tmp_path, tiny_store, value, raw):
    _open_mutated_store(tmp_path, tiny_store, "index.json", value, raw)


def _open_mutated_store(tmp_path, tiny_store, name, value, raw) -> None:
    import json
    import shutil

    from emosteer.embeddings.store import EmbeddingStore

    d = tmp_path / "store"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(tiny_store, d)
    (d / name).write_bytes(raw if raw is not None else json.dumps(value).encode())
    try:
        store = EmbeddingStore.open(d)
        for key in ("utt_id", "speaker", "emotion"):
            store.labels(key)
        store.pooled(store.layers[0])
    except EmosteerError:
        return
