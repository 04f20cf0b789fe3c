"""Control stores for `emosteer probe`: the same metrics on features that should carry less
emotion structure than a pretrained model's, plotted on the same axes.

- `random-init`: `STORE`'s audio re-extracted (same layers, same pooling) with an encoder of
  the same architecture whose weights come from torch's initialisers; what the architecture and
  the pooling give without pretraining.
- `mfcc`: mean and std of 20 MFCCs and of their deltas per clip (a classic hand-crafted
  speech-emotion baseline), stored as layer 0.

Both need the audio, so a store imported from bare vectors (no paths) cannot have them:
`build_controls` skips such a control with its reason instead of failing the probe.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from emosteer.audio import SAMPLE_RATE, load_audio
from emosteer.corpora.formats import Utterance
from emosteer.embeddings.encoders import EncoderIdentity, load_encoder
from emosteer.embeddings.extract import extract_store
from emosteer.embeddings.store import EmbeddingStore, StoreConfig, clear_store, write_store
from emosteer.errors import ArtifactError, AudioError, ConfigError

log = logging.getLogger(__name__)

CONTROLS = ("random-init", "mfcc")
CONTROLS_DIR = "controls"  # under the probe's output directory: one cached store per control
N_MFCC = 20  # the classic speech-emotion baseline size
DELTA_WIDTH = 9  # librosa's default delta window; shorter clips use the largest odd width that fits
MFCC_MODEL = f"mfcc{N_MFCC}-stats"


def mfcc_statistics(wav, sr: int) -> np.ndarray:
    """(4 * N_MFCC,) = mean and std over frames of 20 MFCCs and of their deltas."""
    import librosa

    m = librosa.feature.mfcc(y=np.asarray(wav, dtype=np.float32), sr=sr, n_mfcc=N_MFCC)
    width = min(DELTA_WIDTH, m.shape[1] if m.shape[1] % 2 else m.shape[1] - 1)
    d = librosa.feature.delta(m, width=width) if width >= 3 else np.zeros_like(m)
    return np.concatenate([m.mean(1), m.std(1), d.mean(1), d.std(1)]).astype(np.float32)


def mfcc_store(utterances, out_dir, force: bool = False, progress: bool = True):
    """An EmbeddingStore (layer 0 only) of MFCC statistics: the no-SSL control for `probe`.
    Bad audio files are reported and skipped, like every batch job."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    if (out_dir / "store.json").exists() and not force:
        raise ArtifactError(f"{out_dir}: already exists (use -f to overwrite)")
    index, feats, skipped = [], [], []
    for u in tqdm(utterances, desc="mfcc", unit="utt", disable=not progress):
        try:
            wav = load_audio(u.path, SAMPLE_RATE)
        except AudioError as e:
            log.warning("skipping %s: %s", u.path, e)
            skipped.append({"utt_id": u.utt_id, "path": str(u.path), "error": str(e)})
            continue
        feats.append(mfcc_statistics(wav, SAMPLE_RATE))
        index.append({"utt_id": u.utt_id, "path": str(u.path), "speaker": u.speaker,
                      "emotion": u.emotion, "sentence": u.sentence, "corpus": u.corpus,
                      "intensity": u.intensity, "n_frames": None,
                      "duration_s": round(len(wav) / SAMPLE_RATE, 3), "item": None})
    if not feats:
        raise AudioError(f"{out_dir}: no usable audio among {len(skipped)} file(s)")
    cfg = StoreConfig(encoder=EncoderIdentity(model=MFCC_MODEL), layers=(0,), pooling="mean",
                      hidden_size=4 * N_MFCC, source="extract")
    out_dir.mkdir(parents=True, exist_ok=True)
    clear_store(out_dir)
    write_store(out_dir, cfg, index, {0: np.stack(feats)}, skipped)
    return EmbeddingStore.open(out_dir)


def store_utterances(store, purpose: str) -> list:
    """The store's rows as corpora.Utterance, for re-reading its audio (e.g. for a control)."""
    rows = [r for r in store.index if r.get("path")]
    if not rows:
        raise ConfigError(f"{store.root}: the store has no audio paths ({store.config.source}ed "
                          f"embeddings), and {purpose} needs the audio")
    return [Utterance(utt_id=r["utt_id"], path=Path(r["path"]), speaker=r["speaker"],
                      emotion=r["emotion"], corpus=r.get("corpus") or "",
                      sentence=r.get("sentence"), intensity=r.get("intensity")) for r in rows]


def random_init_store(store, out_dir, seed: int = 0, device: str = "cpu", force: bool = False,
                      progress: bool = True):
    """Re-extract `store`'s audio (same layers and pooling) with a random-init encoder of the
    same architecture: what the metrics show without pretraining. Resumes like extract_store."""
    utts = store_utterances(store, "the random-init control")
    enc = load_encoder(store.config.encoder.model, layers=store.layers, device=device,
                       bf16=store.config.bf16, random_init=True, seed=seed)
    return extract_store(utts, enc, out_dir, pooling=store.config.pooling, force=force,
                         progress=progress)


def _cached(cache: Path, store, name: str, seed: int):
    """The control store at `cache` if it was built from exactly `store`'s clips, else None."""
    if not (cache / "store.json").is_file():
        return None
    c = EmbeddingStore.open(cache)
    ids = {r["utt_id"] for r in c.index} | {r["utt_id"] for r in c.skipped}
    want = {r["utt_id"] for r in store.index if r.get("path")}
    ce = c.config.encoder
    same = (ce.model == MFCC_MODEL if name == "mfcc" else
            ce.random_init and ce.model == store.config.encoder.model
            and c.config.layers == store.layers and c.config.pooling == store.config.pooling
            and ce.seed == seed)
    return c if same and ids == want else None


def build_controls(store, names, cache_dir, seed: int = 0, device: str = "cpu",
                   force: bool = False, progress: bool = True) -> tuple[dict, dict[str, str]]:
    """Control stores by name (CONTROLS), built once and cached under `cache_dir`/<name>.

    Returns ({name: store}, {name: why it was skipped}): a control that cannot be built (the
    store has no audio paths, none of its audio loads, the architecture's config is
    unreachable) is skipped with its reason, never fatal. A stale cache is rebuilt only with
    `force`. `seed` draws the random-init weights."""
    stores, skipped = {}, {}
    for name in names:
        if name not in CONTROLS:
            raise ConfigError(f"control {name!r}: expected one of {', '.join(CONTROLS)} "
                              "or NAME=STORE_DIR")
        cache = Path(cache_dir) / name
        try:
            cached = _cached(cache, store, name, seed)
            if cached is not None:
                log.info("reusing the %s control store at %s", name, cache)
                stores[name] = cached
            elif name == "mfcc":
                utts = store_utterances(store, "the mfcc control")
                stores[name] = mfcc_store(utts, cache, force, progress)
            else:
                stores[name] = random_init_store(store, cache, seed, device, force, progress)
        except (ConfigError, AudioError) as e:
            log.warning("skipping the %s control: %s", name, e)
            skipped[name] = str(e)
    return stores, skipped
