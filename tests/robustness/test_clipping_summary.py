"""Log noise: "audio clips (peak 1.000); continuing" came once or twice per file, hundreds of
times in a RAVDESS run. Batch commands now log one summary line (count and worst files); a
single load outside a batch still warns for its file."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from emosteer import audio
from emosteer.audio import SAMPLE_RATE, clipping_summary, load_audio, save_audio
from emosteer.cli import main

N_CLIPPED = 7


def clipped_corpus(root: Path, n: int = N_CLIPPED) -> Path:
    """n loud, clipped tones (peak at full scale) with a CSV manifest, two speakers x calm/angry."""
    rng = np.random.default_rng(1)
    rows = ["path,speaker,emotion"]
    t = np.arange(int(0.8 * SAMPLE_RATE)) / SAMPLE_RATE
    for i in range(n):
        f0 = rng.uniform(110, 220)
        wav = 1.5 * np.sin(2 * np.pi * f0 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
        save_audio(root / f"loud{i}.wav", wav.astype(np.float32), SAMPLE_RATE)  # clipped to +-1
        rows.append(f"loud{i}.wav,s{i % 2},{('calm', 'angry')[(i // 2) % 2]}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def clip_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "emosteer.audio" and "clip" in r.getMessage()]


def test_one_summary_line_for_many_files(tmp_path, caplog):
    clipped_corpus(tmp_path)
    files = sorted(tmp_path.glob("loud*.wav"))
    with caplog.at_level(logging.WARNING, logger="emosteer.audio"):
        with clipping_summary() as summary:
            for f in files * 2:  # each file read twice, as a batch command may
                load_audio(f)
        assert len(summary.peaks) == N_CLIPPED
    (line,) = clip_lines(caplog)
    assert f"{N_CLIPPED} file(s) clip" in line and "and 2 more" in line
    assert sum(str(f) in line for f in files) == audio.CLIPPED_LISTED
    assert not any(isinstance(f, audio.ClippingSummary) for f in audio.log.filters)


def test_nested_summaries_share_one_line_and_single_loads_still_warn(tmp_path, caplog):
    clipped_corpus(tmp_path, n=2)
    with caplog.at_level(logging.WARNING, logger="emosteer.audio"):
        with clipping_summary() as outer:
            with clipping_summary() as inner:
                load_audio(tmp_path / "loud0.wav")
            assert inner is outer and clip_lines(caplog) == []
            load_audio(tmp_path / "loud1.wav")
        assert len(clip_lines(caplog)) == 1
        load_audio(tmp_path / "loud0.wav")  # no batch around it: its own warning, as before
    assert len(clip_lines(caplog)) == 2 and "loud0.wav: audio clips" in clip_lines(caplog)[1]


def test_the_filter_goes_even_when_the_run_fails(tmp_path, caplog):
    clipped_corpus(tmp_path, n=1)
    with caplog.at_level(logging.WARNING, logger="emosteer.audio"):
        with pytest.raises(RuntimeError):
            with clipping_summary():
                load_audio(tmp_path / "loud0.wav")
                raise RuntimeError("boom")
    assert len(clip_lines(caplog)) == 1 and audio.log.filters == []


@pytest.mark.parametrize("command", ["extract", "prosody learn"])
def test_batch_commands_log_one_clipping_line(tmp_path, tiny_model_dir, caplog, command):
    manifest = clipped_corpus(tmp_path)
    out = tmp_path / "out"
    argv = {
        "extract": ["extract", str(manifest), "--format", "csv", "--model", str(tiny_model_dir),
                    "--layers", "1", "--out", str(out), "--no-progress"],
        "prosody learn": ["prosody", "learn", str(manifest), "--format", "csv", "--source",
                          "calm", "--target", "angry", "--components", "f0,range,tilt,energy,rate",
                          "--out", str(tmp_path / "delta.json")],
    }[command]
    with caplog.at_level(logging.INFO):
        assert main(argv) == 0
    lines = clip_lines(caplog)
    assert len(lines) == 1 and f"{N_CLIPPED} file(s) clip" in lines[0], lines
