"""steer refuses a delta beyond MAX_DELTA with one line and rc 2, in every entry point; a
delta at the bound still works (hostile review: 1e9 overflowed, -1e9 divided by zero, 1e3
wrote a 5 ms file from 3.2 s, latent 10 wrote garbage)."""

from __future__ import annotations

import numpy as np
import pytest

from emosteer.audio import SAMPLE_RATE, save_audio
from emosteer.cli import main
from emosteer.errors import ConfigError
from emosteer.steering.steer import MAX_DELTA, SteerConfig, Steerer
from emosteer.steering.stream import StreamConfig, StreamingSteerer
from signals import sine


@pytest.fixture(scope="module")
def steerer(tiny_run) -> Steerer:
    return Steerer.from_artifacts(axis=tiny_run / "axis", mapper=tiny_run / "mapper", mode="both")


@pytest.mark.parametrize("delta", ["1e9", "-1e9", "1e3", "10", "nan", "inf"])
@pytest.mark.parametrize("mode", ["prosody", "both", "latent"])
def test_cli_refuses_delta_out_of_bounds(tiny_run, tmp_path, capsys, delta, mode):
    src = tmp_path / "in.wav"
    save_audio(src, sine(150, 1.0, SAMPLE_RATE, 0.3), SAMPLE_RATE)
    out = tmp_path / "out.wav"
    rc = main(["steer", "--input", str(src), f"--delta={delta}", "--output", str(out),
               "--axis", str(tiny_run / "axis"), "--mapper", str(tiny_run / "mapper"),
               "--mode", mode])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err and f"[-{MAX_DELTA:g}, {MAX_DELTA:g}]" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_api_and_stream_refuse_and_accept_the_bound(steerer):
    wav = sine(150, 1.0, SAMPLE_RATE, 0.3)
    with pytest.raises(ConfigError, match="mean distance"):
        steerer.steer(wav, MAX_DELTA * 1.01, SteerConfig(mode="prosody"))
    with pytest.raises(ConfigError, match="must lie in"):
        StreamingSteerer(steerer, -1e9, StreamConfig(mode="prosody"))
    y, sr = steerer.steer(wav, -MAX_DELTA, SteerConfig(mode="prosody"))
    assert np.isfinite(y).all() and len(y) > 0.3 * sr
