"""Steering audio files: one input at one or several deltas (a sweep), offline or block by
block as a live source would deliver it, and the sweep.json index every sweep writes."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emosteer.artifacts import write_json
from emosteer.audio import iter_audio_chunks, load_audio, save_audio
from emosteer.errors import ConfigError
from emosteer.steering.steer import SteerConfig, Steerer
from emosteer.steering.stream import StreamConfig, StreamingSteerer

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"  # a sweep directory's index: its input and one item per output


def write_sweep(out_dir: str | os.PathLike, input: str | os.PathLike,
                items: Iterable[Mapping[str, Any]], **fields: Any) -> Path:
    """Write OUT_DIR/sweep.json: {"input", **fields, "items"}. Each item names one output
    (`path`, relative to OUT_DIR) and at least its `delta`; the report plays any sweep."""
    return write_json(Path(out_dir) / SWEEP_FILE,
                      {"input": str(input), **fields, "items": [dict(i) for i in items]})


def sweep_targets(input: str | os.PathLike, out_dir: str | os.PathLike, deltas: Sequence[float],
                  mode: str) -> list[Path]:
    """The output file of each delta of a sweep: OUT_DIR/<input stem>_<mode>_<delta>.wav."""
    stem = Path(input).stem
    return [Path(out_dir) / f"{stem}_{mode}_{d:+.2f}.wav" for d in deltas]


def steer_file(steerer: Steerer, input: str | os.PathLike, deltas: Sequence[float],
               targets: Sequence[str | os.PathLike], cfg: SteerConfig | StreamConfig,
               sweep_dir: str | os.PathLike | None = None) -> list[dict]:
    """Steer the audio file `input` at each delta and write targets[i] for deltas[i].

    A StreamConfig steers block by block (reading the file as a live source, and each item
    records the latency); a SteerConfig steers the whole file. With `sweep_dir`, the items
    are also indexed in SWEEP_DIR/sweep.json. Returns one item per output."""
    if len(deltas) != len(targets):
        raise ConfigError(f"{len(deltas)} deltas but {len(targets)} output files")
    stream = isinstance(cfg, StreamConfig)
    wav = None if stream else load_audio(input)
    rows = []
    for d, target in zip(deltas, targets, strict=True):
        target = Path(target)
        if stream:
            s = StreamingSteerer(steerer, d, cfg)
            blocks = (c for _, c in iter_audio_chunks(input, chunk_seconds=cfg.block_ms / 1000))
            y, sr = np.concatenate(list(s.stream(blocks))), s.sample_rate
            save_audio(target, y, sr)
            lat = s.latency_report()
            rows.append({"delta": d, "path": target.name, "sample_rate": sr, "latency": lat})
            log.info("wrote %s (stream, mode %s, delta %+.2f): latency %.0f ms algorithmic + "
                     "%.0f ms compute (p95), real-time factor %.2f", target, cfg.mode, d,
                     lat["algorithmic_ms"], lat["compute_ms_p95"], lat["rtf"])
        else:
            y, sr = steerer.steer(wav, d, cfg, source=str(input))
            save_audio(target, y, sr)
            rows.append({"delta": d, "path": target.name, "sample_rate": sr})
            log.info("wrote %s (mode %s, delta %+.2f)", target, cfg.mode, d)
    if sweep_dir is not None:
        write_sweep(sweep_dir, input, rows, config=cfg)
    return rows
