"""Plots (matplotlib, Agg) and the analysis.html fragment the report embeds.

Both take the summary dict of analyze.summarize, so they never touch the database.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from emosteer.artifacts import atomic_write_text

PLOT_DPI = 120


def _errorbars(rows: list[dict], key: str) -> tuple[list, list, list]:
    xs, ys, err = [], [], [[], []]
    for r in sorted(rows, key=lambda r: r["delta"]):
        if key in r:
            lo, hi = r[f"{key}_ci"]
            xs.append(r["delta"])
            ys.append(r[key])
            err[0].append(max(0.0, r[key] - lo))
            err[1].append(max(0.0, hi - r[key]))
    return xs, ys, err


def write_plots(summary: dict[str, Any], out_dir: Path) -> list[str]:
    """Identification rate and MOS against delta, one line per steering mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steered = [r for r in summary["conditions"] if r["kind"] == "steered"]
    modes = sorted({r["mode"] for r in steered})
    written = []
    for key, ylabel, fname, ylim in (("ident_rate", "identification rate", "identification.png",
                                      (0, 1)), ("mos", "naturalness MOS", "mos.png", (1, 5))):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for mode in modes:
            xs, ys, err = _errorbars([r for r in steered if r["mode"] == mode], key)
            if xs:
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=mode)
        for r in summary["conditions"]:
            if r["kind"] != "steered" and key in r:
                ax.axhline(r[key], ls="--", lw=1, color="grey")
                ax.annotate(r["kind"], (0, r[key]), xycoords=("axes fraction", "data"),
                            fontsize=7, color="grey")
        ax.set_xlabel("delta")
        ax.set_ylabel(ylabel)
        ax.set_ylim(*ylim)
        if modes:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=PLOT_DPI)
        plt.close(fig)
        written.append(fname)
    return written


def _fmt(v: Any, ci: Any = None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    text = f"{v:.3f}" if isinstance(v, float) else str(v)
    if ci is not None:
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def write_html(summary: dict[str, Any], path: Path) -> Path:
    """An HTML fragment (a <section>, no <html> wrapper) with tables and the plots."""
    e = html.escape
    head = ("kind", "mode", "delta", "ratings", "listeners", "identification [95% Wilson]",
            "MOS [95% bootstrap]", "intensity [95% bootstrap]")
    rows = "".join(
        "<tr>" + "".join(f"<td>{e(c)}</td>" for c in (
            r["kind"], r["mode"], _fmt(r["delta"]), _fmt(r["n_ratings"]), _fmt(r["n_participants"]),
            _fmt(r.get("ident_rate"), r.get("ident_rate_ci")), _fmt(r.get("mos"), r.get("mos_ci")),
            _fmt(r.get("intensity"), r.get("intensity_ci")))) + "</tr>"
        for r in summary["conditions"])
    modes = "".join(f"<li>{e(m['mode'])}: MOS {e(_fmt(m['mos'], m['mos_ci']))}</li>"
                    for m in summary["mos_per_mode"])
    agree = "".join(f"<li>{e(k)}: {e(_fmt(v))}</li>" for k, v in summary["agreement"].items())
    excl = "".join(f"<li>{e(pid)}: {e('; '.join(r))}</li>" for pid, r in summary["excluded"].items())
    imgs = "".join(f'<img src="{e(p)}" alt="{e(p)}">' for p in summary.get("plots", []))
    text = f"""<section class="emosteer-study">
<h2>Listening study: {e(summary['study'])}</h2>
<p>{summary['n_included']} of {summary['n_participants']} participants included;
{summary['n_ratings_used']} ratings used.</p>
<h3>Exclusion rule</h3><pre>{e(summary['exclusion_rule'])}</pre>
<ul>{excl or '<li>nobody excluded</li>'}</ul>
<table><thead><tr>{''.join(f'<th>{e(h)}</th>' for h in head)}</tr></thead>
<tbody>{rows}</tbody></table>
<h3>MOS per mode</h3><ul>{modes}</ul>
<h3>Inter-rater agreement</h3><ul>{agree}</ul>
{imgs}
</section>
"""
    return atomic_write_text(path, text)
