"""The report's first screen: does steering work?

From evaluate.json alone: for each mode, the independent judges at delta -1, 0 and +1 beside the
reference rows (real source input, copy-synthesis, real target); one figure of P(target) and
DNSMOS against delta with the real levels drawn across; a short audio grid; and one sentence
per mode generated from the numbers (`mode_sentence`), with a flag when the same-encoder probe
posterior and the judge disagree on the direction of the sweep (`contradiction`). The two
wording functions are pure, so their phrasing is tested case by case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from html import escape as e
from typing import Any

from emosteer.report.html import (
    VERDICT_DPI,
    VERDICT_PANEL_INCHES,
    PlotPanel,
    cell_point,
    panels_png,
)
from emosteer.report.sections import figures, metric_cell, num, table

VERDICT_DELTAS = (-1.0, 0.0, 1.0)
# (judge, metric, column heading; "{target}" is the target emotion). Every column that no row
# measured is dropped, with its reason listed under the table.
COLUMNS = (("emotion", "p_target", "P({target}), calibrated judge"),
           ("ser", "p_target", "SER P({target})"),
           ("dnsmos", "ovrl", "DNSMOS OVRL"),
           ("asr", "wer", "WER"),
           ("speaker", "cosine", "speaker similarity"))
REFERENCE_KINDS = ("input", "copy_synthesis", "real_target")
# Older evaluate.json files have no real-source/real-target reference rows; the emotion judge's
# calibration lines (every held-out real clip) stand in for P(target).
EMOTION_JUDGE_LINES = {"input": "p_target_real_source", "real_target": "p_target_real_target"}
# Line style of each reference level in the figure, the same on every panel.
REFERENCE_STYLES = {"input": ":", "real_target": "--", "copy_synthesis": "-."}
# P(target) at most this far below the real target's (or above it) reads "as often as", and
# this close to the input's "no more often than the input": a few held-out clips cannot resolve
# finer differences, and the table beside the sentence gives the CIs.
SAME_P = 0.05
# Half a point on DNSMOS's 1-5 scale, about where listeners hear a different quality category;
# a smaller drop is reported without comment.
LARGE_DNSMOS_DROP = 0.5
# A probability that moves less than this over the whole sweep has no direction (the
# contradiction flag compares directions).
FLAT = 0.05
N_CLIPS = 3  # clips in the verdict's audio grid


def value(cell: Any) -> float | None:
    """The number in a metric cell; None when it was not measured, is NaN or is no cell."""
    pt = cell_point(0.0, cell)
    return None if pt is None else pt[1]


def judged(judges: Any, judge: str, metric: str) -> Any:
    """judges[judge][metric] of a table or reference row; None where absent."""
    j = judges.get(judge) if isinstance(judges, Mapping) else None
    return j.get(metric) if isinstance(j, Mapping) else None


def emotions(ev: Mapping[str, Any]) -> tuple[str, str]:
    """(source, target) emotion of the evaluation, from its axis or config."""
    axis, cfg = ev.get("axis") or {}, ev.get("config") or {}
    return (str(axis.get("source") or cfg.get("source") or "source"),
            str(axis.get("target") or cfg.get("target") or "target"))


def reference_rows(ev: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """evaluate.json's reference rows by kind (input, copy_synthesis, real_target)."""
    return {str(r.get("kind")): r for r in ev.get("references") or []
            if isinstance(r, Mapping) and r.get("kind") in REFERENCE_KINDS}


def reference_labels(ev: Mapping[str, Any]) -> dict[str, str]:
    """Short names of the reference rows, in the evaluation's emotions."""
    source, target = emotions(ev)
    return {"input": f"real {source} (input)", "copy_synthesis": "copy-synthesis",
            "real_target": f"real {target}"}


def reference_level(ev: Mapping[str, Any], kind: str, judge: str, metric: str) -> float | None:
    """The reference row `kind`'s number for judge/metric; for P(target) of the real source or
    target, the emotion judge's calibration line where the row has none."""
    v = value(judged((reference_rows(ev).get(kind) or {}).get("judges"), judge, metric))
    line = EMOTION_JUDGE_LINES.get(kind) if judge == "emotion" else None
    ej = ev.get("emotion_judge")
    if v is None and line and isinstance(ej, Mapping):
        v = value(ej.get(line))
    return v


def mode_rows(ev: Mapping[str, Any]) -> dict[str, dict[float, Mapping[str, Any]]]:
    """The table's rows as {mode: {delta: row}}, modes in table order."""
    out: dict[str, dict[float, Mapping[str, Any]]] = {}
    for r in ev.get("table") or []:
        out.setdefault(str(r["mode"]), {})[float(r["delta"])] = r
    return out


def verdict_deltas(deltas: Iterable[float]) -> list[float]:
    """Delta -1, 0 and +1 of the sweep; an end the sweep lacks is replaced by the sweep's own
    end on that side, and 0 is left out when the sweep has no 0."""
    have = sorted(set(deltas))
    if not have:
        return []
    lo, mid, hi = VERDICT_DELTAS
    return sorted({lo if lo in have else have[0], hi if hi in have else have[-1],
                   *([mid] if mid in have else [])})


def mode_sentence(mode: str, target: str, delta: float, p: float | None = None,
                  p_real_target: float | None = None, p_input: float | None = None,
                  dnsmos: float | None = None, dnsmos_input: float | None = None) -> str:
    """One sentence on `mode` at `delta`: how often the judge hears `target` (P = `p`) against
    real `target` speech (and against the input, when steering did not lift P above it), then
    DNSMOS against the input. Where `p`, `p_real_target`, `dnsmos` or `dnsmos_input` is None,
    the sentence says what was "not measured"; `p_input` only picks the wording."""
    at = f"at delta {delta:g}"
    if p is None:
        heard = f"P({target}) not measured {at}"
    elif p_real_target is None:
        heard = f"P({target}) {p:.2f} {at} (real {target} speech not measured)"
    else:
        vs = f"(P {p:.2f} vs {p_real_target:.2f})"
        if p >= p_real_target - SAME_P:  # reached the real level (overshooting included)
            heard = f"recognised as {target} as often as real {target} speech {at} {vs}"
        elif p_input is not None and p <= p_input + SAME_P:
            heard = (f"recognised as {target} no more often than the input {at} (P {p:.2f} vs "
                     f"{p_input:.2f}; real {target} speech {p_real_target:.2f})")
        else:
            heard = f"recognised as {target} less often than real {target} speech {at} {vs}"
    if dnsmos is None or dnsmos_input is None:
        quality = "DNSMOS not measured"
    else:
        change = dnsmos - dnsmos_input
        quality = f"DNSMOS {change:+.2f} vs the input"
        if change <= -LARGE_DNSMOS_DROP:
            quality += ", a large quality drop"
    return f"{mode}: {heard}, {quality}."


def _direction(ends: tuple[float, float]) -> int:
    return 0 if abs(ends[1] - ends[0]) <= FLAT else (1 if ends[1] > ends[0] else -1)


def contradiction(target: str, lo: float, hi: float, posterior: tuple[float, float] | None,
                  judge: tuple[float, float] | None) -> str | None:
    """A note when the same-encoder probe posterior and the judge's P(`target`) move in opposite
    directions from delta `lo` to `hi` (each given as (value at lo, value at hi)); None when
    they agree, either is flat (moves at most FLAT) or either is missing."""
    if posterior is None or judge is None:
        return None
    dp, dj = _direction(posterior), _direction(judge)
    if dp * dj >= 0:
        return None
    word = {1: "rises", -1: "falls"}
    return (f"contradiction: the same-encoder probe posterior {word[dp]} ({posterior[0]:.2f} "
            f"to {posterior[1]:.2f}) from delta {lo:g} to {hi:g} while the judge's "
            f"P({target}) {word[dj]} ({judge[0]:.2f} to {judge[1]:.2f})")


def _ends(by_delta: Mapping[float, Mapping[str, Any]],
          cell: Callable[[Mapping[str, Any]], Any]) -> tuple[float, float] | None:
    """The numbers of `cell(row)` at the sweep's lowest and highest delta; None if either is
    missing."""
    lo, hi = (value(cell(by_delta[d])) for d in (min(by_delta), max(by_delta)))
    return None if lo is None or hi is None else (lo, hi)


def sentences(ev: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """(mode, sentence, contradiction note or None) per mode of the table, read at the highest
    verdict delta."""
    _, target = emotions(ev)
    p_real = reference_level(ev, "real_target", "emotion", "p_target")
    p_input = reference_level(ev, "input", "emotion", "p_target")
    q_input = reference_level(ev, "input", "dnsmos", "ovrl")
    out = []
    for mode, by_delta in mode_rows(ev).items():
        top = max(verdict_deltas(by_delta))
        judges = by_delta[top].get("judges")
        text = mode_sentence(mode, target, top, value(judged(judges, "emotion", "p_target")),
                             p_real, p_input, value(judged(judges, "dnsmos", "ovrl")), q_input)
        note = contradiction(target, min(by_delta), max(by_delta),
                             _ends(by_delta, lambda r: r.get("posterior")),
                             _ends(by_delta, lambda r: judged(r.get("judges"), "emotion",
                                                              "p_target")))
        out.append((mode, text, note))
    return out


def _cell(c: Any, where: str) -> str:
    """A verdict cell: value [CI] n like every table, but a not-measured cell is short (its
    reason on hover and, for a dropped column, under the table)."""
    if not isinstance(c, Mapping):
        return '<td class="nm">absent</td>'
    if "status" in c:
        return (f'<td class="nm" title="{e(str(c.get("reason") or ""))}">'
                f'{e(str(c["status"]))}</td>')
    return metric_cell(c, where, fmt=lambda v: num(v) if v is None else f"{v:.2f}")


def _first_reason(cells: list[Any]) -> str:
    return next((str(c.get("reason")) for c in cells if isinstance(c, Mapping)
                 and c.get("reason")), "absent")


def judge_table(ev: Mapping[str, Any], src: str, deltas: Iterable[float] | None) -> str:
    """Reference rows, then one row per mode and delta (`deltas`, or every delta when None):
    each judge's value [95% CI over clips] n. Columns no row measured are dropped and listed
    with their reason; an evaluate.json without judges gets a line saying so."""
    _, target = emotions(ev)
    labels = reference_labels(ev)
    rows: list[tuple[str, Any, str]] = [
        (f'<th scope="row" data-ref="{e(k)}" title="{e(str(r.get("label", "")))}">'
         f"{e(labels[k])}</th>", r.get("judges"), f"{src}: references[{k}]")
        for k, r in reference_rows(ev).items()]
    wanted = None if deltas is None else set(deltas)
    rows += [(f'<th scope="row" data-mode="{e(mode)}" data-delta="{d:g}">{e(mode)} '
              f"δ {d:+g}</th>", r.get("judges"), f"{src}: table[{mode}, {d:g}].judges")
             for mode, by_delta in mode_rows(ev).items() for d, r in sorted(by_delta.items())
             if wanted is None or d in wanted]
    columns = [(h.format(target=target), [judged(j, judge, m) for _, j, _ in rows],
                [f"{w}.{judge}.{m}" for _, _, w in rows]) for judge, m, h in COLUMNS]
    kept = [c for c in columns if any(value(x) is not None for x in c[1])]
    dropped = "; ".join(f"{e(h)} ({e(_first_reason(cells))})" for h, cells, _ in columns
                        if not any(value(x) is not None for x in cells))
    note = f'<p class="nm dropped">not measured: {dropped}</p>' if dropped else ""
    if not kept:
        return f'<p class="nm">No judge measured this evaluation.</p>{note}'
    body = [(lead, *(_cell(cells[i], where[i]) for _, cells, where in kept))
            for i, (lead, _, _) in enumerate(rows)]
    return table(("", *(h for h, _, _ in kept)), body, "verdict") + note


VERDICT_XLABEL = "delta (1 = mean {source}\u2192{target} shift)"


def verdict_panels(ev: Mapping[str, Any]) -> list[PlotPanel]:
    """P(target) and DNSMOS OVRL against delta, one line per mode, with the real source (input),
    real target and (DNSMOS) copy-synthesis levels; a panel nothing measured is left out."""
    _, target = emotions(ev)
    labels = reference_labels(ev)
    specs = ((f"Recognised as {target}", f"P({target}), calibrated judge", "emotion", "p_target",
              ("input", "real_target"), (-0.02, 1.02)),
             ("Speech quality", "DNSMOS P.835 OVRL (MOS, 1-5)", "dnsmos", "ovrl",
              ("input", "copy_synthesis", "real_target"), None))
    panels = []
    for title, ylabel, judge, metric, kinds, ylim in specs:
        series = {mode: pts for mode, by_delta in mode_rows(ev).items()
                  if (pts := [p for d, r in sorted(by_delta.items())
                              if (p := cell_point(d, judged(r.get("judges"), judge, metric)))])}
        levels = tuple((labels[k], v, REFERENCE_STYLES[k]) for k in kinds
                       if (v := reference_level(ev, k, judge, metric)) is not None)
        if series:
            panels.append(PlotPanel(title, series, ylabel, levels, ylim))
    return panels


def verdict_plot(ev: Mapping[str, Any]) -> str | None:
    """The verdict figure as a PNG data URI (print resolution); None when nothing was judged."""
    source, target = emotions(ev)
    return panels_png(verdict_panels(ev), VERDICT_XLABEL.format(source=source, target=target),
                      per_row=2, inches=VERDICT_PANEL_INCHES, dpi=VERDICT_DPI, fontsize=9)


def verdict_clips(ev: Mapping[str, Any], k: int = N_CLIPS) -> dict[str, Any]:
    """evaluate.json's clips cut down for the verdict's grid, in evaluate.json's clip shape (so
    the embedding cap counts them like any clip): up to `k` clips, one per speaker first and
    clips with a real target first; outputs at the verdict deltas only; a clip without its own
    real target gets its speaker's from another clip."""
    clips = [c for c in ev.get("clips") or [] if isinstance(c, Mapping)]
    ranked = sorted(clips, key=lambda c: not c.get("real_target"))  # stable: keeps JSON order
    targets: dict[Any, str] = {}  # speaker -> a real target recording of theirs
    seen: set[Any] = set()
    firsts: list[Mapping[str, Any]] = []  # each speaker's first clip
    rest: list[Mapping[str, Any]] = []
    for c in ranked:
        (rest if c.get("speaker") in seen else firsts).append(c)
        seen.add(c.get("speaker"))
        if c.get("real_target"):
            targets.setdefault(c.get("speaker"), c["real_target"])
    keep = set(verdict_deltas(float(d) for c in clips
                              for by in (c.get("outputs") or {}).values() for d in by or {}))
    picked = []
    for c in [*firsts, *rest][:k]:
        outputs = {m: {d: rel for d, rel in (by or {}).items() if float(d) in keep}
                   for m, by in (c.get("outputs") or {}).items()}
        picked.append({**c, "outputs": outputs,
                       "real_target": c.get("real_target") or targets.get(c.get("speaker"))})
    return {"config": {"modes": list((ev.get("config") or {}).get("modes") or [])},
            "clips": picked}


def verdict_grid(ev: Mapping[str, Any], src: str, audio: Callable[[str, str], str]) -> str:
    """The clips of `verdict_clips` as rows of clip x mode: the clip and its input (once per
    clip), the mode's outputs at the verdict deltas, the speaker's real target (once per clip).
    `audio(rel, where)` renders a player, as for `sections.audio_grid`."""
    _, target = emotions(ev)
    clips = verdict_clips(ev)["clips"]
    outputs = [{m: {float(d): rel for d, rel in (by or {}).items()}
                for m, by in c["outputs"].items()} for c in clips]
    deltas = sorted({d for out in outputs for by in out.values() for d in by})
    modes = [m for m in dict.fromkeys(m for out in outputs for m in out)
             if any(out.get(m) for out in outputs)]
    if not modes:
        return ""

    def player(rel: Any, where: str, attrs: str = "") -> str:
        return (f"<td{attrs}>{audio(rel, where)}</td>" if rel
                else f'<td class="nm"{attrs}>absent</td>')

    rows = []
    for c, out in zip(clips, outputs, strict=True):
        w, span = f"{src}: verdict clip {c.get('id')}", f' rowspan="{len(modes)}"'
        for j, m in enumerate(modes):
            cells = [] if j else [
                f"<th{span}>{e(str(c.get('id')))}<br><small>{e(str(c.get('speaker')))}</small>"
                "</th>", player(c.get("input"), f"{w}.input", span)]
            cells.append(f'<th data-mode="{e(m)}">{e(m)}</th>')
            cells += [player(out.get(m, {}).get(d), f"{w}.outputs.{m}.{d:+.2f}") for d in deltas]
            if not j:
                cells.append(player(c.get("real_target"), f"{w}.real_target", span)
                             if c.get("real_target") else
                             f'<td class="nm"{span}>no real {e(target)} recording</td>')
            rows.append("<tr>" + "".join(cells) + "</tr>")
    head = ("<tr><th>clip</th><th>input</th><th>mode</th>"
            + "".join(f"<th>delta {d:+g}</th>" for d in deltas)
            + f"<th>real {e(target)} (same speaker)</th></tr>")
    return (f'<h3 id="verdict-audio">Listen: {len(clips)} held-out clip'
            f'{"s" if len(clips) != 1 else ""}</h3><table class="grid verdict-grid">'
            f'<thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>')


def verdict_section(ev: Mapping[str, Any], src: str, audio: Callable[[str, str], str],
                    plot: str | None) -> str:
    """The first screen: sentences (with contradiction flags), the judged table at the verdict
    deltas, the figure (data URI or None), every delta behind a <details>, and the audio grid
    (`verdict_grid`, players from `audio`)."""
    source, target = emotions(ev)
    speakers = (ev.get("config") or {}).get("speakers") or []
    items = "".join(
        f'<li data-mode="{e(mode)}">{e(text)}'
        + (f' <span class="flag">{e(note)}</span>' if note else "") + "</li>"
        for mode, text, note in sentences(ev))
    deltas = verdict_deltas(d for by in mode_rows(ev).values() for d in by)
    fig = figures([(f"P({target}) and DNSMOS against delta, one line per mode (95% CI over "
                    "clips); grey lines: the real levels", plot)]) if plot else ""
    return (f'<section id="verdict"><h2>Does it work? {e(source)} to {e(target)}</h2>'
            f'<p class="lede">Held-out speakers {e(", ".join(map(str, speakers)) or "n/a")}, '
            "judged by models that did not steer. Cells: value [95% CI over clips] n.</p>"
            f'<ul class="verdict">{items}</ul>'
            f'<div class="verdict-body"><div>{judge_table(ev, src, deltas)}</div>{fig}</div>'
            "<details><summary>every delta</summary>"
            f"{judge_table(ev, src, None)}</details>{verdict_grid(ev, src, audio)}</section>")
