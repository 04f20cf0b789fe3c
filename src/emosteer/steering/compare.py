"""Streamed vs offline steering: how far the output of `stream` is from offline
`Steerer.steer` of the same input (benchmarks/stream.py and the stream tests report it)."""

from __future__ import annotations

import math

import numpy as np

from emosteer.audio import rms_db
from emosteer.errors import AudioError, ConfigError
from emosteer.prosody.correlates import extract_prosody, hz_to_st
from emosteer.synthesis.data import mel_cepstral_distortion
from emosteer.synthesis.mel import HIFIGAN_22K, SSL_16K, log_mel_spectrogram

ACTIVE_RANGE_DB = 40.0  # compare_outputs: frames this far below the loudest one are pauses


def compare_outputs(streamed: np.ndarray, offline: np.ndarray, sr: int) -> dict[str, float]:
    """How far a streamed output is from the offline one of the same input: mel-cepstral
    distortion (dB, `emosteer.synthesis.data.mel_cepstral_distortion` on log-mels at the vocoder's
    22 kHz framing, or the 16 kHz SSL framing), waveform SNR (dB, offline as the reference;
    low for Griffin-Lim output whose phase differs per window even when it sounds alike) and
    the level difference (dB). MCD and SNR are taken after matching the RMS levels, and MCD
    only over the offline output's active frames (within ACTIVE_RANGE_DB of its loudest):
    the log-mel floor would otherwise turn a gain difference or a pause into distortion."""
    cfg = {HIFIGAN_22K.sample_rate: HIFIGAN_22K, SSL_16K.sample_rate: SSL_16K}.get(sr)
    if cfg is None:
        raise ConfigError(f"compare_outputs: no mel framing for {sr} Hz (have 22050, 16000)")
    n = min(len(streamed), len(offline))
    a, b = np.asarray(streamed[:n], np.float32), np.asarray(offline[:n], np.float32)
    level = rms_db(a) - rms_db(b)
    a = a * np.float32(10 ** (-level / 20))
    ma, mb = log_mel_spectrogram(a, cfg), log_mel_spectrogram(b, cfg)
    power_db = 10 * np.log10(np.mean(np.exp(2 * mb), axis=0) + 1e-20)
    active = power_db > power_db.max() - ACTIVE_RANGE_DB
    mcd = mel_cepstral_distortion(ma[:, active], mb[:, active])
    err = float(np.sum(np.square(a - b, dtype=np.float64)))
    ref = float(np.sum(np.square(b, dtype=np.float64)))
    return {"mcd_db": mcd, "snr_db": 10 * math.log10((ref + 1e-20) / (err + 1e-20)),
            "level_db": level, "f0_diff_st": _f0_difference(a, b, sr)}


def _f0_difference(a: np.ndarray, b: np.ndarray, sr: int) -> float:
    """Median |F0 difference| in semitones over frames voiced in both (NaN if none): MCD on
    resolved harmonics is very pitch-sensitive, so this says how much of it is pitch."""
    try:
        pa, pb = extract_prosody(a, sr), extract_prosody(b, sr)
    except AudioError:
        return float("nan")
    n = min(len(pa.f0), len(pb.f0))
    both = pa.voiced[:n] & pb.voiced[:n]
    if not both.any():
        return float("nan")
    return float(np.median(np.abs(hz_to_st(pa.f0[:n][both]) - hz_to_st(pb.f0[:n][both]))))
