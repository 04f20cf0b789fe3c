"""CSV manifests: clips that share a file name in different folders each get their own utterance
id (none is dropped), ids of uniquely named clips stay `<corpus>/<stem>`, and whatever the scan
leaves out (a duplicate row, a missing file) is counted in extract's summary and skipped.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emosteer.audio import SAMPLE_RATE, save_audio
from emosteer.cli import main
from emosteer.corpora.formats import read_manifest, scan_corpus
from signals import sine


def clips(root: Path, names: list[str]) -> None:
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        wav = sine(150 + 20 * i, 0.5, SAMPLE_RATE, 0.3) + 0.01 * rng.standard_normal(8000)
        save_audio(p, wav.astype(np.float32), SAMPLE_RATE)


def manifest(root: Path, rows: list[str]) -> Path:
    m = root / "manifest.csv"
    m.write_text("path,speaker,emotion\n" + "".join(f"{r}\n" for r in rows), encoding="utf-8")
    return m


SHARED = [f"{spk}/{i:03d}.flac" for spk in ("spk1", "spk2") for i in range(4)]


def test_shared_file_names_in_different_folders_all_get_ids(tmp_path):
    clips(tmp_path, SHARED)
    m = manifest(tmp_path, [f"{p},{p.split('/')[0]},{('calm', 'angry')[i % 2]}"
                            for i, p in enumerate(SHARED)])
    utts, skipped = read_manifest(m)
    assert skipped == []
    assert sorted(u.utt_id for u in utts) == sorted(f"csv/{p[:-5]}" for p in SHARED)
    assert len({u.path for u in utts}) == 8


def test_unique_stems_keep_their_ids_and_suffix_twins_stay_apart(tmp_path):
    clips(tmp_path, ["a/03-01-05-02-01-01-12.wav", "b/1001_DFA_ANG_XX.wav", "c/x.wav", "c/x.flac"])
    out = tmp_path.parent / f"{tmp_path.name}-outside"
    clips(out, ["d/x.wav"])
    m = manifest(tmp_path, ["a/03-01-05-02-01-01-12.wav,s1,angry", "b/1001_DFA_ANG_XX.wav,s2,angry",
                            "c/x.wav,s1,calm", "c/x.flac,s1,calm", f"{out / 'd/x.wav'},s3,calm"])
    ids = {u.path.name if u.path.parent.name != "d" else "outside": u.utt_id
           for u in read_manifest(m)[0]}
    assert ids["03-01-05-02-01-01-12.wav"] == "csv/03-01-05-02-01-01-12"  # as before
    assert ids["1001_DFA_ANG_XX.wav"] == "csv/1001_DFA_ANG_XX"
    assert ids["x.wav"] == "csv/c/x.wav" and ids["x.flac"] == "csv/c/x.flac"
    assert ids["outside"].startswith("csv/x-") and len(set(ids.values())) == 5


def test_extract_keeps_all_eight_and_counts_what_the_scan_skipped(tmp_path, tiny_model_dir,
                                                                  capsys):
    clips(tmp_path, SHARED)
    rows = [f"{p},{p.split('/')[0]},{('calm', 'angry')[i % 2]}" for i, p in enumerate(SHARED)]
    m = manifest(tmp_path, rows)
    out = tmp_path / "store"
    args = ["extract", str(m), "--format", "csv", "--model", str(tiny_model_dir), "--layers",
            "1", "--no-progress", "--out"]
    assert main(args + [str(out)]) == 0
    assert "8 utterances" in capsys.readouterr().out
    assert len(json.loads((out / "index.json").read_text())) == 8

    # a row listing a file twice, and a row whose file is missing: both counted, nothing else lost
    manifest(tmp_path, rows + [f"{SHARED[0]},spk1,calm", "spk3/gone.flac,spk3,calm"])
    assert main(args + [str(tmp_path / "store2")]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "8 utterances" in summary and "2 skipped" in summary, summary
    skipped = json.loads((tmp_path / "store2" / "skipped.json").read_text())
    reasons = " ".join(s["error"] for s in skipped)
    assert len(skipped) == 2 and "duplicate" in reasons and "not found" in reasons


def test_folder_corpus_duplicates_are_reported_to_the_caller(tmp_path):
    clips(tmp_path, ["a/1001_DFA_ANG_XX.wav", "b/1001_DFA_ANG_XX.flac", "a/1002_DFA_SAD_XX.wav"])
    left_out: list = []
    utts = scan_corpus(tmp_path, "cremad", skipped=left_out)
    assert len(utts) == 2 and len(left_out) == 1 and "duplicate" in left_out[0][1]
