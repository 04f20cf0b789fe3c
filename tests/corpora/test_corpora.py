"""corpora.py: file-name adapters, CSV manifests, label normalisation, counts, CLI summary."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emosteer.cli import main
from emosteer.corpora.formats import (
    EMOTIONS,
    count_table,
    format_table,
    normalize_emotion,
    read_manifest,
    scan_corpus,
)
from emosteer.errors import CorpusError, EmosteerError


def touch(root: Path, *names: str) -> None:
    # Adapters only parse names; file contents are never opened while scanning.
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"RIFF")


def test_normalize_emotion():
    assert normalize_emotion(" ANG ") == "angry"
    assert normalize_emotion("Fearful") == "fear"
    assert normalize_emotion("ps") == "surprise"
    assert normalize_emotion("pleasant-surprise") == "surprise"
    assert normalize_emotion("bored") == "boredom"
    assert {normalize_emotion(e) for e in EMOTIONS} == set(EMOTIONS)
    with pytest.raises(CorpusError, match="'grumpy'"):
        normalize_emotion("grumpy")


def test_ravdess_names_and_skips(tmp_path, caplog):
    touch(tmp_path, "Actor_12/03-01-05-02-01-01-12.wav", "Actor_12/03-01-01-01-02-02-12.flac",
          "Actor_12/03-02-05-02-01-01-12.wav",  # song
          "Actor_12/01-01-05-02-01-01-12.wav",  # audio-video modality
          "Actor_12/03-01-09-01-01-01-12.wav",  # emotion 09 does not exist
          "Actor_12/readme.txt", "Actor_12/.hidden.wav")
    with caplog.at_level(logging.WARNING, logger="emosteer.corpora.formats"):
        utts = scan_corpus(tmp_path, "ravdess")
    assert [u.utt_id for u in utts] == ["ravdess/03-01-01-01-02-02-12", "ravdess/03-01-05-02-01-01-12"]
    neutral, angry = utts
    assert (angry.speaker, angry.emotion, angry.intensity, angry.sentence) == \
        ("ravdess_12", "angry", "strong", "01")
    assert (neutral.emotion, neutral.sentence, neutral.corpus) == ("neutral", "02", "ravdess")
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "skipped 3 file(s)" in msg and "song" in msg and "03-01-09-01-01-01-12.wav" in msg
    assert "readme" not in msg and "hidden" not in msg


def test_cremad_names(tmp_path):
    touch(tmp_path, "1001_DFA_ANG_XX.wav", "1091_IEO_HAP_HI.wav", "1002_XYZ_ANG_XX.wav",
          "1003_DFA_CAL_XX.wav", "AudioWAV_notes.wav")
    utts = scan_corpus(tmp_path, "cremad")
    assert [(u.utt_id, u.speaker, u.emotion, u.sentence, u.intensity) for u in utts] == [
        ("cremad/1001_DFA_ANG_XX", "cremad_1001", "angry", "DFA", None),
        ("cremad/1091_IEO_HAP_HI", "cremad_1091", "happy", "IEO", "high"),
    ]


def test_emodb_names(tmp_path):
    touch(tmp_path, "wav/03a01Wa.wav", "wav/16b10Lb.wav", "wav/03a01Xa.wav", "wav/3a01Wa.wav")
    utts = scan_corpus(tmp_path, "emodb")
    assert [(u.speaker, u.emotion, u.sentence) for u in utts] == [
        ("emodb_03", "angry", "a01"), ("emodb_16", "boredom", "b10")]


def test_tess_names(tmp_path):
    touch(tmp_path, "OAF_angry/OAF_back_angry.wav", "YAF_pleasant_surprised/YAF_bath_ps.wav",
          "OAF_neutral/OA_bite_neutral.wav", "x/ZZZ_back_angry.wav", "x/OAF_back_calm.wav")
    utts = scan_corpus(tmp_path, "tess")
    assert [(u.utt_id, u.speaker, u.emotion, u.sentence) for u in utts] == [
        ("tess/OAF_back_angry", "tess_OAF", "angry", "back"),
        ("tess/OA_bite_neutral", "tess_OAF", "neutral", "bite"),
        ("tess/YAF_bath_ps", "tess_YAF", "surprise", "bath"),
    ]


def test_relative_root_gives_absolute_paths(tmp_path, monkeypatch):
    touch(tmp_path, "corpus/1001_DFA_ANG_XX.wav")
    monkeypatch.chdir(tmp_path)
    (utt,) = scan_corpus("corpus", "cremad")
    assert utt.path == tmp_path.absolute() / "corpus" / "1001_DFA_ANG_XX.wav"


def test_duplicate_stems_are_skipped(tmp_path, caplog):
    touch(tmp_path, "a/1001_DFA_ANG_XX.wav", "b/1001_DFA_ANG_XX.flac")
    with caplog.at_level(logging.WARNING):
        utts = scan_corpus(tmp_path, "cremad")
    assert len(utts) == 1 and "duplicate" in caplog.text


def test_empty_or_missing_corpus_is_an_error(tmp_path):
    with pytest.raises(CorpusError, match="no usable ravdess"):
        scan_corpus(tmp_path, "ravdess")
    touch(tmp_path, "garbage.wav")
    with pytest.raises(CorpusError, match="1 skipped"):
        scan_corpus(tmp_path, "tess")
    with pytest.raises(CorpusError, match="not found"):
        scan_corpus(tmp_path / "nope", "tess")
    with pytest.raises(CorpusError, match="unknown corpus format"):
        scan_corpus(tmp_path, "iemocap")
    with pytest.raises(CorpusError, match="not a directory"):
        scan_corpus(tmp_path / "garbage.wav", "tess")


def test_csv_manifest(tmp_path, caplog):
    touch(tmp_path, "audio/a.wav", "audio/b.flac", "other/c.wav")
    (tmp_path / "sub").mkdir()
    manifest = tmp_path / "sub" / "list.csv"
    manifest.write_text(
        "path,speaker,emotion,sentence\n"
        "../audio/a.wav,spk1,Angry,s1\n"
        f"{tmp_path / 'audio/b.flac'},spk2,sadness,\n"
        "../other/c.wav,spk1,grumpy,s1\n"  # unknown label: skipped
        "../audio/missing.wav,spk1,sad,s1\n"  # missing file: skipped
        ",spk3,sad,\n",  # empty path: skipped
        encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        utts = scan_corpus(manifest, "csv")
    assert [(u.utt_id, u.speaker, u.emotion, u.sentence) for u in utts] == [
        ("csv/a", "spk1", "angry", "s1"), ("csv/b", "spk2", "sad", None)]
    assert utts[0].path == tmp_path.absolute() / "audio" / "a.wav"
    assert "skipped 3" in caplog.text and "grumpy" in caplog.text and "missing.wav" in caplog.text


def test_csv_manifest_structural_errors(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("file,label\nx.wav,angry\n")
    with pytest.raises(CorpusError, match="missing emotion, path, speaker"):
        read_manifest(m)
    m.write_bytes(b"path,speaker,emotion\n\xff\xfe,a,b\n")
    with pytest.raises(CorpusError, match="not UTF-8"):
        read_manifest(m)
    with pytest.raises(CorpusError, match="without manifest.csv"):
        read_manifest(tmp_path)
    with pytest.raises(CorpusError, match="not found"):
        read_manifest(tmp_path / "absent.csv")
    m.write_text("path,speaker,emotion\n")
    with pytest.raises(CorpusError, match="no usable csv"):
        scan_corpus(m, "csv")


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(
    st.text(max_size=400),
    st.lists(st.lists(st.sampled_from(["path", "speaker", "emotion", "a.wav", "angry", "",
                                       '"', ",", "\n", "\x00", "../", "ps", "x" * 5]),
                      max_size=6).map(",".join), max_size=6).map("\n".join),
    st.binary(max_size=300)))
def test_fuzz_manifest(tmp_path, text):
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    m = tmp_path / "fuzz.csv"
    m.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        utts = scan_corpus(m, "csv")
    except EmosteerError:
        return
    assert utts and all(u.emotion in EMOTIONS and u.path.is_file() for u in utts)


def test_count_table_and_format(tmp_path):
    touch(tmp_path, "1001_DFA_ANG_XX.wav", "1001_TIE_ANG_XX.wav", "1002_DFA_NEU_XX.wav")
    table = count_table(scan_corpus(tmp_path, "cremad"))
    assert table["emotions"] == ["angry", "neutral"]  # EMOTIONS order, present only
    assert table["counts"] == {"cremad_1001": {"angry": 2, "neutral": 0},
                               "cremad_1002": {"angry": 0, "neutral": 1}}
    lines = format_table(table).splitlines()
    assert lines[0].split() == ["speaker", "angry", "neutral", "total"]
    assert lines[1].split() == ["cremad_1001", "2", "0", "2"]
    assert lines[-1].split() == ["total", "2", "1", "3"]


def test_real_ravdess_summary(ravdess_dir, capsys):
    utts = scan_corpus(ravdess_dir, "ravdess")
    table = count_table(utts)
    assert len(table["speakers"]) == 8 and len(table["emotions"]) == 8
    for row in table["counts"].values():
        assert row == {e: (4 if e == "neutral" else 8) for e in table["emotions"]}
    assert main(["corpus", "summary", str(ravdess_dir), "--format", "ravdess"]) == 0
    out = capsys.readouterr().out
    assert "480 utterances, 8 speakers, 8 emotions" in out
    assert main(["corpus", "summary", str(ravdess_dir), "--format", "ravdess", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"] == 480 and data["counts"]["ravdess_07"]["neutral"] == 4


def test_real_manifest_matches_folder_scan(shared_data):
    by_csv = scan_corpus(shared_data / "manifest.csv", "csv")
    by_dir = scan_corpus(shared_data / "ravdess", "ravdess")
    assert [(u.utt_id, u.speaker, u.emotion, u.path) for u in by_csv] == \
        [(u.utt_id, u.speaker, u.emotion, u.path) for u in by_dir]


def test_cli_summary_errors(tmp_path, capsys):
    assert main(["corpus", "summary", str(tmp_path), "--format", "emodb"]) == 2
    assert "no usable emodb" in capsys.readouterr().err
