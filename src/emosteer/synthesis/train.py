"""Training the mapper: speaker-disjoint split, mean-mel initialisation, `training.fit`, and a
report with validation and unseen-speaker MCD (the pipeline); `train_mapper_on_corpus` adds
the corpus scan, speaker selection and encoding (`emosteer train-mapper`)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emosteer.artifacts import load_config, provenance, refuse_overwrite, write_json
from emosteer.audio import AUDIO_SUFFIXES
from emosteer.corpora.formats import match_speakers, scan_corpus
from emosteer.distributed import Dist
from emosteer.embeddings.encoders import load_encoder
from emosteer.errors import ConfigError
from emosteer.synthesis.data import collate_examples, evaluate_mcd, mean_mel_mcd, prepare_examples
from emosteer.synthesis.mapper import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    Mapper,
    MapperConfig,
    load_mapper,
    mapper_loss,
)
from emosteer.synthesis.mel import HIFIGAN_22K, MelConfig
from emosteer.synthesis.vocoders import load_vocoder
from emosteer.training import TrainConfig, fit, split_by_speaker


def _batch_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    config = getattr(model, "module", model).config  # DDP wraps the Mapper as .module
    pred = model(batch["x"], batch["prosody"] if config.use_prosody else None, batch["lengths"])
    return mapper_loss(pred, batch["mel"], batch["mask"], log=config.mel_config.log)


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
              "test_mean_mel_mcd_db": (mean_mel_mcd(train_set, test_examples, cfg.mel_config.log)
                                       if test_examples else None),
              "init": str(init) if init else None, "provenance": provenance()}
    write_json(out_dir / "train_report.json", report)
    return model, report


@dataclass(frozen=True)
class _Audio:
    """An unlabelled recording (extra audio): all that data preparation needs."""

    utt_id: str
    path: Path
    speaker: str


def extra_audio(root: str | os.PathLike) -> list[_Audio]:
    """Every audio file under `root`, as unlabelled utterances of one speaker `extra_<name>`."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--extra-audio {root}: not a directory")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ConfigError(f"--extra-audio {root}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return [_Audio(f"extra/{p.relative_to(root).with_suffix('')}", p, f"extra_{root.name}")
            for p in files]


def target_mel(mel: MelConfig | None = None, vocoder: str | os.PathLike | None = None,
               mel_name: str | None = None) -> MelConfig:
    """The mapper's target mel: `vocoder`'s `mel_config` (the vocoder, a registered name, hub
    id or directory, is loaded once on the CPU to read it), else `mel`, else HIFIGAN_22K.
    Given both, the vocoder must take `mel` (Griffin-Lim adopts it; `mel_name`, e.g.
    "--mel ssl16k", names it in the error)."""
    if vocoder is None:
        return HIFIGAN_22K if mel is None else mel
    if mel is None:
        return load_vocoder(vocoder, "cpu").mel_config
    try:
        return load_vocoder(vocoder, "cpu", mel_config=mel).mel_config
    except ConfigError as e:
        raise ConfigError(f"{mel_name or 'the requested mel'} and --vocoder {vocoder} disagree: "
                          f"{e}") from e


def train_mapper_on_corpus(out_dir: str | os.PathLike, model: str, layer: int = 5, *,
                           root: str | os.PathLike | None = None, format: str | None = None,
                           extra: str | os.PathLike | None = None,
                           speakers: Sequence[str] = (), val_speakers: Sequence[str] = (),
                           test_speakers: Sequence[str] = (), mel: MelConfig | None = None,
                           vocoder: str | os.PathLike | None = None, mel_name: str | None = None,
                           init: str | os.PathLike | None = None, random_init: bool = False,
                           train_cfg: TrainConfig | None = None, hidden: int = 256,
                           n_blocks: int = 6, n_transformer_layers: int = 0,
                           use_prosody: bool = True, device: str = "cpu", bf16: bool = False,
                           force: bool = False, progress: bool = True) -> dict | None:
    """Train a mapper from the SSL encoder `model` (layer `layer`) to `mel` on a corpus
    (`root` in `format`) and/or a directory of unlabelled `extra` audio; save it to OUT_DIR.

    The target mel is `mel`, or with `vocoder` (a registered name, hub id or directory, see
    `load_vocoder`) exactly that vocoder's `mel_config` (`mel`, if also given, must equal it,
    `mel_name` naming it in the error); HIFIGAN_22K when neither is given. The mapper records
    `vocoder`, which steering's "auto" then loads.

    Speakers are named as `emosteer.corpora.match_speakers` reads them: `speakers` (default:
    all but the test speakers) are trained and validated on, `val_speakers` (default: a
    seeded 20%) validate, `test_speakers` are never trained on and get their MCD reported.
    `init` fine-tunes that mapper (same layer and mel). The encoder is built with
    `train_cfg.seed` (a random-init control's weights depend on it). Encoded utterances are
    cached in OUT_DIR/cache; a killed run resumes from OUT_DIR/checkpoint unless `force`,
    which also overwrites a finished mapper. Under `accelerate launch` encoding is sharded
    and training data-parallel. Returns train_report.json's content (None off rank 0)."""
    out_dir = Path(out_dir)
    train_cfg = train_cfg or TrainConfig()
    if root is None and extra is None:
        raise ConfigError("give a corpus (ROOT --format F) and/or --extra-audio DIR")
    if root is not None and not format:
        raise ConfigError("--format is required with a corpus")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: exists and is not a directory")
    refuse_overwrite(out_dir / WEIGHTS_FILE, force)
    mel = target_mel(mel, vocoder, mel_name)
    init_cfg = load_config(MapperConfig, Path(init) / CONFIG_FILE) if init else None
    if init_cfg is not None and (init_cfg.layer != layer or init_cfg.mel_config != mel):
        raise ConfigError(f"--init {init}: trained on layer {init_cfg.layer} with "
                          f"{init_cfg.mel_config}; pass the same --layer and --mel/--vocoder")

    utts = scan_corpus(root, format) if root is not None else []
    all_speakers = {u.speaker for u in utts}
    test = set(match_speakers(test_speakers, all_speakers, "--test-speakers"))
    pool = (set(match_speakers(speakers, all_speakers, "--speakers")) if speakers
            else all_speakers - test)
    if pool & test:
        raise ConfigError(f"--speakers and --test-speakers overlap: {sorted(pool & test)}")
    val = set(match_speakers(val_speakers, pool, "--val-speakers"))
    unlabelled = extra_audio(extra) if extra is not None else []
    train_utts = [u for u in utts if u.speaker in pool] + unlabelled
    test_utts = [u for u in utts if u.speaker in test]

    dist = Dist.from_env(device, bf16)
    encoder = load_encoder(model, layers=(layer,), device=dist.device, bf16=bf16,
                           random_init=random_init, seed=train_cfg.seed)
    progress = progress and dist.is_main
    cache = out_dir / "cache"
    if dist.distributed:  # each rank fills the shared cache with its share; then all read it
        every = train_utts + test_utts
        prepare_examples([every[i] for i in dist.shard(len(every))], encoder, layer, mel,
                         cache, progress=progress)
        dist.barrier()
    examples = prepare_examples(train_utts, encoder, layer, mel, cache, progress=progress)
    tests = prepare_examples(test_utts, encoder, layer, mel, cache, progress=progress)
    ec = encoder.config
    if init_cfg is not None:  # the frames now come from this encoder: record its identity
        cfg = dataclasses.replace(init_cfg, encoder=ec.identity())
    else:
        cfg = MapperConfig.for_mel(mel, in_dim=ec.hidden_size, encoder=ec.identity(),
                                   layer=layer, in_rate=ec.frame_rate, hidden=hidden,
                                   n_blocks=n_blocks, n_transformer_layers=n_transformer_layers,
                                   use_prosody=use_prosody,
                                   vocoder="" if vocoder is None else str(vocoder))
    if force and dist.is_main and (out_dir / "checkpoint").exists():
        shutil.rmtree(out_dir / "checkpoint")
    dist.barrier()
    _, report = train_mapper(examples, cfg, out_dir, train_cfg=train_cfg,
                             val_speakers=sorted(val) or None,
                             train_only_speakers={u.speaker for u in unlabelled}, init=init,
                             test_examples=tests, progress=progress, dist=dist)
    return report
