"""`emosteer evaluate --bank`: is every emotion of a bank recognisable, at what cost?

The held-out speakers' reference-emotion clips (calm, say) are steered towards each emotion of
the bank over a delta sweep, and judged by models that did no steering:

- a multi-class eGeMAPS emotion judge (`emotion_judge`) trained here on the real clips of every
  emotion of the store's *other* speakers; a steered clip's P(target) is its probability of the
  emotion it was steered to, read against the same held-out speakers' real clips of that
  emotion (the "real" column), and the argmax gives the confusion matrices of steered and real
  clips side by side;
- DNSMOS and Whisper WER (`panel`), read against the input clips.

Spearman rho of P(target) against delta over clips says whether the strength is monotonic.
Layout under `out`: bank_eval.json, emotion_judge/, cache/, audio/<clip>/<emotion>_<mode>_<d>.wav.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from emosteer import __version__
from emosteer.artifacts import provenance, refuse_overwrite, write_json
from emosteer.audio import SAMPLE_RATE, load_audio, save_audio
from emosteer.bank.bank import EmotionBank
from emosteer.embeddings.store import EmbeddingStore
from emosteer.errors import AudioError, ConfigError
from emosteer.evaluation.emotion_judge import EmotionJudge, train_emotion_judge
from emosteer.evaluation.metrics import N_BOOT, mean_cell, spearman_cell
from emosteer.evaluation.panel import make_judges
from emosteer.evaluation.select import (
    check_sweep,
    clip_id,
    delta_key,
    real_rows,
    reference_text,
    resolve_speakers,
)
from emosteer.steering.steer import Steerer, mode_config

log = logging.getLogger(__name__)

BANK_EVAL_JSON = "bank_eval.json"
QUALITY = {"dnsmos": "ovrl", "asr": "wer"}  # the one number of each quality judge a row shows


@dataclass(frozen=True)
class BankEvalConfig:
    speakers: tuple[str, ...]
    deltas: tuple[float, ...] = (0.0, 0.5, 1.0)
    modes: tuple[str, ...] = ("prosody",)
    emotions: tuple[str, ...] | None = None  # None: every emotion of the bank
    clips_per_speaker: int | None = None  # None: every reference-emotion clip
    judges: tuple[str, ...] = ("dnsmos", "asr")
    vocoder: str = "auto"
    seed: int = 0
    n_boot: int = N_BOOT
    emosteer_version: str = __version__

    def __post_init__(self) -> None:
        check_sweep(self.speakers, self.deltas, self.modes, self.clips_per_speaker)


def _source_rows(index, speakers, reference, per_speaker, seed) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for spk in speakers:
        rows = sorted((r for r in index if r["speaker"] == spk and r["emotion"] == reference),
                      key=lambda r: r["utt_id"])
        if not rows:
            raise ConfigError(f"speaker {spk}: no {reference!r} clips in the store")
        if per_speaker is not None and per_speaker < len(rows):
            rows = [rows[i] for i in sorted(rng.choice(len(rows), per_speaker, replace=False))]
        out += rows
    return out


def _judge(store, held, out_dir: Path, progress: bool) -> EmotionJudge:
    """The multi-class judge, trained on every emotion of the non-held-out speakers."""
    emotions = sorted(set(store.labels("emotion").tolist()))
    rows = real_rows(store.index, held, emotions, held_out=False)
    if not rows:
        raise ConfigError("no training speakers left for the emotion judge: hold out fewer")
    judge = train_emotion_judge([r["path"] for r in rows], [r["emotion"] for r in rows],
                                [r["speaker"] for r in rows], cache_dir=out_dir / "cache",
                                progress=progress)
    judge.save(out_dir / "emotion_judge")
    return judge


def _quality(judges, items: list[dict], wav16: np.ndarray, text: str | None) -> list[dict]:
    """{judge: number} per item from the quality judges (input as the ASR fallback)."""
    batch = [{"wav": it["wav"], "sr": it["sr"], "text": text, "reference_wav": wav16,
              "reference_sr": SAMPLE_RATE} for it in items]
    out = [{} for _ in items]
    for name, judge in judges.items():
        for row, score in zip(out, judge.score_many(batch), strict=True):
            row[name] = float(score.get(QUALITY[name], float("nan")))
    return out


def _confusion(labels: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> dict:
    m = np.zeros((len(classes), len(classes)), int)
    pos = {c: i for i, c in enumerate(classes)}
    for t, p in zip(labels, predicted, strict=True):
        m[pos[t], pos[p]] += 1
    return {"classes": list(classes), "matrix": m.tolist()}


def evaluate_bank(store_dir, bank_dir, out_dir, cfg: BankEvalConfig, mapper_dir=None,
                  device: str = "cpu", force: bool = False, progress: bool = True) -> dict:
    """Steer the held-out speakers' reference clips to each bank emotion over `cfg.deltas` x
    `cfg.modes` and judge them (see module docstring); writes and returns bank_eval.json."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    refuse_overwrite(out_dir / BANK_EVAL_JSON, force)
    store, bank = EmbeddingStore.open(store_dir), EmotionBank.load(bank_dir)
    emotions = (tuple(e for e, _ in bank.parse_mix(",".join(cfg.emotions))) if cfg.emotions
                else bank.emotions)
    held = resolve_speakers(cfg.speakers, set(store.labels("speaker").tolist()))
    kinds = {mode_config(m).mode for m in cfg.modes}
    if kinds & {"latent", "both"} and mapper_dir is None:
        raise ConfigError("modes latent/both need --mapper")
    base = Steerer.from_artifacts(axis=bank.axis(emotions[0]), mapper=mapper_dir,
                                  vocoder=cfg.vocoder, prosody=bank.prosody(emotions[0]),
                                  mode="both" if kinds & {"latent", "both"} else "prosody",
                                  device=device)
    steerers = {e: bank.steerer(base, e) for e in emotions}
    judge = _judge(store, held, out_dir, progress)
    quality, skipped_judges = make_judges(cfg.judges, cache_dir=out_dir / "cache" / "judges",
                                          asr_language="en")
    sources = _source_rows(store.index, held, bank.reference, cfg.clips_per_speaker, cfg.seed)
    steered, inputs, skipped = [], [], []
    bar = tqdm(total=len(sources), desc="evaluate bank", unit="clip", disable=not progress)
    for row in sources:
        cid = clip_id(row["utt_id"])
        try:
            wav = load_audio(row["path"])
            text, _ = reference_text(row)
            items = [{"emotion": None, "mode": None, "delta": None, "wav": wav,
                      "sr": SAMPLE_RATE}]
            for e in emotions:
                for mode in cfg.modes:
                    for d in cfg.deltas:
                        y, sr = steerers[e].steer(wav, d, mode_config(mode), source=row["path"])
                        rel = f"audio/{cid}/{e}_{mode.replace(':', '-')}_{delta_key(d)}.wav"
                        save_audio(out_dir / rel, y, sr)
                        items.append({"emotion": e, "mode": mode, "delta": d, "wav": y,
                                      "sr": sr, "path": rel})
        except AudioError as e:
            log.warning("%s: skipped (%s)", row["path"], e)
            skipped.append({"clip": cid, "path": row["path"], "reason": str(e)})
            bar.update(1)
            continue
        probs = judge.class_proba(judge.features([(it["wav"], it["sr"]) for it in items]))
        scores = _quality(quality, items, wav, text)
        for it, p, q in zip(items, probs, scores, strict=True):
            rec = {"clip": cid, "speaker": row["speaker"], "emotion": it["emotion"],
                   "mode": it["mode"], "delta": it["delta"], "path": it.get("path"),
                   "p": dict(zip(judge.classes, map(float, p), strict=True)),
                   "judged": judge.classes[int(np.argmax(p))], **q}
            (inputs if it["emotion"] is None else steered).append(rec)
        bar.update(1)
    bar.close()
    if not inputs:
        raise AudioError(f"{store_dir}: no {bank.reference} clip of {', '.join(held)} could "
                         "be evaluated")
    real = [r for r in store.index if r["speaker"] in held and r["emotion"] in emotions]
    real_p = judge.class_proba(judge.features([r["path"] for r in real])) if real else []
    result = _summarise(cfg, bank, judge, emotions, inputs, steered, real, real_p)
    result.update({"kind": "emosteer.bank_eval", "config": asdict(cfg), "speakers": list(held),
                   "bank": str(bank.path), "store": str(store_dir),
                   "mapper": None if mapper_dir is None else str(mapper_dir),
                   "judge": {"classes": list(judge.classes), "train_speakers":
                             sorted({r["speaker"] for r in real_rows(store.index, held,
                                     judge.classes, held_out=False)})},
                   "skipped_judges": skipped_judges, "skipped": skipped,
                   "provenance": provenance()})
    write_json(out_dir / BANK_EVAL_JSON, result)
    return result


def _summarise(cfg, bank, judge, emotions, inputs, steered, real, real_p) -> dict:
    seed, nb = cfg.seed, cfg.n_boot
    base = {k: mean_cell([r[k] for r in inputs], seed, k, nb) for k in QUALITY if
            any(k in r for r in inputs)}
    rows = []
    for e in emotions:
        mine = [p[judge.classes.index(e)] for r, p in zip(real, real_p, strict=True)
                if r["emotion"] == e]
        row = {"emotion": e, "real": mean_cell(mine, seed, f"real {e}", nb),
               "source": mean_cell([r["p"][e] for r in inputs], seed, f"source {e}", nb),
               "modes": {}}
        for mode in cfg.modes:
            cells = {}
            for d in cfg.deltas:
                rs = [r for r in steered if r["emotion"] == e and r["mode"] == mode
                      and r["delta"] == d]
                cells[delta_key(d)] = {
                    "p_target": mean_cell([r["p"][e] for r in rs], seed, f"{e} P", nb),
                    "top": mean_cell([float(r["judged"] == e) for r in rs], seed, "top", nb),
                    **{k: mean_cell([r.get(k) for r in rs], seed, k, nb) for k in base}}
            rho = spearman_cell([(r["clip"], r["delta"], r["p"][e]) for r in steered
                                 if r["emotion"] == e and r["mode"] == mode], seed,
                                f"{e} {mode} rho", nb)
            row["modes"][mode] = {"cells": cells, "spearman": rho}
        rows.append(row)
    top = max(cfg.deltas)
    confusion = {"real": _confusion([r["emotion"] for r in real],
                                    [judge.classes[int(np.argmax(p))] for p in real_p],
                                    judge.classes)}
    for mode in cfg.modes:
        rs = [r for r in steered if r["mode"] == mode and r["delta"] == top]
        confusion[f"{mode} {delta_key(top)}"] = _confusion(
            [r["emotion"] for r in rs], [r["judged"] for r in rs], judge.classes)
    return {"reference": bank.reference, "emotions": list(emotions), "input": base,
            "rows": rows, "confusion": confusion,
            "clips": sorted({r["clip"] for r in inputs})}


def _cell(c: dict | None, spec: str = ".2f") -> str:
    if not c or c.get("value") is None:
        return "n/m"
    ci = c.get("ci")
    inner = f" [{ci[0]:{spec}}, {ci[1]:{spec}}]" if ci else ""
    return f"{c['value']:{spec}}{inner} (n={c.get('n', 0)})"


def bank_table(result: dict) -> str:
    """Markdown: per emotion and mode, P(target) at each delta against the real clips', top-1
    rate, DNSMOS and WER at the largest delta against the input's, and Spearman rho."""
    deltas = [delta_key(d) for d in result["config"]["deltas"]]
    top = deltas[-1] if deltas else None
    head = (["emotion", "mode"] + [f"P(target) delta {d}" for d in deltas]
            + ["real target P", f"top-1 at {top}", f"DNSMOS at {top}", f"WER at {top}",
               "Spearman rho"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        for mode, m in row["modes"].items():
            c = m["cells"]
            vals = ([_cell(c[d]["p_target"]) for d in deltas] + [_cell(row["real"]),
                    _cell(c[top]["top"]), _cell(c[top].get("dnsmos")), _cell(c[top].get("asr")),
                    _cell(m["spearman"])])
            lines.append("| " + " | ".join([row["emotion"], mode, *vals]) + " |")
    inp = result.get("input", {})
    lines.append("")
    lines.append(f"Input ({result['reference']} clips): DNSMOS {_cell(inp.get('dnsmos'))}, "
                 f"WER {_cell(inp.get('asr'))}.")
    for name, conf in result["confusion"].items():
        cls = conf["classes"]
        lines += ["", f"Confusion, {name} (rows: true or steered-to emotion, columns: judged):",
                  "", "| | " + " | ".join(cls) + " |", "|" + "---|" * (len(cls) + 1)]
        for c, counts in zip(cls, conf["matrix"], strict=True):
            if sum(counts):
                lines.append(f"| {c} | " + " | ".join(str(n) for n in counts) + " |")
    return "\n".join(lines) + "\n"
