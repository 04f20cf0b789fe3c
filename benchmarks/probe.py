"""Run cost of `emosteer probe`: a 13-layer sweep of 480 clips (RAVDESS-shaped: 8 speakers x
60 clips x 8 emotions, 768-d like wav2vec2-base) on 2 threads, plots and UMAP included.

    .venv/bin/python benchmarks/probe.py [--layers 13] [--clips 480] [--dim 768] [--no-umap]

The acceptance budget is 2 CPU-minutes once embeddings exist. CPU seconds are the process's
(all threads); wall seconds are inflated on a shared machine, CPU seconds much less so.
"""

from __future__ import annotations

import argparse
import os

THREADS = "2"  # the budget is stated for 2 threads; set before numpy loads BLAS
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(var, THREADS)

import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

BUDGET_CPU_S = 120.0
SPEAKER_SCALE = 2.0  # speaker offsets dominate pooled SSL vectors, as in the real store
EMOTION_SCALE = 0.5  # emotion shifts are weaker, and grow with depth below


def synthetic_corpus(n_layers: int = 13, n_clips: int = 480, dim: int = 768,
                     n_speakers: int = 8, n_emotions: int = 8, seed: int = 0):
    """({layer: (N, D)}, speakers, emotions): random data shaped like the RAVDESS store."""
    rng = np.random.default_rng(seed)
    spk = np.repeat(np.arange(n_speakers), n_clips // n_speakers)
    emo = np.tile(np.arange(n_emotions), len(spk) // n_emotions + 1)[: len(spk)]
    spk_off = rng.normal(size=(n_speakers, dim)) * SPEAKER_SCALE
    emo_off = rng.normal(size=(n_emotions, dim)) * EMOTION_SCALE
    layers = {k: (spk_off[spk] + emo_off[emo] * (k + 1) / n_layers
                  + rng.normal(size=(len(spk), dim))).astype(np.float32)
              for k in range(n_layers)}
    return layers, [f"s{i}" for i in spk], [f"e{i}" for i in emo]


def synthetic_store(out: Path, n_layers: int, n_clips: int, dim: int):
    from emosteer.embeddings.encoders import EncoderIdentity
    from emosteer.embeddings.store import EmbeddingStore, StoreConfig, write_store

    layers, spk, emo = synthetic_corpus(n_layers, n_clips, dim)
    index = [{"utt_id": f"synth/{i:04d}", "speaker": s, "emotion": e, "corpus": "synth"}
             for i, (s, e) in enumerate(zip(spk, emo, strict=True))]
    cfg = StoreConfig(encoder=EncoderIdentity("synthetic", random_init=None), layers=tuple(layers), pooling="mean",
                      hidden_size=dim, source="import")
    write_store(out, cfg, index, layers)
    return EmbeddingStore.open(out)


def main() -> None:
    from emosteer.evaluation.probe import run_probe
    from emosteer.precision import machine_line

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=13)
    ap.add_argument("--clips", type=int, default=480)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--no-umap", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = synthetic_store(Path(tmp) / "store", args.layers, args.clips, args.dim)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        report = run_probe(store, Path(tmp) / "probe", umap=not args.no_umap)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(f"machine: {machine_line()}")
    print(f"probe {args.layers} layers x {args.clips} clips x {args.dim}-d "
          f"({len(report['config'].pairs)} axis pairs, {report['config'].n_boot} bootstrap "
          f"resamples, UMAP {report['umap']}), {THREADS} threads: "
          f"{cpu:.1f} CPU-s, {wall:.1f} s wall; budget {BUDGET_CPU_S:.0f} CPU-s: "
          f"{'ok' if cpu < BUDGET_CPU_S else 'MISSED'}")


if __name__ == "__main__":
    main()
