"""Atomic writes and self-describing configs.

Every artifact is a directory or file written atomically (temp file + fsync + rename) so that a
kill never leaves a half-written file behind, and every artifact has a frozen-dataclass config
saved as JSON next to it. Arrays go to safetensors, never pickle.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import tempfile
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from emosteer import __version__
from emosteer.errors import ArtifactError, EmosteerError

T = TypeVar("T")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process's umask, read without changing it where the kernel reports it (Linux 4.7+):
    setting it to read it back would, for a moment, apply umask 0 to files other threads
    create."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically. On failure (full disk, say) the old file is intact.
    The file gets the mode a plain open() would give it (0666 less the umask), not mkstemp's
    private 0600."""
    path = Path(path)
    try:  # a full disk or a read-only directory can already fail here
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise ArtifactError(f"{path}: could not write ({e.strerror or e})") from e
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ArtifactError(f"{path}: could not write ({e.strerror or e})") from e
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def jsonable(obj: Any) -> Any:
    """`obj` as plain JSON types: dataclasses and mappings to dicts, tuples to lists, Paths to
    str, numpy scalars/arrays to Python numbers/lists, NaN and infinities to None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write `obj` (dataclasses, numpy scalars and Paths allowed) as pretty JSON."""
    return atomic_write_text(path, json.dumps(jsonable(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ArtifactError(f"{path}: file not found") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: could not read ({e})") from e
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from e


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass in a field type `X` or `X | None` (Optional[X]), else None."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) == 1 and dataclasses.is_dataclass(args[0]) and isinstance(args[0], type):
        return args[0]
    return None


def _scalar_kinds(tp: Any) -> set[type]:
    """The plain scalar types (int, float, bool, str) a field annotation allows, beside None."""
    if tp in (int, float, bool, str):
        return {tp}
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return set().union(*(_scalar_kinds(a) for a in args)) if args else set()
    return set()


def _check_number(source: str, where: str, hint: Any, v: Any) -> None:
    """Numbers in a loaded artifact must be finite, and whole where the field is an int: JSON
    (and Python's json module) let NaN, Infinity and 1e999 through, and every later use of such
    a number fails far from the file it came from, or not at all."""
    if isinstance(v, (list, tuple)):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        for i, x in enumerate(v):
            _check_number(source, f"{where}[{i}]", args[0] if len(args) == 1 else None, x)
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return
    if not np.isfinite(v):
        raise ArtifactError(f"{source}: {where} is {v}, expected a finite number")
    kinds = _scalar_kinds(hint)
    if kinds and int in kinds and not kinds & {float} and isinstance(v, float) \
            and not v.is_integer():
        raise ArtifactError(f"{source}: {where} is {v}, expected a whole number")


def config_from_dict(cls: type[T], data: Mapping[str, Any], source: str = "config") -> T:
    """Build frozen dataclass `cls` from a dict, rejecting unknown keys (no silent drift).
    Fields typed as a dataclass (or an optional one) are built from nested dicts the same way.
    Every number must be finite (and whole for an int field); what the dataclass itself rejects
    is an ArtifactError naming `source`."""
    if not isinstance(data, Mapping):
        raise ArtifactError(f"{source}: expected an object for {cls.__name__}, got "
                            f"{type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ArtifactError(f"{source}: unknown keys for {cls.__name__}: {sorted(unknown)}")
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an unresolvable annotation: fall back to the raw strings
        hints = {}
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            v = data[f.name]
            sub = _dataclass_of(hints.get(f.name))
            if sub is not None and isinstance(v, Mapping):
                v = config_from_dict(sub, v, source=f"{source}: {f.name}")
            else:
                _check_number(source, f"{cls.__name__}.{f.name}", hints.get(f.name), v)
                # JSON has no tuples; frozen configs use tuples for sequences.
                if isinstance(v, list) and "tuple" in str(hints.get(f.name, f.type)):
                    v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
            kwargs[f.name] = v
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"{source}: invalid {cls.__name__}: {e}") from e
    except ArtifactError:
        raise
    except EmosteerError as e:  # a config's own check (ConfigError) does not know the file
        raise ArtifactError(f"{source}: {e}") from e


def nest_flat(data: Mapping[str, Any], name: str, moves: Mapping[str, str],
              extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Migrate a flat (0.1.0) config dict: move keys `moves` (old -> new) into a nested dict
    under `name`, plus `extra` defaults; a dict that already has `name` is returned as is."""
    data = dict(data)
    if name in data or not any(k in data for k in moves):
        return data
    nested = dict(extra or {})
    for old, new in moves.items():
        if old in data:
            nested[new] = data.pop(old)
    data[name] = nested
    return data


def save_config(cfg: Any, path: str | os.PathLike) -> Path:
    return write_json(path, cfg)


def load_config(cls: type[T], path: str | os.PathLike) -> T:
    data = read_json(path)
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    migrate = getattr(cls, "migrate", None)  # a config that changed layout reads the old one
    if migrate is not None:
        data = migrate(data)
    return config_from_dict(cls, data, source=str(path))


def provenance(**extra: Any) -> dict[str, Any]:
    """What produced an artifact: package and library versions, command line, host python."""
    import torch  # local: keep `import emosteer` light

    info = {
        "emosteer_version": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "argv": list(sys.argv),
    }
    info.update(extra)
    return info


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its `__metadata__` keys in sorted order.

    safetensors serialises metadata from a hash map whose order changes from process to process,
    so two identical saves can differ in their header bytes; sorting makes them bit-identical.
    The header keeps its length (same keys and values), so tensor offsets stay valid."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    if not isinstance(header.get("__metadata__"), dict):
        return data
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) > n:  # serialised differently from safetensors: keep the original bytes
        return data
    return data[:8] + text + b" " * (n - len(text)) + data[8 + n:]


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, np.ndarray],
                 metadata: Mapping[str, str] | None = None) -> Path:
    """Atomically save numpy arrays with safetensors (canonical header: same input, same bytes)."""
    from safetensors.numpy import save

    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    data = save(arrays, metadata=dict(metadata) if metadata else None)
    return atomic_write_bytes(path, canonical_safetensors(data))


def load_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ArtifactError(f"{path}: not a valid safetensors file ({e})") from e


def refuse_overwrite(path: str | os.PathLike, force: bool) -> None:
    """encodec-style guard: an existing output is an error unless -f/--force is given."""
    path = Path(path)
    if path.exists() and not force:
        raise EmosteerError(f"{path}: already exists (use -f to overwrite)")
