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
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emosteer import __version__
from emosteer.artifacts import load_config, save_config
from emosteer.audio import PEAK_CEILING, SAMPLE_RATE, limit_peak, load_audio, validate_audio
from emosteer.errors import ArtifactError, AudioError, ConfigError
from emosteer.prosody.correlates import (
    F0_CEIL_HZ,
    F0_FLOOR_HZ,
    FRAME_PERIOD_MS,
    ST_REFERENCE_HZ,
    acoustic_correlates,
    alpha_ratio_db,
    hz_to_st,
    import_pyworld,
    mean_correlates,
    speech_level_db,
    st_to_hz,
)

log = logging.getLogger(__name__)

SYNTH_FRAME_PERIOD_MS = 5.0  # WORLD's default: finer than measurement so resynthesis is clean
SHELF_CORNER_HZ = 1000.0  # the alpha-ratio band edge: the shelf moves energy across it
SHELF_MAX_DB = 60.0  # search bound for the shelf gain; far beyond any real vocal-effort change
# An octave beyond the analysis range either way: further out is no longer speech.
F0_SYNTH_RANGE_HZ = (F0_FLOOR_HZ / 2, F0_CEIL_HZ * 2)


@dataclass(frozen=True)
class ProsodyDelta:
    """Speaker-normalised prosody difference source -> target (apply with scale 1 to go there).

    f0_shift_st: change of median F0, semitones. f0_range_ratio: factor on the F0 range.
    tilt_db: change of the alpha ratio (1-5 kHz over 50-1000 Hz), dB: vocal effort.
    energy_db: change of active-speech level, dB. rate_ratio: factor on speaking rate."""

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

    def __post_init__(self) -> None:
        for name in ("f0_shift_st", "f0_range_ratio", "tilt_db", "energy_db", "rate_ratio"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"ProsodyDelta.{name}: expected a finite number, got {v!r}")
        for name in ("f0_range_ratio", "rate_ratio"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"ProsodyDelta.{name}: must be positive")

    def save(self, path: str | os.PathLike) -> None:
        save_config(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ProsodyDelta:
        try:
            return load_config(cls, path)
        except ConfigError as e:
            raise ArtifactError(f"{path}: {e}") from e


NEUTRAL = ProsodyDelta(f0_shift_st=0.0, f0_range_ratio=1.0, tilt_db=0.0, energy_db=0.0,
                       rate_ratio=1.0, source="neutral", target="neutral")


def delta_from_correlates(rows: Sequence[dict], speakers: Sequence[str],
                          emotions: Sequence[str], source: str, target: str,
                          sample_rate: int = SAMPLE_RATE) -> ProsodyDelta:
    """Per speaker: mean(target) - mean(source) (ratios for F0 range and rate), then averaged
    over the speakers that have both emotions (ratios geometrically), so speaker identity
    (a low voice, a loud microphone) cancels out."""
    if not (len(rows) == len(speakers) == len(emotions)):
        raise ConfigError("rows, speakers and emotions must have the same length")
    diffs: dict[str, list[float]] = {k: [] for k in
                                     ("f0", "range", "tilt", "energy", "rate")}
    used, n_src, n_tgt = [], 0, 0
    for spk in sorted(set(speakers)):
        src = [r for r, s, e in zip(rows, speakers, emotions, strict=True) if s == spk and e == source]
        tgt = [r for r, s, e in zip(rows, speakers, emotions, strict=True) if s == spk and e == target]
        if not src or not tgt:
            log.info("prosody delta: speaker %s lacks %s or %s clips; skipped", spk, source, target)
            continue
        a, b = mean_correlates(src), mean_correlates(tgt)
        vals = {"f0": b["median_f0_st"] - a["median_f0_st"],
                "range": math.log(b["f0_range_st"] / a["f0_range_st"]),
                "tilt": b["alpha_ratio_db"] - a["alpha_ratio_db"],
                "energy": b["level_db"] - a["level_db"],
                "rate": math.log(b["speaking_rate"] / a["speaking_rate"])}
        if not all(math.isfinite(v) for v in vals.values()):
            log.warning("prosody delta: speaker %s has no voiced %s/%s speech; skipped",
                        spk, source, target)
            continue
        for k, v in vals.items():
            diffs[k].append(v)
        used.append(spk)
        n_src, n_tgt = n_src + len(src), n_tgt + len(tgt)
    if not used:
        raise ConfigError(f"no speaker has usable clips of both {source!r} and {target!r}")
    m = {k: float(np.mean(v)) for k, v in diffs.items()}
    return ProsodyDelta(f0_shift_st=m["f0"], f0_range_ratio=math.exp(m["range"]),
                        tilt_db=m["tilt"], energy_db=m["energy"], rate_ratio=math.exp(m["rate"]),
                        source=source, target=target, speakers=tuple(str(s) for s in used), n_source=n_src,
                        n_target=n_tgt, sample_rate=sample_rate)


def learn_prosody_delta(wavs: Sequence, speakers: Sequence[str], emotions: Sequence[str],
                        source: str, target: str, sr: int = SAMPLE_RATE,
                        progress: bool = False) -> ProsodyDelta:
    """Learn the source -> target ProsodyDelta from labelled audio.

    `wavs` holds arrays (at `sr`) or audio file paths. Only clips of the two emotions are
    analysed; a file that cannot be used is reported and skipped."""
    from tqdm import tqdm

    keep = [i for i, e in enumerate(emotions) if e in (source, target)]
    rows, spk, emo = [], [], []
    for i in tqdm(keep, desc=f"prosody {source}->{target}", disable=not progress, unit="clip"):
        item = wavs[i]
        try:
            if isinstance(item, (str, os.PathLike)):
                wav, name = load_audio(item, sr), str(item)
            else:
                wav, name = np.asarray(item, dtype=np.float32), f"<clip {i}>"
            rows.append(acoustic_correlates(wav, sr, source=name))
        except AudioError as e:
            log.warning("skipping %s", e)
            continue
        spk.append(speakers[i])
        emo.append(emotions[i])
    return delta_from_correlates(rows, spk, emo, source, target, sample_rate=sr)


def _shelf_gain_db(sp: np.ndarray, voiced: np.ndarray, sr: int, target_db: float) -> np.ndarray:
    """Per-bin gain (dB) of a first-order high shelf around 1 kHz, its depth solved so that the
    voiced envelope's alpha ratio moves by exactly `target_db` (a fixed shelf of depth g moves
    the alpha ratio by less than g, and by how much depends on the voice)."""
    from scipy.optimize import brentq

    freqs = np.linspace(0, sr / 2, sp.shape[1])
    shape = freqs**2 / (freqs**2 + SHELF_CORNER_HZ**2)  # |H|^2 shape of a 1st-order high-pass
    if target_db == 0 or not voiced.any():
        return np.zeros_like(shape)
    ltas = sp[voiced].mean(axis=0)
    base = alpha_ratio_db(ltas, freqs)

    def moved(g: float) -> float:
        return alpha_ratio_db(ltas * 10 ** (g * shape / 10), freqs) - base - target_db

    lo, hi = -SHELF_MAX_DB, SHELF_MAX_DB
    if moved(lo) > 0 or moved(hi) < 0:
        g = hi if target_db > 0 else lo
        log.warning("vocal-effort change of %.1f dB is out of reach; using a %.0f dB shelf",
                    target_db, g)
    else:
        g = brentq(moved, lo, hi, xtol=1e-3)
    return g * shape


def _time_scale(f0: np.ndarray, sp: np.ndarray, ap: np.ndarray, factor: float):
    """Resample WORLD frames so the output is `factor` times faster (duration / factor)."""
    n = len(f0)
    n_out = max(1, int(round(n / factor)))
    pos = np.minimum(np.arange(n_out) * factor, n - 1)
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


def apply_prosody(wav: np.ndarray, sr: int, delta: ProsodyDelta | None, scale: float = 1.0,
                  preserve_level: bool = False, envelope: EnvelopeShift | None = None
                  ) -> np.ndarray:
    """Impose `scale` x `delta` on a recording by WORLD analysis-resynthesis; returns (T',) at sr.

    - F0: median shifted by scale*f0_shift_st semitones, excursions around the median
      multiplied by f0_range_ratio**scale (in semitones).
    - Vocal effort: a high shelf around 1 kHz on the spectral envelope whose depth makes the
      voiced alpha ratio move by scale*tilt_db.
    - Timing: WORLD frames resampled in time so the speaking rate is multiplied by
      rate_ratio**scale (the duration divided by it).
    - Level: the active-speech level becomes input + scale*energy_db, or stays the input's with
      `preserve_level` (the steering layer matches loudness to the input itself). Peaks above
      PEAK_CEILING are limited (`limit_peak`), so a boost on loud input never clips.
    - `envelope`: a further spectral-envelope change (the latent push's mel difference, see
      `steering.steer`), applied before the timing change, so one synthesis carries both.
    scale=0 (or delta None) with no envelope gives the plain WORLD resynthesis, which measures
    (nearly) like the input."""
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
    if envelope is not None:
        bins = np.arange(sp.shape[1]) * sr / fft_size
        sp = sp * envelope.power_gain(t, bins)
    if voiced.any():
        st = hz_to_st(f0[voiced])
        med = float(np.median(st))
        new_st = med + scale * delta.f0_shift_st + (st - med) * delta.f0_range_ratio**scale
        f0 = f0.copy()
        f0[voiced] = np.clip(st_to_hz(new_st), *F0_SYNTH_RANGE_HZ)
    sp = sp * 10 ** (_shelf_gain_db(sp, voiced, sr, scale * delta.tilt_db)[None, :] / 10)
    rate = delta.rate_ratio**scale
    if abs(rate - 1.0) > 1e-6:
        f0, sp, ap = _time_scale(f0, sp, ap, rate)
    y = pw.synthesize(np.ascontiguousarray(f0), sp, ap, sr, frame_period=SYNTH_FRAME_PERIOD_MS)
    target = speech_level_db(wav, sr) + (0.0 if preserve_level else scale * delta.energy_db)
    y = y * 10 ** ((target - speech_level_db(y, sr)) / 20)
    peak = float(np.max(np.abs(y)))
    if peak > PEAK_CEILING:
        log.debug("prosody: peaks limited by up to %.1f dB", 20 * math.log10(peak / PEAK_CEILING))
    return limit_peak(y, sr)
