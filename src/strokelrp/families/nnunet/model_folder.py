"""An nnU-Net v2 model folder, read without executing code: plans, data set, folds, networks.

A results folder ``DatasetXXX_Name/<Trainer>__<Plans>__<configuration>/`` holds ``plans.json``,
``dataset.json`` and ``fold_k/checkpoint_{final,best}.pth``. The network is rebuilt from the
plan's ``architecture`` entry (``network_class_name`` + ``arch_kwargs``, following the
configuration's ``inherits_from``) with ``dynamic_network_architectures``, the builder nnU-Net
itself uses; only classes of ``dynamic_network_architectures`` and ``torch.nn`` are imported
(a plan names classes by dotted path, and importing any module named in a file would run its
code). Deep supervision is off and every in-place activation or dropout is rebuilt with
``inplace=False`` (relevance hooks need the activations' inputs). Checkpoints are read with
``torch.load(weights_only=True)`` and an allow-list of exactly the numpy types nnU-Net's
training log stores; ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes are removed.
Cascade configurations and nnU-Net v1 folders are refused with one clear message.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strokelrp.errors import StrokeLRPError

CHECKPOINTS: dict[str, str] = {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth"}
"""``--checkpoint`` names and the file nnU-Net writes for each."""

_IMPORTABLE = ("dynamic_network_architectures.", "torch.nn.")
"""A plan may name classes from these packages only."""

_PREFIXES = ("module.", "_orig_mod.")

V1_FILES = ("model_final_checkpoint.model", "model_best.model", "plans.pkl")


@dataclass
class NnUNetModel:
    """A loaded nnU-Net model folder: one network per fold (eval mode, CPU, float32).

    ``patch_size`` and ``spacing`` are in nnU-Net's transposed axis order (the order the
    networks see); ``mirror_axes`` are the spatial axes (0-based) nnU-Net mirrors at inference.
    """

    folder: Path
    configuration: str
    trainer: str
    plans_name: str
    plans: dict[str, Any]
    dataset: dict[str, Any]
    folds: list[int | str]
    checkpoint: str
    networks: list[Any]
    patch_size: tuple[int, ...]
    mirror_axes: tuple[int, ...]
    checkpoint_files: list[Path] = field(default_factory=list)

    @property
    def channel_names(self) -> list[str]:
        """The input channels in nnU-Net's order (``dataset.json`` ``channel_names``)."""
        names = self.dataset.get("channel_names") or self.dataset.get("modality") or {}
        return [str(names[k]) for k in sorted(names, key=int)]

    @property
    def labels(self) -> dict[str, Any]:
        """``dataset.json`` ``labels``: name -> integer (or regions)."""
        return dict(self.dataset.get("labels", {}))

    @property
    def configuration_plan(self) -> dict[str, Any]:
        """The configuration's plan with ``inherits_from`` resolved."""
        return resolve_configuration(self.plans, self.configuration, self.folder / "plans.json")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise StrokeLRPError(f"nnU-Net model folder {path.parent}: {path.name} is missing")
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StrokeLRPError(f"{path}: not readable JSON ({err})") from err
    if not isinstance(value, dict):
        raise StrokeLRPError(f"{path}: expected a JSON object")
    return value


def resolve_configuration(plans: Mapping[str, Any], name: str, where: Path) -> dict[str, Any]:
    """The configuration ``name`` of ``plans`` with its ``inherits_from`` chain merged (the
    child's keys win), as nnU-Net's ``PlansManager`` does; cascades are refused."""
    configs = plans.get("configurations") or {}
    chain: list[str] = []
    current: str | None = name
    while current is not None:
        if current not in configs:
            raise StrokeLRPError(
                f"{where}: configuration {current!r} is not in the plan "
                f"(it has {', '.join(sorted(configs)) or 'none'})"
            )
        if current in chain:
            raise StrokeLRPError(f"{where}: configuration {name!r} inherits from itself")
        chain.append(current)
        current = configs[current].get("inherits_from")
    merged: dict[str, Any] = {}
    for link in reversed(chain):
        merged.update({k: v for k, v in configs[link].items() if k != "inherits_from"})
    if merged.get("previous_stage") or "cascade" in name:
        raise StrokeLRPError(
            f"{where}: configuration {name!r} is a cascade stage (it needs the segmentation of "
            f"{merged.get('previous_stage') or 'a previous stage'} as input); strokelrp explains "
            "single-stage configurations (2d, 3d_fullres, 3d_lowres)"
        )
    return merged


def _locate(dotted: str, where: Path) -> Any:
    """The class ``dotted`` from dynamic_network_architectures or torch.nn (nothing else)."""
    if not dotted.startswith(_IMPORTABLE):
        raise StrokeLRPError(
            f"{where}: the plan names {dotted!r}; strokelrp builds networks only from classes of "
            "dynamic_network_architectures and torch.nn"
        )
    module_name, _, attr = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except ImportError as err:
        if dotted.startswith("dynamic_network_architectures"):
            raise StrokeLRPError(
                "nnU-Net models need dynamic_network_architectures: pip install "
                "'strokelrp[nnunet]' (see the README's nnU-Net section)"
            ) from err
        raise StrokeLRPError(f"{where}: cannot import {dotted!r} ({err})") from err
    except AttributeError as err:
        raise StrokeLRPError(f"{where}: {module_name} has no {attr!r}") from err


def num_input_channels(dataset: Mapping[str, Any]) -> int:
    names = dataset.get("channel_names") or dataset.get("modality")
    if not names:
        raise StrokeLRPError("dataset.json has no channel_names")
    return len(names)


def num_outputs(dataset: Mapping[str, Any]) -> int:
    """Output channels as nnU-Net counts them: one per label, or one per region."""
    labels = dataset.get("labels") or {}
    if dataset.get("regions_class_order") is not None:
        return sum(1 for k in labels if k != "background")
    return len([k for k in labels if k != "ignore"])


def build_network(config: Mapping[str, Any], inputs: int, outputs: int, where: Path) -> Any:
    """The configuration's network (deep supervision off, no in-place ops), not initialised."""
    arch = config.get("architecture")
    if not isinstance(arch, Mapping) or "network_class_name" not in arch:
        raise StrokeLRPError(
            f"{where}: the configuration has no 'architecture' entry (plans written by nnU-Net "
            "before v2.4 name the network differently; re-plan with a current nnU-Net)"
        )
    kwargs = dict(arch.get("arch_kwargs") or {})
    for key in arch.get("_kw_requires_import") or ():
        if kwargs.get(key) is not None:
            kwargs[key] = _locate(str(kwargs[key]), where)
    for key in ("nonlin_kwargs", "dropout_op_kwargs"):
        if isinstance(kwargs.get(key), Mapping) and "inplace" in kwargs[key]:
            kwargs[key] = {**kwargs[key], "inplace": False}
    cls = _locate(str(arch["network_class_name"]), where)
    try:
        network = cls(input_channels=inputs, num_classes=outputs, deep_supervision=False, **kwargs)
    except TypeError as err:
        raise StrokeLRPError(f"{where}: cannot build {arch['network_class_name']}: {err}") from err
    for module in network.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    return network.eval()


def _safe_globals() -> list[Any]:
    """The types nnU-Net's checkpoints hold beyond tensors and builtins: numpy scalars
    (float32/float64 values of the training log) and their dtypes. Nothing else is allowed."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    return [scalar, np.dtype, type(np.dtype("float32")), type(np.dtype("float64"))]


def read_checkpoint(path: Path) -> dict[str, Any]:
    """An nnU-Net checkpoint read with ``weights_only=True`` (no code runs)."""
    import torch

    if not path.is_file():
        raise StrokeLRPError(f"nnU-Net checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickled code refused, a truncated file, ...
        first = str(err).strip().splitlines()
        raise StrokeLRPError(
            f"cannot read nnU-Net checkpoint {path} without executing code: "
            f"{first[0] if first else type(err).__name__}"
        ) from err
    if not isinstance(value, Mapping) or not isinstance(value.get("network_weights"), Mapping):
        raise StrokeLRPError(f"{path}: not an nnU-Net v2 checkpoint (no 'network_weights')")
    return dict(value)


def strip_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    """State-dict keys without DDP's ``module.`` and torch.compile's ``_orig_mod.``."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    return out


def _parse_folder_name(folder: Path) -> tuple[str, str, str]:
    parts = folder.name.split("__")
    if len(parts) != 3:
        raise StrokeLRPError(
            f"{folder}: not an nnU-Net v2 results folder (its name should be "
            "<Trainer>__<Plans>__<configuration>, e.g. nnUNetTrainer__nnUNetPlans__3d_fullres)"
        )
    return parts[0], parts[1], parts[2]


def available_folds(folder: Path, checkpoint: str) -> list[int | str]:
    """Folds with the checkpoint file, numeric first, then ``all``."""
    name = CHECKPOINTS[checkpoint]
    found = [p.name[len("fold_") :] for p in folder.glob("fold_*") if (p / name).is_file()]
    numeric = sorted(int(f) for f in found if f.isdigit())
    return [*numeric, *(["all"] if "all" in found else [])]


def _refuse_v1(folder: Path) -> None:
    hits = [p for p in folder.rglob("*") if p.name in V1_FILES or p.name.endswith(".model.pkl")]
    if hits:
        raise StrokeLRPError(
            f"{folder} is an nnU-Net v1 model folder ({hits[0].name}); strokelrp reads nnU-Net "
            "v2 folders (plans.json, dataset.json, fold_k/checkpoint_final.pth). nnU-Net v2 "
            "cannot convert trained v1 weights: convert the v1 data set with "
            "nnUNetv2_convert_old_nnUNet_dataset and retrain with nnUNetv2_train"
        )


def parse_folds(folds: str | Sequence[int | str]) -> str | list[int | str]:
    """``"all"``, ``"0,1"``, ``"0 1"``, ``["0", "1"]`` or ``[0, 1]`` -> ``"all"`` (every fold
    found, see :func:`strokelrp.families.nnunet.load_nnunet`) or the fold numbers."""
    if isinstance(folds, str):
        if folds.strip() == "all":
            return "all"
        items: list[Any] = [f for f in folds.replace(",", " ").split() if f]
    else:
        items = list(folds)
    out: list[int | str] = []
    for item in items:
        text = str(item).strip()
        if text.isdigit():
            out.append(int(text))
        elif text == "all" and len(items) == 1:
            return "all"
        else:
            raise StrokeLRPError(
                f"--folds: {text!r} is not a fold; give fold numbers (0 1 2 3 4 or 0,1) or all"
            )
    if not out:
        raise StrokeLRPError("--folds: no fold given; give fold numbers (0 1 2 3 4 or 0,1) or all")
    return out


def load_nnunet(
    folder: str | Path,
    folds: Sequence[int | str] | str | None = None,
    checkpoint: str = "final",
) -> NnUNetModel:
    """Load an nnU-Net v2 results folder: one network per fold (eval mode, CPU).

    ``folds``: fold numbers, ``"all"`` for every fold found (the default; nnU-Net's
    ``fold_all`` is used only when no numbered fold exists or when asked for by ``["all"]``).
    ``checkpoint``: ``"final"`` or ``"best"``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise StrokeLRPError(f"nnU-Net model folder {root} does not exist")
    if checkpoint not in CHECKPOINTS:
        raise StrokeLRPError(f"--checkpoint must be final or best, got {checkpoint!r}")
    if not (root / "plans.json").is_file():
        _refuse_v1(root)
    trainer, plans_name, configuration = _parse_folder_name(root)
    plans = _read_json(root / "plans.json")
    dataset = _read_json(root / "dataset.json")
    config = resolve_configuration(plans, configuration, root / "plans.json")
    found = available_folds(root, checkpoint)
    if folds is None or folds == "all":
        wanted: list[int | str] = [f for f in found if f != "all"] or found
    else:
        wanted = [f if f == "all" else int(f) for f in folds]
    if not wanted:
        raise StrokeLRPError(f"{root}: no fold_*/{CHECKPOINTS[checkpoint]} found")
    missing = [f for f in wanted if f not in found]
    if missing:
        raise StrokeLRPError(
            f"{root}: fold(s) {', '.join(map(str, missing))} have no {CHECKPOINTS[checkpoint]} "
            f"(found: {', '.join(map(str, found)) or 'none'})"
        )
    inputs, outputs = num_input_channels(dataset), num_outputs(dataset)
    networks, files, mirror_axes = [], [], None
    for fold in wanted:
        path = root / f"fold_{fold}" / CHECKPOINTS[checkpoint]
        state = read_checkpoint(path)
        net = build_network(config, inputs, outputs, root / "plans.json")
        weights = strip_prefixes(state["network_weights"])
        try:
            net.load_state_dict(weights, strict=True)
        except RuntimeError as err:
            lines = str(err).strip().splitlines()
            raise StrokeLRPError(
                f"{path}: the weights do not fit the network the plan describes "
                f"({lines[1].strip() if len(lines) > 1 else lines[0]}); a trainer that builds "
                f"its own network ({state.get('trainer_name', trainer)}) is not supported"
            ) from err
        networks.append(net.float().eval())
        files.append(path)
        if mirror_axes is None:
            axes = state.get("inference_allowed_mirroring_axes")
            mirror_axes = tuple(int(a) for a in axes) if axes is not None else None
    spatial = len(config["patch_size"])
    if mirror_axes is None:
        mirror_axes = tuple(range(spatial))
    return NnUNetModel(
        folder=root,
        configuration=configuration,
        trainer=trainer,
        plans_name=plans_name,
        plans=plans,
        dataset=dataset,
        folds=wanted,
        checkpoint=checkpoint,
        networks=networks,
        patch_size=tuple(int(p) for p in config["patch_size"]),
        mirror_axes=mirror_axes,
        checkpoint_files=files,
    )
