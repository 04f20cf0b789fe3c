"""Does it work? The layer probe (with its random-init and MFCC controls and plots), and the
evaluation of steered speech over held-out speakers, deltas and modes."""

from emosteer.evaluation.controls import CONTROLS, build_controls
from emosteer.evaluation.evaluate import EvaluateConfig, evaluate
from emosteer.evaluation.probe import ProbeConfig, run_probe

__all__ = ["CONTROLS", "EvaluateConfig", "ProbeConfig", "build_controls", "evaluate", "run_probe"]
