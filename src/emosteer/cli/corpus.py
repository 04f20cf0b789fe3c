"""`emosteer corpus summary|download`: inspect a corpus folder, fetch a public corpus."""

from __future__ import annotations

import argparse
import json
import sys

from emosteer.cli._common import add_force


def _summary(args: argparse.Namespace) -> int:
    from emosteer.corpora.formats import count_table, format_table, scan_corpus

    utts = scan_corpus(args.root, args.format)
    table = count_table(utts)
    if args.json:
        table = dict(table, root=str(args.root), format=args.format)
        print(json.dumps(table, indent=2))
    else:
        print(f"{args.root} ({args.format}): {table['total']} utterances, "
              f"{len(table['speakers'])} speakers, {len(table['emotions'])} emotions")
        print(format_table(table))
    return 0


def _download(args: argparse.Namespace) -> int:
    from emosteer.corpora.download import SOURCES, download_corpus

    source = SOURCES[args.name]
    print(f"{source.name}: {source.description}; licence {source.licence}", file=sys.stderr)
    if not (source.md5 or source.sha256):
        print(f"{source.name}: no published checksum; integrity is checked by length only",
              file=sys.stderr)
    path = download_corpus(args.name, args.out, extract=not args.no_extract, force=args.force)
    print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from emosteer.corpora.download import SOURCES
    from emosteer.corpora.formats import FORMATS

    p = subparsers.add_parser("corpus", help="inspect or download an emotional speech corpus")
    sub = p.add_subparsers(dest="corpus_command", metavar="SUBCOMMAND", required=True)

    s = sub.add_parser("summary", help="speaker x emotion counts of a corpus folder or manifest")
    s.add_argument("root", help="corpus folder (or CSV manifest / folder with manifest.csv for csv)")
    s.add_argument("--format", required=True, choices=FORMATS, help="file naming convention")
    s.add_argument("--json", action="store_true", help="print the table as JSON")
    s.set_defaults(func=_summary)

    d = sub.add_parser("download", help="download a corpus with a public URL",
                       description="Downloadable: " + "; ".join(
                           f"{k}: {v.description}" for k, v in sorted(SOURCES.items())))
    d.add_argument("name", choices=sorted(SOURCES), help="corpus to download")
    d.add_argument("--out", required=True, help="target folder (partial downloads resume here)")
    d.add_argument("--no-extract", action="store_true", help="keep the archive packed")
    add_force(d)
    d.set_defaults(func=_download)
