"""`emosteer report`: one self-contained HTML page for a run directory.

    emosteer report RUN                       # writes RUN/index.html
    emosteer report RUN --out page.html -f    # elsewhere, overwriting
    emosteer report RUN --no-embed-audio      # audio players link to RUN's files

RUN is a pipeline run (run.json, probe/, evaluate/) or the output directory of a single
`emosteer probe` or `emosteer evaluate`; the page is rebuilt from their JSON every time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emosteer.cli._common import add_force


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="self-contained HTML report (tables, plots, audio grid) of a run",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="run directory (or a probe/evaluate output)")
    p.add_argument("--out", type=Path, default=None,
                   help="output HTML file (default RUN/index.html)")
    p.add_argument("--no-embed-audio", dest="embed_audio", action="store_false",
                   help="link the audio files instead of embedding them in the page")
    add_force(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from emosteer.artifacts import refuse_overwrite
    from emosteer.report.build import PAGE_FILE, build_report

    out = args.out if args.out is not None else args.run_dir / PAGE_FILE
    refuse_overwrite(out, args.force)
    path = build_report(args.run_dir, out, embed_audio=args.embed_audio)
    print(f"wrote {path}")
    return 0
