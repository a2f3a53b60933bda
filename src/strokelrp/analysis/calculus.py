"""Filter calculus (paper section 4): area A_alpha, mean mu_alpha, P(A_alpha <= A_I), alpha_0.

Notation as the paper (see docs/calculus.md for the derivations and the worked examples):

- ``N_abs(f) = f / max |f|`` normalises a relevance channel to [-1, 1];
- ``A_alpha[W] = ∫_W N_abs(f_alpha)(w) dw``: the area under the filtered, normalised relevance
  over a region W (the whole volume by default); on a voxel grid the integral is the midpoint
  rule, ``dw`` = the voxel volume (mm³ when given the spacing, else 1 per voxel);
- ``mu_alpha = A_alpha / |W|``: the dimensionless mean (``|W|`` = the region's volume); over
  the whole volume it is the mean normalised signal of :mod:`strokelrp.analysis.distribution`;
- ``P(A_alpha <= A_I)``: the fraction of data points (cases x channels) whose area is at most
  a bound ``A_I``, estimated empirically;
- the sweet spot ``alpha_0`` (:func:`sweet_spot`): over the (0, alpha)-pass grid, the spread of
  mu_alpha across data points (standard deviation or interquartile range) as a function of
  alpha; alpha_0 is the smallest alpha whose spread is still at least ``fraction`` of the
  largest spread. Below alpha_0 the variability of mu, the paper's proxy for information
  content, has collapsed: filtering away more destroys information. ``fraction=1`` gives the
  alpha of maximal spread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from strokelrp.analysis._arrays import require_ndim, to_float64, to_numpy
from strokelrp.analysis.distribution import Scope, normalize
from strokelrp.errors import StrokeLRPError

Statistic = Literal["sd", "iqr"]
STATISTICS: tuple[str, ...] = ("sd", "iqr")


def integrate(values: Any, dw: float, region: Any = None) -> float:
    """Midpoint-rule integral ``∫_W f dw`` of samples ``values`` taken at cell centres.

    ``values``: f on a grid of any shape; ``dw``: the cell size (length, area or volume);
    ``region``: bool mask W of the same shape (None: the whole grid). With n cells on [0, 1],
    ``dw = 1 / n`` and the samples sit at ``(i + 0.5) / n``.
    """
    f = to_float64(values, "values")
    if region is not None:
        mask = to_numpy(region, "region").astype(bool)
        if mask.shape != f.shape:
            raise StrokeLRPError(
                f"region {tuple(mask.shape)} does not match the values {tuple(f.shape)}"
            )
        f = np.where(mask, f, 0.0)
    return float(f.sum() * dw)


def voxel_volume(spacing: Sequence[float] | None) -> float:
    """dw for a voxel grid: the product of the spacing (mm, any order), or 1 when None."""
    if spacing is None:
        return 1.0
    if len(spacing) != 3 or any(s <= 0 for s in spacing):
        raise StrokeLRPError(f"spacing must be three positive numbers, got {tuple(spacing)}")
    return float(np.prod(spacing))


def _region_mask(region: Any, shape: tuple[int, ...]) -> np.ndarray:
    if region is None:
        return np.ones(shape, dtype=bool)
    mask = to_numpy(region, "region") != 0
    if mask.shape != shape:
        raise StrokeLRPError(f"region {tuple(mask.shape)} must have the volume's shape {shape}")
    return mask


def area(
    relevance: Any,
    region: Any = None,
    spacing: Sequence[float] | None = None,
    scope: Scope = "channel",
) -> np.ndarray:
    """``A_alpha[W] = ∫_W N_abs(R)_c dw`` per channel.

    ``relevance``: the (filtered) map, (C, D, H, W) -> (C,) or (K, C, D, H, W) -> (K, C);
    ``region``: (D, H, W) mask W (None: the whole volume); ``spacing``: voxel size in mm
    (None: dw = 1 voxel). NaN for a channel that is zero everywhere (no normalisation).
    """
    n = normalize(relevance, scope)
    mask = _region_mask(region, n.shape[-3:])
    return (np.where(mask, n, 0.0)).sum(axis=(-3, -2, -1)) * voxel_volume(spacing)


def mean_over_region(relevance: Any, region: Any = None, scope: Scope = "channel") -> np.ndarray:
    """``mu_alpha = A_alpha[W] / |W|``, dimensionless: (C, D, H, W) -> (C,), (K, ...) -> (K, C).

    With ``region=None`` it equals the mean normalised signal. NaN for an empty region.
    """
    n = normalize(relevance, scope)
    mask = _region_mask(region, n.shape[-3:])
    size = int(mask.sum())
    if size == 0:
        return np.full(n.shape[:-3], np.nan)
    return np.where(mask, n, 0.0).sum(axis=(-3, -2, -1)) / size


def probability_at_most(values: Any, bound: float | Any) -> np.ndarray:
    """Empirical ``P(A <= A_I)`` over data points: (N,) -> scalar, (N, K) -> (K,).

    ``values``: areas (or means) of N data points, optionally for K settings; ``bound``: A_I,
    a number or one per setting (K,). NaN values (undefined areas) are left out; a column with
    no valid value gives NaN.
    """
    v = to_float64(values, "values")
    require_ndim(v, (1, 2), "values", "(N,) or (N, K)")
    valid = ~np.isnan(v)
    hits = np.logical_and(valid, v <= np.asarray(bound, dtype=np.float64)).sum(axis=0)
    count = valid.sum(axis=0)
    out = np.full(np.shape(count), np.nan)
    np.divide(hits, count, out=out, where=count > 0)
    return out[()] if out.ndim == 0 else out


def spread(values: Any, statistic: Statistic = "sd") -> np.ndarray:
    """Spread of each column over data points: (N, K) -> (K,).

    ``"sd"``: population standard deviation; ``"iqr"``: 75th minus 25th percentile. NaN values
    are left out; a column with fewer than two valid values has spread 0 (nothing varies).
    """
    if statistic not in STATISTICS:
        raise StrokeLRPError(f"statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}")
    v = to_float64(values, "values")
    require_ndim(v, (2,), "values", "(N, K)")
    out = np.zeros(v.shape[1])
    for k in range(v.shape[1]):
        col = v[:, k][~np.isnan(v[:, k])]
        if col.size < 2:
            continue
        if statistic == "sd":
            out[k] = col.std()
        else:
            q75, q25 = np.percentile(col, [75, 25])
            out[k] = q75 - q25
    return out


def first_alpha_at_fraction(alphas: Any, curve: Any, fraction: float) -> float:
    """The smallest alpha whose ``curve`` value is >= ``fraction`` x the curve's maximum.

    ``alphas``, ``curve``: (K,), any order. NaN if the curve is nowhere positive.
    """
    if not 0.0 < fraction <= 1.0:
        raise StrokeLRPError(f"fraction must be in (0, 1], got {fraction}")
    a, c = to_float64(alphas, "alphas"), to_float64(curve, "curve")
    if a.shape != c.shape or a.ndim != 1:
        raise StrokeLRPError(f"alphas {a.shape} and curve {c.shape} must be two (K,) arrays")
    peak = np.nanmax(c) if c.size else np.nan
    if not peak > 0:
        return float("nan")
    return float(np.min(a[c >= fraction * peak]))


@dataclass(frozen=True)
class SweetSpot:
    """The sweet spot alpha_0 and the curve it is read from.

    ``alphas`` (K,) ascending, ``spread`` (K,) the spread of mu over data points at each alpha,
    ``alpha0`` the smallest alpha with ``spread >= fraction * max(spread)``, ``peak_alpha`` the
    alpha of maximal spread, ``n_points`` the number of data points.
    """

    alpha0: float
    peak_alpha: float
    alphas: tuple[float, ...]
    spread: tuple[float, ...]
    fraction: float
    statistic: str
    n_points: int


def sweet_spot(
    mu: Any, alphas: Sequence[float], statistic: Statistic = "sd", fraction: float = 0.5
) -> SweetSpot:
    """Estimate alpha_0 from mu_alpha of N data points on K (0, alpha)-pass settings.

    ``mu``: (N, K), e.g. the mean normalised signal of every (case, channel) under each
    setting; ``alphas``: (K,) the settings' upper bounds (the raw map is alpha = 1).
    """
    m = to_float64(mu, "mu")
    require_ndim(m, (2,), "mu", "(N, K)")
    a = np.asarray(alphas, dtype=np.float64)
    if a.shape != (m.shape[1],):
        raise StrokeLRPError(f"{m.shape[1]} columns of mu but {a.size} alphas")
    order = np.argsort(a)
    a, m = a[order], m[:, order]
    s = spread(m, statistic)
    alpha0 = first_alpha_at_fraction(a, s, fraction)
    peak = float(a[int(np.argmax(s))]) if np.any(s > 0) else float("nan")
    return SweetSpot(
        alpha0=alpha0,
        peak_alpha=peak,
        alphas=tuple(float(x) for x in a),
        spread=tuple(float(x) for x in s),
        fraction=fraction,
        statistic=statistic,
        n_points=int(m.shape[0]),
    )


def mu_matrix(
    rows: Iterable[Mapping[str, Any]],
    kind: str = "pass",
    value: str = "mean_signal",
    include_raw: bool = True,
    scope: str = "sample",
) -> tuple[np.ndarray, list[float], list[tuple[str, str, str]]]:
    """Collect mu from sweep-table rows for the (0, alpha) settings of one filter kind and
    normalisation scope (``sample``: N = max|R| over the sample; ``channel``: per channel, the
    settings labelled ``clamp(0,0.2)/channel``), never both.

    Returns ``(mu (N, K), alphas (K,), points)`` where a data point is (run, case, modality) and
    the raw map counts as alpha = 1 (``include_raw``). Missing cells are NaN.
    """
    cells: dict[tuple[str, str, str], dict[float, float]] = {}
    for row in rows:
        if row["kind"] == "raw" and include_raw:
            alpha = 1.0
        elif row["kind"] == kind and float(row["a1"]) == 0.0 and row_scope(row) == scope:
            alpha = float(row["a2"])
        else:
            continue
        point = (str(row["run"]), str(row["case"]), str(row["modality"]))
        cells.setdefault(point, {})[alpha] = float(row[value])
    alphas = sorted({a for c in cells.values() for a in c})
    points = sorted(cells)
    mu = np.full((len(points), len(alphas)), np.nan)
    for i, point in enumerate(points):
        for j, alpha in enumerate(alphas):
            mu[i, j] = cells[point].get(alpha, np.nan)
    return mu, alphas, points


def row_scope(row: Mapping[str, Any]) -> str:
    """The normalisation scope of a sweep row's filter: ``channel`` for a setting labelled
    ``clamp(0,0.2)/channel``, ``sample`` otherwise."""
    return str(row.get("setting", "")).partition("/")[2] or "sample"


def recovery_errors(approx: Any, truth: Any, dw: float) -> tuple[float, float]:
    """Split ``∫ |approx - truth| dw`` into (spurious, missed) for the filter examples.

    ``spurious`` is the error where the true explanation is zero (signal that should not be
    there); ``missed`` the error where it is not (signal lost or distorted). Both arrays are
    samples at cell centres of the same grid.
    """
    a, t = to_float64(approx, "approx"), to_float64(truth, "truth")
    if a.shape != t.shape:
        raise StrokeLRPError(f"approx {a.shape} and truth {t.shape} must have the same shape")
    err = np.abs(a - t)
    return float(err[t == 0].sum() * dw), float(err[t != 0].sum() * dw)


def sweet_spots(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """alpha_0 (:func:`sweet_spot` of :func:`mu_matrix`) of the pass and of the clamp (0, alpha)
    settings in sweep-table ``rows`` of one rule set, by kind; a kind with fewer than two
    settings is left out, and alpha_0 may be NaN when mu does not vary."""
    rows = list(rows)
    spots: dict[str, float] = {}
    for kind in ("pass", "clamp"):
        mu, alphas, _ = mu_matrix(rows, kind=kind)
        if len(alphas) >= 2:
            spots[kind] = sweet_spot(mu, alphas).alpha0
    return spots
