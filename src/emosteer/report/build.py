"""One self-contained HTML page per run, rebuilt from the JSON the commands wrote.

`build_report(run_dir)` looks for what a pipeline run (or a single command) left behind:
run.json, probe/probe.json (or probe.json), the pipeline's steer/sweep.json, evaluate/evaluate.json
(or evaluate.json), an emotion bank's diagnostics.json and a listening study's analysis.json; a
part that is absent is simply not a section. The page opens with the run's notices and the
verdict (`emosteer.report.verdict`: does steering work, from evaluate.json), then the bank, the
layer sweep and the details; how the run was made (recipe, stages, provenance) comes last,
collapsed. The page has no external URL: plots are embedded as base64 data URIs, and so is
audio unless `embed_audio` is off or the run's audio exceeds MAX_EMBED_AUDIO_BYTES, in which
case the players link to the files relative to the page (logged). Nothing on the page depends
on the clock, so rebuilding from the same JSON gives the same bytes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html import escape as e
from pathlib import Path
from typing import Any

from emosteer.artifacts import atomic_write_text, read_json
from emosteer.errors import ArtifactError
from emosteer.report.html import (
    MAX_EMBED_AUDIO_BYTES,
    AudioEmbedder,
    decide_embedding,
    delta_plot,
    evaluate_audio,
    inside,
    page,
    plot_uri,
)
from emosteer.report.sections import (
    BANK_COSINE_KEYS,
    audio_grid,
    bank_emotions,
    bank_section,
    evaluate_section,
    notices_block,
    probe_section,
    run_section,
    study_section,
)
from emosteer.report.verdict import verdict_clips, verdict_plot, verdict_section

log = logging.getLogger(__name__)

PAGE_FILE = "index.html"
RUN_FILE = "run.json"
PROBE_FILES = ("probe/probe.json", "probe.json")
EVALUATE_FILES = ("evaluate/evaluate.json", "evaluate.json")
SWEEP_FILE = "steer/sweep.json"  # the pipeline's one-clip "listen to this" sweep
TTS_FILE = "tts/sweep.json"  # the pipeline's TTS example, in the same format (delta = alpha)
STUDY_FILES = ("study/analysis/analysis.json", "analysis/analysis.json", "analysis.json")
BANK_FILE = "diagnostics.json"  # what `emosteer bank` writes beside BANK/bank.json
BANK_FILES = (f"bank/{BANK_FILE}", BANK_FILE)
# The plots emosteer.evaluation.probe.run_probe writes (stem, caption); PNG preferred, SVG as fallback.
PROBE_PLOTS = (("metrics_vs_layer", "every metric against layer, 95% CI bands; controls dashed"),
               ("scatter_best_layer", "PCA and UMAP of the best layer, by emotion and speaker"),
               ("axis_cosines", "cosines of the emotion axes against the reference"))


@dataclass(frozen=True)
class RunInputs:
    """The JSON a report is built from; None where that part of the pipeline did not run."""

    run_dir: Path
    run: dict | None
    probe: dict | None
    probe_path: Path | None
    evaluate: dict | None
    evaluate_path: Path | None
    sweep: dict | None
    sweep_path: Path | None
    study: dict | None
    study_path: Path | None
    tts: dict | None = None
    tts_path: Path | None = None
    bank: dict | None = None
    bank_path: Path | None = None


def _first(run_dir: Path, candidates: tuple[str, ...]) -> Path | None:
    return next((run_dir / c for c in candidates if (run_dir / c).is_file()), None)


def _read_object(path: Path | None) -> dict | None:
    if path is None:
        return None
    data = read_json(path)
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _is_bank(d: Mapping[str, Any]) -> bool:
    return bool(bank_emotions(d)) or any(isinstance(d.get(k), Mapping) for k in BANK_COSINE_KEYS)


def find_bank(run_dir: Path, named: list[tuple[dict | None, Path | None]]
              ) -> tuple[dict | None, Path | None]:
    """The emotion bank's diagnostics and where they came from. A "bank" key of run.json or
    evaluate.json (`named`: (data, its file)) is the diagnostics themselves or names the bank
    directory (or its diagnostics.json) relative to that file; else BANK_FILES under the run.
    A named bank that is not there is logged and skipped: the bank is optional."""
    for data, path in named:
        ref = (data or {}).get("bank")
        if path is None or ref is None:
            continue
        if isinstance(ref, Mapping) and _is_bank(ref):
            return dict(ref), path
        rel = ref.get("path") if isinstance(ref, Mapping) else ref
        if not isinstance(rel, str) or not rel:
            raise ArtifactError(f"{path}: 'bank' must be the diagnostics, a path or "
                                f"{{\"path\": ...}}, got {type(ref).__name__}")
        target = path.parent / rel
        target = target / BANK_FILE if target.is_dir() else target
        if target.is_file():
            return _read_object(target), target
        log.warning("report: %s names bank %s, which has no %s; no bank section",
                    path, rel, BANK_FILE)
    found = _first(run_dir, BANK_FILES)
    return _read_object(found), found


def find_inputs(run_dir: str | os.PathLike) -> RunInputs:
    """Locate and read every JSON the report can use; an error if there is none at all."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(f"{run_dir}: not a directory")
    run_path = run_dir / RUN_FILE if (run_dir / RUN_FILE).is_file() else None
    probe_path = _first(run_dir, PROBE_FILES)
    eval_path = _first(run_dir, EVALUATE_FILES)
    study_path = _first(run_dir, STUDY_FILES)
    sweep_path = _first(run_dir, (SWEEP_FILE,))
    tts_path = _first(run_dir, (TTS_FILE,))
    run, ev = _read_object(run_path), _read_object(eval_path)
    bank, bank_path = find_bank(run_dir, [(run, run_path), (ev, eval_path)])
    if not any((run_path, probe_path, eval_path, study_path, bank_path)):
        raise ArtifactError(f"{run_dir}: nothing to report (no {RUN_FILE}, probe.json, "
                            f"evaluate.json, analysis.json or {BANK_FILE})")
    return RunInputs(run_dir, run, _read_object(probe_path), probe_path, ev, eval_path,
                     _read_object(sweep_path), sweep_path, _read_object(study_path), study_path,
                     _read_object(tts_path), tts_path, bank, bank_path)


def sweep_as_evaluation(sweep: Mapping[str, Any], src: str) -> dict[str, Any]:
    """The pipeline's steer/sweep.json (one clip, items of mode/delta/path/axis_projection) in
    evaluate.json's clip shape, so one audio grid renders both."""
    items = sweep.get("items")
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise ArtifactError(f"{src}: 'items' must be a list of objects")
    outputs: dict[str, dict[str, str]] = {}
    for i, it in enumerate(items):
        try:
            outputs.setdefault(str(it["mode"]), {})[f"{float(it['delta']):+.2f}"] = it["path"]
        except (KeyError, TypeError, ValueError) as err:
            raise ArtifactError(f"{src}: items[{i}] needs mode, numeric delta and path") from err
    clip = {"id": Path(str(sweep.get("input", "input"))).stem, "speaker": sweep.get("speaker"),
            "emotion": sweep.get("emotion"), "input": "input.wav", "real_target": None,
            "outputs": outputs}
    return {"clips": [clip]}


def sweep_section(sweep: Mapping[str, Any], src: str, base: Path, page_dir: Path,
                  embed: bool, anchor: str = "steer", title: str = "Steering example",
                  caption: str = "One clip, every mode and delta") -> str:
    ev = sweep_as_evaluation(sweep, src)
    if not (base / "input.wav").is_file():
        ev["clips"][0]["input"] = None
    rows = [(e(str(it.get("mode"))), e(f"{float(it['delta']):+.2f}"),
             e(f"{it['axis_projection']:.4g}") if isinstance(it.get("axis_projection"),
                                                          (int, float)) else "n/a")
            for it in sweep["items"]]
    head = "".join(f"<th>{e(h)}</th>" for h in ("mode", "delta", "axis projection (re-encoded)"))
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    text = (f"<p>Text: {e(str(sweep['text']))} (delta column = alpha)</p>"
            if sweep.get("text") else "")
    return (f'<section id="{e(anchor)}"><h2>{e(title)}</h2>{text}'
            + audio_grid(ev, src, AudioEmbedder(base, page_dir, embed), caption,
                         f"{anchor}-grid")
            + f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>")


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


def run_notices(sources: list[tuple[Mapping[str, Any] | None, Path | None]]) -> list[str]:
    """The "notices" (a list of strings: caveats of the whole run, e.g. a synthetic corpus) of
    run.json and evaluate.json, in that order."""
    out: list[str] = []
    for data, path in sources:
        notices = (data or {}).get("notices")
        if notices is None:
            continue
        if not isinstance(notices, list) or not all(isinstance(n, str) for n in notices):
            raise ArtifactError(f"{path}: 'notices' must be a list of strings")
        out += notices
    return out


def _render(path: Path | None, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args), with a JSON file of the wrong shape reported against that file instead of
    surfacing as a KeyError deep in a renderer."""
    try:
        return fn(*args)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as err:
        raise ArtifactError(f"{path}: unexpected structure for the report "
                            f"({type(err).__name__}: {err})") from err


def render_page(inputs: RunInputs, page_dir: Path, embed_audio: bool = True,
                cap: int = MAX_EMBED_AUDIO_BYTES) -> str:
    """The complete HTML document for `inputs`; `page_dir` anchors relative audio links.
    Order: notices, verdict, bank, layer sweep, examples, evaluation details, study, run."""
    run, probe, ev, study = inputs.run, inputs.probe, inputs.evaluate, inputs.study
    notes = [*run_encoder_notes(run or {}), (ev or {}).get("encoder_note")]
    notes = [n for n in notes if isinstance(n, str)]
    notices = run_notices([(run, inputs.run_dir / RUN_FILE), (ev, inputs.evaluate_path)])
    examples = [(inputs.sweep, inputs.sweep_path), (inputs.tts, inputs.tts_path)]
    audio = []
    if ev is not None and inputs.evaluate_path is not None:
        src, base = str(inputs.evaluate_path), inputs.evaluate_path.parent
        # The verdict grid embeds its clips a second time; the cap counts them twice too.
        for shown in (ev, _render(inputs.evaluate_path, verdict_clips, ev)):
            audio += _render(inputs.evaluate_path, evaluate_audio, shown, base, src)
    for sweep, path in examples:
        if sweep is not None and path is not None:
            audio += _render(path, evaluate_audio, sweep_as_evaluation(sweep, str(path)),
                             path.parent, str(path))
    embed = decide_embedding(audio, embed_audio, cap)
    sections, nav = [], []
    if ev is not None and inputs.evaluate_path is not None:
        player = AudioEmbedder(inputs.evaluate_path.parent, page_dir, embed)
        sections.append(_render(inputs.evaluate_path, verdict_section, ev,
                                str(inputs.evaluate_path), player,
                                _render(inputs.evaluate_path, verdict_plot, ev)))
        nav.append(("verdict", "Verdict"))
    if inputs.bank is not None and inputs.bank_path is not None:
        sections.append(_render(inputs.bank_path, bank_section, inputs.bank,
                                str(inputs.bank_path)))
        nav.append(("bank", "Emotion bank"))
    if probe is not None and inputs.probe_path is not None:
        pdir = inputs.probe_path.parent
        plots = [(cap_, plot_uri(pdir / stem)) for stem, cap_ in PROBE_PLOTS]
        sections.append(_render(inputs.probe_path, probe_section, probe, plots))
        nav.append(("probe", "Layer sweep"))
    if inputs.sweep is not None and inputs.sweep_path is not None:
        sections.append(_render(inputs.sweep_path, sweep_section, inputs.sweep,
                                str(inputs.sweep_path), inputs.sweep_path.parent, page_dir,
                                embed))
        nav.append(("steer", "Steering example"))
    if inputs.tts is not None and inputs.tts_path is not None:
        sections.append(_render(inputs.tts_path, sweep_section, inputs.tts, str(inputs.tts_path),
                                inputs.tts_path.parent, page_dir, embed, "tts",
                                "Text to speech example", "Piper synthesis steered at each alpha"))
        nav.append(("tts", "TTS example"))
    if ev is not None and inputs.evaluate_path is not None:
        src = str(inputs.evaluate_path)
        base = inputs.evaluate_path.parent
        grid = _render(inputs.evaluate_path, audio_grid, ev, src,
                       AudioEmbedder(base, page_dir, embed))
        plot = _render(inputs.evaluate_path, delta_plot, ev.get("table") or [])
        sections.append(_render(inputs.evaluate_path, evaluate_section, ev, src, grid, plot))
        nav.append(("evaluate", "Evaluation details"))
        nav.append(("audio-grid", "All audio"))
    if study is not None and inputs.study_path is not None:
        sdir = inputs.study_path.parent
        plots = [(str(p), plot_uri(inside(sdir, p, f"{inputs.study_path}: plots")
                                   .with_suffix("")))
                 for p in study.get("plots") or []]
        sections.append(_render(inputs.study_path, study_section, study, plots))
        nav.append(("study", "Listening study"))
    if run is not None:
        sections.append(_render(inputs.run_dir / RUN_FILE, run_section, run))
        nav.append(("run", "Recipe and provenance"))
    title = f"emosteer report: {inputs.run_dir.resolve().name}"
    return page(title, notices_block(notes, notices), nav, sections)


def build_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                 embed_audio: bool = True) -> Path:
    """Write the report of `run_dir` to `out` (default RUN_DIR/index.html) atomically."""
    inputs = find_inputs(run_dir)
    out = Path(out) if out is not None else inputs.run_dir / PAGE_FILE
    text = render_page(inputs, out.parent, embed_audio)
    atomic_write_text(out, text)
    log.info("report: wrote %s (%.1f MiB)", out, len(text.encode("utf-8")) / 2**20)
    return out
