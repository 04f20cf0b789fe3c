"""Offline fallback for the pipeline's encoder: a random-init model of the requested architecture.

`emosteer demo` must run on a machine that cannot reach the Hugging Face hub. When the requested
checkpoint cannot be loaded, the architecture of the well-known base models is known without a
download (transformers' default configs *are* the base architectures), so a random-init model of
the same shape stands in, and the run says so loudly: its numbers describe an untrained encoder,
which is the standard control for "emerges from pretraining", not the pretrained model. The
hub probe and the table of known architectures live in `emosteer.embeddings.hub`, which
`load_encoder` uses too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from emosteer.embeddings.encoders import load_encoder
from emosteer.embeddings.hub import KNOWN_ARCHITECTURES, architecture_config, hub_reachable
from emosteer.errors import ConfigError

log = logging.getLogger(__name__)


def _cached(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(name, "config.json"), str)


def architecture_dir(name: str, out_dir: str | os.PathLike) -> Path:
    """Write the config of a known architecture to `out_dir` (no weights) and return it."""
    import transformers

    if name not in KNOWN_ARCHITECTURES:
        raise ConfigError(f"{name}: cannot be loaded offline and its architecture is not known "
                          f"without a download (known: {', '.join(sorted(KNOWN_ARCHITECTURES))})")
    config, normalize = architecture_config(name)
    out_dir = Path(out_dir)
    config.save_pretrained(out_dir)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=normalize, return_attention_mask=normalize
                                          ).save_pretrained(out_dir)
    return out_dir


def load_encoder_or_control(name: str, layers: Sequence[int], control_dir: str | os.PathLike, *,
                            device: str = "cpu", bf16: bool = False, random_init: bool = False,
                            fallback: bool = True, seed: int = 0):
    """(Encoder, note). The note is empty when `name` loaded as asked, else it says what stands in."""
    local = Path(name).exists()
    if local or random_init or _cached(name) or hub_reachable():
        try:
            return load_encoder(name, layers, device=device, bf16=bf16, random_init=random_init,
                                seed=seed), ""
        except ConfigError as e:
            if not fallback or local:
                raise
            reason = str(e)
    else:
        if not fallback:
            raise ConfigError(f"{name}: the model hub is not reachable and the model is not "
                              "cached; give a local checkpoint directory")
        reason = "the model hub is not reachable and the model is not cached"
    path = architecture_dir(name, control_dir)
    enc = load_encoder(str(path.resolve()), layers, device=device, bf16=bf16, random_init=True,
                       seed=seed)
    note = (f"{name} could not be loaded ({reason.splitlines()[0][:200]}); using a RANDOM-INIT "
            f"model of the same architecture (seed {seed}). Results describe an untrained "
            "encoder, the control for 'emerges from pretraining', not the pretrained model.")
    return enc, note
