"""Faults: SIGKILL during `train-mapper`, and a full disk during `extract` and artifact writes.

SIGKILL during `extract` is tested in test_extract.py (test_resume_after_sigkill) and during
`study serve` in test_study_server.py (test_sigkill_keeps_committed_answers: PRAGMA
integrity_check, every committed answer kept, a restarted server resumes the participant).

The full disk is a real one: a 2 MiB tmpfs mounted for the test (we run as root in CI). Where
mounting is not permitted, the write path is made to fail with ENOSPC part-way instead.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from emosteer.artifacts import load_tensors, save_tensors
from emosteer.cli import main
from emosteer.embeddings.store import EmbeddingStore
from emosteer.errors import ArtifactError
from signals import tone_corpus

TMPFS_BYTES = 2 * 1024 * 1024
# Epochs of the killed train-mapper run: each is ~0.5 s on a shared CPU (a checkpoint with
# fsync per epoch), so the kill after epoch 2 lands mid-run and the rerun stays short.
EPOCHS = 8
PAGE = 4096  # tmpfs accounts space in pages


# --- SIGKILL during train-mapper ---------------------------------------------------------------

def _train_cmd(manifest: Path, model: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", "import sys; from emosteer.cli import main; sys.exit(main())",
            "train-mapper", str(manifest), "--format", "csv", "--model", str(model),
            "--layer", "2", "--out", str(out), "--mel", "ssl16k", "--hidden", "16",
            "--blocks", "1", "--batch-size", "2", "--epochs", str(EPOCHS), "--patience", "1000",
            "--no-progress"]


def _epoch(out: Path) -> int:
    try:
        return json.loads((out / "checkpoint" / "state.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):  # not there yet (the rename is atomic)
        return 0


def test_train_mapper_sigkill_leaves_a_valid_checkpoint_and_resumes(tmp_path, tiny_model_dir):
    manifest = tone_corpus(tmp_path, n_speakers=3)
    out = tmp_path / "mapper"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(_train_cmd(manifest, tiny_model_dir, out), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while _epoch(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _epoch(out)
    assert 2 <= killed_at < EPOCHS, "the run finished before it could be killed"
    assert not (out / "mapper.safetensors").exists()  # no half-finished final artifact
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    tensors = load_tensors(out / "checkpoint" / state["tensors"])  # the commit point is whole
    assert any(k.startswith("model/") for k in tensors)
    for cached in (out / "cache").glob("*.safetensors"):
        load_tensors(cached)  # every cache entry that exists is complete
    res = subprocess.run(_train_cmd(manifest, tiny_model_dir, out), env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    resumed_at = int(res.stderr.split("resuming from")[1].split("at epoch")[1].split()[0])
    assert resumed_at >= killed_at  # a checkpoint may have landed between the read and the kill
    report = json.loads((out / "train_report.json").read_text())
    assert report["result"]["epochs"] == EPOCHS and report["result"]["stop_reason"] == "max_epochs"
    from emosteer.synthesis.mapper import load_mapper

    assert load_mapper(out).config.layer == 2
    assert not list(out.rglob(".*.tmp"))


# --- full disk ---------------------------------------------------------------------------------

@pytest.fixture()
def small_disk(tmp_path):
    """A 2 MiB tmpfs (or, where mounting is refused, None: tests then inject ENOSPC)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs",
                             str(mnt)], capture_output=True).returncode == 0
    except OSError:  # no mount binary
        ok = False
    if not ok:
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill `disk` up to `leave` free bytes with one filler file."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    filler = disk / "filler.bin"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def _enospc_after(monkeypatch, n_ok: int) -> None:
    """Fallback without a mount: the (n_ok + 1)-th atomic write fails like a full disk."""
    import emosteer.artifacts as art

    real_fdopen, calls = os.fdopen, {"n": 0}

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd, *a, **k):
        calls["n"] += 1
        f = real_fdopen(fd, *a, **k)
        return Full(f) if calls["n"] > n_ok else f

    monkeypatch.setattr(art.os, "fdopen", fdopen)


def test_full_disk_keeps_the_previous_version(small_disk, tmp_path, monkeypatch):
    root = small_disk or tmp_path
    target = root / "weights.safetensors"
    old = {"w": np.arange(1000, dtype=np.float32)}
    save_tensors(target, old)
    before = target.read_bytes()
    if small_disk is not None:
        _fill(small_disk, leave=8 * PAGE)
    else:
        _enospc_after(monkeypatch, n_ok=0)
    big = {"w": np.ones(256 * 1024, dtype=np.float32)}  # 1 MiB: cannot fit
    with pytest.raises(ArtifactError, match="(?i)weights.safetensors.*no space left"):
        save_tensors(target, big)
    assert target.read_bytes() == before  # the earlier result is intact
    np.testing.assert_array_equal(load_tensors(target)["w"], old["w"])
    assert not list(root.glob(".*.tmp"))  # the partial temp file was removed


def test_extract_on_a_full_disk_errors_clearly_and_resumes(small_disk, tmp_path, monkeypatch,
                                                           tiny_model_dir, capsys, caplog):
    caplog.set_level(logging.INFO, logger="emosteer")
    (tmp_path / "corpus").mkdir()
    manifest = tone_corpus(tmp_path / "corpus", n=6, n_speakers=3)
    root = small_disk or tmp_path
    out = root / "store"

    def args(dest: Path) -> list[str]:
        return ["extract", str(manifest), "--format", "csv", "--model", str(tiny_model_dir),
                "--layers", "1,2", "--frame-layers", "2", "--out", str(dest), "--no-progress"]

    if small_disk is not None:
        filler = _fill(small_disk, leave=4 * PAGE)  # extract.json and a couple of items fit
    else:
        _enospc_after(monkeypatch, n_ok=3)
    assert main(args(out)) == 2
    err = capsys.readouterr().err
    assert "emosteer extract: error:" in err and str(out) in err
    assert "no space left" in err.lower()
    assert "Traceback" not in err
    items = sorted((out / "items").glob("*.safetensors"))
    assert 1 <= len(items) < 6 and not (out / "store.json").exists()
    for item in items:
        load_tensors(item)  # everything written before the disk filled up is whole
    if small_disk is not None:
        filler.unlink()
    else:
        monkeypatch.undo()
    assert main(args(out)) == 0  # the rerun finishes what is missing
    n = len(items)
    assert f"encoded {6 - n} new utterances, {n} already done" in caplog.text
    st = EmbeddingStore.open(out)
    assert len(st) == 6 and st.skipped == []
    ref = tmp_path / "ref"
    assert main(args(ref)) == 0
    for k in (1, 2):
        np.testing.assert_array_equal(st.pooled(k), EmbeddingStore.open(ref).pooled(k))
