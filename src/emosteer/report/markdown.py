"""The judged steering table of an evaluate.json as Markdown (what the README shows), so the
README's numbers are regenerated from a run rather than typed in."""

from __future__ import annotations

from typing import Any

# (judge, metric, column heading, decimals)
COLUMNS = (("dnsmos", "ovrl", "DNSMOS OVRL", 2), ("asr", "wer", "WER", 2),
           ("speaker", "cosine", "speaker sim", 2), ("emotion", "p_target", "P(target)", 2))


def _cell(cell: Any, decimals: int) -> str:
    if not isinstance(cell, dict) or "value" not in cell:
        return "not measured"
    v, ci, n = cell["value"], cell.get("ci"), cell.get("n")
    text = f"{v:.{decimals}f}"
    if ci:
        text += f" [{ci[0]:.{decimals}f}, {ci[1]:.{decimals}f}]"
    return f"{text} (n={n})" if n is not None else text


def _row(label: str, judges: dict, decimals_override: int | None = None) -> str:
    cells = [_cell(judges.get(j, {}).get(m), decimals_override or d) for j, m, _, d in COLUMNS]
    return "| " + " | ".join([label, *cells]) + " |"


def steering_table(evaluate: dict) -> str:
    """Reference rows, then one row per (mode, delta): each judge's mean [95% CI over clips] (n)."""
    head = "| row | " + " | ".join(c[2] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for ref in evaluate.get("references", []):
        lines.append(_row(f"**{ref['label']}**", ref.get("judges", {})))
    for row in evaluate.get("table", []):
        lines.append(_row(f"{row['mode']} delta {row['delta']:+g}", row.get("judges", {})))
    ej = evaluate.get("emotion_judge", {})
    if isinstance(ej.get("auc"), float):
        src = _cell(ej.get("p_target_real_source"), 2)
        tgt = _cell(ej.get("p_target_real_target"), 2)
        lines += ["", f"Emotion judge ({ej.get('source')} vs {ej.get('target')}, trained on "
                      f"{', '.join(ej.get('train_speakers', []))}): held-out AUC "
                      f"{ej['auc']:.3f}; mean P(target) of the held-out speakers' real "
                      f"source clips {src}, of their real target clips {tgt}."]
    return "\n".join(lines) + "\n"
