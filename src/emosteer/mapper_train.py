"""Training the mapper: speaker-disjoint split, mean-mel initialisation, `training.fit`, and a
report with validation and unseen-speaker MCD (`emosteer train-mapper`, the pipeline)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emosteer.artifacts import provenance
from emosteer.errors import ConfigError
from emosteer.mapper import Mapper, MapperConfig, load_mapper, mapper_loss
from emosteer.mapper_data import collate_examples, evaluate_mcd, mean_mel_mcd


def _batch_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    config = getattr(model, "module", model).config  # DDP wraps the Mapper as .module
    pred = model(batch["x"], batch["prosody"] if config.use_prosody else None, batch["lengths"])
    return mapper_loss(pred, batch["mel"], batch["mask"])


def train_mapper(examples, cfg: MapperConfig, out_dir: str | Path, *, train_cfg=None,
                 val_speakers=None, train_only_speakers=(), init: str | Path | None = None,
                 test_examples=(), resume: bool = True, progress: bool = True, callback=None,
                 dist=None):
    """Train a mapper on `examples` (MapperExample) and save it to `out_dir`.

    Validation speakers are `val_speakers` or a seeded speaker-disjoint split; speakers in
    `train_only_speakers` (unlabelled extra audio) are never held out. `init` fine-tunes an
    existing mapper (same structure) instead of starting from scratch. `test_examples` (unseen
    speakers, never trained or validated on) get their MCD reported. Checkpoints go to
    out_dir/checkpoint (resumed when `resume`). Returns (mapper, report dict), the report also
    saved as out_dir/train_report.json. Under `dist` (emosteer.distributed.Dist) training is
    data-parallel and only rank 0 writes and reports (other ranks return report None)."""
    import logging

    from emosteer.artifacts import write_json
    from emosteer.training import TrainConfig, fit, split_by_speaker

    train_cfg = train_cfg or TrainConfig()
    out_dir = Path(out_dir)
    if not examples:
        raise ConfigError("no training utterances")
    if examples[0].frames.shape[1] != cfg.in_dim or examples[0].mel.shape[0] != cfg.n_mels:
        raise ConfigError(f"examples have D={examples[0].frames.shape[1]}, n_mels="
                          f"{examples[0].mel.shape[0]}; config expects {cfg.in_dim}, {cfg.n_mels}")
    extra = set(train_only_speakers)
    pool = [i for i, e in enumerate(examples) if e.speaker not in extra]
    speakers = [examples[i].speaker for i in pool]
    if val_speakers or len(set(speakers)) >= 2:
        tr, va = split_by_speaker(speakers, val_speakers, seed=train_cfg.seed)
        train_idx, val_idx = [pool[i] for i in tr], [pool[i] for i in va]
    else:
        logging.getLogger(__name__).warning(
            "fewer than 2 labelled speakers: validating on the training data")
        train_idx, val_idx = pool, []
    train_idx += [i for i, e in enumerate(examples) if e.speaker in extra]
    train_set = [examples[i] for i in sorted(train_idx)]
    val_set = [examples[i] for i in val_idx]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_cfg.seed)
        model = Mapper(cfg)
    if init is not None:
        base = load_mapper(init)
        if base.config.structure() != cfg.structure():
            raise ConfigError(f"{init}: mapper structure {base.config.structure()} differs from "
                              f"the requested {cfg.structure()}")
        model.load_state_dict(base.state_dict(), strict=True)
    else:
        # Start the output at the mean training log-mel per band: the first steps then learn
        # structure instead of the global offset from the -11.5 floor.
        band_mean = np.mean(np.concatenate([e.mel for e in train_set], axis=1), axis=1)
        with torch.no_grad():
            model.out_proj.bias.copy_(torch.from_numpy(band_mean.astype(np.float32)))
    floor = cfg.mel_config.log_floor

    def collate(items, gen):
        return collate_examples(items, gen, cfg.in_rate, cfg.out_rate, floor)

    result = fit(model, train_set, val_set, loss_fn=_batch_loss, collate=collate, cfg=train_cfg,
                 ckpt_dir=out_dir / "checkpoint", resume=resume, progress=progress,
                 callback=callback, dist=dist)
    model.cpu()
    if dist is not None and not dist.is_main:
        return model, None
    model.save(out_dir)
    report = {"result": dataclasses.asdict(result), "train_config": train_cfg,
              "train_speakers": sorted({e.speaker for e in train_set}),
              "val_speakers": sorted({e.speaker for e in val_set}),
              "n_train": len(train_set), "n_val": len(val_set),
              "val_mcd_db": evaluate_mcd(model, val_set) if val_set else None,
              "test_speakers": sorted({e.speaker for e in test_examples}),
              "test_mcd_db": evaluate_mcd(model, test_examples) if test_examples else None,
              "test_mean_mel_mcd_db": (mean_mel_mcd(train_set, test_examples)
                                       if test_examples else None),
              "init": str(init) if init else None, "provenance": provenance()}
    write_json(out_dir / "train_report.json", report)
    return model, report
