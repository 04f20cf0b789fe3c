"""Smaller hardening fixes, one regression test each: import-embeddings refuses an empty
matrix; error messages show labels, not numpy reprs; steer checks its input before loading
models; written files follow the umask; a text file named .mp3 is called what it is; negative
numbers in any float syntax are values, not options."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from emosteer.artifacts import atomic_write_text, save_tensors, write_json
from emosteer.audio import load_audio
from emosteer.axes import compute_axis, holdout_scores
from emosteer.cli import _glue_number_lists, build_parser, main
from emosteer.errors import AudioError, ConfigError
from emosteer.evaluation.probe import probe_arrays
from emosteer.steering.steer import Steerer
from emosteer.training import split_by_speaker

# --- import-embeddings: (N, 0) and (0, D) ------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 0), (0, 4)])
def test_import_embeddings_refuses_an_empty_matrix(tmp_path, capsys, shape):
    np.save(tmp_path / "X.npy", np.zeros(shape, np.float32))
    (tmp_path / "i.csv").write_text("speaker,emotion\n" + "a,calm\n" * shape[0])
    rc = main(["import-embeddings", str(tmp_path / "X.npy"), str(tmp_path / "i.csv"),
               "--layer", "5", "--out", str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert rc == 2 and "X.npy" in err and "empty" in err, err
    assert not (tmp_path / "store" / "store.json").exists()


# --- no numpy reprs in messages ----------------------------------------------------------------

SPK = np.array(["a", "a", "b", "b"])
EMO = np.array(["calm", "calm", "angry", "angry"])  # no speaker has both
X = np.random.default_rng(0).normal(size=(4, 3))


@pytest.mark.parametrize("call", [
    lambda: compute_axis(X, SPK, EMO, "calm", "angry"),
    lambda: holdout_scores(X, SPK, EMO, "calm", "angry", np.array(["zz"])),
    lambda: split_by_speaker(np.array(["a", "a"])),
    lambda: split_by_speaker(SPK, val_speakers=np.array(["q"])),
    lambda: probe_arrays({1: X}, SPK, np.array(["calm"] * 4)),
    lambda: probe_arrays({1: X}, SPK, EMO, reference=np.str_("sad")),
], ids=["axis", "holdout", "split", "val", "probe", "reference"])
def test_messages_show_plain_labels(call):
    with pytest.raises(ConfigError) as info:
        call()
    assert "np." not in str(info.value) and "'" in str(info.value), str(info.value)


# --- steer checks --input before any model loads -----------------------------------------------

def test_steer_checks_its_input_before_loading_models(tiny_run, tmp_path, capsys, monkeypatch):
    loaded = []
    monkeypatch.setattr(Steerer, "from_artifacts",
                        classmethod(lambda cls, *a, **k: loaded.append(1)))
    for bad, why in ((tmp_path / "missing.wav", "file not found"), (tmp_path, "is a directory")):
        start = time.monotonic()
        rc = main(["steer", "--input", str(bad), "--delta", "0.5", "--output",
                   str(tmp_path / "out.wav"), "--run", str(tiny_run)])
        assert rc == 2 and why in capsys.readouterr().err
        assert time.monotonic() - start < 2.0
    (tmp_path / "empty.wav").touch()
    assert main(["steer", "--input", str(tmp_path / "empty.wav"), "--delta", "0.5", "--output",
                 str(tmp_path / "out.wav"), "--run", str(tiny_run)]) == 2
    assert "empty file" in capsys.readouterr().err
    assert loaded == [] and not (tmp_path / "out.wav").exists()


# --- written files follow the umask ------------------------------------------------------------

@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        paths = [atomic_write_text(tmp_path / "a.txt", "x"), write_json(tmp_path / "b.json", {}),
                 save_tensors(tmp_path / "c.safetensors", {"v": np.zeros(2, np.float32)})]
    finally:
        os.umask(old)
    for p in paths:
        assert Path(p).stat().st_mode & 0o777 == mode, p


# --- a text file named .mp3 --------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".mp3", ".wav", ".flac"])
def test_text_renamed_as_audio_is_called_not_audio(tmp_path, suffix):
    p = tmp_path / f"notes{suffix}"
    p.write_text("shopping list: eggs, milk, a better error message\n" * 20)
    with pytest.raises(AudioError) as info:
        load_audio(p)
    msg = str(info.value)
    assert p.name in msg and "not an audio file" in msg and "cannot decode" in msg, msg
    assert "pipe" not in msg and "does not exist" not in msg


# --- negative numbers are values ---------------------------------------------------------------

@pytest.mark.parametrize("text,value", [("-1", -1.0), ("-1.", -1.0), ("-.5", -0.5),
                                        ("-1e-1", -0.1), ("-2E0", -2.0)])
def test_negative_numbers_in_any_float_syntax_are_values(text, value):
    args = build_parser().parse_args(_glue_number_lists(
        ["steer", "--input", "x.wav", "--output", "y.wav", "--delta", text]))
    assert args.delta == value
    args = build_parser().parse_args(_glue_number_lists(
        ["prosody", "apply", "x.wav", "--delta-file", "d.json", "--out", "y.wav",
         "--scale", text]))
    assert args.scale == value


def test_negative_number_lists_and_infinities_reach_the_flags_check(tmp_path, capsys):
    args = build_parser().parse_args(_glue_number_lists(
        ["steer", "--input", "x.wav", "--output", "d", "--deltas", "-1e-1,-0.5,1"]))
    assert args.deltas == "-1e-1,-0.5,1"
    (tmp_path / "in.wav").write_bytes(b"RIFF")
    rc = main(["steer", "--input", str(tmp_path / "in.wav"), "--delta", "-inf", "--output",
               str(tmp_path / "o.wav"), "--run", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "expected one argument" not in err, err
