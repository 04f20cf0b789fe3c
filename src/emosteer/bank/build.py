"""Building axes with their prosody deltas, one directory each, and banks of them.

`build_axes` is the one loop over targets: per target an axis from the store's pooled layer
(`axes.build_axis`, held-out speakers excluded), its held-out or leave-one-speaker-out AUC when
asked for, and, when the store knows each clip's audio file, the source -> target ProsodyDelta
learned from the same speakers (saved as prosody.json next to the axis, where `steer --mode
prosody --axis` finds it). `emosteer axis` (`build_axis_dirs`) and `emosteer bank`
(`build_bank`) both run it.

Every axis is computed before anything is written, and the (slow) prosody analyses after the
axes, so a bad target fails fast and leaves no partial output behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emosteer.artifacts import provenance, refuse_overwrite, save_config, write_json
from emosteer.axes import EmotionAxis, build_axis, consistency, holdout_auc, speaker_differences
from emosteer.bank.bank import BANK_JSON, DIAGNOSTICS_JSON, BankConfig, EmotionBank, resolve_emotion
from emosteer.corpora.formats import EMOTIONS, match_speakers
from emosteer.embeddings.store import EmbeddingStore
from emosteer.errors import ConfigError
from emosteer.prosody.world import ProsodyDelta, learn_prosody_delta
from emosteer.steering.steer import PROSODY_FILE

log = logging.getLogger(__name__)

AXES_INDEX = "axes.json"  # lists the axes of a several-target `emosteer axis` directory
# What "consistency" means in diagnostics.json (written there, so the file explains itself).
CONSISTENCY_NOTE = (
    "mean_pairwise_cosine: mean cosine between the training speakers' own difference vectors "
    "d_s = mean(emotion) - mean(reference); agreement: fraction of training speakers whose d_s "
    "has a positive cosine with the mean d of the other speakers (leave-one-speaker-out)")


@dataclass(frozen=True)
class AxisResult:
    """One built (and saved) axis directory."""

    axis: EmotionAxis
    out: Path
    holdout: dict[str, Any] | None  # holdout_auc's report, when asked for
    prosody: ProsodyDelta | None
    prosody_note: str = ""  # why there is no prosody delta ("" when there is one)

    def report(self) -> dict[str, Any]:
        """What `emosteer axis --json` prints for this axis."""
        c = self.axis.config
        entry: dict[str, Any] = {"source": c.source, "target": c.target, "out": str(self.out)}
        if self.holdout is not None:
            entry["holdout"] = self.holdout
        entry.update(config=c, diagnostics=self.axis.diagnostics,
                     prosody=str(self.out / PROSODY_FILE) if self.prosody else None,
                     prosody_note=self.prosody_note)
        return entry


def _labels(store: EmbeddingStore) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray(store.labels("speaker")).astype(str),
            np.asarray(store.labels("emotion")).astype(str))


def _check_layer(store: EmbeddingStore, layer: int) -> None:
    if layer not in tuple(store.layers):
        raise ConfigError(f"layer {layer}: not in the store {store.root} "
                          f"(layers: {list(store.layers)})")


def _speakers(requested: Sequence[str] | None, available, what: str) -> tuple[str, ...]:
    """Requested speakers as the store spells them ('07' -> 'ravdess_07', '01-06')."""
    return match_speakers(requested, available, flag=what) if requested else ()


def audio_note(store: EmbeddingStore) -> str:
    """Why prosody cannot be learned from `store` ('' when it can): an import has no audio."""
    paths = [p for p in store.labels("path") if p]
    if not paths:
        return "no audio: the store lists none (imported embeddings)"
    if not any(Path(p).is_file() for p in paths):
        return f"no audio: none of the store's audio files exists (e.g. {paths[0]})"
    return ""


def _prosody(store: EmbeddingStore, source: str, target: str, speakers: Sequence[str],
             cache_dir, progress: bool) -> tuple[ProsodyDelta | None, str]:
    """The source -> target delta from `speakers`' clips, or (None, why not)."""
    spk, emo = _labels(store)
    paths = store.labels("path")
    keep = np.isin(spk, list(speakers)) & np.isin(emo, [source, target]) & (paths != "")
    try:
        delta = learn_prosody_delta(list(paths[keep]), list(spk[keep]), list(emo[keep]),
                                    source, target, progress=progress, cache_dir=cache_dir)
    except ConfigError as e:  # e.g. no voiced speech: the axis is still worth having
        log.warning("prosody %s->%s not learned: %s", source, target, e)
        return None, f"not learned: {e}"
    return delta, ""


def build_axes(store: EmbeddingStore, layer: int, source: str, targets: Sequence[str],
               out_dirs: Sequence[str | os.PathLike], *, holdout_speakers: Sequence[str] = (),
               loso: bool = False, normalize_per_speaker: bool = False, prosody: bool = True,
               prosody_speakers: Sequence[str] | None = None,
               cache_dir: str | os.PathLike | None = None, progress: bool = False
               ) -> list[AxisResult]:
    """One source -> target axis per target, saved at its `out_dirs` entry.

    `holdout_speakers` stay out of every axis and the prosody deltas, and the AUC is reported
    on them; `loso` reports leave-one-speaker-out AUC instead (the axes use every speaker).
    `prosody`: also learn each target's ProsodyDelta when the store has audio, from
    `prosody_speakers` (default: the axis's own speakers). `cache_dir` keeps the per-clip
    analyses (default: a temporary one for this call, so the source clips shared by all
    targets are analysed once)."""
    targets, out_dirs = tuple(targets), [Path(o) for o in out_dirs]
    if len(targets) != len(out_dirs):
        raise ConfigError(f"{len(targets)} targets but {len(out_dirs)} output directories")
    _check_layer(store, layer)
    spk, emo = _labels(store)
    holdout = _speakers(holdout_speakers, spk, "holdout speakers")
    if holdout and loso:
        raise ConfigError("give held-out speakers or leave-one-speaker-out, not both")
    if holdout and set(spk.tolist()) <= set(holdout):
        raise ConfigError(f"every speaker of {store.root} is held out: none left for the axes")
    X = store.pooled(layer)
    built = []
    for target in targets:
        axis = build_axis(store, layer, source, target, normalize_per_speaker, holdout)
        report = None
        if holdout or loso:
            report = holdout_auc(X, spk, emo, source, target, holdout or None,
                                 normalize_per_speaker)
            axis.diagnostics["holdout"] = report
        built.append((axis, report))
    note = audio_note(store) if prosody else "not asked for"
    fixed = _speakers(prosody_speakers, spk, "prosody speakers")
    if fixed and set(fixed) & set(holdout):
        raise ConfigError(f"prosody speakers {sorted(set(fixed) & set(holdout))} are held out")
    deltas: list[tuple[ProsodyDelta | None, str]] = [(None, note)] * len(targets)
    if not note:
        with (contextlib.nullcontext(cache_dir) if cache_dir is not None
              else tempfile.TemporaryDirectory(prefix="emosteer-prosody-")) as cache:
            deltas = [_prosody(store, source, axis.config.target,
                               fixed or axis.config.speakers, cache, progress)
                      for axis, _ in built]
    results = [AxisResult(axis, out, report, delta, why)
               for (axis, report), (delta, why), out in zip(built, deltas, out_dirs, strict=True)]
    for r in results:
        r.axis.save(r.out)
        if r.prosody is not None:
            r.prosody.save(r.out / PROSODY_FILE)
        else:  # a prosody.json left by an earlier (-f) build would be steered with otherwise
            (r.out / PROSODY_FILE).unlink(missing_ok=True)
    return results


def build_axis_dirs(store_dir: str | os.PathLike, layer: int, source: str,
                    targets: Sequence[str], out: str | os.PathLike, force: bool = False,
                    **options: Any) -> list[AxisResult]:
    """`emosteer axis`: one target -> the axis directory `out`; several -> out/<target>/ each
    plus out/axes.json listing them. `options` go to `build_axes`."""
    targets, out = tuple(targets), Path(out)
    if not targets:
        raise ConfigError("need at least one target emotion")
    if source in targets:
        raise ConfigError(f"the targets include the source emotion {source!r}")
    outs = [out] if len(targets) == 1 else [out / t for t in targets]
    for o in outs:
        refuse_overwrite(o, force)
    results = build_axes(EmbeddingStore.open(store_dir), layer, source, targets, outs, **options)
    if len(targets) > 1:
        write_json(out / AXES_INDEX, {"layer": layer, "source": source, "targets": list(targets),
                                      "axes": {t: t for t in targets}})
    return results


def agreement(per_speaker: np.ndarray) -> float:
    """Fraction of rows d_s whose cosine with the mean of the other rows is positive: how many
    speakers the axis built without them would still point their way (NaN below 2 rows)."""
    D = np.asarray(per_speaker, dtype=np.float64)
    S = D.shape[0]
    if S < 2:
        return float("nan")
    others = (D.sum(axis=0, keepdims=True) - D) / (S - 1)
    return float(np.mean(np.einsum("ij,ij->i", D, others) > 0))


def axis_cosines(axes: Sequence[EmotionAxis]) -> np.ndarray:
    """(E, E) cosines between the axes' directions."""
    U = np.stack([a.unit.astype(np.float64) for a in axes])
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    return U @ U.T


def _store_emotions(emo: np.ndarray, reference: str) -> tuple[str, ...]:
    """The store's emotions other than `reference`, in the corpus order of EMOTIONS."""
    present = sorted(set(emo.tolist()) - {reference, ""})
    order = {e: i for i, e in enumerate(EMOTIONS)}
    return tuple(sorted(present, key=lambda e: (order.get(e, len(order)), e)))


def emotion_diagnostics(store: EmbeddingStore, result: AxisResult,
                        holdout: Sequence[str]) -> dict[str, Any]:
    """diagnostics.json's entry for one emotion: speakers, AUC, consistency, norms, prosody."""
    c, d = result.axis.config, result.axis.diagnostics
    spk, emo = _labels(store)
    train = ~np.isin(spk, list(holdout))
    _, D = speaker_differences(store.pooled(c.layer)[train], spk[train], emo[train],
                               c.source, c.target)
    pairwise, resultant = consistency(D)
    return {"n_speakers": len(c.speakers), "speakers": list(c.speakers),
            "holdout": result.holdout, "mean_pairwise_cosine": pairwise,
            "resultant_length": resultant, "agreement": agreement(D),
            "norm": d["norm"], "calibration": d["calibration"],
            "prosody": _prosody_entry(result.prosody), "prosody_note": result.prosody_note}


def _prosody_entry(delta: ProsodyDelta | None) -> dict[str, Any] | None:
    """The headline numbers of a prosody delta (the whole delta is in <emotion>/prosody.json)."""
    if delta is None:
        return None
    return {"summary": delta.summary(), "f0_shift_st": delta.f0_shift_st,
            "f0_range_ratio": delta.f0_range_ratio, "tilt_db": delta.tilt_db,
            "energy_db": delta.energy_db, "rate_ratio": delta.rate_ratio,
            "speakers": list(delta.speakers)}


def build_bank(store_dir: str | os.PathLike, out_dir: str | os.PathLike,
               reference: str = "calm", layer: int | None = None,
               emotions: Sequence[str] | None = None, holdout_speakers: Sequence[str] = (),
               prosody_speakers: Sequence[str] | None = None, force: bool = False, *,
               prosody: bool = True, normalize_per_speaker: bool = False,
               cache_dir: str | os.PathLike | None = None, progress: bool = False
               ) -> EmotionBank:
    """A bank at `out_dir`: reference -> emotion axes (OUT/<emotion>/, with prosody.json when
    the store has audio), diagnostics.json and bank.json (written last).

    `layer`: the store's only layer by default. `emotions`: every other emotion in the store by
    default. The AUC is measured on `holdout_speakers` (kept out of the axes and the prosody),
    or leave-one-speaker-out without them. `prosody_speakers`: whom the prosody deltas are
    learned from (default: each axis's speakers)."""
    store = EmbeddingStore.open(store_dir)
    out = Path(out_dir)
    if layer is None:
        if len(store.layers) != 1:
            raise ConfigError(f"{store.root} has layers {list(store.layers)}: choose one")
        layer = int(store.layers[0])
    spk, emo = _labels(store)
    known = sorted(set(emo.tolist()))
    ref = resolve_emotion(reference, known)
    if ref is None:
        raise ConfigError(f"reference {reference!r}: not in {store.root} (emotions: "
                          f"{', '.join(known)})")
    if emotions is None:
        chosen = _store_emotions(emo, ref)
    else:
        resolved = [(e, resolve_emotion(e, known)) for e in emotions]
        unknown = [e for e, r in resolved if r is None]
        if unknown:
            raise ConfigError(f"emotions {unknown}: not in {store.root} (emotions: "
                              f"{', '.join(known)})")
        chosen = tuple(dict.fromkeys(r for _, r in resolved))
    if ref in chosen:
        raise ConfigError(f"the emotions include the reference {ref!r}")
    if not chosen:
        raise ConfigError(f"{store.root}: no emotion besides the reference {ref!r}")
    holdout = _speakers(holdout_speakers, spk, "holdout speakers")
    for path in [out / BANK_JSON, *(out / e for e in chosen)]:
        refuse_overwrite(path, force)
    results = build_axes(store, layer, ref, chosen, [out / e for e in chosen],
                         holdout_speakers=holdout, loso=not holdout,
                         normalize_per_speaker=normalize_per_speaker, prosody=prosody,
                         prosody_speakers=prosody_speakers, cache_dir=cache_dir,
                         progress=progress)
    learned = sorted({s for r in results if r.prosody for s in r.prosody.speakers})
    cfg = BankConfig(reference=ref, layer=layer, emotions=chosen,
                     encoder=store.config.encoder, dim=results[0].axis.config.dim,
                     pooling=store.config.pooling,
                     speakers=tuple(sorted({s for r in results for s in r.axis.config.speakers})),
                     holdout=holdout, prosody_speakers=tuple(learned),
                     normalize_per_speaker=normalize_per_speaker, store=str(store_dir))
    diagnostics = {
        "reference": ref, "layer": layer, "emotions": list(chosen),
        "auc": ("held-out speakers " + ", ".join(holdout) if holdout
                else "leave-one-speaker-out") + f": {ref} vs each emotion, projected on its axis",
        "consistency": CONSISTENCY_NOTE,
        "per_emotion": {r.axis.config.target: emotion_diagnostics(store, r, holdout)
                        for r in results},
        "cosines": {"emotions": list(chosen),
                    "matrix": axis_cosines([r.axis for r in results]).tolist()},
        "provenance": provenance(store=str(store_dir)),
    }
    write_json(out / DIAGNOSTICS_JSON, diagnostics)
    save_config(cfg, out / BANK_JSON)  # last: its presence means the bank is complete
    return EmotionBank.load(out)


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None or not np.isfinite(v) else format(v, spec)


def diagnostics_table(diagnostics: dict[str, Any]) -> str:
    """The per-emotion table and the cosine matrix of a bank's diagnostics, as plain text."""
    per = diagnostics["per_emotion"]
    lines = [f"reference {diagnostics['reference']}, layer {diagnostics['layer']}; "
             f"AUC: {diagnostics['auc']}",
             f"{'emotion':<10} {'speakers':>8} {'AUC':>6} {'AUC-c':>6} {'pw-cos':>6} "
             f"{'agree':>6}  prosody (f0 st, level dB, rate)"]
    for e, d in per.items():
        h, p = d.get("holdout") or {}, d.get("prosody")
        prosody = (f"{p['f0_shift_st']:+.2f}, {p['energy_db']:+.2f}, x{p['rate_ratio']:.2f}"
                   if p else d.get("prosody_note", ""))
        lines.append(f"{e:<10} {d['n_speakers']:>8} {_fmt(h.get('auc_raw')):>6} "
                     f"{_fmt(h.get('auc_centred')):>6} {_fmt(d['mean_pairwise_cosine']):>6} "
                     f"{_fmt(d['agreement'], '.2f'):>6}  {prosody}")
    lines.append("(AUC raw / AUC-c speaker-centred; pw-cos mean pairwise cosine of the "
                 "speakers' shifts; agree: leave-one-out agreement with the axis)")
    names = diagnostics["cosines"]["emotions"]
    lines.append("cosines between the axes:")
    lines.append(" " * 10 + "".join(f"{n[:8]:>9}" for n in names))
    for n, row in zip(names, diagnostics["cosines"]["matrix"], strict=True):
        lines.append(f"{n:<10}" + "".join(f"{v:>9.3f}" for v in row))
    return "\n".join(lines)
