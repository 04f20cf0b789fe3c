"""The one generic training loop: speaker-disjoint split, early stopping, a wall-time budget,
tqdm progress and resumable, pickle-free checkpoints.

Determinism: every source of randomness the loop owns is derived from (seed, epoch) — the
shuffle order and the collate function's crops come from a per-epoch `torch.Generator`, and
dropout draws from torch's global RNG, which is re-seeded per epoch inside `fork_rng` so the
caller's RNG state is left untouched. Checkpoints are written at epoch boundaries, so a run that
is killed and resumed walks exactly the same path as an uninterrupted one (bit-identical weights
on CPU with the same thread count).

A checkpoint is `ckpt_dir/state.json` (the commit point, written last) pointing at
`ckpt_dir/ckpt-EEEEEE.safetensors` with the model's last and best weights and the optimizer's
tensors; the optimizer's scalar state and param groups live in the JSON.

Distributed (emosteer.distributed.Dist under `accelerate launch`): `batch_size` is the global
batch of one optimizer step. Every rank collates the whole batch (so crops are drawn as one
process draws them), cuts it into `grad_accum` micro-batches (rows m, m + A, ...) and keeps its
rows of each (rows r, r + W, ...). Each micro-batch loss is weighted by its share of the global
batch, so with DDP's gradient averaging the step equals one process's step on the whole batch
whenever the loss is a mean of per-item losses. Rank 0 writes the checkpoints.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emosteer.artifacts import atomic_write_bytes, read_json, write_json
from emosteer.distributed import Dist, select_rows
from emosteer.errors import ArtifactError, ConfigError

log = logging.getLogger(__name__)

# A prime stride between seeds, so (seed, epoch) pairs never map to the same generator seed for
# any run shorter than a million epochs.
_SEED_STRIDE = 1_000_003
STATE_FILE = "state.json"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one run (saved inside every checkpoint)."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 8
    max_epochs: int = 200
    patience: int = 8  # epochs without a val improvement before stopping
    min_delta: float = 0.0  # an improvement must beat the best val loss by more than this
    max_minutes: float = 15.0  # wall-time budget of one call (resumed calls get a fresh budget)
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    seed: int = 0
    grad_accum: int = 1  # micro-batches per optimizer step (batch_size is the whole step's)

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.batch_size <= 0 or self.max_epochs <= 0 or self.patience <= 0:
            raise ConfigError(f"TrainConfig: lr, batch_size, max_epochs, patience must be > 0 ({self})")
        if self.grad_accum < 1:
            raise ConfigError(f"TrainConfig: grad_accum must be >= 1, got {self.grad_accum}")
        if self.max_minutes <= 0:
            raise ConfigError(f"TrainConfig: max_minutes must be > 0, got {self.max_minutes}")


@dataclass
class TrainResult:
    """What a run did. `model` holds the best-validation weights when `fit` returns."""

    epochs: int
    steps: int
    best_val: float
    best_epoch: int
    stop_reason: str  # "early_stop" | "max_epochs" | "time_budget"
    history: list[dict[str, Any]] = field(default_factory=list)


def split_by_speaker(speakers: Sequence[str], val_speakers: Sequence[str] | None = None,
                     val_fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices (train, val) such that no speaker is in both.

    With `val_speakers` those speakers form the validation set; otherwise a seeded random
    `val_fraction` of the distinct speakers (at least one) does."""
    distinct = sorted(set(speakers))
    if val_speakers:
        unknown = sorted(set(val_speakers) - set(distinct))
        if unknown:
            raise ConfigError(f"validation speakers not in the data: {[str(s) for s in unknown]}")
        held = set(val_speakers)
    else:
        if len(distinct) < 2:
            raise ConfigError(
                "a speaker-disjoint validation split needs at least 2 speakers, got "
                f"{[str(s) for s in distinct]}"  # str: no np.str_('a') in the message
            )
        n_val = min(len(distinct) - 1, max(1, round(len(distinct) * val_fraction)))
        order = np.random.default_rng(seed).permutation(len(distinct))
        held = {distinct[i] for i in order[:n_val]}
    train = [i for i, s in enumerate(speakers) if s not in held]
    val = [i for i, s in enumerate(speakers) if s in held]
    if not train:
        raise ConfigError("no training utterances left after holding out validation speakers")
    return train, val


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * _SEED_STRIDE + epoch)


def _optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim/{idx}/{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                         meta: dict, source: Path) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim/"):
            _, idx, k = key.split("/", 2)
            state.setdefault(int(idx), {})[k] = v
    for idx, st in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(st)
    # JSON turned tuples (Adam's betas) into lists.
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()}
              for g in meta["param_groups"]]
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as e:
        raise ArtifactError(f"{source}: optimizer state does not match the model ({e})") from e


def _load_module(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"{source}: weights do not match the model ({e})") from e


def save_checkpoint(ckpt_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
                    best: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write tensors first, then state.json (the commit point), then drop older tensor files."""
    from safetensors.torch import save

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"best/{k}": v.contiguous() for k, v in best.items()})
    opt_tensors, opt_meta = _optimizer_to_flat(opt)
    tensors.update(opt_tensors)
    name = f"ckpt-{meta['epoch']:06d}.safetensors"
    atomic_write_bytes(ckpt_dir / name, save(tensors, metadata={"epoch": str(meta["epoch"])}))
    write_json(ckpt_dir / STATE_FILE, {**meta, "tensors": name, "optimizer": opt_meta})
    for old in ckpt_dir.glob("ckpt-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return ckpt_dir / STATE_FILE


def load_checkpoint(ckpt_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer
                    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore model and optimizer in place; return (meta, best weights)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_json(ckpt_dir / STATE_FILE)
    path = ckpt_dir / meta.get("tensors", "")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ArtifactError(f"{path}: unreadable checkpoint ({e})") from e
    _load_module(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}, path)
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best/")}
    _optimizer_from_flat(opt, tensors, meta["optimizer"], path)
    return meta, best


def _evaluate(model, items, loss_fn, collate, batch_size: int, dist) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(items), batch_size):
            chunk = items[i:i + batch_size]
            total += float(loss_fn(model, dist.to_device(collate(chunk, None)))) * len(chunk)
            count += len(chunk)
    return total / max(count, 1)


def fit(model: torch.nn.Module, train_items: Sequence, val_items: Sequence, *,
        loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
        collate: Callable[[Sequence, torch.Generator | None], Any],
        cfg: TrainConfig, ckpt_dir: str | Path, resume: bool = True, progress: bool = True,
        callback: Callable[[dict[str, Any]], None] | None = None, dist=None) -> TrainResult:
    """Train `model` in place and leave it holding the best-validation weights.

    `collate(items, generator)` builds a batch (random crops from `generator` when training;
    `generator=None` means deterministic full items for validation); `loss_fn(model, batch)` is
    a scalar tensor. Validation runs after every epoch (on the training set when `val_items`
    is empty). `callback(meta)` is called after each checkpoint is committed. `dist`
    (emosteer.distributed.Dist) runs the loop data-parallel; None is one plain process."""
    from tqdm import tqdm

    dist = dist or Dist()
    ckpt_dir = Path(ckpt_dir)
    # Every rank needs at least one row of every micro-batch, or DDP's collectives would hang.
    min_rows = cfg.grad_accum * dist.world_size
    if cfg.batch_size < min_rows:
        raise ConfigError(f"batch size {cfg.batch_size} is smaller than grad_accum x processes "
                          f"= {min_rows}")
    val_items = val_items if len(val_items) else train_items
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    meta: dict[str, Any] = {"epoch": 0, "step": 0, "best_val": math.inf, "best_epoch": 0,
                            "bad_epochs": 0, "history": [], "stop_reason": "",
                            "train_config": dataclasses.asdict(cfg)}
    best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if resume and (ckpt_dir / STATE_FILE).is_file():
        meta, best = load_checkpoint(ckpt_dir, model, opt)
        if meta["train_config"].get("seed") != cfg.seed:
            log.warning("%s: resuming a run trained with seed %s under seed %s", ckpt_dir,
                        meta["train_config"].get("seed"), cfg.seed)
        meta["best_val"] = math.inf if meta["best_val"] is None else meta["best_val"]
        log.info("resuming from %s at epoch %d", ckpt_dir, meta["epoch"])
    net, opt = dist.prepare(model, opt)
    deadline = time.monotonic() + cfg.max_minutes * 60
    while meta["stop_reason"] != "early_stop" and meta["epoch"] < cfg.max_epochs:
        epoch = meta["epoch"] + 1
        gen = _epoch_generator(cfg.seed, epoch)
        order = torch.randperm(len(train_items), generator=gen).tolist()
        batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        if len(batches[-1]) < min_rows:  # too small a remainder to give every rank a row
            batches.pop()
        t0, losses, out_of_time = time.monotonic(), [], False
        net.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed * _SEED_STRIDE + epoch)  # dropout, if any
            bar = tqdm(batches, desc=f"epoch {epoch}", leave=False,
                       disable=not (progress and dist.is_main))
            for idx in bar:
                batch = collate([train_items[i] for i in idx], gen)
                opt.zero_grad(set_to_none=True)
                local, finite = 0.0, True
                for m in range(cfg.grad_accum):
                    part = dist.split_batch(select_rows(batch, m, cfg.grad_accum))
                    rows = len(range(m, len(idx), cfg.grad_accum)[dist.rank::dist.world_size])
                    # This rank's share of the global batch: W * n / N, so DDP's mean over
                    # ranks turns the sum of micro-batch losses into the global batch mean.
                    share = dist.world_size * rows / len(idx)
                    with dist.no_sync(net, skip=m < cfg.grad_accum - 1):
                        loss = loss_fn(net, dist.to_device(part))
                        finite = finite and bool(torch.isfinite(loss))
                        dist.backward(loss * share if share != 1.0 else loss)
                    local += float(loss.detach()) * rows / len(idx)
                parts = dist.gather((local, finite, time.monotonic() > deadline))
                if not all(f for _, f, _ in parts):
                    raise ConfigError(f"non-finite training loss at epoch {epoch}; lower the lr")
                if cfg.grad_clip > 0:
                    dist.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                opt.step()
                meta["step"] += 1
                losses.append(sum(v for v, _, _ in parts))
                bar.set_postfix(loss=f"{np.mean(losses):.4f}")
                if any(t for _, _, t in parts):
                    out_of_time = True
                    break
        val = _evaluate(model, val_items, loss_fn, collate, cfg.batch_size, dist)
        meta["epoch"] = epoch
        meta["history"].append({"epoch": epoch, "train_loss": float(np.mean(losses)),
                                "val_loss": val, "seconds": round(time.monotonic() - t0, 3),
                                "partial": out_of_time})
        if val < meta["best_val"] - cfg.min_delta:
            meta.update(best_val=val, best_epoch=epoch, bad_epochs=0)
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            meta["bad_epochs"] += 1
        if meta["bad_epochs"] >= cfg.patience:
            meta["stop_reason"] = "early_stop"
        elif out_of_time:
            meta["stop_reason"] = "time_budget"
        else:
            meta["stop_reason"] = "max_epochs" if epoch >= cfg.max_epochs else ""
        msg = (f"epoch {epoch}: train {meta['history'][-1]['train_loss']:.4f} val {val:.4f} "
               f"(best {meta['best_val']:.4f} @ {meta['best_epoch']})")
        if progress and dist.is_main:
            tqdm.write(msg)
        log.debug(msg)
        if dist.is_main:
            save_checkpoint(ckpt_dir, model, opt, best, meta)
        dist.barrier()  # no rank runs ahead of the committed checkpoint
        if callback is not None:
            callback(meta)
        if out_of_time:
            log.info("wall-time budget of %.1f min reached at epoch %d", cfg.max_minutes, epoch)
            break
    if meta["epoch"] >= cfg.max_epochs and not meta["stop_reason"]:
        meta["stop_reason"] = "max_epochs"
    _load_module(model, best, ckpt_dir)
    model.eval()
    return TrainResult(epochs=meta["epoch"], steps=meta["step"], best_val=meta["best_val"],
                       best_epoch=meta["best_epoch"], stop_reason=meta["stop_reason"],
                       history=list(meta["history"]))
