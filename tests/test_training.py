"""The generic training loop: speaker split, determinism, resume, early stopping, budget."""

from __future__ import annotations

import json

import pytest
import torch

from emosteer.errors import ArtifactError, ConfigError
from emosteer.training import (
    STATE_FILE,
    TrainConfig,
    fit,
    load_checkpoint,
    split_by_speaker,
)


def _items(n=24, sign=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n, 6, 10, generator=g)
    return [(x, sign * x.flip(0)) for x in xs]


def _collate(items, gen):
    # A random time crop when training, so the loop's generator matters for the result.
    x = torch.stack([a for a, _ in items])
    y = torch.stack([b for _, b in items])
    if gen is not None:
        s = int(torch.randint(0, 3, (1,), generator=gen))
        x, y = x[..., s:s + 8], y[..., s:s + 8]
    return x, y


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv1d(6, 16, 3, padding=1)
        self.drop = torch.nn.Dropout(0.2)  # exercises the per-epoch dropout seeding
        self.b = torch.nn.Conv1d(16, 6, 1)

    def forward(self, x):
        return self.b(self.drop(torch.relu(self.a(x))))


def _loss(model, batch):
    x, y = batch
    return torch.nn.functional.l1_loss(model(x), y)


def _net(seed=0):
    torch.manual_seed(seed)
    return Net()


def _fit(tmp, cfg, callback=None, resume=True, val=None):
    model = _net()
    res = fit(model, _items(), _items(8, seed=1) if val is None else val, loss_fn=_loss,
              collate=_collate, cfg=cfg, ckpt_dir=tmp, resume=resume, progress=False,
              callback=callback)
    return model, res


def test_split_by_speaker_has_no_overlap():
    spk = [f"s{i % 7}" for i in range(70)]
    tr, va = split_by_speaker(spk, val_fraction=0.3, seed=3)
    assert sorted(tr + va) == list(range(70))
    assert {spk[i] for i in tr}.isdisjoint({spk[i] for i in va})
    assert len({spk[i] for i in va}) == 2  # round(7 * 0.3)
    assert split_by_speaker(spk, val_fraction=0.3, seed=3) == (tr, va)


def test_split_by_speaker_explicit_and_errors():
    spk = ["a", "b", "a", "c"]
    tr, va = split_by_speaker(spk, val_speakers=["c"])
    assert va == [3] and tr == [0, 1, 2]
    with pytest.raises(ConfigError, match="not in the data"):
        split_by_speaker(spk, val_speakers=["z"])
    with pytest.raises(ConfigError, match="at least 2 speakers"):
        split_by_speaker(["a", "a"])
    with pytest.raises(ConfigError, match="no training"):
        split_by_speaker(["a", "b"], val_speakers=["a", "b"])


def test_training_reduces_loss_and_is_deterministic(tmp_path):
    cfg = TrainConfig(lr=1e-2, batch_size=4, max_epochs=6, patience=10)
    m1, r1 = _fit(tmp_path / "a", cfg)
    m2, r2 = _fit(tmp_path / "b", cfg)
    assert r1.history[-1]["train_loss"] < 0.7 * r1.history[0]["train_loss"]
    assert r1.stop_reason == "max_epochs" and r1.epochs == 6
    for k, v in m1.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k


def test_resume_after_kill_is_bit_identical(tmp_path):
    cfg = TrainConfig(lr=1e-2, batch_size=4, max_epochs=5, patience=10)
    full, rfull = _fit(tmp_path / "full", cfg)

    def kill(meta):
        if meta["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "part", cfg, callback=kill)
    state = json.loads((tmp_path / "part" / STATE_FILE).read_text())
    assert state["epoch"] == 2
    resumed, rres = _fit(tmp_path / "part", cfg)
    assert rres.epochs == 5 and rres.history == [
        {**h, "seconds": rres.history[i]["seconds"]} for i, h in enumerate(rfull.history)
    ]
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_checkpoint_restores_optimizer_state(tmp_path):
    cfg = TrainConfig(lr=1e-2, batch_size=4, max_epochs=2)
    model, _ = _fit(tmp_path, cfg)
    fresh = _net(seed=5)
    opt = torch.optim.AdamW(fresh.parameters(), lr=cfg.lr)
    meta, best = load_checkpoint(tmp_path, fresh, opt)
    assert meta["epoch"] == 2 and meta["step"] == 12  # 24 items / batch 4 * 2 epochs
    st = opt.state_dict()["state"]
    assert len(st) == len(list(fresh.parameters()))
    assert float(st[0]["step"]) == 12.0 and st[0]["exp_avg"].abs().sum() > 0
    assert set(best) == set(model.state_dict())


def test_early_stopping_keeps_best_weights(tmp_path):
    # Validation wants the opposite mapping, so learning makes it worse: stop after `patience`.
    cfg = TrainConfig(lr=1e-2, batch_size=4, max_epochs=50, patience=2)
    model, res = _fit(tmp_path, cfg, val=_items(8, sign=-1.0, seed=1))
    assert res.stop_reason == "early_stop"
    assert res.epochs == res.best_epoch + 2 < 50
    ckpt_model = _net(seed=7)
    _, best = load_checkpoint(tmp_path, ckpt_model, torch.optim.AdamW(ckpt_model.parameters()))
    for k, v in model.state_dict().items():
        assert torch.equal(v, best[k])
    # An early-stopped run is finished: resuming trains no further.
    _, again = _fit(tmp_path, cfg, val=_items(8, sign=-1.0, seed=1))
    assert again.epochs == res.epochs and again.steps == res.steps


def test_time_budget_stops_mid_epoch(tmp_path):
    cfg = TrainConfig(batch_size=1, max_epochs=50, max_minutes=1e-9)
    _, res = _fit(tmp_path, cfg)
    assert res.stop_reason == "time_budget"
    assert res.epochs == 1 and res.steps == 1 and res.history[0]["partial"]


def test_corrupt_checkpoint_is_an_artifact_error(tmp_path):
    cfg = TrainConfig(batch_size=4, max_epochs=1)
    _fit(tmp_path, cfg)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    (tmp_path / state["tensors"]).write_bytes(b"not safetensors")
    with pytest.raises(ArtifactError, match="checkpoint"):
        _fit(tmp_path, cfg)


def test_bad_config_rejected():
    with pytest.raises(ConfigError):
        TrainConfig(lr=0)
    with pytest.raises(ConfigError):
        TrainConfig(max_minutes=0)
