"""A synthetic tidy sweep table (no model): 2 series x 2 cases x 16 settings x 6 modalities."""

from __future__ import annotations

import numpy as np

from strokelrp.analysis.table import setting_label
from strokelrp.data.layouts.isles2017 import CHANNELS as MODALITIES

PAPER_SETTINGS: list[tuple[str, float | None, float | None]] = [
    ("raw", None, None),
    *[("pass", 0.0, a) for a in (0.05, 0.1, 0.2, 0.4, 0.6)],
    *[("pass", a, 1.0) for a in (0.05, 0.1, 0.2, 0.4, 0.6)],
    *[("clamp", 0.0, a) for a in (0.05, 0.1, 0.2, 0.4, 0.6)],
]


def make_rows(series: tuple[str, ...] = ("A", "B"), n_cases: int = 2, seed: int = 0) -> list[dict]:
    """Rows with random but valid values; one NaN mean signal to exercise 'invalid values'."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in series:
        for c in range(n_cases):
            for kind, a1, a2 in PAPER_SETTINGS:
                shares = rng.dirichlet(np.ones(len(MODALITIES)))
                abs_shares = rng.dirichlet(np.ones(len(MODALITIES)))
                for m, modality in enumerate(MODALITIES):
                    rows.append(
                        {
                            "run": f"{s}1",
                            "series": s,
                            "network": f"{s}1",
                            "case": f"training_{c + 1}",
                            "case_dice": 0.5,
                            "target": "prediction",
                            "rules": "paper",
                            "kind": kind,
                            "a1": float("nan") if a1 is None else a1,
                            "a2": float("nan") if a2 is None else a2,
                            "setting": setting_label(kind, a1, a2),
                            "modality": modality,
                            "input_inclusivity": float(rng.uniform()),
                            "gt_inclusivity": float(rng.uniform()),
                            "mean_signal": float(rng.normal(0.05, 0.02)),
                            "relevance_share": float(shares[m]),
                            "lesion_share": float(rng.uniform()),
                            "informative": m < 2,
                            "ablation_drop": [0.2, 0.0, 0.1, 0.05, 0.4, 0.003][m],
                            "abs_share": float(abs_shares[m]),
                        }
                    )
    rows[-1]["mean_signal"] = float("nan")
    return rows


def alpha0_by_hand(rows: list[dict], kind: str, fraction: float = 0.5) -> float:
    """The sweet spot of ``kind`` (0, alpha) settings, written out independently of
    strokelrp.analysis.calculus: the population SD of mean_signal over the finite (case,
    modality) points at each alpha (raw = 1); the smallest alpha with SD >= fraction x max."""
    by_alpha: dict[float, list[float]] = {}
    for r in rows:
        if r["kind"] == "raw":
            alpha = 1.0
        elif r["kind"] == kind and r["a1"] == 0.0:
            alpha = r["a2"]
        else:
            continue
        if not np.isnan(r["mean_signal"]):
            by_alpha.setdefault(alpha, []).append(r["mean_signal"])
    spread = {a: float(np.std(v)) for a, v in by_alpha.items()}
    return min(a for a, s in spread.items() if s >= fraction * max(spread.values()))
