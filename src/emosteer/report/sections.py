"""HTML sections of the run report, each rendered from the JSON one command wrote.

Every function returns an HTML fragment in which all text from the JSON went through
`html.escape`; plots arrive as data URIs and audio through the caller's `audio` callable, so
these renderers never touch the file system. A metric cell that breaks the evaluate contract is an
ArtifactError naming the file and the key, not a silently blank table cell.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from html import escape as e
from typing import Any

from emosteer.errors import ArtifactError

NUMBER_DIGITS = 4  # significant digits: CIs of bootstrap statistics rarely support more
PROBE_PAIR_METRICS = (("auc_raw", "held-out AUC (raw)"), ("auc_centred", "held-out AUC (centred)"),
                      ("pairwise_cosine", "per-speaker axis cosine"),
                      ("resultant_length", "resultant length"))
EXTERNAL_METRICS = (("ser", "external SER model"), ("asr_wer", "ASR word error rate"),
                    ("mos", "predicted MOS (UTMOS/DNSMOS)"))
FIDELITY_METRICS = (("mcd_db", "MCD (dB)"), ("pesq", "PESQ"), ("stoi", "STOI"))


def num(v: Any) -> str:
    """A number for a table; None (how JSON stores NaN) and NaN read 'n/a'."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return e(str(v))
    if isinstance(v, int):
        return str(v)
    return f"{v:.{NUMBER_DIGITS}g}"


def table(head: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    """Cells are HTML already (escaped by their renderers); a cell that is not a <td> or a row
    header <th> is wrapped in one. Headers are plain text."""
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(c if c.startswith(("<td", "<th")) else f"<td>{c}</td>"
                                    for c in r)
                   + "</tr>" for r in rows)
    return f'<table class="{e(cls)}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def metric_cell(cell: Any, where: str, fmt: Callable[[Any], str] = num) -> str:
    """One evaluate.json metric cell as a <td>: value [lo, hi] (n), or 'not measured (reason)';
    `fmt` writes the value and the CI ends."""
    if not isinstance(cell, Mapping):
        raise ArtifactError(f"{where}: expected a metric cell object, got {type(cell).__name__}")
    if "status" in cell:
        reason = str(cell.get("reason") or "no reason given")
        return f'<td class="nm">{e(str(cell["status"]))} ({e(reason)})</td>'
    if "value" not in cell:
        raise ArtifactError(f"{where}: a metric cell needs 'value' or 'status', got "
                            f"{sorted(cell)}")
    text = fmt(cell["value"])
    ci = cell.get("ci")
    if ci is not None:
        if not (isinstance(ci, (list, tuple)) and len(ci) == 2):
            raise ArtifactError(f"{where}: 'ci' must be [lo, hi] or null, got {ci!r}")
        text += f' <span class="ci">[{fmt(ci[0])}, {fmt(ci[1])}]</span>'
    if cell.get("n") is not None:
        text += f' <span class="n">n={num(cell["n"])}</span>'
    return f'<td class="m">{text}</td>'


def ci_cell(c: Mapping[str, Any] | None) -> str:
    """A probe.json statistic {value, ci_low, ci_high} as a <td>."""
    if c is None:
        return '<td class="nm">absent</td>'
    return (f'<td class="m">{num(c.get("value"))} <span class="ci">'
            f'[{num(c.get("ci_low"))}, {num(c.get("ci_high"))}]</span></td>')


def plain(v: Any) -> str:
    """Any JSON value as escaped text (strings bare, the rest as compact JSON)."""
    return e(v if isinstance(v, str) else json.dumps(v, sort_keys=False))


def key_values(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Flatten nested dicts to ('a.b', escaped value) rows for a two-column table."""
    rows: list[tuple[str, str]] = []
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            rows.extend(key_values(v, f"{prefix}{k}."))
        else:
            rows.append((e(f"{prefix}{k}"), plain(v)))
    return rows


def encoder_banner(notes: Iterable[str]) -> str:
    """The encoder notes in one banner, each once; a random-init control makes it a warning
    because every number on the page then measures an untrained network."""
    notes = list(dict.fromkeys(n for n in notes if n))
    if not notes:
        return ""
    cls = "banner warn" if any("random" in n.lower() for n in notes) else "banner"
    return (f'<p class="{cls}" id="encoder-note"><b>Encoder:</b> '
            + "<br>".join(e(n) for n in notes) + "</p>")


def notices_block(encoder_notes: Iterable[str], notices: Iterable[str]) -> str:
    """The run-level notices under the title, compact (the verdict must stay on the first
    screen): the encoder banner, then each notice once, in order."""
    lines = "".join(f'<p class="banner notice">{e(n)}</p>'
                    for n in dict.fromkeys(n for n in notices if n))
    inner = encoder_banner(encoder_notes) + lines
    return f'<div id="notices">{inner}</div>' if inner else ""


def collapsed(title: str, body: str) -> str:
    """`body` behind a closed <details> headed `title` (an <h3>, so the outline keeps it)."""
    return f"<details><summary><h3>{e(title)}</h3></summary>{body}</details>"


def run_section(run: Mapping[str, Any]) -> str:
    """run.json's recipe, stages and remaining fields (notices are shown at the top), each
    collapsed: they are how the run was made, not what it found."""
    parts = ['<section id="run"><h2>Recipe, stages and provenance</h2>']
    recipe = run.get("recipe")
    if isinstance(recipe, Mapping) and recipe:
        parts.append(collapsed("Recipe", table(("key", "value"), key_values(recipe), "kv")))
    stages = run.get("stages")
    if isinstance(stages, Mapping) and stages:
        rows = [(e(name), num(s.get("seconds")), e(str(s.get("status", ""))),
                 plain(s.get("result", "")))
                if isinstance(s, Mapping) else (e(name), plain(s), "", "")
                for name, s in stages.items()]
        parts.append(collapsed("Stages", table(("stage", "seconds", "status", "result"), rows)))
    rest = {k: v for k, v in run.items()
            if k not in ("kind", "recipe", "stages", "provenance", "notices")}
    if rest:
        parts.append(collapsed("Other fields", table(("key", "value"), key_values(rest), "kv")))
    parts.append(provenance_block(run.get("provenance")))
    return "".join(parts) + "</section>"


def provenance_block(prov: Any) -> str:
    if not isinstance(prov, Mapping):
        return ""
    return ("<details><summary>provenance</summary>"
            + table(("key", "value"), key_values(prov), "kv") + "</details>")


def probe_tables(res: Mapping[str, Any], title: str) -> str:
    """Per-layer tables of one probe result (the model's or a control's)."""
    layers = res.get("layers") or {}
    best = str(res.get("best_layer"))
    keys = sorted(layers, key=lambda k: (0, int(k), "") if str(k).isdigit() else (1, 0, str(k)))
    mark = {k: f"{e(k)} (best)" if k == best else e(k) for k in keys}.__getitem__
    chance = next(((layers[k].get("linear_probe") or {}).get("chance") for k in keys), None)
    rows = [(mark(k), ci_cell(layers[k].get("linear_probe")), ci_cell(layers[k].get("silhouette")))
            for k in keys]
    out = [f"<h3>{e(title)}</h3>",
           table(("layer", f"linear probe balanced acc. (chance {num(chance)})",
                  "silhouette (cosine)"), rows, "probe")]
    pairs = list(dict.fromkeys(p for k in keys for p in (layers[k].get("axes") or {})))
    for pair in pairs:
        rows = [(mark(k), *(ci_cell((layers[k].get("axes") or {}).get(pair, {}).get(m))
                            for m, _ in PROBE_PAIR_METRICS)) for k in keys]
        out.append(f"<h4>{e(title)}: axis {e(pair)}</h4>"
                   + table(("layer", *(t for _, t in PROBE_PAIR_METRICS)), rows, "probe"))
    return "".join(out)


def probe_section(probe: Mapping[str, Any], plots: list[tuple[str, str | None]]) -> str:
    """`plots` is [(caption, data URI or None)] in display order."""
    cfg = probe.get("config") or {}
    level = cfg.get("ci_level", 0.95)
    head = [("model", plain(probe.get("model"))), ("store", plain(probe.get("store"))),
            ("clips", num(probe.get("n_clips"))), ("speakers", num(probe.get("n_speakers"))),
            ("emotions", plain(cfg.get("emotions"))), ("reference", plain(cfg.get("reference"))),
            ("best layer (linear probe)", num(probe.get("best_layer"))),
            ("bootstrap", f"{num(cfg.get('n_boot'))} speaker resamples, "
                          f"{num(100 * level if isinstance(level, (int, float)) else None)}% CI"),
            ("UMAP", plain(probe.get("umap")))]
    parts = ['<section id="probe"><h2>Layer sweep (probe)</h2>',
             table(("", ""), head, "kv"),
             "<p>Cells: value [95% bootstrap CI over speakers].</p>",
             probe_tables(probe, f"model: {probe.get('model')}")]
    for name, ctrl in (probe.get("controls") or {}).items():
        parts.append(probe_tables(ctrl, f"control {name}: {ctrl.get('model', name)}"))
    for name, why in (probe.get("controls_skipped") or {}).items():
        parts.append(f'<p class="nm">control {e(str(name))} not run ({e(str(why))})</p>')
    cm = probe.get("axis_cosine_matrix")
    if isinstance(cm, Mapping) and cm.get("emotions"):
        names = cm["emotions"]
        rows = [(e(a), *(num(v) for v in row)) for a, row in zip(names, cm["cosine"], strict=True)]
        parts.append(f"<h3>Cosines of the axes against {e(str(cm.get('reference')))} "
                     f"(best layer)</h3>" + table(("", *names), rows, "probe"))
    parts.append(figures(plots))
    parts.append(provenance_block(probe.get("provenance")))
    return "".join(parts) + "</section>"


# `emosteer bank` diagnostics (BANK/diagnostics.json): where the per-emotion rows and the cosine
# matrix may sit.
BANK_EMOTION_KEYS = ("per_emotion", "emotions", "axes")
BANK_COSINE_KEYS = ("cosines", "cosine", "cosine_matrix")
# (heading, where the value may sit, where its n may sit): dotted paths into an emotion's entry,
# first hit wins, so both `emosteer bank`'s layout (holdout.auc_raw, mean_pairwise_cosine) and a
# flat {auc, consistency, n_speakers} render.
BANK_COLUMNS = (
    ("held-out AUC", ("auc", "holdout.auc_raw"), ("n_test", "holdout.n_test")),
    ("held-out AUC, speaker-centred", ("auc_centred", "holdout.auc_centred"),
     ("n_test", "holdout.n_test")),
    ("consistency (mean pairwise cosine)", ("consistency", "mean_pairwise_cosine"),
     ("n_speakers",)),
    ("leave-one-out agreement", ("agreement",), ("n_speakers",)),
    ("speakers", ("n_speakers",), ()),
    ("prosody", ("prosody.summary", "prosody_note"), ()),
)


def dig(d: Any, paths: Iterable[str]) -> Any:
    """The value at the first dotted path of `paths` that `d` has (None where none)."""
    for path in paths:
        v = d
        for part in path.split("."):
            v = v.get(part) if isinstance(v, Mapping) else None
        if v is not None:
            return v
    return None


def bank_emotions(bank: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """{emotion: diagnostics} of a bank's diagnostics.json: under one of BANK_EMOTION_KEYS, or
    the top-level entries that look like per-emotion rows."""
    for key in BANK_EMOTION_KEYS:
        rows = bank.get(key)
        if isinstance(rows, Mapping) and rows and all(isinstance(v, Mapping)
                                                     for v in rows.values()):
            return {str(k): v for k, v in rows.items()}
    return {str(k): v for k, v in bank.items()
            if isinstance(v, Mapping) and dig(v, [p for _, ps, _ in BANK_COLUMNS for p in ps])
            is not None}


def _bank_cell(v: Any, n: Any, where: str) -> str:
    """A metric cell (value [CI] n), a number with the row's `n`, or any other value as text."""
    if isinstance(v, Mapping) and ("value" in v or "status" in v):
        return metric_cell(v, where)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        count = f' <span class="n">n={num(n)}</span>' if n is not None else ""
        return f'<td class="m">{num(v)}{count}</td>'
    return plain(v)


def _measured(v: Any) -> bool:
    """False for what a table shows as n/a: absent, null/NaN, or a not-measured cell."""
    if isinstance(v, Mapping):
        return "status" not in v and _measured(v.get("value"))
    return v is not None and num(v) != "n/a"


def _bank_row(emo: str, r: Mapping[str, Any], cols: list[tuple[str, tuple[str, ...],
                                                                 tuple[str, ...]]],
              src: str) -> list[str]:
    cells = [e(emo)]
    for heading, paths, n_paths in cols:
        v = dig(r, paths)
        cells.append(_bank_cell(v, dig(r, n_paths), f"{src}: {emo}.{heading}") if _measured(v)
                     else '<td class="nm">n/a</td>')
    return cells


def bank_section(bank: Mapping[str, Any], src: str) -> str:
    """The emotion bank: one row per emotion (BANK_COLUMNS; a column no emotion has is dropped)
    and its cosine matrix ({emotions, matrix}); the file's top-level notes (reference, layer,
    what AUC and consistency mean) above. Tolerates either part missing."""
    rows = bank_emotions(bank)
    cols = [c for c in BANK_COLUMNS if any(_measured(dig(r, c[1])) for r in rows.values())]
    parts = ['<section id="bank"><h2>Emotion bank</h2>']
    info = [f"{e(k)}: {plain(v)}" for k, v in bank.items()
            if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
    if info:
        parts.append(f'<p class="lede">{"; ".join(info)}</p>')
    if rows and cols:
        body = [_bank_row(emo, r, cols, src) for emo, r in rows.items()]
        parts.append(table(("emotion", *(h for h, _, _ in cols)), body, "bank"))
    else:
        parts.append('<p class="nm">no per-emotion diagnostics in the bank</p>')
    cm = next((bank[k] for k in BANK_COSINE_KEYS if isinstance(bank.get(k), Mapping)), None)
    matrix = (cm.get("matrix") or cm.get("cosine")) if cm is not None else None
    if cm is not None and cm.get("emotions") and isinstance(matrix, list):
        names = [str(n) for n in cm["emotions"]]
        body = [(f'<th scope="row">{e(a)}</th>', *(f'<td class="m">{num(v)}</td>' for v in row))
                for a, row in zip(names, matrix, strict=True)]
        parts.append("<h3>Cosines between the emotion directions</h3>"
                     + table(("", *names), body, "bank"))
    return "".join(parts) + "</section>"


def figures(plots: list[tuple[str, str | None]]) -> str:
    out = []
    for caption, uri in plots:
        if uri is None:
            out.append(f'<p class="nm">plot missing: {e(caption)}</p>')
        else:
            out.append(f'<figure><img src="{uri}" alt="{e(caption)}">'
                       f"<figcaption>{e(caption)}</figcaption></figure>")
    return "".join(out)


def _ordered_keys(dicts: Iterable[Any]) -> list[str]:
    return list(dict.fromkeys(k for d in dicts if isinstance(d, Mapping) for k in d))


def _cells(d: Any, keys: list[str], where: str) -> list[str]:
    d = d if isinstance(d, Mapping) else {}
    return [metric_cell(d[k], f"{where}.{k}") if k in d else '<td class="nm">absent</td>'
            for k in keys]


DELTA_PLOT_CAPTION = ("target posterior, speaker similarity and each correlate against delta, "
                      "one line per mode, 95% CI bars")


def evaluate_section(ev: Mapping[str, Any], src: str, grid: str, plot: str | None) -> str:
    """Every table of evaluate.json, its metric-vs-delta plot (a data URI, or None when nothing
    was measured) and the audio grid (both rendered by the caller)."""
    parts = ['<section id="evaluate"><h2>Steering evaluation</h2>']
    axis = ev.get("axis") or {}
    trained = ev.get("probe") if isinstance(ev.get("probe"), Mapping) else {}
    parts.append(table(("", ""), [*key_values(axis, "axis."),
                                  *key_values(trained, "posterior probe."),
                                  *key_values(ev.get("config") or {}, "config.")], "kv"))
    rows = ev.get("table") or []
    corr = _ordered_keys(r.get("correlates") for r in rows)
    gap = _ordered_keys(r.get("gap_closed") for r in rows)
    main, gaps = [], []
    for i, r in enumerate(rows):
        w = f"{src}: table[{i}]"
        lead = (e(str(r.get("mode"))), num(r.get("delta")))
        main.append((*lead, *_cells(r, ["posterior", "speaker_similarity"], w),
                     *_cells(r.get("correlates"), corr, f"{w}.correlates")))
        gaps.append((*lead, *_cells(r.get("gap_closed"), gap, f"{w}.gap_closed")))
    parts.append("<h3>Per mode and delta</h3><p>Cells: value [95% CI] n; "
                 "<i>not measured</i> cells say why.</p>"
                 + table(("mode", "delta", "target posterior", "speaker similarity", *corr),
                         main, "eval"))
    if plot is not None:
        parts.append(figures([(DELTA_PLOT_CAPTION, plot)]))
    if gap:
        parts.append("<h3>Fraction of the real source-to-target gap closed</h3>"
                     + table(("mode", "delta", *gap), gaps, "eval"))
    fid = ev.get("fidelity")
    if isinstance(fid, Mapping):
        parts.append(f"<h3>Fidelity of the round trip (mode {e(str(fid.get('mode')))}, "
                     f"delta {num(fid.get('delta'))}) against the input</h3>"
                     + table([t for _, t in FIDELITY_METRICS],
                             [_cells(fid, [k for k, _ in FIDELITY_METRICS],
                                     f"{src}: fidelity")], "eval"))
    mono = ev.get("monotonicity")
    if isinstance(mono, Mapping) and mono:
        keys = _ordered_keys(mono.values())
        parts.append("<h3>Monotonicity: Spearman rho against delta</h3>"
                     + table(("mode", *keys),
                             [(e(m), *_cells(d, keys, f"{src}: monotonicity.{m}"))
                              for m, d in mono.items()], "eval"))
    ext = ev.get("external")
    if isinstance(ext, Mapping):
        keys = [k for k, _ in EXTERNAL_METRICS] + [k for k in ext if k not in
                                                    dict(EXTERNAL_METRICS)]
        heads = [dict(EXTERNAL_METRICS).get(k, k) for k in keys]
        parts.append("<h3>External models</h3>"
                     + table(heads, [_cells(ext, keys, f"{src}: external")], "eval"))
    skipped = ev.get("skipped") or []
    if skipped:
        parts.append("<h3>Skipped clips</h3><ul>" + "".join(
            f"<li>{plain(s.get('path', s.get('clip')) if isinstance(s, Mapping) else s)}: "
            f"{plain(s.get('reason', '')) if isinstance(s, Mapping) else ''}</li>"
            for s in skipped) + "</ul>")
    parts.append(grid)
    parts.append(provenance_block(ev.get("provenance")))
    return "".join(parts) + "</section>"


def audio_grid(ev: Mapping[str, Any], src: str, audio: Callable[[str, str], str],
               heading: str = "Audio: clips x modes x deltas", anchor: str = "audio-grid") -> str:
    """Rows = clips; columns = input, real target, then modes x deltas. `audio(rel, where)`
    returns the <audio> element (or a 'missing' note) for a path relative to the evaluate dir."""
    clips = ev.get("clips") or []
    cfg_modes = list((ev.get("config") or {}).get("modes") or [])
    modes = list(dict.fromkeys(cfg_modes + _ordered_keys(c.get("outputs") for c in clips)))
    deltas = {m: sorted(_ordered_keys((c.get("outputs") or {}).get(m) for c in clips),
                        key=float) for m in modes}
    modes = [m for m in modes if deltas[m]]
    top = ('<tr><th rowspan="2">clip</th><th rowspan="2">original input</th>'
           '<th rowspan="2">real target</th>'
           + "".join(f'<th colspan="{len(deltas[m])}">{e(m)}</th>' for m in modes) + "</tr>")
    sub = "<tr>" + "".join(f"<th>delta {e(d)}</th>" for m in modes for d in deltas[m]) + "</tr>"
    rows = []
    for i, c in enumerate(clips):
        w = f"{src}: clips[{i}]"
        cells = [f"<th>{e(str(c.get('id')))}<br><small>{e(str(c.get('speaker')))}, "
                 f"{e(str(c.get('emotion')))}</small></th>"]
        cells.append(f"<td>{audio(c['input'], w + '.input')}</td>" if c.get("input")
                     else '<td class="nm">absent</td>')
        cells.append(f"<td>{audio(c['real_target'], w + '.real_target')}</td>"
                     if c.get("real_target") else '<td class="nm">no real recording</td>')
        outs = c.get("outputs") or {}
        for m in modes:
            for d in deltas[m]:
                rel = (outs.get(m) or {}).get(d)
                cells.append(f"<td>{audio(rel, f'{w}.outputs.{m}.{d}')}</td>" if rel
                             else '<td class="nm">absent</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<h3 id="{e(anchor)}">{e(heading)}</h3>'
            f'<table class="grid"><thead>{top}{sub}</thead><tbody>{"".join(rows)}</tbody></table>')


def _ci_pair(v: Any, ci: Any) -> str:
    text = num(v)
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        text += f' <span class="ci">[{num(ci[0])}, {num(ci[1])}]</span>'
    return text


def study_section(s: Mapping[str, Any], plots: list[tuple[str, str | None]]) -> str:
    """The listening study's analysis.json (emosteer.study.analyze.summarize + plots)."""
    rows = [(e(str(r.get("kind"))), e(str(r.get("mode"))), num(r.get("delta")),
             num(r.get("n_ratings")), num(r.get("n_participants")),
             _ci_pair(r.get("ident_rate"), r.get("ident_rate_ci")),
             _ci_pair(r.get("mos"), r.get("mos_ci")),
             _ci_pair(r.get("intensity"), r.get("intensity_ci")))
            for r in s.get("conditions") or []]
    excluded = s.get("excluded") or {}
    excl = "".join(f"<li>{e(pid)}: {e('; '.join(map(str, why)))}</li>"
                   for pid, why in excluded.items()) or "<li>nobody excluded</li>"
    modes = [(e(str(m.get("mode"))), _ci_pair(m.get("mos"), m.get("mos_ci")),
              num(m.get("n_participants"))) for m in s.get("mos_per_mode") or []]
    agree = [(e(k), num(v)) for k, v in (s.get("agreement") or {}).items()]
    return ('<section id="study"><h2>Listening study: ' + e(str(s.get("study"))) + "</h2>"
            f"<p>{num(s.get('n_included'))} of {num(s.get('n_participants'))} participants "
            f"included; {num(s.get('n_ratings_used'))} ratings used.</p>"
            f"<h3>Exclusion rule</h3><pre>{e(str(s.get('exclusion_rule', '')))}</pre>"
            f"<ul>{excl}</ul>"
            + table(("kind", "mode", "delta", "ratings", "listeners",
                     "identification [95% Wilson]", "MOS [95% bootstrap]",
                     "intensity [95% bootstrap]"), rows, "study")
            + "<h3>MOS per mode</h3>" + table(("mode", "MOS [95% bootstrap]", "listeners"), modes)
            + "<h3>Inter-rater agreement</h3>" + table(("statistic", "value"), agree)
            + figures(plots) + "</section>")
