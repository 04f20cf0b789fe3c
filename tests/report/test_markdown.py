"""The README's judged steering table comes from evaluate.json, cell by cell."""

from __future__ import annotations

import json

from emosteer.cli import main
from emosteer.report.markdown import steering_table


def _cell(v, n=8):
    return {"value": v, "ci": [v - 0.1, v + 0.1], "n": n}


EVALUATE = {
    "references": [{"label": "input (real source clips)",
                    "judges": {"dnsmos": {"ovrl": _cell(2.9)}, "asr": {"wer": _cell(0.0)},
                               "speaker": {"cosine": _cell(1.0)},
                               "emotion": {"p_target": _cell(0.14)}}}],
    "table": [{"mode": "prosody", "delta": 1.0,
               "judges": {"dnsmos": {"ovrl": _cell(2.6)}, "asr": {"wer": _cell(0.05)},
                          "speaker": {"cosine": _cell(0.7)},
                          "emotion": {"p_target": {"status": "not measured", "reason": "x"}}}}],
    "emotion_judge": {"auc": 0.965, "source": "calm", "target": "angry",
                      "train_speakers": ["ravdess_01"], "p_target_real_source": _cell(0.14),
                      "p_target_real_target": _cell(0.66)},
}


def test_table_rows_carry_value_ci_and_n(tmp_path, capsys):
    text = steering_table(EVALUATE)
    lines = text.splitlines()
    assert lines[2].startswith("| **input (real source clips)** | 2.90 [2.80, 3.00] (n=8)")
    assert lines[3] == ("| prosody delta +1 | 2.60 [2.50, 2.70] (n=8) | 0.05 [-0.05, 0.15] (n=8) "
                        "| 0.70 [0.60, 0.80] (n=8) | not measured |")
    assert "held-out AUC 0.965" in text
    (tmp_path / "evaluate.json").write_text(json.dumps(EVALUATE))
    assert main(["report", str(tmp_path), "--markdown"]) == 0
    assert capsys.readouterr().out == text
    assert main(["report", str(tmp_path / "nowhere"), "--markdown"]) == 2
