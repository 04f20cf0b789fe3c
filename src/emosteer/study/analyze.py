"""Analysis of a finished (or running) study: identification, MOS, agreement, exclusions.

Exclusion rule (also written into analysis.json and analysis.html):
  A participant is excluded if
  (a) they rated at least one anchor (a real recording of known emotion) and identified fewer
      than `min_anchor_accuracy` of their anchors correctly (only when "identify" is a task), or
  (b) they answered both showings of at least one repeated item and fewer than
      `min_repeat_agreement` of their repeat pairs agree, where a pair agrees when its
      intensity and naturalness ratings (those asked) each differ by at most 1 point. The
      emotion choice is not compared: on ambiguous (low-delta) items it legitimately flips.
Only first showings of repeated items enter the statistics; anchors are reported on their own.

Statistics: identification rate of the target emotion per (kind, mode, delta) with a Wilson 95%
interval over ratings; mean naturalness (MOS) and intensity with a 95% bootstrap interval that
resamples participants (ratings of one listener are not independent); Fleiss' kappa on the
emotion choices (the usual generalisation to unequal raters per item) and Krippendorff's alpha
(ordinal) on naturalness and intensity.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from emosteer.artifacts import write_json
from emosteer.errors import ArtifactError
from emosteer.study import db
from emosteer.study.design import Study, open_study
from emosteer.study.render import write_html, write_plots

Z95 = 1.959963984540054  # two-sided 95% normal quantile
RATING_TOLERANCE = 1  # repeat ratings within this many points count as consistent
EXCLUSION_RULE = (__doc__ or "").split("Exclusion rule (also written into analysis.json and "
                                       "analysis.html):")[1].split("Statistics:")[0].strip()


def wilson_ci(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; (nan, nan) for n=0."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def bootstrap_ci(by_participant: dict[str, list[float]], n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the pooled mean, resampling participants with replacement."""
    groups = [np.asarray(v, float) for v in by_participant.values() if len(v)]
    if not groups:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    sums = np.array([g.sum() for g in groups])
    counts = np.array([g.size for g in groups])
    idx = rng.integers(0, len(groups), size=(n_boot, len(groups)))
    means = sums[idx].sum(1) / counts[idx].sum(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def fleiss_kappa(table: np.ndarray) -> float:
    """Fleiss' kappa from an (items, categories) count table; items with < 2 ratings dropped."""
    table = np.asarray(table, float)
    n_i = table.sum(1)
    table, n_i = table[n_i >= 2], n_i[n_i >= 2]
    if table.shape[0] == 0:
        return float("nan")
    p_i = ((table ** 2).sum(1) - n_i) / (n_i * (n_i - 1))
    p_j = table.sum(0) / n_i.sum()
    p_e = float((p_j ** 2).sum())
    return float("nan") if p_e >= 1 else float((p_i.mean() - p_e) / (1 - p_e))


def krippendorff_alpha(units: list[list[float]], level: str = "ordinal") -> float:
    """Krippendorff's alpha via the coincidence matrix; level nominal|ordinal|interval."""
    units = [u for u in units if len(u) >= 2]
    values = sorted({v for u in units for v in u})
    if len(values) < 2:
        return float("nan")
    pos = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for u in units:
        c = np.bincount([pos[v] for v in u], minlength=len(values)).astype(float)
        o += (np.outer(c, c) - np.diag(c)) / (len(u) - 1)
    n_c = o.sum(1)
    n = n_c.sum()
    v = np.asarray(values, float)
    if level == "nominal":
        d2 = 1.0 - np.eye(len(values))
    elif level == "interval":
        d2 = (v[:, None] - v[None, :]) ** 2
    elif level == "ordinal":
        cum = np.concatenate([[0.0], np.cumsum(n_c)])
        lo, hi = np.minimum.outer(np.arange(len(v)), np.arange(len(v))), \
            np.maximum.outer(np.arange(len(v)), np.arange(len(v)))
        d2 = (cum[hi + 1] - cum[lo] - (n_c[:, None] + n_c[None, :]) / 2) ** 2
    else:
        raise ValueError(f"unknown level {level!r}")
    d_o = (o * d2).sum() / n
    d_e = (np.outer(n_c, n_c) * d2).sum() / (n * (n - 1))
    return float("nan") if d_e == 0 else float(1 - d_o / d_e)


def _agree(a: dict, b: dict, tasks: tuple[str, ...]) -> bool:
    ok = True
    for t in ("intensity", "naturalness"):
        if t in tasks and a[t] is not None and b[t] is not None:
            ok &= abs(a[t] - b[t]) <= RATING_TOLERANCE
    return bool(ok)


def find_exclusions(study: Study, answers: list[dict]) -> dict[str, list[str]]:
    """pid -> reasons for every participant the documented rule excludes."""
    cfg, stim = study.config, study.by_id
    per: dict[str, list[dict]] = defaultdict(list)
    for a in answers:
        per[a["pid"]].append(a)
    out: dict[str, list[str]] = {}
    for pid, rows in per.items():
        reasons, seen, pairs = [], {}, []
        for a in sorted(rows, key=lambda r: r["trial_index"]):
            if a["stimulus_id"] in seen:
                pairs.append((seen[a["stimulus_id"]], a))
            else:
                seen[a["stimulus_id"]] = a
        anchors = [a for a in seen.values() if stim[a["stimulus_id"]].kind == "anchor"]
        if "identify" in cfg.tasks and anchors:
            acc = np.mean([a["emotion"] == stim[a["stimulus_id"]].target_emotion for a in anchors])
            if acc < cfg.min_anchor_accuracy:
                reasons.append(f"anchor accuracy {acc:.2f} < {cfg.min_anchor_accuracy}")
        if pairs:
            agree = np.mean([_agree(a, b, cfg.tasks) for a, b in pairs])
            if agree < cfg.min_repeat_agreement:
                reasons.append(f"repeat agreement {agree:.2f} < {cfg.min_repeat_agreement}")
        if reasons:
            out[pid] = reasons
    return out


def _first_showings(answers: list[dict]) -> list[dict]:
    seen, out = set(), []
    for a in sorted(answers, key=lambda r: (r["pid"], r["trial_index"])):
        if (a["pid"], a["stimulus_id"]) not in seen:
            seen.add((a["pid"], a["stimulus_id"]))
            out.append(a)
    return out


def summarize(study: Study, answers: list[dict], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """All statistics as a JSON-able dict (no files written)."""
    stim = study.by_id
    answers = [a for a in answers if a["stimulus_id"] in stim]
    excluded = find_exclusions(study, answers)
    kept = _first_showings([a for a in answers if a["pid"] not in excluded])
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for a in kept:
        s = stim[a["stimulus_id"]]
        groups[(s.kind, s.mode, s.delta)].append(a)
    rows = []
    for (kind, mode, delta), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        row: dict[str, Any] = {"kind": kind, "mode": mode, "delta": delta, "n_ratings": len(rs),
                               "n_participants": len({a["pid"] for a in rs})}
        ident = [a for a in rs if a["emotion"] is not None]
        if ident:
            k = sum(a["emotion"] == stim[a["stimulus_id"]].target_emotion for a in ident)
            row["ident_rate"] = k / len(ident)
            row["ident_rate_ci"] = wilson_ci(k, len(ident))
        for key, name in (("naturalness", "mos"), ("intensity", "intensity")):
            byp: dict[str, list[float]] = defaultdict(list)
            for a in rs:
                if a[key] is not None:
                    byp[a["pid"]].append(a[key])
            if byp:
                row[name] = float(np.mean([v for vs in byp.values() for v in vs]))
                row[f"{name}_ci"] = bootstrap_ci(byp, n_boot, seed)
        rows.append(row)
    per_mode = []
    for mode in sorted({stim[a["stimulus_id"]].mode for a in kept}):
        byp = defaultdict(list)
        for a in kept:
            if stim[a["stimulus_id"]].mode == mode and a["naturalness"] is not None:
                byp[a["pid"]].append(a["naturalness"])
        if byp:
            per_mode.append({"mode": mode, "mos": float(np.mean(sum(byp.values(), []))),
                             "mos_ci": bootstrap_ci(byp, n_boot, seed),
                             "n_participants": len(byp)})
    by_item: dict[str, list[dict]] = defaultdict(list)
    for a in kept:
        by_item[a["stimulus_id"]].append(a)
    emotions = list(study.config.emotions)
    table = np.array([[sum(a["emotion"] == e for a in rs) for e in emotions]
                      for rs in by_item.values()]) if by_item else np.zeros((0, len(emotions)))
    agreement = {
        "fleiss_kappa_identification": fleiss_kappa(table) if "identify" in study.config.tasks
        else None,
        "krippendorff_alpha_naturalness_ordinal": krippendorff_alpha(
            [[a["naturalness"] for a in rs if a["naturalness"] is not None]
             for rs in by_item.values()]),
        "krippendorff_alpha_intensity_ordinal": krippendorff_alpha(
            [[a["intensity"] for a in rs if a["intensity"] is not None]
             for rs in by_item.values()]),
    }
    pids = {a["pid"] for a in answers}
    return {"study": study.config.name, "exclusion_rule": EXCLUSION_RULE,
            "n_participants": len(pids), "n_included": len(pids - set(excluded)),
            "excluded": excluded, "n_ratings_used": len(kept), "conditions": rows,
            "mos_per_mode": per_mode, "agreement": agreement}


def analyze_study(study_dir: str | Path, out_dir: str | Path | None = None, n_boot: int = 1000,
                  seed: int = 0) -> dict[str, Any]:
    """Analyse the study's database; writes analysis.json, analysis.html and PNG plots to
    out_dir (default: study_dir/analysis) and returns the summary."""
    study = open_study(study_dir)
    answers = db.fetch_answers(study.db_path)
    if not answers:
        raise ArtifactError(f"{study.db_path}: no answers yet; nothing to analyse")
    out = Path(out_dir) if out_dir is not None else study.root / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(study, answers, n_boot=n_boot, seed=seed)
    summary["plots"] = write_plots(summary, out)
    write_json(out / "analysis.json", summary)
    write_html(summary, out / "analysis.html")
    return summary
