r"""`emosteer tts`: text to speech with emotion control (synthesis steered along a calm->angry axis).

    emosteer tts --text "Kids are talking by the door." --ref-calm calm.wav \
        --ref-angry angry.wav --alpha 0.3 --mapper RUN/mapper --out out.wav

The text is spoken by a TTS backend (piper by default, offline), then steered like any
recording (`emosteer steer`) along the calm->angry direction of the two references (or a
corpus --axis). alpha -1 is as calm as the calm reference, +1 as angry as the angry one, 0 the
plain synthesis, which is taken to sit halfway between them (see emosteer.tts.references). Writes
OUT and OUT's .json sidecar with every setting and the measured F0 and level change.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emosteer.cli._common import add_force


def add_tts_arguments(p: argparse.ArgumentParser, steering_flags: bool = True) -> None:
    """The `emosteer tts` flags (synthesis and emotion control).

    With `steering_flags=False` the flags `emosteer steer` also defines (--axis, --model,
    --mapper, --vocoder, --mode) are left out, for a parser that adds them itself."""
    from emosteer.tts.backends import (
        BACKENDS,
        DEFAULT_BACKEND,
        ESPEAK_PITCH,
        PIPER_NOISE_SCALE,
        SENTENCE_PAUSE_S,
    )

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="text to speak")
    src.add_argument("--text-file", help="UTF-8 text file (split into sentences)")
    p.add_argument("--out", required=True, help="output audio (.wav/.flac/.ogg)")
    p.add_argument("--ref-calm", "--ref_calm", dest="ref_calm", help="calm reference clip")
    p.add_argument("--ref-angry", "--ref_angry", dest="ref_angry", help="angry reference clip")
    p.add_argument("--alpha", type=float, default=0.0,
                   help="-1 as calm as the calm reference .. +1 as angry as the angry one; "
                        "0 = the plain synthesis")
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND)
    p.add_argument("--voice", help="piper .onnx path (default: bundled en_US-joe-medium) or "
                   "espeak-ng voice name (default: en-us)")
    p.add_argument("--coqui-model", help="XTTS-v2 model directory (for --backend coqui)")
    p.add_argument("--language", default="en", help="XTTS language code (default en)")
    p.add_argument("--length-scale", type=float, default=1.0, help=">1 speaks slower")
    p.add_argument("--noise-scale", type=float, default=PIPER_NOISE_SCALE, help="piper noise")
    p.add_argument("--pitch", type=int, default=ESPEAK_PITCH, help="espeak-ng pitch 0..99")
    p.add_argument("--pause", type=float, default=SENTENCE_PAUSE_S, help="s between sentences")
    p.add_argument("--layer", type=int, help="encoder layer (default: the mapper's)")
    if not steering_flags:
        return
    # Same spellings as `emosteer steer`, whose module owns their defaults and validation.
    p.add_argument("--axis", help="saved corpus axis directory (instead of references)")
    p.add_argument("--model", help="SSL encoder: hub id or directory")
    p.add_argument("--mapper", help="trained mapper directory")
    p.add_argument("--vocoder", help="auto (default), hifigan-universal, griffinlim or a "
                                     "vocoder directory")
    p.add_argument("--mode", choices=("latent", "prosody", "both"), default="latent")


def register(subparsers) -> None:
    from emosteer.cli.steer import add_steering_arguments
    from emosteer.tts.references import ADAPT_MAX_TRAIN, AdaptConfig

    d = AdaptConfig()
    p = subparsers.add_parser(
        "tts", help="text to speech with emotion control (alpha -1 calm .. +1 angry)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tts_arguments(p, steering_flags=False)  # --axis/--model/... come from the steer flags
    add_steering_arguments(p)
    p.add_argument("--adapt-mapper", action="store_true",
                   help="fine-tune the mapper on unlabelled synthesis from this voice first "
                        "(cached; the sidecar records round-trip MCD before and after)")
    p.add_argument("--adapt-sentences", type=int, default=d.n_sentences,
                   help=f"sentences synthesised for adaptation, 1..{ADAPT_MAX_TRAIN} "
                        f"(default {d.n_sentences})")
    p.add_argument("--adapt-epochs", type=int, default=d.epochs,
                   help=f"adaptation epochs (default {d.epochs})")
    p.add_argument("--adapt-minutes", type=float, default=d.minutes,
                   help=f"adaptation wall-time budget (default {d.minutes:g})")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="where adapted mappers are cached (default ~/.cache/emosteer)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_force(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from emosteer.tts.backends import read_text
    from emosteer.tts.references import AdaptConfig
    from emosteer.tts.speak import SpeakConfig, format_change, speak

    text = read_text(args.text, args.text_file)
    refs = args.ref_calm is not None or args.ref_angry is not None
    run_dir = Path(args.run)
    axis = args.axis or (None if refs or args.bank else str(run_dir / "axis"))
    adapt = (AdaptConfig(n_sentences=args.adapt_sentences, epochs=args.adapt_epochs,
                         minutes=args.adapt_minutes) if args.adapt_mapper else None)
    cfg = SpeakConfig(
        alpha=args.alpha, ref_calm=args.ref_calm, ref_angry=args.ref_angry, axis=axis,
        bank=args.bank, emotion=args.emotion,
        mapper=args.mapper or str(run_dir / "mapper"), prosody=args.prosody,
        vocoder=args.vocoder, model=args.model, layer=args.layer, mode=args.mode,
        frames=args.frames, decode=args.decode, match_loudness=args.match_loudness, sample_rate=args.sr,
        backend=args.backend, voice=args.coqui_model if args.backend == "coqui" else args.voice,
        language=args.language, length_scale=args.length_scale, noise_scale=args.noise_scale,
        pitch=args.pitch, pause_s=args.pause, adapt=adapt,
        cache_dir=str(args.cache_dir) if args.cache_dir else None, device=args.device,
        bf16=args.bf16)
    r = speak(text, cfg, args.out, force=args.force, progress=not args.no_progress)
    m = r.measured
    print(f"{r.out}: {m['duration_s']:.2f} s, alpha {args.alpha:+.2f} (delta {r.config.delta:+.2f}),"
          f" median F0 {format_change(m['median_f0_change_st'], 'st')}, level "
          f"{format_change(m['level_change_db'], 'dB')} vs the neutral synthesis")
    return 0
