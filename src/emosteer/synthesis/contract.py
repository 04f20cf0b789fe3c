"""The vocoder contract, stated once: what every vocoder offers, whatever builds it.

`.mel_config` (the exact log-mel it takes), `.sample_rate`, `.hop_length`, `.origin` (where
packaged weights come from), `.name` (what `load_vocoder` resolved), `.device`, and
`__call__(mel (B, n_mels, T)) -> (B, T * hop)` float32 audio (torch), plus numpy `vocode`.
A vocoder is an `nn.Module` that mixes this in; its own module defines `forward`.
"""

from __future__ import annotations

import numpy as np
import torch

from emosteer.errors import ConfigError
from emosteer.synthesis.mel import MelConfig


class Vocoder:
    """What every vocoder offers: `.mel_config`, `.sample_rate`, `.hop_length`,
    `__call__(mel (B, n_mels, T)) -> (B, T * hop)` (torch) and numpy `vocode`."""

    mel_config: MelConfig
    origin: dict | None = None  # where packaged weights come from (see PACKAGED_VOCODERS)
    name: str = ""  # the name or path load_vocoder resolved ("auto" becomes what it chose)

    @property
    def sample_rate(self) -> int:
        return self.mel_config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.mel_config.hop_length

    def _check_mel(self, mel: torch.Tensor) -> None:
        if not isinstance(mel, torch.Tensor) or mel.ndim != 3:
            shape = tuple(getattr(mel, "shape", ()))
            raise ConfigError(f"vocoder input: expected a torch mel (B, n_mels, T), got {shape}")
        if mel.shape[1] != self.mel_config.n_mels:
            raise ConfigError(f"vocoder input has {mel.shape[1]} mel bands; this vocoder expects "
                              f"{self.mel_config.n_mels}")
        if mel.shape[2] == 0:
            raise ConfigError("vocoder input has no frames")

    @property
    def device(self) -> torch.device:
        """Where the vocoder runs: the device of its first parameter or buffer."""
        tensors = (*self.parameters(), *self.buffers())  # type: ignore[attr-defined]
        return tensors[0].device if tensors else torch.device("cpu")

    @torch.inference_mode()
    def vocode(self, mel: np.ndarray) -> np.ndarray:
        """numpy log-mel (n_mels, T) -> float32 waveform (T * hop_length,)."""
        mel = np.asarray(mel, dtype=np.float32)
        if mel.ndim != 2:
            raise ConfigError(f"vocode: expected a log-mel (n_mels, T), got shape {mel.shape}")
        wav = self(torch.from_numpy(mel)[None].to(self.device))  # type: ignore[operator]
        return wav[0].float().cpu().numpy()
