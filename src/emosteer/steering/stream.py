"""Real-time steering: `steer.Steerer` applied to a live stream, block by block.

Mechanism (overlap and crossfade). Input arrives in blocks of B samples at 16 kHz. Output for
the input span [s, s + B) is computed once the input has reached s + B + L (L = lookahead), from
one sliding window [s - C, s + B + L) (C = left context):

- latent: the SSL encoder runs on the whole window; the frames are pushed along the axis; the
  mapper and vocoder decode only the frames from `decode_context` before s to the window's end
  (their receptive field is local, the encoder's is not: it is bidirectional, so a finite window
  is an approximation whose cost `benchmarks/stream.py` measures against offline steering).
  Decoding is the offline Steerer's (`decode`): differential adds the push's mel difference to
  the window's own mel on the file's mel grid; full vocodes the mapper's mel. The envelope
  decoder is offline only (WORLD's analysis is not block-local).
- prosody: WORLD analysis-resynthesis of the window (F0 level and range, vocal effort, level,
  envelope, aperiodicity, dynamics). Rate and pauses are left out (a stream played faster or
  slower than it arrives has no bounded latency), and so is the F0 contour, whose onset and
  final slope belong to the whole utterance, not to a window.
- both: prosody on the window, then the latent path on the shifted window.

Window starts are multiples of the SSL hop (320 samples = 20 ms), so every window sees the
offline frame grid and output sample k of a window maps to input time (s - C)/16000 + k/sr_out.
Consecutive windows overlap: window n also computes the first X output samples after its block
(X = crossfade <= L), and window n+1 fades its own first X samples in over them, which hides the
seam without delaying anything. Loudness follows the offline `match_loudness` with a running
gain (all input so far over all output so far), ramped across each block.

Latency (input sample to output sample) of the first sample of a block, the worst case:

    latency = B + L + compute(window)          algorithmic part: B + L

where compute(window) is the wall time of one step. Real time needs compute(window) < B, i.e.
a real-time factor compute / B below 1. The latent path needs L >= 20 ms: the CNN front end's
400-sample receptive field reaches 80 samples past the last frame of the block.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from emosteer.audio import MIN_SAMPLES, SAMPLE_RATE, SILENCE_PEAK, SSL_HOP, limit_peak, resample
from emosteer.embeddings.encoders import n_frames
from emosteer.errors import AudioError, ConfigError
from emosteer.prosody.world import apply_prosody
from emosteer.steering.steer import MODES, Steerer, check_delta
from emosteer.synthesis.data import out_frames
from emosteer.synthesis.mel import log_mel_spectrogram

log = logging.getLogger(__name__)

HOP_MS = 1000.0 * SSL_HOP / SAMPLE_RATE  # 20 ms: block, lookahead and context are multiples
# HiFi-GAN's conv_pre reaches 3 mel frames either side and its upsampling resblocks add under
# one more; Griffin-Lim's 1024-sample window spans 4 hops. 4 frames covers both.
VOCODER_CONTEXT_MEL_FRAMES = 4
STREAM_DECODES = ("differential", "full")
STREAM_OFFLINE_COMPONENTS = ("rate", "pauses", "contour")  # ProsodyDelta parts a window lacks


@dataclass(frozen=True)
class StreamConfig:
    """Block geometry (ms, multiples of the 20 ms SSL hop except the crossfade) and steering."""

    mode: str = "latent"
    decode: str = "differential"  # or "full"; see steering.steer
    block_ms: float = 100.0
    lookahead_ms: float = 100.0
    context_ms: float = 500.0
    crossfade_ms: float = 10.0
    frames: str = "all"
    match_loudness: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.decode not in STREAM_DECODES:
            raise ConfigError(f"decode {self.decode!r}: streaming supports "
                              f"{', '.join(STREAM_DECODES)}")
        for name in ("block_ms", "lookahead_ms", "context_ms"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0 or abs(v / HOP_MS - round(v / HOP_MS)) > 1e-9:
                raise ConfigError(f"{name} {v}: must be a non-negative multiple of {HOP_MS:g} ms")
        if self.block_ms <= 0:
            raise ConfigError("block_ms must be positive")
        if not 0 <= self.crossfade_ms <= self.lookahead_ms:
            raise ConfigError(f"crossfade_ms {self.crossfade_ms} must lie in [0, lookahead_ms]: "
                              "the fade is taken from the previous window's lookahead")
        if self.mode != "prosody" and self.lookahead_ms < HOP_MS:
            raise ConfigError(f"latent steering needs lookahead_ms >= {HOP_MS:g}: the encoder's "
                              f"{MIN_SAMPLES}-sample receptive field reaches past the block")

    @property
    def block(self) -> int:
        return _samples(self.block_ms)

    @property
    def lookahead(self) -> int:
        return _samples(self.lookahead_ms)

    @property
    def context(self) -> int:
        return _samples(self.context_ms)

    @property
    def algorithmic_latency_ms(self) -> float:
        """B + L: how long the first sample of a block waits before its window is complete."""
        return self.block_ms + self.lookahead_ms


def _samples(ms: float) -> int:
    return int(round(ms * SAMPLE_RATE / 1000))


class StreamingSteerer:
    """Steer a stream: `process(block)` returns whatever output is ready, `flush()` the rest,
    `stream(blocks)` does both as an iterator. Not thread-safe; one instance per stream."""

    def __init__(self, steerer: Steerer, delta: float, config: StreamConfig | None = None):
        cfg = config or StreamConfig()
        self.steerer, self.delta, self.config = steerer, check_delta(delta), cfg
        self.prosody = None
        if cfg.mode in ("prosody", "both"):
            if steerer.prosody is None:
                raise ConfigError("prosody steering needs a prosody delta (an axis directory "
                                  "with prosody.json, or --prosody FILE)")
            # A stream cannot run faster or slower than its input, and a window knows
            # neither the utterance's onset nor its end, so timing and contour stay offline.
            offline = [c for c in STREAM_OFFLINE_COMPONENTS if c in steerer.prosody.components]
            if offline:
                log.info("streaming leaves out the prosody components %s (timing and the "
                         "utterance-level F0 contour)", ", ".join(offline))
            self.prosody = steerer.prosody.without(*STREAM_OFFLINE_COMPONENTS)
        if cfg.mode == "prosody":
            self.sample_rate = SAMPLE_RATE
            self.decode_context = 0
        else:
            steerer._need_latent()
            self.sample_rate = int(steerer.vocoder.sample_rate)
            self.decode_context = decode_context_frames(steerer)
        if (SSL_HOP * self.sample_rate) % SAMPLE_RATE:
            raise ConfigError(f"output rate {self.sample_rate} Hz: 20 ms must be a whole number "
                              "of output samples for the windows to line up")
        self.reset()

    def reset(self) -> None:
        """Forget the stream so far (a new utterance)."""
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0  # stream index of _buf[0]
        self._n_in = 0  # input samples received
        self._next = 0  # stream index of the next block to emit
        self._n_out = 0  # output samples emitted
        self._tail: np.ndarray | None = None
        self._final = False
        self._energy_in = self._energy_out = 0.0
        self._gain = 1.0
        self._peak = 0.0
        self.step_seconds: list[float] = []  # wall time of each step (latency accounting)

    # -- geometry ----------------------------------------------------------------------------
    def out_index(self, n_in: int) -> int:
        """The output sample that corresponds to input sample `n_in` (rates differ)."""
        return n_in * self.sample_rate // SAMPLE_RATE

    def expected_length(self, n_in: int) -> int:
        """Output length for `n_in` input samples: the offline Steerer's, so that a stream and
        an offline run of the same file line up sample for sample."""
        if self.config.mode == "prosody":
            return n_in

        cfg = self.steerer.mapper.config
        return out_frames(n_frames(n_in), cfg.in_rate, cfg.out_rate) * cfg.mel_config.hop_length

    # -- public ------------------------------------------------------------------------------
    def process(self, block: np.ndarray) -> np.ndarray:
        """Take the next input block (any length, 16 kHz mono); return the output now ready."""
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 1:
            raise AudioError(f"stream block: expected mono samples (T,), got shape {block.shape}")
        if not np.all(np.isfinite(block)):
            raise AudioError(f"stream block at sample {self._n_in}: contains NaN or Inf")
        self._buf = np.concatenate([self._buf, block])
        self._n_in += len(block)
        if block.size:
            self._peak = max(self._peak, float(np.max(np.abs(block))))
        cfg, out = self.config, []
        while self._next + cfg.block + cfg.lookahead <= self._n_in:
            out.append(self._step(self._next, self._next + cfg.block))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def flush(self) -> np.ndarray:
        """End of stream: emit the rest (its lookahead is whatever input there is) and trim to
        the offline length."""
        if self._n_in < MIN_SAMPLES:
            raise AudioError(f"stream too short: {self._n_in} samples (need {MIN_SAMPLES})")
        if self._peak < SILENCE_PEAK:
            raise AudioError(f"stream all silent (peak {self._peak:.2e})")
        out, before = [], self._n_out
        self._final = True  # windows now end at the stream's end: offline's last mel frame
        while self._next < self._n_in:
            out.append(self._step(self._next, min(self._n_in, self._next + self.config.block)))
        y = np.concatenate(out) if out else np.zeros(0, np.float32)
        want = max(0, self.expected_length(self._n_in) - before)
        y = y[:want] if len(y) >= want else np.pad(y, (0, want - len(y)))
        self._n_out = before + len(y)
        return y

    def stream(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Steer an iterable of input blocks, yielding output blocks as soon as they are ready."""
        for block in blocks:
            y = self.process(block)
            if y.size:
                yield y
        y = self.flush()
        if y.size:
            yield y

    def run(self, wav: np.ndarray) -> np.ndarray:
        """Stream a whole array in blocks of `block_ms` (a simulated live source)."""
        b = self.config.block
        return np.concatenate(list(self.stream(wav[i:i + b] for i in range(0, len(wav), b))))

    # -- one step ----------------------------------------------------------------------------
    def _step(self, s: int, e: int) -> np.ndarray:
        t0 = time.perf_counter()
        cfg = self.config
        w0 = max(0, s - cfg.context)
        w1 = min(self._n_in, e + cfg.lookahead)
        window = self._buf[w0 - self._buf_start:w1 - self._buf_start]
        y = self._window_output(window, w0, s)
        a, b = self.out_index(s - w0), self.out_index(e - w0)
        xf = self.out_index(_samples(cfg.crossfade_ms))
        y = np.pad(y, (0, max(0, b + xf - len(y))))
        piece = y[a:b].copy()
        if self._tail is not None and xf:
            n = min(xf, len(piece))
            ramp = (np.arange(n, dtype=np.float32) + 0.5) / n
            piece[:n] = self._tail[:n] * (1 - ramp) + piece[:n] * ramp
        self._tail = y[b:b + xf].copy()
        if cfg.match_loudness:
            piece = self._level(piece, window[s - w0:e - w0])
        self._next = e
        self._n_out += len(piece)
        drop = max(0, e - cfg.context - self._buf_start)  # keep only what later windows read
        self._buf, self._buf_start = self._buf[drop:], self._buf_start + drop
        self.step_seconds.append(time.perf_counter() - t0)
        return piece.astype(np.float32)

    def _window_output(self, window: np.ndarray, w0: int, s: int) -> np.ndarray:
        """Steered audio of one window at the output rate, sample 0 at input time w0."""
        n_out = self.out_index(len(window))
        if len(window) < MIN_SAMPLES or float(np.max(np.abs(window))) < SILENCE_PEAK:
            return np.zeros(n_out, np.float32)  # silence in, silence out (nothing to analyse)
        if self.prosody is not None and self.delta != 0:
            y = apply_prosody(window, SAMPLE_RATE, self.prosody, scale=self.delta)
            window = np.pad(y, (0, max(0, len(window) - len(y))))[:len(window)]
        if self.config.mode == "prosody":
            return window
        st = self.steerer
        feats, steered, tracks = st.push(window, self.delta, self.config.frames)
        f_lo = max(0, (s - w0) // SSL_HOP - self.decode_context)  # the mapper/vocoder's reach
        g0 = w0 // SSL_HOP + f_lo  # global index of the first frame decoded
        hop = st.mapper.config.mel_config.hop_length
        m_lo = -(-self.out_index(g0 * SSL_HOP) // hop)  # first whole global mel frame
        t_end = w0 // SSL_HOP + feats.shape[0]
        m_hi = (out_frames(t_end, st.mapper.config.in_rate, st.mapper.config.out_rate)
                if self._final else self.out_index(t_end * SSL_HOP) // hop)
        out = np.zeros(n_out, np.float32)
        if m_hi <= m_lo:
            return out
        if self.config.decode == "full":
            mel = map_on_grid(st, [steered[f_lo:]], tracks[:, f_lo:], g0, m_lo, m_hi)[0]
        else:
            mel = mel_on_grid(st, window, w0, m_lo, m_hi)
            if not np.array_equal(steered, feats):
                pushed, base = map_on_grid(st, [steered[f_lo:], feats[f_lo:]], tracks[:, f_lo:],
                                           g0, m_lo, m_hi)
                mel = mel + (pushed - base)
        y = st.vocode(mel)
        o = m_lo * hop - self.out_index(w0)
        n = max(0, min(len(y), n_out - o))
        out[o:o + n] = y[:n]
        return out

    def _level(self, piece: np.ndarray, source: np.ndarray) -> np.ndarray:
        """Running loudness match, ramped from the previous block's gain to this one's."""
        self._energy_in += float(np.sum(np.square(source, dtype=np.float64)))
        self._energy_out += float(np.sum(np.square(piece, dtype=np.float64)))
        gain = self._gain
        if self._energy_out > 0 and self._energy_in > 0:
            ratio = self.out_index(1_000_000) / 1_000_000  # per-sample energy: rates differ
            gain = math.sqrt(self._energy_in * ratio / self._energy_out)
        ramp = np.linspace(self._gain, gain, len(piece), dtype=np.float32)
        self._gain = gain
        return limit_peak(piece * ramp, self.sample_rate)

    # -- accounting --------------------------------------------------------------------------
    def latency_report(self) -> dict:
        """Algorithmic latency B + L, measured compute per step and the real-time factor."""
        steps = np.asarray(self.step_seconds or [0.0])
        block_s = self.config.block_ms / 1000
        return {"block_ms": self.config.block_ms, "lookahead_ms": self.config.lookahead_ms,
                "context_ms": self.config.context_ms,
                "algorithmic_ms": self.config.algorithmic_latency_ms,
                "compute_ms_mean": 1000 * float(steps.mean()),
                "compute_ms_p95": 1000 * float(np.percentile(steps, 95)),
                "latency_ms_p95": self.config.algorithmic_latency_ms
                + 1000 * float(np.percentile(steps, 95)),
                "rtf": float(steps.mean()) / block_s, "steps": len(self.step_seconds)}


def map_on_grid(steerer: Steerer, batch: list[np.ndarray], tracks: np.ndarray,
                first_frame: int, m_lo: int, m_hi: int) -> np.ndarray:
    """`Steerer.map_frames` of frames (T, D) that start at global SSL frame `first_frame`,
    emitting the global mel frames [m_lo, m_hi): the offline mel grid, whatever the window's
    start -> (B, n_mels, m_hi - m_lo).

    A window starts on the 20 ms SSL grid, but the 11.6 ms mel grid of the whole file repeats
    only every 5.12 s, so `Mapper.forward` on a crop would sample its interpolation at
    positions shifted by a fraction of a mel frame, and the vocoder would render a slightly
    different signal (measured: ~28 dB SNR against offline even with whole-file windows).
    `Mapper.forward(grid=...)` samples its interpolation on the global grid instead."""
    import torch

    device = next(steerer.mapper.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(np.stack([f.T for f in batch]), dtype=np.float32))
    p = None
    if steerer.mapper.config.use_prosody:
        p = torch.from_numpy(np.ascontiguousarray(tracks, dtype=np.float32))[None]
        p = p.expand(len(batch), -1, -1).to(device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                enabled=steerer.bf16):
        mel = steerer.mapper(x.to(device), p, grid=(first_frame, m_lo, m_hi))
    return mel.float().cpu().numpy()


def mel_on_grid(steerer: Steerer, window: np.ndarray, w0: int, m_lo: int, m_hi: int
                ) -> np.ndarray:
    """The global mel frames [m_lo, m_hi) of the file, computed from a 16 kHz window that
    starts at file sample w0 -> (n_mels, m_hi - m_lo), as `Steerer.input_mel` computes them
    from the whole file.

    The mel is taken over the window plus `reach` frames either side, starting on a global
    frame boundary, so every frame whose analysis window lies inside the window is exact; at
    the file's start and end the window's edge is the file's, padded as offline. Frames the
    window cannot reach get the log floor, as offline pads past the file's end."""
    cfg = steerer.mapper.config.mel_config
    x = resample(window, SAMPLE_RATE, cfg.sample_rate)
    hop = cfg.hop_length
    o = w0 * cfg.sample_rate // SAMPLE_RATE  # file sample of x[0]: w0 lies on the SSL grid
    reach = -(-cfg.pad // hop) + 1
    first = max(m_lo - reach, -(-o // hop))  # the first global frame starting inside x
    a, b = first * hop - o, min(len(x), (m_hi + reach) * hop - o)
    out = np.full((cfg.n_mels, m_hi - m_lo), cfg.log_floor, np.float32)
    if b - a < hop:
        return out
    mel = np.asarray(log_mel_spectrogram(x[a:b], cfg))
    lo = m_lo - first  # negative when the window starts after m_lo: those stay at the floor
    src = mel[:, max(0, lo):m_hi - first]
    out[:, max(0, -lo):max(0, -lo) + src.shape[1]] = src
    return out


def decode_context_frames(steerer: Steerer) -> int:
    """SSL frames of left context the mapper and vocoder need before a block: the mapper's
    dilated convolutions reach sum(dilation * (kernel - 1) / 2) mel frames, the vocoder
    VOCODER_CONTEXT_MEL_FRAMES more; converted to SSL frames, plus one for the interpolation."""
    c = steerer.mapper.config
    reach = sum(c.dilations[i % len(c.dilations)] * (c.kernel - 1) // 2 for i in range(c.n_blocks))
    mel_frames = reach + VOCODER_CONTEXT_MEL_FRAMES
    return int(math.ceil(mel_frames * c.in_rate / c.out_rate)) + 1
