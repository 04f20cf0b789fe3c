"""Frame-level prosody (F0, voicing, energy) and utterance-level acoustic correlates of emotion.

F0 comes from WORLD's DIO + StoneMask (pyworld): about 25 ms for a 3.5 s clip on one CPU core,
twenty times faster than Harvest or pYIN, accurate enough for utterance statistics, and the same
analysis `world.apply_prosody` resynthesises from, so measurement and modification agree
on what "F0" means. The spectral measures follow eGeMAPS (Eyben et al. 2016): alpha ratio over
50-1000 vs 1000-5000 Hz on voiced frames, F0 in semitones.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from emosteer.audio import SAMPLE_RATE, resample, validate_audio

FRAME_PERIOD_MS = 10.0  # the usual pitch-tracker hop (Praat, openSMILE): 100 frames per second
ENERGY_WINDOW_MS = 25.0  # a standard short-time analysis window: spans >= 2 periods at F0 >= 80 Hz
F0_FLOOR_HZ = 60.0  # below the lowest modal adult male F0 (~70 Hz)
F0_CEIL_HZ = 600.0  # above shouted female speech (~500 Hz); higher ceilings invite octave errors
ST_REFERENCE_HZ = 55.0  # semitone reference (A1), below any adult F0, so semitone values stay > 0
# A frame is "active speech" when it is within ACTIVE_RANGE_DB of the loud frames and at least
# NOISE_MARGIN_DB above the noise floor (the quietest frames: corpora pad clips with silence).
ACTIVE_RANGE_DB = 40.0
NOISE_MARGIN_DB = 10.0
LOUD_PERCENTILE = 99.0
NOISE_PERCENTILE = 5.0
ALPHA_LOW_BAND_HZ = (50.0, 1000.0)  # eGeMAPS alpha ratio bands
ALPHA_HIGH_BAND_HZ = (1000.0, 5000.0)
TILT_BAND_HZ = (50.0, 5000.0)  # the regression range of the spectral slope, same span as eGeMAPS
F0_RANGE_PERCENTILES = (10.0, 90.0)  # robust to the odd octave error at either end
# Syllable nuclei (after de Jong & Wempe 2009): peaks of the energy contour, smoothed over
# 30 ms, standing 4 dB above their dips, >= 100 ms apart (fastest rates are ~10 syllables/s).
# On the 7-syllable RAVDESS sentences (calm and angry, actors 01-08) these settings count 7.6
# nuclei on average (sd 1.5); 2 dB on the unsmoothed contour counts 8-10, splitting long vowels.
SYLLABLE_SMOOTH_S = 0.03
SYLLABLE_PROMINENCE_DB = 4.0
MIN_SYLLABLE_S = 0.1
EPS_POWER = 1e-12  # -120 dBFS: keeps log10 finite on digital silence
# F0 contour shape. The final stretch is the last 0.5 s of voiced speech: the last two
# syllables at 4-5 syllables/s (on RAVDESS, "...the door"), where a question rises and a
# statement falls. The onset is the first 0.3 s: the first one or two syllables, where an
# excited voice starts high. The onset is weighted by a half-Hann window (1 at the first voiced
# frame, 0 at ONSET_S) so that imposing it leaves no step in the contour.
FINAL_CONTOUR_S = 0.5
ONSET_CONTOUR_S = 0.3
MIN_CONTOUR_FRAMES = 5  # a slope or a mean over fewer frames is noise (50 ms at 10 ms frames)
# Energy dynamics over the voiced frames (syllable nuclei and their stress contrasts): over all
# active frames the range is set by the quiet consonants and the active-speech threshold, which
# clips the low tail 40 dB below the loudest frame (an expansion would push frames out of it).
ENERGY_RANGE_PERCENTILES = (10.0, 90.0)  # as for the F0 range: robust to the odd spike
# Pauses: unvoiced runs of >= 100 ms (longer than most stop closures, 40-100 ms) whose frames are
# not active speech or are 25 dB below the active-speech level. 25 dB is between the dips of
# stop closures in loud speech (at 20 dB depth, 28% of RAVDESS angry clips of actors 01-04 had
# a "pause"; at 25 dB, 12%) and the noise floor (the `active_frames` rule, ~30 dB), inside the
# span from the first to the last voiced frame (corpora pad clips with silence).
MIN_PAUSE_S = 0.1
PAUSE_DEPTH_DB = 25.0
# Spectral envelope: WORLD's coded envelope (pyworld.code_spectral_envelope: a mel-cepstrum of
# the power envelope, natural-log units), order 24 as in HTS-style vocoders at 16 kHz. c0 is
# the level (handled by `level_db`) and is left out: c1..c24 are the shape.
MCEP_ORDER = 24
# Aperiodicity: WORLD's coded aperiodicity (pyworld.code_aperiodicity: 20*log10 of the
# aperiodicity at 3, 6, 9... kHz, one value per 3 kHz below the Nyquist frequency less 3 kHz).
# At 16 kHz that is a single value (at 3 kHz), and D4C's output is exactly its decoding
# (interpolated in dB between -60 dB at 0 Hz, the coded values, and 0 dB at Nyquist), so it is
# all the aperiodicity WORLD can express at this rate: more bands would only resample it.
AP_BAND_SPACING_HZ = 3000.0  # WORLD's kFrequencyInterval
AP_FLOOR_DB = -60.0  # D4C's floor (aperiodicity 0.001): nothing periodic is cleaner than this
AP_CEIL_DB = 20 * math.log10(1.0 - 1e-6)  # aperiodicity 1 would leave no periodic part at all
CORRELATE_KEYS = ("median_f0_st", "f0_range_st", "level_db", "alpha_ratio_db", "spectral_tilt",
                  "voiced_ratio", "speaking_rate", "duration_s", "f0_final_slope_st_s",
                  "f0_onset_st", "energy_range_db", "pause_s", "articulation_rate")
ENVELOPE_KEYS = ("mcep", "ap_db")  # the vector correlates of `envelope_correlates`


def import_pyworld():
    """pyworld, without its pkg_resources deprecation warning on every import."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pyworld

    return pyworld


@dataclass(frozen=True)
class Prosody:
    """Frame-level prosody at `frame_rate` frames per second; frame i is centred at i/frame_rate s.

    f0 is in Hz and 0 where unvoiced; energy_db is the RMS level of a 25 ms window in dBFS."""

    f0: np.ndarray
    voiced: np.ndarray
    energy_db: np.ndarray
    frame_rate: float

    @property
    def active(self) -> np.ndarray:
        """Frames that carry speech rather than pauses or padding silence."""
        return active_frames(self.energy_db)


def frame_energy_db(wav: np.ndarray, sr: int, n_frames: int, hop: int) -> np.ndarray:
    """RMS level (dBFS) of the 25 ms windows centred on i*hop, i < n_frames."""
    return 10 * np.log10(np.mean(_frames(wav, sr, n_frames, hop) ** 2, axis=1) + EPS_POWER)


def _frames(wav: np.ndarray, sr: int, n_frames: int, hop: int) -> np.ndarray:
    """(n_frames, win) windows centred on i*hop, zero-padded at the edges."""
    win = int(round(sr * ENERGY_WINDOW_MS / 1000))
    tail = max(0, (n_frames - 1) * hop + win - (len(wav) + win // 2))
    padded = np.pad(wav.astype(np.float64), (win // 2, tail))
    idx = np.arange(win)[None, :] + hop * np.arange(n_frames)[:, None]
    return padded[idx]


def active_frames(energy_db: np.ndarray) -> np.ndarray:
    loud = np.percentile(energy_db, LOUD_PERCENTILE)
    floor = np.percentile(energy_db, NOISE_PERCENTILE)
    if loud - floor < NOISE_MARGIN_DB:
        # No frame is near a noise floor (a clip trimmed to its speech, or a steady signal):
        # the quietest frames are speech too, so only the range rule applies.
        return energy_db >= loud - ACTIVE_RANGE_DB
    return energy_db > max(loud - ACTIVE_RANGE_DB, floor + NOISE_MARGIN_DB)


def extract_prosody(wav: np.ndarray, sr: int, frame_period_ms: float = FRAME_PERIOD_MS,
                    source: str = "<array>") -> Prosody:
    """F0 (DIO + StoneMask), voicing and frame energy of a mono signal (T,).

    A frame is voiced when the tracker finds an F0 and the frame is active speech (DIO
    occasionally "finds" F0 in background hum)."""
    wav = validate_audio(np.asarray(wav, dtype=np.float32), source)
    pw = import_pyworld()
    x = wav.astype(np.float64)
    f0, times = pw.dio(x, sr, f0_floor=F0_FLOOR_HZ, f0_ceil=F0_CEIL_HZ,
                       frame_period=frame_period_ms)
    f0 = pw.stonemask(x, f0, times, sr)
    hop = int(round(sr * frame_period_ms / 1000))
    energy_db = frame_energy_db(wav, sr, len(f0), hop)
    voiced = (f0 > 0) & active_frames(energy_db)
    f0 = np.where(voiced, f0, 0.0)
    return Prosody(f0.astype(np.float32), voiced, energy_db.astype(np.float32),
                   1000.0 / frame_period_ms)


def hz_to_st(f0_hz: np.ndarray | float) -> np.ndarray:
    """Semitones re ST_REFERENCE_HZ (55 Hz)."""
    return 12.0 * np.log2(np.asarray(f0_hz, dtype=np.float64) / ST_REFERENCE_HZ)


def st_to_hz(st: np.ndarray | float) -> np.ndarray:
    return ST_REFERENCE_HZ * 2.0 ** (np.asarray(st, dtype=np.float64) / 12.0)


def _band_sum(power: np.ndarray, freqs: np.ndarray, band: tuple[float, float]) -> float:
    sel = (freqs >= band[0]) & (freqs < band[1])
    return float(np.sum(power[..., sel]))


def alpha_ratio_db(power: np.ndarray, freqs: np.ndarray) -> float:
    """10*log10(energy 1-5 kHz / energy 50-1000 Hz) of a power spectrum (..., F) summed over
    its leading axes. Rises with vocal effort: a stiffer glottal pulse carries more high energy."""
    hi = _band_sum(power, freqs, ALPHA_HIGH_BAND_HZ)
    lo = _band_sum(power, freqs, ALPHA_LOW_BAND_HZ)
    return 10.0 * math.log10((hi + EPS_POWER) / (lo + EPS_POWER))


def spectral_slope_db_per_khz(power: np.ndarray, freqs: np.ndarray) -> float:
    """Least-squares slope (dB/kHz) of the long-term average spectrum over 50-5000 Hz."""
    ltas = power.reshape(-1, power.shape[-1]).mean(axis=0)
    sel = (freqs >= TILT_BAND_HZ[0]) & (freqs < TILT_BAND_HZ[1])
    slope, _ = np.polyfit(freqs[sel] / 1000.0, 10 * np.log10(ltas[sel] + EPS_POWER), 1)
    return float(slope)


def active_level_db(energy_db: np.ndarray) -> float:
    """Power mean (dBFS) of the active-speech frames: the level a listener hears while talking."""
    act = active_frames(energy_db)
    return float(10 * np.log10(np.mean(10 ** (energy_db[act].astype(np.float64) / 10))))


def speech_level_db(wav: np.ndarray, sr: int) -> float:
    """Active-speech RMS level (dBFS) of a signal, ignoring pauses and padding silence."""
    hop = int(round(sr * FRAME_PERIOD_MS / 1000))
    n = len(wav) // hop + 1
    return active_level_db(10 * np.log10(np.mean(_frames(wav, sr, n, hop) ** 2, axis=1)
                                         + EPS_POWER))


def _syllable_nuclei(energy_db: np.ndarray, voiced: np.ndarray, frame_rate: float) -> int:
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import find_peaks

    if not voiced.any():
        return 0
    width = max(1, int(round(SYLLABLE_SMOOTH_S * frame_rate)))
    energy_db = uniform_filter1d(energy_db.astype(np.float64), width, mode="nearest")
    # Unvoiced frames sit below every voiced one, so each voiced island holds >= 1 peak.
    floor = float(energy_db[voiced].min()) - SYLLABLE_PROMINENCE_DB
    contour = np.where(voiced, energy_db, floor)
    peaks, _ = find_peaks(np.pad(contour, 1, constant_values=floor),
                          prominence=SYLLABLE_PROMINENCE_DB,
                          distance=max(1, int(MIN_SYLLABLE_S * frame_rate)))
    return len(peaks)


def onset_weights(u: np.ndarray) -> np.ndarray:
    """Weight of a frame `u` seconds after the first voiced frame in the onset measure: a
    half-Hann from 1 at u=0 to 0 at ONSET_CONTOUR_S (held at 1 before the first voiced frame)."""
    u = np.asarray(u, dtype=np.float64)
    w = 0.5 * (1 + np.cos(np.pi * np.clip(u, 0.0, ONSET_CONTOUR_S) / ONSET_CONTOUR_S))
    return np.where(u > ONSET_CONTOUR_S, 0.0, w)


def contour_shape(st: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """(final slope in st/s, onset in st) of voiced F0 `st` (semitones) at times `t` (s):
    the least-squares slope over the last FINAL_CONTOUR_S of voiced speech, and the
    onset-weighted mean of F0 re the utterance median. NaN where too few frames."""
    nan = float("nan")
    if len(st) < MIN_CONTOUR_FRAMES:
        return nan, nan
    fin = t >= t[-1] - FINAL_CONTOUR_S
    slope = (float(np.polyfit(t[fin], st[fin], 1)[0]) if fin.sum() >= MIN_CONTOUR_FRAMES
             else nan)
    w = onset_weights(t - t[0])
    onset = (float(np.sum(w * (st - np.median(st))) / np.sum(w))
             if (w > 0).sum() >= MIN_CONTOUR_FRAMES else nan)
    return slope, onset


def pause_frames(voiced: np.ndarray, energy_db: np.ndarray, frame_rate: float) -> np.ndarray:
    """Frames inside pauses: runs of >= MIN_PAUSE_S unvoiced frames that are not active speech
    or lie PAUSE_DEPTH_DB below the active-speech level, between the first and last voiced
    frame (leading and trailing silence is padding, not a pause)."""
    out = np.zeros(len(voiced), dtype=bool)
    idx = np.flatnonzero(voiced)
    if len(idx) < 2:
        return out
    quiet = ~voiced & (~active_frames(energy_db)
                       | (energy_db < active_level_db(energy_db) - PAUSE_DEPTH_DB))
    quiet[: idx[0]] = quiet[idx[-1] + 1:] = False
    edges = np.diff(np.r_[0, quiet.astype(np.int8), 0])
    min_len = MIN_PAUSE_S * frame_rate - 1e-9
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        if b - a >= min_len:
            out[a:b] = True
    return out


def acoustic_correlates(wav: np.ndarray, sr: int, source: str = "<array>",
                        prosody: Prosody | None = None) -> dict[str, float]:
    """Utterance-level acoustic correlates of emotion. Input is resampled to 16 kHz first so that
    spectral measures are comparable across files.

    - median_f0_st: median voiced F0 in semitones re 55 Hz.
    - f0_range_st: 10th-90th percentile range of voiced F0, semitones.
    - level_db: active-speech RMS level in dBFS (pauses and padding silence excluded).
    - alpha_ratio_db: energy 1-5 kHz over 50-1000 Hz on voiced frames, dB (eGeMAPS band edges).
    - spectral_tilt: slope of the voiced long-term average spectrum, 50-5000 Hz, dB/kHz.
    - voiced_ratio: voiced frames / active-speech frames.
    - speaking_rate: syllable nuclei (energy peaks in voiced regions) per second of the span
      from the first to the last voiced frame.
    - duration_s: length of the input.
    - f0_final_slope_st_s: F0 slope over the last 0.5 s of voiced speech, semitones/s
      (a final rise > 0, a fall < 0); f0_onset_st: onset-weighted mean F0 over the first 0.3 s
      of voiced speech re the median, semitones (`contour_shape`).
    - energy_range_db: 10th-90th percentile range of the voiced frames' level, dB.
    - pause_s: total duration of the pauses (`pause_frames`), s.
    - articulation_rate: syllable nuclei per second of the voiced span minus its pauses.
    Undefined values (no voiced frame) are NaN. `prosody`: this clip's `extract_prosody` at
    16 kHz, if already computed."""
    wav = validate_audio(np.asarray(wav, dtype=np.float32), source)
    duration_s = len(wav) / sr
    if sr != SAMPLE_RATE:
        wav, sr = resample(wav, sr, SAMPLE_RATE), SAMPLE_RATE
    pros = extract_prosody(wav, sr, source=source) if prosody is None else prosody
    active, voiced = pros.active, pros.voiced
    hop = int(round(sr * FRAME_PERIOD_MS / 1000))
    nan = float("nan")
    out = dict.fromkeys(CORRELATE_KEYS, nan)
    out["duration_s"] = duration_s
    out["level_db"] = active_level_db(pros.energy_db)
    n_active = int(active.sum())
    out["voiced_ratio"] = float(voiced.sum() / n_active) if n_active else 0.0
    if voiced.any():
        lo, hi = np.percentile(pros.energy_db[voiced], ENERGY_RANGE_PERCENTILES)
        out["energy_range_db"] = float(hi - lo)
        # Per second of the span from first to last voiced frame: pause detection on the
        # padding silence of corpora is far less repeatable than voicing.
        idx = np.flatnonzero(voiced)
        span_s = (idx[-1] - idx[0] + 1) / pros.frame_rate
        nuclei = _syllable_nuclei(pros.energy_db, voiced, pros.frame_rate)
        out["speaking_rate"] = float(nuclei / span_s)
        pause_s = float(pause_frames(voiced, pros.energy_db, pros.frame_rate).sum()
                        / pros.frame_rate)
        out["pause_s"] = pause_s
        out["articulation_rate"] = float(nuclei / (span_s - pause_s))
        st = hz_to_st(pros.f0[voiced])
        lo, hi = np.percentile(st, F0_RANGE_PERCENTILES)
        out["median_f0_st"] = float(np.median(st))
        out["f0_range_st"] = float(hi - lo)
        out["f0_final_slope_st_s"], out["f0_onset_st"] = contour_shape(st, idx / pros.frame_rate)
        frames = _frames(wav, sr, len(pros.f0), hop)[voiced]
        frames = frames * np.hanning(frames.shape[1])[None, :]
        n_fft = 1 << (frames.shape[1] - 1).bit_length()
        power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
        freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
        out["alpha_ratio_db"] = alpha_ratio_db(power, freqs)
        out["spectral_tilt"] = spectral_slope_db_per_khz(power, freqs)
    return out


def envelope_correlates(wav: np.ndarray, sr: int, source: str = "<array>",
                        prosody: Prosody | None = None) -> dict[str, np.ndarray]:
    """Voice-quality correlates over the voiced frames (WORLD CheapTrick and D4C at 16 kHz):

    - mcep: mean coded spectral envelope c1..c{MCEP_ORDER} (pyworld.code_spectral_envelope),
      the envelope's shape without its level;
    - ap_db: mean coded aperiodicity (pyworld.code_aperiodicity, dB, one value per 3 kHz band:
      one at 16 kHz), breathiness and roughness.
    Both NaN without a voiced frame. `prosody`: this clip's `extract_prosody` at 16 kHz."""
    wav = validate_audio(np.asarray(wav, dtype=np.float32), source)
    if sr != SAMPLE_RATE:
        wav, sr = resample(wav, sr, SAMPLE_RATE), SAMPLE_RATE
    pros = extract_prosody(wav, sr, source=source) if prosody is None else prosody
    voiced = pros.voiced
    if not voiced.any():
        return {"mcep": np.full(MCEP_ORDER, np.nan),
                "ap_db": np.full(pw_bands(sr), np.nan)}
    pw = import_pyworld()
    x = wav.astype(np.float64)
    # CheapTrick and D4C work frame by frame from that frame's F0, so the gated F0 (0 on
    # inactive frames) gives the voiced frames exactly what an ungated analysis would.
    f0 = pros.f0.astype(np.float64)
    t = np.arange(len(f0)) / pros.frame_rate
    fft_size = pw.get_cheaptrick_fft_size(sr, F0_FLOOR_HZ)
    sp = pw.cheaptrick(x, f0, t, sr, f0_floor=F0_FLOOR_HZ, fft_size=fft_size)
    ap = pw.d4c(x, f0, t, sr, fft_size=fft_size)
    mcep = pw.code_spectral_envelope(sp[voiced], sr, MCEP_ORDER + 1)[:, 1:]
    return {"mcep": mcep.mean(axis=0),
            "ap_db": pw.code_aperiodicity(ap[voiced], sr).mean(axis=0)}


def pw_bands(sr: int) -> int:
    """How many coded aperiodicity bands WORLD has at `sr`."""
    return int(import_pyworld().get_num_aperiodicities(sr))


def mean_correlates(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per-key mean over utterances, ignoring NaN (an utterance without voiced frames).
    Only scalar keys: vector correlates (`envelope_correlates`) are averaged by their users."""
    keys = [k for k in rows[0] if all(k in r for r in rows) and np.ndim(rows[0][k]) == 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column -> NaN, on purpose
        return {k: float(np.nanmean([r[k] for r in rows])) for k in keys}


def compare_correlates(steered, source_real, target_real) -> dict[str, float]:
    """Fraction of the real source->target gap that steering closed, per correlate.

    Each argument is one correlate dict or a sequence of them (averaged). 0 means the steered
    audio still measures like the source, 1 like the target; NaN where the real gap is ~0."""
    def _avg(x):
        return dict(x) if isinstance(x, Mapping) else mean_correlates(list(x))

    s, a, b = _avg(steered), _avg(source_real), _avg(target_real)
    out = {}
    for k in s:
        if k not in a or k not in b:
            continue
        gap = b[k] - a[k]
        out[k] = float((s[k] - a[k]) / gap) if abs(gap) > 1e-9 else float("nan")
    return out
