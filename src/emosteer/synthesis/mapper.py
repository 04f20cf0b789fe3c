"""Mapper: SSL frames of one layer (50 Hz) -> log-mel frames at a vocoder's rate.

Architecture: per-frame LayerNorm and a 1x1 conv lift the SSL features (plus, optionally, the
prosody tracks log-F0 / voicing / energy) to `hidden` channels; linear interpolation in time
converts the input rate to the mel rate, T_out = round_half_up(T_in * out_rate / in_rate);
residual dilated conv blocks (optionally a small transformer) model context; a 1x1 conv emits
n_mels log-mel bands. Saved as `mapper.safetensors` + `mapper.json` in one directory.

Loss (`mapper_loss`): L1 on the log-mel, L1 on 2x and 4x time-averaged log-mels (a cheap
multi-resolution term that rewards the right envelope), and spectral convergence
||M - M_hat||_F / ||M||_F on linear mel magnitudes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from emosteer import __version__
from emosteer.artifacts import (
    atomic_write_bytes,
    canonical_safetensors,
    load_config,
    nest_flat,
    provenance,
    save_config,
)
from emosteer.audio import SSL_FRAME_RATE
from emosteer.embeddings.encoders import EncoderIdentity
from emosteer.errors import ArtifactError, ConfigError
from emosteer.synthesis.data import (
    N_PROSODY,
    out_frames,
)
from emosteer.synthesis.mel import HIFIGAN_22K, MelConfig

CONFIG_FILE = "mapper.json"
WEIGHTS_FILE = "mapper.safetensors"
POOL_FACTORS = (2, 4)  # multi-resolution L1: 2x and 4x coarser in time
# Spectral convergence works on exp(log-mel); clamping the prediction at log-mel 10 (a mel
# magnitude of 22026, far above full-scale speech, whose jik876 log-mels stay below ~3) keeps a
# wild early prediction from overflowing without touching any realistic value.
MAX_LOG_MEL = 10.0
MEL_KEYS = tuple(f.name for f in dataclasses.fields(MelConfig) if f.name != "n_mels")


@dataclass(frozen=True)
class MapperConfig:
    """Everything needed to rebuild a mapper and to know what it consumes and produces."""

    in_dim: int
    encoder: EncoderIdentity = EncoderIdentity(model="")  # whose frames this mapper reads
    layer: int = 5
    in_rate: float = SSL_FRAME_RATE
    hidden: int = 256
    n_blocks: int = 6
    kernel: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 8)  # block i uses dilations[i % len(dilations)]
    n_transformer_layers: int = 0
    n_heads: int = 4
    dropout: float = 0.0
    use_prosody: bool = True
    mel: MelConfig = HIFIGAN_22K  # the log-mel it emits (the vocoder's)
    vocoder: str = ""  # the vocoder `mel` was taken from (train-mapper --vocoder), for "auto"
    emosteer_version: str = __version__

    def __post_init__(self) -> None:
        if min(self.in_dim, self.hidden, self.n_blocks, self.kernel, self.n_heads) <= 0:
            raise ConfigError(f"MapperConfig: sizes must be positive ({self})")
        if self.kernel % 2 == 0:
            raise ConfigError(f"MapperConfig: kernel must be odd for same-length convs, got {self.kernel}")
        if not self.dilations or min(self.dilations) <= 0:
            raise ConfigError(f"MapperConfig: dilations must be positive, got {self.dilations}")
        if self.n_transformer_layers and self.hidden % self.n_heads:
            raise ConfigError(f"MapperConfig: hidden {self.hidden} not divisible by n_heads {self.n_heads}")
        if not isinstance(self.mel, MelConfig) or not isinstance(self.encoder, EncoderIdentity):
            raise ConfigError("MapperConfig: mel must be a MelConfig and encoder an EncoderIdentity")

    @staticmethod
    def migrate(data: Mapping[str, Any]) -> dict[str, Any]:
        """A 0.1.0 mapper.json (model, encoder_random_init and mel_* flat) -> this layout.
        0.1.0 recorded no seed: it always rebuilt a random-init encoder with seed 0."""
        data = dict(data)
        if "encoder" not in data and ("model" in data or "encoder_random_init" in data):
            random_init = bool(data.pop("encoder_random_init", False))
            data["encoder"] = {"model": data.pop("model", ""), "random_init": random_init,
                               "seed": 0 if random_init else None}
        return nest_flat(data, "mel", {**{f"mel_{k}": k for k in MEL_KEYS}, "n_mels": "n_mels"})

    @classmethod
    def for_mel(cls, mel: MelConfig, **kwargs) -> MapperConfig:
        return cls(mel=mel, **kwargs)

    @property
    def mel_config(self) -> MelConfig:
        return self.mel

    @property
    def n_mels(self) -> int:
        return self.mel.n_mels

    @property
    def out_rate(self) -> float:
        return self.mel.sample_rate / self.mel.hop_length

    def structure(self) -> tuple:
        """The fields that decide the state dict's shapes (what `--init` must agree on)."""
        return (self.in_dim, self.hidden, self.n_blocks, self.kernel, self.n_transformer_layers,
                self.use_prosody, self.n_mels)


class ChannelNorm(nn.Module):
    """LayerNorm over channels of (B, C, T), per frame, so a crop normalises like the whole."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class ResBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.norm = ChannelNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation,
                              padding=dilation * (kernel - 1) // 2)
        self.proj = nn.Conv1d(channels, channels, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.proj(F.gelu(self.conv(F.gelu(self.norm(x))))))


class Mapper(nn.Module):
    """forward(x (B, D, T_in), prosody (B, 3, T_in) | None, lengths (B,) | None) -> (B, n_mels, T_out)."""

    def __init__(self, config: MapperConfig):
        super().__init__()
        c = config
        self.config = c
        self.in_norm = ChannelNorm(c.in_dim)
        self.in_proj = nn.Conv1d(c.in_dim, c.hidden, 1)
        self.prosody_proj = nn.Conv1d(N_PROSODY, c.hidden, 1) if c.use_prosody else None
        self.blocks = nn.ModuleList(
            ResBlock(c.hidden, c.kernel, c.dilations[i % len(c.dilations)], c.dropout)
            for i in range(c.n_blocks)
        )
        self.transformer = None
        if c.n_transformer_layers:
            layer = nn.TransformerEncoderLayer(c.hidden, c.n_heads, 2 * c.hidden, c.dropout,
                                               activation="gelu", batch_first=True, norm_first=True)
            self.transformer = nn.TransformerEncoder(layer, c.n_transformer_layers,
                                                     enable_nested_tensor=False)
        self.out_norm = ChannelNorm(c.hidden)
        self.out_proj = nn.Conv1d(c.hidden, c.n_mels, 1)

    def out_length(self, t_in: int) -> int:
        return out_frames(t_in, self.config.in_rate, self.config.out_rate)

    def _resample(self, h: torch.Tensor, t_out: int, lengths: torch.Tensor | None = None,
                  grid: tuple[int, int] = (0, 0)) -> torch.Tensor:
        """Linear interpolation at fixed times: output frame j (centre (j + 0.5) / out_rate)
        reads input position (j + 0.5) * in_rate / out_rate - 0.5, clamped to each item's last
        valid frame. Unlike size-based F.interpolate the grid does not depend on the length,
        so a padded batch, a training crop and a whole utterance all see the same mapping.
        grid = (first_frame, m_lo): the input starts at global frame first_frame and output j
        is global mel frame m_lo + j (a streaming window keeps the whole file's mel grid)."""
        b, c, t_in = h.shape
        pos = (torch.arange(grid[1], grid[1] + t_out, device=h.device, dtype=h.dtype) + 0.5) \
            * (self.config.in_rate / self.config.out_rate) - 0.5 - grid[0]
        last = torch.full((b, 1), t_in - 1, device=h.device) if lengths is None \
            else (lengths.to(h.device)[:, None] - 1)
        pos = torch.minimum(pos[None].clamp(min=0).expand(b, -1), last.to(h.dtype))
        i0 = pos.floor().long()
        i1 = torch.minimum(i0 + 1, last.long())
        w = (pos - i0.to(h.dtype))[:, None]
        h0 = h.gather(2, i0[:, None].expand(b, c, t_out))
        h1 = h.gather(2, i1[:, None].expand(b, c, t_out))
        return h0 * (1 - w) + h1 * w

    def forward(self, x: torch.Tensor, prosody: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None,
                grid: tuple[int, int, int] | None = None) -> torch.Tensor:
        """(B, D, T) frames -> (B, n_mels, T_out). `grid` = (first_frame, m_lo, m_hi) emits the
        global mel frames [m_lo, m_hi) of frames that start at global SSL frame first_frame."""
        c = self.config
        if x.ndim != 3 or x.shape[1] != c.in_dim:
            raise ConfigError(f"mapper expects frames (B, {c.in_dim}, T), got {tuple(x.shape)}")
        h = self.in_proj(self.in_norm(x))
        if self.prosody_proj is not None:
            if prosody is None or prosody.shape != (x.shape[0], N_PROSODY, x.shape[2]):
                raise ConfigError(f"this mapper needs prosody (B, {N_PROSODY}, T) aligned to the frames")
            h = h + self.prosody_proj(prosody)
        t_out = self.out_length(x.shape[2]) if grid is None else grid[2] - grid[1]
        h = self._resample(h, t_out, lengths, (0, 0) if grid is None else grid[:2])
        mask = None
        if lengths is not None:
            out_len = torch.tensor([self.out_length(int(n)) for n in lengths], device=h.device)
            mask = (torch.arange(t_out, device=h.device)[None] < out_len[:, None])[:, None]
        for block in self.blocks:
            # Zero the padding before every conv so it never leaks into valid frames.
            h = block(h if mask is None else h * mask)
        if mask is not None:
            mask = mask[:, 0]
        if self.transformer is not None:
            pad = None if mask is None else ~mask
            h = self.transformer(h.transpose(1, 2), src_key_padding_mask=pad).transpose(1, 2)
        return self.out_proj(self.out_norm(h))

    def save(self, out_dir: str | Path) -> Path:
        """Write mapper.safetensors (+ provenance metadata) and mapper.json atomically."""
        from safetensors.torch import save

        out_dir = Path(out_dir)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        meta = {k: str(v) for k, v in provenance().items() if k != "argv"}
        atomic_write_bytes(out_dir / WEIGHTS_FILE, canonical_safetensors(save(state, metadata=meta)))
        save_config(self.config, out_dir / CONFIG_FILE)
        return out_dir


def load_mapper(path: str | Path, device: str = "cpu") -> Mapper:
    """Load a mapper directory strictly: any missing, extra or mis-shaped tensor is an ArtifactError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path}: not a mapper directory (expected {CONFIG_FILE} + {WEIGHTS_FILE})")
    cfg = load_config(MapperConfig, path / CONFIG_FILE)
    if not (math.isfinite(cfg.in_rate) and cfg.in_rate > 0):
        raise ArtifactError(f"{path / CONFIG_FILE}: in_rate {cfg.in_rate} is not a positive "
                            "frame rate")
    try:
        state = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError, FileNotFoundError) as e:
        raise ArtifactError(f"{path / WEIGHTS_FILE}: not readable mapper weights ({e})") from e
    # The sizes the config claims, checked against the weights before the model is built: a
    # mapper.json saying hidden 10^9 must not allocate first and fail after.
    for key, want in (("in_proj.weight", (cfg.hidden, cfg.in_dim, 1)),
                      ("out_proj.weight", (cfg.n_mels, cfg.hidden, 1))):
        got = tuple(state[key].shape) if key in state else None
        if got != want:
            raise ArtifactError(f"{path / WEIGHTS_FILE}: weights do not match {CONFIG_FILE}: "
                                f"{key} has shape {got}, {path / CONFIG_FILE} says {want} "
                                f"(in_dim {cfg.in_dim}, hidden {cfg.hidden}, n_mels {cfg.n_mels})")
    for prefix, want, name in (("blocks.", cfg.n_blocks, "n_blocks"),
                               ("transformer.layers.", cfg.n_transformer_layers,
                                "n_transformer_layers")):
        got = len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})
        if got != want:
            raise ArtifactError(f"{path / WEIGHTS_FILE}: weights do not match {CONFIG_FILE}: "
                                f"{got} {prefix[:-1]}, {path / CONFIG_FILE} says {name} {want}")
    bad = sorted(k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all())
    if bad:
        raise ArtifactError(f"{path / WEIGHTS_FILE}: non-finite weights in {', '.join(bad[:5])}"
                            f"{' ...' if len(bad) > 5 else ''}")
    model = Mapper(cfg)
    model.path = path  # named in identity errors
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"{path / WEIGHTS_FILE}: weights do not match {CONFIG_FILE} ({e})") from e
    return model.to(device).eval()


def _masked_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask[:, None].to(a.dtype)
    return ((a - b).abs() * m).sum() / (m.sum() * a.shape[1]).clamp_min(1.0)


def mapper_loss(pred: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor | None = None, log: str = "ln") -> torch.Tensor:
    """L1 + multi-resolution L1 + spectral convergence on (B, n_mels, T); `mask` (B, T) marks
    valid frames; `log` is the mels' base (MelConfig.log), which the linear-magnitude term
    undoes."""
    if pred.shape != target.shape:
        raise ConfigError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if mask is None:
        mask = torch.ones(pred.shape[0], pred.shape[2], dtype=torch.bool, device=pred.device)
    loss = _masked_l1(pred, target, mask)
    m = mask[:, None].to(pred.dtype)
    for f in POOL_FACTORS:
        if pred.shape[2] < f:
            break
        pm = F.avg_pool1d(m, f)
        # Average only over valid frames of each window; windows with no valid frame drop out.
        pp = F.avg_pool1d(pred * m, f) / pm.clamp_min(1e-6)
        tp = F.avg_pool1d(target * m, f) / pm.clamp_min(1e-6)
        loss = loss + _masked_l1(pp, tp, pm[:, 0] > 0)
    to_ln = math.log(10.0) if log == "log10" else 1.0
    lin_p = torch.exp((pred * to_ln).clamp(max=MAX_LOG_MEL)) * m
    lin_t = torch.exp(target * to_ln) * m
    sc = torch.linalg.norm((lin_t - lin_p).flatten(1), dim=1) / torch.linalg.norm(
        lin_t.flatten(1), dim=1).clamp_min(1e-6)
    return loss + sc.mean()
