"""The pipeline's stages: each takes the RunContext, writes its artifacts under the run
directory and returns a small summary for run.json (`run` executes them in order)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from emosteer.artifacts import read_json
from emosteer.audio import SAMPLE_RATE, load_audio, save_audio
from emosteer.axes import build_axis, holdout_auc
from emosteer.bank.build import build_bank
from emosteer.corpora.download import SOURCES, download_corpus
from emosteer.corpora.formats import count_table
from emosteer.embeddings.extract import extract_store
from emosteer.embeddings.store import EmbeddingStore
from emosteer.errors import ConfigError
from emosteer.evaluation.evaluate import EvaluateConfig, evaluate
from emosteer.evaluation.probe import run_probe
from emosteer.pipeline.context import RunContext
from emosteer.pipeline.democorpus import build_demo_corpus
from emosteer.prosody.world import learn_prosody_delta
from emosteer.report.build import build_report
from emosteer.steering.files import write_sweep
from emosteer.steering.steer import PROSODY_FILE, SteerConfig, Steerer, mode_config
from emosteer.synthesis.data import prepare_examples
from emosteer.synthesis.mapper import MapperConfig
from emosteer.synthesis.mel import HIFIGAN_22K
from emosteer.synthesis.train import train_mapper
from emosteer.training import TrainConfig
from emosteer.tts.backends import synthesize_long
from emosteer.tts.references import measure_change, steering_delta

log = logging.getLogger(__name__)

# Per-clip WORLD analyses (under RUN/cache/prosody/, keyed by the clip's bytes), shared by the
# axis stage's prosody delta and the bank's: the same clips, analysed once.
PROSODY_CACHE = "cache"
BANK_DIR = "bank"  # RUN/bank: where the report looks for a bank (run.json names it too)


def fetch_corpus(ctx: RunContext, kind: str, root: Path) -> Path:
    """Download `kind` into `root` unless an earlier run did: an archive already extracted
    there (its <kind>.download.json says so) is neither fetched nor extracted again, so `-f`
    redoes the run, not a 200 MB download."""
    source = SOURCES.get(kind)
    record = root / f"{kind}.download.json"
    if source is not None and source.url and record.is_file():
        done = read_json(record)
        if isinstance(done, dict) and done.get("extracted"):
            log.info("%s: downloaded and extracted earlier (%s); not fetched again", root,
                     record.name)
            return root
    return download_corpus(kind, root, force=ctx.force, progress=ctx.progress)


def stage_corpus(ctx: RunContext) -> dict:
    spec = ctx.recipe.corpus
    if spec.kind == "demo":
        root = Path(spec.root) if spec.root else ctx.path("corpus")
        build_demo_corpus(root, spec.n_sentences, spec.n_voices, emotions=spec.emotions)
        fmt = "csv"
    else:
        root = Path(spec.root) if spec.root else ctx.path("corpus")
        if spec.download:
            root = fetch_corpus(ctx, spec.kind, root)
        fmt = spec.kind
    ctx.state["corpus"] = {"format": fmt, "root": str(root.resolve())}
    ctx._utterances = None
    utts = ctx.utterances()
    missing = set(ctx.recipe.axis.test_speakers) - {u.speaker for u in utts}
    if missing:
        raise ConfigError(f"axis.test_speakers {sorted(missing)} are not in the corpus at {root}")
    return {"n_utterances": len(utts), "counts": count_table(utts)}


def stage_extract(ctx: RunContext) -> dict:
    store = extract_store(ctx.utterances(), ctx.encoder(), ctx.path("store"),
                          pooling=ctx.recipe.encoder.pooling, force=ctx.force,
                          progress=ctx.progress)
    return {"n": len(store.labels("utt_id")), "layers": list(store.layers)}


def stage_axis(ctx: RunContext) -> dict:
    import numpy as np

    spec, layer = ctx.recipe.axis, ctx.recipe.encoder.layer
    store = EmbeddingStore.open(ctx.path("store"))
    axis = build_axis(store, layer, spec.source, spec.target, spec.normalize_per_speaker,
                      exclude_speakers=spec.test_speakers)
    axis.save(ctx.path("axis"))
    train, _ = ctx.split()
    delta = learn_prosody_delta([u.path for u in train], [u.speaker for u in train],
                                [u.emotion for u in train], spec.source, spec.target,
                                progress=ctx.progress, cache_dir=ctx.path(PROSODY_CACHE))
    delta.save(ctx.path("axis") / PROSODY_FILE)
    out: dict[str, Any] = {"calibration": round(float(axis.calibration), 4),
                           "f0_shift_st": round(delta.f0_shift_st, 2),
                           "tilt_db": round(delta.tilt_db, 2)}
    if spec.test_speakers:
        out["holdout"] = holdout_auc(store.pooled(layer), np.asarray(store.labels("speaker")),
                                     np.asarray(store.labels("emotion")), spec.source,
                                     spec.target, spec.test_speakers, spec.normalize_per_speaker)
    return out


def stage_bank(ctx: RunContext) -> dict:
    """The emotion bank: axis.source -> every other emotion of the corpus, an axis and a prosody
    delta each, from the training speakers (the held-out ones give the AUC); RUN/bank."""
    spec = ctx.recipe.axis
    bank = build_bank(ctx.path("store"), ctx.path(BANK_DIR), reference=spec.source,
                      layer=ctx.recipe.encoder.layer, holdout_speakers=spec.test_speakers,
                      force=True, normalize_per_speaker=spec.normalize_per_speaker,
                      cache_dir=ctx.path(PROSODY_CACHE), progress=ctx.progress)
    ctx.state["bank"] = BANK_DIR  # relative to run.json, where the report resolves it
    per = bank.diagnostics.get("per_emotion", {})

    def auc(emotion):
        value = (per.get(emotion, {}).get("holdout") or {}).get("auc_raw")
        return None if value is None else round(float(value), 3)

    return {"emotions": list(bank.emotions), "holdout_auc": {e: auc(e) for e in bank.emotions}}


def stage_probe(ctx: RunContext) -> dict:
    spec = ctx.recipe.axis
    result = run_probe(EmbeddingStore.open(ctx.path("store")), ctx.path("probe"),
                       emotions=(spec.source, spec.target), umap=ctx.recipe.probe_umap)
    return {"best_layer": result["best_layer"]}


def stage_mapper(ctx: RunContext) -> dict:
    spec, enc = ctx.recipe.mapper, ctx.encoder()
    layer = ctx.recipe.encoder.layer
    train, test = ctx.split()
    cache = ctx.path("mapper") / "cache"
    examples = prepare_examples(train, enc, layer, HIFIGAN_22K, cache, progress=ctx.progress)
    tests = prepare_examples(test, enc, layer, HIFIGAN_22K, cache, progress=ctx.progress)
    ec = enc.config
    cfg = MapperConfig.for_mel(HIFIGAN_22K, in_dim=ec.hidden_size, encoder=ec.identity(),
                               layer=layer, in_rate=ec.frame_rate,
                               hidden=spec.hidden, n_blocks=spec.n_blocks,
                               n_transformer_layers=spec.n_transformer_layers,
                               use_prosody=spec.use_prosody)
    train_cfg = TrainConfig(lr=spec.lr, batch_size=spec.batch_size, max_epochs=spec.max_epochs,
                            patience=spec.patience, max_minutes=spec.max_minutes,
                            seed=ctx.recipe.encoder.seed)
    _, report = train_mapper(examples, cfg, ctx.path("mapper"), train_cfg=train_cfg,
                             test_examples=tests, resume=not ctx.force, progress=ctx.progress)
    return {k: report[k] for k in ("val_mcd_db", "test_mcd_db", "test_mean_mel_mcd_db", "n_train", "n_val",
                                   "train_speakers", "val_speakers", "test_speakers")}


def steerer(ctx: RunContext):
    """The run's Steerer, built from its own artifacts and the already-loaded encoder."""
    return Steerer.from_artifacts(axis=ctx.path("axis"), mapper=ctx.path("mapper"),
                                  vocoder=ctx.recipe.steer.vocoder, mode="both",
                                  device=ctx.recipe.encoder.device, encoder=ctx.encoder())


def example_clip(ctx: RunContext):
    """The sweep's input: a source-emotion clip of the first held-out speaker (else any)."""
    _, test = ctx.split()
    pool = test or ctx.utterances()
    source = [u for u in pool if u.emotion == ctx.recipe.axis.source]
    return (source or pool)[0]


def stage_steer(ctx: RunContext) -> dict:
    """A sweep of every mode and delta on one clip: the demo's "listen to this" example."""
    spec = ctx.recipe.steer
    clip = example_clip(ctx)
    wav = load_audio(clip.path)
    st = steerer(ctx)
    out = ctx.path("steer")
    save_audio(out / "input.wav", wav, 16000)
    rows = []
    for mode in spec.modes:
        for d in spec.deltas:
            y, sr = st.steer(wav, d, mode_config(mode), source=str(clip.path))
            name = f"{mode.replace(':', '-')}_{d:+.2f}.wav"
            save_audio(out / name, y, sr)
            rows.append({"mode": mode, "delta": d, "path": name, "sample_rate": sr})
    write_sweep(out, clip.path, rows, speaker=clip.speaker, emotion=clip.emotion)
    return {"clip": clip.utt_id, "n": len(rows)}


def stage_tts(ctx: RunContext) -> dict:
    """The TTS example: Piper reads the recipe's text, steered at each alpha (written in the
    sweep format, so the report plays it like the steering sweep)."""
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
    write_sweep(out, "piper synthesis", rows, text=spec.text, speaker="piper", emotion="neutral")
    return {f"f0_change_st_alpha_{r['alpha']:+.0f}": _round(r["measured"]["median_f0_change_st"])
            for r in rows}


def _round(x):
    return None if x is None else round(float(x), 2)


def stage_evaluate(ctx: RunContext) -> dict:
    """Held-out speakers x deltas x modes, measured (emosteer.evaluation.evaluate); a rerun redoes it."""
    r = ctx.recipe
    speakers = r.axis.test_speakers or (sorted({u.speaker for u in ctx.utterances()})[-1],)
    cfg = EvaluateConfig(speakers=tuple(speakers), deltas=tuple(r.steer.deltas),
                         modes=tuple(r.steer.modes), clips_per_speaker=r.steer.clips_per_speaker,
                         seed=r.encoder.seed, vocoder=r.steer.vocoder, n_boot=r.steer.n_boot)
    result = evaluate(ctx.path("store"), ctx.path("axis"), ctx.path("mapper"),
                      ctx.path("evaluate"), cfg, device=r.encoder.device, force=True,
                      progress=ctx.progress, encoder=ctx.encoder())
    def value(cell):
        return round(cell["value"], 3) if isinstance(cell, dict) and "value" in cell else "n/m"

    fid = result["fidelity"]
    return {"n_clips": len(result["clips"]),
            **{f"round_trip_{k}": value(fid.get(k)) for k in ("mcd_db", "pesq", "stoi")},
            **{f"rho_{m}_axis_projection": value(v.get("axis_projection"))
               for m, v in result["monotonicity"].items()}}


def stage_report(ctx: RunContext) -> dict:
    return {"index": str(build_report(ctx.run_dir))}


STAGE_FUNCS = {"corpus": stage_corpus, "extract": stage_extract, "axis": stage_axis,
               "bank": stage_bank, "probe": stage_probe, "mapper": stage_mapper,
               "steer": stage_steer, "tts": stage_tts, "evaluate": stage_evaluate,
               "report": stage_report}
STAGES = tuple(STAGE_FUNCS)  # the order a run executes them in
