"""A synthetic tidy sweep table (no model): 2 series x 2 cases x 16 settings x 6 modalities."""

from __future__ import annotations

import numpy as np

from strokelrp.analysis.table import setting_label
from strokelrp.config import MODALITIES

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
