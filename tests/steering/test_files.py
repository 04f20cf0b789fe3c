"""steer_file and write_sweep called directly (no CLI): offline and streamed, one delta or a
sweep with its sweep.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emosteer.audio import SAMPLE_RATE, load_audio, save_audio
from emosteer.axes import wrap_vector
from emosteer.errors import ConfigError
from emosteer.prosody.world import ProsodyDelta
from emosteer.steering.files import SWEEP_FILE, steer_file, sweep_targets, write_sweep
from emosteer.steering.steer import SteerConfig, Steerer
from emosteer.steering.stream import StreamConfig


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    t = np.arange(int(1.0 * SAMPLE_RATE)) / SAMPLE_RATE
    wav = (0.2 * sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 12))).astype(np.float32)
    path = tmp_path_factory.mktemp("files") / "in.wav"
    save_audio(path, wav, SAMPLE_RATE)
    return path


@pytest.fixture(scope="module")
def steerer():
    axis = wrap_vector(np.ones(8), model="m", layer=1, source="calm", target="angry")
    return Steerer(axis, prosody=ProsodyDelta(f0_shift_st=3.0, f0_range_ratio=1.0, tilt_db=0.0,
                                              energy_db=0.0, rate_ratio=1.0, source="calm",
                                              target="angry"))


def test_sweep_writes_every_delta_and_its_index(steerer, clip, tmp_path):
    deltas = (-1.0, 0.0, 1.0)
    targets = sweep_targets(clip, tmp_path, deltas, "prosody")
    assert [t.name for t in targets] == ["in_prosody_-1.00.wav", "in_prosody_+0.00.wav",
                                         "in_prosody_+1.00.wav"]
    rows = steer_file(steerer, clip, deltas, targets, SteerConfig(mode="prosody"),
                      sweep_dir=tmp_path)
    assert [r["delta"] for r in rows] == list(deltas) and all(t.is_file() for t in targets)
    index = json.loads((tmp_path / SWEEP_FILE).read_text())
    assert index["input"] == str(clip) and index["config"]["mode"] == "prosody"
    assert [i["path"] for i in index["items"]] == [t.name for t in targets]


def test_stream_single_delta_records_latency_and_keeps_length(steerer, clip, tmp_path):
    out = tmp_path / "o.wav"
    rows = steer_file(steerer, clip, [1.0], [out], StreamConfig(mode="prosody", block_ms=80))
    assert rows[0]["latency"]["algorithmic_ms"] == pytest.approx(180.0)
    assert abs(len(load_audio(out)) - len(load_audio(clip))) <= 2
    assert not (tmp_path / SWEEP_FILE).exists()  # no sweep_dir: no index
    with pytest.raises(ConfigError, match="2 deltas but 1"):
        steer_file(steerer, clip, [0.0, 1.0], [out], SteerConfig(mode="prosody"))


def test_write_sweep_keeps_extra_fields(tmp_path):
    path = write_sweep(tmp_path, "piper synthesis", [{"delta": 0.5, "path": "a.wav"}],
                       speaker="piper", emotion="neutral")
    assert json.loads(path.read_text()) == {
        "input": "piper synthesis", "speaker": "piper", "emotion": "neutral",
        "items": [{"delta": 0.5, "path": "a.wav"}]}
