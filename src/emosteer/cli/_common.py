"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse

from emosteer.errors import ConfigError


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


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (default cpu)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the models")


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
