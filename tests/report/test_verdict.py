"""The report's first screen: the sentence and contradiction wording case by case, the judged
table (no empty column, every cell with its n), the clips of the audio grid, and a page built
from a fake run whose modes carry decoder suffixes, with notices and an emotion bank."""

from __future__ import annotations

import copy
import logging
import re
from html import escape
from pathlib import Path

import pytest
from test_report import (
    ASR_REASON,
    BANK_EMOTIONS,
    DELTAS,
    SER_REASON,
    WORLD_NOTICE,
    at,
    write_bank,
    write_evaluate,
)

from emosteer.artifacts import write_json
from emosteer.errors import ArtifactError
from emosteer.report.build import build_report
from emosteer.report.verdict import (
    contradiction,
    judge_table,
    mode_sentence,
    verdict_clips,
    verdict_deltas,
)

SUFFIXED = ("latent:full", "prosody", "both:envelope")


@pytest.mark.parametrize(("kwargs", "expected"), [
    # the example: at (or above) the real target's level, a small DNSMOS drop
    (dict(p=0.76, p_real_target=0.71, p_input=0.1, dnsmos=2.83, dnsmos_input=3.0),
     "prosody: recognised as angry as often as real angry speech at delta 1 (P 0.76 vs 0.71), "
     "DNSMOS -0.17 vs the input."),
    (dict(p=0.68, p_real_target=0.71, p_input=0.1, dnsmos=3.1, dnsmos_input=3.0),
     "prosody: recognised as angry as often as real angry speech at delta 1 (P 0.68 vs 0.71), "
     "DNSMOS +0.10 vs the input."),
    # below the real target but above the input; a large quality drop (exactly the threshold)
    (dict(p=0.45, p_real_target=0.71, p_input=0.1, dnsmos=2.5, dnsmos_input=3.0),
     "prosody: recognised as angry less often than real angry speech at delta 1 (P 0.45 vs "
     "0.71), DNSMOS -0.50 vs the input, a large quality drop."),
    # not lifted above the input at all
    (dict(p=0.12, p_real_target=0.71, p_input=0.1, dnsmos=2.9, dnsmos_input=3.0),
     "prosody: recognised as angry no more often than the input at delta 1 (P 0.12 vs 0.10; "
     "real angry speech 0.71), DNSMOS -0.10 vs the input."),
    # numbers missing
    (dict(), "prosody: P(angry) not measured at delta 1, DNSMOS not measured."),
    (dict(p=0.5, dnsmos=2.9),
     "prosody: P(angry) 0.50 at delta 1 (real angry speech not measured), DNSMOS not measured."),
    (dict(p=0.5, p_real_target=0.9, dnsmos_input=3.0),
     "prosody: recognised as angry less often than real angry speech at delta 1 (P 0.50 vs "
     "0.90), DNSMOS not measured."),
], ids=["at-real", "just-below-real", "below-real-large-drop", "not-above-input",
        "nothing-measured", "no-real-target", "no-dnsmos"])
def test_mode_sentence_wording(kwargs, expected):
    assert mode_sentence("prosody", "angry", 1.0, **kwargs) == expected


def test_contradiction_wording():
    assert contradiction("angry", -1.0, 1.0, (0.7, 0.3), (0.1, 0.8)) == (
        "contradiction: the same-encoder probe posterior falls (0.70 to 0.30) from delta -1 to 1 "
        "while the judge's P(angry) rises (0.10 to 0.80)")
    assert contradiction("angry", -1.0, 1.0, (0.2, 0.9), (0.6, 0.3)) == (
        "contradiction: the same-encoder probe posterior rises (0.20 to 0.90) from delta -1 to 1 "
        "while the judge's P(angry) falls (0.60 to 0.30)")
    assert contradiction("angry", -1.0, 1.0, (0.2, 0.9), (0.1, 0.8)) is None  # agree
    assert contradiction("angry", -1.0, 1.0, (0.5, 0.47), (0.1, 0.8)) is None  # flat probe
    assert contradiction("angry", -1.0, 1.0, None, (0.1, 0.8)) is None  # not measured


def test_verdict_deltas():
    assert verdict_deltas([-1.0, -0.5, 0.0, 0.5, 1.0]) == [-1.0, 0.0, 1.0]
    assert verdict_deltas([-2.0, -1.0, 0.0, 1.0, 2.0]) == [-1.0, 0.0, 1.0]
    assert verdict_deltas([0.0, 0.5, 2.0]) == [0.0, 2.0]
    assert verdict_deltas([-0.5, 0.5]) == [-0.5, 0.5]
    assert verdict_deltas([]) == []


def test_verdict_clips_one_per_speaker_with_their_real_target():
    def clip(cid, spk, real):
        return {"id": cid, "speaker": spk, "input": f"{cid}/in.wav", "real_target": real,
                "outputs": {"prosody": {f"{d:+.2f}": f"{cid}/p{d}.wav" for d in DELTAS}}}
    ev = {"config": {"modes": ["prosody"]},
          "clips": [clip("a0", "a", None), clip("a1", "a", "a1/real.wav"), clip("b0", "b", None),
                    clip("c0", "c", None), clip("a2", "a", None)]}
    picked = verdict_clips(ev)["clips"]
    assert [c["id"] for c in picked] == ["a1", "b0", "c0"]  # one per speaker, real target first
    assert list(picked[1]["outputs"]["prosody"]) == ["-1.00", "+0.00", "+1.00"]
    every = verdict_clips(ev, k=5)["clips"]
    assert [c["id"] for c in every] == ["a1", "b0", "c0", "a0", "a2"]
    assert [c["real_target"] for c in every] == ["a1/real.wav", None, None, "a1/real.wav",
                                                 "a1/real.wav"]  # the speaker's, from a1


def test_judge_table_drops_empty_columns_and_shows_n(tmp_path):
    ev = write_evaluate(tmp_path, n_clips=1, modes=SUFFIXED)
    html = judge_table(ev, "evaluate.json", verdict_deltas(DELTAS))
    heads = re.findall(r"<th>([^<]*)</th>", html[:html.index("<tbody>")])
    assert heads == ["", "P(angry), calibrated judge", "DNSMOS OVRL", "speaker similarity"]
    assert f"not measured: SER P(angry) ({escape(SER_REASON)}); WER ({escape(ASR_REASON)})" \
        in html
    rows = re.findall(r"<tr>(.*?)</tr>", html[html.index("<tbody>"):])
    assert len(rows) == 3 + len(SUFFIXED) * 3  # references, then delta -1, 0, +1 per mode
    for row in rows:
        cells = re.findall(r'<td class="m">(.*?)</td>', row)
        assert len(cells) == 3 and all(re.fullmatch(
            r'-?\d\.\d\d <span class="ci">\[-?\d\.\d\d, -?\d\.\d\d\]</span> '
            r'<span class="n">n=\d+</span>', c) for c in cells), row
    assert 'data-mode="latent:full" data-delta="1">latent:full δ +1</th>' in html
    every = judge_table(ev, "evaluate.json", None)
    assert every.count("<tr>") == 1 + 3 + len(SUFFIXED) * len(DELTAS)


def write_small_run(root: Path, **run_fields) -> Path:
    """A run with evaluate (decoder-suffixed modes), a bank and run.json: no probe or study."""
    run = root / "run"
    write_evaluate(run / "evaluate", modes=SUFFIXED)
    write_bank(run / "bank")
    write_json(run / "run.json", {"kind": "run", "notices": [WORLD_NOTICE],
                                  "recipe": {"model": "m"}, "provenance": {"argv": ["x"]},
                                  "stages": {"evaluate": {"seconds": 3.5, "status": "done"}},
                                  **run_fields})
    return run


def test_first_screen_order_and_content(tmp_path):
    page = build_report(write_small_run(tmp_path)).read_text()
    order = ['id="notices"', '<section id="verdict">', '<section id="bank">',
             '<section id="evaluate">', '<section id="run">', "<footer>"]
    assert [page.index(s) for s in order] == sorted(page.index(s) for s in order)
    assert page.count(escape(WORLD_NOTICE)) == 1 and WORLD_NOTICE not in page
    verdict = page[page.index('<section id="verdict">'):page.index('<section id="bank">')]
    items = re.findall(r'<li data-mode="([^"]+)">(.*?)</li>', verdict)
    assert [m for m, _ in items] == list(SUFFIXED)
    text = dict(items)
    assert text["latent:full"].startswith("latent:full: recognised as angry less often than real "
                                          "angry speech at delta 1 (P 0.50 vs 0.80)")
    assert "DNSMOS -0.80 vs the input, a large quality drop." in text["latent:full"]
    assert text["prosody"].startswith("prosody: recognised as angry as often as real angry "
                                      "speech at delta 1 (P 0.80 vs 0.80), DNSMOS -0.10 vs the "
                                      "input. <span class=\"flag\">contradiction: the same-encoder "
                                      "probe posterior falls (0.70 to 0.30)")
    assert "flag" not in text["latent:full"] + text["both:envelope"]
    assert verdict.count('<img src="data:image/png;base64,') == 1
    grid = verdict[verdict.index('<h3 id="verdict-audio">'):]
    players = re.findall(r'<audio controls preload="metadata" src="data:audio/wav;base64,', grid)
    assert len(players) == 2 * (1 + len(SUFFIXED) * 3 + 1)  # both clips share one real target
    assert re.findall(r"<th>(delta [^<]+)</th>", grid) == ["delta -1", "delta +0", "delta +1"]
    run = page[page.index('<section id="run">'):]
    assert run.count("<details>") == 3 and "<details open" not in run  # recipe, stages, prov.


def test_bank_section(tmp_path):
    page = build_report(write_small_run(tmp_path)).read_text()
    bank = page[page.index('<section id="bank">'):page.index("</section>",
                                                             page.index('<section id="bank">'))]
    assert "reference: calm; layer: 2; auc: held-out speakers s2" in bank
    assert escape("<how alike>") in bank
    heads = re.findall(r"<th>([^<]*)</th>", bank[:bank.index("<tbody>")])
    assert heads == ["emotion", "held-out AUC", "consistency (mean pairwise cosine)",
                     "leave-one-out agreement", "speakers", "prosody"]  # no all-null column
    for i, emo in enumerate(BANK_EMOTIONS):
        assert (f'<tr><td>{emo}</td><td class="m">{0.7 + 0.1 * i:.4g} <span class="n">n=12'
                f'</span></td><td class="m">{0.5 + 0.1 * i:.4g} <span class="n">n=4</span>') \
            in bank
    assert "<td>angry: f0 +2.0 st</td>" in bank and "<td>no audio</td></tr>" in bank
    assert bank.count('<th scope="row">') == len(BANK_EMOTIONS)  # cosine matrix rows


def test_bank_named_inline_missing_or_bad(tmp_path, caplog):
    diag = {"emotions": {"angry": {"auc": 0.9, "n_speakers": 3}}}
    page = build_report(write_small_run(tmp_path / "a", bank=diag)).read_text()
    assert "<tr><td>angry</td>" in page and "<tr><td>calm</td>" not in page  # run.json wins
    with caplog.at_level(logging.WARNING, logger="emosteer"):
        page = build_report(write_small_run(tmp_path / "b", bank="nowhere")).read_text()
    assert "names bank nowhere" in caplog.text
    assert '<section id="bank">' in page  # falls back to RUN/bank/diagnostics.json
    with pytest.raises(ArtifactError, match="'bank' must be"):
        build_report(write_small_run(tmp_path / "c", bank=3))
    bank_only = tmp_path / "d"
    write_bank(bank_only)
    page = build_report(bank_only).read_text()
    assert '<section id="bank">' in page and '<section id="verdict">' not in page


def test_evaluation_without_judges_says_not_measured(tmp_path):
    ev = write_evaluate(tmp_path / "ev", n_clips=1)
    old = copy.deepcopy(ev)
    for key in ("references", "emotion_judge"):
        del old[key]
    for row in old["table"]:
        del row["judges"]
    write_json(tmp_path / "ev" / "evaluate.json", old)
    page = build_report(tmp_path / "ev").read_text()
    verdict = page[page.index('<section id="verdict">'):page.index('<section id="evaluate">')]
    assert "latent: P(angry) not measured at delta 1, DNSMOS not measured." in verdict
    assert "No judge measured this evaluation." in verdict and "<img" not in verdict


def test_notices_must_be_strings(tmp_path):
    with pytest.raises(ArtifactError, match="'notices' must be a list of strings"):
        build_report(write_small_run(tmp_path, notices="one string"))


def test_reference_levels_fall_back_to_the_emotion_judge(tmp_path):
    ev = write_evaluate(tmp_path / "ev", n_clips=1)
    ev["references"] = [r for r in ev["references"] if r["kind"] == "copy_synthesis"]
    ev["emotion_judge"]["p_target_real_target"] = at(0.6)
    write_json(tmp_path / "ev" / "evaluate.json", ev)
    page = build_report(tmp_path / "ev").read_text()
    assert "prosody: recognised as angry as often as real angry speech at delta 1 (P 0.80 vs " \
           "0.60), DNSMOS not measured." in page
