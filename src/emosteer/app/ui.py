"""The Gradio page of `emosteer app`: wiring only; every decision is made in `core`.

Each handler turns an EmosteerError into a visible message (a toast and the status box) and
returns no audio, so a bad upload never shows a traceback. The page only sends axis *names*
(the dropdown shows each axis's label and sends its name); SteeringApp maps them to directories.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from emosteer.app.core import (
    AppConfig,
    SteeringApp,
    alpha_label,
    delta_label,
    mode_help,
    user_message,
)
from emosteer.errors import ConfigError, EmosteerError
from emosteer.steering.steer import MODES

log = logging.getLogger(__name__)

REFERENCE_CHOICE = "(built from references)"  # a dropdown label, never an axis-table name
DELTA_STEP = 0.05  # slider resolution: finer than any audible difference along an axis
DEFAULT_DELTA = 0.5
PCM16_MAX = 32767  # full scale of signed 16-bit PCM
TITLE = "emosteer: steer speech along an emotion axis"


def _fail(e: Exception) -> str:
    import gradio as gr

    msg = user_message(e)
    if not isinstance(e, EmosteerError):
        log.exception("app request failed")
    gr.Warning(msg)
    return f"rejected: {msg}"


def _pcm16(y: np.ndarray) -> np.ndarray:
    """Gradio writes int16 WAV; converting here keeps it from guessing (and warning)."""
    return (np.clip(y, -1.0, 1.0) * PCM16_MAX).astype(np.int16)


def _pick(name: str, reference):
    """(saved axis name, reference axis or None) for a dropdown value."""
    if name == REFERENCE_CHOICE:
        if reference is None:
            raise ConfigError("no reference axis yet: build one from two clips first")
        return reference.base, reference
    return name, None


def _ends(app: SteeringApp, name: str, reference):
    """The chosen axis's (source, target) for a slider label; None while a reference axis is
    chosen but not built yet."""
    if name == REFERENCE_CHOICE:
        return app.ends(None, reference)
    return app.ends(name)


def build_ui(app: SteeringApp):
    """The Blocks page for `app` (not launched)."""
    import gradio as gr

    names = app.names
    choices = app.choices() + [(REFERENCE_CHOICE, REFERENCE_CHOICE)]
    default_mode = "latent" if app.axes[names[0]].mapper_dir else "prosody"

    def steer_clip(path, name, delta, mode, reference):
        try:
            wav = app.load_clip(path)
            saved, ref = _pick(name, reference)
            y, sr, readout, judges = app.steer(wav, saved, delta, mode, ref)
        except Exception as e:  # noqa: BLE001 - every failure becomes a message on the page
            return None, _fail(e), "", app.footer()
        return (sr, _pcm16(y)), readout, judges, app.footer()

    def build_reference(base, source_clip, target_clip):
        try:
            ref = app.build_reference_axis(base, source_clip, target_clip)
        except Exception as e:  # noqa: BLE001 - every failure becomes a message on the page
            return None, _fail(e)
        note = "" if ref.prosody is not None else " (no prosody delta: no voiced speech)"
        return ref, (f"reference axis built on {base}'s models; choose {REFERENCE_CHOICE!r} "
                     f"in the axis list{note}")

    def speak(text, name, alpha, mode, reference):
        try:
            saved, ref = _pick(name, reference)
            y, sr, readout, judges = app.synthesize(text, saved, alpha, mode, ref)
        except Exception as e:  # noqa: BLE001 - every failure becomes a message on the page
            return None, _fail(e), "", app.footer()
        return (sr, _pcm16(y)), readout, judges, app.footer()

    def delta_slider(name, reference):
        return gr.Slider(label=delta_label(_ends(app, name, reference)))

    def alpha_slider(name, reference):
        return gr.Slider(label=alpha_label(_ends(app, name, reference)))

    def axis_controls(prefix: str):
        axis = gr.Dropdown(choices, value=names[0], label="Axis", elem_id=f"{prefix}axis")
        mode = gr.Radio(list(MODES), value=default_mode, label="Mode", elem_id=f"{prefix}mode")
        help_line = gr.Markdown(mode_help(default_mode), elem_id=f"{prefix}mode-help")
        mode.change(mode_help, mode, help_line)
        return axis, mode

    def output_row(label: str, prefix: str):
        with gr.Row():
            audio = gr.Audio(label=label, type="numpy", interactive=False,
                             elem_id=f"{prefix}audio")
            judges = gr.Textbox(label="Judges (output)", interactive=False, lines=3,
                                elem_id=f"{prefix}judges")
        return audio, judges

    with gr.Blocks(title=TITLE) as demo:
        reference = gr.State(None)
        gr.Markdown(f"## {TITLE}\nUploads: at most {app.config.max_upload_mb:g} MB and "
                    f"{app.config.max_seconds:g} s. delta = 1 moves a clip by the axis's "
                    "calibrated source-to-target shift.")
        with gr.Tab("Steer a clip"):
            clip = gr.Audio(sources=["upload", "microphone"], type="filepath",
                            label="Input clip", elem_id="input-audio")
            axis, mode = axis_controls("")
            delta = gr.Slider(-1.0, 1.0, value=DEFAULT_DELTA, step=DELTA_STEP,
                              label=delta_label(app.ends(names[0])), elem_id="delta")
            go = gr.Button("Steer", variant="primary", elem_id="steer-btn")
            out, judges = output_row("Steered", "output-")
            status = gr.Textbox(label="Status", interactive=False, elem_id="status")
            with gr.Accordion("Build an axis from two reference clips", open=False):
                base = gr.Dropdown(app.choices(), value=names[0], label="Run it on the models of",
                                   elem_id="ref-base")
                ref_src = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                   label="Source reference (e.g. calm)", elem_id="ref-source")
                ref_tgt = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                   label="Target reference (e.g. angry)", elem_id="ref-target")
                build = gr.Button("Build axis", elem_id="ref-build")
                ref_status = gr.Textbox(label="Reference axis", interactive=False,
                                        elem_id="ref-status")
        with gr.Tab("Text to speech"):
            text = gr.Textbox(label="Text", lines=3, elem_id="tts-text")
            t_axis, t_mode = axis_controls("tts-")
            alpha = gr.Slider(-1.0, 1.0, value=DEFAULT_DELTA, step=DELTA_STEP,
                              label=alpha_label(app.ends(names[0])), elem_id="tts-alpha")
            say = gr.Button("Speak", variant="primary", elem_id="tts-btn")
            t_out, t_judges = output_row("Speech", "tts-")
            t_status = gr.Textbox(label="Status", interactive=False, elem_id="tts-status")
        footer = gr.Markdown(app.footer(), elem_id="footer")
        go.click(steer_clip, [clip, axis, delta, mode, reference], [out, status, judges, footer])
        say.click(speak, [text, t_axis, alpha, t_mode, reference],
                  [t_out, t_status, t_judges, footer])
        axis.change(delta_slider, [axis, reference], delta)
        t_axis.change(alpha_slider, [t_axis, reference], alpha)
        # A reference axis chosen before it was built gets its ends once it exists.
        build.click(build_reference, [base, ref_src, ref_tgt], [reference, ref_status]).then(
            delta_slider, [axis, reference], delta).then(alpha_slider, [t_axis, reference], alpha)
        # A later visitor sees the vocoder an earlier request loaded.
        demo.load(app.footer, None, footer)
    # Concurrent users wait in a bounded queue; models are shared through `app`.
    demo.queue(default_concurrency_limit=app.config.concurrency,
               max_size=app.config.queue_size)
    return demo


def upload_roots() -> tuple[Path, ...]:
    """Where Gradio stores uploads and recordings: the only files a request may name."""
    from gradio.utils import get_upload_folder

    return (Path(get_upload_folder()),)


def launch(app: SteeringApp, block: bool = True):
    """Serve the page on config.host:config.port; returns (demo, url)."""
    demo = build_ui(app)
    cfg: AppConfig = app.config
    _, url, _ = demo.launch(server_name=cfg.host, server_port=cfg.port,
                            max_file_size=int(cfg.max_upload_mb * 1024 * 1024),
                            prevent_thread_lock=not block, share=False, quiet=not block,
                            footer_links=[])
    return demo, url
