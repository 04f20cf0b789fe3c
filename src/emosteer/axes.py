"""Emotion axes: the speaker-averaged source->target shift of pooled SSL embeddings at one layer.

For every speaker with clips of both emotions, d_s = mean(target clips) - mean(source clips);
the axis is the mean of d_s over speakers (optionally of d_s / |d_s|, as the seed did). Averaging
within speakers first keeps speaker identity, which dominates these embeddings, out of the axis.

`delta` is calibrated so that delta = 1 is the average source->target shift *along the axis*:
calibration = mean_s(d_s . unit). `EmotionAxis.steer` adds delta * calibration * unit, so a
projection onto the axis moves by exactly delta * calibration.

All core functions are pure over arrays (X (N, D), speakers (N,), emotions (N,)).
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from emosteer import __version__
from emosteer.artifacts import (
    config_from_dict,
    load_tensors,
    nest_flat,
    provenance,
    read_json,
    save_tensors,
    write_json,
)
from emosteer.audio import SAMPLE_RATE, SSL_FRAME_RATE
from emosteer.embeddings.encoders import EncoderIdentity
from emosteer.errors import ArtifactError, ConfigError

log = logging.getLogger(__name__)

AXIS_TENSORS = "axis.safetensors"
AXIS_JSON = "axis.json"
# Below this norm a difference vector has no direction (float32 noise on identical means).
MIN_NORM = 1e-8


@dataclass(frozen=True)
class AxisConfig:
    """What an axis belongs to: it only makes sense with the same encoder, layer and pooling."""

    encoder: EncoderIdentity
    layer: int
    source: str
    target: str
    dim: int
    sample_rate: int = SAMPLE_RATE
    frame_rate: float = SSL_FRAME_RATE
    pooling: str = "mean"
    normalize_per_speaker: bool = False
    speakers: tuple[str, ...] = ()
    origin: str = "store"  # "store": computed here; "npy": a wrapped bare vector
    emosteer_version: str = __version__

    def __post_init__(self) -> None:
        def whole(v) -> bool:
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        if not whole(self.dim) or self.dim <= 0:
            raise ConfigError(f"AxisConfig.dim {self.dim}: expected a positive integer")
        if not whole(self.layer) or self.layer < 0:
            raise ConfigError(f"AxisConfig.layer {self.layer}: expected a non-negative integer")
        for name in ("sample_rate", "frame_rate"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"AxisConfig.{name} {v}: expected a positive number")

    @staticmethod
    def migrate(data: Mapping[str, Any]) -> dict[str, Any]:
        """A 0.1.0 axis config (only the model's name) -> this layout; the rest is unknown."""
        return nest_flat(data, "encoder", {"model": "model"}, extra={"random_init": None})


@dataclass(frozen=True)
class AxisFit:
    """Result of `compute_axis` before it is bound to a model/layer config."""

    vector: np.ndarray  # (D,) mean over speakers of d_s (or of d_s/|d_s|)
    calibration: float  # mean_s(d_s . unit)
    speakers: tuple[str, ...]
    per_speaker: np.ndarray  # (S, D) raw d_s
    diagnostics: dict[str, Any] = field(default_factory=dict)


def _unit_rows(M: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(M, axis=-1, keepdims=True)
    return M / np.maximum(n, MIN_NORM)


def consistency(per_speaker: np.ndarray) -> tuple[float, float]:
    """(mean pairwise cosine of the rows, resultant length = |mean of unit rows|)."""
    U = _unit_rows(np.asarray(per_speaker, dtype=np.float64))
    S = U.shape[0]
    resultant = float(np.linalg.norm(U.mean(axis=0)))
    if S < 2:
        return float("nan"), resultant
    G = U @ U.T
    return float((G.sum() - np.trace(G)) / (S * (S - 1))), resultant


def speaker_differences(X, speakers, emotions, source: str, target: str
                        ) -> tuple[tuple[str, ...], np.ndarray]:
    """Per-speaker d_s = mean(target) - mean(source), float64, for speakers having both."""
    X = np.asarray(X, dtype=np.float64)
    speakers = np.asarray(speakers).astype(str)
    emotions = np.asarray(emotions).astype(str)
    if X.ndim != 2 or len(X) != len(speakers) or len(X) != len(emotions):
        raise ConfigError(f"embeddings {X.shape} do not match {len(speakers)} speakers / "
                          f"{len(emotions)} emotion labels")
    if source == target:
        raise ConfigError(f"source and target are both {source!r}")
    used, diffs, skipped = [], [], []
    for spk in sorted(set(speakers)):
        m = speakers == spk
        src, tgt = m & (emotions == source), m & (emotions == target)
        if not src.any() or not tgt.any():
            skipped.append(str(spk))
            continue
        used.append(str(spk))
        diffs.append(X[tgt].mean(axis=0) - X[src].mean(axis=0))
    if skipped:
        log.info("axis %s->%s: skipped %d speaker(s) lacking one emotion: %s",
                 source, target, len(skipped), ", ".join(skipped))
    if not used:
        present = sorted(set(emotions.tolist()))  # plain str: no np.str_(...) in the message
        raise ConfigError(f"no speaker has both {source!r} and {target!r} clips "
                          f"(emotions present: {present})")
    return tuple(used), np.stack(diffs)


def compute_axis(X, speakers, emotions, source: str, target: str,
                 normalize_per_speaker: bool = False) -> AxisFit:
    """Speaker-averaged source->target axis with calibration and diagnostics."""
    used, D = speaker_differences(X, speakers, emotions, source, target)
    parts = _unit_rows(D) if normalize_per_speaker else D
    vector = parts.mean(axis=0)
    norm = float(np.linalg.norm(vector))
    if norm < MIN_NORM:
        raise ConfigError(f"axis {source}->{target} is zero: the emotions' means coincide")
    unit = vector / norm
    calibration = float(np.mean(D @ unit))
    cos, resultant = consistency(D)
    diagnostics = {
        "n_speakers": len(used),
        "speakers": list(used),
        "mean_pairwise_cosine": cos,
        "resultant_length": resultant,
        "norm": norm,
        "calibration": calibration,
    }
    return AxisFit(vector.astype(np.float32), calibration, used, D, diagnostics)


def auc_score(scores, labels) -> float:
    """ROC AUC of `scores` for boolean `labels` (Mann-Whitney with mid-ranks for ties)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def holdout_scores(X, speakers, emotions, source: str, target: str, test_speakers,
                   normalize_per_speaker: bool = False) -> dict[str, np.ndarray]:
    """Project held-out speakers' source/target clips on an axis built without them.

    Returns arrays over those clips: raw and speaker-centred projections (each held-out
    speaker's mean over its clips of the two emotions subtracted first), is-target labels and
    speakers."""
    X = np.asarray(X, dtype=np.float64)
    speakers = np.asarray(speakers).astype(str)
    emotions = np.asarray(emotions).astype(str)
    test = np.isin(speakers, np.asarray(list(test_speakers), dtype=str))
    unknown = {str(s) for s in test_speakers} - set(speakers.tolist())
    if unknown:
        raise ConfigError(f"held-out speakers not in the data: {sorted(unknown)}")
    if test.all():
        raise ConfigError("every speaker is held out: no speaker left to build the axis")
    fit = compute_axis(X[~test], speakers[~test], emotions[~test], source, target,
                       normalize_per_speaker)
    unit = fit.vector.astype(np.float64) / np.linalg.norm(fit.vector.astype(np.float64))
    keep = test & np.isin(emotions, [source, target])
    Xt, st = X[keep], speakers[keep]
    centred = Xt.copy()
    for spk in np.unique(st):
        m = st == spk
        centred[m] -= Xt[m].mean(axis=0)
    return {"raw": Xt @ unit, "centred": centred @ unit,
            "labels": emotions[keep] == target, "speakers": st}


def holdout_auc(X, speakers, emotions, source: str, target: str, holdout_speakers=None,
                normalize_per_speaker: bool = False) -> dict[str, Any]:
    """AUC of the axis projection, target vs source, on speakers the axis never saw.

    With `holdout_speakers` the axis is built once from the others; with None it is
    leave-one-speaker-out (LOSO) and the held-out scores of all folds are pooled."""
    speakers = np.asarray(speakers).astype(str)
    folds = ([tuple(holdout_speakers)] if holdout_speakers
             else [(s,) for s in sorted(set(speakers))])
    parts = [holdout_scores(X, speakers, emotions, source, target, f, normalize_per_speaker)
             for f in folds]
    pooled = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return {
        "scheme": "holdout" if holdout_speakers else "loso",
        "test_speakers": sorted(set(pooled["speakers"].tolist())),
        "n_test": int(len(pooled["labels"])),
        "auc_raw": auc_score(pooled["raw"], pooled["labels"]),
        "auc_centred": auc_score(pooled["centred"], pooled["labels"]),
    }


@dataclass
class EmotionAxis:
    """A direction in one model layer's embedding space, with its calibration."""

    vector: np.ndarray
    config: AxisConfig
    diagnostics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, repr=False, compare=False)  # where it was loaded from

    def __post_init__(self) -> None:
        # Loaded from disk, the message names the files; built in memory, there are none.
        where = f"{self.path / AXIS_TENSORS}: " if self.path is not None else ""
        config = f"{self.path / AXIS_JSON}" if self.path is not None else "config"
        self.vector = np.asarray(self.vector, dtype=np.float32).reshape(-1)
        if self.vector.shape[0] != self.config.dim:
            raise ArtifactError(f"{where}axis vector has {self.vector.shape[0]} dims, {config} "
                                f"says {self.config.dim}")
        if not np.all(np.isfinite(self.vector)) or np.linalg.norm(self.vector) < MIN_NORM:
            raise ArtifactError(f"{where}axis vector is zero or not finite")

    @property
    def unit(self) -> np.ndarray:
        return (self.vector / np.linalg.norm(self.vector)).astype(np.float32)

    @property
    def calibration(self) -> float:
        """Shift along `unit` that delta = 1 stands for; a bare vector's own norm if unknown."""
        cal = self.diagnostics.get("calibration")
        return float(cal) if cal is not None else float(np.linalg.norm(self.vector))

    @classmethod
    def from_fit(cls, fit: AxisFit, **config: Any) -> EmotionAxis:
        speakers = config.pop("speakers", fit.speakers)
        if "model" in config:  # a name only, like wrap_vector's `model`
            config["encoder"] = _identity(config.pop("model"))
        cfg = AxisConfig(dim=int(fit.vector.shape[0]), speakers=tuple(speakers), **config)
        return cls(fit.vector, cfg, dict(fit.diagnostics))

    def project(self, X) -> np.ndarray:
        X = np.asarray(X)
        if X.shape[-1] != self.config.dim:
            raise ConfigError(f"features have {X.shape[-1]} dims, the axis has {self.config.dim} "
                              f"({self.config.encoder.model} layer {self.config.layer})")
        return X @ self.unit

    def steer(self, frames, delta: float) -> np.ndarray:
        """frames (T, D) or (D,) + delta * calibration * unit."""
        frames = np.asarray(frames)
        if frames.shape[-1] != self.config.dim:
            raise ConfigError(f"frames have {frames.shape[-1]} dims, the axis has "
                              f"{self.config.dim} ({self.config.encoder.model} layer {self.config.layer})")
        shift = (float(delta) * self.calibration) * self.unit
        return (frames + shift).astype(frames.dtype if frames.dtype.kind == "f" else np.float32)

    def save(self, out_dir) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_tensors(out / AXIS_TENSORS, {"vector": self.vector},
                     metadata={"model": self.config.encoder.model, "layer": str(self.config.layer)})
        write_json(out / AXIS_JSON, {"config": self.config, "diagnostics": self.diagnostics,
                                     "provenance": provenance()})
        return out

    @classmethod
    def load(cls, path) -> EmotionAxis:
        path = Path(path)
        meta_path = path / AXIS_JSON
        if not path.is_dir() or not meta_path.is_file():
            raise ArtifactError(f"{path}: not an axis directory (no {AXIS_JSON})")
        meta = read_json(meta_path)
        if not isinstance(meta, dict) or "config" not in meta:
            raise ArtifactError(f"{meta_path}: missing 'config'")
        if not isinstance(meta["config"], dict):
            raise ArtifactError(f"{meta_path}: 'config' is not an object")
        cfg = config_from_dict(AxisConfig, AxisConfig.migrate(meta["config"]),
                               source=str(meta_path))
        diagnostics = meta.get("diagnostics") or {}
        if not isinstance(diagnostics, dict):
            raise ArtifactError(f"{meta_path}: 'diagnostics' is not an object")
        _check_diagnostics(meta_path, diagnostics)
        tensors = load_tensors(path / AXIS_TENSORS)
        if "vector" not in tensors:
            raise ArtifactError(f"{path / AXIS_TENSORS}: no 'vector' tensor")
        if tensors["vector"].ndim != 1:
            raise ArtifactError(f"{path / AXIS_TENSORS}: 'vector' has shape "
                                f"{tensors['vector'].shape}, expected ({cfg.dim},)")
        return cls(tensors["vector"], cfg, dict(diagnostics), path=path)


def _check_diagnostics(meta_path: Path, diagnostics: dict) -> None:
    """Every number in axis.json's diagnostics finite (None stands for an undefined one, as
    written); the calibration, which scales every push, positive. A NaN calibration would turn
    every steered frame into NaN without a word."""
    def walk(v, where: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{where}.{k}")
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, f"{where}[{i}]")
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isfinite(v):
            raise ArtifactError(f"{meta_path}: {where} is {v}, expected a finite number")

    walk(diagnostics, "diagnostics")
    cal = diagnostics.get("calibration")
    if cal is not None and (isinstance(cal, bool) or not isinstance(cal, (int, float))
                            or not cal > 0):
        raise ArtifactError(f"{meta_path}: diagnostics.calibration is {cal!r}, expected a "
                            "positive number (the shift along the axis that delta 1 stands for)")


def _identity(model: str | EncoderIdentity) -> EncoderIdentity:
    """An encoder identity, or one that knows only the model's name."""
    if isinstance(model, EncoderIdentity):
        return model
    return EncoderIdentity(str(model), random_init=None)


def wrap_vector(vector, model: str | EncoderIdentity, layer: int, source: str, target: str,
                calibration: float | None = None, **config: Any) -> EmotionAxis:
    """Bind a bare vector (e.g. the seed's emotion_axis_layer5.npy) to its model and layer.

    Without data its calibration is unknown: by default delta = 1 adds the vector itself,
    which is what the seed did. `model` is the encoder's identity, or just its name."""
    encoder = _identity(model)
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    diagnostics = {"norm": norm, "calibration": norm if calibration is None else float(calibration)}
    cfg = AxisConfig(encoder=encoder, layer=int(layer), source=source, target=target, dim=v.shape[0],
                     origin="npy", **config)
    return EmotionAxis(v, cfg, diagnostics)


def store_meta(store) -> dict[str, Any]:
    """Encoder identity, pooling and rates an axis inherits from the store it was built from."""
    cfg = store.config
    meta: dict[str, Any] = {"encoder": cfg.encoder}
    for name in ("sample_rate", "frame_rate", "pooling"):
        if getattr(cfg, name, None) is not None:
            meta[name] = getattr(cfg, name)
    return meta


def build_axis(store, layer: int, source: str, target: str,
               normalize_per_speaker: bool = False, exclude_speakers=()) -> EmotionAxis:
    """compute_axis over an EmbeddingStore's pooled layer, minus `exclude_speakers`."""
    if layer not in tuple(store.layers):
        raise ConfigError(f"layer {layer} not in the store (layers: {list(store.layers)})")
    X = store.pooled(layer)
    speakers = np.asarray(store.labels("speaker")).astype(str)
    emotions = np.asarray(store.labels("emotion")).astype(str)
    keep = ~np.isin(speakers, np.asarray(list(exclude_speakers), dtype=str))
    fit = compute_axis(X[keep], speakers[keep], emotions[keep], source, target,
                       normalize_per_speaker)
    return EmotionAxis.from_fit(fit, layer=int(layer), source=source, target=target,
                                normalize_per_speaker=normalize_per_speaker, **store_meta(store))
