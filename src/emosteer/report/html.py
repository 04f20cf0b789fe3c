"""Media and the page shell of the run report: embedding files as data URIs, relative links
for runs too big to embed, and the HTML document around the sections.

Every file the page refers to is resolved inside the directory whose JSON named it, so a
crafted evaluate.json cannot make the report embed arbitrary files.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Mapping
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
.banner{padding:.7em 1em;border-left:6px solid #2a6;background:#eef8f0;font-size:1.1em}
.banner.warn{border-color:#d80;background:#fff4e0}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
table.grid audio{width:210px}
nav a{margin-right:1em}
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


def delta_plot(table: list[Mapping[str, Any]]) -> str | None:
    """evaluate.json's table drawn as metric-vs-delta panels (one line per mode, 95% CI
    bars), as a PNG data URI; None when no cell holds a number. Drawn from the JSON at report
    time so the plot can never disagree with the table beside it."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def cells(row: Mapping[str, Any]) -> dict[str, Any]:
        flat = {"target posterior": row.get("posterior"),
                "speaker similarity": row.get("speaker_similarity")}
        flat.update((row.get("correlates") or {}).items())
        return flat

    series: dict[str, dict[str, list[tuple[float, float, float, float]]]] = {}
    for row in table:
        for name, c in cells(row).items():
            if isinstance(c, Mapping) and isinstance(c.get("value"), (int, float)):
                lo, hi = c.get("ci") or (c["value"], c["value"])
                lo, hi = (c["value"] if v is None else v for v in (lo, hi))
                series.setdefault(name, {}).setdefault(str(row.get("mode")), []).append(
                    (float(row.get("delta", 0.0)), c["value"], lo, hi))
    if not series:
        return None
    n_rows = -(-len(series) // PANELS_PER_ROW)
    n_cols = min(len(series), PANELS_PER_ROW)
    fig, axs = plt.subplots(n_rows, n_cols, squeeze=False, constrained_layout=True,
                            figsize=(PANEL_INCHES[0] * n_cols, PANEL_INCHES[1] * n_rows))
    for ax, (name, by_mode) in zip(axs.flat, series.items(), strict=False):
        for mode, pts in by_mode.items():
            d, v, lo, hi = (list(x) for x in zip(*sorted(pts), strict=True))
            # max(0, .): a percentile CI need not contain the point estimate.
            ax.errorbar(d, v, yerr=[[max(a - b, 0.0) for a, b in zip(v, lo, strict=True)],
                                    [max(b - a, 0.0) for a, b in zip(v, hi, strict=True)]],
                        marker="o", ms=3, capsize=3, label=mode)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("delta", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axs.flat)[len(series):]:
        ax.set_axis_off()
    axs.flat[0].legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PLOT_DPI)
    plt.close(fig)
    return f"data:image/png;base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"
