"""One self-contained HTML page per run, rebuilt from the JSON the commands wrote.

`build_report(run_dir)` looks for what a pipeline run (or a single command) left behind:
run.json, probe/probe.json (or probe.json), evaluate/evaluate.json (or evaluate.json) and a
listening study's analysis.json; a part that is absent is simply not a section. The page has no
external URL: plots are embedded as base64 data URIs, and so is audio unless `embed_audio` is
off or the run's audio exceeds MAX_EMBED_AUDIO_BYTES, in which case the players link to the
files relative to the page (logged). Nothing on the page depends on the clock, so rebuilding
from the same JSON gives the same bytes.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape as e
from pathlib import Path
from typing import Any
from urllib.parse import quote

from emosteer import __version__
from emosteer.artifacts import atomic_write_text, read_json
from emosteer.errors import ArtifactError
from emosteer.report_sections import (
    audio_grid,
    encoder_banner,
    evaluate_section,
    probe_section,
    run_section,
    study_section,
)

log = logging.getLogger(__name__)

PAGE_FILE = "index.html"
RUN_FILE = "run.json"
PROBE_FILES = ("probe/probe.json", "probe.json")
EVALUATE_FILES = ("evaluate/evaluate.json", "evaluate.json")
STUDY_FILES = ("study/analysis/analysis.json", "analysis/analysis.json", "analysis.json")
# The plots emosteer.probe.run_probe writes (stem, caption); PNG preferred, SVG as fallback.
PROBE_PLOTS = (("metrics_vs_layer", "every metric against layer, 95% CI bands; controls dashed"),
               ("scatter_best_layer", "PCA and UMAP of the best layer, by emotion and speaker"),
               ("axis_cosines", "cosines of the emotion axes against the reference"))
# Base64 costs 4/3, so 48 MiB of audio is a ~64 MiB page: about where browsers still open a
# page quickly. A RAVDESS evaluation (4 clips x 3 modes x 5 deltas of ~3.5 s float WAV) is
# ~15 MiB; bigger runs link their audio instead.
MAX_EMBED_AUDIO_BYTES = 48 * 2**20
MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
        ".png": "image/png", ".svg": "image/svg+xml"}
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1400px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.88em}
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


@dataclass(frozen=True)
class RunInputs:
    """The JSON a report is built from; None where that part of the pipeline did not run."""

    run_dir: Path
    run: dict | None
    probe: dict | None
    probe_path: Path | None
    evaluate: dict | None
    evaluate_path: Path | None
    study: dict | None
    study_path: Path | None


def _first(run_dir: Path, candidates: tuple[str, ...]) -> Path | None:
    return next((run_dir / c for c in candidates if (run_dir / c).is_file()), None)


def _read_object(path: Path | None) -> dict | None:
    if path is None:
        return None
    data = read_json(path)
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def find_inputs(run_dir: str | os.PathLike) -> RunInputs:
    """Locate and read every JSON the report can use; an error if there is none at all."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(f"{run_dir}: not a directory")
    run_path = run_dir / RUN_FILE if (run_dir / RUN_FILE).is_file() else None
    probe_path = _first(run_dir, PROBE_FILES)
    eval_path = _first(run_dir, EVALUATE_FILES)
    study_path = _first(run_dir, STUDY_FILES)
    if not any((run_path, probe_path, eval_path, study_path)):
        raise ArtifactError(f"{run_dir}: nothing to report (no {RUN_FILE}, probe.json, "
                            "evaluate.json or analysis.json)")
    return RunInputs(run_dir, _read_object(run_path), _read_object(probe_path), probe_path,
                     _read_object(eval_path), eval_path, _read_object(study_path), study_path)


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


def run_encoder_notes(run: Mapping[str, Any]) -> list[str]:
    """run.json's encoder note: top-level "encoder_note" (the contract) or the pipeline's
    "encoder" record; a random-init encoder without a note still gets one."""
    notes = [run.get("encoder_note")]
    enc = run.get("encoder")
    if isinstance(enc, Mapping):
        notes.append(enc.get("note"))
        if enc.get("random_init") and not any(isinstance(n, str) and n for n in notes):
            notes.append(f"random-init {enc.get('loaded') or enc.get('requested')} "
                         "(untrained control)")
    return [n for n in notes if isinstance(n, str) and n]


def render_page(inputs: RunInputs, page_dir: Path, embed_audio: bool = True,
                cap: int = MAX_EMBED_AUDIO_BYTES) -> str:
    """The complete HTML document for `inputs`; `page_dir` anchors relative audio links."""
    run, probe, ev, study = inputs.run, inputs.probe, inputs.evaluate, inputs.study
    notes = [*run_encoder_notes(run or {}), (ev or {}).get("encoder_note")]
    sections, nav = [], []
    if run is not None:
        sections.append(run_section(run))
        nav.append(("run", "Run"))
    if probe is not None and inputs.probe_path is not None:
        pdir = inputs.probe_path.parent
        plots = [(cap_, plot_uri(pdir / stem)) for stem, cap_ in PROBE_PLOTS]
        sections.append(probe_section(probe, plots))
        nav.append(("probe", "Probe"))
    if ev is not None and inputs.evaluate_path is not None:
        src = str(inputs.evaluate_path)
        base = inputs.evaluate_path.parent
        embed = decide_embedding(evaluate_audio(ev, base, src), embed_audio, cap)
        grid = audio_grid(ev, src, AudioEmbedder(base, page_dir, embed))
        sections.append(evaluate_section(ev, src, grid))
        nav.append(("evaluate", "Evaluation"))
        nav.append(("audio-grid", "Audio"))
    if study is not None and inputs.study_path is not None:
        sdir = inputs.study_path.parent
        plots = [(str(p), plot_uri(inside(sdir, p, f"{inputs.study_path}: plots")
                                   .with_suffix("")))
                 for p in study.get("plots") or []]
        sections.append(study_section(study, plots))
        nav.append(("study", "Listening study"))
    title = f"emosteer report: {inputs.run_dir.resolve().name}"
    links = "".join(f'<a href="#{a}">{e(t)}</a>' for a, t in nav)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><link rel=\"icon\" href=\"data:,\">"
            f"<style>{STYLE}</style></head><body>\n<h1>{e(title)}</h1>"
            f"{encoder_banner(n for n in notes if isinstance(n, str))}"
            f"<nav>{links}</nav>\n" + "\n".join(sections)
            + f"\n<footer><p>Built by emosteer {e(__version__)} from the JSON in this run "
              "directory; rebuild with <code>emosteer report DIR</code>.</p></footer>"
              "</body></html>\n")


def build_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                 embed_audio: bool = True) -> Path:
    """Write the report of `run_dir` to `out` (default RUN_DIR/index.html) atomically."""
    inputs = find_inputs(run_dir)
    out = Path(out) if out is not None else inputs.run_dir / PAGE_FILE
    page = render_page(inputs, out.parent, embed_audio)
    atomic_write_text(out, page)
    log.info("report: wrote %s (%.1f MiB)", out, len(page) / 2**20)
    return out
