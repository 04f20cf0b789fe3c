"""`emosteer run RECIPE.yaml`: the whole experiment, stage by stage, resumable.

corpus -> extract -> axis (+ prosody delta) -> probe -> mapper -> steer -> evaluate -> report

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


# -- stages --------------------------------------------------------------------------------------
def stage_corpus(ctx: RunContext) -> dict:
    from emosteer.corpora import count_table

    spec = ctx.recipe.corpus
    if spec.kind == "demo":
        from emosteer.democorpus import build_demo_corpus

        root = Path(spec.root) if spec.root else ctx.path("corpus")
        build_demo_corpus(root, spec.n_sentences, spec.n_voices)
        fmt = "csv"
    else:
        root = Path(spec.root) if spec.root else ctx.path("corpus")
        if spec.download:
            from emosteer.download import download_corpus

            root = download_corpus(spec.kind, root, progress=ctx.progress)
        fmt = spec.kind
    ctx.state["corpus"] = {"format": fmt, "root": str(root.resolve())}
    ctx._utterances = None
    utts = ctx.utterances()
    missing = set(ctx.recipe.axis.test_speakers) - {u.speaker for u in utts}
    if missing:
        raise ConfigError(f"axis.test_speakers {sorted(missing)} are not in the corpus at {root}")
    return {"n_utterances": len(utts), "counts": count_table(utts)}


def stage_extract(ctx: RunContext) -> dict:
    from emosteer.extract import extract_store

    store = extract_store(ctx.utterances(), ctx.encoder(), ctx.path("store"),
                          pooling=ctx.recipe.encoder.pooling, force=ctx.force,
                          progress=ctx.progress)
    return {"n": len(store.labels("utt_id")), "layers": list(store.layers)}


def stage_axis(ctx: RunContext) -> dict:
    import numpy as np

    from emosteer.axes import build_axis, holdout_auc
    from emosteer.prosody import learn_prosody_delta
    from emosteer.steer import PROSODY_FILE
    from emosteer.store import EmbeddingStore

    spec, layer = ctx.recipe.axis, ctx.recipe.encoder.layer
    store = EmbeddingStore.open(ctx.path("store"))
    axis = build_axis(store, layer, spec.source, spec.target, spec.normalize_per_speaker,
                      exclude_speakers=spec.test_speakers)
    axis.save(ctx.path("axis"))
    train, _ = ctx.split()
    delta = learn_prosody_delta([u.path for u in train], [u.speaker for u in train],
                                [u.emotion for u in train], spec.source, spec.target,
                                progress=ctx.progress)
    delta.save(ctx.path("axis") / PROSODY_FILE)
    out: dict[str, Any] = {"calibration": round(float(axis.calibration), 4),
                           "f0_shift_st": round(delta.f0_shift_st, 2),
                           "tilt_db": round(delta.tilt_db, 2)}
    if spec.test_speakers:
        out["holdout"] = holdout_auc(store.pooled(layer), np.asarray(store.labels("speaker")),
                                     np.asarray(store.labels("emotion")), spec.source,
                                     spec.target, spec.test_speakers, spec.normalize_per_speaker)
    return out


def stage_probe(ctx: RunContext) -> dict:
    from emosteer.probe import run_probe
    from emosteer.store import EmbeddingStore

    spec = ctx.recipe.axis
    result = run_probe(EmbeddingStore.open(ctx.path("store")), ctx.path("probe"),
                       emotions=(spec.source, spec.target))
    return {"best_layer": result["best_layer"]}


def stage_mapper(ctx: RunContext) -> dict:
    from emosteer.mapper import MapperConfig, prepare_examples, train_mapper
    from emosteer.mel import HIFIGAN_22K
    from emosteer.training import TrainConfig

    spec, enc = ctx.recipe.mapper, ctx.encoder()
    layer = ctx.recipe.encoder.layer
    train, test = ctx.split()
    cache = ctx.path("mapper") / "cache"
    examples = prepare_examples(train, enc, layer, HIFIGAN_22K, cache, progress=ctx.progress)
    tests = prepare_examples(test, enc, layer, HIFIGAN_22K, cache, progress=ctx.progress)
    ec = enc.config
    cfg = MapperConfig.for_mel(HIFIGAN_22K, in_dim=ec.hidden_size, model=ec.model, layer=layer,
                               encoder_random_init=ec.random_init, in_rate=ec.frame_rate,
                               hidden=spec.hidden, n_blocks=spec.n_blocks,
                               n_transformer_layers=spec.n_transformer_layers,
                               use_prosody=spec.use_prosody)
    train_cfg = TrainConfig(lr=spec.lr, batch_size=spec.batch_size, max_epochs=spec.max_epochs,
                            patience=spec.patience, max_minutes=spec.max_minutes,
                            seed=ctx.recipe.encoder.seed)
    _, report = train_mapper(examples, cfg, ctx.path("mapper"), train_cfg=train_cfg,
                             test_examples=tests, resume=not ctx.force, progress=ctx.progress)
    return {k: report[k] for k in ("val_mcd_db", "test_mcd_db", "n_train", "n_val",
                                   "train_speakers", "val_speakers", "test_speakers")}


def steerer(ctx: RunContext):
    """The run's Steerer, built from its own artifacts and the already-loaded encoder."""
    from emosteer.axes import EmotionAxis
    from emosteer.mapper import load_mapper
    from emosteer.prosody import ProsodyDelta
    from emosteer.steer import PROSODY_FILE, Steerer
    from emosteer.vocoders import load_vocoder

    mapper = load_mapper(ctx.path("mapper"), device=ctx.recipe.encoder.device)
    vocoder = load_vocoder(ctx.recipe.steer.vocoder, device=ctx.recipe.encoder.device,
                           mel_config=mapper.config.mel_config)
    return Steerer(EmotionAxis.load(ctx.path("axis")), encoder=ctx.encoder(), mapper=mapper,
                   vocoder=vocoder, prosody=ProsodyDelta.load(ctx.path("axis") / PROSODY_FILE))


def example_clip(ctx: RunContext):
    """The sweep's input: a source-emotion clip of the first held-out speaker (else any)."""
    _, test = ctx.split()
    pool = test or ctx.utterances()
    source = [u for u in pool if u.emotion == ctx.recipe.axis.source]
    return (source or pool)[0]


def stage_steer(ctx: RunContext) -> dict:
    """A sweep of every mode and delta on one clip: the demo's "listen to this" example."""
    from emosteer.audio import load_audio, save_audio
    from emosteer.steer import SteerConfig

    spec = ctx.recipe.steer
    clip = example_clip(ctx)
    wav = load_audio(clip.path)
    st = steerer(ctx)
    out = ctx.path("steer")
    save_audio(out / "input.wav", wav, 16000)
    rows = []
    for mode in spec.modes:
        for d in spec.deltas:
            y, sr = st.steer(wav, d, SteerConfig(mode=mode), source=str(clip.path))
            name = f"{mode}_{d:+.2f}.wav"
            save_audio(out / name, y, sr)
            rows.append({"mode": mode, "delta": d, "path": name, "sample_rate": sr})
    write_json(out / "sweep.json", {"input": str(clip.path), "speaker": clip.speaker,
                                    "emotion": clip.emotion, "items": rows})
    return {"clip": clip.utt_id, "n": len(rows)}


def stage_tts(ctx: RunContext) -> dict:
    """The TTS example: Piper reads the recipe's text, steered at each alpha (written in the
    sweep format, so the report plays it like the steering sweep)."""
    from emosteer.audio import SAMPLE_RATE, save_audio
    from emosteer.steer import SteerConfig
    from emosteer.tts import synthesize_long
    from emosteer.tts_steer import measure_change, steering_delta

    spec = ctx.recipe.tts
    neutral, sr = synthesize_long(spec.text, sr_out=SAMPLE_RATE, progress=ctx.progress)
    st = steerer(ctx)
    out = ctx.path("tts")
    save_audio(out / "input.wav", neutral, sr)
    rows = []
    for alpha in spec.alphas:
        y, out_sr = st.steer(neutral, steering_delta(alpha), SteerConfig(mode=spec.mode),
                             source="<piper synthesis>")
        name = f"alpha_{alpha:+.2f}.wav"
        save_audio(out / name, y, out_sr)
        rows.append({"mode": f"tts {spec.mode}", "delta": alpha, "alpha": alpha,
                     "steering_delta": steering_delta(alpha), "path": name,
                     "sample_rate": out_sr, "measured": measure_change(neutral, sr, y, out_sr)})
    write_json(out / "sweep.json", {"input": "piper synthesis", "text": spec.text,
                                    "speaker": "piper", "emotion": "neutral", "items": rows})
    return {f"f0_change_st_alpha_{r['alpha']:+.0f}": _round(r["measured"]["median_f0_change_st"])
            for r in rows}


def _round(x):
    return None if x is None else round(float(x), 2)


def stage_evaluate(ctx: RunContext) -> dict:
    """Held-out speakers x deltas x modes, measured (emosteer.evaluate); a rerun redoes it."""
    from emosteer.evaluate import EvaluateConfig, evaluate

    r = ctx.recipe
    speakers = r.axis.test_speakers or (sorted({u.speaker for u in ctx.utterances()})[-1],)
    cfg = EvaluateConfig(speakers=tuple(speakers), deltas=tuple(r.steer.deltas),
                         modes=tuple(r.steer.modes), clips_per_speaker=r.steer.clips_per_speaker,
                         seed=r.encoder.seed, vocoder=r.steer.vocoder)
    result = evaluate(ctx.path("store"), ctx.path("axis"), ctx.path("mapper"),
                      ctx.path("evaluate"), cfg, device=r.encoder.device, force=True,
                      progress=ctx.progress)
    def value(cell):
        return round(cell["value"], 3) if isinstance(cell, dict) and "value" in cell else "n/m"

    fid = result["fidelity"]
    return {"n_clips": len(result["clips"]),
            **{f"round_trip_{k}": value(fid.get(k)) for k in ("mcd_db", "pesq", "stoi")},
            **{f"rho_{m}_axis_projection": value(v.get("axis_projection"))
               for m, v in result["monotonicity"].items()}}


def stage_report(ctx: RunContext) -> dict:
    from emosteer.report import build_report

    return {"index": str(build_report(ctx.run_dir))}


STAGE_FUNCS = {"corpus": stage_corpus, "extract": stage_extract, "axis": stage_axis,
               "probe": stage_probe, "mapper": stage_mapper, "steer": stage_steer, "tts": stage_tts,
               "evaluate": stage_evaluate, "report": stage_report}


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
