"""Prosody: measure the acoustic correlates of emotion (`correlates`) and impose a learned
change on speech through WORLD analysis-resynthesis (`world`)."""

from emosteer.prosody.correlates import (
    CORRELATE_KEYS,
    Prosody,
    acoustic_correlates,
    compare_correlates,
    extract_prosody,
    mean_correlates,
)
from emosteer.prosody.world import ProsodyDelta, apply_prosody, learn_prosody_delta

__all__ = ["CORRELATE_KEYS", "Prosody", "ProsodyDelta", "acoustic_correlates", "apply_prosody",
           "compare_correlates", "extract_prosody", "learn_prosody_delta", "mean_correlates"]
