"""study analyze: statistics against published values, and recovery of a known ground truth
from simulated listeners (including careless ones who must be excluded)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emosteer.cli import main
from emosteer.study.analyze import (
    EXCLUSION_RULE,
    analyze_study,
    bootstrap_ci,
    fleiss_kappa,
    krippendorff_alpha,
    wilson_ci,
)
from emosteer.study.design import StudyConfig, create_study
from emosteer.study.simulate import simulate_study, write_synthetic_stimuli

# Ground truth of the simulated listeners.
P_ANCHOR = 0.95
TRUE_MOS = {"latent": 3, "prosody": 4, "real": 4}


def p_identify(stim) -> float:
    return P_ANCHOR if stim.kind == "anchor" else 0.2 + 0.6 * stim.delta


def true_mos(stim) -> int:
    return TRUE_MOS[stim.mode]


def test_wilson_matches_closed_form_values():
    # Closed-form Wilson 95% values: 5/10 -> 0.2366-0.7634; 0/10 -> 0-0.2775.
    assert wilson_ci(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_ci(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert all(np.isnan(wilson_ci(0, 0)))


def test_fleiss_kappa_wikipedia_example():
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
             [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
             [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(np.array(table)) == pytest.approx(0.210, abs=5e-4)
    assert fleiss_kappa(np.array([[3, 0], [0, 3], [3, 0]])) == pytest.approx(1.0)


def test_krippendorff_alpha_reference_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", 4 observers x 12 units
    # with missing values: nominal .743, ordinal .815, interval .849.
    n = None
    obs = [[1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n], [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
           [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n], [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]]
    units = [[o[i] for o in obs if o[i] is not None] for i in range(12)]
    assert krippendorff_alpha(units, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=5e-4)


def test_bootstrap_ci_resamples_participants():
    rng = np.random.default_rng(0)
    small = {f"p{i}": list(rng.normal(3, 1, 5)) for i in range(10)}
    large = {f"p{i}": list(rng.normal(3, 1, 5)) for i in range(200)}
    lo_s, hi_s = bootstrap_ci(small, 500, seed=1)
    lo_l, hi_l = bootstrap_ci(large, 500, seed=1)
    assert lo_l < 3 < hi_l and hi_l - lo_l < hi_s - lo_s
    assert bootstrap_ci(small, 500, seed=1) == (lo_s, hi_s)  # seeded


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    src = write_synthetic_stimuli(root / "eval", n_clips=3, n_anchors=6)
    cfg = StudyConfig(trials_per_participant=16, anchors_per_participant=4,
                      repeats_per_participant=3, min_anchor_accuracy=0.75, seed=3)
    study = create_study(src, root / "study", cfg)
    careful, careless = simulate_study(study, n_careful=60, n_careless=12, seed=1,
                                       p_identify=p_identify, mos=true_mos)
    summary = analyze_study(study.root, n_boot=300)
    return study, careful, careless, summary


def test_exclusion_catches_careless_listeners(simulated):
    _, careful, careless, s = simulated
    excluded = set(s["excluded"])
    # Tolerance: at 4 anchors a random listener passes the 0.75 anchor rule with p ~ 0.03, a
    # careful one (p = 0.95 per anchor) fails it with p ~ 0.014: allow one miss each way.
    assert len(set(careless) - excluded) <= 1
    assert len(excluded & set(careful)) <= max(1, len(careful) // 20)
    assert s["n_participants"] == len(careful) + len(careless)
    assert s["n_included"] == s["n_participants"] - len(excluded)
    assert all(r for r in s["excluded"].values())  # every exclusion states its reason


def test_recovers_identification_and_mos(simulated):
    _, _, _, s = simulated
    steered = [r for r in s["conditions"] if r["kind"] == "steered"]
    assert {(r["mode"], r["delta"]) for r in steered} == \
        {(m, d) for m in ("latent", "prosody") for d in (0.0, 0.5, 1.0)}
    for r in steered:
        # ~80 ratings per condition: binomial SE <= 0.056; tolerance 0.15 (about 2.7 SE).
        truth = 0.2 + 0.6 * r["delta"]
        assert r["ident_rate"] == pytest.approx(truth, abs=0.15), r
        assert r["ident_rate_ci"][0] <= r["ident_rate"] <= r["ident_rate_ci"][1]
        # Rating noise has SD 0.55 and mean 0: tolerance 0.25 on the MOS.
        assert r["mos"] == pytest.approx(TRUE_MOS[r["mode"]], abs=0.25), r
    for mode in ("latent", "prosody"):
        rates = [r["ident_rate"] for r in sorted(steered, key=lambda r: r["delta"])
                 if r["mode"] == mode]
        assert rates[0] < rates[-1] and rates[-1] - rates[0] > 0.35  # truth: +0.6
    per_mode = {m["mode"]: m for m in s["mos_per_mode"]}
    for mode in ("latent", "prosody"):
        lo, hi = per_mode[mode]["mos_ci"]
        assert lo < TRUE_MOS[mode] + 0.15 and hi > TRUE_MOS[mode] - 0.15
    anchor = next(r for r in s["conditions"] if r["kind"] == "anchor")
    assert anchor["ident_rate"] == pytest.approx(P_ANCHOR, abs=0.06)
    agree = s["agreement"]
    # Intensity follows delta deterministically up to jitter, so it agrees far better than
    # naturalness (constant per mode); emotion choices agree above chance but far from perfect.
    assert agree["krippendorff_alpha_intensity_ordinal"] > 0.6
    assert 0.05 < agree["fleiss_kappa_identification"] < 0.6


def test_outputs_written(simulated):
    study, _, _, s = simulated
    out = study.root / "analysis"
    saved = json.loads((out / "analysis.json").read_text())
    assert saved["exclusion_rule"] == EXCLUSION_RULE and "anchor" in EXCLUSION_RULE
    assert saved["n_included"] == s["n_included"]
    html = (out / "analysis.html").read_text()
    assert html.startswith("<section") and "<html" not in html
    assert "Exclusion rule" in html and 'src="identification.png"' in html
    for png in ("identification.png", "mos.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_analyze(tmp_path, simulated, capsys):
    study = simulated[0]
    assert main(["study", "analyze", str(study.root), "--out", str(tmp_path / "a"),
                 "--bootstrap", "200"]) == 0
    assert json.loads(capsys.readouterr().out)["n_participants"] == simulated[3]["n_participants"]
    assert (tmp_path / "a" / "analysis.html").is_file()
    empty = create_study(write_synthetic_stimuli(tmp_path / "e", n_clips=3, n_anchors=6),
                         tmp_path / "empty", study.config)
    assert main(["study", "analyze", str(empty.root)]) == 2
    assert "no answers" in capsys.readouterr().err
