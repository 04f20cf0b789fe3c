"""Embedding store: pooled vectors (and optionally frame sequences) per utterance and layer.

A store is a directory:
  store.json          StoreConfig (model, hashes, layers, rates, pooling, dtypes, version)
  pooled.safetensors  "layer_K" -> (N, D) float32, rows in index order
  index.csv/.json     one row per utterance: utt_id, path, speaker, emotion, sentence, corpus,
                      intensity, n_frames, duration_s, item
  skipped.json        files that could not be used, with the reason
  provenance.json     versions and command line
  items/              per-utterance safetensors written during extraction (frames live here)

store.json is written last: a directory without it is an unfinished extraction, which
`extract_store` resumes. Building a store from audio is in `extract`.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import numbers
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open

from emosteer import __version__
from emosteer.artifacts import (
    atomic_write_text,
    load_config,
    load_tensors,
    nest_flat,
    provenance,
    read_json,
    save_config,
    save_tensors,
    write_json,
)
from emosteer.audio import SAMPLE_RATE, SSL_FRAME_RATE
from emosteer.embeddings.encoders import EncoderIdentity
from emosteer.errors import ArtifactError, ConfigError

log = logging.getLogger(__name__)

POOLINGS = ("mean", "energy", "norm", "voiced")
INDEX_FIELDS = ("utt_id", "path", "speaker", "emotion", "sentence", "corpus", "intensity",
                "text", "n_frames", "duration_s", "item")
LABEL_KEYS = ("utt_id", "path", "speaker", "emotion", "sentence", "corpus", "intensity", "text")
# Files a store owns: `force` removes exactly these and never anything else in the directory.
STORE_FILES = ("store.json", "pooled.safetensors", "index.csv", "index.json", "skipped.json",
               "provenance.json", "extract.json")
ITEMS_DIR = "items"
FLAT_ENCODER_KEYS = ("model", "model_type", "revision", "config_hash", "weights_hash",
                     "random_init", "seed", "num_layers")  # store.json 0.1.0


@dataclass(frozen=True)
class StoreConfig:
    """Self-description of a store. Fields that an import cannot know are None."""

    encoder: EncoderIdentity
    layers: tuple[int, ...]
    pooling: str
    hidden_size: int
    source: str = "extract"  # "extract" (from audio) or "import" (precomputed vectors)
    do_normalize: bool | None = None
    bf16: bool = False
    frame_layers: tuple[int, ...] = ()
    sample_rate: int = SAMPLE_RATE
    frame_rate: float = SSL_FRAME_RATE
    dtype: str = "float32"
    frame_dtype: str = "float16"
    chunk_seconds: float | None = None
    context_seconds: float | None = None
    emosteer_version: str = __version__

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling {self.pooling!r}: expected one of {', '.join(POOLINGS)}")
        if not set(self.frame_layers) <= set(self.layers):
            raise ConfigError(f"frame layers {list(self.frame_layers)} must be among the "
                              f"extracted layers {list(self.layers)}")
        def whole(v) -> bool:
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        if not self.layers or any(not whole(k) or k < 0 for k in self.layers):
            raise ConfigError(f"layers {list(self.layers)}: expected non-negative layer numbers")
        if not whole(self.hidden_size) or self.hidden_size <= 0:
            raise ConfigError(f"hidden_size {self.hidden_size}: expected a positive integer")
        for name in ("sample_rate", "frame_rate", "chunk_seconds", "context_seconds"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} {v}: expected a positive number")

    @staticmethod
    def migrate(data: Mapping[str, Any]) -> dict[str, Any]:
        """A 0.1.0 store.json (the encoder's fields flat at the top level) -> this layout."""
        data = nest_flat(data, "encoder", {k: k for k in FLAT_ENCODER_KEYS})
        if "hidden_size" in data and isinstance(data.get("encoder"), dict):
            data["encoder"].setdefault("hidden_size", data["hidden_size"])
        return data


def layer_key(layer: int) -> str:
    return f"layer_{int(layer)}"


def clear_store(out_dir: Path) -> None:
    """Remove the files a store owns (for -f); other files in `out_dir` are left alone."""
    for name in STORE_FILES:
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / ITEMS_DIR, ignore_errors=True)


def _cell(v: Any) -> str:
    return "" if v is None else str(v)


def write_store(out_dir: str | os.PathLike, config: StoreConfig, index: Sequence[Mapping],
                pooled: Mapping[int, np.ndarray], skipped: Sequence[Mapping] = ()) -> Path:
    """Write a finished store; store.json goes last so its presence means 'complete'."""
    out_dir = Path(out_dir)
    for k in config.layers:
        if pooled[k].shape != (len(index), config.hidden_size):
            raise ArtifactError(f"{out_dir}: layer {k} has shape {pooled[k].shape}, expected "
                                f"({len(index)}, {config.hidden_size})")
    save_tensors(out_dir / "pooled.safetensors",
                 {layer_key(k): pooled[k].astype(np.float32) for k in config.layers})
    rows = [{f: row.get(f) for f in INDEX_FIELDS} for row in index]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=INDEX_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows({f: _cell(r[f]) for f in INDEX_FIELDS} for r in rows)
    atomic_write_text(out_dir / "index.csv", buf.getvalue())
    write_json(out_dir / "index.json", rows)
    write_json(out_dir / "skipped.json", list(skipped))
    write_json(out_dir / "provenance.json", provenance())
    save_config(config, out_dir / "store.json")
    (out_dir / "extract.json").unlink(missing_ok=True)
    return out_dir


def check_item(path: Path, utt_id: str, config: StoreConfig) -> str | None:
    """Why the per-utterance item at `path` cannot be reused (None: it can): unreadable or
    truncated safetensors, another utterance's, or keys, shapes or numbers that do not fit
    `config`. A resumed extraction redoes such items instead of trusting that a file exists."""
    if not path.is_file():
        return "missing"
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            pooled = f.get_tensor("pooled") if "pooled" in keys else None
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
    except (SafetensorError, OSError, ValueError) as e:
        return f"not a readable safetensors file ({e})"
    if meta.get("utt_id") != utt_id:
        return f"belongs to {meta.get('utt_id')!r}, not {utt_id!r}"
    try:
        n_frames, duration = int(meta["n_frames"]), float(meta["duration_s"])
    except (KeyError, ValueError):
        return "metadata lacks n_frames or duration_s"
    if n_frames < 0 or not (math.isfinite(duration) and duration >= 0):
        return f"metadata n_frames {n_frames}, duration_s {duration} out of range"
    want = {"pooled"} | {f"frames_{k}" for k in config.frame_layers}
    if keys != want:
        return f"tensors {sorted(keys)}, expected {sorted(want)}"
    want_pooled = (len(config.layers), config.hidden_size)
    if shapes["pooled"] != want_pooled:
        return f"pooled shape {shapes['pooled']}, expected {want_pooled}"
    for k in config.frame_layers:
        if shapes[f"frames_{k}"] != (n_frames, config.hidden_size):
            return (f"frames_{k} shape {shapes[f'frames_{k}']}, expected "
                    f"({n_frames}, {config.hidden_size})")
    if not np.all(np.isfinite(pooled)):
        return "pooled vector is not finite"
    return None


def reusable_item(path: Path, utt_id: str, config: StoreConfig) -> bool:
    """Whether a resumed extraction may keep the item at `path`; a bad one is removed (and
    logged, naming it) so that it is encoded again."""
    why = check_item(path, utt_id, config)
    if why is None:
        return True
    if why != "missing":
        log.warning("%s (%s): %s; encoding it again", path, utt_id, why)
        path.unlink(missing_ok=True)
    return False


def _check_index(path: Path, index: list) -> None:
    """index.json rows: objects with a string utt_id (unique), numbers finite and >= 0."""
    seen: set[str] = set()
    for i, row in enumerate(index):
        if not isinstance(row, dict) or not isinstance(row.get("utt_id"), str):
            raise ArtifactError(f"{path}: row {i} is not an object with a string utt_id")
        if row["utt_id"] in seen:
            raise ArtifactError(f"{path}: row {i} repeats utt_id {row['utt_id']!r}")
        seen.add(row["utt_id"])
        for key in ("n_frames", "duration_s"):
            v = row.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not math.isfinite(v) or v < 0):
                raise ArtifactError(f"{path}: row {i} ({row['utt_id']}): {key} {v!r} is not a "
                                    "non-negative number")


class EmbeddingStore:
    """Read access to a finished store (see module docstring for the layout)."""

    def __init__(self, root: Path, config: StoreConfig, index: list[dict], skipped: list[dict]):
        self.root = root
        self.config = config
        self.index = index
        self.skipped = skipped
        self._pooled: dict[str, np.ndarray] | None = None
        self._rows = {r["utt_id"]: i for i, r in enumerate(index)}

    @classmethod
    def open(cls, root: str | os.PathLike) -> EmbeddingStore:
        root = Path(root)
        if not root.is_dir():
            raise ArtifactError(f"{root}: store directory not found")
        if not (root / "store.json").is_file():
            hint = (" (an unfinished extraction: rerun `emosteer extract` to resume)"
                    if (root / "extract.json").is_file() else "")
            raise ArtifactError(f"{root}: not an embedding store, store.json missing{hint}")
        config = load_config(StoreConfig, root / "store.json")
        index = read_json(root / "index.json")
        skipped = read_json(root / "skipped.json") if (root / "skipped.json").is_file() else []
        if not isinstance(index, list):
            raise ArtifactError(f"{root / 'index.json'}: expected a list of rows")
        _check_index(root / "index.json", index)
        if not isinstance(skipped, list):
            raise ArtifactError(f"{root / 'skipped.json'}: expected a list of skipped files")
        return cls(root, config, index, skipped)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def layers(self) -> tuple[int, ...]:
        return self.config.layers

    def pooled(self, layer: int) -> np.ndarray:
        """(N, D) float32 pooled vectors of `layer`, rows in index order."""
        if layer not in self.config.layers:
            raise ArtifactError(f"{self.root}: layer {layer} not in store (layers "
                                f"{list(self.config.layers)})")
        if self._pooled is None:
            self._pooled = load_tensors(self.root / "pooled.safetensors")
        arr = self._pooled.get(layer_key(layer))
        where = self.root / "pooled.safetensors"
        if arr is None or arr.ndim != 2 or arr.shape[0] != len(self.index):
            raise ArtifactError(f"{where}: layer {layer} missing or not {len(self.index)} rows")
        if arr.shape[1] != self.config.hidden_size:
            raise ArtifactError(f"{where}: layer {layer} has {arr.shape[1]} dims, "
                                f"{self.root / 'store.json'} says {self.config.hidden_size}")
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)):
            raise ArtifactError(f"{where}: layer {layer} holds non-finite or non-float values")
        return arr

    def labels(self, key: str) -> np.ndarray:
        """One label per row, as strings ('' where unknown): speaker, emotion, sentence, ..."""
        if key not in LABEL_KEYS:
            raise ConfigError(f"label {key!r}: expected one of {', '.join(LABEL_KEYS)}")
        return np.array([_cell(r.get(key)) for r in self.index], dtype=str)

    def frames(self, utt_id: str, layer: int) -> np.ndarray:
        """(T, D) float32 frame sequence of one utterance (only for `config.frame_layers`)."""
        if layer not in self.config.frame_layers:
            raise ArtifactError(f"{self.root}: no frames stored for layer {layer} (frame layers "
                                f"{list(self.config.frame_layers)}; extract with --frame-layers)")
        if utt_id not in self._rows:
            raise ArtifactError(f"{self.root}: no utterance {utt_id!r}")
        item = self.root / ITEMS_DIR / self.index[self._rows[utt_id]]["item"]
        t = load_tensors(item)
        if f"frames_{layer}" not in t:
            raise ArtifactError(f"{item}: frames of layer {layer} missing")
        frames = t[f"frames_{layer}"]
        if frames.ndim != 2 or frames.shape[1] != self.config.hidden_size:
            raise ArtifactError(f"{item}: frames of layer {layer} have shape {frames.shape}, "
                                f"expected (T, {self.config.hidden_size})")
        if not np.all(np.isfinite(frames)):
            raise ArtifactError(f"{item}: frames of layer {layer} are not finite")
        return frames.astype(np.float32)


def _utt_id(row: Mapping[str, str], i: int) -> str:
    if row.get("utt_id"):
        return row["utt_id"]
    if row.get("ravdess_file"):
        return f"ravdess/{row['ravdess_file']}"
    if row.get("path"):
        return f"{row.get('corpus') or 'import'}/{Path(row['path']).stem}"
    return f"import/{i:06d}"


def import_embeddings(npy: str | os.PathLike, index_csv: str | os.PathLike, layer: int,
                      out_dir: str | os.PathLike, model: str = "unknown", pooling: str = "norm",
                      force: bool = False) -> EmbeddingStore:
    """Make a store from precomputed (N, D) vectors and a CSV with one row per vector
    (speaker, emotion[, sentence, intensity, path, corpus, utt_id or ravdess_file])."""
    npy, index_csv, out_dir = Path(npy), Path(index_csv), Path(out_dir)
    try:
        X = np.load(npy, allow_pickle=False)
    except FileNotFoundError as e:
        raise ArtifactError(f"{npy}: file not found") from e
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{npy}: not a numpy array file ({e})") from e
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.floating) or not np.all(np.isfinite(X)):
        raise ArtifactError(f"{npy}: expected a finite 2-D float matrix, got {X.dtype} {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ArtifactError(f"{npy}: the matrix is empty ({X.shape[0]} vectors of dim "
                            f"{X.shape[1]}); expected (N, D) with N, D >= 1")
    try:
        with open(index_csv, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ArtifactError(f"{index_csv}: could not read CSV ({e})") from e
    if len(rows) != X.shape[0]:
        raise ArtifactError(f"{index_csv}: {len(rows)} rows but {npy} has {X.shape[0]} vectors")
    for need in ("speaker", "emotion"):
        if rows and need not in rows[0]:
            raise ArtifactError(f"{index_csv}: column {need!r} missing")
    index = []
    for i, r in enumerate(rows):
        index.append({
            "utt_id": _utt_id(r, i), "path": r.get("path") or None, "speaker": r["speaker"],
            "emotion": r["emotion"], "sentence": r.get("sentence") or None,
            "corpus": r.get("corpus") or ("ravdess" if r.get("ravdess_file") else "import"),
            "intensity": r.get("intensity") or None, "n_frames": None, "duration_s": None,
            "item": None,
        })
    if len({r["utt_id"] for r in index}) != len(index):
        raise ArtifactError(f"{index_csv}: utterance ids are not unique")
    if (out_dir / "store.json").exists() and not force:
        raise ArtifactError(f"{out_dir}: already exists (use -f to overwrite)")
    clear_store(out_dir)
    config = StoreConfig(encoder=EncoderIdentity(model=model, random_init=None),
                         layers=(int(layer),), pooling=pooling, hidden_size=int(X.shape[1]),
                         source="import")
    write_store(out_dir, config, index, {int(layer): X.astype(np.float32)})
    return EmbeddingStore.open(out_dir)
