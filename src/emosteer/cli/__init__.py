"""`emosteer` command line. Thin: each submodule of this package parses one command's flags,
validates them and calls library functions. Submodules are discovered automatically: a module
`emosteer/cli/NAME.py` (not starting with `_`) that defines `register(subparsers)` adds its
commands, so commands never collide in one shared file."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import re
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


# A value like "-1,-0.5,0" starts with "-", so argparse would read it as an option (and it only
# takes a lone "-1" or "-.5" as a number, not "-1e-3", "-1." or "-inf"). Such a number, or a
# list of them, is glued to the flag before it ("--deltas=-1,...") so "--delta -1e-3" and
# "--deltas -1,0,1" work too; "-inf" and "-nan" reach the flag's own check, which says why
# they are refused.
_NUMBER = r"(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|inf(inity)?|nan"
_NUMBER_LIST = re.compile(rf"^-({_NUMBER})(,\s*[-+]?({_NUMBER}))*,?$", re.IGNORECASE)


def _glue_number_lists(argv: list[str]) -> list[str]:
    out: list[str] = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and _NUMBER_LIST.match(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_glue_number_lists(list(sys.argv[1:] if argv is None else argv)))
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
    except BrokenPipeError:  # `emosteer ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"emosteer {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
