"""Explain one case of a trained run (``strokelrp explain RUN DATA --case ID``, the demo).

:func:`explain_case` loads the run's model and the case, computes the maps of one attribution
method (:mod:`strokelrp.attribution`): for LRP every requested filter setting in ONE batched
relevance walk (raw first), for any other method its one map; and hands them to
:func:`strokelrp.report.explain_case.write_case_explanation`, which writes the native-grid
NIfTIs (+ JSON sidecars), figure 1 and ``explanation.json`` (default folder
``RUN/explanations/CASE``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from strokelrp.analysis.table import Setting, baseline_setting, describe
from strokelrp.config import LESION
from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.presets import DEFAULT_PRESET, TARGETS
from strokelrp.reference import DEFAULT_REFERENCE
from strokelrp.report.explain_case import CaseExplanation, parse_settings
from strokelrp.run_files import RunDir


def checkpoint_note(ckpt: Any) -> str:
    """Which checkpoint was used: path and epoch (from the sidecar whose hash matched)."""
    from strokelrp.provenance import checkpoint_record

    planned = ckpt.config.epochs
    text = f"used checkpoint {checkpoint_record(ckpt)['path']} (epoch {ckpt.epoch} of {planned})"
    if ckpt.epoch < planned:
        text += "; the run has not finished training (or was stopped early)"
    return text


def method_plan(
    method: str, filters: Sequence[str] | Sequence[Setting] | None
) -> tuple[Any, str | None, list[Setting]]:
    """What ``method`` computes: (the LRP rules to walk with, or None for another method; the
    preset's label, None for another method; the settings, raw first for LRP).

    ``lrp:<preset>[(options)][+<filter>]``: the preset (its fields overridden by the options)
    and the filters, the method's own filter added; any other method: its single map
    (:func:`strokelrp.analysis.table.baseline_setting`), filters refused.
    """
    from strokelrp.attribution import label_of, parse_method
    from strokelrp.lrp.presets import preset

    name, options, own_filter = parse_method(method)
    if not name.startswith("lrp:"):
        if filters:
            raise StrokeLRPError(
                f"method {method}: filters apply to LRP methods only (it gives one map)"
            )
        return None, None, [baseline_setting(label_of(method))]
    label = label_of(method).removeprefix("lrp:")
    if own_filter is not None:
        label = label.rsplit("+", 1)[0]
    rules = preset(name[4:], **options) if options else name[4:]
    own = [own_filter] if own_filter is not None else []
    if filters and all(isinstance(f, Setting) for f in filters):
        given = [f for f in filters if isinstance(f, Setting) and f.filter is not None]
        extra = parse_settings(own)[1:] if own else []
        settings = [describe(None), *given, *extra]
    else:
        settings = parse_settings([*(str(f) for f in filters or []), *own] or None)
    return rules, label, settings


def compute_maps(
    model: Any,
    x: Any,
    method: str,
    lrp_rules: Any,
    settings: Sequence[Setting],
    target: str,
    label: Any,
    memory_budget: str | int | float | None = None,
    *,
    reference: Any = None,
    class_index: int = LESION,
) -> tuple[np.ndarray, Any, list[str]]:
    """The maps of one case: (relevance (K, C, D, H, W) float32 numpy, logits (classes, D, H,
    W) float32 tensor on the CPU, notes). ``x`` (1, C, D, H, W) on the model's device; LRP
    (``lrp_rules`` not None): every setting in one batched walk; another method: its one map
    (:func:`strokelrp.attribution.attribute`, K = 1) for the same target weights
    (:func:`strokelrp.lrp.engine.target_weights` of ``class_index``). ``reference``: explain
    relative to it (:mod:`strokelrp.reference`; LRP walks the network rewritten to read x - b,
    :func:`strokelrp.attribution.relative_to`)."""
    import torch

    if lrp_rules is None:
        from strokelrp.attribution import attribute
        from strokelrp.lrp.engine import target_weights

        with torch.no_grad():
            out = model(x)
        weights, _ = target_weights(target, out, label, class_index)
        one = attribute(model, x, method, target=weights, reference=reference)  # (C, D, H, W)
        return one.cpu().float().numpy()[None], out.detach().cpu().float()[0], []
    from strokelrp.lrp.engine import explain

    walked, start = model, target
    if reference is not None:  # the walk of x - b explains the same S = sum(W * logits)
        from strokelrp.attribution import relative_to, weighted_start
        from strokelrp.lrp.engine import target_weights

        with torch.no_grad():
            weights, _ = target_weights(target, model(x), label, class_index)
        walked, x = relative_to(model, x, reference, weights)
        start = weighted_start(weights)
    with warnings.catch_warnings():  # an empty target is reported once, through the notes
        warnings.simplefilter("ignore", RuntimeWarning)
        result = explain(
            walked,
            x,
            target=start,
            label=label,
            rules=lrp_rules,
            filters=[s.filter for s in settings],
            class_index=class_index,
            memory_budget=memory_budget,
        )
    relevance = result.relevance.detach().cpu().float().numpy()
    return relevance, result.output.detach().cpu().float()[0], list(result.notes)


def takes_reference(method: str) -> bool:
    """Whether ``method`` explains relative to a reference (LRP and
    :data:`strokelrp.attribution.REFERENCE_METHODS`)."""
    from strokelrp.attribution import REFERENCE_METHODS, parse_method

    name = parse_method(method)[0]
    return name.startswith("lrp:") or name in REFERENCE_METHODS


def effective_reference(method: str, reference: str | None) -> str | None:
    """The reference ``method`` uses: None (the plain map) when it takes none or when
    ``reference`` is None or ``zero``."""
    return reference if takes_reference(method) and reference not in (None, "zero") else None


def explain_case(
    run: str | Path,
    data: str | Path,
    case_id: str,
    *,
    filters: Sequence[str] | Sequence[Setting] | None = None,
    rules: str = DEFAULT_PRESET,
    method: str | None = None,
    target: str = "prediction",
    checkpoint: str = "last",
    slice_index: int | None = None,
    modality: str | None = None,
    out: str | Path | None = None,
    device: str = "auto",
    per_modality: bool = False,
    normalised: bool = False,
    memory_budget: str | int | float | None = None,
    reference: str | None = DEFAULT_REFERENCE,
    log: Callable[[str], None] | None = None,
) -> CaseExplanation:
    """Explain case ``case_id`` of ``data`` with the model of ``run``; write NIfTI + figure 1.

    reference: explain relative to a reference input (``healthy``, ``mirror``, ``mean``,
    ``zero`` or a .npy / NIfTI file on the model's grid, :mod:`strokelrp.reference`); figure 1's
    colour bar and explanation.json name it. Default :data:`strokelrp.reference.DEFAULT_REFERENCE`
    for the methods that take one (LRP, gradient x input, integrated gradients, occlusion;
    the others ignore it); ``zero`` or None: the plain maps.
    method: an attribution method (:func:`strokelrp.attribution.method_names`, options in
    brackets, an LRP filter after ``+``); None: ``lrp:<rules>``. A method other than LRP writes
    its one map (``relevance_<method>.nii.gz``), the same as ``strokelrp.attribute`` gives for
    the same target. filters (LRP only): filter specs ("pass:0,0.4") or :class:`Setting`
    objects; raw is always computed first; None gives the paper's figure 1 (pass (0, 0.4),
    clamp (0, 0.2)), unless the method names its own filter. All settings are
    computed in one batched relevance walk (relevance (K, 6, D, H, W) at model scale), then
    resized back to the case's native grid; each relevance file gets a JSON sidecar naming its
    volumes, plus one 3-D file per modality (``per_modality``) and a copy normalised to
    [-1, 1] per volume (``normalised``) when asked. device: "auto" (CUDA when available), "cpu",
    "cuda" (an error when torch sees no GPU). ``case_id``: ``4`` or ``training_4``.
    memory_budget: bytes the relevance walk may use (``"4GB"``, ``"unlimited"``; None = the
    engine's default, see :mod:`strokelrp.lrp.budget`). ``log``: called with one line per step
    (loading, the relevance pass, writing), e.g. to stderr.
    """
    import torch

    from strokelrp.data.dataset import case_fingerprint
    from strokelrp.data.layouts import load_case
    from strokelrp.data.preprocess import prepare_case
    from strokelrp.device import resolve_device
    from strokelrp.provenance import case_record, checkpoint_record, provenance
    from strokelrp.report.explain_case import write_case_explanation
    from strokelrp.train.checkpoint import load_trained

    say = log if log is not None else (lambda _line: None)
    if target not in TARGETS:
        raise StrokeLRPError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    run = Path(run)
    if not run.is_dir():
        raise StrokeLRPError(f"run folder {run} does not exist")
    method = method if method is not None else f"lrp:{rules}"
    lrp_rules, rules_label, settings = method_plan(method, filters)

    device = str(resolve_device(device))
    say(f"loading {run} (checkpoint {checkpoint}) on {device}")
    model, ckpt = load_trained(run, checkpoint=checkpoint, device=device)
    config = ckpt.config
    say(f"loading case {case_id} from {data}")
    case = load_case(data, case_id, **config.data_options)
    if case.channels != config.input_channels:
        raise StrokeLRPError(
            f"case {case.case_id}: the data's channels ({', '.join(case.channels)}) differ "
            f"from those the run was trained on ({', '.join(config.input_channels)})"
        )
    case_id = case.case_id  # "training_4" -> "4"
    from strokelrp.data.layouts import shown_channel

    modality = shown_channel(case.channels, modality)  # a wrong name fails before the work
    depth = case.image.shape[1]
    if slice_index is not None and not 0 <= slice_index < depth:
        raise StrokeLRPError(f"case {case_id}: slice {slice_index} is outside 0..{depth - 1}")
    x, y = prepare_case(case, config)
    if target == "ground_truth" and y is None:
        raise StrokeLRPError(f"case {case_id}: --target ground_truth needs an OT mask, none found")
    xt = torch.from_numpy(np.ascontiguousarray(x))[None].to(device)
    label = None if y is None else torch.from_numpy(y)
    say(
        f"case {case_id}: {method}, {len(settings)} map(s) "
        f"(series {config.series_name}, start from {target})"
    )
    shown_reference = reference if reference is not None else "zero"
    reference = effective_reference(method, reference)
    if reference is None:
        shown_reference = "zero" if takes_reference(method) else "none"
    relevance, logits, notes = compute_maps(
        model, xt, method, lrp_rules, settings, target, label, memory_budget, reference=reference
    )

    out_dir = Path(out) if out is not None else RunDir(run).explanation_dir(case_id)
    say(f"writing {len(settings)} relevance volume(s), the prediction and figure 1 to {out_dir}")
    record = provenance(
        "explain",
        data_root=data,
        cases={
            case.case_id: case_record(
                case.paths, data, case_fingerprint(case.paths), case.orientation
            )
        },
        run=run,
        checkpoints=[checkpoint_record(ckpt)],
        rules=lrp_rules,
        target=target,
        settings=[s.label for s in settings],
    )
    done = write_case_explanation(
        out_dir,
        case,
        relevance,
        logits,
        settings,
        fields={
            "run": str(run),
            "checkpoint": checkpoint,
            "epoch": ckpt.epoch,
            "series": config.series_name,
        },
        method=settings[0].label if lrp_rules is None else f"lrp:{rules_label}",
        rules=rules_label,
        target=target,
        provenance=record,
        slice_index=slice_index,
        modality=modality,
        per_modality=per_modality,
        normalised=normalised,
        notes=notes,
        epoch=ckpt.epoch,
        reference=shown_reference,
    )
    done.notes.append(checkpoint_note(ckpt))
    done.checkpoint = ckpt.path
    return done
