"""Running `extract` and `train-mapper` under Hugging Face accelerate, or in one plain process.

The same command runs on one CPU, one GPU or many processes:

    accelerate launch --multi_gpu --num_processes 8 $(which emosteer) train-mapper ...
    accelerate launch --multi_gpu --num_processes 2 $(which emosteer) extract ...   # CPU-only box

Note on CPUs: in accelerate 1.x `accelerate launch --cpu --num_processes N` starts N processes
only through MPI (--mpirun_hostfile); without it, it starts one (which works, as one process).
Several CPU processes over gloo come from the torchrun launcher, `--multi_gpu`, on a machine
without CUDA (or with ACCELERATE_USE_CPU=true): `from_env` then asks accelerate for CPU.

`Dist.from_env()` gives a context with the process's rank and world size. Under
`accelerate launch` (or torchrun: WORLD_SIZE > 1) it wraps an `accelerate.Accelerator`; in a plain
process it is a no-op stand-in with rank 0 of 1, so code written against it behaves exactly as
single-process code did (same RNG draws, same numerics, no accelerate import).

Contracts relied on by extract and training:
- `shard(n)` is rank r's share of n sorted items: indices i with i % world_size == r. It depends
  only on (n, rank, world_size), so every rank agrees on who does what without talking.
- `split_batch(batch)` gives rank r rows r, r + world, ... of a collated batch: every rank collates
  the whole global batch with the same generator, so random crops are drawn exactly as one
  process draws them, then keeps its rows.
- Output directories must be on a filesystem every rank sees (shared disk across nodes).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch

from emosteer.errors import ConfigError

log = logging.getLogger(__name__)

# `accelerate launch` exports this for every launcher (simple, multi-CPU, multi-GPU); its
# presence is how a process knows it was launched, even with a single process.
LAUNCH_ENV = "ACCELERATE_MIXED_PRECISION"


def launched() -> bool:
    """True under `accelerate launch` or a multi-process torchrun."""
    return LAUNCH_ENV in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def select_rows(batch: Any, start: int, step: int) -> Any:
    """Rows start, start + step, ... (dim 0) of every tensor in a (nested) batch; the batch
    itself when step is 1."""
    if step == 1:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch[start::step]
    if isinstance(batch, Mapping):
        return {k: select_rows(v, start, step) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(select_rows(v, start, step) for v in batch)
    return batch


class Dist:
    """Rank, world size, device and collective helpers; see the module docstring."""

    def __init__(self, accelerator: Any = None, device: str = "cpu"):
        self.accelerator = accelerator
        self._device = device

    @classmethod
    def from_env(cls, device: str = "cpu", bf16: bool = False) -> Dist:
        """An accelerate-backed context when launched, else the single-process one on `device`.

        Mixed precision is bf16 only when asked for and the process's device is CUDA (CPU
        autocast would change numerics for no speed); a launcher's --mixed_precision is
        overridden so that the flag means the same with and without accelerate."""
        if not launched():
            return cls(None, device)
        from accelerate import Accelerator, PartialState

        # Without CUDA, torchrun-style launches (`--multi_gpu`) must use gloo on CPU; accelerate
        # would otherwise start every process as a lone world of one, all doing all the work.
        # An explicit cpu=False would override the launcher's --cpu (ACCELERATE_USE_CPU).
        forced = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
        state = PartialState(cpu=forced or not torch.cuda.is_available())
        use_bf16 = bf16 and state.device.type == "cuda"
        acc = Accelerator(mixed_precision="bf16" if use_bf16 else "no",
                          cpu=state.device.type == "cpu")
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if acc.num_processes != world:
            raise ConfigError(f"launched as {world} processes but accelerate sees "
                              f"{acc.num_processes}: pass --cpu or a CUDA device per process")
        if acc.is_main_process:
            log.info("accelerate: %d processes on %s, mixed precision %s", acc.num_processes,
                     acc.device, acc.mixed_precision)
        return cls(acc, str(acc.device))

    @property
    def rank(self) -> int:
        return 0 if self.accelerator is None else int(self.accelerator.process_index)

    @property
    def world_size(self) -> int:
        return 1 if self.accelerator is None else int(self.accelerator.num_processes)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def device(self) -> str:
        return self._device

    def shard(self, n: int) -> list[int]:
        return list(range(self.rank, n, self.world_size))

    def barrier(self) -> None:
        if not self.distributed:
            return
        if self.device.startswith("cpu"):
            # accelerate's wait_for_everyone passes device_ids, which makes torch run the gloo
            # barrier on a CUDA device when one is visible: rank 1 on a one-GPU box then fails.
            import torch.distributed as tdist

            tdist.barrier()
        else:
            self.accelerator.wait_for_everyone()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (picklable Python objects from our own ranks)."""
        if not self.distributed:
            return [obj]
        import torch.distributed as tdist

        out: list[Any] = [None] * self.world_size
        tdist.all_gather_object(out, obj)
        return out

    def any(self, flag: bool) -> bool:
        """True on every rank if it is True on any: keeps ranks in lock-step on early exits."""
        return any(self.gather(bool(flag))) if self.distributed else bool(flag)

    def mean(self, value: float) -> float:
        values = self.gather(float(value))
        return sum(values) / len(values)

    def split_batch(self, batch: Any) -> Any:
        """Rows rank, rank + world, ... of every tensor in a (nested) batch."""
        return select_rows(batch, self.rank, self.world_size)

    # Training: thin pass-throughs that are plain torch in a single process.
    def prepare(self, model: torch.nn.Module, opt: torch.optim.Optimizer):
        if self.accelerator is None:
            return model.to(self.device), opt
        return self.accelerator.prepare(model, opt)

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model if self.accelerator is None else self.accelerator.unwrap_model(model)

    def no_sync(self, model: torch.nn.Module, skip: bool):
        """Skip DDP's gradient all-reduce on micro-batches that do not end an accumulation."""
        import contextlib

        if self.accelerator is None or not skip:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(model)

    def backward(self, loss: torch.Tensor) -> None:
        if self.accelerator is None:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def clip_grad_norm_(self, params, max_norm: float) -> None:
        if self.accelerator is None:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        else:
            self.accelerator.clip_grad_norm_(params, max_norm)

    def to_device(self, batch: Any) -> Any:
        if self.device == "cpu":
            return batch
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device)
        if isinstance(batch, Mapping):
            return {k: self.to_device(v) for k, v in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(self.to_device(v) for v in batch)
        return batch
