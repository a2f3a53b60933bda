"""Where the relevance goes: each modality's share, the lesion's share, informative modalities.

Only positive relevance (evidence *for* the lesion) is counted: ``R+ = max(R, 0)``.

- modality share of channel c: ``sum R+_c / sum_c' sum R+_c'`` (the shares of one map sum to 1);
- lesion share of channel c: ``sum_{lesion} R+_c / sum R+_c`` (how much of the channel's
  positive relevance lies inside the lesion mask);
- on synthetic data whose manifest says which modalities carry the lesion signal, the
  informative share ``sum_{c informative} share_c`` against the uniform expectation
  ``n_informative / C``: an explanation that points at the signal puts more than the uniform
  share on the informative modalities.

Undefined ratios (no positive relevance at all) are NaN, never a silent 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from strokelrp.analysis._arrays import require_ndim, to_float64, to_numpy
from strokelrp.config import MODALITIES
from strokelrp.errors import StrokeLRPError


def _nan_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast_shapes(num.shape, den.shape), np.nan)
    np.divide(num, den, out=out, where=np.broadcast_to(den > 0, out.shape))
    return out


def positive_relevance(relevance: Any) -> np.ndarray:
    """Sum of ``max(R, 0)`` over the volume: (C, D, H, W) -> (C,), (K, C, D, H, W) -> (K, C)."""
    r = to_float64(relevance, "relevance")
    require_ndim(r, (4, 5), "relevance", "(C, D, H, W) or (K, C, D, H, W)")
    return np.clip(r, 0.0, None).sum(axis=(-3, -2, -1))


def modality_shares(relevance: Any) -> np.ndarray:
    """Each channel's share of the map's positive relevance: (…, C, D, H, W) -> (…, C).

    The shares of one map sum to 1; a map without positive relevance gives NaN.
    """
    pos = positive_relevance(relevance)
    return _nan_divide(pos, pos.sum(axis=-1, keepdims=True))


def lesion_shares(relevance: Any, label: Any) -> np.ndarray:
    """Per channel, the share of positive relevance inside the lesion: (…, C, D, H, W) -> (…, C).

    ``label``: (D, H, W), lesion where non-zero. A channel without positive relevance gives NaN;
    an empty label gives 0 where the channel has positive relevance.
    """
    r = to_float64(relevance, "relevance")
    require_ndim(r, (4, 5), "relevance", "(C, D, H, W) or (K, C, D, H, W)")
    lesion = to_numpy(label, "label")
    require_ndim(lesion, (3,), "label", "(D, H, W)")
    if lesion.shape != r.shape[-3:]:
        raise StrokeLRPError(
            f"relevance {tuple(r.shape)} and label {tuple(lesion.shape)} must share (D, H, W)"
        )
    pos = np.clip(r, 0.0, None)
    inside = (pos * (lesion != 0)).sum(axis=(-3, -2, -1))
    return _nan_divide(inside, pos.sum(axis=(-3, -2, -1)))


def informative_mask(
    informative: Sequence[str | int], modalities: Sequence[str] = MODALITIES
) -> np.ndarray:
    """Bool (C,) from modality names (case-insensitive) or channel indices."""
    mask = np.zeros(len(modalities), dtype=bool)
    lower = [m.lower() for m in modalities]
    for item in informative:
        if isinstance(item, (int, np.integer)):
            if not 0 <= int(item) < len(modalities):
                raise StrokeLRPError(f"informative channel {item} is out of 0..{len(lower) - 1}")
            mask[int(item)] = True
        elif str(item).lower() in lower:
            mask[lower.index(str(item).lower())] = True
        else:
            raise StrokeLRPError(
                f"unknown informative modality {item!r}; expected one of {', '.join(modalities)}"
            )
    return mask


def informative_share(
    shares: Any, informative: Sequence[str | int], modalities: Sequence[str] = MODALITIES
) -> np.ndarray:
    """Sum of the modality shares on the informative channels: (…, C) -> (…).

    Compare with :func:`uniform_expectation`; NaN where the shares are NaN.
    """
    s = to_float64(shares, "shares")
    if s.shape[-1] != len(modalities):
        raise StrokeLRPError(
            f"shares have {s.shape[-1]} channels but {len(modalities)} modalities were named"
        )
    return (s * informative_mask(informative, modalities)).sum(axis=-1)


def uniform_expectation(
    informative: Sequence[str | int], modalities: Sequence[str] = MODALITIES
) -> float:
    """The informative share of a map that ignores the modalities: ``n_informative / C``."""
    return float(informative_mask(informative, modalities).sum() / len(modalities))


def share_summary(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per series and setting, from sweep-table rows: where the positive relevance goes.

    For each (run, case, setting) map: the informative share ``sum_{c informative} share_c``,
    its uniform expectation ``n_informative / C`` (only where the manifest marks some, not all,
    modalities informative: otherwise there is nothing to compare), and the map's lesion
    share ``sum_c share_c * lesion_share_c``.
    Returns one dict per (series, setting) with the means over maps: ``informative_share``,
    ``uniform_expectation``, ``lesion_share`` (NaN when undefined) and the counts ``n_maps`` and
    ``n_informative_maps``.
    """
    maps: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        maps.setdefault((row["series"], row["setting"], row["run"], row["case"]), []).append(row)
    groups: dict[tuple[Any, Any], dict[str, list[float]]] = {}
    for (series, setting, _run, _case), channel_rows in maps.items():
        acc = groups.setdefault((series, setting), {"inf": [], "uni": [], "lesion": [], "n": []})
        acc["n"].append(1.0)
        shares = [float(r["relevance_share"]) for r in channel_rows]
        if any(math.isnan(s) for s in shares):
            continue  # no positive relevance in this map: nothing to share out
        lesion = sum(
            s * float(r["lesion_share"]) for s, r in zip(shares, channel_rows, strict=True) if s > 0
        )
        acc["lesion"].append(lesion)
        flags = [r.get("informative") for r in channel_rows]
        if all(isinstance(f, bool) for f in flags) and any(flags) and not all(flags):
            acc["inf"].append(sum(s for s, f in zip(shares, flags, strict=True) if f))
            acc["uni"].append(sum(flags) / len(flags))

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    return [
        {
            "series": series,
            "setting": setting,
            "informative_share": mean(acc["inf"]),
            "uniform_expectation": mean(acc["uni"]),
            "lesion_share": mean(acc["lesion"]),
            "n_maps": len(acc["n"]),
            "n_informative_maps": len(acc["inf"]),
        }
        for (series, setting), acc in groups.items()
    ]
