"""emosteer: find emotion in the latent space of self-supervised speech models and steer along it.

Pipeline (one module per stage): audio -> corpora -> encoders -> store -> axes -> mel -> mapper
-> vocoders -> prosody -> steer -> tts -> evaluate -> report -> app / study.
"""

__version__ = "0.1.0"

from emosteer.errors import EmosteerError  # noqa: E402

__all__ = ["EmosteerError", "__version__"]
