"""Reading an emotion bank and mixing its emotions.

A bank (written by `build.build_bank`) is a directory:
  bank.json         BankConfig, written last: a directory without it is not a (finished) bank
  diagnostics.json  per-emotion held-out AUC and consistency, the cosines between the axes
  <emotion>/        an ordinary axis directory (axis.safetensors + axis.json, and prosody.json
                    when the store had audio), so each one also works with `--axis`

A mix such as "happy:0.5,surprise:0.5" steers along the weighted sum of the emotions' full
pushes: delta 1 adds sum_i w_i * calibration_i * unit_i to the frames (and the weighted
ProsodyDelta.mix), so "sad" alone (weight 1) is exactly the sad axis.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emosteer import __version__
from emosteer.artifacts import load_config, read_json
from emosteer.axes import AXIS_JSON, MIN_NORM, EmotionAxis
from emosteer.corpora.formats import normalize_emotion
from emosteer.embeddings.encoders import EncoderIdentity
from emosteer.errors import ArtifactError, ConfigError, CorpusError
from emosteer.prosody.world import ProsodyDelta
from emosteer.steering.steer import PROSODY_FILE, Steerer

log = logging.getLogger(__name__)

BANK_JSON = "bank.json"
DIAGNOSTICS_JSON = "diagnostics.json"
MIX_ORIGIN = "bank-mix"  # AxisConfig.origin of a mixed axis (never saved by the bank itself)

Mix = tuple[tuple[str, float], ...]  # (emotion, weight) pairs, in the order given


@dataclass(frozen=True)
class BankConfig:
    """What a bank's axes belong to and were built from."""

    reference: str  # every axis points from this emotion to its own
    layer: int
    emotions: tuple[str, ...]
    encoder: EncoderIdentity
    dim: int
    pooling: str = "mean"
    speakers: tuple[str, ...] = ()  # the speakers the axes were built from (all emotions)
    holdout: tuple[str, ...] = ()  # kept out of every axis; the held-out AUC is theirs
    prosody_speakers: tuple[str, ...] = ()  # whom the prosody deltas came from; () = none learned
    normalize_per_speaker: bool = False
    store: str = ""  # the store directory, as given
    emosteer_version: str = __version__

    def __post_init__(self) -> None:
        if not self.emotions:
            raise ConfigError("a bank needs at least one emotion")
        if self.reference in self.emotions:
            raise ConfigError(f"the reference {self.reference!r} is also one of the emotions")
        if len(set(self.emotions)) != len(self.emotions):
            raise ConfigError(f"emotions repeat: {list(self.emotions)}")


def resolve_emotion(name: str, known: Sequence[str]) -> str | None:
    """`name` as spelled in `known`, also via the corpus aliases ('surprised' -> 'surprise',
    'fearful' -> 'fear'); None when neither names one of them."""
    name = str(name).strip()
    if name in known:
        return name
    try:
        canonical = normalize_emotion(name)
    except CorpusError:
        return None
    return canonical if canonical in known else None


def check_mix(pairs: Sequence[tuple[str, float]], known: Sequence[str], what: str) -> Mix:
    """(emotion, weight) pairs with each name resolved against `known` (aliases allowed) and
    each weight a finite number; `what` names the mix in errors."""
    out: dict[str, float] = {}
    for name, weight in pairs:
        emotion = resolve_emotion(name, known)
        if emotion is None:
            raise ConfigError(f"emotion mix {what}: unknown emotion {name!r} "
                              f"(this bank has: {', '.join(known)})")
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise ConfigError(f"emotion mix {what}: weight {weight!r} of {name!r} is not a "
                              "number") from None
        if not math.isfinite(weight):
            raise ConfigError(f"emotion mix {what}: the weight of {name!r} must be finite")
        if emotion in out:
            raise ConfigError(f"emotion mix {what}: {emotion!r} is given twice")
        out[emotion] = weight
    if not out:
        raise ConfigError(f"emotion mix {what}: no emotion given")
    return tuple(out.items())


def parse_mix(spec: str, known: Sequence[str]) -> Mix:
    """'happy:0.5,surprise:0.5' -> (('happy', 0.5), ('surprise', 0.5)); a bare 'sad' weighs 1.
    Names are checked against `known` (aliases allowed), weights must be finite numbers."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"emotion mix {spec!r}: expected e.g. 'sad' or 'happy:0.5,surprise:0.5'")
    pairs = []
    for part in spec.split(","):
        name, sep, weight = part.partition(":")
        if not name.strip():
            raise ConfigError(f"emotion mix {spec!r}: an entry has no emotion name")
        pairs.append((name.strip(), weight.strip() if sep else 1.0))
    return check_mix(pairs, known, repr(spec))


def mix_label(mix: Mix) -> str:
    """'sad' for sad at weight 1, else '0.5*happy+0.5*surprise'."""
    if len(mix) == 1 and mix[0][1] == 1.0:
        return mix[0][0]
    return "+".join(f"{w:g}*{e}" for e, w in mix)


@dataclass(frozen=True)
class EmotionBank:
    """A loaded bank: one axis (and prosody delta, if learned) per emotion, one reference."""

    config: BankConfig
    axes: Mapping[str, EmotionAxis]
    prosodies: Mapping[str, ProsodyDelta | None]
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> EmotionBank:
        path = Path(path)
        cfg_path = path / BANK_JSON
        if not path.is_dir() or not cfg_path.is_file():
            raise ArtifactError(f"{path}: not an emotion bank (no {BANK_JSON}; build one with "
                                "`emosteer bank`)")
        cfg = load_config(BankConfig, cfg_path)
        axes, prosodies = {}, {}
        for emotion in cfg.emotions:
            axis = EmotionAxis.load(path / emotion)
            c = axis.config
            if (c.source, c.target, c.layer, c.dim) != (cfg.reference, emotion, cfg.layer, cfg.dim):
                raise ArtifactError(
                    f"{path / emotion / AXIS_JSON}: a {c.source}->{c.target} axis at layer "
                    f"{c.layer} ({c.dim} dims), but {cfg_path} lists a {cfg.reference}->"
                    f"{emotion} axis at layer {cfg.layer} ({cfg.dim} dims)")
            axes[emotion] = axis
            pfile = path / emotion / PROSODY_FILE
            prosodies[emotion] = ProsodyDelta.load(pfile) if pfile.is_file() else None
        diag_path = path / DIAGNOSTICS_JSON
        diagnostics = read_json(diag_path) if diag_path.is_file() else {}
        if not isinstance(diagnostics, dict):
            raise ArtifactError(f"{diag_path}: expected a JSON object")
        return cls(cfg, axes, prosodies, diagnostics, path)

    @property
    def emotions(self) -> tuple[str, ...]:
        return self.config.emotions

    @property
    def reference(self) -> str:
        return self.config.reference

    def _name(self, emotion: str) -> str:
        name = resolve_emotion(emotion, self.emotions)
        if name is None:
            where = f" {self.path}" if self.path is not None else ""
            raise ConfigError(f"emotion {emotion!r} is not in the bank{where} "
                              f"(emotions: {', '.join(self.emotions)})")
        return name

    def axis(self, emotion: str) -> EmotionAxis:
        """The reference -> `emotion` axis."""
        return self.axes[self._name(emotion)]

    def prosody(self, emotion: str) -> ProsodyDelta | None:
        """The reference -> `emotion` prosody delta; None when the store had no audio."""
        return self.prosodies[self._name(emotion)]

    def parse_mix(self, spec: str | Mix) -> Mix:
        """A mix spec ('sad', 'happy:0.5,surprise:0.5') or (emotion, weight) pairs, checked
        against this bank's emotions."""
        if isinstance(spec, str):
            return parse_mix(spec, self.emotions)
        return check_mix(spec, self.emotions, repr(tuple(spec)))

    def mixed_axis(self, mix: str | Mix) -> EmotionAxis:
        """One axis for a mix: the vector v = sum_i w_i * calibration_i * unit_i, with
        calibration |v|, so delta 1 pushes by the weighted sum of the emotions' full pushes."""
        pairs = self.parse_mix(mix)
        v = sum(w * self.axes[e].calibration * self.axes[e].unit.astype(np.float64)
                for e, w in pairs)
        norm = float(np.linalg.norm(v))
        if norm < MIN_NORM:
            raise ConfigError(f"emotion mix {mix_label(pairs)!r} has no direction "
                              "(its weighted pushes cancel)")
        first = self.axes[pairs[0][0]].config
        speakers = sorted({s for e, _ in pairs for s in self.axes[e].config.speakers})
        cfg = dataclasses.replace(first, target=mix_label(pairs), origin=MIX_ORIGIN,
                                  speakers=tuple(speakers))
        diagnostics = {"norm": norm, "calibration": norm, "mix": [[e, w] for e, w in pairs],
                       "bank": None if self.path is None else str(self.path)}
        return EmotionAxis(v.astype(np.float32), cfg, diagnostics)

    def mixed_prosody(self, mix: str | Mix) -> ProsodyDelta | None:
        """ProsodyDelta.mix of the mix's deltas; None when any of them was not learned (the
        latent path still works; the prosody path then says that a delta is missing)."""
        pairs = self.parse_mix(mix)
        missing = [e for e, _ in pairs if self.prosodies[e] is None]
        if missing:
            log.warning("bank %s: no prosody delta for %s; the mix has none",
                        self.path or "", ", ".join(missing))
            return None
        return ProsodyDelta.mix([(self.prosodies[e], w) for e, w in pairs])

    def steerer(self, base: Steerer, mix: str | Mix) -> Steerer:
        """`base`'s encoder, mapper and vocoder with the mix's axis and prosody delta."""
        return base.with_axis(self.mixed_axis(mix), self.mixed_prosody(mix))


def bank_steerer(bank: str | os.PathLike | EmotionBank, mix: str | Mix, **artifacts: Any
                 ) -> Steerer:
    """A Steerer for a bank's mix: the bank and the mix are checked first, then the models
    load through `Steerer.from_artifacts(**artifacts)` (mapper, vocoder, mode, model, device,
    bf16, ...; no axis or prosody: those come from the bank)."""
    bank = bank if isinstance(bank, EmotionBank) else EmotionBank.load(bank)
    pairs = bank.parse_mix(mix)
    for key in ("axis", "prosody"):
        if artifacts.get(key) is not None:
            raise ConfigError(f"with a bank the {key} comes from the bank ({bank.path}); "
                              f"give no {key}")
    artifacts.pop("axis", None)
    artifacts.pop("prosody", None)
    missing = [e for e, _ in pairs if bank.prosodies[e] is None]
    if missing and artifacts.get("mode", "latent") != "latent":
        raise ConfigError(f"{bank.path}: no prosody delta for {', '.join(missing)} (its store "
                          "had no audio): only --mode latent steers with this mix")
    return bank.steerer(Steerer.from_artifacts(axis=None, **artifacts), pairs)
