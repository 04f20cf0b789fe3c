"""Build an embedding store from audio: encode, pool, write per-utterance items, consolidate.

Resumable and atomic: every utterance's result goes to items/<hash>.safetensors with an atomic
rename, so a killed run leaves only complete items; a rerun encodes only utterances without an
item and then consolidates (see `store` for the layout). Bad audio is logged and listed in
skipped.json; nothing else is lost.

Distributed (`accelerate launch`, see emosteer.distributed): rank r encodes utterances i with
i % world_size == r into the shared items/ directory; rank 0 prepared the directory before and,
once every rank is done, consolidates all items in the order of `utterances`. Items are keyed by
utt_id, so at batch size 1 the store is identical to a one-process one; with larger batches it is
equal up to float rounding (Encoder.encode_batch equals unbatched up to rounding, and a rank's
batches hold other utterances than one process's).

Batching (`batch_size`): utterances are sorted by duration and encoded batch_size at a time as
one padded batch (see Encoder.encode_batch for why padding never changes a result); files longer
than LONG_SECONDS go one at a time through Encoder.iter_long.

Pooling (frame weights, then a weighted mean over frames):
  mean    every frame weighs 1.
  energy  the seed's way: RMS of the waveform over the frame's 20 ms hop (samples
          [320 t, 320 t + 320)), so loud frames dominate and pauses barely count.
  norm    the L2 norm of the frame's hidden vector at that layer (how the shared real
          wav2vec2-base embeddings were pooled).
  voiced  only frames that look voiced: level within VOICED_REL_DB of the loudest frame of the
          segment and zero-crossing rate below VOICED_MAX_ZCR. Self-contained (no pitch tracker).
If no frame carries weight (silence, nothing voiced) the plain mean is used instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from safetensors import safe_open

from emosteer.artifacts import load_config, load_tensors, save_config, save_tensors
from emosteer.audio import SAMPLE_RATE, SSL_HOP, audio_info, load_audio
from emosteer.corpora.formats import match_speakers, scan_corpus
from emosteer.distributed import Dist
from emosteer.embeddings.encoders import CHUNK_SECONDS, CONTEXT_SECONDS, Encoder, load_encoder
from emosteer.embeddings.store import (
    ITEMS_DIR,
    POOLINGS,
    EmbeddingStore,
    StoreConfig,
    clear_store,
    reusable_item,
    write_store,
)
from emosteer.errors import ArtifactError, AudioError, ConfigError, EmosteerError

log = logging.getLogger(__name__)

VOICED_REL_DB = 35.0  # speech sits within ~35 dB of its loudest vowel; below is pause or noise
# Voiced speech at 16 kHz crosses zero well under 0.1 times per sample (f0 and first formants);
# fricatives and noise cross 0.3-0.5 times: 0.2 separates them.
VOICED_MAX_ZCR = 0.2
LEVEL_FLOOR = 1e-10  # power floor before the log: silence maps to -100 dB, not -inf
# Files longer than one window plus its context go through Encoder.iter_long.
LONG_SECONDS = CHUNK_SECONDS + 2 * CONTEXT_SECONDS


def _hop_stats(wav: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame RMS and zero-crossing rate over each frame's 20 ms hop."""
    seg = np.zeros(t * SSL_HOP, dtype=np.float64)
    n = min(len(wav), len(seg))
    seg[:n] = wav[:n]
    seg = seg.reshape(t, SSL_HOP)
    rms = np.sqrt(np.mean(seg**2, axis=1))
    zcr = np.mean(np.abs(np.diff(np.signbit(seg), axis=1)), axis=1)
    return rms, zcr


def frame_weights(pooling: str, hidden: np.ndarray, wav: np.ndarray) -> np.ndarray:
    """hidden (L, T, D), wav starting at frame 0's first sample -> weights (L, T) float64."""
    L, T, _ = hidden.shape
    if pooling == "mean":
        return np.ones((L, T))
    if pooling == "norm":
        return np.linalg.norm(hidden.astype(np.float64), axis=2)
    rms, zcr = _hop_stats(wav, T)
    if pooling == "energy":
        w = rms
    elif pooling == "voiced":
        db = 10 * np.log10(np.maximum(rms**2, LEVEL_FLOOR))
        w = ((db > db.max() - VOICED_REL_DB) & (zcr < VOICED_MAX_ZCR)).astype(np.float64)
    else:
        raise ConfigError(f"pooling {pooling!r}: expected one of {', '.join(POOLINGS)}")
    return np.broadcast_to(w, (L, T))


class _Pool:
    """Weighted mean over frames that can be fed window by window."""

    def __init__(self, pooling: str):
        self.pooling = pooling
        self.wsum = self.plain = self.w = None
        self.n = 0

    def add(self, hidden: np.ndarray, wav: np.ndarray) -> None:
        w = frame_weights(self.pooling, hidden, wav)
        h = hidden.astype(np.float64)
        ws, ps = np.einsum("lt,ltd->ld", w, h), h.sum(axis=1)
        if self.wsum is None:
            self.wsum, self.plain, self.w = ws, ps, w.sum(axis=1)
        else:
            self.wsum, self.plain, self.w = self.wsum + ws, self.plain + ps, self.w + w.sum(axis=1)
        self.n += hidden.shape[1]

    def result(self) -> np.ndarray:
        ok = self.w > 0
        out = np.where(ok[:, None], self.wsum / np.where(ok, self.w, 1.0)[:, None],
                       self.plain / max(self.n, 1))
        return out.astype(np.float32)


def _item_name(utt_id: str) -> str:
    return hashlib.sha1(utt_id.encode("utf-8")).hexdigest()[:20] + ".safetensors"


def _encode_one_long(encoder: Encoder, path: Path, pooling: str, frame_layers: Sequence[int]):
    pool, frames = _Pool(pooling), {k: [] for k in frame_layers}
    for _, h, wav in encoder.iter_long(path):
        pool.add(h, wav)
        for k in frame_layers:
            frames[k].append(h[encoder.layers.index(k)].astype(np.float16))
    return pool, {k: np.concatenate(v) for k, v in frames.items()}, pool.n


def _write_item(path: Path, utt_id: str, pool: _Pool, frames: dict, n: int, dur: float) -> None:
    tensors = {"pooled": pool.result()}
    tensors.update({f"frames_{k}": v for k, v in frames.items()})
    save_tensors(path, tensors, {"utt_id": utt_id, "n_frames": str(n), "duration_s": f"{dur:.4f}"})


def _prepare(out_dir: Path, config: StoreConfig, force: bool) -> None:
    if (out_dir / "store.json").exists():
        if not force:
            raise ArtifactError(f"{out_dir}: already exists (use -f to overwrite)")
        clear_store(out_dir)
    elif (out_dir / "extract.json").exists():
        old = load_config(StoreConfig, out_dir / "extract.json")
        if old != config:
            if not force:
                diff = [k for k in config.__dataclass_fields__
                        if getattr(old, k) != getattr(config, k)]
                raise ArtifactError(f"{out_dir}: an unfinished extraction with different settings "
                                    f"({', '.join(diff)}) is there (use -f to start over)")
            clear_store(out_dir)
        elif force:
            clear_store(out_dir)
    elif any((out_dir / ITEMS_DIR).glob("*.safetensors")):
        if not force:
            raise ArtifactError(f"{out_dir}: holds items of unknown settings (no store.json or "
                                "extract.json); use -f to start over")
        clear_store(out_dir)
    (out_dir / ITEMS_DIR).mkdir(parents=True, exist_ok=True)
    for tmp in (out_dir / ITEMS_DIR).glob(".*.tmp"):  # a killed run's unfinished atomic write
        tmp.unlink(missing_ok=True)
    save_config(config, out_dir / "extract.json")


def _groups(utterances, long_seconds: float) -> list[tuple[bool, list[int]]]:
    """(is_long, indices): each long file alone, then all others sorted by duration, so that
    consecutive batches pad little. From the full list, so that a resumed run batches exactly as
    the first did."""
    long, short = [], []
    for i, u in enumerate(utterances):
        try:
            sr, frames, _ = audio_info(u.path)
        except AudioError:  # let load_audio try other decoders, or report it; last in the order
            short.append((float("inf"), i))
            continue
        if frames / sr > long_seconds:
            long.append((True, [i]))
        else:
            short.append((frames / sr, i))
    return long + ([(False, [i for _, i in sorted(short)])] if short else [])


def extract_store(utterances: Sequence, encoder: Encoder, out_dir: str | os.PathLike,
                  pooling: str = "mean", frame_layers: Sequence[int] = (), batch_size: int = 1,
                  force: bool = False, long_seconds: float = LONG_SECONDS,
                  progress: bool = True, dist=None,
                  skipped_files: Sequence[tuple] = ()) -> EmbeddingStore:
    """Encode `utterances` (objects with utt_id, path, speaker, emotion, corpus, sentence,
    intensity) with `encoder` into a store at `out_dir`, resuming an unfinished run there.
    `skipped_files`: (path, reason) of files left out before extraction (the corpus scan's
    skips and duplicates), listed in skipped.json with the files that fail here.
    `dist` (emosteer.distributed.Dist) shards the work across processes; None is one process."""
    from tqdm import tqdm

    dist = dist or Dist()

    out_dir = Path(out_dir)
    ids = [u.utt_id for u in utterances]
    if len(set(ids)) != len(ids):
        raise ConfigError("utterance ids are not unique")
    if not utterances:
        raise ConfigError("no utterances to extract")
    ec = encoder.config
    config = StoreConfig(
        encoder=ec.identity(), layers=ec.layers, pooling=pooling, hidden_size=ec.hidden_size,
        do_normalize=ec.do_normalize, bf16=ec.bf16,
        frame_layers=tuple(sorted(set(int(k) for k in frame_layers))),
        sample_rate=ec.sample_rate, frame_rate=ec.frame_rate,
        chunk_seconds=CHUNK_SECONDS, context_seconds=CONTEXT_SECONDS,
    )
    if dist.is_main:
        _prepare(out_dir, config, force)
    dist.barrier()  # nobody writes items before rank 0 has cleared or checked the directory
    items = out_dir / ITEMS_DIR
    mine = set(dist.shard(len(utterances)))
    done = {i for i, u in enumerate(utterances)
            if i in mine and reusable_item(items / _item_name(u.utt_id), u.utt_id, config)}
    skipped: dict[int, str] = {}
    new = 0
    bar = tqdm(total=len(mine), initial=len(done), disable=not (progress and dist.is_main),
               unit="utt", desc="extract")
    for is_long, group in _groups(utterances, long_seconds):
        group = [i for i in group if i in mine]
        todo = [i for i in group if i not in done]
        if not todo:
            continue
        if is_long:
            i = group[0]
            try:
                pool, frames, n = _encode_one_long(encoder, Path(utterances[i].path), pooling,
                                                   config.frame_layers)
            except AudioError as e:
                skipped[i] = str(e)
            else:
                sr, file_frames, _ = audio_info(utterances[i].path)
                _write_item(items / _item_name(ids[i]), ids[i], pool, frames, n,
                            file_frames / sr)
                new += 1
            bar.update(1)
            continue
        step = max(1, batch_size)
        for start in range(0, len(group), step):  # fixed positions: a resumed run batches alike
            batch = group[start:start + step]
            if all(i in done for i in batch):
                continue
            wavs = {}
            for i in batch:
                try:
                    wavs[i] = load_audio(utterances[i].path)
                except AudioError as e:
                    skipped[i] = str(e)
            bar.update(sum(i not in done for i in batch))
            if not any(i not in done for i in wavs):
                continue
            part = list(wavs)
            hidden = encoder.encode_batch([wavs[i] for i in part], batch_size=len(part))
            for i, h in zip(part, hidden, strict=True):
                if i in done:
                    continue
                pool = _Pool(pooling)
                pool.add(h, wavs[i])
                frames = {k: h[ec.layers.index(k)].astype(np.float16)
                          for k in config.frame_layers}
                _write_item(items / _item_name(ids[i]), ids[i], pool, frames, h.shape[1],
                            len(wavs[i]) / SAMPLE_RATE)
                new += 1
    bar.close()
    log.info("rank %d: encoded %d new utterances, %d already done, %d skipped", dist.rank, new,
             len(done), len(skipped))
    merged: dict[int, str] = {}
    for part in dist.gather(skipped):  # also the barrier: every shard is on disk after it
        merged.update(part)
    if dist.is_main:
        for msg in merged.values():
            log.warning("skipped %s", msg)
    if not dist.distributed:
        return _consolidate(out_dir, config, utterances, merged, skipped_files)
    error = None
    if dist.is_main:
        try:
            _consolidate(out_dir, config, utterances, merged, skipped_files)
        except EmosteerError as e:
            error = e
    failed = dist.gather(None if error is None else str(error))[0]
    if error is not None:
        raise error
    if failed is not None:
        raise ArtifactError(f"{out_dir}: rank 0 could not merge the shards ({failed})")
    return EmbeddingStore.open(out_dir)


def _consolidate(out_dir: Path, config: StoreConfig, utterances, skipped: dict[int, str],
                 skipped_files: Sequence[tuple] = ()):
    items = out_dir / ITEMS_DIR
    index, pooled = [], []
    for i, u in enumerate(utterances):
        if i in skipped:
            continue
        name = _item_name(u.utt_id)
        t = load_tensors(items / name)
        with safe_open(str(items / name), framework="numpy") as f:
            meta = f.metadata() or {}
        if meta.get("utt_id") != u.utt_id:
            raise ArtifactError(f"{items / name}: belongs to {meta.get('utt_id')!r}, "
                                f"not {u.utt_id!r}")
        if t["pooled"].shape != (len(config.layers), config.hidden_size):
            raise ArtifactError(f"{items / name}: pooled shape {t['pooled'].shape} does not "
                                f"match the store config")
        pooled.append(t["pooled"])
        index.append({
            "utt_id": u.utt_id, "path": str(u.path), "speaker": u.speaker, "emotion": u.emotion,
            "sentence": getattr(u, "sentence", None), "corpus": getattr(u, "corpus", None),
            "intensity": getattr(u, "intensity", None), "text": getattr(u, "text", None),
            "n_frames": int(meta["n_frames"]),
            "duration_s": float(meta["duration_s"]), "item": name,
        })
    if not index:
        raise AudioError("no utterance could be encoded (all skipped: see the warnings above)")
    stacked = np.stack(pooled)  # (N, L, D)
    by_layer = {k: stacked[:, j] for j, k in enumerate(config.layers)}
    skipped_rows = [{"utt_id": utterances[i].utt_id, "path": str(utterances[i].path),
                     "error": msg} for i, msg in sorted(skipped.items())]
    skipped_rows += [{"utt_id": None, "path": str(p), "error": why} for p, why in skipped_files]
    write_store(out_dir, config, index, by_layer, skipped_rows)
    return EmbeddingStore.open(out_dir)


def extract_corpus(root: str | os.PathLike, format: str, model: str | os.PathLike,
                   out_dir: str | os.PathLike, *, layers: Sequence[int] | None = None,
                   frame_layers: Sequence[int] = (), emotions: Sequence[str] = (),
                   speakers: Sequence[str] = (), limit: int | None = None,
                   pooling: str = "mean", batch_size: int = 1, random_init: bool = False,
                   seed: int = 0, device: str = "cpu", bf16: bool = False, force: bool = False,
                   progress: bool = True, int8: bool = False) -> EmbeddingStore | None:
    """`emosteer extract`: scan a corpus, keep `emotions`/`speakers` (as match_speakers reads
    them) and the first `limit` clips, load the encoder and extract into `out_dir`. Under
    `accelerate launch` the work is sharded; ranks other than 0 return None."""
    if frame_layers and layers is not None and not set(frame_layers) <= set(layers):
        raise ConfigError(f"frame layers {list(frame_layers)}: must be among the layers")
    if batch_size < 1:
        raise ConfigError(f"batch size {batch_size}: must be at least 1")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit {limit}: must be at least 1")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: exists and is not a directory")
    scan_skipped: list = []  # counted in skipped.json and the summary with extraction's own
    utts = scan_corpus(root, format, skipped=scan_skipped)
    if emotions:
        utts = [u for u in utts if u.emotion in emotions]
    if speakers:
        wanted = set(match_speakers(speakers, {u.speaker for u in utts}))
        utts = [u for u in utts if u.speaker in wanted]
    if limit is not None:
        utts = utts[:limit]
    if not utts:
        raise ConfigError(f"{root}: no utterances left after the emotion/speaker/limit filters")
    dist = Dist.from_env(device, bf16)
    encoder = load_encoder(model, layers=layers, device=dist.device, bf16=bf16,
                           random_init=random_init, seed=seed, int8=int8)
    if frame_layers and not set(frame_layers) <= set(encoder.layers):
        raise ConfigError(f"frame layers {list(frame_layers)}: must be among the layers "
                          f"{list(encoder.layers)}")
    store = extract_store(utts, encoder, out_dir, pooling=pooling, frame_layers=frame_layers,
                          batch_size=batch_size, force=force, progress=progress, dist=dist,
                          skipped_files=scan_skipped)
    return store if dist.is_main else None
