"""The sweep table: columns, typed reading, atomic writing, settings, labels and summaries.

One row per run x case x filter setting x modality (tidy). Columns, in order:

==================  ==========================================================================
run                 the run directory's name
series              the run's series scale (A, B, C, X, or D x H x W)
network             the network's label (the run directory's name)
case                case id
case_dice           Dice of the prediction against the label at model scale (NaN: no label)
target              where relevance started: prediction or ground_truth
rules               the LRP rule preset (empty for a baseline's rows)
kind                raw, pass, clamp, or baseline (a non-LRP method's map; setting = its name)
a1, a2              the filter's range (|f1| in [a1, a2]); empty for raw
setting             label as strokelrp.lrp.filters.filter_label: "raw", "pass(0,0.2)"
modality            ADC, MTT, rCBF, rCBV, Tmax or TTP
input_inclusivity   D(LRP_c, x_c)
gt_inclusivity      D(LRP_c, OT) (0 without a lesion)
mean_signal         mean over the volume of R_c / max |R_c| (NaN: no relevance in the channel)
relevance_share     the channel's share of the map's positive relevance
lesion_share        share of the channel's positive relevance inside the lesion
informative         True / False from the synthetic manifest, empty when there is none
ablation_drop       Dice drop of the case when this modality is mean-filled
                    (:mod:`strokelrp.trust.ablation`; the same for every setting; optional:
                    tables written before it read as NaN)
abs_share           the channel's share of the map's |R| (the share ablation_rho ranks;
                    optional: tables written before it read as NaN)
==================  ==========================================================================
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strokelrp.atomic import atomic_write
from strokelrp.errors import StrokeLRPError

COLUMNS: tuple[str, ...] = (
    "run",
    "series",
    "network",
    "case",
    "case_dice",
    "target",
    "rules",
    "kind",
    "a1",
    "a2",
    "setting",
    "modality",
    "input_inclusivity",
    "gt_inclusivity",
    "mean_signal",
    "relevance_share",
    "lesion_share",
    "informative",
    "ablation_drop",
    "abs_share",
)
OPTIONAL_COLUMNS = frozenset({"ablation_drop", "abs_share"})
"""Columns a table may lack (written by an older strokelrp): read as NaN."""
FLOAT_COLUMNS = frozenset(
    {
        "case_dice",
        "a1",
        "a2",
        "input_inclusivity",
        "gt_inclusivity",
        "mean_signal",
        "relevance_share",
        "lesion_share",
        "ablation_drop",
        "abs_share",
    }
)

Row = dict[str, Any]


def format_number(value: float) -> str:
    """Shortest round-trip text of a float (``0.2``, not ``0.20000000000000001``)."""
    return repr(float(value))


@dataclass(frozen=True)
class Setting:
    """One filter setting: the filter object (None = raw) and how tables and files name it.

    ``kind`` ``raw`` / ``pass`` / ``clamp``, or ``baseline`` for the single map of a non-LRP
    method (:func:`baseline_setting`); ``a1`` / ``a2`` its bounds (None for raw and
    baselines), ``label`` the table label (``pass(0,0.4)``, ``clamp(0,0.2)/channel``,
    ``gradient_x_input``), :attr:`stem` the shell-friendly file stem of its relevance map
    (``relevance_pass_0-0.4``, ``relevance_gradient_x_input``).
    """

    filter: Any
    kind: str
    a1: float | None
    a2: float | None
    label: str

    @property
    def stem(self) -> str:
        """``relevance_raw``, ``relevance_pass_0-0.4``, ``relevance_clamp_0-0.2_channel``."""
        if self.kind == "raw":
            return "relevance_raw"
        if self.kind == "baseline":
            return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"relevance_{self.label}").rstrip("_")
        stem = f"relevance_{self.kind}_{self.a1:g}-{self.a2:g}"
        scope = getattr(self.filter, "scope", "sample")
        if scope != "sample":
            stem += f"_{scope}"
        return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)


def describe(f: Any) -> Setting:
    """The :class:`Setting` of a filter of :mod:`strokelrp.lrp.filters` (``None`` = raw)."""
    if f is None:
        return Setting(None, "raw", None, None, "raw")
    kind, low, high = f.kind, float(f.low), float(f.high)
    label = setting_label(kind, low, high)
    if getattr(f, "scope", "sample") != "sample":
        label += f"/{f.scope}"
    return Setting(f, kind, low, high, label)


def baseline_setting(label: str) -> Setting:
    """The :class:`Setting` of a non-LRP method's single map (``gradient_x_input``,
    ``integrated_gradients(steps=16)``): kind ``baseline``, no filter, named by ``label``."""
    return Setting(None, "baseline", None, None, label)


def setting_label(kind: str, a1: float | None = None, a2: float | None = None) -> str:
    """``"raw"`` or ``"pass(0,0.2)"``: the label of tables and figures (as the engine's)."""
    if kind == "raw":
        return "raw"
    return f"{kind}({_short(a1)},{_short(a2)})"


def _short(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{float(value):g}"


def setting_sort_key(row: Mapping[str, Any]) -> tuple[int, float, float]:
    """Order settings as the paper: raw, pass (0, a), pass (a, 1), clamp (0, a), others."""
    kind = row["kind"]
    a1 = _to_float(row.get("a1"))
    a2 = _to_float(row.get("a2"))
    a1 = 0.0 if math.isnan(a1) else a1
    a2 = 1.0 if math.isnan(a2) else a2
    if kind == "raw":
        return (0, 0.0, 0.0)
    if kind == "pass":
        return (1, 0.0, a2) if a1 == 0 else (2, a1, a2)
    if kind == "clamp":
        return (3, a1, a2)
    return (4, a1, a2)


def _to_float(value: Any) -> float:
    if value is None or value == "":
        return float("nan")
    return float(value)


def _parse(column: str, text: str) -> Any:
    if column in FLOAT_COLUMNS:
        return _to_float(text)
    if column == "informative":
        return {"True": True, "False": False}.get(text)
    return text


def _format(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column in FLOAT_COLUMNS:
        if isinstance(value, str) and not value:
            return ""
        if column in ("a1", "a2") and math.isnan(float(value)):
            return ""  # the raw map has no range
        return format_number(value)
    return str(value)


def read_table(path: str | Path) -> list[Row]:
    """Rows of a sweep CSV: floats (NaN for empty), ``informative`` as True / False / None."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            names = reader.fieldnames or []
            missing = [c for c in COLUMNS if c not in names and c not in OPTIONAL_COLUMNS]
            if missing:
                raise StrokeLRPError(f"{path}: not a sweep table, missing columns {missing}")
            return [{c: _parse(c, row.get(c, "")) for c in COLUMNS} for row in reader]
    except OSError as err:
        raise StrokeLRPError(f"{path}: cannot read the sweep table ({err.strerror})") from err


def read_tables(paths: Iterable[str | Path]) -> list[Row]:
    """The rows of several sweep tables, concatenated."""
    rows: list[Row] = []
    for path in paths:
        rows.extend(read_table(path))
    return rows


def write_table(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write sweep rows (in :data:`COLUMNS` order) atomically."""

    def write(fh: Any) -> None:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _format(c, row.get(c)) for c in COLUMNS})

    return atomic_write(path, write)


def sort_rows(rows: Iterable[Row], modalities: Sequence[str]) -> list[Row]:
    """Rows ordered by run, case, setting (paper order, then label: baselines by name),
    modality (channel order)."""
    order = {m: i for i, m in enumerate(modalities)}
    return sorted(
        rows,
        key=lambda r: (
            str(r["run"]),
            str(r["case"]),
            setting_sort_key(r),
            str(r["setting"]),
            order.get(str(r["modality"]), len(order)),
        ),
    )


def ordered_settings(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The distinct setting labels of ``rows`` in the paper's order."""
    keys: dict[str, tuple[int, float, float]] = {}
    for row in rows:
        keys.setdefault(str(row["setting"]), setting_sort_key(row))
    return sorted(keys, key=lambda s: keys[s])


def group_values(
    rows: Iterable[Mapping[str, Any]], by: Sequence[str], value: str
) -> dict[tuple[Any, ...], list[float]]:
    """The finite values of column ``value`` grouped by the columns ``by``."""
    groups: dict[tuple[Any, ...], list[float]] = {}
    for row in rows:
        v = _to_float(row[value])
        groups.setdefault(tuple(row[c] for c in by), [])
        if math.isfinite(v):
            groups[tuple(row[c] for c in by)].append(v)
    return groups


def mean_table(
    rows: Iterable[Mapping[str, Any]], value: str, by: Sequence[str] = ("series", "setting")
) -> dict[tuple[Any, ...], float]:
    """Mean of ``value`` per group (NaN values left out; NaN for a group without values)."""
    return {
        key: (sum(vals) / len(vals) if vals else float("nan"))
        for key, vals in group_values(rows, by, value).items()
    }
