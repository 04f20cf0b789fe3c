"""`emosteer prosody`: measure acoustic correlates, learn prosody deltas, apply them with WORLD.

    emosteer prosody measure FILES... [--json]
    emosteer prosody learn CORPUS --format ravdess --source calm --target angry --out DELTA.json \
        [--speakers ravdess_01,ravdess_02] [--components f0,range,contour] [--cache-dir DIR]
    emosteer prosody apply IN.wav --delta-file DELTA.json --scale 1 --out OUT.wav [--preserve-level] \
        [--without mcep,pauses]

`measure` reports and skips files it cannot read, and exits 1 if any was skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

from emosteer.artifacts import provenance, refuse_overwrite, write_json
from emosteer.audio import clipping_summary
from emosteer.cli._common import add_force, parse_list
from emosteer.errors import AudioError, ConfigError, CorpusError

log = logging.getLogger(__name__)

def register(subparsers) -> None:
    from emosteer.corpora.formats import FORMATS

    p = subparsers.add_parser(
        "prosody", help="measure, learn and apply prosody (F0, contour, effort, envelope, level, rate)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="prosody_command", metavar="ACTION", required=True)

    m = sub.add_parser("measure", help="acoustic correlates of audio files")
    m.add_argument("files", nargs="+", type=Path, help="audio files")
    m.add_argument("--json", action="store_true", help="print one JSON object per file")
    m.set_defaults(func=run_measure)

    learn = sub.add_parser("learn", help="learn a speaker-normalised prosody delta")
    learn.add_argument("corpus", type=Path, help="corpus root directory (or csv manifest)")
    learn.add_argument("--format", required=True, choices=FORMATS, help="corpus layout")
    learn.add_argument("--source", required=True, help="source emotion, e.g. calm")
    learn.add_argument("--target", required=True, help="target emotion, e.g. angry")
    learn.add_argument("--speakers", default=None,
                       help="speakers to learn from, e.g. 'ravdess_01,02' or '01-06' (default: all)")
    learn.add_argument("--components", default="all",
                       help="comma list of what to learn, of: f0, range, tilt, energy, rate, "
                            "contour, dynamics, mcep, aperiodicity, pauses (default: all)")
    learn.add_argument("--cache-dir", type=Path, default=None,
                       help="keep each clip's analysis here, so a rerun skips it")
    learn.add_argument("--out", required=True, type=Path, help="output DELTA.json")
    add_force(learn)
    learn.set_defaults(func=run_learn)

    a = sub.add_parser("apply", help="impose a prosody delta on a recording (WORLD)")
    a.add_argument("input", type=Path, help="input audio file")
    a.add_argument("--delta-file", required=True, type=Path, help="DELTA.json from `learn`")
    a.add_argument("--scale", type=float, default=1.0,
                   help="multiple of the delta: 1 = target, 0 = resynthesis, -1 = opposite")
    a.add_argument("--preserve-level", action="store_true",
                   help="keep the input's loudness instead of applying the delta's level change")
    a.add_argument("--without", default=None,
                   help="comma list of the delta's components to leave out, e.g. 'mcep,pauses'")
    a.add_argument("--out", required=True, type=Path, help="output audio (.wav/.flac)")
    add_force(a)
    a.set_defaults(func=run_apply)


def _fmt(v: float) -> str:
    return "nan" if not math.isfinite(v) else f"{v:.2f}"


def run_measure(args) -> int:
    from tqdm import tqdm

    from emosteer.audio import SAMPLE_RATE, load_audio
    from emosteer.prosody.correlates import CORRELATE_KEYS, acoustic_correlates

    failed = 0
    rows = []
    for path in tqdm(args.files, desc="measure", unit="file", disable=len(args.files) < 2):
        try:
            rows.append((path, acoustic_correlates(load_audio(path, SAMPLE_RATE), SAMPLE_RATE,
                                                   source=str(path))))
        except AudioError as e:
            tqdm.write(f"emosteer prosody measure: skipping: {e}", file=sys.stderr)
            failed += 1
    if args.json:
        for path, c in rows:
            clean = {k: (v if math.isfinite(v) else None) for k, v in c.items()}
            print(json.dumps({"path": str(path), **clean}))
    elif rows:
        print("\t".join(("path",) + CORRELATE_KEYS))
        for path, c in rows:
            print("\t".join([str(path)] + [_fmt(c[k]) for k in CORRELATE_KEYS]))
    return 1 if failed else 0


@clipping_summary()  # one line for all clipping files, not one per file
def run_learn(args) -> int:
    from emosteer.corpora.formats import match_speakers, normalize_emotion, scan_corpus
    from emosteer.prosody.world import learn_prosody_delta, parse_components

    source, target = normalize_emotion(args.source), normalize_emotion(args.target)
    if source == target:
        raise ConfigError(f"--source and --target are both {source!r}")
    try:
        components = parse_components(args.components)
    except ConfigError as e:
        raise ConfigError(f"--components {args.components}: {e}") from e
    refuse_overwrite(args.out, args.force)
    utts = [u for u in scan_corpus(args.corpus, args.format) if u.emotion in (source, target)]
    if args.speakers:
        wanted = set(match_speakers(parse_list(args.speakers), {u.speaker for u in utts}))
        utts = [u for u in utts if u.speaker in wanted]
    if not utts:
        raise CorpusError(f"{args.corpus}: no {source!r} or {target!r} clips")
    delta = learn_prosody_delta([u.path for u in utts], [u.speaker for u in utts],
                                [u.emotion for u in utts], source, target, progress=True,
                                components=components, cache_dir=args.cache_dir)
    delta.save(args.out)
    write_json(args.out.with_suffix(".provenance.json"),
               provenance(corpus=str(args.corpus), format=args.format))
    log.info("%s (%d speakers) -> %s", delta.summary(), len(delta.speakers), args.out)
    return 0


def run_apply(args) -> int:
    from emosteer.audio import audio_info, load_audio, save_audio
    from emosteer.prosody.world import ProsodyDelta, apply_prosody, parse_components

    if not math.isfinite(args.scale):
        raise ConfigError(f"--scale {args.scale}: expected a finite number")
    if args.out.suffix.lower() not in (".wav", ".flac", ".ogg"):
        raise ConfigError(f"--out {args.out}: unsupported output format (use .wav or .flac)")
    refuse_overwrite(args.out, args.force)
    delta = ProsodyDelta.load(args.delta_file)
    if args.without:
        try:
            delta = delta.without(*parse_components(args.without))
        except ConfigError as e:
            raise ConfigError(f"--without {args.without}: {e}") from e
    sr, _, _ = audio_info(args.input)  # WORLD works at any rate: keep the input's
    wav = load_audio(args.input, sr)
    out = apply_prosody(wav, sr, delta, args.scale, preserve_level=args.preserve_level)
    save_audio(args.out, out, sr)
    log.info("%s -> %s (scale %g)", args.input, args.out, args.scale)
    return 0
