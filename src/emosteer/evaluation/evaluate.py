"""`emosteer evaluate`: did steering work, objectively?

Held-out speakers' source-emotion clips are steered over a delta sweep in every mode, and each
output is measured: the target-emotion posterior of a probe trained on the other speakers'
pooled store vectors (applied to the re-encoded output, pooled as the store pooled), its
projection on the axis, acoustic correlates and the fraction of the speaker's real
source->target gap they close, speaker similarity to the input, round-trip fidelity at latent
delta 0, and Spearman monotonicity against delta. Layout written under `out`:

    evaluate.json  stimuli.json  audio/<clip_id>/{input,real_target,<mode>_<delta:+.2f>}.wav
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from emosteer import __version__
from emosteer.artifacts import jsonable, provenance, refuse_overwrite, write_json
from emosteer.audio import SAMPLE_RATE, load_audio, resample, save_audio
from emosteer.axes import EmotionAxis
from emosteer.embeddings.extract import frame_weights
from emosteer.embeddings.store import EmbeddingStore
from emosteer.errors import AudioError, ConfigError
from emosteer.evaluation.metrics import (
    N_BOOT,
    ExternalMetrics,
    PosteriorProbe,
    SpeakerSimilarity,
    fidelity,
    mean_cell,
    not_measured,
    spearman_cell,
)
from emosteer.evaluation.select import (
    delta_key,
    resolve_speakers,
    select_clips,
    speaker_reference,
)
from emosteer.prosody.correlates import CORRELATE_KEYS, acoustic_correlates, compare_correlates
from emosteer.steering.steer import MODES, SteerConfig, Steerer

log = logging.getLogger(__name__)

EVALUATE_JSON = "evaluate.json"
STIMULI_JSON = "stimuli.json"
AUDIO_DIR = "audio"
FIDELITY_METRICS = ("mcd_db", "pesq", "stoi")


@dataclass(frozen=True)
class EvaluateConfig:
    speakers: tuple[str, ...]
    deltas: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)
    modes: tuple[str, ...] = MODES
    clips_per_speaker: int | None = None  # None: every source-emotion clip of the speaker
    seed: int = 0
    vocoder: str = "griffinlim"
    model: str | None = None  # encoder override; default: the mapper's / store's
    frames: str = "all"
    n_boot: int = N_BOOT
    ser: str | None = None
    asr: str | None = None
    mos: str | None = None
    source: str | None = None  # filled from the axis
    target: str | None = None
    emosteer_version: str = __version__

    def __post_init__(self) -> None:
        if not self.speakers:
            raise ConfigError("--speakers: name at least one held-out speaker")
        if not self.deltas or not all(np.isfinite(d) for d in self.deltas):
            raise ConfigError(f"--deltas {self.deltas}: need finite numbers")
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ConfigError(f"--modes {','.join(self.modes)}: expected some of {', '.join(MODES)}")
        if self.clips_per_speaker is not None and self.clips_per_speaker < 1:
            raise ConfigError(f"--clips-per-speaker {self.clips_per_speaker}: must be >= 1")


def _pool(hidden: np.ndarray, wav16: np.ndarray, pooling: str) -> np.ndarray:
    """Pool frames (T, D) exactly as the store did (`emosteer.embeddings.extract.frame_weights`)."""
    w = frame_weights(pooling, hidden[None], wav16)[0]
    if w.sum() <= 0:  # no frame qualified (e.g. 'voiced' on noise): the store falls back too
        w = np.ones_like(w)
    return (w[:, None] * hidden.astype(np.float64)).sum(0) / w.sum()


def _reencoder(store, layer, steerer, model):
    """The store's encoder: re-encoded outputs must live in the space the probe was fit in."""
    sc = store.config.encoder
    enc = steerer.encoder
    if enc is not None and layer in enc.layers and (
            not sc.weights_hash or enc.config.weights_hash == sc.weights_hash):
        return enc
    return sc.load((layer,), source=str(store.root / "store.json"), model=model)


def encoder_note(store) -> str:
    sc = store.config.encoder
    kind = f"random-init {sc.model_type or 'SSL'} control (seed {sc.seed})" if sc.random_init \
        else "pretrained weights"
    return f"{sc.model}: {kind}"


def _measure(out, sr, clip, ref_emb, probe, axis, enc, layer, pooling, spk_sim, refs):
    """Everything measured on one steered output (a flat dict of numbers)."""
    y16 = resample(out, sr, SAMPLE_RATE)
    hidden = enc.encode(y16)[list(enc.layers).index(layer)]
    emb = _pool(hidden, y16, pooling)
    corr = acoustic_correlates(out, sr, clip.id)
    src, tgt = refs
    gap = compare_correlates(corr, src, tgt) if src and tgt else {}
    m = {"posterior": float(probe.posterior(emb[None])[0]),
         "axis_projection": float(axis.project(emb.astype(np.float32)))}
    m["speaker_similarity"] = (spk_sim.similarity(ref_emb, out, sr)
                               if ref_emb is not None else float("nan"))
    m.update({f"corr:{k}": corr[k] for k in CORRELATE_KEYS})
    m.update({f"gap:{k}": gap.get(k, float("nan")) for k in CORRELATE_KEYS})
    return m


def _table(results, cfg, sim_reason, gap_reason):
    """One row per (mode, delta): cells over clips."""
    rows = []
    for mode in cfg.modes:
        for d in cfg.deltas:
            ms = [r for r in results if r["mode"] == mode and r["delta"] == d]
            def cell(k, what, ms=ms):
                return mean_cell([r[k] for r in ms], cfg.seed, what, cfg.n_boot)
            rows.append({
                "mode": mode, "delta": d,
                "posterior": cell("posterior", "posterior"),
                "speaker_similarity": (not_measured(sim_reason) if sim_reason
                                       else cell("speaker_similarity", "speaker similarity")),
                "correlates": {k: cell(f"corr:{k}", k) for k in CORRELATE_KEYS},
                "gap_closed": {k: (not_measured(gap_reason) if gap_reason
                                   else cell(f"gap:{k}", f"gap closed {k}"))
                               for k in CORRELATE_KEYS},
            })
    return rows


def _monotonicity(results, cfg):
    out = {}
    keys = ["posterior", "axis_projection"] + list(CORRELATE_KEYS)
    for mode in cfg.modes:
        ms = [r for r in results if r["mode"] == mode]
        out[mode] = {}
        for k in keys:
            src = "posterior" if k == "posterior" else (
                "axis_projection" if k == "axis_projection" else f"corr:{k}")
            out[mode][k] = spearman_cell([(r["clip"], r["delta"], r[src]) for r in ms],
                                         cfg.seed, f"{mode} {k}", cfg.n_boot)
    return out


def _fidelity(fid_rows, cfg):
    if "latent" not in cfg.modes or 0.0 not in cfg.deltas:
        reason = "needs latent mode and delta 0 in the sweep"
        return {"mode": "latent", "delta": 0.0, **{k: not_measured(reason) for k in FIDELITY_METRICS}}
    return {"mode": "latent", "delta": 0.0,
            **{k: mean_cell([r[k] for r in fid_rows], cfg.seed, k, cfg.n_boot)
               for k in FIDELITY_METRICS}}


def evaluate(store_dir, axis_dir, mapper_dir, out_dir, cfg: EvaluateConfig,
             prosody: str | Path | None = None, device: str = "cpu", force: bool = False,
             progress: bool = True) -> dict:
    """Steer held-out speakers' clips over `cfg.deltas` x `cfg.modes`, measure every output and
    write `out_dir` (see module docstring). Returns the evaluate.json content.

    Clips that cannot be read or steered are reported, skipped and listed under "skipped"."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    refuse_overwrite(out_dir / EVALUATE_JSON, force)
    store, axis = EmbeddingStore.open(store_dir), EmotionAxis.load(axis_dir)
    layer, source, target = axis.config.layer, axis.config.source, axis.config.target
    if layer not in store.layers:
        raise ConfigError(f"{store_dir}: no layer {layer} (the axis layer); store has "
                          f"{list(store.layers)}")
    cfg = replace(cfg, source=source, target=target,
                  speakers=resolve_speakers(cfg.speakers, set(store.labels("speaker").tolist())))
    probe = PosteriorProbe.fit(store.pooled(layer), store.labels("speaker"),
                               store.labels("emotion"), source, target, cfg.speakers)
    needs_latent = any(m in ("latent", "both") for m in cfg.modes)
    steerer = Steerer.from_artifacts(axis=axis, mapper=mapper_dir if needs_latent else None,
                                     vocoder=cfg.vocoder, prosody=prosody, model=cfg.model,
                                     mode="both" if needs_latent else "prosody", device=device)
    if any(m in ("prosody", "both") for m in cfg.modes) and steerer.prosody is None:
        raise ConfigError(f"modes prosody/both need a prosody delta: {axis_dir}/prosody.json "
                          "or --prosody FILE")
    enc = _reencoder(store, layer, steerer, cfg.model)
    spk_sim = SpeakerSimilarity()
    external = ExternalMetrics(cfg.ser, cfg.asr, cfg.mos, target)
    clips = select_clips(store.index, cfg.speakers, source, target, cfg.clips_per_speaker, cfg.seed)
    refs = {s: (speaker_reference(store.index, s, source), speaker_reference(store.index, s, target))
            for s in cfg.speakers}
    gap_reason = None if all(a and b for a, b in refs.values()) else \
        f"a held-out speaker lacks real {source} or {target} recordings"

    results, fid_rows, done, skipped = [], [], [], []
    inputs16, outputs16 = {}, {}
    bar = tqdm(total=len(clips) * len(cfg.modes) * len(cfg.deltas), desc="evaluate",
               unit="output", disable=not progress)
    for clip in clips:
        cdir, n_done = out_dir / AUDIO_DIR / clip.id, 0
        try:
            wav = load_audio(clip.row["path"])
            ref_emb = spk_sim.embed(wav, SAMPLE_RATE) if spk_sim.unavailable is None else None
            rec = {"id": clip.id, "speaker": clip.row["speaker"], "emotion": source,
                   "source_clip": clip.row["utt_id"], "input": f"{AUDIO_DIR}/{clip.id}/input.wav",
                   "real_target": None, "outputs": {m: {} for m in cfg.modes}}
            save_audio(cdir / "input.wav", wav, SAMPLE_RATE)
            if clip.target_row is not None:
                save_audio(cdir / "real_target.wav", load_audio(clip.target_row["path"]), SAMPLE_RATE)
                rec["real_target"] = f"{AUDIO_DIR}/{clip.id}/real_target.wav"
            mine, fid = [], []
            for mode in cfg.modes:
                for d in cfg.deltas:
                    y, sr = steerer.steer(wav, d, SteerConfig(mode=mode, frames=cfg.frames),
                                          source=clip.row["path"])
                    rel = f"{AUDIO_DIR}/{clip.id}/{mode}_{delta_key(d)}.wav"
                    save_audio(out_dir / rel, y, sr)
                    rec["outputs"][mode][delta_key(d)] = rel
                    m = _measure(y, sr, clip, ref_emb, probe, axis, enc, layer,
                                 store.config.pooling, spk_sim, refs[clip.row["speaker"]])
                    mine.append({"clip": clip.id, "mode": mode, "delta": d, **m})
                    if mode == "latent" and d == 0.0:
                        fid.append(fidelity(wav, y, sr, steerer.mapper.config.mel_config))
                    if external.active:
                        outputs16[f"{clip.id}|{mode}|{delta_key(d)}"] = resample(y, sr, SAMPLE_RATE)
                    bar.update(1)
                    n_done += 1
        except AudioError as e:
            log.warning("%s: skipped (%s)", clip.row["path"], e)
            skipped.append({"clip": clip.id, "path": clip.row["path"], "reason": str(e)})
            bar.update(len(cfg.modes) * len(cfg.deltas) - n_done)
            continue
        inputs16[clip.id] = wav
        results += mine
        fid_rows += fid
        done.append((clip, rec))
    bar.close()
    if not done:
        raise AudioError(f"{store_dir}: no clip of {', '.join(cfg.speakers)} could be evaluated")
    return _write(out_dir, cfg, store, axis, probe, done, skipped, results, fid_rows,
                  spk_sim.unavailable, gap_reason,
                  external.measure(inputs16, outputs16, cfg.seed))


def _stimuli(done, cfg) -> list[dict]:
    """The listening study's view of the outputs (emosteer.study.design.read_stimuli)."""
    out = []
    for clip, rec in done:
        base = {"source_clip": rec["source_clip"], "speaker": rec["speaker"]}
        out.append({"id": f"{clip.id}.original", "path": rec["input"], **base, "mode": "original",
                    "delta": 0.0, "target_emotion": cfg.source, "kind": "original"})
        if rec["real_target"]:
            out.append({"id": f"{clip.id}.anchor", "path": rec["real_target"], **base,
                        "mode": "anchor", "delta": 0.0, "target_emotion": cfg.target,
                        "kind": "anchor"})
        for mode, by_delta in rec["outputs"].items():
            for d in cfg.deltas:
                sign = "p" if d >= 0 else "m"  # '+' is not allowed in stimulus ids
                out.append({"id": f"{clip.id}.{mode}.{sign}{abs(d):.2f}",
                            "path": by_delta[delta_key(d)], **base, "mode": mode, "delta": d,
                            "target_emotion": cfg.target, "kind": "steered"})
    return out


def _write(out_dir, cfg, store, axis, probe, done, skipped, results, fid_rows, sim_reason,
           gap_reason, external) -> dict:
    report = {
        "kind": "evaluate", "emosteer_version": __version__,
        "provenance": provenance(store=str(store.root)),
        "config": jsonable(cfg),
        "axis": {"model": axis.config.encoder.model, "layer": axis.config.layer,
                 "source": axis.config.source, "target": axis.config.target,
                 "calibration": axis.calibration},
        "encoder_note": encoder_note(store),
        "probe": {"train_speakers": list(probe.train_speakers), "n_train": probe.n_train,
                  "pooling": store.config.pooling},
        "clips": [{k: rec[k] for k in ("id", "speaker", "emotion", "input", "real_target",
                                       "outputs")} for _, rec in done],
        "skipped": skipped,
        "table": _table(results, cfg, sim_reason, gap_reason),
        "fidelity": _fidelity(fid_rows, cfg),
        "monotonicity": _monotonicity(results, cfg),
        "external": external,
    }
    write_json(out_dir / STIMULI_JSON, _stimuli(done, cfg))
    write_json(out_dir / EVALUATE_JSON, report)
    return report
