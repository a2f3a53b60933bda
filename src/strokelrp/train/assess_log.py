"""Interpretability during training: the trust measures of one method every N epochs.

``train --assess-every N`` calls :func:`assess_epoch` after epochs N, 2N, ... on rank 0: the
measures of :func:`strokelrp.trust.assess.assess` for one method (``--assess-method``,
default ``lrp:epsilon``) on the first ``--assess-cases`` held-out cases (the first training
cases when nothing is held out; the ``split`` column says which), appended to
``RUN/assess_log.csv`` (:meth:`strokelrp.run_files.RunDir.write_assess_log`). The cost is
bounded: one method, few cases, ``assess --profile quick``
(:data:`strokelrp.trust.assess.PROFILES`: one re-initialisation, 3 random orders, 4
fractions, no extras, cheaper integrated gradients and occlusion), so the AOPC values are
comparable between epochs of one run, not with a full ``strokelrp assess``.

The random number streams of training are saved before and restored after, so a run trained
with ``--assess-every`` follows the same trajectory as one without, and resumes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from strokelrp.trust_measures import MEASURES


def assess_epoch(
    model: nn.Module,
    cases: Sequence[tuple[str, torch.Tensor, torch.Tensor]],
    method: str,
    epoch: int,
    split: str,
    channels: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """One row per case: ``cases`` are (case id, x (C, D, H, W), y (D, H, W), -1 = no label);
    ``channels`` the data set's channel names.

    Global random states (Python, numpy, torch) are restored afterwards and parameter
    gradients cleared, so training continues exactly as it would have without this call.
    """
    from strokelrp.train.checkpoint import capture_rng, restore_rng
    from strokelrp.trust.assess import assess, profile_settings

    state = capture_rng()
    rows = []
    try:
        for case_id, x, y in cases:
            label = y.cpu().numpy() if bool((y >= 0).all()) else None
            found, _ = assess(
                model,
                x,
                label,
                [method],
                case=case_id,
                channels=channels,
                **profile_settings("quick", {}),
            )
            row = found[0]
            rows.append(
                {
                    "epoch": epoch,
                    "split": split,
                    "case": case_id,
                    "method": method,
                    **{m: row[m] for m in MEASURES},
                    "seconds": row.get("seconds", math.nan),
                }
            )
    finally:
        restore_rng(state)
        model.zero_grad(set_to_none=True)
    return rows
