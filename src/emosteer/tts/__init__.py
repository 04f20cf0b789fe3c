"""Text-to-speech with emotion control: synthesis backends (Piper, espeak-ng, Coqui), and
steering the synthesis with an axis and prosody delta taken from two reference clips
(`speak`: text in, steered audio and its sidecar out)."""

from emosteer.tts.backends import BACKENDS, Voice, load_voice, synthesize, synthesize_long
from emosteer.tts.references import (
    AdaptConfig,
    TtsConfig,
    adapt_mapper,
    alpha_to_delta,
    reference_axis,
    reference_prosody,
    reference_steerer,
)
from emosteer.tts.speak import SpeakConfig, SpeakResult, speak

__all__ = ["BACKENDS", "AdaptConfig", "SpeakConfig", "SpeakResult", "TtsConfig", "Voice",
           "adapt_mapper", "alpha_to_delta",
           "load_voice", "reference_axis", "reference_prosody", "reference_steerer",
           "speak", "synthesize", "synthesize_long"]
