"""Log-mel front end shared by the mapper (its target) and the vocoders (their input).

A `MelConfig` names one definition. With its defaults it is exactly jik876 HiFi-GAN's
`meldataset.mel_spectrogram`, so that mels computed here can be fed to the public jik876
checkpoints:

1. framing (`center=False`): reflect-pad the waveform by (n_fft - hop) / 2 samples on both
   sides, then `torch.stft(center=False)`; one frame per hop, `num_samples // hop` frames
   whenever n_fft - hop is even (see `n_frames`);
2. a periodic hann window of `win_length`, zero-padded to n_fft (centred, as torch.stft does);
3. magnitude sqrt(re^2 + im^2 + stft_eps), stft_eps = 1e-9 (not power);
4. a librosa mel filterbank, `mel_scale="slaney"` and `mel_norm="slaney"` (area normalisation);
5. `log="ln"`: natural log of max(mel, clamp), clamp = 1e-5.

The other definitions change only these fields:

- `center=True`: `torch.stft(center=True, pad_mode="reflect")`, i.e. n_fft // 2 reflected
  samples on each side and 1 + num_samples // hop frames (torchaudio's and librosa's framing);
- `stft_eps=0`: the plain magnitude |X| (torchaudio power=1, transformers power=1.0);
- `mel_scale="htk"` (2595 log10(1 + f / 700)) and/or `mel_norm=None` (unit-peak triangles):
  torchaudio's `melscale_fbanks` defaults, which librosa computes as htk=True, norm=None;
- `log="log10"`: base-10 log of max(mel, clamp).

The hub vocoders' definitions (`SPEECHT5_16K`, `VOCOS_24K`) are:

- SpeechT5 HiFi-GAN (transformers `SpeechT5FeatureExtractor._extract_mel_features`): 16 kHz,
  64 ms hann window = n_fft = 1024, 16 ms hop = 256, 80 slaney/slaney mels over 80-7600 Hz,
  center=True, |X|, log10(max(mel, mel_floor = 1e-10));
- Vocos mel-24khz (`MelSpectrogramFeatures`: torchaudio MelSpectrogram(power=1, center=True)
  then `safe_log`): 24 kHz, n_fft = win = 1024, hop 256, 100 htk mels without norm over
  0-12000 Hz, |X|, ln(max(mel, 1e-7)).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from emosteer.errors import AudioError, ConfigError

LOG_CLAMP = 1e-5  # jik876 spectral_normalize_torch: log(clamp(x, min=1e-5)) -> floor of -11.51
STFT_EPS = 1e-9  # jik876 adds this under the square root of the magnitude to keep gradients finite
MEL_INVERSE_ITERS = 32  # multiplicative NNLS refinements of the pseudo-inverse; the error stops
# falling noticeably after a few dozen

# HiFi-GAN V1/V2/V3 public checkpoints (LJSpeech / VCTK "universal"), config_v*.json:
HIFIGAN_SAMPLE_RATE = 22_050
HIFIGAN_N_FFT = 1024
HIFIGAN_HOP = 256  # 22050 / 256 = 86.13 frames per second
HIFIGAN_N_MELS = 80
HIFIGAN_FMAX = 8000.0

# SSL-aligned variant: wav2vec2/HuBERT/WavLM run at 16 kHz with a 320-sample stride (50 Hz), so
# a hop of 320 gives one mel frame per SSL frame. The window is 640 samples (40 ms, two hops,
# the usual 50 % overlap); n_fft 1024 zero-pads it so the lowest slaney filters (about 37 Hz
# apart below 1 kHz for 80 mels up to 8 kHz) each span several 15.6 Hz FFT bins instead of
# one or two 25 Hz bins with n_fft 640. fmax 8000 is the 16 kHz Nyquist frequency.
SSL_SAMPLE_RATE = 16_000
SSL_HOP = 320
SSL_WIN = 640

LOGS = ("ln", "log10")
MEL_SCALES = ("slaney", "htk")
MEL_NORMS = ("slaney", None)


@dataclass(frozen=True)
class MelConfig:
    """A log-mel definition. Saved next to every artifact that consumes or produces mels."""

    sample_rate: int = HIFIGAN_SAMPLE_RATE
    n_fft: int = HIFIGAN_N_FFT
    win_length: int = HIFIGAN_N_FFT
    hop_length: int = HIFIGAN_HOP
    n_mels: int = HIFIGAN_N_MELS
    fmin: float = 0.0
    fmax: float | None = HIFIGAN_FMAX  # None (librosa's "Nyquist") is stored as sample_rate / 2
    clamp: float = LOG_CLAMP  # the floor under the mel before the log
    center: bool = False  # False: jik876 reflect pad (n_fft - hop) / 2; True: torch.stft's
    log: str = "ln"  # "ln" | "log10"
    mel_scale: str = "slaney"  # "slaney" | "htk"
    mel_norm: str | None = "slaney"  # "slaney" (area) | None (unit peak)
    stft_eps: float = STFT_EPS  # added to re^2 + im^2 under the square root; 0: plain |X|

    def __post_init__(self) -> None:
        if min(self.sample_rate, self.n_fft, self.win_length, self.hop_length, self.n_mels) <= 0:
            raise ConfigError(f"MelConfig: sizes must be positive ({self})")
        if self.win_length > self.n_fft:
            raise ConfigError(f"MelConfig: win_length {self.win_length} > n_fft {self.n_fft}")
        if self.hop_length > self.n_fft:
            raise ConfigError(f"MelConfig: hop_length {self.hop_length} > n_fft {self.n_fft}")
        nyquist = self.sample_rate / 2
        if self.fmax is None:
            # Normalised so that configs describing the same filterbank compare equal.
            object.__setattr__(self, "fmax", float(nyquist))
        fmax = self.fmax
        if not 0 <= self.fmin < fmax <= nyquist:
            raise ConfigError(
                f"MelConfig: need 0 <= fmin < fmax <= {nyquist:g} Hz, got {self.fmin}, {self.fmax}"
            )
        if self.clamp <= 0:
            raise ConfigError(f"MelConfig: clamp must be positive, got {self.clamp}")
        for name, allowed in (("log", LOGS), ("mel_scale", MEL_SCALES), ("mel_norm", MEL_NORMS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"MelConfig: {name} must be one of {allowed}, "
                                  f"got {getattr(self, name)!r}")
        if not self.stft_eps >= 0:
            raise ConfigError(f"MelConfig: stft_eps must be >= 0, got {self.stft_eps}")

    @property
    def frame_rate(self) -> float:
        """Mel frames per second (86.13 for HIFIGAN_22K, 50.0 for SSL_16K)."""
        return self.sample_rate / self.hop_length

    @property
    def pad(self) -> int:
        """Reflect padding on each side when center=False (jik876: int((n_fft - hop) / 2))."""
        return (self.n_fft - self.hop_length) // 2

    @property
    def log_floor(self) -> float:
        """The log-mel value of silence, log(clamp) in the config's base."""
        return float(np.log(self.clamp) if self.log == "ln" else np.log10(self.clamp))

    def replace(self, **changes) -> MelConfig:
        return dataclasses.replace(self, **changes)


HIFIGAN_22K = MelConfig()
SSL_16K = MelConfig(sample_rate=SSL_SAMPLE_RATE, n_fft=HIFIGAN_N_FFT, win_length=SSL_WIN,
                    hop_length=SSL_HOP, n_mels=HIFIGAN_N_MELS, fmin=0.0, fmax=HIFIGAN_FMAX)
# microsoft/speecht5_hifigan: SpeechT5FeatureExtractor's defaults (see the module docstring).
SPEECHT5_16K = MelConfig(sample_rate=16_000, n_fft=1024, win_length=1024, hop_length=256,
                         n_mels=80, fmin=80.0, fmax=7600.0, clamp=1e-10, center=True,
                         log="log10", stft_eps=0.0)
# charactr/vocos-mel-24khz: torchaudio MelSpectrogram defaults with power=1, then safe_log.
VOCOS_24K = MelConfig(sample_rate=24_000, n_fft=1024, win_length=1024, hop_length=256,
                      n_mels=100, fmin=0.0, fmax=None, clamp=1e-7, center=True, log="ln",
                      mel_scale="htk", mel_norm=None, stft_eps=0.0)


def n_frames(num_samples: int, cfg: MelConfig = HIFIGAN_22K) -> int:
    """Number of mel frames `log_mel_spectrogram` returns for `num_samples` samples."""
    if cfg.center:
        return 1 + num_samples // cfg.hop_length
    padded = num_samples + 2 * cfg.pad
    if padded < cfg.n_fft:
        return 0
    return 1 + (padded - cfg.n_fft) // cfg.hop_length


def min_samples(cfg: MelConfig = HIFIGAN_22K) -> int:
    """Shortest input that yields one frame (reflect padding also needs pad < length)."""
    need = max(cfg.pad + 1, cfg.n_fft - 2 * cfg.pad) if not cfg.center else cfg.n_fft // 2 + 1
    return need


@lru_cache(maxsize=16)
def _mel_basis_cached(cfg: MelConfig) -> np.ndarray:
    import librosa

    basis = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                                fmin=cfg.fmin, fmax=cfg.fmax, htk=cfg.mel_scale == "htk",
                                norm=cfg.mel_norm).astype(np.float32)
    basis.setflags(write=False)  # shared between callers: nobody may mutate it
    return basis


def mel_basis(cfg: MelConfig = HIFIGAN_22K) -> np.ndarray:
    """The config's mel filterbank, (n_mels, n_fft // 2 + 1), read-only."""
    return _mel_basis_cached(cfg)


def log_mel_spectrogram(wav, cfg: MelConfig = HIFIGAN_22K):
    """Log-mel spectrogram of `wav` at `cfg.sample_rate` (resample first).

    numpy (T,) -> numpy (n_mels, frames) float32; torch (T,) -> (n_mels, frames);
    torch (B, T) -> (B, n_mels, frames) on the input's device (float32 math, also under autocast).
    """
    import torch

    if isinstance(wav, np.ndarray):
        if wav.ndim != 1:
            raise AudioError(f"<array>: expected a mono waveform (T,), got shape {wav.shape}")
        out = _log_mel_torch(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None],
                             cfg)
        return out[0].numpy()
    if not isinstance(wav, torch.Tensor):
        raise AudioError(f"<array>: expected a numpy array or torch tensor, got {type(wav).__name__}")
    if wav.ndim == 1:
        return _log_mel_torch(wav[None], cfg)[0]
    if wav.ndim != 2:
        raise AudioError(f"<tensor>: expected (T,) or (B, T), got shape {tuple(wav.shape)}")
    return _log_mel_torch(wav, cfg)


def _log_mel_torch(wav, cfg: MelConfig):
    import torch
    import torch.nn.functional as F

    length = wav.shape[-1]
    if length < min_samples(cfg):
        raise AudioError(
            f"<array>: too short for a mel frame ({length} samples; at least {min_samples(cfg)} "
            f"are needed at n_fft={cfg.n_fft}, hop={cfg.hop_length})"
        )
    device = wav.device
    # STFT in float32 even under bf16 autocast: log of tiny bf16 magnitudes is too coarse.
    with torch.autocast(device_type=device.type, enabled=False):
        x = wav.float()
        if not cfg.center:
            x = F.pad(x[:, None], (cfg.pad, cfg.pad), mode="reflect")[:, 0]
        window = torch.hann_window(cfg.win_length, device=device)
        spec = torch.stft(x, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                          window=window, center=cfg.center, pad_mode="reflect",
                          normalized=False, onesided=True, return_complex=True)
        if cfg.stft_eps:
            mag = torch.sqrt(spec.real.square() + spec.imag.square() + cfg.stft_eps)
        else:
            mag = spec.abs()
        basis = torch.from_numpy(mel_basis(cfg).copy()).to(device)
        mel = torch.clamp(torch.matmul(basis, mag), min=cfg.clamp)
        return torch.log(mel) if cfg.log == "ln" else torch.log10(mel)


def log_to_linear(log_mel, cfg: MelConfig = HIFIGAN_22K):
    """The inverse of the config's log: exp (ln) or 10 ** x (log10), torch in, torch out."""
    import torch

    return torch.exp(log_mel) if cfg.log == "ln" else torch.pow(10.0, log_mel)


def mel_to_magnitude(log_mel, cfg: MelConfig = HIFIGAN_22K, n_iter: int = MEL_INVERSE_ITERS):
    """Approximately invert the mel filterbank: log-mel (..., n_mels, T) -> non-negative magnitude
    (..., n_fft // 2 + 1, T), same type (numpy or torch) as the input.

    Starts from the clamped pseudo-inverse and refines it with multiplicative (Lee-Seung)
    updates for min ||B x - m||^2, x >= 0: the same objective as librosa's NNLS inverse but
    batched and a hundred times faster, which matters for minute-long utterances.
    """
    import torch

    is_numpy = not isinstance(log_mel, torch.Tensor)
    lm = torch.as_tensor(np.asarray(log_mel, dtype=np.float32)) if is_numpy else log_mel
    if lm.ndim < 2 or lm.shape[-2] != cfg.n_mels:
        raise ConfigError(
            f"mel of shape {tuple(lm.shape)} does not have {cfg.n_mels} bands (n_mels of the "
            "MelConfig) on axis -2"
        )
    with torch.autocast(device_type=lm.device.type, enabled=False):
        mel = log_to_linear(lm.float(), cfg)
        basis = torch.from_numpy(mel_basis(cfg).copy()).to(lm.device)
        x = torch.clamp(torch.linalg.pinv(basis) @ mel, min=cfg.clamp)
        gram = basis.T @ basis
        target = basis.T @ mel
        for _ in range(n_iter):
            x = x * target / (gram @ x + STFT_EPS)
    return x.numpy() if is_numpy else x
