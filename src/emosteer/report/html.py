"""Media and the page shell of the run report: embedding files as data URIs, relative links
for runs too big to embed, and the HTML document around the sections.

Every file the page refers to is resolved inside the directory whose JSON named it, so a
crafted evaluate.json cannot make the report embed arbitrary files.
"""

from __future__ import annotations

import base64
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape as e
from pathlib import Path
from typing import Any
from urllib.parse import quote

from emosteer import __version__
from emosteer.errors import ArtifactError

log = logging.getLogger(__name__)

# Base64 costs 4/3, so 48 MiB of audio is a ~64 MiB page: about where browsers still open a
# page quickly. A RAVDESS evaluation (4 clips x 3 modes x 5 deltas of ~3.5 s float WAV) is
# ~15 MiB; bigger runs link their audio instead.
MAX_EMBED_AUDIO_BYTES = 48 * 2**20
MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
        ".png": "image/png", ".svg": "image/svg+xml"}
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1400px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.88em;display:block;
overflow-x:auto;max-width:100%}
th,td{border:1px solid #ccc;padding:.25em .5em;vertical-align:top;text-align:left}
thead th{background:#f0f0f0}
td.m{white-space:nowrap}
.ci{color:#555}.n{color:#888;font-size:.85em}
.nm{color:#a05a00;font-style:italic}
h1{font-size:1.45em;margin:.2em 0 .3em}
.banner{padding:.25em .8em;margin:.25em 0;border-left:5px solid #2a6;background:#eef8f0;
font-size:.92em}
.banner.warn{border-color:#d80;background:#fff4e0}
.banner.notice{border-color:#58a;background:#eef3fa}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
table.grid audio{width:210px}
nav{margin:.4em 0}nav a{margin-right:1em}
#verdict h2{margin:.5em 0 .2em}
.lede{margin:.2em 0;color:#444}
ul.verdict{margin:.3em 0;padding-left:1.3em}ul.verdict li{margin:.15em 0}
.flag{color:#b00020;font-weight:600}
.verdict-body{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.verdict-body table{margin:.3em 0}
.verdict-body figure{margin:.3em 0;flex:1 1 420px;max-width:760px}
.dropped{font-size:.85em;max-width:640px}
#verdict table.grid audio{width:175px}
details summary{cursor:pointer}details summary h3{display:inline}
"""


def data_uri(path: Path) -> str:
    mime = MIME.get(path.suffix.lower(), "application/octet-stream")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ArtifactError(f"{path}: could not read ({err.strerror or err})") from err
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def plot_uri(stem: Path) -> str | None:
    """The embedded plot `stem`.png (or .svg); None when neither was written."""
    for ext in (".png", ".svg"):
        if stem.with_suffix(ext).is_file():
            return data_uri(stem.with_suffix(ext))
    return None


def relative_url(target: Path, page_dir: Path) -> str:
    rel = os.path.relpath(target.resolve(), page_dir.resolve())
    return quote(Path(rel).as_posix())


def inside(base: Path, rel: Any, where: str) -> Path:
    """`rel` resolved under `base`; paths that leave it are refused (the page would embed
    arbitrary files otherwise)."""
    if not isinstance(rel, str) or not rel:
        raise ArtifactError(f"{where}: expected a relative path, got {rel!r}")
    path = (base / rel).resolve()
    if Path(rel).is_absolute() or not path.is_relative_to(base.resolve()):
        raise ArtifactError(f"{where}: {rel!r} points outside {base}")
    return path


def evaluate_audio(ev: Mapping[str, Any], base: Path, src: str) -> list[tuple[str, Path]]:
    """(json location, file) of every recording evaluate.json names."""
    out = []
    for i, c in enumerate(ev.get("clips") or []):
        w = f"{src}: clips[{i}]"
        for key in ("input", "real_target"):
            if c.get(key):
                out.append((f"{w}.{key}", inside(base, c[key], f"{w}.{key}")))
        for mode, by_delta in (c.get("outputs") or {}).items():
            for d, rel in (by_delta or {}).items():
                where = f"{w}.outputs.{mode}.{d}"
                out.append((where, inside(base, rel, where)))
    return out


class AudioEmbedder:
    """Renders <audio> players for the grid: data URIs or links relative to the page."""

    def __init__(self, base: Path, page_dir: Path, embed: bool):
        self.base, self.page_dir, self.embed = base, page_dir, embed

    def __call__(self, rel: str, where: str) -> str:
        path = inside(self.base, rel, where)
        if not path.is_file():
            log.warning("report: %s: audio file %s is missing", where, path)
            return f'<span class="nm">missing: {e(rel)}</span>'
        src = data_uri(path) if self.embed else relative_url(path, self.page_dir)
        return f'<audio controls preload="metadata" src="{e(src)}" title="{e(rel)}"></audio>'


def decide_embedding(files: list[tuple[str, Path]], embed_audio: bool,
                     cap: int = MAX_EMBED_AUDIO_BYTES) -> bool:
    if not embed_audio:
        return False
    total = sum(p.stat().st_size for _, p in files if p.is_file())
    if total > cap:
        log.warning("report: %d audio files total %.1f MiB, over the %.0f MiB embedding cap; "
                    "the page links to them instead (keep it next to the run directory)",
                    len(files), total / 2**20, cap / 2**20)
        return False
    return True


def page(title: str, banner: str, nav: list[tuple[str, str]], sections: list[str]) -> str:
    """The whole document. Nothing here depends on the clock, so a rebuild is byte-identical."""
    links = "".join(f'<a href="#{e(a)}">{e(t)}</a>' for a, t in nav)
    # The empty data: icon stops Chromium from requesting /favicon.ico (a console error).
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><link rel=\"icon\" href=\"data:,\">"
            f"<style>{STYLE}</style></head><body>\n<h1>{e(title)}</h1>{banner}"
            f"<nav>{links}</nav>\n" + "\n".join(sections)
            + f"\n<footer><p>Built by emosteer {e(__version__)} from the JSON in this run "
              "directory; rebuild with <code>emosteer report DIR</code>.</p></footer>"
              "</body></html>\n")


PLOT_DPI = 100  # screen resolution: the page is for reading, probe's own plots are for papers
PANEL_INCHES = (3.6, 2.8)
PANELS_PER_ROW = 4
LEGEND_COLUMNS = 6  # three modes and three reference levels fit one row under two panels
# The verdict figure is the one a paper would reuse: larger type, print resolution.
VERDICT_DPI = 200
VERDICT_PANEL_INCHES = (3.7, 3.0)
# Reference levels are one grey, told apart by line style: the colour cycle belongs to the modes.
LEVEL_COLOUR = "0.3"

Point = tuple[float, float, float, float]  # (delta, value, ci low, ci high)


@dataclass(frozen=True)
class PlotPanel:
    """One metric-vs-delta panel: points per mode (drawn with their CI) and reference levels
    (label, value, matplotlib line style) drawn across the whole panel."""

    title: str
    series: Mapping[str, list[Point]]
    ylabel: str = ""
    levels: tuple[tuple[str, float, str], ...] = ()
    ylim: tuple[float, float] | None = None


def cell_point(delta: float, cell: Any) -> Point | None:
    """An evaluate.json metric cell at `delta` as a plot point; None unless it holds a number.
    A missing CI end collapses onto the value."""
    if not isinstance(cell, Mapping) or not isinstance(cell.get("value"), (int, float)) \
            or not math.isfinite(cell["value"]):
        return None
    v = float(cell["value"])
    lo, hi = cell.get("ci") or (v, v)
    return (float(delta), v, v if lo is None else float(lo), v if hi is None else float(hi))


def panels_png(panels: list[PlotPanel], xlabel: str, per_row: int = PANELS_PER_ROW,
               inches: tuple[float, float] = PANEL_INCHES, dpi: int = PLOT_DPI,
               fontsize: float = 8) -> str | None:
    """`panels` side by side (`per_row` to a row), one line per mode with 95% CI bars, as a PNG
    data URI; None when there is no panel. One legend for the figure, below the panels, since
    every panel shares the modes and levels."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        return None
    n_rows, n_cols = -(-len(panels) // per_row), min(len(panels), per_row)
    fig, axs = plt.subplots(n_rows, n_cols, squeeze=False, layout="constrained",
                            figsize=(inches[0] * n_cols, inches[1] * n_rows))
    modes: dict[str, Any] = {}  # label -> handle; modes first, then the reference levels
    levels: dict[str, Any] = {}
    for ax, panel in zip(axs.flat, panels, strict=False):
        for mode, pts in panel.series.items():
            d, v, lo, hi = (list(x) for x in zip(*sorted(pts), strict=True))
            # max(0, .): a percentile CI need not contain the point estimate.
            ax.errorbar(d, v, yerr=[[max(a - b, 0.0) for a, b in zip(v, lo, strict=True)],
                                    [max(b - a, 0.0) for a, b in zip(v, hi, strict=True)]],
                        marker="o", ms=3, capsize=3, label=mode)
        for label, value, style in panel.levels:
            ax.axhline(value, ls=style, lw=1.2, color=LEVEL_COLOUR, label=label)
        if panel.ylim is not None:
            ax.set_ylim(*panel.ylim)
        ax.set_title(panel.title, fontsize=fontsize + 1)
        ax.set_xlabel(xlabel, fontsize=fontsize)
        ax.set_ylabel(panel.ylabel, fontsize=fontsize)
        ax.tick_params(labelsize=fontsize - 1)
        ax.grid(alpha=0.3)
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            (modes if label in panel.series else levels).setdefault(label, handle)
    for ax in list(axs.flat)[len(panels):]:
        ax.set_axis_off()
    legend = {**modes, **levels}
    fig.legend(list(legend.values()), list(legend), loc="outside lower center",
               ncol=min(len(legend), LEGEND_COLUMNS), fontsize=fontsize - 1, frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return f"data:image/png;base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def delta_plot(table: list[Mapping[str, Any]]) -> str | None:
    """evaluate.json's table drawn as metric-vs-delta panels (one line per mode, 95% CI
    bars), as a PNG data URI; None when no cell holds a number. Drawn from the JSON at report
    time so the plot can never disagree with the table beside it."""

    def cells(row: Mapping[str, Any]) -> dict[str, Any]:
        flat = {"target posterior": row.get("posterior"),
                "speaker similarity": row.get("speaker_similarity")}
        flat.update((row.get("correlates") or {}).items())
        return flat

    series: dict[str, dict[str, list[Point]]] = {}
    for row in table:
        for name, c in cells(row).items():
            pt = cell_point(float(row.get("delta", 0.0)), c)
            if pt is not None:
                series.setdefault(name, {}).setdefault(str(row.get("mode")), []).append(pt)
    return panels_png([PlotPanel(name, by_mode) for name, by_mode in series.items()], "delta")
