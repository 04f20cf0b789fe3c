"""`emosteer evaluate`: did steering work, objectively?

Held-out speakers' source-emotion clips are steered over a delta sweep in every mode, and each
output is measured by judges that did not do the steering (`emosteer.evaluation.panel`):

- DNSMOS P.835 (SIG, BAK, OVRL), Whisper WER/CER (against the corpus transcript or a CSV
  manifest's `text`, else against the ASR of the input; `reference` says which), speaker
  similarity to the input (resemblyzer), and a hub SER model's P(target) with `--ser`;
- an eGeMAPS emotion judge trained here on the real source and target clips of the store's
  other (training) speakers and calibrated on the held-out speakers' real clips: its AUC and
  the mean P(target) of their real source and real target clips are the two reference lines
  a steered clip's calibrated P(target) is read against (or `--emotion-judge DIR`).

Reference rows are judged the same way: the input (real source clips), copy-synthesis through
the vocoder (log-mel of the input -> vocoder, the mapper bypassed: the quality ceiling of every
mel-based output) and the real target clips. Every judge cell has its n, a bootstrap CI over
clips and one over speakers. Also measured, as before: the posterior of a probe trained on the
other speakers' pooled store vectors of the steering encoder ("probe posterior (same
encoder)": not an independent judge), the axis projection, acoustic correlates and the fraction
of the speaker's real source->target gap they close, round-trip fidelity at latent delta 0 and
Spearman monotonicity against delta. Layout written under `out`:

    evaluate.json  stimuli.json  emotion_judge/  cache/
    audio/<clip_id>/{input,real_target,copy_synthesis,<mode>_<delta:+.2f>}.wav

A mode is "latent", "prosody" or "both", optionally with its latent decoder ("latent:full",
"both:envelope"; see `steering.steer`), so that decoders are compared on the same clips; its
audio files write the colon as "-".
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from emosteer import __version__
from emosteer.artifacts import jsonable, provenance, refuse_overwrite, write_json
from emosteer.audio import SAMPLE_RATE, load_audio, match_loudness, resample, save_audio
from emosteer.axes import EmotionAxis
from emosteer.embeddings.extract import frame_weights
from emosteer.embeddings.store import EmbeddingStore
from emosteer.errors import ArtifactError, AudioError, ConfigError, EmosteerError
from emosteer.evaluation.emotion_judge import (
    FEATURE_SET,
    EgemapsExtractor,
    EmotionJudge,
    train_emotion_judge,
)
from emosteer.evaluation.judges import Judge, SpeakerJudge
from emosteer.evaluation.metrics import (
    N_BOOT,
    PosteriorProbe,
    auc,
    fidelity,
    grouped_cell,
    mean_cell,
    not_measured,
    spearman_cell,
)
from emosteer.evaluation.panel import DEFAULT_JUDGES, JUDGE_NAMES, make_judges
from emosteer.evaluation.select import (
    check_sweep,
    corpus_language,
    delta_key,
    real_rows,
    reference_text,
    resolve_speakers,
    select_clips,
    speaker_reference,
)
from emosteer.prosody.correlates import CORRELATE_KEYS, acoustic_correlates, compare_correlates
from emosteer.steering.steer import MODES, SteerConfig, Steerer, mode_config
from emosteer.synthesis.mel import log_mel_spectrogram, min_samples
from emosteer.synthesis.vocoders import load_vocoder

log = logging.getLogger(__name__)

EVALUATE_JSON = "evaluate.json"
STIMULI_JSON = "stimuli.json"
AUDIO_DIR = "audio"
FIDELITY_METRICS = ("mcd_db", "pesq", "stoi")
EMOTION_JUDGE_DIR = "emotion_judge"
CACHE_DIR = "cache"  # eGeMAPS features and judge scores, keyed by audio hash: reruns are cheap
COPY_SYNTHESIS = "copy_synthesis"
# What each judge contributes to a table cell (keys of its score; emotion/ser: P(target)).
JUDGE_METRICS = {"dnsmos": ("ovrl", "sig", "bak"), "asr": ("wer", "cer"), "speaker": ("cosine",),
                 "emotion": ("p_target",), "ser": ("p_target",)}
LABELS = {
    "posterior": "probe posterior (same encoder): P(target) of a logistic probe on the steering "
                 "encoder's pooled vectors of the training speakers; not an independent judge",
    "speaker_similarity": "resemblyzer cosine to the input (= judges.speaker.cosine)",
    "judges.dnsmos": "DNSMOS P.835 MOS (1-5): ovrl overall, sig speech signal, bak background",
    "judges.asr": "Whisper word / character error rate; 'reference' counts which reference was "
                  "used: transcript (corpus or manifest text) or asr_of_input",
    "judges.speaker": "resemblyzer (GE2E) cosine to the input clip",
    "judges.emotion": "calibrated P(target) of the eGeMAPS emotion judge trained on the training "
                      "speakers' real clips; read against p_target_real_source / _target (the "
                      "held-out speakers' real clips)",
    "judges.ser": "P(target) of the --ser hub model (its labels mapped onto emosteer's)",
    "ci": "95% bootstrap CI over clips; ci_speakers: over speakers",
}


@dataclass(frozen=True)
class EvaluateConfig:
    speakers: tuple[str, ...]
    deltas: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)
    modes: tuple[str, ...] = MODES
    clips_per_speaker: int | None = None  # None: every source-emotion clip of the speaker
    seed: int = 0
    vocoder: str = "auto"
    model: str | None = None  # encoder override; default: the mapper's / store's
    frames: str = "all"
    n_boot: int = N_BOOT
    ser: str | None = None  # hub SER model id or directory (the ser judge)
    asr: str | None = None  # faster-whisper model (the asr judge); None: the bundled tiny.en
    mos: str | None = None  # legacy --mos: "dnsmos" fills external.mos from the dnsmos judge
    judges: tuple[str, ...] | None = None  # None: every judge that is installed; (): none
    emotion_judge: str | None = None  # a saved EmotionJudge directory; None: train one here
    source: str | None = None  # filled from the axis
    target: str | None = None
    emosteer_version: str = __version__

    def __post_init__(self) -> None:
        check_sweep(self.speakers, self.deltas, self.modes, self.clips_per_speaker, self.frames)
        if self.judges is not None:
            unknown = [j for j in self.judges if j not in JUDGE_NAMES]
            if unknown:
                raise ConfigError(f"--judges: unknown judge(s) {', '.join(unknown)} "
                                  f"(known: {', '.join(JUDGE_NAMES)}, or 'none')")


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


def _measure(out, sr, clip, wav, probe, axis, enc, layer, pooling, speaker, refs):
    """Everything measured on one steered output (a flat dict of numbers)."""
    y16 = resample(out, sr, SAMPLE_RATE)
    hidden = enc.encode(y16)[list(enc.layers).index(layer)]
    emb = _pool(hidden, y16, pooling)
    corr = acoustic_correlates(out, sr, clip.id)
    src, tgt = refs
    gap = compare_correlates(corr, src, tgt) if src and tgt else {}
    m = {"posterior": float(probe.posterior(emb[None])[0]),
         "axis_projection": float(axis.project(emb.astype(np.float32)))}
    m["speaker_similarity"] = (
        speaker.score(out, sr, reference_wav=wav, reference_sr=SAMPLE_RATE)["cosine"]
        if speaker is not None else float("nan"))
    m.update({f"corr:{k}": corr[k] for k in CORRELATE_KEYS})
    m.update({f"gap:{k}": gap.get(k, float("nan")) for k in CORRELATE_KEYS})
    return m


# --- the judge panel ---------------------------------------------------------------------------

@dataclass
class Panel:
    """The judges an evaluation runs, those it skipped (name -> why) and the emotion judge's
    calibration summary; `speaker` also serves the legacy speaker_similarity cell."""

    judges: dict[str, Judge]
    skipped: dict[str, str]
    requested: tuple[str, ...] | None
    emotion: dict
    target: str
    speaker: SpeakerJudge | None = None
    speaker_reason: str | None = None
    failures: dict[str, list[dict]] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    deduplicated: int = 0

    def summary(self) -> dict:
        extra = {}
        ser = self.judges.get("ser")
        if ser is not None and getattr(ser, "label_map", None):
            extra["ser_unmapped_labels"] = list(ser.unmapped_labels)
        return {"requested": list(self.requested) if self.requested is not None
                else "every installed judge",
                "run": list(self.judges), "skipped": dict(self.skipped),
                "models": {n: j.cache_token() for n, j in self.judges.items()},
                "failures": self.failures, "deduplicated_items": self.deduplicated,
                "cache": CACHE_DIR, **extra}


def _features(ex: EgemapsExtractor, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """eGeMAPS rows of the readable clips among `paths` -> (X, ok mask); bad files are logged."""
    ok = np.array([Path(p).is_file() for p in paths], dtype=bool)
    good = [p for p, k in zip(paths, ok, strict=True) if k]
    try:
        X = ex.features_many(good)
    except EmosteerError:  # one bad file: find it, keep the rest
        rows = []
        for i, p in enumerate(paths):
            if not ok[i]:
                continue
            try:
                rows.append(ex.features(p))
            except EmosteerError as e:
                log.warning("%s: skipped by the emotion judge (%s)", p, e)
                ok[i] = False
        X = np.stack(rows) if rows else np.zeros((0, len(ex.feature_names)))
    return X, ok


def _emotion_judge(cfg, store, out_dir: Path, cache: Path, progress: bool
                   ) -> tuple[EmotionJudge, dict]:
    """Train (or load `cfg.emotion_judge`) the source-vs-target eGeMAPS judge and calibrate it
    on the held-out speakers' real clips. ConfigError/ArtifactError when it cannot be built."""
    source, target = cfg.source, cfg.target
    ex = EgemapsExtractor(cache_dir=cache)
    if cfg.emotion_judge:
        judge = EmotionJudge.load(cfg.emotion_judge, extractor=ex, cache_dir=cache)
        if source not in judge.classes or target not in judge.classes:
            raise ConfigError(f"--emotion-judge {cfg.emotion_judge}: judges {judge.classes}, "
                              f"not {source} and {target}")
        if judge.binary and judge.classes != (source, target):
            raise ConfigError(f"--emotion-judge {cfg.emotion_judge}: a binary judge of "
                              f"{judge.classes[0]} vs {judge.classes[1]}; evaluate needs "
                              f"{source} vs {target}")
        info = {"status": "loaded", "path": str(cfg.emotion_judge)}
    else:
        train = real_rows(store.index, cfg.speakers, (source, target), held_out=False)
        X, ok = _features(ex, [r["path"] for r in train])
        train = [r for r, k in zip(train, ok, strict=True) if k]
        judge = train_emotion_judge([r["path"] for r in train], [r["emotion"] for r in train],
                                    [r["speaker"] for r in train], classes=(source, target),
                                    extractor=ex, features=X, cache_dir=cache,
                                    progress=progress)
        judge.save(out_dir / EMOTION_JUDGE_DIR)
        info = {"status": "trained", "path": EMOTION_JUDGE_DIR}
    held = real_rows(store.index, cfg.speakers, (source, target), held_out=True)
    X, ok = _features(ex, [r["path"] for r in held])
    held = [r for r, k in zip(held, ok, strict=True) if k]
    if not held:
        raise ConfigError(f"emotion judge: no readable real {source}/{target} clip of the "
                          f"held-out speakers {', '.join(cfg.speakers)} to calibrate on")
    judge.ensure_ready()
    p = judge.p_target(X, target)
    labels = [r["emotion"] for r in held]
    speakers = [r["speaker"] for r in held]
    calib = judge.calibrate([r["path"] for r in held], labels, speakers, source=source,
                            target=target, features=X)

    def line(emotion):
        m = [i for i, e in enumerate(labels) if e == emotion]
        return grouped_cell([p[i] for i in m], [speakers[i] for i in m], cfg.seed,
                            f"emotion judge P({target}) of real {emotion} clips", cfg.n_boot)

    training = judge.meta.get("training") or {}
    info.update({
        "features": f"{FEATURE_SET} functionals, loudness-normalised, level features dropped",
        "classes": list(judge.classes), "binary": judge.binary, "source": source,
        "target": target, "train_speakers": training.get("speakers"),
        "n_train": training.get("n"), "C": judge.meta.get("C"),
        "calibration_speakers": sorted(set(speakers)),
        "auc": auc(p, [e == target for e in labels]),
        "p_target_real_source": line(source), "p_target_real_target": line(target),
        "calibration": calib})
    return judge, info


def _fail(explicit: bool, why: str):
    if explicit:
        raise ConfigError(why)


def build_panel(cfg, store, out_dir: Path, progress: bool = True) -> Panel:
    """The judges of `cfg.judges` (None: every installed one, the missing ones listed with the
    reason; named explicitly, one that cannot run is a ConfigError naming its package).
    Models are loaded here, before any clip is steered, so a broken judge fails fast."""
    explicit = cfg.judges is not None
    wanted = tuple(cfg.judges) if explicit else DEFAULT_JUDGES
    cache = out_dir / CACHE_DIR
    emotion_model, emotion_reason, emotion_info = None, None, {}
    if "emotion" in wanted:
        ok, why = EmotionJudge().available()
        if not ok:
            _fail(explicit, why)
            emotion_reason = why
        else:
            try:
                emotion_model, emotion_info = _emotion_judge(cfg, store, out_dir, cache, progress)
            except (ConfigError, ArtifactError, AudioError) as e:
                _fail(explicit, f"judge 'emotion': {e}")
                emotion_reason = f"could not be trained/calibrated: {e}"
    held = real_rows(store.index, cfg.speakers, (cfg.source,), held_out=True)
    opts = dict(cache_dir=cache / "judges", asr_model=cfg.asr, ser_model=cfg.ser,
                asr_language=corpus_language(held), emotion_model=emotion_model)
    names = [n for n in wanted if n != "emotion" or emotion_model is not None]
    judges, skipped = make_judges(names if explicit else None, **opts)
    if emotion_reason:
        skipped["emotion"] = emotion_reason
        log.warning("judge emotion not run: %s", emotion_reason)
    for name in list(judges):
        try:
            judges[name].ensure_ready()
        except (ConfigError, ArtifactError) as e:
            _fail(explicit, f"judge {name!r}: {e}")
            skipped[name] = f"could not load: {e}"
            log.warning("judge %s not run: %s", name, skipped[name])
            del judges[name]
    speaker = judges.get("speaker")
    speaker_reason = None
    if speaker is None:
        candidate = SpeakerJudge(cache_dir=cache / "judges")
        ok, speaker_reason = candidate.available()
        speaker = candidate if ok else None
    emotion = emotion_info or not_measured(emotion_reason or "not requested (--judges)")
    return Panel(judges, skipped, tuple(cfg.judges) if explicit else None, emotion,
                 cfg.target, speaker, speaker_reason or None,
                 {n: [] for n in judges})


def _pick(name: str, score: dict, target: str) -> dict:
    """The numbers a table cell reads from one judge's score."""
    if name in ("emotion", "ser"):
        return {"p_target": score.get(f"p_{target}", float("nan"))}
    out = {k: score.get(k, float("nan")) for k in JUDGE_METRICS[name]}
    if name == "asr":
        out["reference_source"] = score.get("reference_source")
    return out


def _item_key(it: dict) -> tuple:
    wav = np.ascontiguousarray(it["wav"], dtype=np.float32)
    return hashlib.sha1(wav.tobytes()).hexdigest(), int(it["sr"]), it.get("text")


def score_items(panel: Panel, clip_id: str, speaker: str, wav16: np.ndarray,
                items: list[dict]) -> None:
    """Every judge on a clip's items ({row, mode, delta, wav, sr, text}); the input `wav16`
    is the speaker and ASR reference. Appends to `panel.records`; a judge that fails on this
    clip is logged in `panel.failures` and leaves its cells to the other clips.

    Items with the same samples, rate and text are judged once and share the scores: delta 0
    of prosody is the input itself, and delta 0 of both is delta 0 of latent. Each reuse is
    counted in `panel.deduplicated`."""
    keys = [_item_key(it) for it in items]
    first = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    unique = sorted(set(first.values()))
    panel.deduplicated += len(items) - len(unique)
    batch = [{"wav": items[i]["wav"], "sr": items[i]["sr"], "text": items[i].get("text"),
              "reference_wav": wav16, "reference_sr": SAMPLE_RATE} for i in unique]
    for name, judge in panel.judges.items():
        try:
            scored = dict(zip(unique, judge.score_many(batch), strict=True))
        except EmosteerError as e:
            log.warning("judge %s failed on %s: %s", name, clip_id, e)
            panel.failures[name].append({"clip": clip_id, "reason": str(e)})
            continue
        for it, k in zip(items, keys, strict=True):
            panel.records.append({"judge": name, "clip": clip_id, "speaker": speaker,
                                  "row": it["row"], "mode": it.get("mode"),
                                  "delta": it.get("delta"), "utt_id": it.get("utt_id"),
                                  "score": _pick(name, scored[first[k]], panel.target)})


def judge_cells(panel: Panel, records: list[dict], seed: int, n_boot: int) -> dict:
    """{judge: {metric: cell}} over `records` (one row of a table); skipped judges' cells say
    why. The emotion judge's cells carry its AUC and the two reference lines."""
    out = {}
    for name in JUDGE_NAMES:
        if name not in panel.judges:
            why = panel.skipped.get(name, "not requested (--judges)")
            out[name] = {k: not_measured(f"judge {name} not run: {why}")
                         for k in JUDGE_METRICS[name]}
            continue
        rs = [r for r in records if r["judge"] == name]
        cells = {k: grouped_cell([r["score"].get(k) for r in rs], [r["speaker"] for r in rs],
                                 seed, f"{name} {k}", n_boot) for k in JUDGE_METRICS[name]}
        if name == "asr":
            cells["reference"] = dict(Counter(str(r["score"].get("reference_source"))
                                              for r in rs))
        if name == "emotion" and "auc" in panel.emotion:
            cells["auc"] = panel.emotion["auc"]
            for k in ("p_target_real_source", "p_target_real_target"):
                cells[k] = panel.emotion[k].get("value")
        out[name] = cells
    return out


# Latent steering at delta 0 with differential decoding: the input's log-mel (in the mapper's
# mel definition and framing) into the vocoder, loudness matched; Steerer.steer makes it
# without running the encoder or the mapper.
COPY_CONFIG = SteerConfig(mode="latent", decode="differential")


def copy_synthesis(wav16: np.ndarray, vocoder) -> tuple[np.ndarray, int]:
    """Copy synthesis: the input's log-mel straight into the vocoder (no encoder, no mapper),
    loudness matched to the input as steering does: the ceiling of any mel-based output. With a
    mapper, evaluate takes COPY_CONFIG's output instead: the same thing in the mapper's framing."""
    x = resample(wav16, SAMPLE_RATE, vocoder.sample_rate)
    if len(x) < min_samples(vocoder.mel_config):
        raise AudioError(f"too short for the vocoder's mel ({len(x)} samples)")
    y = vocoder.vocode(log_mel_spectrogram(x, vocoder.mel_config))
    return match_loudness(y, wav16, vocoder.sample_rate), int(vocoder.sample_rate)


def _table(results, cfg, sim_reason, gap_reason, panel):
    """One row per (mode, delta): cells over clips."""
    rows = []
    for mode in cfg.modes:
        for d in cfg.deltas:
            ms = [r for r in results if r["mode"] == mode and r["delta"] == d]
            def cell(k, what, ms=ms):
                return mean_cell([r[k] for r in ms], cfg.seed, what, cfg.n_boot)
            recs = [r for r in panel.records
                    if r["row"] == "steered" and r["mode"] == mode and r["delta"] == d]
            rows.append({
                "mode": mode, "delta": d,
                "posterior": cell("posterior", "probe posterior (same encoder)"),
                "speaker_similarity": (not_measured(sim_reason) if sim_reason
                                       else cell("speaker_similarity", "speaker similarity")),
                "correlates": {k: cell(f"corr:{k}", k) for k in CORRELATE_KEYS},
                "gap_closed": {k: (not_measured(gap_reason) if gap_reason
                                   else cell(f"gap:{k}", f"gap closed {k}"))
                               for k in CORRELATE_KEYS},
                "judges": judge_cells(panel, recs, cfg.seed, cfg.n_boot),
            })
    return rows


REFERENCE_ROWS = (
    ("input", "input (real source clips)",
     "the unsteered input; its speaker cosine is 1 and, without a transcript, its WER 0 "
     "by construction"),
    (COPY_SYNTHESIS, "copy-synthesis through the vocoder (delta-0 ceiling)",
     "log-mel of the input -> vocoder, encoder and mapper bypassed; the latent delta-0 row "
     "adds the encoder and mapper on top, the prosody delta-0 row is the input itself"),
    ("real_target", "real target clips (same speaker, paired by sentence)",
     "the held-out speaker's own recording of the target emotion"),
)


def _references(panel, cfg, copy_note):
    rows = []
    for kind, label, note in REFERENCE_ROWS:
        recs = [r for r in panel.records if r["row"] == kind]
        if kind == "real_target":  # several inputs may share one paired target: count it once
            seen, uniq = set(), []
            for r in recs:
                if (r["judge"], r["utt_id"]) not in seen:
                    seen.add((r["judge"], r["utt_id"]))
                    uniq.append(r)
            recs = uniq
        row = {"kind": kind, "label": label, "note": note,
               "n_clips": len({r["clip"] if kind != "real_target" else r["utt_id"]
                               for r in recs}),
               "judges": judge_cells(panel, recs, cfg.seed, cfg.n_boot)}
        if kind == COPY_SYNTHESIS and copy_note:
            row["judges"] = {n: {k: not_measured(f"copy synthesis: {copy_note}")
                                 for k in JUDGE_METRICS[n]} for n in JUDGE_NAMES}
        rows.append(row)
    return rows


JUDGE_MONOTONICITY = (("emotion", "p_target", "emotion_p_target"),
                      ("dnsmos", "ovrl", "dnsmos_ovrl"), ("asr", "wer", "asr_wer"),
                      ("speaker", "cosine", "speaker_cosine"), ("ser", "p_target", "ser_p_target"))


def _monotonicity(results, cfg, panel):
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
        for judge, metric, key in JUDGE_MONOTONICITY:
            if judge in panel.judges:
                recs = [r for r in panel.records if r["judge"] == judge
                        and r["row"] == "steered" and r["mode"] == mode]
                out[mode][key] = spearman_cell(
                    [(r["clip"], r["delta"], r["score"].get(metric)) for r in recs],
                    cfg.seed, f"{mode} {key}", cfg.n_boot)
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
             progress: bool = True, encoder=None) -> dict:
    """Steer held-out speakers' clips over `cfg.deltas` x `cfg.modes`, measure every output and
    write `out_dir` (see module docstring). Returns the evaluate.json content. `encoder`: an
    already-loaded encoder to share (Steerer.from_artifacts checks it against the mapper).

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
    kinds = {mode_config(m).mode for m in cfg.modes}
    needs_latent = bool(kinds & {"latent", "both"})
    steerer = Steerer.from_artifacts(axis=axis, mapper=mapper_dir if needs_latent else None,
                                     vocoder=cfg.vocoder, prosody=prosody, model=cfg.model,
                                     mode="both" if needs_latent else "prosody", device=device,
                                     encoder=encoder)
    if kinds & {"prosody", "both"} and steerer.prosody is None:
        raise ConfigError(f"modes prosody/both need a prosody delta: {axis_dir}/prosody.json "
                          "or --prosody FILE")
    enc = _reencoder(store, layer, steerer, cfg.model)
    clips = select_clips(store.index, cfg.speakers, source, target, cfg.clips_per_speaker, cfg.seed)
    panel = build_panel(cfg, store, out_dir, progress)
    vocoder, copy_note = steerer.vocoder, None
    if vocoder is None and panel.judges:
        try:
            vocoder = load_vocoder(cfg.vocoder, device=device)
        except EmosteerError as e:
            copy_note = f"vocoder {cfg.vocoder} not loaded ({e})"
    elif vocoder is None:
        copy_note = "no judge ran"
    refs = {s: (speaker_reference(store.index, s, source), speaker_reference(store.index, s, target))
            for s in cfg.speakers}
    gap_reason = None if all(a and b for a, b in refs.values()) else \
        f"a held-out speaker lacks real {source} or {target} recordings"

    results, fid_rows, done, skipped = [], [], [], []
    bar = tqdm(total=len(clips) * len(cfg.modes) * len(cfg.deltas), desc="evaluate",
               unit="output", disable=not progress)
    for clip in clips:
        cdir, n_done = out_dir / AUDIO_DIR / clip.id, 0
        try:
            wav = load_audio(clip.row["path"])
            rec = {"id": clip.id, "speaker": clip.row["speaker"], "emotion": source,
                   "source_clip": clip.row["utt_id"], "input": f"{AUDIO_DIR}/{clip.id}/input.wav",
                   "real_target": None, "copy_synthesis": None,
                   "outputs": {m: {} for m in cfg.modes}}
            text, _ = reference_text(clip.row)
            items = [{"row": "input", "wav": wav, "sr": SAMPLE_RATE, "text": text,
                      "utt_id": clip.row["utt_id"]}]
            save_audio(cdir / "input.wav", wav, SAMPLE_RATE)
            if clip.target_row is not None:
                real = load_audio(clip.target_row["path"])
                save_audio(cdir / "real_target.wav", real, SAMPLE_RATE)
                rec["real_target"] = f"{AUDIO_DIR}/{clip.id}/real_target.wav"
                items.append({"row": "real_target", "wav": real, "sr": SAMPLE_RATE,
                              "text": reference_text(clip.target_row)[0],
                              "utt_id": clip.target_row["utt_id"]})
            made, measured = {}, {}  # outputs already steered (and measured), by what made them

            def steered(scfg, d, wav=wav, made=made, path=clip.row["path"]):
                key = (steerer.same_output_as(scfg, d), d)
                if key not in made:
                    made[key] = steerer.steer(wav, d, key[0], source=path)
                return key, made[key]

            if vocoder is not None and panel.judges:
                # differential decoding at delta 0 is copy synthesis in the mapper's framing:
                # made once, it is also the latent (and both) delta-0 output
                y, sr = steered(COPY_CONFIG, 0.0)[1] if steerer.mapper is not None \
                    else copy_synthesis(wav, vocoder)
                save_audio(cdir / f"{COPY_SYNTHESIS}.wav", y, sr)
                rec["copy_synthesis"] = f"{AUDIO_DIR}/{clip.id}/{COPY_SYNTHESIS}.wav"
                items.append({"row": COPY_SYNTHESIS, "wav": y, "sr": sr, "text": text})
            mine, fid = [], []
            for mode in cfg.modes:
                for d in cfg.deltas:
                    key, (y, sr) = steered(mode_config(mode, frames=cfg.frames), d)
                    if key not in measured:
                        measured[key] = _measure(y, sr, clip, wav, probe, axis, enc, layer,
                                                 store.config.pooling, panel.speaker,
                                                 refs[clip.row["speaker"]])
                    m = measured[key]
                    rel = f"{AUDIO_DIR}/{clip.id}/{mode.replace(':', '-')}_{delta_key(d)}.wav"
                    save_audio(out_dir / rel, y, sr)
                    rec["outputs"][mode][delta_key(d)] = rel
                    mine.append({"clip": clip.id, "mode": mode, "delta": d, **m})
                    if mode == "latent" and d == 0.0:
                        fid.append(fidelity(wav, y, sr, steerer.mapper.config.mel_config))
                    items.append({"row": "steered", "mode": mode, "delta": d, "wav": y,
                                  "sr": sr, "text": text})
                    bar.update(1)
                    n_done += 1
        except AudioError as e:
            log.warning("%s: skipped (%s)", clip.row["path"], e)
            skipped.append({"clip": clip.id, "path": clip.row["path"], "reason": str(e)})
            bar.update(len(cfg.modes) * len(cfg.deltas) - n_done)
            continue
        score_items(panel, clip.id, clip.row["speaker"], wav, items)
        results += mine
        fid_rows += fid
        done.append((clip, rec))
    bar.close()
    if not done:
        raise AudioError(f"{store_dir}: no clip of {', '.join(cfg.speakers)} could be evaluated")
    return _write(out_dir, cfg, store, axis, probe, done, skipped, results, fid_rows,
                  panel, gap_reason, copy_note)


def _external(cfg, panel) -> dict:
    """The legacy external-metric cells, now read off the judges (pooled over every steered
    output): --ser -> ser P(target), --asr -> WER, --mos dnsmos -> DNSMOS OVRL."""
    steered = [r for r in panel.records if r["row"] == "steered"]

    def pooled(judge, metric, what):
        if judge not in panel.judges:
            return not_measured(f"judge {judge} not run: "
                                f"{panel.skipped.get(judge, 'not requested (--judges)')}")
        rs = [r for r in steered if r["judge"] == judge]
        return grouped_cell([r["score"].get(metric) for r in rs], [r["speaker"] for r in rs],
                            cfg.seed, what, cfg.n_boot)

    out = {}
    out["ser"] = pooled("ser", "p_target", "ser") if cfg.ser else not_measured("not requested")
    out["asr_wer"] = pooled("asr", "wer", "asr_wer") if cfg.asr else not_measured("not requested")
    if not cfg.mos:
        out["mos"] = not_measured("not requested")
    elif cfg.mos.strip().lower() == "dnsmos":
        out["mos"] = pooled("dnsmos", "ovrl", "mos")
    else:
        out["mos"] = not_measured(f"{cfg.mos}: no offline back end; --mos dnsmos (the dnsmos "
                                  "judge) is the one available")
    return out


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


def _write(out_dir, cfg, store, axis, probe, done, skipped, results, fid_rows, panel,
           gap_reason, copy_note) -> dict:
    sim_reason = None if panel.speaker is not None else panel.speaker_reason
    report = {
        "kind": "evaluate", "emosteer_version": __version__,
        "provenance": provenance(store=str(store.root)),
        "config": jsonable(cfg),
        "axis": {"model": axis.config.encoder.model, "layer": axis.config.layer,
                 "source": axis.config.source, "target": axis.config.target,
                 "calibration": axis.calibration},
        "encoder_note": encoder_note(store),
        "probe": {"label": "probe posterior (same encoder)",
                  "train_speakers": list(probe.train_speakers), "n_train": probe.n_train,
                  "pooling": store.config.pooling},
        "labels": LABELS,
        "judges": panel.summary(),
        "emotion_judge": panel.emotion,
        "clips": [{k: rec[k] for k in ("id", "speaker", "emotion", "input", "real_target",
                                       "copy_synthesis", "outputs")} for _, rec in done],
        "skipped": skipped,
        "references": _references(panel, cfg, copy_note),
        "table": _table(results, cfg, sim_reason, gap_reason, panel),
        "fidelity": _fidelity(fid_rows, cfg),
        "monotonicity": _monotonicity(results, cfg, panel),
        "external": _external(cfg, panel),
    }
    write_json(out_dir / STIMULI_JSON, _stimuli(done, cfg))
    write_json(out_dir / EVALUATE_JSON, report)
    return report
