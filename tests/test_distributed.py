"""accelerate: sharding helpers, and two CPU processes (gloo) against one.

The two-process tests run `accelerate launch --multi_gpu --num_processes 2` with
ACCELERATE_USE_CPU=true in a subprocess. Both
sides of each comparison run with one intra-op thread (OMP_NUM_THREADS=1), since CPU kernels
may reduce in a different order with a different thread count.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emosteer.audio import SAMPLE_RATE, save_audio
from emosteer.distributed import LAUNCH_ENV, Dist, launched, select_rows
from emosteer.embeddings.store import EmbeddingStore
from emosteer.errors import ConfigError
from emosteer.training import TrainConfig, fit

ACCELERATE = Path(sys.executable).parent / "accelerate"
# Tolerance of the loss comparison: the two processes' gradients are averaged by an all-reduce
# (a sum then a division) where one process sums in one pass; float32 rounding differs at
# ~1e-7 relative, far below this.
LOSS_TOL = 1e-5

TRAIN_SCRIPT = r'''
import json, logging, sys
logging.basicConfig(level=logging.INFO)
import torch
from emosteer.distributed import Dist
from emosteer.training import TrainConfig, fit
sys.path.insert(0, sys.argv[1])
from test_distributed import _net, _items, _loss, _collate
dist = Dist.from_env()
model = _net()
cfg = TrainConfig(lr=1e-2, batch_size=8, max_epochs=2, patience=10, grad_accum=int(sys.argv[3]))
res = fit(model, _items(), _items(8, seed=1), loss_fn=_loss, collate=_collate, cfg=cfg,
          ckpt_dir=sys.argv[2] + "/ckpt", progress=False, dist=dist)
if dist.is_main:
    out = {"losses": [h["train_loss"] for h in res.history], "steps": res.steps,
           "world": dist.world_size,
           "weights": {k: v.tolist() for k, v in model.state_dict().items()}}
    open(sys.argv[2] + "/result.json", "w").write(json.dumps(out))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != LAUNCH_ENV and k != "WORLD_SIZE"}
    return dict(env, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _launch(args: list[str], n: int = 2) -> subprocess.CompletedProcess:
    if not ACCELERATE.is_file():
        pytest.skip(f"accelerate launcher not found at {ACCELERATE}")
    # `--cpu --num_processes 2` starts one process in accelerate 1.x unless MPI is installed
    # (see emosteer.distributed); torchrun (`--multi_gpu`) with ACCELERATE_USE_CPU gives two
    # CPU processes over gloo, on GPU runners too.
    cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", str(n), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), *args]
    res = subprocess.run(cmd, env=dict(_env(), ACCELERATE_USE_CPU="true"), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    assert f"accelerate: {n} processes on cpu" in res.stderr
    return res


@contextlib.contextmanager
def _one_thread():
    """The in-process reference runs with the launched processes' single intra-op thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


# --- the model and data of the training comparison (imported by TRAIN_SCRIPT too) -----------

def _items(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n, 6, 10, generator=g)
    return [(x, x.flip(0)) for x in xs]


def _collate(items, gen):
    x = torch.stack([a for a, _ in items])
    y = torch.stack([b for _, b in items])
    if gen is not None:  # the same crop for the whole batch, drawn from the loop's generator
        s = int(torch.randint(0, 3, (1,), generator=gen))
        x, y = x[..., s:s + 8], y[..., s:s + 8]
    return x, y


def _net():
    torch.manual_seed(0)  # no dropout: each rank would draw masks for other rows than one does
    return torch.nn.Sequential(torch.nn.Conv1d(6, 16, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv1d(16, 6, 1))


def _loss(model, batch):
    x, y = batch
    # MSE, a mean of per-item means, so a split batch sums back exactly. Not L1: its gradients
    # are sums of +-1 that cancel to exactly 0 in one summation order and to 1e-9 in another,
    # and Adam's first step (g / (|g| + eps)) turns that rounding into a full lr-sized step.
    return torch.nn.functional.mse_loss(model(x), y)


# --- single process -----------------------------------------------------------------------

def test_single_process_context_is_a_no_op(monkeypatch):
    monkeypatch.delenv(LAUNCH_ENV, raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not launched()
    d = Dist.from_env()
    assert d.accelerator is None and (d.rank, d.world_size, d.is_main) == (0, 1, True)
    assert d.shard(5) == [0, 1, 2, 3, 4] and d.gather("x") == ["x"] and d.any(True)
    batch = {"x": torch.arange(6), "pair": (torch.arange(6), 3)}
    assert d.split_batch(batch) is batch
    monkeypatch.setenv(LAUNCH_ENV, "no")
    assert launched()


def test_select_rows_and_shards_partition():
    batch = {"x": torch.arange(10), "nested": [torch.arange(10) * 2, "label"]}
    parts = [select_rows(batch, r, 3) for r in range(3)]
    rows = sorted(int(v) for p in parts for v in p["x"])
    assert rows == list(range(10))
    assert parts[1]["x"].tolist() == [1, 4, 7] and parts[1]["nested"][0].tolist() == [2, 8, 14]
    assert parts[1]["nested"][1] == "label"
    shards = [Dist().shard(7)]  # one process owns everything
    assert shards == [list(range(7))]


def test_grad_accum_matches_one_big_batch(tmp_path):
    runs = {}
    for acc in (1, 2, 4):
        model = _net()
        cfg = TrainConfig(lr=1e-2, batch_size=8, max_epochs=2, patience=10, grad_accum=acc)
        res = fit(model, _items(), _items(8, seed=1), loss_fn=_loss, collate=_collate, cfg=cfg,
                  ckpt_dir=tmp_path / f"a{acc}", progress=False)
        runs[acc] = (res, model.state_dict())
    for acc in (2, 4):
        res, sd = runs[acc]
        assert res.steps == runs[1][0].steps == 6
        losses = [h["train_loss"] for h in res.history]
        ref = [h["train_loss"] for h in runs[1][0].history]
        np.testing.assert_allclose(losses, ref, rtol=0, atol=LOSS_TOL)
        for k, v in sd.items():
            torch.testing.assert_close(v, runs[1][1][k], rtol=0, atol=LOSS_TOL)


def test_batch_too_small_for_the_split_is_refused(tmp_path):
    cfg = TrainConfig(batch_size=2, max_epochs=1, grad_accum=4)
    with pytest.raises(ConfigError, match="smaller than grad_accum"):
        fit(_net(), _items(), [], loss_fn=_loss, collate=_collate, cfg=cfg,
            ckpt_dir=tmp_path, progress=False)


# --- two processes ---------------------------------------------------------------------------

def _corpus(root: Path) -> Path:
    """Seven clips of three lengths (odd count: the shards differ in size) and a CSV manifest."""
    rng = np.random.RandomState(3)
    rows = ["path,speaker,emotion"]
    for i, seconds in enumerate((0.6, 0.8, 0.6, 1.0, 0.8, 0.6, 1.0)):
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        wav = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.01 * rng.randn(t.size)
        save_audio(root / f"clip{i}.wav", wav.astype(np.float32), SAMPLE_RATE)
        rows.append(f"clip{i}.wav,s{i % 3},{('angry', 'calm')[i % 2]}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def test_two_process_extract_equals_one_process(tmp_path, tiny_model_dir):
    manifest = _corpus(tmp_path)
    emosteer = str(Path(sys.executable).parent / "emosteer")

    def args(out):
        return ["extract", str(manifest), "--format", "csv", "--model", str(tiny_model_dir),
                "--layers", "1,3", "--frame-layers", "3", "--pooling", "energy", "--out",
                str(out), "--no-progress"]

    from emosteer.cli import main

    with _one_thread():
        assert main(args(tmp_path / "one")) == 0
    res = _launch([emosteer, *args(tmp_path / "two")])
    assert "rank 1: encoded 3 new utterances" in res.stderr  # 7 clips: ranks take 4 and 3
    one, two = EmbeddingStore.open(tmp_path / "one"), EmbeddingStore.open(tmp_path / "two")
    assert len(two) == 7 and two.config == one.config
    assert two.index == one.index and two.skipped == one.skipped == []
    for key in ("utt_id", "speaker", "emotion"):
        assert list(two.labels(key)) == list(one.labels(key))
    for k in (1, 3):
        np.testing.assert_array_equal(two.pooled(k), one.pooled(k))
    for utt in one.labels("utt_id"):
        np.testing.assert_array_equal(two.frames(utt, 3), one.frames(utt, 3))
    assert (tmp_path / "two" / "pooled.safetensors").read_bytes() == \
        (tmp_path / "one" / "pooled.safetensors").read_bytes()


def test_two_process_training_equals_one_process(tmp_path):
    """Global batch 8 as 2 processes x 2 accumulated micro-batches of 2 vs one process."""
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    (tmp_path / "two").mkdir()
    _launch([str(script), str(Path(__file__).parent), str(tmp_path / "two"), "2"])
    two = json.loads((tmp_path / "two" / "result.json").read_text())
    model = _net()
    cfg = TrainConfig(lr=1e-2, batch_size=8, max_epochs=2, patience=10)
    with _one_thread():
        res = fit(model, _items(), _items(8, seed=1), loss_fn=_loss, collate=_collate, cfg=cfg,
                  ckpt_dir=tmp_path / "one", progress=False)
    one = {"losses": [h["train_loss"] for h in res.history], "steps": res.steps,
           "weights": {k: v.tolist() for k, v in model.state_dict().items()}}
    assert two["world"] == 2
    assert one["steps"] == two["steps"] == 6  # 24 items, global batch 8, 2 epochs
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=0, atol=LOSS_TOL)
    for k, v in one["weights"].items():
        np.testing.assert_allclose(two["weights"][k], v, rtol=0, atol=LOSS_TOL)
    # the comparison has teeth: training moved the weights well beyond the tolerance
    start = {k: v.numpy() for k, v in _net().state_dict().items()}
    assert max(np.abs(np.array(v) - start[k]).max() for k, v in one["weights"].items()) > 1e-2


@pytest.mark.slow
def test_two_process_train_mapper_cli(tmp_path, tiny_model_dir):
    """The CLI end to end: sharded encoding into the shared cache, DDP, rank 0 writes."""
    from emosteer.synthesis.mapper import load_mapper

    manifest = _corpus(tmp_path)
    out = tmp_path / "mapper"
    res = _launch([str(Path(sys.executable).parent / "emosteer"), "train-mapper", str(manifest),
                   "--format", "csv", "--model", str(tiny_model_dir), "--layer", "2", "--out",
                   str(out), "--mel", "ssl16k", "--hidden", "16", "--blocks", "1",
                   "--batch-size", "2", "--epochs", "2", "--no-progress"])
    assert res.stdout.count("2 epochs (max_epochs)") == 1  # only rank 0 reports
    report = json.loads((out / "train_report.json").read_text())
    assert report["result"]["steps"] > 0 and report["n_train"] + report["n_val"] == 7
    assert len(list((out / "cache").glob("*.safetensors"))) == 7  # each clip encoded once
    assert load_mapper(out).config.layer == 2
