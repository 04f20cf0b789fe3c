"""`emosteer run RECIPE.yaml`: the whole experiment, stage by stage, resumable.

corpus -> extract -> axis (+ prosody delta) -> probe -> mapper -> steer -> tts -> evaluate
-> report (the stage functions live in `emosteer.stages`).

Each stage writes its artifacts under the run directory (layout in docs/design.md) and is
recorded in RUN/run.json when it finishes; a rerun skips finished stages and the stages
themselves resume (extract per utterance, mapper training per checkpoint), so a killed run
loses at most the work in flight. The encoder is loaded once and shared by the stages.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emosteer import __version__
from emosteer.artifacts import jsonable, provenance, read_json, write_json
from emosteer.errors import ConfigError
from emosteer.recipe import Recipe

log = logging.getLogger(__name__)

STAGES = ("corpus", "extract", "axis", "probe", "mapper", "steer", "tts", "evaluate", "report")
RUN_JSON = "run.json"


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
        import hashlib

        import numpy as np

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
            from emosteer.encoders_fallback import load_encoder_or_control

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
            from emosteer.corpora import scan_corpus

            kind, root = self.state["corpus"]["format"], self.state["corpus"]["root"]
            utts = scan_corpus(root, kind)
            keep = self.recipe.corpus.speakers
            self._utterances = [u for u in utts if not keep or u.speaker in keep]
        return self._utterances

    def split(self) -> tuple[list, list]:
        test = set(self.recipe.axis.test_speakers)
        utts = self.utterances()
        return [u for u in utts if u.speaker not in test], [u for u in utts if u.speaker in test]


def enabled_stages(recipe: Recipe) -> list[str]:
    off = {"probe": not recipe.probe, "evaluate": not recipe.evaluate, "report": not recipe.report,
           "tts": not recipe.tts.text}
    return [s for s in STAGES if not off.get(s, False)]


def run_pipeline(recipe: Recipe, run_dir: str | Path, force: bool = False, progress: bool = True,
                 stop_after: str | None = None) -> dict[str, Any]:
    """Execute `recipe` into `run_dir`, skipping stages a previous run finished."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / RUN_JSON
    recipe_json = jsonable(dataclasses.asdict(recipe))
    state: dict[str, Any] = {}
    if state_path.is_file() and not force:
        state = read_json(state_path)
        if state.get("recipe") != recipe_json:
            raise ConfigError(f"{run_dir}: holds a run of a different recipe "
                              f"({state.get('recipe', {}).get('name')!r}); use -f to redo it")
    state.update({"kind": "run", "recipe": recipe_json, "emosteer_version": __version__})
    state.setdefault("stages", {})
    if force:
        state["stages"] = {}
    ctx = RunContext(recipe, run_dir, state, force=force, progress=progress)
    stages = enabled_stages(recipe)
    if stop_after is not None and stop_after not in stages:
        raise ConfigError(f"--stop-after {stop_after!r}: expected one of {', '.join(stages)}")
    from emosteer.stages import STAGE_FUNCS

    for i, name in enumerate(stages, start=1):
        if state["stages"].get(name, {}).get("status") == "done":
            log.info("[%d/%d] %s: done earlier, skipped", i, len(stages), name)
        else:
            log.info("[%d/%d] %s ...", i, len(stages), name)
            t0 = time.perf_counter()
            result = STAGE_FUNCS[name](ctx)
            state["stages"][name] = {"status": "done", "seconds": round(time.perf_counter() - t0, 1),
                                     "result": result}
            state["provenance"] = provenance()
            write_json(state_path, state)
            log.info("[%d/%d] %s: done in %.0f s", i, len(stages), name,
                     state["stages"][name]["seconds"])
        if name == stop_after:
            break
    return state
