"""`emosteer judge`: scores real files, reports unreadable ones, names judges that cannot run."""

from __future__ import annotations

import json

import pytest

from emosteer.cli import main


@pytest.mark.parametrize("judges", ["dnsmos,speaker"])
def test_judge_scores_files_and_reports_a_bad_one(ravdess_dir, tmp_path, capsys, judges):
    pytest.importorskip("speechmos")
    actor = ravdess_dir / "Actor_07"
    angry, calm = actor / "03-01-05-02-01-01-07.flac", actor / "03-01-02-02-01-01-07.flac"
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    rc = main(["judge", str(angry), str(bad), "--judges", judges, "--ref-wav", str(calm), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1  # one file could not be scored
    good, broken = out["files"]
    assert 1.0 < good["scores"]["dnsmos"]["ovrl"] < 5.0
    assert 0.5 < good["scores"]["speaker"]["cosine"] <= 1.0
    assert "bad.wav" in broken["error"] and "scores" not in broken


def test_judge_names_an_unconfigured_judge(ravdess_dir, capsys):
    clip = ravdess_dir / "Actor_07" / "03-01-05-02-01-01-07.flac"
    assert main(["judge", str(clip), "--judges", "emotion"]) == 2
    assert "emotion judge" in capsys.readouterr().err
