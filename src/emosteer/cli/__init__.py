"""`emosteer` command line. Thin: each submodule of this package parses one command's flags,
validates them and calls library functions. Submodules are discovered automatically: a module
`emosteer/cli/NAME.py` (not starting with `_`) that defines `register(subparsers)` adds its
commands, so commands never collide in one shared file."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from emosteer import __version__
from emosteer.errors import EmosteerError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emosteer",
        description="Find emotion in the latent space of SSL speech models and steer speech along it.",
    )
    parser.add_argument("--version", action="version", version=f"emosteer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except EmosteerError as e:
        print(f"emosteer {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"emosteer {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
