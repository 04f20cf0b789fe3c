"""Steering: push a recording along an emotion axis and resynthesise it.

Two separate controls, so that each can be measured alone (`mode`):

- latent:  wav -> SSL frames at the axis layer -> frames + delta * calibration * unit
           -> mapper -> mel -> vocoder.
- prosody: WORLD analysis-resynthesis with delta x the learned ProsodyDelta (F0 level and
           range, vocal effort, rate). Emotion lives largely here; the latent push barely
           moves it, because the mapper is conditioned on the input's own F0 and energy.
- both:    prosody, then the latent push on the prosody-shifted audio.

How the latent push becomes audio (`decode`):

- differential (default): mel(input) + mapper(frames + delta * axis) - mapper(frames). The
  mapper's reconstruction error, not the push, is what destroys the voice when its output is
  vocoded directly (measured on unseen RAVDESS speakers with a random-init encoder: speaker
  similarity 0.56 and WER 0.29 at delta 0). Only the difference the push makes is decoded, so
  the mapper's bias cancels and delta 0 is exactly copy synthesis. The two mapper passes run as
  one batch of two.
- envelope: the same mel difference, applied to WORLD's spectral envelope instead of a mel
  that a vocoder renders: one WORLD analysis and one synthesis carry prosody and latent push
  together (no vocoder; output at 16 kHz). The push is taken from the input's own frames.
- full: the mapper's mel itself, vocoded: the plain round trip, kept to measure what the
  differential decoder saves.

Loudness matches the input unless `match_loudness=False`: absolute level is largely a property
of the recording, and vocal effort is carried by spectral tilt instead. Every output is
peak-limited to `audio.PEAK_CEILING`, so no delta makes it clip.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from emosteer.audio import SAMPLE_RATE, limit_peak, match_loudness, resample, validate_audio
from emosteer.axes import AXIS_JSON, EmotionAxis
from emosteer.embeddings.encoders import check_identity
from emosteer.errors import ConfigError
from emosteer.prosody.world import EnvelopeShift, ProsodyDelta, apply_prosody
from emosteer.synthesis.data import prosody_tracks
from emosteer.synthesis.mapper import CONFIG_FILE, load_mapper
from emosteer.synthesis.mel import log_mel_spectrogram, mel_basis
from emosteer.synthesis.vocoders import load_vocoder

log = logging.getLogger(__name__)

MODES = ("latent", "prosody", "both")
DECODES = ("differential", "envelope", "full")
FRAME_SELECTIONS = ("all", "voiced")
VOICED_THRESHOLD = 0.5  # the voicing track is interpolated onto SSL frames; majority vote
CHUNK_SECONDS = 20.0  # long inputs are steered in pieces of this length...
OVERLAP_SECONDS = 0.5  # ...cross-faded over this much, which hides the seams of both paths
PROSODY_FILE = "prosody.json"  # a ProsodyDelta saved inside an axis directory
# delta is in calibrated units: 1 moves the frames by the mean source -> target distance along
# the axis and applies the whole learned prosody change once. Three times that lies far outside
# both emotions' data (the mapper never saw such frames; WORLD would shift F0 by three times
# the learned interval and change the rate by its cube), so larger values are refused.
MAX_DELTA = 3.0


@dataclass(frozen=True)
class SteerConfig:
    mode: str = "latent"
    decode: str = "differential"
    frames: str = "all"
    match_loudness: bool = True
    chunk_seconds: float = CHUNK_SECONDS
    overlap_seconds: float = OVERLAP_SECONDS
    sample_rate: int | None = None  # output rate; default: the vocoder's (16 kHz for prosody)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.decode not in DECODES:
            raise ConfigError(f"decode {self.decode!r}: expected one of {', '.join(DECODES)}")
        if self.frames not in FRAME_SELECTIONS:
            raise ConfigError(f"frames {self.frames!r}: expected one of {', '.join(FRAME_SELECTIONS)}")
        if self.chunk_seconds <= 2 * self.overlap_seconds or self.overlap_seconds < 0:
            raise ConfigError("chunk_seconds must exceed twice overlap_seconds")


def mode_config(spec: str, **kwargs) -> SteerConfig:
    """A SteerConfig from "mode" or "mode:decode" ("latent", "both:envelope", "latent:full"):
    how an evaluation names the variants it compares side by side."""
    mode, _, decode = spec.partition(":")
    if decode and mode == "prosody":
        raise ConfigError(f"{spec!r}: prosody mode has no latent decoder to choose")
    return SteerConfig(mode=mode, decode=decode or SteerConfig.decode, **kwargs)


class Steerer:
    """Composes encoder, axis, mapper, vocoder and prosody delta into the steering operator.

    Any of encoder/mapper/vocoder may be None when only the prosody path is used. `bf16` runs
    the mapper and vocoder under bf16 autocast (the encoder has its own flag)."""

    def __init__(self, axis: EmotionAxis | None, encoder=None, mapper=None, vocoder=None,
                 prosody=None, bf16: bool = False):
        self.axis, self.encoder, self.mapper, self.vocoder, self.prosody = (
            axis, encoder, mapper, vocoder, prosody)
        self.bf16 = bool(bf16)
        check_parts(axis, encoder, mapper, vocoder)

    @classmethod
    def from_artifacts(cls, axis: EmotionAxis | str | Path | None = None, mapper=None,
                       vocoder="auto", prosody: ProsodyDelta | str | Path | None = None,
                       mode: str = "latent", model: str | None = None, device: str = "cpu",
                       bf16: bool = False, encoder=None, int8: bool = False) -> Steerer:
        """The one way to build a Steerer from saved (or already loaded) parts; loads only what
        `mode` needs. `axis`, `mapper` and `prosody` are paths or loaded objects, `vocoder` a
        name, a path or a loaded vocoder, `encoder` an already-loaded encoder to share. `int8`
        loads the encoder with int8 transformer linears (CPU; the mapper and vocoder keep `bf16`).

        Without `encoder`, the encoder is rebuilt from the mapper's recorded identity (the
        axis's if the mapper records none): same checkpoint, random-init flag and seed, so the
        same weights, which the weights hash confirms. `model` relocates the checkpoint. The
        prosody delta defaults to the axis directory's prosody.json. An axis may be omitted in
        the latent modes (add one with `with_axis`); the encoder then keeps the mapper's layer."""
        if mode not in MODES:
            raise ConfigError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        ax = EmotionAxis.load(axis) if isinstance(axis, (str, Path)) else axis
        pdelta = ProsodyDelta.load(prosody) if isinstance(prosody, (str, Path)) else prosody
        if pdelta is None and ax is not None and ax.path is not None \
                and (ax.path / PROSODY_FILE).is_file():
            pdelta = ProsodyDelta.load(ax.path / PROSODY_FILE)
        if mode == "prosody":
            return cls(ax, prosody=pdelta)
        if mapper is None:
            raise ConfigError(f"--mode {mode} needs --axis and --mapper")
        mp = load_mapper(mapper, device=device) if isinstance(mapper, (str, Path)) else mapper
        layer = ax.config.layer if ax is not None else mp.config.layer
        if encoder is None:
            ident, source = mp.config.encoder, _where(mp, "mapper", CONFIG_FILE)
            if not ident.model and ax is not None:
                ident, source = ax.config.encoder, _where(ax, "axis", AXIS_JSON)
            if not (model or ident.model):
                raise ConfigError(f"{source} names no encoder: pass --model")
            encoder = ident.load((layer,), source=source, model=model, device=device,
                                 bf16=bf16 and not int8, int8=int8)
        if vocoder == "auto" and mp.config.vocoder:  # the vocoder the mapper was trained for
            vocoder = mp.config.vocoder
        voc = load_vocoder(vocoder, device=device, mel_config=mp.config.mel) \
            if isinstance(vocoder, (str, Path)) else vocoder
        return cls(ax, encoder=encoder, mapper=mp, vocoder=voc, prosody=pdelta, bf16=bf16)

    def with_axis(self, axis: EmotionAxis, prosody: ProsodyDelta | None = None) -> Steerer:
        """A Steerer sharing this one's encoder, mapper and vocoder with another axis (and
        prosody delta): a reference axis in tts and the app. The same checks run."""
        return type(self)(axis, encoder=self.encoder, mapper=self.mapper, vocoder=self.vocoder,
                          prosody=prosody, bf16=self.bf16)

    # -- latent path -------------------------------------------------------------------------
    def _need_latent(self) -> None:
        missing = [n for n in ("axis", "encoder", "mapper", "vocoder") if getattr(self, n) is None]
        if missing:
            raise ConfigError(f"latent steering needs {', '.join(missing)}")

    def frames(self, wav: np.ndarray) -> np.ndarray:
        """SSL frames (T, D) of a 16 kHz waveform at the axis layer."""
        self._need_latent()
        feats = self.encoder.encode(wav)
        return feats[list(self.encoder.layers).index(self.axis.config.layer)]

    def prosody_tracks(self, wav: np.ndarray, n_frames: int) -> np.ndarray:
        return prosody_tracks(wav, SAMPLE_RATE, n_frames, self.mapper.config.in_rate)

    def map_frames(self, batch: Sequence[np.ndarray], tracks: np.ndarray | None) -> np.ndarray:
        """Frame arrays (T, D) of one utterance, sharing its prosody tracks (3, T), through the
        mapper as one batch -> log-mels (B, n_mels, T_out)."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(np.stack([f.T for f in batch]), dtype=np.float32))
        p = None
        if self.mapper.config.use_prosody:
            p = torch.from_numpy(np.ascontiguousarray(tracks, dtype=np.float32))[None]
            p = p.expand(len(batch), -1, -1)
        device = next(self.mapper.parameters()).device
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                    enabled=self.bf16):
            mel = self.mapper(x.to(device), None if p is None else p.to(device))
        return mel.float().cpu().numpy()

    def vocode(self, mel: np.ndarray) -> np.ndarray:
        """A log-mel (n_mels, T) -> waveform at the vocoder's rate."""
        import torch

        device = self.vocoder.device
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                    enabled=self.bf16):
            wav = self.vocoder(torch.from_numpy(np.ascontiguousarray(mel, np.float32))[None]
                               .to(device))
        return wav[0].float().cpu().numpy()

    def input_mel(self, wav: np.ndarray, n_frames: int) -> np.ndarray:
        """The log-mel (n_mels, n_frames) of a 16 kHz waveform in the mapper's mel definition,
        cut or floor-padded to the mapper's frame count as its training targets were."""
        cfg = self.mapper.config.mel_config
        mel = np.asarray(log_mel_spectrogram(resample(wav, SAMPLE_RATE, cfg.sample_rate), cfg))
        mel = mel[:, :n_frames]
        if mel.shape[1] < n_frames:
            mel = np.pad(mel, ((0, 0), (0, n_frames - mel.shape[1])),
                         constant_values=cfg.log_floor)
        return mel

    def push(self, wav: np.ndarray, delta: float, frames: str
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(frames, steered frames, prosody tracks) of a 16 kHz waveform."""
        feats = self.frames(wav)
        tracks = self.prosody_tracks(wav, feats.shape[0])
        steered = self.axis.steer(feats, delta)
        if frames == "voiced":
            steered = np.where((tracks[1] > VOICED_THRESHOLD)[:, None], steered, feats)
        return feats, steered, tracks

    def mel_difference(self, wav: np.ndarray, delta: float, frames: str = "all") -> np.ndarray:
        """mapper(frames + delta * axis) - mapper(frames): what the push does to the mel.
        Exactly zero where the push leaves the frames alone (delta 0, unvoiced frames)."""
        if delta == 0:  # no push: neither the encoder nor the mapper needs to run
            self._need_latent()
            n = self.mapper.out_length(self.encoder.n_frames(len(wav)))
            return np.zeros((self.mapper.config.n_mels, n), np.float32)
        feats, steered, tracks = self.push(wav, delta, frames)
        if np.array_equal(steered, feats):
            n = self.mapper.out_length(feats.shape[0])
            return np.zeros((self.mapper.config.n_mels, n), np.float32)
        pushed, base = self.map_frames([steered, feats], tracks)
        return pushed - base

    def latent_mel(self, wav: np.ndarray, delta: float, frames: str = "all",
                   decode: str = "differential") -> np.ndarray:
        """The steered log-mel of a 16 kHz waveform (`decode` differential or full)."""
        if decode == "full":
            _, steered, tracks = self.push(wav, delta, frames)
            return self.map_frames([steered], tracks)[0]
        diff = self.mel_difference(wav, delta, frames)
        return self.input_mel(wav, diff.shape[1]) + diff

    def latent(self, wav: np.ndarray, delta: float, frames: str = "all",
               decode: str = "differential") -> np.ndarray:
        """The latent push alone, vocoded; returns audio at the vocoder's rate."""
        return self.vocode(self.latent_mel(wav, delta, frames, decode))

    def envelope_shift(self, wav: np.ndarray, delta: float, frames: str = "all") -> EnvelopeShift:
        """The push's mel difference as a change of spectral envelope over time: band centres
        are the filters' mean frequencies, frame m is centred at (m + 0.5) hops."""
        self._need_latent()
        diff = self.mel_difference(wav, delta, frames)
        cfg = self.mapper.config.mel_config
        basis = mel_basis(cfg)
        bins = np.arange(basis.shape[1]) * cfg.sample_rate / cfg.n_fft
        freqs = (basis @ bins) / np.maximum(basis.sum(axis=1), 1e-12)
        times = (np.arange(diff.shape[1]) + 0.5) * cfg.hop_length / cfg.sample_rate
        return EnvelopeShift(diff, freqs, times)

    # -- prosody path ------------------------------------------------------------------------
    def prosody_shift(self, wav: np.ndarray, delta: float) -> np.ndarray:
        if self.prosody is None:
            raise ConfigError("prosody steering needs a prosody delta (an axis directory with "
                              f"{PROSODY_FILE}, or --prosody FILE)")
        if delta == 0:
            return wav
        return apply_prosody(wav, SAMPLE_RATE, self.prosody, scale=delta)

    # -- public ------------------------------------------------------------------------------
    def output_rate(self, cfg: SteerConfig) -> int:
        if cfg.sample_rate:
            return int(cfg.sample_rate)
        if cfg.mode == "prosody" or cfg.decode == "envelope":
            return SAMPLE_RATE
        return int(self.vocoder.sample_rate)

    def _steer_chunk(self, wav: np.ndarray, delta: float, cfg: SteerConfig) -> tuple[np.ndarray, int]:
        if cfg.mode != "prosody" and cfg.decode == "envelope":
            if cfg.mode == "both" and self.prosody is None:
                self.prosody_shift(wav, delta)  # raises the missing-delta error
            pdelta = self.prosody if cfg.mode == "both" else None
            shift = self.envelope_shift(wav, delta, cfg.frames)
            return apply_prosody(wav, SAMPLE_RATE, pdelta, scale=delta, envelope=shift), SAMPLE_RATE
        if cfg.mode in ("prosody", "both"):
            wav = self.prosody_shift(wav, delta)
        if cfg.mode == "prosody":
            return wav, SAMPLE_RATE
        return self.latent(wav, delta, cfg.frames, cfg.decode), int(self.vocoder.sample_rate)

    @staticmethod
    def same_output_as(cfg: SteerConfig, delta: float) -> SteerConfig:
        """The simplest config whose output at `delta` is bit-identical to `cfg`'s: at delta 0
        there is no push and the prosody shift is the identity, so "both" is "latent" and the
        frame selection does not matter (envelope decoding resynthesises through WORLD either
        way, and is left as it is)."""
        if delta == 0 and cfg.mode != "prosody" and cfg.decode != "envelope":
            return replace(cfg, mode="latent", frames="all")
        return cfg

    def steer(self, wav: np.ndarray, delta: float, cfg: SteerConfig | None = None,
              source: str = "<input>") -> tuple[np.ndarray, int]:
        """Steer a 16 kHz mono waveform by `delta`; returns (audio, sample_rate)."""
        cfg = cfg or SteerConfig()
        delta = check_delta(delta)
        wav = validate_audio(np.asarray(wav, dtype=np.float32), source)
        pieces = []
        sr = None
        for start, stop in chunk_bounds(len(wav), SAMPLE_RATE, cfg.chunk_seconds, cfg.overlap_seconds):
            y, sr = self._steer_chunk(wav[start:stop], delta, cfg)
            pieces.append((start, stop, y))
        out = crossfade_join(pieces, len(wav), SAMPLE_RATE, sr, cfg.overlap_seconds)
        out_sr = self.output_rate(cfg)
        out = resample(out, sr, out_sr)
        out = match_loudness(out, wav, out_sr) if cfg.match_loudness else limit_peak(out, out_sr)
        return out.astype(np.float32), out_sr

    def sweep(self, wav: np.ndarray, deltas: Sequence[float], modes: Iterable[str] = ("latent",),
              frames: str = "all", source: str = "<input>", decode: str = "differential"
              ) -> dict[tuple[str, float], tuple[np.ndarray, int]]:
        """Every (mode, delta) combination of one input."""
        return {(m, float(d)): self.steer(wav, d, SteerConfig(m, decode, frames), source)
                for m in modes for d in deltas}


def check_delta(delta: float) -> float:
    """`delta` as a float in [-MAX_DELTA, MAX_DELTA], else a ConfigError saying what it means."""
    try:
        delta = float(delta)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"delta {delta!r} is not a number") from e
    if not math.isfinite(delta) or abs(delta) > MAX_DELTA:
        raise ConfigError(
            f"delta {delta:g}: must lie in [-{MAX_DELTA:g}, {MAX_DELTA:g}] (delta 1 is the "
            f"mean distance between the two emotions along the axis; {MAX_DELTA:g} is "
            f"{MAX_DELTA:g} times that, beyond the data the mapper and prosody were learned on)")
    return delta


def chunk_bounds(n: int, sr: int, chunk_seconds: float, overlap_seconds: float
                 ) -> list[tuple[int, int]]:
    """Sample ranges of overlapping chunks covering [0, n); a short input is one chunk."""
    size, ov = int(chunk_seconds * sr), int(overlap_seconds * sr)
    if n <= size:
        return [(0, n)]
    bounds, start = [], 0
    while True:
        stop = min(n, start + size)
        if n - stop < sr:  # do not leave a sliver shorter than a second for the last chunk
            stop = n
        bounds.append((start, stop))
        if stop >= n:
            return bounds
        start = stop - ov


def crossfade_join(pieces: list[tuple[int, int, np.ndarray]], n_in: int, sr_in: int, sr_out: int,
                   overlap_seconds: float) -> np.ndarray:
    """Join steered chunks, linearly cross-fading their overlaps.

    A chunk's output may be longer or shorter than its input (rate change), so positions are
    mapped through each chunk's own output/input length ratio."""
    if len(pieces) == 1:
        return pieces[0][2]
    out = pieces[0][2]
    for (start, stop, y), (_, p_stop, _) in zip(pieces[1:], pieces[:-1], strict=True):
        ratio = len(y) / max(1, stop - start)
        ov = int(round((p_stop - start) * ratio))
        ov = max(0, min(ov, len(out), len(y)))
        if ov:
            ramp = np.linspace(0.0, 1.0, ov, dtype=np.float32)
            out[len(out) - ov:] = out[len(out) - ov:] * (1 - ramp) + y[:ov] * ramp
        out = np.concatenate([out, y[ov:]])
    return out


def _where(artifact, kind: str, filename: str) -> str:
    """The file an artifact was loaded from, for error messages ("the mapper" if in memory)."""
    path = getattr(artifact, "path", None)
    return str(Path(path) / filename) if path is not None else f"the {kind}"


def _prefix(artifact, filename: str) -> str:
    """'PATH/FILE: ' for an artifact loaded from disk, '' for one built in memory."""
    path = getattr(artifact, "path", None)
    return f"{Path(path) / filename}: " if path is not None else ""


def check_parts(axis, encoder, mapper, vocoder) -> None:
    """Every consistency check between a Steerer's parts (any may be None); each error names
    the files of the parts that disagree."""
    m_src, a_src = _prefix(mapper, CONFIG_FILE), _prefix(axis, AXIS_JSON)
    if mapper is not None and vocoder is not None:
        m, v = mapper.config.mel, vocoder.mel_config
        if (m.sample_rate, m.hop_length, m.n_mels) != (v.sample_rate, v.hop_length, v.n_mels):
            name = getattr(vocoder, "name", "") or type(vocoder).__name__
            raise ConfigError(
                f"{m_src}the mapper produces {m.n_mels} mels at {m.sample_rate} Hz / hop "
                f"{m.hop_length}, the vocoder expects {v.n_mels} at {v.sample_rate} Hz / hop "
                f"{v.hop_length} (vocoder {name})")
    if mapper is not None and axis is not None and mapper.config.layer != axis.config.layer:
        raise ConfigError(f"{m_src}the mapper reads layer {mapper.config.layer}, the axis "
                          f"is at layer {axis.config.layer} ({a_src.rstrip(': ') or 'in memory'})")
    if mapper is not None and axis is not None and mapper.config.in_dim != axis.config.dim:
        raise ConfigError(f"{m_src}the mapper reads {mapper.config.in_dim}-dim frames, the "
                          f"axis has {axis.config.dim} dims ({a_src.rstrip(': ') or 'in memory'})")
    if encoder is None:
        return
    if axis is not None and axis.config.layer not in encoder.layers:
        raise ConfigError(f"{a_src}the encoder does not compute the axis layer "
                          f"{axis.config.layer}")
    if mapper is not None and mapper.config.layer not in encoder.layers:
        raise ConfigError(f"{m_src}the encoder does not compute the mapper's layer "
                          f"{mapper.config.layer}")
    hidden = encoder.config.hidden_size
    if axis is not None and hidden != axis.config.dim:
        raise ConfigError(f"{a_src}the encoder has {hidden} dims, the axis {axis.config.dim}")
    if mapper is not None and hidden != mapper.config.in_dim:
        raise ConfigError(f"{m_src}the encoder has {hidden} dims, the mapper reads "
                          f"{mapper.config.in_dim}")
    actual = encoder.config.identity()
    if mapper is not None:
        check_identity(mapper.config.encoder, actual, _where(mapper, "mapper", CONFIG_FILE))
    if axis is not None:
        check_identity(axis.config.encoder, actual, _where(axis, "axis", AXIS_JSON))
