"""Hub vocoders: SpeechT5 HiFi-GAN and Vocos, by Hugging Face hub id or from a local directory.

`load_hub_vocoder(id_or_dir)` (reached through `load_vocoder`) knows two kinds:

- "speecht5_hifigan": `microsoft/speecht5_hifigan`, or any directory whose config.json has
  model_type "speecht5_hifigan" (what `SpeechT5HifiGan.save_pretrained` writes). transformers'
  `SpeechT5HifiGan` does the work; it takes (B, T, n_mels) log10 mels and normalises them with
  its own mean/scale buffers when `normalize_before`. Its mels are SpeechT5FeatureExtractor's
  (`SPEECHT5_16K`), from a preprocessor_config.json in the directory if there is one.
- "vocos": `charactr/vocos-mel-24khz`, or any directory with Vocos' config.yaml and
  pytorch_model.bin (or model.safetensors). Vocos is implemented here (ConvNeXt backbone and
  ISTFT head, upstream parameter names) so that the upstream weights load strictly with
  `torch.load(weights_only=True)`; only its mel feature extractor variant is supported. The
  checkpoint carries the mel filterbank it was trained with, which must be the one config.yaml
  defines (`VOCOS_24K` for mel-24khz).

Both output T * hop samples for T frames. Weights are loaded strictly: a missing, unexpected or
mis-shaped tensor is an ArtifactError, and so is a hub that cannot be reached (a local
directory with the same files works offline).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
from pathlib import Path

import torch
from torch import nn

from emosteer.errors import ArtifactError, ConfigError
from emosteer.synthesis.contract import Vocoder
from emosteer.synthesis.mel import MelConfig, mel_basis

SPEECHT5 = "speecht5_hifigan"
VOCOS = "vocos"
KNOWN_IDS = {"microsoft/speecht5_hifigan": SPEECHT5, "charactr/vocos-mel-24khz": VOCOS}
HF_CONFIG = "config.json"
HF_PREPROCESSOR = "preprocessor_config.json"
VOCOS_CONFIG = "config.yaml"
VOCOS_WEIGHTS = ("pytorch_model.bin", "model.safetensors")  # upstream ships the first
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")

# Vocos constants, as upstream (vocos/modules.py, vocos/heads.py):
VOCOS_LN_EPS = 1e-6
VOCOS_LOG_CLIP = 1e-7  # safe_log: ln(clip(mel, 1e-7))
VOCOS_MAX_MAG = 1e2  # ISTFTHead clips exp(log-magnitude) at 100
VOCOS_KERNEL = 7  # embed and depthwise conv kernels
FB_RTOL = 1e-4  # checkpoint filterbank vs ours: both float32 from float64 formulas


# --- recognising a hub vocoder -------------------------------------------------------------

def looks_like_hub_id(name: str) -> bool:
    """'owner/name', and not an existing path."""
    return bool(_HUB_ID.match(name)) and not Path(name).exists()


def _read_yaml(path: Path) -> object:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: could not read ({e})") from e
    except yaml.YAMLError as e:
        raise ArtifactError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from e


def _json_model_type(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data.get("model_type") if isinstance(data, dict) else None


def local_kind(directory: str | os.PathLike) -> str | None:
    """SPEECHT5 or VOCOS for a directory holding that vocoder's files, else None."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    if (directory / HF_CONFIG).is_file() and _json_model_type(directory / HF_CONFIG) == SPEECHT5:
        return SPEECHT5
    if (directory / VOCOS_CONFIG).is_file():
        try:
            data = _read_yaml(directory / VOCOS_CONFIG)
        except ArtifactError:
            return VOCOS  # a broken config.yaml: let the loader say what is wrong with it
        if isinstance(data, dict) and _vocos_sections(data) is not None:
            return VOCOS
    return None


def is_hub_vocoder(name_or_path: str | os.PathLike) -> bool:
    """A local directory with a hub vocoder's files, or a hub id that is not a local path."""
    path = Path(name_or_path)
    return local_kind(path) is not None if path.is_dir() else looks_like_hub_id(str(name_or_path))


# --- fetching from the hub -------------------------------------------------------------------

def _unreachable(repo_id: str, what: str, e: BaseException) -> ArtifactError:
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return ArtifactError(
        f"{repo_id}: not a local directory, and the vocoder could not be fetched from the "
        f"Hugging Face hub ({what}: "
        f"{type(e).__name__}: {reason}). Without the hub, download the repository elsewhere "
        f"(e.g. `hf download {repo_id} --local-dir DIR`, huggingface_hub's CLI) and pass the local directory DIR instead")


def _hub_file(repo_id: str, filename: str) -> Path | None:
    """The cached path of `filename` in `repo_id`; None when the repository has no such file."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except LocalEntryNotFoundError as e:  # offline, or not reachable and not cached
        raise _unreachable(repo_id, filename, e) from e
    except EntryNotFoundError:
        return None
    except RepositoryNotFoundError as e:
        raise ArtifactError(f"{repo_id}: neither a local directory nor a repository on the "
                            f"Hugging Face hub (or one that is private)") from e
    except Exception as e:  # any other network or library failure: one clear error
        raise _unreachable(repo_id, filename, e) from e


def _hub_kind(repo_id: str) -> str:
    """What the repository holds, from its config.json (SpeechT5) or config.yaml (Vocos)."""
    if repo_id in KNOWN_IDS:
        return KNOWN_IDS[repo_id]
    config = _hub_file(repo_id, HF_CONFIG)
    if config is not None and _json_model_type(config) == SPEECHT5:
        return SPEECHT5
    if _hub_file(repo_id, VOCOS_CONFIG) is not None:
        return VOCOS
    raise ConfigError(f"{repo_id}: not a hub vocoder emosteer knows (a SpeechT5 HiFi-GAN, "
                      f"config.json model_type {SPEECHT5!r}, or a Vocos mel model with "
                      f"{VOCOS_CONFIG}); known ids: {', '.join(KNOWN_IDS)}")


class HubVocoder(Vocoder, nn.Module):
    """A vocoder built from hub files (SpeechT5 HiFi-GAN, Vocos): an nn.Module with the
    Vocoder contract."""


# --- SpeechT5 HiFi-GAN ---------------------------------------------------------------------

class SpeechT5Vocoder(HubVocoder):
    """transformers' SpeechT5HifiGan behind the Vocoder contract: (B, n_mels, T) log10 mels
    (`mel_config`, SpeechT5FeatureExtractor's definition) -> (B, T * hop) float32."""

    def __init__(self, model: nn.Module, mel_config: MelConfig, source: str = ""):
        super().__init__()
        hop = math.prod(int(r) for r in model.config.upsample_rates)
        if hop != mel_config.hop_length or model.config.model_in_dim != mel_config.n_mels:
            raise ConfigError(f"{source}: the SpeechT5 HiFi-GAN upsamples by {hop} from "
                              f"{model.config.model_in_dim} mels, but its mel definition has hop "
                              f"{mel_config.hop_length} and {mel_config.n_mels} mels")
        self.model = model.eval()
        self.mel_config = mel_config
        self.origin = {"source": source, "model": "SpeechT5 HiFi-GAN (transformers SpeechT5HifiGan)",
                       "upstream": "https://huggingface.co/microsoft/speecht5_hifigan"}

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        self._check_mel(mel)
        # SpeechT5HifiGan takes (B, T, n_mels) and applies its own mean/scale normalisation.
        return self.model(mel.transpose(1, 2)).float()


def speecht5_mel_config(feature_extractor) -> MelConfig:
    """The MelConfig of a transformers SpeechT5FeatureExtractor's `_extract_mel_features`:
    periodic hann of sample_size, zero-padded to n_fft, centre-reflect framing, |X| (power 1),
    slaney/slaney filterbank, log10(max(mel, mel_floor))."""
    fe = feature_extractor
    if fe.win_function not in ("hann_window", "hann"):
        raise ConfigError(f"SpeechT5 feature extractor: window {fe.win_function!r} is not "
                          f"supported (only hann)")
    return MelConfig(sample_rate=int(fe.sampling_rate), n_fft=int(fe.n_fft),
                     win_length=int(fe.sample_size), hop_length=int(fe.sample_stride),
                     n_mels=int(fe.num_mel_bins), fmin=float(fe.fmin), fmax=float(fe.fmax),
                     clamp=float(fe.mel_floor), center=True, log="log10", mel_scale="slaney",
                     mel_norm="slaney", stft_eps=0.0)


def load_speecht5(id_or_dir: str | os.PathLike, device: str = "cpu") -> SpeechT5Vocoder:
    """A SpeechT5 HiFi-GAN from a hub id or a save_pretrained directory, loaded strictly."""
    from transformers import SpeechT5FeatureExtractor, SpeechT5HifiGan

    name = str(id_or_dir)
    local = Path(name).is_dir()
    if not local:
        _hub_file(name, HF_CONFIG)  # a clear error when the hub cannot be reached
    try:
        model, info = SpeechT5HifiGan.from_pretrained(name, output_loading_info=True,
                                                      weights_only=True)
    except pickle.UnpicklingError as e:
        raise ArtifactError(f"{name}: refused to load the weights: the checkpoint is a pickle "
                            f"with more than tensors in it ({e})") from e
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as e:
        if not local and isinstance(e, OSError):
            raise _unreachable(name, "weights", e) from e
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ArtifactError(f"{name}: not a loadable SpeechT5 HiFi-GAN ({first})") from e
    problems = {k: list(info.get(k) or []) for k in
                ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        raise ArtifactError(f"{name}: the weights do not match the SpeechT5 HiFi-GAN config "
                            f"({'; '.join(f'{k}: {v[:5]}' for k, v in problems.items())})")
    cfg = model.config
    if local and (Path(name) / HF_PREPROCESSOR).is_file():
        try:
            fe = SpeechT5FeatureExtractor.from_pretrained(name)
        except (OSError, ValueError, TypeError) as e:
            raise ArtifactError(f"{Path(name) / HF_PREPROCESSOR}: not a SpeechT5 feature "
                                f"extractor config ({e})") from e
    else:  # the hub vocoder ships none: SpeechT5's mels are the extractor's defaults
        fe = SpeechT5FeatureExtractor(sampling_rate=int(cfg.sampling_rate),
                                      num_mel_bins=int(cfg.model_in_dim))
    try:
        mel = speecht5_mel_config(fe)
        if fe.sampling_rate != cfg.sampling_rate:
            raise ConfigError(f"the feature extractor runs at {fe.sampling_rate} Hz, the "
                              f"vocoder at {cfg.sampling_rate} Hz")
        vocoder = SpeechT5Vocoder(model, mel, name)
    except ConfigError as e:
        raise ArtifactError(f"{name}: {e}") from e
    return vocoder.to(device).eval()


# --- Vocos -----------------------------------------------------------------------------------

class ConvNeXtBlock(nn.Module):
    """vocos.modules.ConvNeXtBlock without AdaLayerNorm: dwconv, norm, pwconv1, GELU, pwconv2,
    layer scale gamma, residual."""

    def __init__(self, dim: int, intermediate_dim: int, layer_scale_init_value: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, VOCOS_KERNEL, padding=VOCOS_KERNEL // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=VOCOS_LN_EPS)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = (nn.Parameter(layer_scale_init_value * torch.ones(dim))
                      if layer_scale_init_value > 0 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x).transpose(1, 2)))))
        if self.gamma is not None:
            h = self.gamma * h
        return x + h.transpose(1, 2)


class VocosBackbone(nn.Module):
    """vocos.models.VocosBackbone (no adanorm): (B, C, L) -> (B, L, dim)."""

    def __init__(self, input_channels: int, dim: int, intermediate_dim: int, num_layers: int,
                 layer_scale_init_value: float | None = None):
        super().__init__()
        self.embed = nn.Conv1d(input_channels, dim, VOCOS_KERNEL, padding=VOCOS_KERNEL // 2)
        self.norm = nn.LayerNorm(dim, eps=VOCOS_LN_EPS)
        scale = layer_scale_init_value or 1 / num_layers
        self.convnext = nn.ModuleList(ConvNeXtBlock(dim, intermediate_dim, scale)
                                      for _ in range(num_layers))
        self.final_layer_norm = nn.LayerNorm(dim, eps=VOCOS_LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(x).transpose(1, 2)).transpose(1, 2)
        for block in self.convnext:
            x = block(x)
        return self.final_layer_norm(x.transpose(1, 2))


class ISTFT(nn.Module):
    """vocos.spectral_ops.ISTFT: "center" is torch.istft(center=True), "same" an overlap-add
    with (win - hop) / 2 trimmed on each side. Both return T * hop samples here; upstream's
    "center" stops at (T - 1) * hop, and its samples are the first (T - 1) * hop of ours."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, padding: str = "same"):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length, self.padding = (n_fft, hop_length,
                                                                      win_length, padding)
        self.register_buffer("window", torch.hann_window(win_length))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        t = spec.shape[-1]
        if self.padding == "center":
            return torch.istft(spec, self.n_fft, self.hop_length, self.win_length, self.window,
                               center=True, length=t * self.hop_length)
        pad = (self.win_length - self.hop_length) // 2
        frames = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward")
        frames = frames * self.window[None, :, None]
        size = (t - 1) * self.hop_length + self.win_length
        fold = dict(output_size=(1, size), kernel_size=(1, self.win_length),
                    stride=(1, self.hop_length))
        y = nn.functional.fold(frames, **fold)[:, 0, 0, pad:size - pad]
        envelope = nn.functional.fold(
            self.window.square().expand(1, t, -1).transpose(1, 2), **fold)[0, 0, 0, pad:size - pad]
        return y / envelope


class ISTFTHead(nn.Module):
    """vocos.heads.ISTFTHead: Linear to n_fft + 2 (log-magnitude and phase halves), ISTFT."""

    def __init__(self, dim: int, n_fft: int, hop_length: int, padding: str = "same"):
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop_length, n_fft, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.out(x).transpose(1, 2)
        mag, p = x.chunk(2, dim=1)
        mag = torch.clip(torch.exp(mag), max=VOCOS_MAX_MAG)
        phase = torch.atan2(torch.sin(p), torch.cos(p))
        return self.istft(mag * torch.exp(phase * 1j))


class _MelSpectrogramBuffers(nn.Module):
    """Where upstream's torchaudio MelSpectrogram keeps its window and filterbank, so that the
    checkpoint's `feature_extractor.mel_spec.*` tensors load strictly and can be checked; the
    mels themselves come from `log_mel_spectrogram(wav, vocoder.mel_config)`."""

    def __init__(self, cfg: MelConfig):
        super().__init__()
        self.mel_spec = nn.Module()
        self.mel_spec.spectrogram = nn.Module()
        self.mel_spec.spectrogram.register_buffer("window", torch.hann_window(cfg.win_length))
        self.mel_spec.mel_scale = nn.Module()
        self.mel_spec.mel_scale.register_buffer("fb", torch.from_numpy(mel_basis(cfg).T.copy()))


class Vocos(HubVocoder):
    """Vocos (mel variant): (B, n_mels, T) ln-mels (`mel_config`) -> (B, T * hop) float32."""

    def __init__(self, mel_config: MelConfig, backbone: dict, head: dict, source: str = ""):
        super().__init__()
        self.mel_config = mel_config
        self.feature_extractor = _MelSpectrogramBuffers(mel_config)
        self.backbone = VocosBackbone(**backbone)
        self.head = ISTFTHead(**head)
        self.origin = {"source": source, "model": "Vocos, mel feature extractor",
                       "upstream": "https://github.com/gemelo-ai/vocos"}

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        self._check_mel(mel)
        x = self.backbone(mel)
        with torch.autocast(device_type=mel.device.type, enabled=False):
            return self.head(x.float()).float()  # exp and the ISTFT in float32


def _vocos_sections(data: dict) -> dict | None:
    """feature_extractor/backbone/head of a hub config.yaml (top level) or a training config
    (under model.init_args); None when neither layout is there."""
    model = data.get("model")
    nested = model.get("init_args") if isinstance(model, dict) else None
    for sections in (data, nested):
        if isinstance(sections, dict) and all(
                isinstance(sections.get(k), dict) for k in ("feature_extractor", "backbone", "head")):
            return sections
    return None


# MelSpectrogramFeatures' arguments. The upstream class takes the first five and leaves the
# rest at torchaudio's defaults (0 Hz, Nyquist, norm None, htk): charactr/vocos-mel-24khz's
# config.yaml names only the first five. Later variants accept the other four.
_VOCOS_FE_ARGS = {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100,
                  "padding": "center", "f_min": 0.0, "f_max": None, "norm": None,
                  "mel_scale": "htk"}
_VOCOS_BACKBONE_ARGS = ("input_channels", "dim", "intermediate_dim", "num_layers",
                        "layer_scale_init_value", "adanorm_num_embeddings")
_VOCOS_HEAD_ARGS = {"dim": None, "n_fft": None, "hop_length": None, "padding": "same"}


def _init_args(section: dict, allowed, what: str, source: str) -> dict:
    args = section.get("init_args") or {}
    if not isinstance(args, dict):
        raise ArtifactError(f"{source}: {what}.init_args is not a mapping")
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ArtifactError(f"{source}: {what} has arguments emosteer does not know: {unknown}")
    return args


def vocos_config(data: object, source: str) -> tuple[MelConfig, dict, dict]:
    """(mel definition, backbone kwargs, head kwargs) of a Vocos config.yaml."""
    sections = _vocos_sections(data) if isinstance(data, dict) else None
    if sections is None:
        raise ArtifactError(f"{source}: not a Vocos config (expected feature_extractor, backbone "
                            f"and head, each with class_path and init_args)")
    paths = {k: str(sections[k].get("class_path", "")) for k in ("feature_extractor", "backbone",
                                                                 "head")}
    want = {"feature_extractor": "MelSpectrogramFeatures", "backbone": "VocosBackbone",
            "head": "ISTFTHead"}
    for key, cls in want.items():
        if paths[key].rsplit(".", 1)[-1] != cls:
            raise ConfigError(f"{source}: {key} {paths[key]!r} is not supported; emosteer runs "
                              f"the mel variant of Vocos only ({cls}, as charactr/vocos-mel-24khz)")
    fe = {**_VOCOS_FE_ARGS, **_init_args(sections["feature_extractor"], _VOCOS_FE_ARGS,
                                         "feature_extractor", source)}
    bb = _init_args(sections["backbone"], _VOCOS_BACKBONE_ARGS, "backbone", source)
    head = {**_VOCOS_HEAD_ARGS, **_init_args(sections["head"], _VOCOS_HEAD_ARGS, "head", source)}
    if bb.pop("adanorm_num_embeddings", None) is not None:
        raise ConfigError(f"{source}: a conditioned backbone (adanorm_num_embeddings, the EnCodec "
                          f"variant) is not supported; only the mel variant is")
    missing = [k for k in ("input_channels", "dim", "intermediate_dim", "num_layers")
               if k not in bb] + [k for k, v in head.items() if v is None]
    if missing:
        raise ArtifactError(f"{source}: Vocos config lacks {missing}")
    for args in (fe, head):
        if args["padding"] not in ("center", "same"):
            raise ArtifactError(f"{source}: padding must be 'center' or 'same', got "
                                f"{args['padding']!r}")
    try:
        mel = MelConfig(sample_rate=int(fe["sample_rate"]), n_fft=int(fe["n_fft"]),
                        win_length=int(fe["n_fft"]), hop_length=int(fe["hop_length"]),
                        n_mels=int(fe["n_mels"]), fmin=float(fe["f_min"]),
                        fmax=None if fe["f_max"] is None else float(fe["f_max"]),
                        clamp=VOCOS_LOG_CLIP, center=fe["padding"] == "center", log="ln",
                        mel_scale=fe["mel_scale"], mel_norm=fe["norm"], stft_eps=0.0)
        bb = {"input_channels": int(bb["input_channels"]), "dim": int(bb["dim"]),
              "intermediate_dim": int(bb["intermediate_dim"]), "num_layers": int(bb["num_layers"]),
              "layer_scale_init_value": (None if bb.get("layer_scale_init_value") is None
                                         else float(bb["layer_scale_init_value"]))}
        head = {"dim": int(head["dim"]), "n_fft": int(head["n_fft"]),
                "hop_length": int(head["hop_length"]), "padding": head["padding"]}
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"{source}: invalid Vocos config ({e})") from e
    if bb["input_channels"] != mel.n_mels or head["dim"] != bb["dim"]:
        raise ArtifactError(f"{source}: the backbone takes {bb['input_channels']} channels of "
                            f"width {bb['dim']}, the mels have {mel.n_mels} and the head width "
                            f"{head['dim']}")
    if head["hop_length"] != mel.hop_length or head["padding"] != fe["padding"]:
        raise ArtifactError(f"{source}: head hop {head['hop_length']} / padding "
                            f"{head['padding']!r} differ from the mels' {mel.hop_length} / "
                            f"{fe['padding']!r}")
    return mel, bb, head


def _load_state(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ArtifactError(f"{path}: not readable safetensors ({e})") from e
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ArtifactError(
            f"{path}: refused to load: the pickle holds more than tensors (weights_only=True "
            f"rejects objects that could run code): {str(e).splitlines()[0]}") from e
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError) as e:
        raise ArtifactError(f"{path}: not a readable torch checkpoint ({e})") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArtifactError(f"{path}: expected a state dict of tensors")
    return state


def _check_front_end(model: Vocos, weights: Path) -> None:
    """The checkpoint's window and filterbank must be the ones its mel definition gives."""
    buffers = model.feature_extractor.mel_spec
    ours = torch.from_numpy(mel_basis(model.mel_config).T.copy())
    fb = buffers.mel_scale.fb.float().cpu()
    if fb.shape != ours.shape or not torch.allclose(fb, ours, rtol=FB_RTOL,
                                                    atol=FB_RTOL * float(ours.abs().max())):
        diff = (float((fb - ours).abs().max()) if fb.shape == ours.shape
                else f"shape {tuple(fb.shape)} vs {tuple(ours.shape)}")
        raise ArtifactError(f"{weights}: the checkpoint's mel filterbank is not the one its config "
                            f"defines ({model.mel_config}; max difference {diff})")
    window = buffers.spectrogram.window.float().cpu()
    if not torch.allclose(window, torch.hann_window(model.mel_config.win_length), atol=1e-6):
        raise ArtifactError(f"{weights}: the checkpoint's STFT window is not a periodic hann")


def load_vocos(id_or_dir: str | os.PathLike, device: str = "cpu") -> Vocos:
    """Vocos from a hub id or a directory (config.yaml + pytorch_model.bin or model.safetensors),
    loaded strictly, its filterbank checked against its config."""
    name = str(id_or_dir)
    directory = Path(name)
    if directory.is_dir():
        config = directory / VOCOS_CONFIG
        if not config.is_file():
            raise ArtifactError(f"{directory}: no {VOCOS_CONFIG} (a Vocos directory holds "
                                f"{VOCOS_CONFIG} and {VOCOS_WEIGHTS[0]})")
        weights = next((directory / w for w in VOCOS_WEIGHTS if (directory / w).is_file()), None)
        if weights is None:
            raise ArtifactError(f"{directory}: no weights ({' or '.join(VOCOS_WEIGHTS)})")
    else:
        config = _hub_file(name, VOCOS_CONFIG)
        if config is None:
            raise ArtifactError(f"{name}: the repository has no {VOCOS_CONFIG}")
        weights = next((p for w in VOCOS_WEIGHTS if (p := _hub_file(name, w)) is not None), None)
        if weights is None:
            raise ArtifactError(f"{name}: the repository has no {' or '.join(VOCOS_WEIGHTS)}")
    mel, backbone, head = vocos_config(_read_yaml(config), str(config))
    model = Vocos(mel, backbone, head, name)
    state = _load_state(weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"{weights}: weights do not match {config} "
                            f"({str(e).splitlines()[0]} {' '.join(str(e).splitlines()[1:3])})") from e
    _check_front_end(model, weights)
    return model.to(device).eval()


def load_hub_vocoder(id_or_dir: str | os.PathLike, device: str = "cpu") -> HubVocoder:
    """A SpeechT5 HiFi-GAN or Vocos from a hub id or a local directory (see the module doc)."""
    name = str(id_or_dir)
    path = Path(name)
    if path.is_dir():
        kind = local_kind(path)
        if kind is None:
            raise ArtifactError(f"{path}: not a hub vocoder directory (expected {HF_CONFIG} with "
                                f"model_type {SPEECHT5!r}, or Vocos' {VOCOS_CONFIG})")
    elif looks_like_hub_id(name):
        kind = _hub_kind(name)
    else:
        raise ConfigError(f"{name}: neither a hub id (owner/name) nor a directory")
    return load_speecht5(name, device) if kind == SPEECHT5 else load_vocos(name, device)


__all__ = ["KNOWN_IDS", "HubVocoder", "SpeechT5Vocoder", "Vocos", "is_hub_vocoder", "load_hub_vocoder",
           "load_speecht5", "load_vocos", "local_kind", "looks_like_hub_id",
           "speecht5_mel_config", "vocos_config"]
