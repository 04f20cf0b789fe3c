"""`emosteer report`: one self-contained HTML page for a run directory.

    emosteer report RUN                       # writes RUN/index.html
    emosteer report RUN --out page.html -f    # elsewhere, overwriting
    emosteer report RUN --no-embed-audio      # audio players link to RUN's files
    emosteer report EVAL_DIR --markdown       # the judged steering table, as in the README

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
    p.add_argument("--markdown", action="store_true",
                   help="print the judged steering table of RUN's evaluate.json as Markdown")
    add_force(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from emosteer.artifacts import refuse_overwrite
    from emosteer.report.build import PAGE_FILE, build_report

    if args.markdown:
        from emosteer.artifacts import read_json
        from emosteer.errors import ArtifactError
        from emosteer.report.markdown import steering_table

        found = [p for p in (args.run_dir / "evaluate.json", args.run_dir / "evaluate" /
                             "evaluate.json") if p.is_file()]
        if not found:
            raise ArtifactError(f"{args.run_dir}: no evaluate.json (nor evaluate/evaluate.json)")
        print(steering_table(read_json(found[0])), end="")
        return 0
    out = args.out if args.out is not None else args.run_dir / PAGE_FILE
    refuse_overwrite(out, args.force)
    path = build_report(args.run_dir, out, embed_audio=args.embed_audio)
    print(f"wrote {path}")
    return 0
