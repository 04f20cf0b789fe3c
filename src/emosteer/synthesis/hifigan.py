"""HiFi-GAN generator (Kong et al. 2020), module-for-module identical to jik876's
`models.Generator`, so the public `g_02500000` checkpoints load with strict=True.

jik876 trains with weight normalisation and stores each normalised conv as `weight_g`
(magnitude) and `weight_v` (direction). Inference needs only the product, so the generator here
is built with plain convolutions and `fold_weight_norm` turns g/v pairs into `weight` before a
strict load: the same as loading into a weight-normed model and calling remove_weight_norm.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import torch
import torch.nn.functional as F
from torch import nn

from emosteer.errors import ArtifactError, ConfigError

LRELU_SLOPE = 0.1  # jik876 models.LRELU_SLOPE, used inside the generator
POST_LRELU_SLOPE = 0.01  # jik876 calls F.leaky_relu(x) before conv_post with torch's default slope
PRE_KERNEL = 7  # conv_pre and conv_post: kernel 7, padding 3 in jik876


@dataclass(frozen=True)
class HiFiGANConfig:
    """Generator hyper-parameters, named as in jik876's config_v*.json."""

    resblock: str = "1"
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    num_mels: int = 80

    def __post_init__(self) -> None:
        if self.resblock not in ("1", "2"):
            raise ConfigError(f"HiFiGANConfig: resblock must be '1' or '2', got {self.resblock!r}")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes) or not self.upsample_rates:
            raise ConfigError("HiFiGANConfig: upsample_rates and upsample_kernel_sizes differ in length")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ConfigError("HiFiGANConfig: resblock kernel and dilation lists differ in length")
        if self.upsample_initial_channel % 2 ** len(self.upsample_rates):
            raise ConfigError("HiFiGANConfig: upsample_initial_channel must halve at every upsample")

    @property
    def hop_length(self) -> int:
        """Samples per mel frame: the product of the upsampling rates (256 for V1-V3)."""
        return prod(self.upsample_rates)


# The three published configurations (jik876/hifi-gan config_v1/v2/v3.json).
V1 = HiFiGANConfig()
V2 = HiFiGANConfig(upsample_initial_channel=128)
V3 = HiFiGANConfig(resblock="2", upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8),
                   upsample_initial_channel=256, resblock_kernel_sizes=(3, 5, 7),
                   resblock_dilation_sizes=((1, 2), (2, 6), (3, 12)))
VERSIONS = {"v1": V1, "v2": V2, "v3": V3}


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


class ResBlock1(nn.Module):
    def __init__(self, channels: int, kernel_size: int = 3, dilation: tuple[int, ...] = (1, 3, 5)):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, 1, dilation=d,
                      padding=get_padding(kernel_size, d)) for d in dilation)
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, 1, dilation=1,
                      padding=get_padding(kernel_size, 1)) for _ in dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            xt = c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
            x = xt + x
        return x


class ResBlock2(nn.Module):
    def __init__(self, channels: int, kernel_size: int = 3, dilation: tuple[int, ...] = (1, 3)):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, 1, dilation=d,
                      padding=get_padding(kernel_size, d)) for d in dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c in self.convs:
            x = c(F.leaky_relu(x, LRELU_SLOPE)) + x
        return x


class Generator(nn.Module):
    """jik876 `models.Generator`: mel (B, num_mels, T) -> waveform (B, 1, T * hop_length)."""

    def __init__(self, cfg: HiFiGANConfig = V1):
        super().__init__()
        self.hifigan_config = cfg
        self.num_kernels = len(cfg.resblock_kernel_sizes)
        self.num_upsamples = len(cfg.upsample_rates)
        ch0 = cfg.upsample_initial_channel
        self.conv_pre = nn.Conv1d(cfg.num_mels, ch0, PRE_KERNEL, 1, padding=PRE_KERNEL // 2)
        block = ResBlock1 if cfg.resblock == "1" else ResBlock2
        self.ups = nn.ModuleList(
            nn.ConvTranspose1d(ch0 // 2**i, ch0 // 2 ** (i + 1), k, u, padding=(k - u) // 2)
            for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True)))
        self.resblocks = nn.ModuleList()
        ch = ch0
        for i in range(self.num_upsamples):
            ch = ch0 // 2 ** (i + 1)
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True):
                self.resblocks.append(block(ch, k, tuple(d)))
        self.conv_post = nn.Conv1d(ch, 1, PRE_KERNEL, 1, padding=PRE_KERNEL // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(x)
        for i in range(self.num_upsamples):
            x = self.ups[i](F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            xs = blocks[0](x)
            for b in blocks[1:]:
                xs = xs + b(x)
            x = xs / self.num_kernels
        x = self.conv_post(F.leaky_relu(x, POST_LRELU_SLOPE))
        return torch.tanh(x)


def fold_weight_norm(state: dict[str, torch.Tensor], source: str = "checkpoint"
                     ) -> dict[str, torch.Tensor]:
    """Replace every `X.weight_g`/`X.weight_v` pair by `X.weight = g * v / ||v||`.

    The norm runs over every axis where g has size 1, which covers weight_norm's dim=0 for
    Conv1d (g: (out, 1, 1)) and ConvTranspose1d (g: (in, 1, 1)) alike."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(".weight_v"):
            continue
        if key.endswith(".weight_g"):
            stem = key[: -len(".weight_g")]
            v = state.get(stem + ".weight_v")
            if v is None:
                raise ArtifactError(f"{source}: {key} has no matching {stem}.weight_v")
            g = value.float()
            if g.ndim != v.ndim:
                raise ArtifactError(f"{source}: {key} and weight_v differ in rank")
            dims = [d for d in range(v.ndim) if g.shape[d] == 1]
            v = v.float()
            out[stem + ".weight"] = g * v / torch.linalg.vector_norm(v, dim=dims, keepdim=True)
        else:
            out[key] = value
    orphans = [k for k in state if k.endswith(".weight_v") and k[:-1] + "g" not in state]
    if orphans:
        raise ArtifactError(f"{source}: weight_v without weight_g: {orphans[:3]}")
    return out


def split_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `fold_weight_norm` (g = ||w||, v = w) for every conv weight: writes a state
    dict in jik876's on-disk layout (used by tests and by anyone training with jik876 code)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(".weight") and value.ndim == 3:
            stem = key[: -len(".weight")]
            dims = list(range(1, value.ndim))
            out[stem + ".weight_g"] = torch.linalg.vector_norm(value, dim=dims, keepdim=True)
            out[stem + ".weight_v"] = value.clone()
        else:
            out[key] = value
    return out


def load_generator_state(gen: Generator, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load with the mismatch reported as an ArtifactError naming `source`."""
    if any(k.endswith(".weight_g") for k in state):
        state = fold_weight_norm(state, source)
    expected = gen.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ArtifactError(
            f"{source}: not a HiFi-GAN generator of this configuration "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})"
        )
    bad = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if bad:
        k = bad[0]
        raise ArtifactError(f"{source}: {k} has shape {tuple(state[k].shape)}, the config "
                            f"implies {tuple(expected[k].shape)} (wrong config.json?)")
    gen.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
