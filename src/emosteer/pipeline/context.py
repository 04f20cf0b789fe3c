"""What the pipeline's stages share: the recipe, the run directory, run.json's state, and the
encoder (loaded once, each distinct waveform encoded once)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emosteer.corpora.formats import scan_corpus
from emosteer.embeddings.fallback import load_encoder_or_control
from emosteer.pipeline.recipe import Recipe

log = logging.getLogger(__name__)

MEMO_BYTES = 1 << 30  # keep at most 1 GiB of encoder outputs in memory (the demo needs ~60 MB)


class MemoEncoder:
    """Encodes each distinct waveform once per run: extract and the mapper read the same clips.

    Batched and unbatched encoding agree (tests/test_encoders.py), so serving a batch one clip
    at a time from the memo changes no result."""

    def __init__(self, encoder, max_bytes: int = MEMO_BYTES):
        self._encoder, self._memo, self._bytes, self._max = encoder, {}, 0, max_bytes

    def __getattr__(self, name: str):
        return getattr(self._encoder, name)

    def encode(self, wav):
        key = hashlib.sha1(np.ascontiguousarray(wav, dtype=np.float32).tobytes()).hexdigest()
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        out = self._encoder.encode(wav)
        if self._bytes + out.nbytes <= self._max:
            self._memo[key] = out
            self._bytes += out.nbytes
        return out

    def encode_batch(self, wavs, batch_size: int = 8):
        return [self.encode(w) for w in wavs]


@dataclass
class RunContext:
    """What the stages share: the recipe, the run directory, run.json's state and the encoder."""

    recipe: Recipe
    run_dir: Path
    state: dict[str, Any]
    force: bool = False
    progress: bool = True
    _encoder: Any = field(default=None, repr=False)
    _utterances: list | None = field(default=None, repr=False)

    def path(self, name: str) -> Path:
        return self.run_dir / name

    @property
    def layers(self) -> tuple[int, ...]:
        spec = self.recipe.encoder
        return tuple(sorted({spec.layer, *spec.probe_layers}))

    def encoder(self):
        """The recipe's encoder, or (offline, no weights) a random-init one of its architecture."""
        if self._encoder is None:
            spec = self.recipe.encoder
            enc, note = load_encoder_or_control(
                spec.model, self.layers, self.path("encoder"), device=spec.device, bf16=spec.bf16,
                random_init=spec.random_init, fallback=spec.fallback_random_init, seed=spec.seed)
            self.state["encoder"] = {"requested": spec.model, "loaded": enc.config.model,
                                     "random_init": enc.config.random_init, "note": note}
            if note:
                log.warning("NOTE: %s", note)
            self._encoder = MemoEncoder(enc)
        return self._encoder

    def utterances(self) -> list:
        if self._utterances is None:
            kind, root = self.state["corpus"]["format"], self.state["corpus"]["root"]
            utts = scan_corpus(root, kind)
            speakers, emotions = self.recipe.corpus.speakers, self.recipe.corpus.emotions
            self._utterances = [u for u in utts if (not speakers or u.speaker in speakers)
                                and (not emotions or u.emotion in emotions)]
        return self._utterances

    def split(self) -> tuple[list, list]:
        test = set(self.recipe.axis.test_speakers)
        utts = self.utterances()
        return [u for u in utts if u.speaker not in test], [u for u in utts if u.speaker in test]
