"""What the nnU-Net raw and Decathlon layouts share: ``dataset.json`` and the lesion class."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strokelrp.errors import StrokeLRPError

if TYPE_CHECKING:
    from strokelrp.data.layouts.base import Layout, ReadSpec

DATASET_JSON = "dataset.json"
LESION_WORDS = ("lesion", "stroke", "infarct", "core")
"""Label names taken as the lesion class when the data set has several and none is chosen."""


def load_dataset_json(root: Path) -> dict:
    """``ROOT/dataset.json`` as a dict; one clear error when it is missing or not JSON."""
    path = root / DATASET_JSON
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise StrokeLRPError(f"{path}: no such file (the layout needs its dataset.json)") from None
    except (OSError, ValueError) as err:
        raise StrokeLRPError(f"{path}: cannot be read as JSON ({err})") from err
    if not isinstance(doc, dict):
        raise StrokeLRPError(f"{path}: not a JSON object")
    return doc


def has_key(root: Path, key: str) -> bool:
    """Whether ``ROOT/dataset.json`` is a JSON object with ``key`` (False if unreadable)."""
    try:
        doc = json.loads((root / DATASET_JSON).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and key in doc


def indexed_names(mapping: object, what: str, path: Path) -> tuple[str, ...]:
    """``{"0": "DWI", "1": "ADC"}`` -> ``("DWI", "ADC")`` (indices 0..N-1, each once)."""
    if not isinstance(mapping, Mapping) or not mapping:
        raise StrokeLRPError(f'{path}: {what} must be a non-empty object {{"0": name, ...}}')
    try:
        items = sorted((int(k), str(v)) for k, v in mapping.items())
    except (TypeError, ValueError):
        raise StrokeLRPError(f"{path}: {what} keys must be channel indices 0, 1, ...") from None
    if [i for i, _ in items] != list(range(len(items))):
        raise StrokeLRPError(f"{path}: {what} indices must be 0 to {len(items) - 1}")
    names = tuple(n for _, n in items)
    if len({n.lower() for n in names}) != len(names):
        raise StrokeLRPError(f"{path}: {what} names a channel twice ({', '.join(names)})")
    return names


def lesion_class(labels: dict[str, int], chosen: str | None, path: Path) -> tuple[str, int]:
    """The label class read as lesion -> (name, value): ``chosen`` by name or value; else the
    one foreground class; else the one named exactly, else the one named partly, like a
    lesion (:data:`LESION_WORDS`)."""
    foreground = {n: v for n, v in labels.items() if v != 0}
    if not foreground:
        raise StrokeLRPError(f"{path}: labels hold no class other than background (0)")
    shown = ", ".join(f"{n}={v}" for n, v in labels.items())
    if chosen is not None:
        for name, value in foreground.items():
            if chosen.lower() == name.lower() or chosen == str(value):
                return name, value
        raise StrokeLRPError(f"{path}: no label class {chosen!r}; the labels are {shown}")
    if len(foreground) == 1:
        return next(iter(foreground.items()))
    exact = [(n, v) for n, v in foreground.items() if n.lower() in LESION_WORDS]
    if len(exact) == 1:
        return exact[0]
    named = [(n, v) for n, v in foreground.items() if any(w in n.lower() for w in LESION_WORDS)]
    if len(named) == 1:
        return named[0]
    raise StrokeLRPError(
        f"{path}: several label classes ({shown}); choose the lesion class with --lesion NAME"
    )


def read_spec(
    layout: Layout,
    all_channels: tuple[str, ...],
    labels: dict[str, int],
    path: Path,
    title: Callable[[str], str],
    **options: Any,
) -> ReadSpec:
    """How to read a case of a ``dataset.json`` layout: the channels the user chose of
    ``all_channels`` (each named in messages by ``title``), the lesion class of ``labels``
    (name -> value) and its ``label`` file; ``options``: further :class:`ReadSpec` fields."""
    from strokelrp.data.layouts.base import ReadSpec

    lesion_name, lesion_value = lesion_class(labels, layout.lesion, path)
    channels = layout.choose_channels(all_channels, str(path))
    return ReadSpec(
        channels=channels,
        label="label",
        names={
            **{c: title(c) for c in channels},
            "label": f"the label (lesion class {lesion_name}={lesion_value})",
        },
        lesion_values=(lesion_value,),
        label_values=tuple(sorted(labels.values())),
        **options,
    )
