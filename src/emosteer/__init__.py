"""emosteer: find emotion in the latent space of self-supervised speech models and steer along it.

The method, in its own verbs: `scan_corpus` -> `load_encoder` -> `extract_store` -> `build_axis` (plus
`learn_prosody_delta`) -> `train_mapper_on_corpus` -> `Steerer.from_artifacts(...).steer(wav, delta)`.
Subpackages, one per stage: corpora, embeddings, axes, prosody, bank, synthesis, steering,
tts, evaluation, report, pipeline, app, study, cli.

The face is lazy (PEP 562): `import emosteer` imports no torch; each name loads its
subpackage on first use.
"""

from __future__ import annotations

import importlib

from emosteer.errors import EmosteerError

__version__ = "0.1.0"

_LAZY = {
    "scan_corpus": "emosteer.corpora",
    "load_encoder": "emosteer.embeddings",
    "extract_store": "emosteer.embeddings",
    "EmbeddingStore": "emosteer.embeddings",
    "build_axis": "emosteer.axes",
    "EmotionAxis": "emosteer.axes",
    "learn_prosody_delta": "emosteer.prosody",
    "ProsodyDelta": "emosteer.prosody",
    "build_bank": "emosteer.bank",
    "EmotionBank": "emosteer.bank",
    "train_mapper": "emosteer.synthesis",
    "train_mapper_on_corpus": "emosteer.synthesis",
    "load_mapper": "emosteer.synthesis",
    "load_vocoder": "emosteer.synthesis",
    "Steerer": "emosteer.steering",
    "SteerConfig": "emosteer.steering",
}

__all__ = ["EmosteerError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'emosteer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
