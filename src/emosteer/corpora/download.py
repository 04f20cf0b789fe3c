"""Download helpers for emotional-speech corpora that have a public URL.

`download_file` fetches one URL to a `.part` file, resumes a partial download with an HTTP Range
request, verifies an md5/sha256 checksum and renames atomically into place. `safe_extract`
unpacks zip/tar archives after refusing members that would land outside the target folder
(absolute paths, `..`, links, devices). `download_corpus(name, out_dir)` combines them for the
entries of SOURCES. Every failure is a DownloadError naming the URL or file.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from emosteer import __version__
from emosteer.artifacts import write_json
from emosteer.errors import DownloadError

log = logging.getLogger(__name__)

TIMEOUT_S = 60.0  # socket inactivity timeout: Zenodo can stall a few tens of seconds under load
CHUNK_BYTES = 1 << 20  # read/hash granularity; 1 MiB keeps syscalls few and memory flat
MAX_LISTED = 10  # missing files named in a warning


@dataclass(frozen=True)
class Source:
    """A downloadable corpus: one archive (`url`) or many files (`base_url` + `files`).

    Checksums are optional: where the publisher gives none, integrity rests on the length the
    server announces (and on `magic`, the bytes every file must start with)."""

    name: str
    description: str
    licence: str
    url: str | None = None
    filename: str | None = None
    md5: str | None = None
    sha256: str | None = None
    base_url: str | None = None
    files: tuple[str, ...] = ()
    subdir: str = ""
    magic: bytes | None = None


class RemoteNotFound(DownloadError):
    """The server answered 404: the file does not exist there (expected for some CREMA-D names)."""


def _cremad_files() -> tuple[str, ...]:
    # CREMA-D naming: 91 actors (1001-1091) x 12 sentences x 6 emotions; only sentence IEO was
    # recorded at three levels (LO/MD/HI), plus neutral unspecified. This is the full grid of
    # 7462 names; the distributed set has 7442, so ~20 candidates are expected to be missing.
    sentences = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
    emotions = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
    names = []
    for actor in range(1001, 1092):
        for s in sentences:
            for e in emotions:
                levels = ("LO", "MD", "HI") if s == "IEO" and e != "NEU" else ("XX",)
                names.extend(f"{actor}_{s}_{e}_{lv}.wav" for lv in levels)
    return tuple(names)


SOURCES: dict[str, Source] = {
    "ravdess": Source(
        name="ravdess",
        description="RAVDESS speech, audio only, 24 actors, 1440 clips (Zenodo record 1188976)",
        licence="CC BY-NC-SA 4.0",
        url="https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip?download=1",
        filename="Audio_Speech_Actors_01-24.zip",
        md5="bc696df654c87fed845eb13823edef8a",
    ),
    "cremad": Source(
        name="cremad",
        description="CREMA-D AudioWAV, 91 actors, 7442 clips (GitHub LFS, one request per file)",
        licence="Open Database License / Database Contents License",
        base_url="https://media.githubusercontent.com/media/CheyneyComputerScience/CREMA-D/master/AudioWAV/",
        files=_cremad_files(),
        subdir="AudioWAV",
        magic=b"RIFF",  # an LFS pointer (text) served instead of the audio must be caught
    ),
}


def file_checksum(path: str | os.PathLike, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    try:
        with open(path, "rb") as f:
            while block := f.read(CHUNK_BYTES):
                h.update(block)
    except OSError as e:
        raise DownloadError(f"{path}: cannot read for checksum ({e.strerror or e})") from e
    return h.hexdigest()


def verify_checksum(path: str | os.PathLike, md5: str | None = None,
                    sha256: str | None = None) -> None:
    """DownloadError if `path` does not match the given md5 and/or sha256 (hex, any case)."""
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected:
            got = file_checksum(path, algorithm)
            if got != expected.lower():
                raise DownloadError(f"{path}: {algorithm} mismatch (expected {expected.lower()}, "
                                    f"got {got})")


def _open(url: str, offset: int, timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": f"emosteer/{__version__}"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            return None  # the .part already holds every byte the server has
        cls = RemoteNotFound if e.code == 404 else DownloadError
        raise cls(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"{url}: could not connect ({reason})") from e


def download_file(url: str, dest: str | os.PathLike, md5: str | None = None,
                  sha256: str | None = None, magic: bytes | None = None,
                  timeout: float = TIMEOUT_S, progress: bool = True) -> Path:
    """Download `url` to `dest` via `dest.part`, resuming a partial `.part` with HTTP Range.

    An existing `dest` that passes the checksum is kept (no request is made). A server that
    ignores Range (status 200) restarts the download. On checksum mismatch the `.part` is deleted
    (it cannot be resumed into a good file) and DownloadError is raised."""
    from tqdm import tqdm

    dest = Path(dest)
    if dest.is_file():
        verify_checksum(dest, md5, sha256)
        return dest
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        have = part.stat().st_size if part.is_file() else 0
    except OSError as e:
        raise DownloadError(f"{dest}: cannot prepare download ({e.strerror or e})") from e
    resp = _open(url, have, timeout)
    if resp is not None:
        with resp:
            resumed = have > 0 and resp.status == 206
            if have and not resumed:
                log.info("%s: server ignored the Range request; restarting", url)
                have = 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else None
            done = have
            try:
                with open(part, "ab" if resumed else "wb") as f, tqdm(
                        total=total, initial=have, unit="B", unit_scale=True, desc=dest.name,
                        disable=not progress, leave=False) as bar:
                    while block := resp.read(CHUNK_BYTES):
                        f.write(block)
                        done += len(block)
                        bar.update(len(block))
            except (http.client.HTTPException, TimeoutError, ConnectionError) as e:
                raise DownloadError(f"{url}: interrupted after {done} bytes ({e}); run again "
                                    "to resume") from e
            except OSError as e:
                raise DownloadError(f"{part}: cannot write ({e.strerror or e})") from e
            if total is not None and done != total:
                raise DownloadError(f"{url}: got {done} of {total} bytes; run again to resume")
    if magic is not None:
        with open(part, "rb") as f:
            if f.read(len(magic)) != magic:
                part.unlink()
                raise DownloadError(f"{url}: downloaded data is not the expected file type")
    try:
        verify_checksum(part, md5, sha256)
    except DownloadError as e:
        part.unlink()
        raise DownloadError(f"{url}: {e}; the partial file was removed, run again") from e
    os.replace(part, dest)
    return dest


def _member_problem(name: str, kind: str) -> str | None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in p.parts:
        return "path traversal ('..')"
    if kind not in ("file", "dir"):
        return f"{kind} members are not allowed"
    return None


def _members(archive: Path) -> list[tuple[str, str]]:
    """(name, kind) for every member; DownloadError if the archive is unreadable."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                out = []
                for info in zf.infolist():
                    mode = info.external_attr >> 16
                    kind = "symlink" if stat.S_ISLNK(mode) else ("dir" if info.is_dir() else "file")
                    out.append((info.filename, kind))
                return out
        with tarfile.open(archive) as tf:
            return [(m.name, "file" if m.isfile() else "dir" if m.isdir() else
                     "link" if (m.issym() or m.islnk()) else "special") for m in tf.getmembers()]
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as e:
        raise DownloadError(f"{archive}: not a readable zip or tar archive ({e})") from e


def safe_extract(archive: str | os.PathLike, out_dir: str | os.PathLike,
                 force: bool = False) -> list[Path]:
    """Extract a zip/tar into `out_dir`; returns the top-level paths created.

    Every member is checked before anything is written. Extraction goes to a temporary folder
    inside `out_dir` and top-level entries are then renamed into place, so an interrupted run
    leaves no half-extracted tree; existing entries are an error unless `force`."""
    archive, out_dir = Path(archive), Path(out_dir)
    members = _members(archive)
    for name, kind in members:
        problem = _member_problem(name, kind)
        if problem:
            raise DownloadError(f"{archive}: refusing to extract member {name!r}: {problem}")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=out_dir))
    try:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zf:
                    zf.extractall(tmp)
            else:
                with tarfile.open(archive) as tf:
                    tf.extractall(tmp, filter="data")
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as e:
            raise DownloadError(f"{archive}: extraction failed ({e})") from e
        created = []
        for entry in sorted(tmp.iterdir()):
            target = out_dir / entry.name
            if target.exists():
                if not force:
                    raise DownloadError(f"{target}: already exists (use -f to overwrite)")
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()
            os.replace(entry, target)
            created.append(target)
        return created
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _record(source: Source, out_dir: Path, missing: list[str], extracted: bool) -> None:
    """`<name>.download.json` next to the data: where it came from and what was verified."""
    write_json(out_dir / f"{source.name}.download.json", {
        "name": source.name, "description": source.description, "licence": source.licence,
        "url": source.url or source.base_url, "filename": source.filename,
        "md5": source.md5, "sha256": source.sha256, "n_files": len(source.files) or 1,
        "missing": missing, "extracted": extracted, "emosteer_version": __version__,
        "downloaded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })


def download_source(source: Source, out_dir: str | os.PathLike, extract: bool = True,
                    force: bool = False, progress: bool = True) -> Path:
    """Fetch `source` into `out_dir` (archive kept there so a rerun skips the download) and
    write `<name>.download.json` describing it. Returns the folder holding the corpus."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    if source.url:
        archive = download_file(source.url, out_dir / (source.filename or source.name),
                                md5=source.md5, sha256=source.sha256, magic=source.magic,
                                progress=progress)
        if extract:
            safe_extract(archive, out_dir, force=force)
        _record(source, out_dir, [], extract)
        return out_dir
    if not source.base_url or not source.files:
        raise DownloadError(f"{source.name}: registry entry has neither url nor files")
    target = out_dir / source.subdir
    missing = []
    for name in tqdm(source.files, desc=source.name, unit="file", disable=not progress):
        try:
            download_file(source.base_url + name, target / name, magic=source.magic,
                          progress=False)
        except RemoteNotFound:
            missing.append(name)
    if missing:
        shown = ", ".join(missing[:MAX_LISTED])
        more = f" (and {len(missing) - MAX_LISTED} more)" if len(missing) > MAX_LISTED else ""
        log.warning("%s: %d of %d files not on the server: %s%s", source.name, len(missing),
                    len(source.files), shown, more)
    if len(missing) == len(source.files):
        raise DownloadError(f"{source.base_url}: none of the {len(missing)} files exist")
    _record(source, out_dir, missing, False)
    return target


def download_corpus(name: str, out_dir: str | os.PathLike, extract: bool = True,
                    force: bool = False, progress: bool = True) -> Path:
    """Download the registered corpus `name` (see SOURCES) into `out_dir`."""
    if name not in SOURCES:
        raise DownloadError(f"unknown corpus {name!r}; downloadable: {', '.join(sorted(SOURCES))}")
    return download_source(SOURCES[name], out_dir, extract=extract, force=force,
                           progress=progress)
