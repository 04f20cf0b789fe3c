"""Self-supervised speech encoders (wav2vec2, HuBERT, WavLM, data2vec-audio) as layer-wise feature
extractors.

Layer convention (the same as `output_hidden_states` in transformers 5.x):
  hidden_states[0] is the input to the first transformer layer (after the CNN front end, the
  feature projection and the positional convolution; for post-norm models such as
  wav2vec2-base also after the encoder's layer norm), and hidden_states[k] is the output of
  transformer layer k, k = 1..num_layers. The final encoder layer norm of pre-norm
  ("do_stable_layer_norm") checkpoints is never applied, so a vector at layer k does not depend on
  how many layers the model has or keeps.

States are captured with forward hooks on the transformer layers and the forward pass stops right
after the deepest requested layer; layers deeper than that are also dropped from the module list
so they cost neither time nor memory.

Batching never changes a result beyond float rounding (`encode_batch`): utterances of different
lengths are zero-padded into one batch, and everything that could see the padding is kept from it.
Each utterance's input is normalised over its own samples. The group norm of base models' first
CNN layer (which normalises over time) takes its statistics over each utterance's valid positions
only; the other CNN layers are unpadded convolutions and per-position norms, so a valid frame's
receptive field never reaches the padding. The transformer gets an attention mask, padded frames
are zeroed before the positional convolution (and, for data2vec-audio's stack of positional
convolutions, after each of them), so a valid frame reads zeros past the end exactly as in an
unbatched pass. WavLM's relative position bias depends only on the distance between two frames.

int8 (`load_encoder(int8=True)`, CPU only): dynamic int8 quantisation of the transformer's linear
layers (weights int8 per output channel, activations quantised per call with one scale per
tensor). The CNN front end stays fp32 although it is half of the work: with one scale per tensor
its activations' outliers (time steps 25 standard deviations out) cost 5% error per layer, and
per-row scales (done by hand around torch._int_mm) gained only 1.2-1.4x on AVX2 for a frame
cosine down to 0.990. The per-tensor scale spans a whole batch, so batched int8 equals unbatched
int8 only to int8's precision. Off by default: see the README's benchmarks for its speed and
accuracy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from emosteer import __version__
from emosteer.audio import (
    MIN_SAMPLES,
    SAMPLE_RATE,
    SILENCE_PEAK,
    SSL_FRAME_RATE,
    SSL_HOP,
    audio_info,
    iter_audio_chunks,
)
from emosteer.embeddings.hub import KNOWN_ARCHITECTURES, architecture_config, hub_reachable
from emosteer.errors import ArtifactError, AudioError, ConfigError

log = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")
NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm's epsilon
# Chunking for long files: 30 s windows keep attention memory (T^2 per head) small, and 5 s of
# context either side is well beyond the positional convolution's reach (128 frames = 2.56 s).
CHUNK_SECONDS = 30.0
CONTEXT_SECONDS = 5.0
# Checkpoints carry this buffer for pre-training masks only; inference never reads it.
_UNUSED_KEYS = ("masked_spec_embed",)
# bf16 keeps 8 significant bits, so a healthy bf16 forward of wav2vec2-base geometry lands about
# 1.3% from fp32 (frame cosine 0.99991, README); 5% leaves room for deeper layers and flags
# kernels that are wrong, not merely rounded (load_encoder's bf16 check).
BF16_MAX_REL_ERROR = 0.05
BF16_PROBE_SECONDS = 1.0


@dataclass(frozen=True)
class EncoderIdentity:
    """Which encoder weights an artifact's vectors or frames came from; every store, axis and
    mapper carries one. Fields an artifact cannot know (an import, a bare vector) are None.
    The weights hash covers the whole checkpoint, whichever layers a run keeps."""

    model: str
    model_type: str | None = None
    revision: str | None = None
    config_hash: str | None = None
    weights_hash: str | None = None
    random_init: bool | None = False  # None: not recorded (a 0.1.0 axis)
    seed: int | None = None
    num_layers: int | None = None
    hidden_size: int | None = None

    def load(self, layers: Sequence[int] | None = None, *, source: str = "the artifact",
             model: str | os.PathLike | None = None, device: str = "cpu",
             bf16: bool = False, int8: bool = False) -> Encoder:
        """Rebuild this encoder (same random-init flag and seed, so the same weights) and check
        that its weights hash is the recorded one; `model` relocates the checkpoint. `int8`:
        load_encoder's dynamic int8 (the hash is of the weights before quantisation)."""
        enc = load_encoder(model or self.model, layers=layers, device=device, bf16=bf16,
                           random_init=bool(self.random_init), seed=self.seed or 0, int8=int8)
        check_identity(self, enc.identity, source)
        return enc


def check_identity(recorded: EncoderIdentity, actual: EncoderIdentity, source: str) -> None:
    """ArtifactError naming `source` and both hashes when the weights differ (when recorded)."""
    if recorded.weights_hash and actual.weights_hash and recorded.weights_hash != actual.weights_hash:
        kind = f"random-init, seed {actual.seed}" if actual.random_init else "pretrained"
        raise ArtifactError(
            f"{source}: recorded encoder weights hash {recorded.weights_hash}, but the encoder "
            f"{actual.model} ({kind}) has weights hash {actual.weights_hash}: "
            "not the weights this artifact was made with")


@dataclass(frozen=True)
class EncoderConfig:
    """What produced a set of features: enough to reproduce them or to refuse mixing them."""

    model: str
    model_type: str
    revision: str | None
    config_hash: str
    weights_hash: str
    random_init: bool
    seed: int | None
    layers: tuple[int, ...]
    hidden_size: int
    num_layers: int
    do_normalize: bool
    sample_rate: int = SAMPLE_RATE
    frame_rate: float = SSL_FRAME_RATE
    bf16: bool = False
    emosteer_version: str = __version__
    int8: bool = False

    def identity(self) -> EncoderIdentity:
        return EncoderIdentity(model=self.model, model_type=self.model_type,
                               revision=self.revision, config_hash=self.config_hash,
                               weights_hash=self.weights_hash, random_init=self.random_init,
                               seed=self.seed, num_layers=self.num_layers,
                               hidden_size=self.hidden_size)


def n_frames(num_samples: int) -> int:
    """Frames the CNN front end yields for `num_samples` at 16 kHz (no padding, 400-sample field)."""
    if num_samples < MIN_SAMPLES:
        return 0
    return (num_samples - MIN_SAMPLES) // SSL_HOP + 1


class _Stop(Exception):
    """Raised from a hook once the deepest requested layer is captured: skip the rest."""


def _weights_hash(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class Encoder:
    """A loaded SSL model that returns hidden states for `config.layers` (see module docstring)."""

    def __init__(self, model, config: EncoderConfig, device: str = "cpu"):
        self.model = model
        self.config = config
        self.device = device

    @property
    def layers(self) -> tuple[int, ...]:
        return self.config.layers

    @property
    def identity(self) -> EncoderIdentity:
        return self.config.identity()

    def n_frames(self, num_samples: int) -> int:
        """Frames `encode` yields for `num_samples` at 16 kHz, from this model's CNN geometry."""
        import torch

        if num_samples < MIN_SAMPLES:
            return 0
        return int(self.model._get_feat_extract_output_lengths(torch.tensor(int(num_samples))))

    def _autocast(self, torch):
        dev = torch.device(self.device).type
        if self.config.bf16:
            return torch.autocast(device_type=dev, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _normalise(self, x, lengths):
        """Zero mean, unit variance per utterance over its own samples; padding stays zero."""
        import torch

        if lengths is None:
            mean = x.mean(dim=1, keepdim=True)
            var = x.var(dim=1, keepdim=True, unbiased=False)
            return (x - mean) / torch.sqrt(var + NORM_EPS)
        valid = _valid(lengths, x.shape[1])
        n = lengths[:, None].to(x.dtype)
        mean = (x * valid).sum(dim=1, keepdim=True) / n
        dev = (x - mean) * valid
        var = (dev * dev).sum(dim=1, keepdim=True) / n
        return dev / torch.sqrt(var + NORM_EPS)

    def _front_end(self, x, lengths):
        """CNN features (B, C, T') of x (B, S); with `lengths` (padded batch) the first layer's
        group norm sees only each utterance's valid positions (module docstring)."""
        fe = self.model.feature_extractor
        layers = list(fe.conv_layers)
        first_norm = getattr(layers[0], "layer_norm", None)
        if lengths is None or not _is_group_norm(first_norm):
            return fe(x)
        first = layers[0]
        h = first.conv(x[:, None])
        n = _conv_lengths(lengths, first.conv)
        h = first.activation(_masked_group_norm(h, n, first_norm))
        for layer in layers[1:]:
            h = layer(h)
        return h

    def _forward(self, x, lengths=None) -> list[np.ndarray]:
        """x: torch (B, S) float32 on device, zero-padded past `lengths` (torch (B,) samples;
        None: all S long) -> per utterance numpy (L, T_frames, D) float32."""
        import torch

        if self.config.do_normalize:
            x = self._normalise(x, lengths)
        wanted = set(self.layers)
        deepest = max(self.layers)
        captured: dict[int, torch.Tensor] = {}
        blocks = self.model.encoder.layers

        def pre_hook(module, args, kwargs):
            hs = args[0] if args else kwargs["hidden_states"]
            if 0 in wanted:
                captured[0] = hs
            if deepest == 0:
                raise _Stop

        def make_hook(k):
            def hook(module, args, output):
                if k in wanted:
                    captured[k] = output[0] if isinstance(output, tuple) else output
                if k == deepest:
                    raise _Stop
            return hook

        handles = [blocks[0].register_forward_pre_hook(pre_hook, with_kwargs=True)]
        handles += [b.register_forward_hook(make_hook(i + 1)) for i, b in enumerate(blocks)]
        frames = None
        try:
            with torch.inference_mode(), self._autocast(torch):
                if lengths is None:
                    self.model(x)
                else:
                    frames = self.model._get_feat_extract_output_lengths(lengths)
                    self._masked_encoder(self._front_end(x, lengths), frames, handles)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        missing = wanted - set(captured)
        if missing:  # a model whose forward skips layers we hooked: never return wrong layers
            raise ConfigError(f"{self.config.model}: layers {sorted(missing)} were not computed")
        out = torch.stack([captured[k].float() for k in self.layers]).cpu().numpy()
        if frames is None:
            return [out[:, b] for b in range(out.shape[1])]
        return [np.ascontiguousarray(out[:, b, :int(t)]) for b, t in enumerate(frames.tolist())]

    def _masked_encoder(self, feats, frames, handles) -> None:
        """Feature projection and transformer over a padded batch: feats (B, C, T'), frames (B,)
        valid frames per utterance. Padded frames are zeroed before the positional convolution
        (and after each layer of a stacked one) and masked out of attention."""
        valid = _valid(frames, feats.shape[2])
        proj = self.model.feature_projection(feats.transpose(1, 2))
        hidden = proj[0] if isinstance(proj, tuple) else proj  # HuBERT returns only the states
        hidden = hidden * valid[..., None].to(hidden.dtype)
        pos = getattr(self.model.encoder.pos_conv_embed, "layers", ())  # data2vec-audio's stack

        def zero_padding(module, args, output):  # output (B, D, T')
            return output * valid[:, None, :].to(output.dtype)

        handles += [m.register_forward_hook(zero_padding) for m in pos]
        self.model.encoder(hidden, attention_mask=valid)

    def encode(self, wav: np.ndarray) -> np.ndarray:
        """One utterance (T,) at 16 kHz -> (L, T_frames, D) float32 for `config.layers`."""
        return self.encode_batch([wav], batch_size=1)[0]

    def encode_batch(self, wavs: Sequence[np.ndarray], batch_size: int = 8) -> list[np.ndarray]:
        """Several utterances -> list of (L, T_i, D), equal up to float rounding to encoding each
        alone (module docstring). Utterances are sorted by length and run `batch_size` at a time,
        so a batch pads as little as the lengths allow; a batch of equal lengths runs unpadded."""
        import torch

        for i, w in enumerate(wavs):
            if w.ndim != 1 or w.shape[0] < MIN_SAMPLES:
                raise AudioError(f"utterance {i}: need a 1-D waveform of at least {MIN_SAMPLES} "
                                 f"samples, got shape {tuple(w.shape)}")
            if not np.all(np.isfinite(w)):
                raise AudioError(f"utterance {i}: contains NaN or Inf samples")
        order = sorted(range(len(wavs)), key=lambda i: (wavs[i].shape[0], i))
        step = max(1, batch_size)
        results: list[np.ndarray | None] = [None] * len(wavs)
        for start in range(0, len(order), step):
            part = order[start:start + step]
            sizes = [int(wavs[i].shape[0]) for i in part]
            x = np.zeros((len(part), max(sizes)), dtype=np.float32)
            for j, i in enumerate(part):
                x[j, :sizes[j]] = wavs[i]
            lengths = None if min(sizes) == max(sizes) else \
                torch.tensor(sizes, device=self.device)
            hidden = self._forward(torch.from_numpy(x).to(self.device), lengths)
            for i, h in zip(part, hidden, strict=True):
                results[i] = h
        return results  # type: ignore[return-value]

    def iter_long(self, path: str | os.PathLike, chunk_seconds: float = CHUNK_SECONDS,
                  context_seconds: float = CONTEXT_SECONDS
                  ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Encode a long file window by window with bounded memory.

        Yields (first_frame, hidden (L, t, D), wav) where `wav` starts at sample first_frame*320
        and covers the t frames. Each window sees `context_seconds` of audio either side that is
        encoded and trimmed away; input normalisation and the group-norm front end see one window
        at a time, so features differ slightly from a whole-file pass."""
        core = max(1, round(chunk_seconds * SAMPLE_RATE / SSL_HOP)) * SSL_HOP
        ctx = round(context_seconds * SAMPLE_RATE / SSL_HOP) * SSL_HOP
        buf = np.zeros(0, dtype=np.float32)
        buf_start = 0  # global sample index of buf[0]
        s = 0  # global sample index where the next window's kept frames start
        peak = 0.0
        for _, chunk in iter_audio_chunks(path, chunk_seconds=chunk_seconds, sr=SAMPLE_RATE):
            peak = max(peak, float(np.max(np.abs(chunk))) if chunk.size else 0.0)
            buf = np.concatenate([buf, chunk.astype(np.float32)])
            while buf_start + len(buf) >= s + core + ctx + MIN_SAMPLES:
                yield self._window(buf, buf_start, s, s + core, ctx, None)
                s += core
                drop = max(0, s - ctx - buf_start)
                buf, buf_start = buf[drop:], buf_start + drop
        total = n_frames(buf_start + len(buf))
        if total == 0:
            raise AudioError(f"{path}: too short (fewer than {MIN_SAMPLES} samples)")
        if peak < SILENCE_PEAK:
            raise AudioError(f"{path}: all silent (peak {peak:.2e})")
        while s // SSL_HOP < total:  # the rest: the right context is whatever is left
            last = (s + core) // SSL_HOP >= total
            yield self._window(buf, buf_start, s, s + core, ctx, total if last else None)
            s += core
            drop = max(0, s - ctx - buf_start)
            buf, buf_start = buf[drop:], buf_start + drop

    def _window(self, buf, buf_start, s, e, ctx, total):
        w0 = max(buf_start, s - ctx)
        w1 = min(buf_start + len(buf), e + ctx)
        h = self.encode(buf[w0 - buf_start:w1 - buf_start])
        f_first = s // SSL_HOP
        f_end = e // SSL_HOP if total is None else total
        j0 = f_first - w0 // SSL_HOP
        h = h[:, j0:j0 + (f_end - f_first)]
        seg_start = f_first * SSL_HOP - buf_start
        seg_len = (h.shape[1] - 1) * SSL_HOP + MIN_SAMPLES
        return f_first, h, buf[seg_start:seg_start + seg_len]

    def encode_long(self, path: str | os.PathLike, chunk_seconds: float = CHUNK_SECONDS,
                    context_seconds: float = CONTEXT_SECONDS) -> np.ndarray:
        """A whole (hour-long) file -> (L, T_frames, D) float32, encoded in windows (`iter_long`):
        the peak memory is the output plus one window, whatever the file's length."""
        sr, frames, _ = audio_info(path)
        approx = n_frames(int(round(frames * SAMPLE_RATE / sr))) + 1  # resampling may round
        out = None
        used = 0
        for f0, h, _ in self.iter_long(path, chunk_seconds, context_seconds):
            if out is None:
                out = np.empty((h.shape[0], approx, h.shape[2]), dtype=np.float32)
            out[:, f0:f0 + h.shape[1]] = h
            used = f0 + h.shape[1]
        return out[:, :used]


def _valid(lengths, size: int):
    """(B, size) bool: True at positions below each row's length."""
    import torch

    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def _conv_lengths(lengths, conv):
    """Valid output positions of an unpadded 1-D convolution for `lengths` valid inputs."""
    (k,), (s,), (d,) = conv.kernel_size, conv.stride, conv.dilation
    return (lengths - d * (k - 1) - 1) // s + 1


def _is_group_norm(module) -> bool:
    import torch

    return isinstance(module, torch.nn.GroupNorm)


def _masked_group_norm(h, lengths, norm):
    """torch.nn.GroupNorm of each row of h (B, C, T) with statistics over its first `lengths`
    positions only (fp32, as autocast runs group norm); padded positions come out zero."""
    import torch

    B, C, T = h.shape
    g = norm.num_groups
    valid = _valid(lengths, T)[:, None, None, :].to(torch.float32)  # (B, 1, 1, T)
    hg = h.float().reshape(B, g, C // g, T)
    n = (lengths.to(torch.float32) * (C // g))[:, None, None, None]
    mean = (hg * valid).sum(dim=(2, 3), keepdim=True) / n
    dev = (hg - mean) * valid
    var = (dev * dev).sum(dim=(2, 3), keepdim=True) / n
    out = (dev / torch.sqrt(var + norm.eps)).reshape(B, C, T)
    if norm.affine:
        out = out * norm.weight[None, :, None] + norm.bias[None, :, None]
    return out * valid[:, 0]


def _config_hash(hf_cfg) -> str:
    # Private and version keys change with the transformers release, not with the model.
    d = {k: v for k, v in hf_cfg.to_diff_dict().items()
         if not k.startswith("_") and k != "transformers_version"}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _resolve_layers(layers: Sequence[int] | None, num_layers: int, name: str) -> tuple[int, ...]:
    if layers is None:
        return tuple(range(num_layers + 1))
    layers = tuple(sorted(set(int(k) for k in layers)))
    if not layers or layers[0] < 0 or layers[-1] > num_layers:
        raise ConfigError(f"{name}: layers must be within 0..{num_layers} (got {list(layers)})")
    return layers


def _do_normalize(name_or_path: str, local_files_only: bool = False) -> bool:
    from transformers import AutoFeatureExtractor

    try:
        fe = AutoFeatureExtractor.from_pretrained(name_or_path, local_files_only=local_files_only)
    except (OSError, ValueError) as e:
        log.warning("%s: no feature extractor config (%s); normalising input per utterance",
                    name_or_path, str(e).splitlines()[0] if str(e) else type(e).__name__)
        return True
    return bool(getattr(fe, "do_normalize", True))


def load_encoder(name_or_path: str | os.PathLike, layers: Sequence[int] | None = None,
                 device: str = "cpu", bf16: bool = False, random_init: bool = False,
                 seed: int = 0, int8: bool = False) -> Encoder:
    """Load a wav2vec2/HuBERT/WavLM/data2vec-audio checkpoint (hub id or local directory) in eval
    mode with layerdrop off; keep only transformer layers up to max(layers). `random_init` builds
    the same architecture with weights drawn from torch's initialisers under `seed` (a control).
    `bf16`: autocast to bf16, kept only if a probe clip stays within BF16_MAX_REL_ERROR of fp32
    (`config.bf16` says which ran). `int8`: dynamic int8 quantisation on CPU (module docstring),
    not with bf16."""
    import torch
    from transformers import AutoConfig, AutoModel

    name = str(name_or_path)
    if int8 and (bf16 or torch.device(device).type != "cpu"):
        raise ConfigError("int8: CPU only and not with bf16 (quantised kernels exist only on CPU)")
    # A hub id with the hub out of reach: one short probe says so (transformers would retry for
    # ~27 s), then only the local cache is read, and a random-init control of a standard
    # checkpoint is built from its known architecture, which needs no download.
    offline = not os.path.exists(name) and not hub_reachable()
    normalize = None
    try:
        if offline and random_init and name in KNOWN_ARCHITECTURES:
            hf_cfg, normalize = architecture_config(name)
        else:
            hf_cfg = AutoConfig.from_pretrained(name, local_files_only=offline)
    except (OSError, ValueError) as e:
        if offline:
            raise ConfigError(
                f"{name}: not a model directory, and the model hub is not reachable with no "
                "copy in the local cache; give a local checkpoint directory (a --random-init "
                f"control needs no download for {', '.join(sorted(KNOWN_ARCHITECTURES))})") from e
        raise ConfigError(f"{name}: not a model directory or reachable hub id ({e})") from e
    if hf_cfg.model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(f"{name}: model type {hf_cfg.model_type!r} is not supported "
                          f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})")
    hf_cfg.layerdrop = 0.0
    num_layers = int(hf_cfg.num_hidden_layers)
    layers = _resolve_layers(layers, num_layers, name)
    if random_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModel.from_config(hf_cfg)
    else:
        try:
            model, info = AutoModel.from_pretrained(name, config=hf_cfg, output_loading_info=True,
                                                    local_files_only=offline)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{name}: could not load the model weights ({e})") from e
        except pickle.UnpicklingError as e:  # weights_only=True refused a pickled checkpoint
            raise ConfigError(f"{name}: refused to load the weights: the checkpoint is a pickle "
                              f"with more than tensors in it ({e})") from e
        missing = [k for k in info.get("missing_keys", []) if not k.endswith(_UNUSED_KEYS)]
        if missing:
            raise ConfigError(f"{name}: checkpoint lacks weights {missing[:5]}"
                              f"{' ...' if len(missing) > 5 else ''}")
    weights_hash = _weights_hash(model)  # the whole checkpoint: the same whatever `layers` is
    model.encoder.layers = model.encoder.layers[:max(1, layers[-1])]
    model.eval().to(device)
    config = EncoderConfig(
        model=name,
        model_type=hf_cfg.model_type,
        revision=getattr(hf_cfg, "_commit_hash", None),
        config_hash=_config_hash(hf_cfg),
        weights_hash=weights_hash,
        random_init=bool(random_init),
        seed=int(seed) if random_init else None,
        layers=layers,
        hidden_size=int(hf_cfg.hidden_size),
        num_layers=num_layers,
        do_normalize=_do_normalize(name, offline) if normalize is None else normalize,
        bf16=bool(bf16),
        int8=bool(int8),
    )
    if bf16:
        config = _checked_bf16(model, config, device)
    if config.bf16:
        _cast_matmul_weights(model, torch.bfloat16)
    if int8:
        _quantise_int8(model, hf_cfg.model_type)
    return Encoder(model, config, device=device)


def _probe_wav(seconds: float = BF16_PROBE_SECONDS) -> np.ndarray:
    """A fixed voiced-speech stand-in: five harmonics of a gliding F0 under a syllable-rate
    envelope, with a little noise; neither silent nor stationary."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(120 + 40 * np.sin(2 * np.pi * 0.7 * t)) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(4 * np.pi * t))
    noise = np.random.default_rng(0).standard_normal(t.size)
    return (0.2 * voiced + 0.01 * noise).astype(np.float32)


def _checked_bf16(model, config: EncoderConfig, device: str) -> EncoderConfig:
    """`config` if bf16 autocast of `model` stays within BF16_MAX_REL_ERROR of fp32 on a probe
    clip, else the same config in fp32, with a warning. Some CPUs' native bf16 kernels are wrong
    for some shapes (oneDNN's AMX strided convolutions, pytorch#169688), which autocast would
    pass on silently. Autocast over the still-fp32 weights rounds them as a cast would."""
    probe = _probe_wav()
    ref = Encoder(model, replace(config, bf16=False), device=device).encode(probe)
    low = Encoder(model, config, device=device).encode(probe)
    rel = float(np.linalg.norm(low - ref) / max(np.linalg.norm(ref), 1e-12))
    if rel <= BF16_MAX_REL_ERROR:
        return config
    log.warning("%s: bf16 on %s is %.0f%% off fp32 on a probe clip (at most %.0f%% is rounding):"
                " this device's bf16 kernels are wrong for this model; using fp32", config.model,
                device, 100 * rel, 100 * BF16_MAX_REL_ERROR)
    return replace(config, bf16=False)


def _dynamic_int8(module):
    """torch's dynamic int8 quantisation of the Linear layers in `module`, per output channel
    (a scale per row of the weight), in place."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization's deprecation notice: torch 2.13 has
        warnings.simplefilter("ignore")  # it, and torchao (its successor) is not a dependency
        return quantize_dynamic(module, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                dtype=torch.qint8, inplace=True)


def _quantise_int8(model, model_type: str) -> None:
    """int8 for the transformer's linear layers (module docstring). WavLM's attention hands its
    projection weights to torch's multi-head attention function, which needs float weights:
    there only the feed-forward layers are quantised."""
    for block in model.encoder.layers:
        _dynamic_int8(block.feed_forward)
        if model_type != "wavlm":
            _dynamic_int8(block.attention)


def _cast_matmul_weights(model, dtype) -> None:
    """Store Linear/Conv1d weights in `dtype` so that autocast does not re-cast them on every
    forward (about 15% of a bf16 forward on CPU); norms stay fp32 as autocast wants. The
    weight-normed positional convolution is left alone: its weight is recomputed each call."""
    import torch

    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d)) and not hasattr(m, "parametrizations"):
            m.to(dtype)

