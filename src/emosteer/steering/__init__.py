"""Steering: move speech along an emotion axis (latent), a prosody delta (prosody) or both,
offline (`Steerer`) or block by block in real time (`StreamingSteerer`)."""

from emosteer.steering.files import SWEEP_FILE, steer_file, sweep_targets, write_sweep
from emosteer.steering.steer import MODES, SteerConfig, Steerer
from emosteer.steering.stream import StreamConfig, StreamingSteerer

__all__ = ["MODES", "SWEEP_FILE", "SteerConfig", "Steerer", "StreamConfig", "StreamingSteerer",
           "steer_file", "sweep_targets", "write_sweep"]
