"""Where an output came from: one record that every writer of results stores.

``explanation.json`` holds it under ``"provenance"``; ``metrics.csv``, ``table1.csv``,
``sweep/sweep.csv``, ``assess.csv`` and ``report.html`` get a sidecar
``<name>.provenance.json`` beside them
(:func:`sidecar_path`). The record names the command, the data root and the case files
(with a SHA-256 fingerprint of each case's content), the run and every checkpoint used with
its epoch, the LRP rule preset with all its fields and the fields overridden, and the
strokelrp, torch and Python versions. See docs/outputs.md for the fields.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from strokelrp import __version__
from strokelrp.atomic import write_text

SIDECAR_SUFFIX = ".provenance.json"
FORMAT = "strokelrp-provenance/1"

COMMAND_LINE: ContextVar[list[str] | None] = ContextVar("strokelrp_command_line", default=None)
"""The command line being run (set by :func:`strokelrp.cli.main`); ``None`` from Python."""


def set_command_line(argv: Iterable[str]) -> None:
    """Record the command line being run (the CLI does, before it runs a command)."""
    COMMAND_LINE.set([str(a) for a in argv])


def command_line() -> list[str]:
    """The command line that made an output: the CLI's (``["strokelrp", "explain", ...]``),
    else the Python process's ``sys.argv``."""
    given = COMMAND_LINE.get()
    return list(given) if given is not None else list(sys.argv)


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution (``None`` when not installed)."""
    import importlib.metadata

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def sidecar_path(path: str | Path) -> Path:
    """``RUN/metrics.csv`` -> ``RUN/metrics.provenance.json``."""
    path = Path(path)
    return path.with_name(path.name.split(".", 1)[0] + SIDECAR_SUFFIX)


def checkpoint_record(ckpt: Any, network: str | None = None) -> dict[str, Any]:
    """A :class:`strokelrp.train.checkpoint.Checkpoint` -> path, epoch (of planned), hash.

    ``path`` names the epoch's own file when ``last`` was read (``last`` moves on while
    training goes on; ``read_from`` keeps the file actually read).
    """
    read = Path(ckpt.path).resolve()
    own = read.with_name(Path(ckpt.epoch_path).name)
    record = {
        "path": str(own if own.is_file() else read),
        "read_from": str(read),
        "epoch": int(ckpt.epoch),
        "epochs_planned": int(ckpt.config.epochs),
        "weights_sha256": ckpt.meta.get("weights_sha256"),
        "trained_on": ckpt.config.data,
    }
    return {"network": network, **record} if network is not None else record


def rules_record(rules: Any) -> dict[str, Any]:
    """A preset name or :class:`~strokelrp.lrp.presets.Preset` -> name, overrides, all fields."""
    from strokelrp.lrp.presets import PRESETS, resolve

    chosen = resolve(rules)
    fields = {k: _plain(v) for k, v in dataclasses.asdict(chosen).items()}
    base = PRESETS.get(chosen.name)
    base_fields = (
        {k: _plain(v) for k, v in dataclasses.asdict(base).items()} if base is not None else {}
    )
    overrides = {k: v for k, v in fields.items() if k != "description" and base_fields.get(k) != v}
    return {"preset": chosen.name, "overrides": overrides, "resolved": fields}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def case_record(
    files: Mapping[str, str | Path],
    root: str | Path,
    fingerprint: str | None = None,
    orientation: str | None = None,
) -> dict[str, Any]:
    """One case's files (modality -> path relative to ``root``), content fingerprint and the
    files' axis codes (``"LPS"``...; the case was computed in RAS order)."""
    root = Path(root).resolve()
    rel = {}
    for key, path in files.items():
        path = Path(path).resolve()
        try:
            rel[key] = path.relative_to(root).as_posix()
        except ValueError:
            rel[key] = str(path)
    record: dict[str, Any] = {"files": rel}
    if fingerprint is not None:
        record["fingerprint_sha256"] = fingerprint
    if orientation is not None:
        record["orientation"] = orientation
    return record


def provenance(
    command: str,
    *,
    data_root: str | Path | None = None,
    cases: Mapping[str, dict[str, Any]] | None = None,
    run: str | Path | None = None,
    checkpoints: Iterable[dict[str, Any]] = (),
    rules: Any = None,
    packages: Iterable[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    """The record of one output: what made it, from which data, run, checkpoints and rules.

    ``cases``: case id -> :func:`case_record`; ``checkpoints``: :func:`checkpoint_record`
    dicts (or a family's own, e.g. nnU-Net's fold, file and hash); ``rules``: a preset name or
    ``Preset`` (recorded by :func:`rules_record`); ``packages``: further distributions whose
    versions are recorded (``"nnunetv2"``); ``extra``: further command-specific fields
    (target, filter settings, labels...).
    """
    import torch

    record: dict[str, Any] = {
        "format": FORMAT,
        "command": command,
        "written_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": {
            "strokelrp": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            **package_versions(packages),
        },
        "command_line": command_line(),
        "data": None
        if data_root is None
        else {"root": str(Path(data_root).resolve()), "cases": dict(cases or {})},
        "run": None if run is None else str(Path(run).resolve()),
        "checkpoints": list(checkpoints),
        "rules": None if rules is None else rules_record(rules),
    }
    record.update(extra)
    return record


NNUNET_PACKAGES = ("nnunetv2", "dynamic_network_architectures")
"""Distributions whose versions an nnU-Net output's provenance records."""


def nnunet_provenance(
    model: Any,
    command: str,
    *,
    cases: dict[str, dict[str, Any]],
    data_root: str | Path | None,
    **extra: Any,
) -> dict[str, Any]:
    """The provenance record of an nnU-Net output of ``command``: the model folder (a
    :class:`strokelrp.families.nnunet.NnUNetModel`) with the hashes of its
    ``plans.json`` and ``dataset.json``, every fold's checkpoint file with its SHA-256, the
    nnunetv2 and dynamic_network_architectures versions besides strokelrp's, the command line,
    ``cases`` (case id -> :func:`strokelrp.provenance.case_record`) and ``extra``."""
    from strokelrp.data.dataset import file_sha256

    folder = Path(model.folder)
    checkpoints = [
        {"fold": str(fold), "path": str(Path(path).resolve()), "sha256": file_sha256(Path(path))}
        for fold, path in zip(model.folds, model.checkpoint_files, strict=True)
    ]
    return provenance(
        command,
        data_root=data_root,
        cases=cases,
        checkpoints=checkpoints,
        packages=NNUNET_PACKAGES,
        nnunet={
            "folder": str(folder.resolve()),
            "configuration": model.configuration,
            "trainer": model.trainer,
            "plans": model.plans_name,
            "folds": [str(f) for f in model.folds],
            "checkpoint": model.checkpoint,
            "plans_sha256": file_sha256(folder / "plans.json"),
            "dataset_json_sha256": file_sha256(folder / "dataset.json"),
        },
        **extra,
    )


def write_sidecar(output: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``record`` (atomically) as the sidecar of ``output``; -> the sidecar's path."""
    text = json.dumps(record, indent=1, allow_nan=False, default=str) + "\n"
    return write_text(sidecar_path(output), text)


def read_sidecar(output: str | Path) -> dict[str, Any] | None:
    """The sidecar record of ``output``, or ``None`` when it has none (or it is unreadable)."""
    path = sidecar_path(output)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
