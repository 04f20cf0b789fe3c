"""The hostile CLI sweep: the README's commands, in process through emosteer.cli.main, on hostile
audio (empty, truncated, text named as audio, NaN samples, an implausible header rate, silence,
a directory, a missing file) and on hostile artifacts (corrupt JSON, a pickle posing as
safetensors, wrong dimensions, NaN, inf). Each case must end with a one-line error (status 2,
or 1 where a batch reports and skips), no Python traceback anywhere (stderr or log), no
exception out of main, and nothing left behind at the command's output paths (no temp files
either). Artifacts come from the tiny fixtures in conftest (tiny_run, tiny_model_dir)."""

from __future__ import annotations

import io
import json
import logging
import pickle
import shutil
import traceback
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emosteer.artifacts import load_tensors, save_tensors
from emosteer.audio import SAMPLE_RATE, save_audio
from emosteer.cli import main
from signals import sine

TRACEBACK = "Traceback (most recent call last)"
PICKLE = pickle.dumps({"weights": [1.0, 2.0], "note": "a pickle, not safetensors"})


# --- hostile inputs -----------------------------------------------------------------------------

def _wav_bytes(x: np.ndarray, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, SAMPLE_RATE, format="WAV", subtype=subtype)
    return buf.getvalue()


def _hostile_audio(d: Path) -> dict[str, Path]:
    good = _wav_bytes(sine(180, 1.0, SAMPLE_RATE, 0.3))
    nan = sine(180, 1.0, SAMPLE_RATE, 0.3)
    nan[100] = np.nan
    huge = bytearray(good)
    huge[24:28] = (1).to_bytes(4, "little")  # 1 Hz: resampling to 16 kHz would blow up
    huge[28:32] = (2).to_bytes(4, "little")
    files = {
        "empty": b"",
        "truncated": good[:20],
        "text_wav": b"not audio at all, just words\n" * 40,
        "text_mp3": b"not audio at all, just words\n" * 40,
        "nan": _wav_bytes(nan, "FLOAT"),
        "huge_header": bytes(huge),
        "silent": _wav_bytes(np.zeros(SAMPLE_RATE, np.float32)),
    }
    out = {}
    for name, data in files.items():
        p = d / (f"{name}.mp3" if name == "text_mp3" else f"{name}.wav")
        p.write_bytes(data)
        out[name] = p
    (d / "directory.wav").mkdir()
    out["directory"] = d / "directory.wav"
    out["missing"] = d / "missing.wav"
    return out


def _break_json(path: Path, change=None) -> None:
    if change is None:
        path.write_text('{"config": {"dim": 32,')  # cut off mid-object
    else:
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))  # NaN / Infinity literals as json writes them


def _hostile_runs(tiny_run: Path, d: Path) -> dict[str, Path]:
    """Copies of the tiny run, each with one artifact broken."""
    def variant(name: str, breaker) -> Path:
        root = Path(shutil.copytree(tiny_run, d / name))
        breaker(root)
        return root

    def tensors(path: Path, change) -> None:
        t = load_tensors(path)
        change(t)
        save_tensors(path, t)

    def set_vector(value):
        return lambda t: t["vector"].__setitem__(0, value)

    return {
        "axis_json_corrupt": variant("a1", lambda r: _break_json(r / "axis" / "axis.json")),
        "axis_pickle": variant("a2", lambda r: (r / "axis" / "axis.safetensors").write_bytes(PICKLE)),
        "axis_nan_calibration": variant("a3", lambda r: _break_json(
            r / "axis" / "axis.json", lambda j: j["diagnostics"].__setitem__("calibration", float("nan")))),
        "axis_inf_vector": variant("a4", lambda r: tensors(r / "axis" / "axis.safetensors",
                                                           set_vector(np.inf))),
        "axis_wrong_dims": variant("a5", lambda r: (
            save_tensors(r / "axis" / "axis.safetensors", {"vector": np.ones(64, np.float32)}),
            _break_json(r / "axis" / "axis.json", lambda j: j["config"].__setitem__("dim", 64)))),
        "mapper_json_corrupt": variant("m1", lambda r: _break_json(r / "mapper" / "mapper.json")),
        "mapper_pickle": variant("m2", lambda r: (r / "mapper" / "mapper.safetensors")
                                 .write_bytes(PICKLE)),
        "mapper_nan_weights": variant("m3", lambda r: tensors(
            r / "mapper" / "mapper.safetensors", lambda t: t["out_proj.bias"].__setitem__(0, np.nan))),
        "mapper_wrong_dims": variant("m4", lambda r: _break_json(
            r / "mapper" / "mapper.json", lambda j: j.__setitem__("in_dim", 768))),
        "mapper_inf_rate": variant("m5", lambda r: _break_json(
            r / "mapper" / "mapper.json", lambda j: j.__setitem__("in_rate", float("inf")))),
        "prosody_json_corrupt": variant("p1", lambda r: _break_json(r / "axis" / "prosody.json")),
        "prosody_nan": variant("p2", lambda r: _break_json(
            r / "axis" / "prosody.json", lambda j: j.__setitem__("f0_shift_st", float("nan")))),
    }


def _stores(d: Path) -> dict[str, Path]:
    X = np.random.default_rng(0).normal(size=(8, 32)).astype(np.float32)
    np.save(d / "X.npy", X)
    (d / "index.csv").write_text("speaker,emotion\n" + "".join(
        f"s{i % 2},{('calm', 'angry')[(i // 2) % 2]}\n" for i in range(8)))
    assert main(["import-embeddings", str(d / "X.npy"), str(d / "index.csv"), "--layer", "2",
                 "--out", str(d / "good_store")]) == 0

    def variant(name: str, breaker) -> Path:
        root = Path(shutil.copytree(d / "good_store", d / name))
        breaker(root)
        return root

    return {
        "store_json_corrupt": variant("s1", lambda r: _break_json(r / "store.json")),
        "store_pickle": variant("s2", lambda r: (r / "pooled.safetensors").write_bytes(PICKLE)),
        "store_nan": variant("s3", lambda r: save_tensors(
            r / "pooled.safetensors", {"layer_2": np.full((8, 32), np.nan, np.float32)})),
        "store_wrong_dims": variant("s4", lambda r: _break_json(
            r / "store.json", lambda j: j.__setitem__("hidden_size", 768))),
        "store_inf_rate": variant("s5", lambda r: _break_json(
            r / "store.json", lambda j: j.__setitem__("frame_rate", float("inf")))),
        "index_corrupt": variant("s6", lambda r: _break_json(r / "index.json")),
    }


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, tiny_run):
    d = tmp_path_factory.mktemp("hostile")
    audio = _hostile_audio(d)
    good = save_audio(d / "good.wav", sine(180, 1.0, SAMPLE_RATE, 0.3), SAMPLE_RATE)
    manifest = d / "hostile.csv"
    manifest.write_text("path,speaker,emotion\n" + "".join(
        f"{p},s{i % 2},{('calm', 'angry')[(i // 2) % 2]}\n" for i, p in enumerate(audio.values())))
    evals = {}
    for name, text in (("eval_corrupt", '{"rows": [1, 2,'), ("eval_wrong_type", "[1, 2, 3]")):
        (d / name).mkdir()
        (d / name / "evaluate.json").write_text(text)
        evals[name] = d / name
    (d / "recipe.yaml").write_text("encoder: {model: [unclosed\n")
    (d / "study").mkdir()
    (d / "study" / "study.json").write_text('{"config": {"name": "x", "trials": NaN')
    (d / "vocoder.safetensors").write_bytes(PICKLE)
    (d / "npy_pickle.npy").write_bytes(PICKLE)
    np.save(d / "npy_nan.npy", np.full((8, 4), np.nan, np.float32))
    np.save(d / "npy_empty.npy", np.zeros((8, 0), np.float32))
    (d / "index8.csv").write_text("speaker,emotion\n" + "a,calm\n" * 8)
    return dict(dir=d, audio=audio, good=good, manifest=manifest, runs=_hostile_runs(tiny_run, d),
                stores=_stores(d), evals=evals, study=d / "study")


# --- the harness --------------------------------------------------------------------------------

def run_cli(argv: list[str], capsys, caplog) -> tuple[int, str]:
    """rc and everything the user would see; an exception out of main is a failure here (on a
    terminal it would be a traceback)."""
    caplog.clear()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse usage errors: their own one-line message, status 2
        rc = e.code if isinstance(e.code, int) else 2
    except BaseException:  # noqa: BLE001 - exactly what the sweep hunts for
        pytest.fail(f"emosteer {' '.join(map(str, argv))} raised:\n{traceback.format_exc()}")
    captured = capsys.readouterr()
    return rc, captured.err + captured.out + caplog.text


def check(argv, outputs, capsys, caplog, ok=(1, 2)) -> str:
    with caplog.at_level(logging.INFO):
        rc, seen = run_cli(argv, capsys, caplog)
    assert TRACEBACK not in seen, seen
    assert rc in ok, f"rc {rc} for {argv}:\n{seen}"
    for out in outputs:
        out = Path(out)
        assert not out.exists(), f"{out} left behind by {argv}"
        if out.parent.is_dir():
            assert not list(out.parent.glob(".*.tmp")), f"temp files left in {out.parent}"
    return seen


AUDIO_CASES = ["empty", "truncated", "text_wav", "text_mp3", "nan", "huge_header", "silent",
               "directory", "missing"]


@pytest.mark.parametrize("kind", AUDIO_CASES)
def test_audio_commands_on_hostile_files(hostile, tiny_run, tmp_path, capsys, caplog, kind):
    bad = hostile["audio"][kind]
    out = tmp_path / "out.wav"
    seen = check(["steer", "--input", bad, "--delta", "0.5", "--output", out, "--run", tiny_run],
                 [out], capsys, caplog)
    assert bad.name in seen
    check(["steer", "--input", bad, "--deltas", "-1,0,1", "--output", tmp_path / "sweep",
           "--run", tiny_run, "--mode", "prosody"], [tmp_path / "sweep"], capsys, caplog)
    check(["prosody", "apply", bad, "--delta-file", tiny_run / "axis" / "prosody.json",
           "--out", out], [out], capsys, caplog)
    check(["prosody", "measure", bad], [], capsys, caplog)
    check(["judge", bad, "--judges", "dnsmos", "--json"], [], capsys, caplog, ok=(0, 1, 2))


def test_batch_commands_on_a_corpus_of_hostile_files(hostile, tiny_model_dir, tmp_path, capsys,
                                                     caplog):
    m = hostile["manifest"]
    check(["extract", m, "--format", "csv", "--model", tiny_model_dir, "--layers", "1",
           "--out", tmp_path / "store", "--no-progress"],
          [tmp_path / "store" / "store.json", tmp_path / "store" / "pooled.safetensors"],
          capsys, caplog)
    check(["train-mapper", m, "--format", "csv", "--model", tiny_model_dir, "--layer", "2",
           "--out", tmp_path / "mapper", "--mel", "ssl16k", "--hidden", "8", "--blocks", "1",
           "--epochs", "1", "--no-progress"], [tmp_path / "mapper" / "mapper.json"], capsys, caplog)
    check(["prosody", "learn", m, "--format", "csv", "--source", "calm", "--target", "angry",
           "--out", tmp_path / "delta.json"], [tmp_path / "delta.json"], capsys, caplog)
    check(["mfcc-store", m, "--format", "csv", "--out", tmp_path / "mfcc"],
          [tmp_path / "mfcc" / "store.json"], capsys, caplog)
    check(["corpus", "summary", hostile["dir"] / "index8.csv", "--format", "csv"], [], capsys,
          caplog)


@pytest.mark.parametrize("broken", ["axis_json_corrupt", "axis_pickle", "axis_nan_calibration",
                                    "axis_inf_vector", "axis_wrong_dims", "mapper_json_corrupt",
                                    "mapper_pickle", "mapper_nan_weights", "mapper_wrong_dims",
                                    "mapper_inf_rate", "prosody_json_corrupt", "prosody_nan"])
def test_steering_commands_on_hostile_artifacts(hostile, tmp_path, capsys, caplog, broken):
    run = hostile["runs"][broken]
    out = tmp_path / "out.wav"
    mode = "prosody" if broken.startswith("prosody") else "both"
    seen = check(["steer", "--input", hostile["good"], "--delta", "0.5", "--output", out,
                  "--run", run, "--mode", mode], [out], capsys, caplog)
    if broken != "axis_wrong_dims":  # see test_cross_artifact_dims_name_the_files
        assert str(run) in seen, seen  # the message names the broken artifact


@pytest.mark.parametrize("broken", ["store_json_corrupt", "store_pickle", "store_nan",
                                    "store_wrong_dims", "store_inf_rate", "index_corrupt"])
def test_store_commands_on_hostile_stores(hostile, tiny_run, tmp_path, capsys, caplog, broken):
    store = hostile["stores"][broken]
    check(["axis", store, "--layer", "2", "--source", "calm", "--target", "angry",
           "--out", tmp_path / "axis"], [tmp_path / "axis" / "axis.json"], capsys, caplog)
    check(["probe", store, "--out", tmp_path / "probe", "--n-boot", "10", "--no-umap"],
          [tmp_path / "probe" / "probe.json"], capsys, caplog)
    check(["bank", store, "--reference", "calm", "--emotions", "angry", "--layer", "2",
           "--no-prosody", "--out", tmp_path / "bank"], [tmp_path / "bank"], capsys, caplog)
    check(["evaluate", "--store", store, "--axis", tiny_run / "axis", "--mapper",
           tiny_run / "mapper", "--speakers", "s1", "--deltas", "0,1", "--modes", "latent",
           "--judges", "none", "--out", tmp_path / "eval", "--no-progress"],
          [tmp_path / "eval" / "evaluate.json"], capsys, caplog, ok=(2,))


def test_other_commands_on_hostile_artifacts(hostile, tmp_path, capsys, caplog):
    d = hostile["dir"]
    for npy in ("npy_pickle.npy", "npy_nan.npy", "npy_empty.npy"):
        check(["import-embeddings", d / npy, d / "index8.csv", "--layer", "5",
               "--out", tmp_path / "imported"], [tmp_path / "imported" / "store.json"], capsys,
              caplog)
        check(["axis", "--from-npy", d / npy, "--layer", "2", "--source", "calm", "--target",
               "angry", "--model", "x", "--out", tmp_path / "ax"], [tmp_path / "ax"], capsys,
              caplog)
    for ev in hostile["evals"].values():
        check(["report", ev, "--out", tmp_path / "report.html"], [tmp_path / "report.html"],
              capsys, caplog)
        check(["study", "create", ev, tmp_path / "study"], [tmp_path / "study"], capsys, caplog)
    check(["study", "analyze", hostile["study"], "--out", tmp_path / "analysis"],
          [tmp_path / "analysis"], capsys, caplog)
    check(["vocoder", "info", d / "vocoder.safetensors"], [], capsys, caplog)
    check(["run", d / "recipe.yaml", "--out", tmp_path / "run"], [tmp_path / "run"], capsys,
          caplog)
    check(["tts", "--text", "Kids are talking by the door.", "--ref-calm",
           hostile["audio"]["nan"], "--ref-angry", hostile["good"], "--out",
           tmp_path / "tts.wav", "--run", hostile["runs"]["axis_json_corrupt"]],
          [tmp_path / "tts.wav"], capsys, caplog)
    check(["tts", "--text", "Kids are talking by the door.", "--out", tmp_path / "tts.wav",
           "--run", hostile["runs"]["mapper_pickle"]], [tmp_path / "tts.wav"], capsys, caplog)


def test_cross_artifact_dims_name_the_files(hostile, tmp_path, capsys, caplog):
    run = hostile["runs"]["axis_wrong_dims"]
    seen = check(["steer", "--input", hostile["good"], "--delta", "0.5", "--output",
                  tmp_path / "out.wav", "--run", run], [tmp_path / "out.wav"], capsys, caplog)
    assert str(run / "axis") in seen and str(run / "mapper") in seen, seen
