"""Prosody: measure the acoustic correlates of emotion (`correlates`) and impose a learned
change on speech through WORLD analysis-resynthesis (`world`)."""

from emosteer.prosody.correlates import (
    CORRELATE_KEYS,
    Prosody,
    acoustic_correlates,
    compare_correlates,
    envelope_correlates,
    extract_prosody,
    mean_correlates,
)
from emosteer.prosody.world import (
    COMPONENTS,
    LEGACY_COMPONENTS,
    NEUTRAL,
    ProsodyDelta,
    analyse_clip,
    apply_prosody,
    learn_prosody_delta,
    parse_components,
)

__all__ = ["COMPONENTS", "CORRELATE_KEYS", "LEGACY_COMPONENTS", "NEUTRAL", "Prosody",
           "ProsodyDelta", "acoustic_correlates", "analyse_clip", "apply_prosody",
           "compare_correlates", "envelope_correlates", "extract_prosody", "learn_prosody_delta",
           "mean_correlates", "parse_components"]
