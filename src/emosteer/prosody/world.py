"""Prosody as its own control: learn per-emotion prosody deltas and apply them with WORLD.

Additive steering of SSL features barely moves F0 level and range, vocal effort, loudness or
timing, yet these carry much of what listeners hear as emotion. This module learns those
differences from labelled speech (speaker-normalised) and imposes a scaled copy of them on a
recording by analysis-resynthesis.

Why WORLD (pyworld) rather than PSOLA: WORLD splits speech into F0, a smooth spectral envelope
and aperiodicity, so pitch level, pitch range, the envelope's tilt (vocal effort) and timing are
all changed independently in one analysis and one synthesis. PSOLA changes only pitch and
duration, depends on reliable pitch marks, and cannot change vocal effort without an extra filter
that would also colour the noise floor. WORLD keeps the envelope (formants) when F0 moves, so a
shifted voice does not sound "chipmunked". Measurement (`correlates`) uses the same
DIO + StoneMask F0, so what is imposed is what gets measured.

Global level and range changes cannot express contour shape, voice quality or pauses, so a
delta also carries (each learned the same way, each switchable, see COMPONENTS): the F0
contour's final slope and onset, the energy dynamics, the mean spectral envelope (WORLD's
mel-cepstrum), the aperiodicity (breathiness) and pause lengthening apart from the speaking
rate. Files written before these existed hold the original five and load as such.

Only voiced speech goes through WORLD: unvoiced stretches keep the recording's own samples
(see `_keep_unvoiced`: WORLD's white-noise rendering of them moved a calm clip's unvoiced
spectrum by about two standard deviations of the corpus).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emosteer import __version__
from emosteer.artifacts import load_config, read_json, save_config, write_json
from emosteer.audio import (
    PEAK_CEILING,
    SAMPLE_RATE,
    limit_peak,
    load_audio,
    resample,
    validate_audio,
)
from emosteer.errors import ArtifactError, AudioError, ConfigError
from emosteer.prosody.correlates import (
    AP_BAND_SPACING_HZ,
    AP_CEIL_DB,
    AP_FLOOR_DB,
    ENERGY_RANGE_PERCENTILES,
    ENERGY_WINDOW_MS,
    F0_CEIL_HZ,
    F0_FLOOR_HZ,
    FINAL_CONTOUR_S,
    FRAME_PERIOD_MS,
    MCEP_ORDER,
    MIN_PAUSE_S,
    ONSET_CONTOUR_S,
    PAUSE_DEPTH_DB,
    ST_REFERENCE_HZ,
    acoustic_correlates,
    active_frames,
    active_level_db,
    alpha_ratio_db,
    envelope_correlates,
    extract_prosody,
    frame_energy_db,
    hz_to_st,
    import_pyworld,
    mean_correlates,
    onset_weights,
    pause_frames,
    speech_level_db,
    st_to_hz,
)

log = logging.getLogger(__name__)

# What a ProsodyDelta can change, in the order apply_prosody applies them. The first five are
# the original global measures (and all that a file written before the others existed holds).
LEGACY_COMPONENTS = ("f0", "range", "tilt", "energy", "rate")
COMPONENTS = LEGACY_COMPONENTS + ("contour", "dynamics", "mcep", "aperiodicity", "pauses")
ENVELOPE_COMPONENTS = ("mcep", "aperiodicity")  # need CheapTrick + D4C to learn (slower)
# The scalar fields of each component and their neutral values (a switched-off component
# counts as neutral); "mcep" and "aperiodicity" are vectors, neutral when empty or zero.
SCALAR_FIELDS = {"f0": {"f0_shift_st": 0.0}, "range": {"f0_range_ratio": 1.0},
                 "tilt": {"tilt_db": 0.0}, "energy": {"energy_db": 0.0},
                 "rate": {"rate_ratio": 1.0},
                 "contour": {"f0_final_slope_st_s": 0.0, "f0_onset_st": 0.0},
                 "dynamics": {"energy_range_ratio": 1.0}, "pauses": {"pause_ratio": 1.0}}
RATIO_FIELDS = ("f0_range_ratio", "rate_ratio", "energy_range_ratio", "pause_ratio")
VECTOR_FIELDS = {"mcep": "mcep", "aperiodicity": "ap_db"}
# A speaker without pauses counts as pausing MIN_PAUSE_S (the shortest pause there is), so the
# pause ratio stays finite and a single pause in one clip does not read as "infinitely more".
PAUSE_FLOOR_S = MIN_PAUSE_S
# Everything the per-clip analysis depends on; part of the cache key, so a change of any of
# them invalidates cached analyses.
ANALYSIS_TOKEN = repr(("prosody-analysis", 1, FRAME_PERIOD_MS, ENERGY_WINDOW_MS, F0_FLOOR_HZ,
                       F0_CEIL_HZ, ST_REFERENCE_HZ, FINAL_CONTOUR_S, ONSET_CONTOUR_S,
                       ENERGY_RANGE_PERCENTILES, MIN_PAUSE_S, PAUSE_DEPTH_DB, MCEP_ORDER,
                       AP_BAND_SPACING_HZ))

SYNTH_FRAME_PERIOD_MS = 5.0  # WORLD's default: finer than measurement so resynthesis is clean
# Voice-quality changes (mcep, aperiodicity) apply to voiced frames; the voicing mask is
# smoothed over 25 ms (the analysis window) so they fade in and out instead of switching.
VOICING_SMOOTH_MS = 25.0
SHELF_CORNER_HZ = 1000.0  # the alpha-ratio band edge: the shelf moves energy across it
SHELF_MAX_DB = 60.0  # search bound for the shelf gain; far beyond any real vocal-effort change
# An octave beyond the analysis range either way: further out is no longer speech.
F0_SYNTH_RANGE_HZ = (F0_FLOOR_HZ / 2, F0_CEIL_HZ * 2)


@dataclass(frozen=True)
class ProsodyDelta:
    """Speaker-normalised prosody difference source -> target (apply with scale 1 to go there).

    The original five (always present):
    f0_shift_st: change of median F0, semitones. f0_range_ratio: factor on the F0 range.
    tilt_db: change of the alpha ratio (1-5 kHz over 50-1000 Hz), dB: vocal effort.
    energy_db: change of active-speech level, dB. rate_ratio: factor on speaking rate (with
    "pauses" on: on the articulation rate, the rate between pauses).

    Added later, each neutral by default (so files without them load unchanged):
    f0_final_slope_st_s: change of the F0 slope over the last 0.5 s of voiced speech, st/s.
    f0_onset_st: change of the onset F0 (first 0.3 s of voiced speech) re the median, st.
    energy_range_ratio: factor on the 10-90th percentile range of the voiced frames' level (dB).
    mcep: change of the mean coded spectral envelope c1..cN on voiced frames (WORLD's
    mel-cepstrum at `sample_rate`, natural-log power units); () = none.
    ap_db: change of the mean coded aperiodicity on voiced frames, dB, per WORLD band (3, 6, 9..
    kHz; one band at 16 kHz): breathiness/roughness.
    pause_ratio: factor on the total duration of pauses.

    components: what `apply_prosody` imposes (COMPONENTS names; the rest count as neutral).
    Left out, it is the original five plus every later component whose fields are not
    neutral, so a file or constructor call without it means what it meant before."""

    f0_shift_st: float
    f0_range_ratio: float
    tilt_db: float
    energy_db: float
    rate_ratio: float
    source: str = ""
    target: str = ""
    speakers: tuple[str, ...] = ()
    n_source: int = 0
    n_target: int = 0
    sample_rate: int = SAMPLE_RATE
    frame_period_ms: float = FRAME_PERIOD_MS
    st_reference_hz: float = ST_REFERENCE_HZ
    emosteer_version: str = __version__
    f0_final_slope_st_s: float = 0.0
    f0_onset_st: float = 0.0
    energy_range_ratio: float = 1.0
    mcep: tuple[float, ...] = ()
    ap_db: tuple[float, ...] = ()
    pause_ratio: float = 1.0
    components: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for fields in SCALAR_FIELDS.values():
            for name in fields:
                v = getattr(self, name)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ConfigError(f"ProsodyDelta.{name}: expected a finite number, got {v!r}")
        for name in RATIO_FIELDS:
            if getattr(self, name) <= 0:
                raise ConfigError(f"ProsodyDelta.{name}: must be positive")
        for name in ("mcep", "ap_db"):
            v = getattr(self, name)
            try:
                arr = np.asarray(v, dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"ProsodyDelta.{name}: expected numbers, got {v!r}") from e
            if arr.ndim != 1 or not np.all(np.isfinite(arr)):
                raise ConfigError(f"ProsodyDelta.{name}: expected a list of finite numbers")
            object.__setattr__(self, name, tuple(float(x) for x in arr))
        if self.components is None:
            comps = LEGACY_COMPONENTS + tuple(c for c in COMPONENTS[len(LEGACY_COMPONENTS):]
                                              if not self._neutral(c))
        else:
            if isinstance(self.components, str):
                raise ConfigError("ProsodyDelta.components: expected a list of names")
            comps = _check_components(self.components, "ProsodyDelta.components")
        object.__setattr__(self, "components", comps)

    def _neutral(self, component: str) -> bool:
        """Whether `component`'s fields hold their neutral values (no change)."""
        if component in VECTOR_FIELDS:
            return not any(getattr(self, VECTOR_FIELDS[component]))
        return all(getattr(self, k) == v for k, v in SCALAR_FIELDS[component].items())

    def value(self, name: str):
        """Field `name` as `apply_prosody` uses it: neutral when its component is off."""
        for comp, fields in SCALAR_FIELDS.items():
            if name in fields:
                return getattr(self, name) if comp in self.components else fields[name]
        for comp, field in VECTOR_FIELDS.items():
            if name == field:
                return getattr(self, name) if comp in self.components else ()
        raise ConfigError(f"ProsodyDelta has no component field {name!r}")

    def without(self, *names: str) -> ProsodyDelta:
        """A copy with the named components switched off."""
        drop = set(_check_components(names, "without"))
        return dataclasses.replace(self, components=tuple(c for c in self.components
                                                          if c not in drop))

    def only(self, *names: str) -> ProsodyDelta:
        """A copy with only the named components on."""
        return dataclasses.replace(self, components=_check_components(names, "only"))

    @classmethod
    def mix(cls, pairs: Sequence[tuple[ProsodyDelta, float]]) -> ProsodyDelta:
        """The weighted combination sum_i w_i * delta_i, for mixing emotions: linear in the
        semitone, dB, cepstral and aperiodicity fields, log-linear (geometric) in the ratios;
        a component a delta has switched off contributes its neutral value. The mix has the
        union of the components; source, target and speakers are joined, clip counts summed.
        Weights need not sum to 1 (((d, 2),) doubles d)."""
        pairs = [(d, float(w)) for d, w in pairs]
        if not pairs:
            raise ConfigError("ProsodyDelta.mix: nothing to mix")
        for d, w in pairs:
            if not isinstance(d, ProsodyDelta) or not math.isfinite(w):
                raise ConfigError(f"ProsodyDelta.mix: expected (ProsodyDelta, finite weight) "
                                  f"pairs, got ({type(d).__name__}, {w!r})")
        first = pairs[0][0]
        for name in ("sample_rate", "frame_period_ms", "st_reference_hz"):
            if any(getattr(d, name) != getattr(first, name) for d, _ in pairs):
                raise ConfigError(f"ProsodyDelta.mix: the deltas differ in {name}")
        fields: dict = {}
        for comp_fields in SCALAR_FIELDS.values():
            for name in comp_fields:
                vals = [(d.value(name), w) for d, w in pairs]
                if name in RATIO_FIELDS:
                    fields[name] = math.exp(sum(w * math.log(v) for v, w in vals))
                else:
                    fields[name] = sum(w * v for v, w in vals)
        for name in VECTOR_FIELDS.values():
            vecs = [(np.asarray(d.value(name), np.float64), w) for d, w in pairs]
            sizes = {len(v) for v, _ in vecs if len(v)}
            if len(sizes) > 1:
                raise ConfigError(f"ProsodyDelta.mix: {name} lengths differ ({sorted(sizes)})")
            n = sizes.pop() if sizes else 0
            fields[name] = tuple(float(x) for x in
                                 sum((w * v if len(v) else np.zeros(n) for v, w in vecs),
                                     np.zeros(n)))
        comps = {c for d, _ in pairs for c in d.components}

        def join(names) -> str:
            return "+".join(dict.fromkeys(n for n in names if n))

        return cls(**fields, source=join(d.source for d, _ in pairs),
                   target="+".join(f"{w:g}*{d.target or '?'}" for d, w in pairs),
                   speakers=tuple(sorted({s for d, _ in pairs for s in d.speakers})),
                   n_source=sum(d.n_source for d, _ in pairs),
                   n_target=sum(d.n_target for d, _ in pairs),
                   sample_rate=first.sample_rate, frame_period_ms=first.frame_period_ms,
                   st_reference_hz=first.st_reference_hz,
                   components=tuple(c for c in COMPONENTS if c in comps))

    def summary(self) -> str:
        """One line: what is on and by how much."""
        parts = {"f0": f"f0 {self.f0_shift_st:+.2f} st",
                 "range": f"range x{self.f0_range_ratio:.2f}",
                 "tilt": f"effort {self.tilt_db:+.2f} dB",
                 "energy": f"level {self.energy_db:+.2f} dB",
                 "rate": f"rate x{self.rate_ratio:.2f}",
                 "contour": f"final slope {self.f0_final_slope_st_s:+.2f} st/s, "
                            f"onset {self.f0_onset_st:+.2f} st",
                 "dynamics": f"energy range x{self.energy_range_ratio:.2f}",
                 "mcep": f"mcep |d| {float(np.linalg.norm(self.mcep)):.3f}",
                 "aperiodicity": "ap " + "/".join(f"{v:+.1f}" for v in self.ap_db) + " dB",
                 "pauses": f"pauses x{self.pause_ratio:.2f}"}
        return ", ".join(parts[c] for c in self.components)

    def save(self, path: str | os.PathLike) -> None:
        save_config(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ProsodyDelta:
        try:
            return load_config(cls, path)
        except ConfigError as e:
            raise ArtifactError(f"{path}: {e}") from e


def _check_components(names: Sequence[str], what: str) -> tuple[str, ...]:
    """`names` validated and in COMPONENTS order (so equal sets compare equal)."""
    names = [str(n) for n in names]
    unknown = sorted(set(names) - set(COMPONENTS))
    if unknown:
        raise ConfigError(f"{what}: unknown prosody components {unknown} "
                          f"(known: {', '.join(COMPONENTS)})")
    return tuple(c for c in COMPONENTS if c in names)


def parse_components(text: str) -> tuple[str, ...]:
    """'all', or a comma list of COMPONENTS names, e.g. 'f0,range,contour'."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return COMPONENTS
    if not names:
        raise ConfigError("no prosody components given")
    return _check_components(names, "components")


NEUTRAL = ProsodyDelta(f0_shift_st=0.0, f0_range_ratio=1.0, tilt_db=0.0, energy_db=0.0,
                       rate_ratio=1.0, source="neutral", target="neutral")


def _resolve_components(components: Sequence[str] | str | None, rows: Sequence[dict]
                        ) -> tuple[str, ...]:
    """The components to learn: those asked for (a name list or 'all'), or by default every
    one whose measures all `rows` carry (rows of `acoustic_correlates` alone: no mcep/ap)."""
    if isinstance(components, str):
        return parse_components(components)
    if components is not None:
        return _check_components(components, "components")
    have = set.intersection(*(set(r) for r in rows)) if rows else set()
    return tuple(c for c in COMPONENTS if set(_MEASURES[c]) <= have)


# The correlates each component is learned from (`acoustic_correlates` + `envelope_correlates`).
_MEASURES = {"f0": ("median_f0_st",), "range": ("f0_range_st",), "tilt": ("alpha_ratio_db",),
             "energy": ("level_db",), "rate": ("speaking_rate",),
             "contour": ("f0_final_slope_st_s", "f0_onset_st"),
             "dynamics": ("energy_range_db",), "mcep": ("mcep",), "aperiodicity": ("ap_db",),
             "pauses": ("pause_s", "articulation_rate")}


def _mean_vector(rows: Sequence[dict], key: str) -> np.ndarray:
    with np.errstate(all="ignore"):
        stack = np.stack([np.asarray(r[key], np.float64) for r in rows])
        keep = np.all(np.isfinite(stack), axis=1)
        return stack[keep].mean(axis=0) if keep.any() else np.full(stack.shape[1], np.nan)


def delta_from_correlates(rows: Sequence[dict], speakers: Sequence[str],
                          emotions: Sequence[str], source: str, target: str,
                          sample_rate: int = SAMPLE_RATE,
                          components: Sequence[str] | str | None = None) -> ProsodyDelta:
    """Per speaker: mean(target) - mean(source) (log ratios for F0 range, rate, energy range
    and pauses), then averaged over the speakers that have both emotions (ratios
    geometrically), so speaker identity (a low voice, a loud microphone, a bright timbre)
    cancels out. The mcep and aperiodicity vectors are differenced the same way, per
    coefficient. With "pauses" on, rate_ratio is the articulation rate's (syllables per second
    of speech between pauses), since pauses are then stretched separately.

    A speaker without usable voiced speech is skipped; a later component that no speaker can
    measure (e.g. no clip long enough for a contour) is left neutral and switched off."""
    if not (len(rows) == len(speakers) == len(emotions)):
        raise ConfigError("rows, speakers and emotions must have the same length")
    comps = _resolve_components(components, rows)
    missing = sorted({k for c in comps for k in _MEASURES[c] if any(k not in r for r in rows)})
    if missing:
        raise ConfigError(f"prosody delta: the rows lack {missing} (components {list(comps)})")
    rate_key = "articulation_rate" if "pauses" in comps else "speaking_rate"
    diffs: dict[str, list] = {}
    used, n_src, n_tgt = [], 0, 0
    for spk in sorted(set(speakers)):
        src = [r for r, s, e in zip(rows, speakers, emotions, strict=True) if s == spk and e == source]
        tgt = [r for r, s, e in zip(rows, speakers, emotions, strict=True) if s == spk and e == target]
        if not src or not tgt:
            log.info("prosody delta: speaker %s lacks %s or %s clips; skipped", spk, source, target)
            continue
        a, b = mean_correlates(src), mean_correlates(tgt)
        with np.errstate(all="ignore"):
            vals = {"f0_shift_st": b["median_f0_st"] - a["median_f0_st"],
                    "f0_range_ratio": math.log(b["f0_range_st"] / a["f0_range_st"]),
                    "tilt_db": b["alpha_ratio_db"] - a["alpha_ratio_db"],
                    "energy_db": b["level_db"] - a["level_db"],
                    "rate_ratio": math.log(b[rate_key] / a[rate_key])}
        if not all(math.isfinite(v) for v in vals.values()):
            log.warning("prosody delta: speaker %s has no voiced %s/%s speech; skipped",
                        spk, source, target)
            continue
        if "contour" in comps:
            vals["f0_final_slope_st_s"] = b["f0_final_slope_st_s"] - a["f0_final_slope_st_s"]
            vals["f0_onset_st"] = b["f0_onset_st"] - a["f0_onset_st"]
        if "dynamics" in comps:
            vals["energy_range_ratio"] = math.log(b["energy_range_db"] / a["energy_range_db"])
        if "pauses" in comps:
            vals["pause_ratio"] = math.log((b["pause_s"] + PAUSE_FLOOR_S)
                                           / (a["pause_s"] + PAUSE_FLOOR_S))
        for comp, key in VECTOR_FIELDS.items():
            if comp in comps:
                vals[key] = _mean_vector(tgt, _MEASURES[comp][0]) - _mean_vector(src, _MEASURES[comp][0])
        for k, v in vals.items():
            diffs.setdefault(k, []).append(v)
        used.append(spk)
        n_src, n_tgt = n_src + len(src), n_tgt + len(tgt)
    if not used:
        raise ConfigError(f"no speaker has usable clips of both {source!r} and {target!r}")
    fields: dict = {}
    for k, v in diffs.items():
        arr = np.asarray(v, np.float64)
        ok = np.all(np.isfinite(arr.reshape(len(arr), -1)), axis=1)
        if not ok.any():
            continue
        m = arr[ok].mean(axis=0)
        fields[k] = (math.exp(float(m)) if k in RATIO_FIELDS
                     else tuple(float(x) for x in m) if arr.ndim == 2 else float(m))
    kept = []
    for c in comps:
        names = SCALAR_FIELDS.get(c) or (VECTOR_FIELDS[c],)
        if c in LEGACY_COMPONENTS or all(n in fields for n in names):
            kept.append(c)
        else:
            log.warning("prosody delta %s->%s: no speaker could measure %s; left out",
                        source, target, c)
            for n in names:
                fields.pop(n, None)
    return ProsodyDelta(**{**{k: v for k, v in fields.items() if k in _ALL_FIELDS}},
                        source=source, target=target, speakers=tuple(str(s) for s in used),
                        n_source=n_src, n_target=n_tgt, sample_rate=sample_rate,
                        components=tuple(kept))


_ALL_FIELDS = {f.name for f in dataclasses.fields(ProsodyDelta)}


def _clip_key(item, sr: int, wav: np.ndarray | None) -> str:
    """Cache key of one clip's analysis: the bytes of the file (or samples), the rate and
    ANALYSIS_TOKEN."""
    h = hashlib.sha256(ANALYSIS_TOKEN.encode())
    h.update(str(int(sr)).encode())
    if wav is None:
        with open(item, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    else:
        h.update(np.ascontiguousarray(wav, dtype=np.float32).tobytes())
    return h.hexdigest()


def _from_json(v):
    if isinstance(v, list):
        return np.array([np.nan if x is None else x for x in v], np.float64)
    return float("nan") if v is None else v


def analyse_clip(item, sr: int = SAMPLE_RATE, envelope: bool = True,
                 cache_dir: str | os.PathLike | None = None, name: str = "<array>") -> dict:
    """The correlates a ProsodyDelta is learned from, for one clip (an array at `sr` or an
    audio file path): `acoustic_correlates`, plus `envelope_correlates` with `envelope`.
    With `cache_dir`, cached as JSON under cache_dir/prosody, keyed by the clip's bytes and
    ANALYSIS_TOKEN (written atomically, so parallel learners can share a directory)."""
    is_path = isinstance(item, (str, os.PathLike))
    if is_path:
        name = str(item)
        if not Path(item).is_file():
            raise AudioError(f"{item}: file not found")
    wav = None if is_path else np.asarray(item, dtype=np.float32)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / "prosody" / f"{_clip_key(item, sr, wav)}.json"
        if path.is_file():
            try:
                data = read_json(path)
                row = {k: _from_json(v) for k, v in data["correlates"].items()}
                if not envelope or all(k in row for k in ("mcep", "ap_db")):
                    return row
            except (ArtifactError, KeyError, TypeError, ValueError, AttributeError):
                pass  # a stale or damaged entry is recomputed and rewritten
    if wav is None:
        wav = load_audio(item, sr)
    # Everything is measured at 16 kHz (as acoustic_correlates does), so one extraction serves
    # both analyses and the mcep is coded at the rate the delta records.
    wav = validate_audio(wav, name)
    wav16 = wav if sr == SAMPLE_RATE else resample(wav, sr, SAMPLE_RATE)
    pros = extract_prosody(wav16, SAMPLE_RATE, source=name)
    row: dict = acoustic_correlates(wav16, SAMPLE_RATE, source=name, prosody=pros)
    if envelope:
        row.update(envelope_correlates(wav16, SAMPLE_RATE, source=name, prosody=pros))
    if path is not None:
        write_json(path, {"analysis": ANALYSIS_TOKEN, "source": name, "correlates": row})
    return row


def learn_prosody_delta(wavs: Sequence, speakers: Sequence[str], emotions: Sequence[str],
                        source: str, target: str, sr: int = SAMPLE_RATE,
                        progress: bool = False, *,
                        components: Sequence[str] | str | None = None,
                        cache_dir: str | os.PathLike | None = None) -> ProsodyDelta:
    """Learn the source -> target ProsodyDelta from labelled audio.

    `wavs` holds arrays (at `sr`) or audio file paths. Only clips of the two emotions are
    analysed; a file that cannot be used is reported and skipped. `components`: which to
    learn (default all, COMPONENTS); leaving out mcep and aperiodicity skips their (slower)
    CheapTrick/D4C analysis. `cache_dir`: keep each clip's analysis there (`analyse_clip`)."""
    from tqdm import tqdm

    comps = COMPONENTS if components is None else _resolve_components(components, [])
    envelope = any(c in comps for c in ENVELOPE_COMPONENTS)
    keep = [i for i, e in enumerate(emotions) if e in (source, target)]
    rows, spk, emo = [], [], []
    for i in tqdm(keep, desc=f"prosody {source}->{target}", disable=not progress, unit="clip"):
        try:
            rows.append(analyse_clip(wavs[i], sr, envelope=envelope, cache_dir=cache_dir,
                                     name=f"<clip {i}>"))
        except AudioError as e:
            log.warning("skipping %s", e)
            continue
        spk.append(speakers[i])
        emo.append(emotions[i])
    # The measures are taken at 16 kHz whatever `sr` is (the mcep is coded at that rate).
    return delta_from_correlates(rows, spk, emo, source, target, sample_rate=SAMPLE_RATE,
                                 components=comps)


def _shelf_gain_db(sp: np.ndarray, voiced: np.ndarray, sr: int, target_db: float,
                   reference: np.ndarray | None = None) -> np.ndarray:
    """Per-bin gain (dB) of a first-order high shelf around 1 kHz, its depth solved so that the
    voiced envelope's alpha ratio ends `target_db` above that of `reference` (default: `sp`
    itself; a fixed shelf of depth g moves the alpha ratio by less than g, and by how much
    depends on the voice). With the mcep change applied first, `reference` is the envelope
    before it, so the shelf supplies only what the mcep change left of the tilt target."""
    from scipy.optimize import brentq

    freqs = np.linspace(0, sr / 2, sp.shape[1])
    shape = freqs**2 / (freqs**2 + SHELF_CORNER_HZ**2)  # |H|^2 shape of a 1st-order high-pass
    if not voiced.any() or (target_db == 0 and reference is None):
        return np.zeros_like(shape)
    ltas = sp[voiced].mean(axis=0)
    goal = alpha_ratio_db((sp if reference is None else reference)[voiced].mean(axis=0),
                          freqs) + target_db

    def moved(g: float) -> float:
        return alpha_ratio_db(ltas * 10 ** (g * shape / 10), freqs) - goal

    lo, hi = -SHELF_MAX_DB, SHELF_MAX_DB
    if moved(lo) > 0 or moved(hi) < 0:
        g = hi if moved(hi) < 0 else lo
        log.warning("vocal-effort change of %.1f dB is out of reach; using a %.0f dB shelf",
                    target_db, g)
    else:
        g = brentq(moved, lo, hi, xtol=1e-3)
    return g * shape


def _frame_positions(n: int, factor: float | np.ndarray) -> np.ndarray:
    """Where each output frame reads the input (fractional input frame), for an output
    `factor` times faster (duration / factor); `factor` is one number or one per input frame
    (pauses and speech at different rates)."""
    rate = np.broadcast_to(np.asarray(factor, dtype=np.float64), (n,))
    # Output time (in frames) at each input frame boundary; output frame k reads the input at
    # the position where that clock passes k (k * factor for a constant factor).
    clock = np.r_[0.0, np.cumsum(1.0 / rate)]
    n_out = max(1, int(round(clock[-1])))
    return np.minimum(np.interp(np.arange(n_out), clock, np.arange(n + 1.0)), n - 1)


def _time_scale(f0: np.ndarray, sp: np.ndarray, ap: np.ndarray, pos: np.ndarray):
    """WORLD frames resampled at the input positions `pos` (`_frame_positions`)."""
    n = len(f0)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (pos - i0)[:, None]
    sp_out = np.exp((1 - w) * np.log(sp[i0]) + w * np.log(sp[i1]))
    ap_out = (1 - w) * ap[i0] + w * ap[i1]
    near = np.where(w[:, 0] < 0.5, i0, i1)
    both = (f0[i0] > 0) & (f0[i1] > 0)
    safe = np.log(np.where(f0 > 0, f0, 1.0))  # log(0) would poison the unvoiced frames
    log_f0 = (1 - w[:, 0]) * safe[i0] + w[:, 0] * safe[i1]
    # Voicing follows the nearest frame; F0 is interpolated only inside a voiced stretch.
    f0_out = np.where(both, np.exp(log_f0), f0[near])
    return f0_out, np.ascontiguousarray(sp_out), np.ascontiguousarray(ap_out)


def _overlap_add(x: np.ndarray, pos: np.ndarray, hop: float, n_samples: int) -> np.ndarray:
    """`x` moved in time frame by frame: output frame k (centred on sample k * hop) is the
    input around sample pos[k] * hop (within half a window, see below), Hann-windowed over 4
    hops and overlap-added, divided by the summed windows. Where pos[k] = k this is `x` itself
    (to rounding). Meant for noise (unvoiced speech, pauses), whose waveform may jump."""
    half = int(round(2 * hop))
    size = 2 * half
    window = np.hanning(size + 1)[:-1]
    padded = np.pad(np.asarray(x, np.float64), (half, half + size))
    wanted = np.clip(np.round(pos * hop).astype(int), 0, len(x))
    at_out = np.round(np.arange(len(pos)) * hop).astype(int)
    # Each frame goes on reading where the last one left off while that stays within half a
    # window of where it should read, and jumps there when not: continued frames join up
    # exactly, so the noise keeps its level; summing unrelated frames would cost 2.1 dB
    # (Hann windows 4 hops long sum to 2 in amplitude but to sqrt(1.5) in power).
    starts = wanted.copy()
    for k in range(1, len(starts)):
        go_on = starts[k - 1] + at_out[k] - at_out[k - 1]
        if abs(go_on - wanted[k]) <= half:
            starts[k] = go_on
    out = np.zeros(int(np.ceil(len(pos) * hop)) + 2 * size)
    norm = np.zeros_like(out)
    at = at_out[:, None] + np.arange(size)[None, :]
    np.add.at(out, at, window * padded[starts[:, None] + np.arange(size)[None, :]])
    np.add.at(norm, at, np.broadcast_to(window, at.shape))
    y, norm = out[half: half + n_samples], norm[half: half + n_samples]
    y = np.where(norm > 1e-3, y / np.maximum(norm, 1e-3), 0.0)
    return np.r_[y, np.zeros(max(0, n_samples - len(y)))]


def _per_sample(values: np.ndarray, pos: np.ndarray, n_samples: int, hop: float) -> np.ndarray:
    """A per-input-frame quantity at each output sample: read at the frames' positions `pos`
    (`_frame_positions`), then interpolated between output frames `hop` samples apart."""
    at_frames = np.interp(pos, np.arange(len(values)), values)
    return np.interp(np.arange(n_samples) / hop, np.arange(len(pos)), at_frames)


def _keep_unvoiced(y: np.ndarray, x: np.ndarray, pos: np.ndarray, voicing: np.ndarray,
                   gain_db: np.ndarray, hop: float) -> np.ndarray:
    """WORLD's output `y` on voiced speech, the recording `x` elsewhere: moved in time like
    the frames (`pos`, `_overlap_add`) and given the frames' level change `gain_db` (per input
    frame). `voicing` is the smoothed voicing per input frame; doubled and capped at 1, the
    cross-fade lies wholly on the unvoiced side, so no voiced frame hears the input's F0.

    Why: WORLD renders unvoiced stretches (consonants, pauses, the noise floor) as white noise
    shaped by a smoothed envelope, which loses the recording's own noise colour. On RAVDESS
    calm clips a resynthesis of every frame moves the unvoiced spectral slope below 500 Hz by
    2.4 standard deviations of the corpus (`benchmarks/bank_cues.py`), and no component means
    to change the unvoiced spectrum."""
    w = _per_sample(np.minimum(1.0, 2.0 * voicing), pos, len(y), hop)
    kept = _overlap_add(x, pos, hop, len(y)) * 10 ** (_per_sample(gain_db, pos, len(y), hop) / 20)
    return w * y + (1.0 - w) * kept

@dataclass(frozen=True)
class EnvelopeShift:
    """A change of the spectral envelope over time: `log_gain` (F, T), natural-log magnitude
    (a log-mel difference), at band centres `freqs` (F,) Hz and frame centres `times` (T,) s.
    Bands and frames in between are interpolated linearly, beyond the ends held."""

    log_gain: np.ndarray
    freqs: np.ndarray
    times: np.ndarray

    def __post_init__(self) -> None:
        f, t = self.log_gain.shape if self.log_gain.ndim == 2 else (None, None)
        if (f, t) != (len(self.freqs), len(self.times)):
            raise ConfigError(f"EnvelopeShift: log_gain {self.log_gain.shape} does not match "
                              f"{len(self.freqs)} bands x {len(self.times)} frames")

    def power_gain(self, times: np.ndarray, freqs: np.ndarray) -> np.ndarray:
        """The factor on a power envelope (len(times), len(freqs)): exp(2 * log_gain)."""
        over_f = np.stack([np.interp(freqs, self.freqs, g) for g in self.log_gain.T])  # (T, F')
        over_t = np.stack([np.interp(times, self.times, col) for col in over_f.T], axis=1)
        return np.exp(2.0 * over_t)


def mcep_log_gain(mcep: Sequence[float], coded_sr: int, freqs: np.ndarray) -> np.ndarray:
    """Natural-log power gain at `freqs` (Hz) of adding `mcep` (c1..cN, coded at `coded_sr`)
    to a coded envelope. Decoding is linear in the log domain (decode(c + d) / decode(c) =
    decode(d) for c0 = 0, to rounding), so the gain does not depend on the envelope it is
    applied to. Above coded_sr / 2 the gain is held."""
    pw = import_pyworld()
    fft = pw.get_cheaptrick_fft_size(coded_sr, F0_FLOOR_HZ)
    c = np.r_[0.0, np.asarray(mcep, np.float64)][None, :]
    gain = np.log(pw.decode_spectral_envelope(np.ascontiguousarray(c), coded_sr, fft)[0])
    return np.interp(freqs, np.arange(len(gain)) * coded_sr / fft, gain)


def _per_band(ap_db: Sequence[float], n_bands: int) -> np.ndarray:
    """A coded-aperiodicity change for `n_bands` bands (the bands are fixed in Hz, 3 kHz
    apart, so a delta learned at 16 kHz has one, and a higher rate has more): bands beyond the
    delta's hold its last value."""
    d = np.asarray(ap_db, np.float64)
    return np.r_[d, np.full(max(0, n_bands - len(d)), d[-1])][:n_bands]


def _smooth(x: np.ndarray, frames: int) -> np.ndarray:
    from scipy.ndimage import uniform_filter1d

    return uniform_filter1d(x.astype(np.float64), max(1, frames), mode="nearest")


def _contour_offset(st: np.ndarray, t: np.ndarray, measured: np.ndarray, slope: float,
                    onset: float) -> np.ndarray:
    """F0 offset (st) on voiced frames at times `t` that changes the final slope by `slope`
    st/s and the onset by `onset` st as `contour_shape` measures them over the `measured`
    frames (voiced and active), leaving their median where it was."""
    if measured.sum() < 2:
        return np.zeros_like(st)
    t_first, t_last = float(t[measured][0]), float(t[measured][-1])
    # A ramp over the final stretch adds exactly `slope` to the least-squares slope there;
    # held at its end value beyond the last measured frame.
    t0 = t_last - FINAL_CONTOUR_S
    off = slope * np.clip(t - max(t0, t_first), 0.0, t_last - max(t0, t_first))
    # The onset bump follows the measure's own weights w, scaled by sum(w) / sum(w^2) so the
    # weighted mean moves by exactly `onset`.
    w = onset_weights(t - t_first)
    wm = w[measured]
    if onset != 0 and np.sum(wm**2) > 0:
        off = off + onset * w * np.sum(wm) / np.sum(wm**2)
    new = st + off
    return off - (np.median(new[measured]) - np.median(st[measured]))


def apply_prosody(wav: np.ndarray, sr: int, delta: ProsodyDelta | None, scale: float = 1.0,
                  preserve_level: bool = False, envelope: EnvelopeShift | None = None
                  ) -> np.ndarray:
    """Impose `scale` x `delta` on a recording by WORLD analysis-resynthesis; returns (T',) at sr.

    Only `delta.components` are imposed, in this order:
    - f0 / range: median shifted by scale*f0_shift_st semitones, excursions around the median
      multiplied by f0_range_ratio**scale (in semitones).
    - contour: a time-dependent offset on voiced frames: a ramp over the last 0.5 s of voiced
      speech (final slope + scale*f0_final_slope_st_s) and a half-Hann bump over the first
      0.3 s (onset + scale*f0_onset_st), re-centred so the median stays where f0 put it.
    - mcep: scale*mcep added to the coded envelope of voiced frames (as a gain, exact at 0).
    - tilt: a high shelf around 1 kHz on the spectral envelope of voiced frames whose depth
      makes the voiced alpha ratio move by scale*tilt_db in total: with mcep on, the shelf
      supplies only the part the mcep change left (it already moves the tilt: c1 is mostly
      tilt), so the two never double-count; with mcep off it supplies all of it, as before.
    - aperiodicity: scale*ap_db added to voiced frames' coded aperiodicity (dB per WORLD
      band), clipped to D4C's range (-60 dB to just below 0 dB).
    - dynamics: each voiced frame's level moved to L + r*(E - L) (E the frame level, L the
      active level, r = energy_range_ratio**scale) by a gain on the envelope; frames between
      voiced ones take the interpolated gain, the padding before and after none.
    - rate / pauses: WORLD frames resampled in time so speech is rate_ratio**scale faster;
      with "pauses", frames in pauses (`pause_frames`) last pause_ratio**scale longer instead.
    - energy: the active-speech level becomes input + scale*energy_db, or stays the input's with
      `preserve_level` (the steering layer matches loudness to the input itself); the gain
      follows speech activity, so the noise floor between and around the words stays where it
      was. Peaks above PEAK_CEILING are limited (`limit_peak`), so a boost on loud input never
      clips.
    - `envelope`: a further spectral-envelope change (the latent push's mel difference, see
      `steering.steer`), applied before everything else, so one synthesis carries both.
    Without `envelope`, only voiced speech is resynthesised: the rest (unvoiced consonants,
    pauses, the noise floor) is the recording's own samples, moved in time with the frames
    (`_keep_unvoiced`). scale=0 (or delta None) with no envelope gives this plain
    resynthesis, which measures (nearly) like the input, whatever the components."""
    wav = validate_audio(np.asarray(wav, dtype=np.float32), "apply_prosody input")
    if not math.isfinite(scale):
        raise ConfigError(f"scale must be a finite number, got {scale!r}")
    pw = import_pyworld()
    x = wav.astype(np.float64)
    f0, t = pw.dio(x, sr, f0_floor=F0_FLOOR_HZ, f0_ceil=F0_CEIL_HZ,
                   frame_period=SYNTH_FRAME_PERIOD_MS)
    f0 = pw.stonemask(x, f0, t, sr)
    fft_size = pw.get_cheaptrick_fft_size(sr, F0_FLOOR_HZ)
    sp = pw.cheaptrick(x, f0, t, sr, f0_floor=F0_FLOOR_HZ, fft_size=fft_size)
    ap = pw.d4c(x, f0, t, sr, fft_size=fft_size)
    voiced = f0 > 0
    if delta is None:
        delta, scale = NEUTRAL, 0.0
    on = set(delta.components) if scale != 0 else set()  # scale 0: every change is nil
    if envelope is not None:
        bins = np.arange(sp.shape[1]) * sr / fft_size
        sp = sp * envelope.power_gain(t, bins)
    frame_rate = 1000.0 / SYNTH_FRAME_PERIOD_MS
    hop = sr * SYNTH_FRAME_PERIOD_MS / 1000  # samples per frame (WORLD's frames are in seconds)
    energy = frame_energy_db(wav, sr, len(f0), int(round(hop)))
    # Voiced as `correlates` measures it (F0 found and active speech), for the contour's
    # stretches and the pauses; F0 itself is changed on every frame with an F0.
    measured = voiced & active_frames(energy)
    if on & {"f0", "range", "contour"} and voiced.any():
        st = hz_to_st(f0[voiced])
        med = float(np.median(st))
        shift = scale * delta.f0_shift_st if "f0" in on else 0.0
        ratio = delta.f0_range_ratio**scale if "range" in on else 1.0
        new_st = med + shift + (st - med) * ratio
        if "contour" in on:
            new_st = new_st + _contour_offset(new_st, t[voiced], measured[voiced],
                                              scale * delta.f0_final_slope_st_s,
                                              scale * delta.f0_onset_st)
        f0 = f0.copy()
        f0[voiced] = np.clip(st_to_hz(new_st), *F0_SYNTH_RANGE_HZ)
    weight = _smooth(voiced, int(round(VOICING_SMOOTH_MS / SYNTH_FRAME_PERIOD_MS)))[:, None]
    bins = np.linspace(0, sr / 2, sp.shape[1])
    before_mcep = sp
    if "mcep" in on and delta.mcep and voiced.any():
        gain = mcep_log_gain(delta.mcep, delta.sample_rate, bins)
        sp = sp * np.exp(scale * weight * gain[None, :])
    if "tilt" in on:
        target = scale * delta.tilt_db
        sp = sp * 10 ** (weight * _shelf_gain_db(sp, voiced, sr, target,
                                                 before_mcep if sp is not before_mcep else None
                                                 )[None, :] / 10)
    if "aperiodicity" in on and delta.ap_db and voiced.any():
        # D4C's output is the decoding of its coded values, so changing those and decoding
        # loses nothing; frames the change does not reach keep their own aperiodicity.
        coded = pw.code_aperiodicity(ap, sr)
        coded = coded + scale * weight * _per_band(delta.ap_db, coded.shape[1])[None, :]
        coded = np.ascontiguousarray(np.clip(coded, AP_FLOOR_DB, AP_CEIL_DB))
        ap = np.ascontiguousarray(np.where(weight > 0, pw.decode_aperiodicity(coded, sr, fft_size),
                                           ap))
    gain_db = np.zeros(len(f0))  # a level change per frame (dB), the unvoiced ones' too
    if "dynamics" in on and delta.energy_range_ratio != 1.0 and measured.any():
        # Around the active-speech level L, each voiced frame at E goes to L + r*(E - L). The
        # frames between take the gain interpolated from the voiced frames either side (a
        # consonant or pause follows its vowels); before the first and after the last voiced
        # frame the gain is 0 dB, so the padding silence is neither expanded into nothing nor,
        # compressed, pumped up (which made DIO find "voice" in the noise floor of quiet
        # RAVDESS clips).
        level = active_level_db(energy)
        idx = np.flatnonzero(measured)
        gain_db = np.interp(np.arange(len(energy)), idx,
                            (delta.energy_range_ratio**scale - 1.0) * (energy[idx] - level),
                            left=0.0, right=0.0)
        gain_db = _smooth(gain_db, int(round(VOICING_SMOOTH_MS / SYNTH_FRAME_PERIOD_MS)))
        sp = sp * 10 ** (gain_db[:, None] / 10)
    rate = delta.rate_ratio**scale if "rate" in on else 1.0
    factor: float | np.ndarray = rate
    if "pauses" in on:  # pauses last pause_ratio**scale longer, however fast the speech gets
        pauses = pause_frames(measured, energy, frame_rate)
        if pauses.any():
            factor = np.where(pauses, delta.pause_ratio**-scale, rate)
    pos = np.arange(len(f0), dtype=np.float64)
    if np.any(np.abs(np.asarray(factor) - 1.0) > 1e-6):
        pos = _frame_positions(len(f0), factor)
        f0, sp, ap = _time_scale(f0, sp, ap, pos)
    y = pw.synthesize(np.ascontiguousarray(f0), np.ascontiguousarray(sp), ap, sr,
                      frame_period=SYNTH_FRAME_PERIOD_MS)
    if envelope is None:  # an envelope shift changes every frame, so all are resynthesised
        y = _keep_unvoiced(y, x, pos, weight[:, 0], gain_db, hop)
    y = y * 10 ** ((speech_level_db(wav, sr) - speech_level_db(y, sr)) / 20)  # input's level
    if "energy" in on and not preserve_level and delta.energy_db != 0:
        # A louder voice in the same room: speech rises, the room's noise floor (the frames
        # that are not active speech) does not, so the signal-to-noise ratio follows the voice
        # as in a louder take. The gain fades in and out with activity, which takes a little
        # off the speech level, so it is measured again and the boost corrected once.
        speech = _per_sample(_smooth(active_frames(energy), int(round(
            VOICING_SMOOTH_MS / SYNTH_FRAME_PERIOD_MS))), pos, len(y), hop)
        target, boost = speech_level_db(y, sr) + scale * delta.energy_db, scale * delta.energy_db
        boost += target - speech_level_db(y * 10 ** (boost * speech / 20), sr)
        y = y * 10 ** (boost * speech / 20)
    peak = float(np.max(np.abs(y)))
    if peak > PEAK_CEILING:
        log.debug("prosody: peaks limited by up to %.1f dB", 20 * math.log10(peak / PEAK_CEILING))
    return limit_peak(y, sr)
