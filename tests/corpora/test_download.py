"""download.py against a local HTTP server on 127.0.0.1 (Range-capable); no real network."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from emosteer.cli import main
from emosteer.corpora import download as dl
from emosteer.corpora import formats as corpora
from emosteer.corpora.download import (
    SOURCES,
    RemoteNotFound,
    Source,
    download_file,
    download_source,
    safe_extract,
)
from emosteer.corpora.formats import scan_corpus
from emosteer.errors import DownloadError

PAYLOAD = bytes(range(256)) * 4000  # 1 MB, not a multiple of the read size


class Server:
    """Serves `files` (path -> bytes); records Range headers; optional misbehaviour."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.ranges: list[str | None] = []
        self.ignore_range = False
        self.truncate_to: int | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                if path not in server.files:
                    self.send_error(404, "Not Found")
                    return
                body = server.files[path]
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if server.truncate_to is not None:
                    part = part[:server.truncate_to]
                self.wfile.write(part)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    s.files["/data.bin"] = PAYLOAD
    yield s
    s.close()


MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def test_full_download(server, tmp_path):
    dest = download_file(f"{server.url}/data.bin", tmp_path / "d" / "data.bin", md5=MD5,
                         sha256=SHA256.upper(), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "d" / "data.bin.part").exists()
    assert server.ranges == [None]
    # a verified file is kept: no second request
    download_file(f"{server.url}/data.bin", dest, md5=MD5, progress=False)
    assert server.ranges == [None]


def test_resume_from_partial(server, tmp_path):
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:300_001])
    download_file(f"{server.url}/data.bin", dest, md5=MD5, progress=False)
    assert server.ranges == ["bytes=300001-"]
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_gets_416_and_finishes(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    dest = download_file(f"{server.url}/data.bin", tmp_path / "data.bin", md5=MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts(server, tmp_path):
    server.ignore_range = True
    (tmp_path / "data.bin.part").write_bytes(b"stale bytes from another file")
    dest = download_file(f"{server.url}/data.bin", tmp_path / "data.bin", md5=MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_dropped_connection_then_resume(server, tmp_path):
    server.truncate_to = 100_000
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="run again to resume"):
        download_file(f"{server.url}/data.bin", dest, md5=MD5, progress=False)
    assert (tmp_path / "data.bin.part").stat().st_size == 100_000 and not dest.exists()
    server.truncate_to = None
    download_file(f"{server.url}/data.bin", dest, md5=MD5, progress=False)
    assert server.ranges[-1] == "bytes=100000-" and dest.read_bytes() == PAYLOAD


def test_checksum_mismatch(server, tmp_path):
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="md5 mismatch") as info:
        download_file(f"{server.url}/data.bin", dest, md5="0" * 32, progress=False)
    assert "data.bin" in str(info.value)
    assert not dest.exists() and not (tmp_path / "data.bin.part").exists()
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download_file(f"{server.url}/data.bin", dest, sha256="ab" * 32, progress=False)


def test_http_404(server, tmp_path):
    with pytest.raises(RemoteNotFound, match=r"missing\.zip: HTTP 404"):
        download_file(f"{server.url}/missing.zip", tmp_path / "m.zip", progress=False)
    assert not (tmp_path / "m.zip").exists()


def test_connection_refused(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="could not connect"):
        download_file(f"http://127.0.0.1:{port}/x", tmp_path / "x", progress=False, timeout=5)


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("evil", ["../escape.txt", "Actor_01/../../escape.txt", "/abs.txt"])
def test_malicious_zip_refused(tmp_path, evil):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(make_zip({"ok.txt": b"fine", evil: b"pwned"}))
    out = tmp_path / "out" / "inner"
    with pytest.raises(DownloadError, match="refusing to extract"):
        safe_extract(archive, out)
    assert not (tmp_path / "out" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()
    assert not out.exists()  # checked before anything is written


def test_tar_with_symlink_refused(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(DownloadError, match="link members are not allowed"):
        safe_extract(archive, tmp_path / "out")


def test_good_archives_extract_and_respect_force(tmp_path):
    z = tmp_path / "a.zip"
    z.write_bytes(make_zip({"top/a.txt": b"A", "b.txt": b"B"}))
    out = tmp_path / "out"
    created = safe_extract(z, out)
    assert sorted(p.name for p in created) == ["b.txt", "top"]
    assert (out / "top" / "a.txt").read_bytes() == b"A"
    assert not list(out.glob(".extract-*"))
    with pytest.raises(DownloadError, match="already exists"):
        safe_extract(z, out)
    t = tmp_path / "a.tar"
    with tarfile.open(t, "w") as tf:
        data = b"tar!"
        info = tarfile.TarInfo("top/a.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    safe_extract(t, out, force=True)
    assert (out / "top" / "a.txt").read_bytes() == b"tar!" and (out / "b.txt").exists()
    (tmp_path / "junk.zip").write_bytes(b"not an archive")
    with pytest.raises(DownloadError, match="not a readable zip or tar"):
        safe_extract(tmp_path / "junk.zip", out)


RAVDESS_LIKE = {f"Actor_0{a}/03-01-0{e}-01-01-01-0{a}.wav": b"RIFF" for a in (1, 2) for e in (1, 5)}


def test_archive_source_end_to_end(server, tmp_path):
    data = make_zip(RAVDESS_LIKE)
    server.files["/rav.zip"] = data
    src = Source(name="rav", description="test", licence="test", url=f"{server.url}/rav.zip",
                 filename="rav.zip", md5=hashlib.md5(data).hexdigest())
    out = download_source(src, tmp_path / "rav", progress=False)
    utts = scan_corpus(out, "ravdess")
    assert {u.speaker for u in utts} == {"ravdess_01", "ravdess_02"} and len(utts) == 4
    record = json.loads((out / "rav.download.json").read_text())
    assert record["md5"] == src.md5 and record["url"] == src.url and record["extracted"]


def test_file_list_source(server, tmp_path, caplog):
    server.files["/wav/1001_DFA_ANG_XX.wav"] = b"RIFF....WAVE"
    src = Source(name="cr", description="t", licence="t", base_url=f"{server.url}/wav/",
                 files=("1001_DFA_ANG_XX.wav", "1001_DFA_SAD_XX.wav"), subdir="AudioWAV",
                 magic=b"RIFF")
    target = download_source(src, tmp_path, progress=False)
    assert (target / "1001_DFA_ANG_XX.wav").read_bytes() == b"RIFF....WAVE"
    assert "1 of 2 files not on the server: 1001_DFA_SAD_XX.wav" in caplog.text
    record = json.loads((tmp_path / "cr.download.json").read_text())
    assert record["missing"] == ["1001_DFA_SAD_XX.wav"] and record["n_files"] == 2
    # an LFS pointer served in place of audio is caught, not saved
    server.files["/wav/1001_DFA_SAD_XX.wav"] = b"version https://git-lfs.github.com/spec/v1\n"
    with pytest.raises(DownloadError, match="not the expected file type"):
        download_source(src, tmp_path, progress=False)
    assert not (target / "1001_DFA_SAD_XX.wav").exists()


def test_registry_entries():
    rav = SOURCES["ravdess"]
    assert rav.url.startswith("https://zenodo.org/") and len(rav.md5) == 32
    cre = SOURCES["cremad"]
    assert len(cre.files) == len(set(cre.files)) == 7462
    # every generated name is one the CREMA-D adapter accepts
    parsed = [corpora._cremad(Path(n).stem) for n in cre.files]
    assert {u["speaker"] for u in parsed} == {f"cremad_{a}" for a in range(1001, 1092)}
    with pytest.raises(DownloadError, match="unknown corpus"):
        dl.download_corpus("iemocap", "/nonexistent")


def test_cli_download(server, tmp_path, monkeypatch, capsys):
    data = make_zip(RAVDESS_LIKE)
    server.files["/rav.zip"] = data
    monkeypatch.setitem(SOURCES, "ravdess", Source(
        name="ravdess", description="local", licence="test", url=f"{server.url}/rav.zip",
        filename="rav.zip", md5=hashlib.md5(data).hexdigest()))
    out = tmp_path / "corpus"
    assert main(["corpus", "download", "ravdess", "--out", str(out)]) == 0
    assert (out / "Actor_01").is_dir()
    assert main(["corpus", "download", "ravdess", "--out", str(out)]) == 2
    assert "already exists (use -f" in capsys.readouterr().err
    assert main(["corpus", "download", "ravdess", "--out", str(out), "-f"]) == 0
    assert len(scan_corpus(out, "ravdess")) == 4
    assert Path(out / "rav.zip").is_file()  # kept so a rerun does not download again
