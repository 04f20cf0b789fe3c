"""Mapper data: per-utterance (SSL frames, prosody tracks, target log-mel) examples, their
safetensors cache, batching into padded (B, C, T) tensors with random training crops, and the
mel-cepstral distortion used to score a mapper on examples.

Kept apart from `mapper` (the network and its loss) because this is the encoding and caching
that feed it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emosteer.artifacts import load_tensors, save_tensors
from emosteer.audio import SAMPLE_RATE, SSL_FRAME_RATE, load_audio
from emosteer.errors import ConfigError, EmosteerError
from emosteer.prosody.correlates import extract_prosody
from emosteer.synthesis.mel import MelConfig, log_mel_spectrogram

N_PROSODY = 3  # log-F0, voicing, energy
# MCD: Kubichek (1993) scaling of the cepstral Euclidean distance to dB, on the first 13
# mel-cepstra (c1..c13, the usual MFCC count) with c0 (overall level) excluded.
MCD_N_CEPS = 13
MCD_DB = 10.0 * math.sqrt(2.0) / math.log(10.0)


def out_frames(t_in: int, in_rate: float, out_rate: float) -> int:
    """round(T_in * out_rate / in_rate), halves rounded up (not Python's banker's rounding)."""
    return int(math.floor(t_in * out_rate / in_rate + 0.5))



F0_REF_HZ = 100.0  # log-F0 track is log2(f0 / 100 Hz): speech F0 (60-500 Hz) lands in -0.7..2.3
ENERGY_REF_DB = -40.0  # energy track is (dBFS + 40) / 20: speech (-60..-10 dBFS) lands in -1..1.5
ENERGY_SCALE_DB = 20.0
SEGMENT_SECONDS = 2.56  # training crop: 128 SSL frames, long enough for the dilated context
CACHE_FORMAT = 3  # bump when the cached content changes meaning


@dataclass(frozen=True)
class MapperExample:
    """One utterance: SSL frames (T, D), prosody tracks (3, T), target log-mel (n_mels, T_out)."""

    utt_id: str
    speaker: str
    frames: np.ndarray
    prosody: np.ndarray
    mel: np.ndarray


def prosody_tracks(wav: np.ndarray, sr: int, n_frames: int, in_rate: float = SSL_FRAME_RATE
                   ) -> np.ndarray:
    """(3, n_frames) float32: log2(F0/100 Hz) (0 when unvoiced), voicing 0/1, scaled energy,
    from `emosteer.prosody.correlates.extract_prosody` (WORLD DIO), linearly interpolated onto the SSL
    frame centres (i + 0.5) / in_rate, the same time grid `Mapper` assumes."""
    p = extract_prosody(wav, sr)
    f0, voiced, energy_db = p.f0, p.voiced, p.energy_db
    src_t = np.arange(len(f0)) / p.frame_rate
    dst_t = (np.arange(n_frames) + 0.5) / in_rate
    voiced = np.asarray(voiced, dtype=bool) & (np.asarray(f0) > 0)
    lf0 = np.where(voiced, np.log2(np.maximum(f0, 1e-3) / F0_REF_HZ), 0.0)
    tracks = [np.interp(dst_t, src_t, lf0), np.interp(dst_t, src_t, voiced.astype(np.float64)),
              np.interp(dst_t, src_t, (np.asarray(energy_db) - ENERGY_REF_DB) / ENERGY_SCALE_DB)]
    return np.stack(tracks).astype(np.float32)


def _cache_key(path: Path, encoder, layer: int, mel: MelConfig) -> str:
    import hashlib
    import json

    st = path.stat()
    ident = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
             "encoder": dataclasses.asdict(encoder.config), "layer": layer,
             "mel": dataclasses.asdict(mel), "format": CACHE_FORMAT}
    return hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def prepare_examples(utterances, encoder, layer: int, mel: MelConfig, cache_dir: str | Path,
                     progress: bool = True) -> list[MapperExample]:
    """Encode each utterance (objects with utt_id, path, speaker) once: frames of `layer`,
    prosody tracks and the target log-mel from the audio decoded at `mel.sample_rate`, cropped
    or floor-padded to round(T_in * mel rate / 50). Cached as safetensors in `cache_dir`; a bad
    file is reported and skipped."""
    import logging

    from tqdm import tqdm

    log = logging.getLogger(__name__)
    layers = tuple(encoder.config.layers)
    if layer not in layers:
        raise ConfigError(f"encoder was loaded with layers {layers}, not layer {layer}")
    in_rate = float(encoder.config.frame_rate)
    cache_dir = Path(cache_dir)
    out: list[MapperExample] = []
    for u in tqdm(utterances, desc="encoding", disable=not progress):
        path = Path(u.path)
        try:
            key = _cache_key(path, encoder, layer, mel)
            cached = cache_dir / f"{key}.safetensors"
            if cached.is_file():
                t = load_tensors(cached)
            else:
                wav = load_audio(path, SAMPLE_RATE)
                frames = encoder.encode(wav)[layers.index(layer)]
                t_out = out_frames(frames.shape[0], in_rate, mel.frame_rate)
                # Decode again at the mel rate rather than upsample the 16 kHz copy: a 44.1 or
                # 48 kHz source keeps its content above 8 kHz for mel configs that use it.
                wav_mel = wav if mel.sample_rate == SAMPLE_RATE else load_audio(
                    path, mel.sample_rate)
                target = log_mel_spectrogram(wav_mel, mel)
                target = target[:, :t_out]
                if target.shape[1] < t_out:
                    pad = ((0, 0), (0, t_out - target.shape[1]))
                    target = np.pad(target, pad, constant_values=mel.log_floor)
                t = {"frames": np.asarray(frames, dtype=np.float32), "mel": target,
                     "prosody": prosody_tracks(wav, SAMPLE_RATE, frames.shape[0], in_rate)}
                save_tensors(cached, t, metadata={"utt_id": u.utt_id, "path": str(path)})
        except (EmosteerError, OSError) as e:
            log.warning("skipping %s: %s", path, e)
            continue
        out.append(MapperExample(u.utt_id, u.speaker, t["frames"], t["prosody"], t["mel"]))
    return out


def collate_examples(items, gen: torch.Generator | None, in_rate: float, out_rate: float,
             floor: float) -> dict[str, torch.Tensor]:
    """Random SEGMENT_SECONDS crops when training (`gen`), whole utterances otherwise; pad to
    the longest with zeros (inputs) / the log floor (targets) and mark valid output frames."""
    seg = int(round(SEGMENT_SECONDS * in_rate))
    crops = []
    for e in items:
        n = e.frames.shape[0]
        start = 0
        if gen is not None and n > seg:
            start = int(torch.randint(0, n - seg + 1, (1,), generator=gen))
        length = min(n, seg) if gen is not None else n
        o0 = out_frames(start, in_rate, out_rate)
        crops.append((e, start, length, e.mel[:, o0:o0 + out_frames(length, in_rate, out_rate)]))
    t_in = max(c[2] for c in crops)
    t_out = out_frames(t_in, in_rate, out_rate)
    b, d, m = len(items), items[0].frames.shape[1], items[0].mel.shape[0]
    x, pros = torch.zeros(b, d, t_in), torch.zeros(b, N_PROSODY, t_in)
    mel, mask = torch.full((b, m, t_out), floor), torch.zeros(b, t_out, dtype=torch.bool)
    for i, (e, s, n, tm) in enumerate(crops):
        x[i, :, :n] = torch.from_numpy(e.frames[s:s + n].T)
        pros[i, :, :n] = torch.from_numpy(e.prosody[:, s:s + n])
        mel[i, :, :tm.shape[1]] = torch.from_numpy(tm)
        mask[i, :tm.shape[1]] = True
    return {"x": x, "prosody": pros, "mel": mel, "mask": mask,
            "lengths": torch.tensor([c[2] for c in crops])}


def mel_cepstral_distortion(mel_a: np.ndarray, mel_b: np.ndarray, n_ceps: int = MCD_N_CEPS,
                            log: str = "ln") -> float:
    """Mean mel-cepstral distortion in dB between two log-mel spectrograms (n_mels, T) in the
    same base (`log` "ln" or "log10", MelConfig.log; log10 mels are converted to ln first, so
    the dB scale is the same for every mel definition).

    Mel-cepstra are the orthonormal DCT-II of the log-mel frames (MFCC-style), c1..c_n_ceps,
    scaled as in Kubichek (1993): 10 / ln 10 * sqrt(2 * sum (c_a - c_b)^2), averaged over frames
    (cropped to the shorter). This is not SPTK/WORLD mcep-based MCD (no all-pass warping): use it
    to compare runs of this project, not against numbers in papers."""
    from scipy.fft import dct

    a, b = np.asarray(mel_a, dtype=np.float64), np.asarray(mel_b, dtype=np.float64)
    if log == "log10":
        a, b = a * math.log(10.0), b * math.log(10.0)
    elif log != "ln":
        raise ConfigError(f"MCD: log {log!r}: expected 'ln' or 'log10'")
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ConfigError(f"MCD needs two (n_mels, T) arrays with equal n_mels, got {a.shape}, {b.shape}")
    t = min(a.shape[1], b.shape[1])
    if t == 0:
        raise ConfigError("MCD: an input has no frames")
    ca = dct(a[:, :t], type=2, norm="ortho", axis=0)[1:n_ceps + 1]
    cb = dct(b[:, :t], type=2, norm="ortho", axis=0)[1:n_ceps + 1]
    return float(np.mean(MCD_DB * np.sqrt(np.sum((ca - cb) ** 2, axis=0))))


def evaluate_mcd(model: torch.nn.Module, examples) -> float:
    """Mean over utterances of `mel_cepstral_distortion` between prediction and target mel."""
    model.eval()
    scores = []
    with torch.no_grad():
        for e in examples:
            x = torch.from_numpy(e.frames.T[None].copy())
            p = torch.from_numpy(e.prosody[None].copy()) if model.config.use_prosody else None
            scores.append(mel_cepstral_distortion(model(x, p)[0].numpy(), e.mel,
                                                  log=model.config.mel_config.log))
    return float(np.mean(scores)) if scores else float("nan")


def mean_mel_mcd(train_examples, examples, log: str = "ln") -> float:
    """The baseline for `evaluate_mcd`: MCD of predicting the training set's average log-mel
    per band for every frame (what a mapper that ignores its input would score)."""
    if not train_examples or not examples:
        return float("nan")
    mean = np.mean(np.concatenate([e.mel for e in train_examples], axis=1), axis=1, keepdims=True)
    return float(np.mean([mel_cepstral_distortion(np.repeat(mean, e.mel.shape[1], axis=1), e.mel,
                                                  log=log) for e in examples]))
