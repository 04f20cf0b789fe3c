"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse

from emosteer.errors import ConfigError
from emosteer.precision import BF16_MODES, check_mode, default_mode, resolve_bf16


def parse_layers(text: str) -> tuple[int, ...]:
    """'5' -> (5,); '0-12' -> (0..12); '3,5,7-9' -> (3,5,7,8,9)."""
    layers: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                layers.extend(range(lo, hi + 1))
            else:
                layers.append(int(part))
    except ValueError as e:
        raise ConfigError(f"--layers {text!r}: expected e.g. '5', '0-12' or '3,5,7-9'") from e
    if not layers or min(layers) < 0:
        raise ConfigError(f"--layers {text!r}: need at least one non-negative layer")
    return tuple(sorted(set(layers)))


def parse_floats(text: str, flag: str = "--deltas") -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as e:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated numbers") from e
    if not values:
        raise ConfigError(f"{flag} {text!r}: expected at least one number")
    return values


def parse_list(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return tuple(x.strip() for x in text.split(",") if x.strip())


def add_force(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")


DEFAULT_DEVICE = "cpu"


class _AutoDefault(str):
    """The --bf16 default: argparse converts a str default through `type` once parsing has
    ended, and only while it is still the default, i.e. neither --bf16 nor --device was given
    (both resolve it themselves): then the device is DEFAULT_DEVICE."""


def _bf16_type(text: str):
    if isinstance(text, _AutoDefault):
        return resolve_bf16(default_mode(), DEFAULT_DEVICE)
    try:
        return check_mode(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


class _DeviceAction(argparse.Action):
    """--device, and args.bf16 resolved again for it (a --bf16 before --device saw the default)."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.device = values
        namespace.bf16 = resolve_bf16(namespace.bf16_mode, values, notify=False)


class _Bf16Action(argparse.Action):
    """--bf16 [auto|on|off]: args.bf16_mode keeps the mode, args.bf16 becomes the bool that the
    library takes, for the device given so far (a later --device resolves it again). 'on' that
    falls back to fp32 says so once the command runs, when the device is final."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.bf16_mode = values
        namespace.bf16 = resolve_bf16(values, namespace.device, notify=False)
        func = getattr(namespace, "func", None)
        if values == "on" and func is not None and not isinstance(func, _NoticeFirst):
            namespace.func = _NoticeFirst(func)


class _NoticeFirst:
    """Wraps a command's `run`: logs resolve_bf16's fp32 notice for the final --device first."""

    def __init__(self, func):
        self.func = func

    def __call__(self, args):
        resolve_bf16(args.bf16_mode, args.device)
        return self.func(args)


def add_device(p: argparse.ArgumentParser) -> None:
    """--device and --bf16. args.bf16 is a bool: bf16 only where the device runs it natively
    (emosteer.precision); args.bf16_mode is what was asked for."""
    p.add_argument("--device", default=DEFAULT_DEVICE, action=_DeviceAction,
                   help=f"torch device: cpu, cuda, cuda:1 (default {DEFAULT_DEVICE})")
    p.add_argument("--bf16", nargs="?", const="on", default=_AutoDefault("auto"),
                   type=_bf16_type, choices=BF16_MODES, action=_Bf16Action,
                   help="bf16 autocast for the models: auto (default) where the device runs bf16 "
                        "natively (CPUs with AVX512_BF16 or AMX, CUDA compute capability 8.0+), "
                        "else fp32, which is faster there; on: the same, with a notice when it "
                        "falls back; off: fp32. A bare --bf16 means on (give the value when a "
                        "positional argument follows). EMOSTEER_BF16 sets the default")
    p.set_defaults(bf16_mode=default_mode())


class LazyChoices:
    """argparse `choices` read from a library constant on first use, so that building the
    parser (every `emosteer` call) does not import a heavy owner module. Give the argument a
    `metavar`; `%(choices)s` in its help lists the values."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def _values(self) -> tuple:
        import importlib

        return tuple(getattr(importlib.import_module(self.module), self.name))

    def __iter__(self):
        return iter(self._values())

    def __contains__(self, value) -> bool:
        return value in self._values()


POOLING_CHOICES = LazyChoices("emosteer.embeddings.store", "POOLINGS")
