"""Sweeps of trained runs: every case x every filter setting x every modality, as a tidy table.

For each network of each run and each case, one batched :func:`strokelrp.lrp.engine.explain`
call computes the relevance under all K settings of the grid (filters applied at every point,
as the paper); :func:`strokelrp.analysis.sweep.case_rows` turns the maps into rows, with per
channel the Dice drop when it is mean-filled (:mod:`strokelrp.trust.ablation`, C + 1
forward passes per case), stored in ``RUN/sweep/sweep.csv`` (columns in
:mod:`strokelrp.analysis.table`). This module is the orchestration: loading, resume,
provenance, processes. ``methods`` (``strokelrp sweep --methods``) add one unfiltered map per
case of other attribution methods (:func:`strokelrp.attribution.attribute`), rows of kind
``baseline``. ``reference`` (``strokelrp sweep --reference``) explains every map that takes
one relative to that reference input (:mod:`strokelrp.reference`; default: the plain maps).

- Resume: a (network, case) pair that already has every (setting, modality) row of the grid is
  skipped; the table is rewritten atomically after every case (every round of cases under
  ``torchrun``), so an interrupted sweep loses at most the cases in flight.
- Provenance: ``RUN/sweep/sweep.provenance.json`` records the data root, every case's files
  and content fingerprint, each network's checkpoint (path, epoch, weights hash), the rules and
  target, and the versions. Resuming with another checkpoint of a network (training went on)
  or another content of a case already in the table is refused (``--restart`` starts over),
  so one table never mixes two networks or two data sets under one name.
- ``torchrun``: with ``WORLD_SIZE`` > 1 the process group is joined (gloo on CPU, NCCL on
  GPU), rank r explains cases r, r + world, ...; rank 0 gathers the rows and writes.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from strokelrp.analysis.sweep import case_rows, done_pairs, merge_rows, paper_grid
from strokelrp.analysis.table import Row, Setting, baseline_setting, describe
from strokelrp.config import LESION
from strokelrp.device import DistContext, init_distributed, resolve_device, shutdown
from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.presets import DEFAULT_PRESET
from strokelrp.run_files import RunDir
from strokelrp.trust.ablation import modality_ablation

MANIFEST_NAME = "synth_manifest.json"


# ------------------------------------------------------------------------------ inputs


def read_grid(spec: str | Path | None = "paper") -> list[Setting]:
    """Settings from ``"paper"`` (or None) or a file.

    The file is TOML with ``settings = ["raw", "pass:0,0.4", ...]``, or plain text with one
    setting per line (``#`` starts a comment). Settings are parsed by
    :func:`strokelrp.lrp.filters.parse_filter`; duplicates are an error.
    """
    if spec is None or str(spec) == "paper":
        return paper_grid()
    from strokelrp.lrp.filters import parse_filter

    path = Path(spec)
    if not path.is_file():
        raise StrokeLRPError(f"--grid {spec}: not 'paper' and not a file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        from strokelrp.config import toml_loads

        try:
            data = toml_loads(text)
        except ValueError as err:  # tomllib.TOMLDecodeError is a ValueError
            raise StrokeLRPError(f"{path}: not valid TOML ({err})") from err
        items = data.get("settings")
        if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
            raise StrokeLRPError(f'{path}: expected settings = ["raw", "pass:0,0.4", ...]')
    else:
        items = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        items = [s for s in items if s]
    if not items:
        raise StrokeLRPError(f"{path}: no settings")
    problems, settings = [], []
    for item in items:
        try:
            settings.append(describe(parse_filter(item)))
        except StrokeLRPError as err:
            problems.append(f"{path}: {err}")
    labels = [s.label for s in settings]
    problems += [
        f"{path}: setting {lab} appears twice"
        for lab in sorted(set(labels))
        if labels.count(lab) > 1
    ]
    if problems:
        raise StrokeLRPError("\n".join(problems))
    return settings


def read_informative(data_root: str | Path) -> dict[str, list[str]] | None:
    """Informative modalities per case id from ``DATA/synth_manifest.json`` (None: no manifest).

    Cases are matched by id (``"4"``) or folder name (``"training_4"``).
    """
    path = Path(data_root) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise StrokeLRPError(f"{path}: unreadable manifest ({err})") from err
    default = manifest.get("informative_modalities")
    out: dict[str, list[str]] = {}
    cases = manifest.get("cases", {})
    items = cases.items() if isinstance(cases, dict) else enumerate(cases)
    for key, meta in items:
        if not isinstance(meta, dict):
            continue
        informative = meta.get("informative_modalities", default)
        if informative is None:
            continue
        names = [str(key), str(meta.get("case_id", key)), str(meta.get("folder", key))]
        for name in names:
            out[name] = list(informative)
    return out


def baseline_settings(methods: Sequence[str]) -> dict[str, Setting]:
    """Method spec -> its :func:`~strokelrp.analysis.table.baseline_setting` (labelled by
    :func:`strokelrp.attribution.label_of`); LRP methods and repeats are refused."""
    from strokelrp.attribution import label_of, parse_method

    out: dict[str, Setting] = {}
    for spec in methods:
        name, _, _ = parse_method(spec)
        if name.startswith("lrp:"):
            raise StrokeLRPError(
                f"method {spec}: the sweep's LRP maps come from --rules and --grid; "
                "--methods takes the other methods"
            )
        setting = baseline_setting(label_of(spec))
        if setting.label in {s.label for s in out.values()}:
            raise StrokeLRPError(f"method {spec} is given twice")
        out[spec] = setting
    return out


# ------------------------------------------------------------------------------ the sweep


def _check_compatible(path: Path, rows: Sequence[Row], target: str, rules: str) -> None:
    """Refuse to add to a table of another target, or whose LRP rows have other rules (a
    baseline's rows have no rules)."""
    found = {
        (str(r["target"]), rules if r["kind"] == "baseline" else str(r["rules"])) for r in rows
    }
    other = found - {(target, rules)}
    if other:
        t, r = sorted(other)[0]
        raise StrokeLRPError(
            f"{path}: holds relevance from target={t} rules={r}, not target={target} "
            f"rules={rules}; pass --restart to replace it, or sweep into another run"
        )


def reference_label(reference: str | None) -> str:
    """The name a sweep table records for its reference: ``zero`` for the plain maps (None),
    a rule's name, or a file's resolved path."""
    from strokelrp.reference import REFERENCES

    if reference is None or reference in REFERENCES:
        return reference or "zero"
    return str(Path(reference).resolve())


def _check_reference(
    path: Path, rows: Sequence[Row], previous: dict[str, Any] | None, reference: str | None
) -> None:
    """Refuse to add maps relative to ``reference`` to a table of maps relative to another
    (a table written before references were recorded holds plain maps: ``zero``)."""
    before = str((previous or {}).get("reference") or "zero")
    now = reference_label(reference)
    if rows and before != now:
        raise StrokeLRPError(
            f"{path}: holds relevance relative to the {before} reference, not {now}; pass "
            "--restart to replace it, or sweep into another run"
        )


def _series_label(series: Any) -> str:
    if isinstance(series, str):
        return series
    return "x".join(str(int(s)) for s in series)


class _SweepRecord:
    """The provenance of one run's sweep table, checked against the table's earlier record."""

    def __init__(
        self,
        run_dir: Path,
        data_root: str | Path,
        rules: str,
        target: str,
        settings: Sequence[Setting],
        previous: dict[str, Any] | None,
        reference: str | None = None,
    ) -> None:
        self.run_dir, self.data_root, self.rules, self.target = run_dir, data_root, rules, target
        self.reference = reference_label(reference)
        self.settings = [s.label for s in settings]
        previous = previous or {}
        self.cases: dict[str, Any] = dict((previous.get("data") or {}).get("cases") or {})
        self.checkpoints: dict[str, dict[str, Any]] = {
            str(c.get("network")): c for c in previous.get("checkpoints", [])
        }

    def add(self, network: str, ckpt: Any, dataset: Any, done: set[tuple[str, str]]) -> None:
        """Record a network's checkpoint and cases; refuse what the table already holds
        from another checkpoint of this network or another content of a case."""
        from strokelrp.provenance import case_record, checkpoint_record

        now = checkpoint_record(ckpt, network)
        before = self.checkpoints.get(network)
        has_rows = any(net == network for net, _ in done)
        if has_rows and before and before.get("weights_sha256") != now["weights_sha256"]:
            raise StrokeLRPError(
                f"{RunDir(self.run_dir).sweep_table}: holds {network}'s rows from its epoch "
                f"{before.get('epoch')} checkpoint, but its checkpoint is now epoch "
                f"{now['epoch']} ({now['path']}); pass --restart to sweep it again"
            )
        self.checkpoints[network] = now
        for i, cid in enumerate(dataset.case_ids):
            case = case_record(
                dataset.case_files(i),
                self.data_root,
                dataset.fingerprint(i),
                dataset.geometry(i).orientation,
            )
            old = self.cases.get(cid, {}).get("fingerprint_sha256")
            if (network, cid) in done and old and old != case["fingerprint_sha256"]:
                raise StrokeLRPError(
                    f"{RunDir(self.run_dir).sweep_table}: holds case {cid} from other data "
                    f"(its files' content differs from {self.data_root}); pass --restart, or "
                    "sweep into another run"
                )
            self.cases[cid] = case

    def record(self) -> dict[str, Any]:
        """The provenance record of the table as it stands."""
        from strokelrp.provenance import provenance

        return provenance(
            "sweep",
            data_root=self.data_root,
            cases=self.cases,
            run=self.run_dir,
            checkpoints=list(self.checkpoints.values()),
            rules=self.rules,
            target=self.target,
            reference=self.reference,
            settings=self.settings,
        )


def sweep_case(
    model: Any,
    x: Any,
    y: Any,
    meta: dict[str, Any],
    lrp_settings: Sequence[Setting],
    baselines: dict[str, Setting],
    *,
    rules: str = DEFAULT_PRESET,
    informative: Sequence[str] | None = None,
    memory_budget: str | int | float | None = None,
    log: Callable[[str], None] | None = None,
    channels: Sequence[str],
    reference: Any = None,
) -> list[Row]:
    """The rows of one case: its LRP maps (one batched walk over ``lrp_settings``), each
    baseline's map, the ablation drops and the case's Dice.

    ``x`` (C, D, H, W) and ``y`` (D, H, W; negative = no label) as :class:`CaseDataset` gives
    them; ``meta`` the run/series/network/case/target columns (the target is read from it);
    ``channels`` the C channel names. ``reference``: the LRP walk and the baselines that take
    one explain relative to it (:func:`strokelrp.attribution.relative_to`; None or ``zero``:
    the plain maps).
    """
    import torch
    from tqdm import tqdm

    from strokelrp.attribution import attribute, relative_to, weighted_start
    from strokelrp.core.metrics import dice_score
    from strokelrp.lrp.engine import explain, target_weights
    from strokelrp.pipeline.explain import effective_reference

    target, cid = str(meta["target"]), meta["case"]
    dev = next(model.parameters()).device
    label = y.numpy() if bool((y >= 0).all()) else None
    if target == "ground_truth" and label is None:
        raise StrokeLRPError(f"case {cid}: no ground truth for --target ground_truth")
    walked, xin, start = model, x[None].to(dev), target
    if effective_reference(f"lrp:{rules}", reference) is not None:
        with torch.no_grad():
            weights, _ = target_weights(target, model(xin), label)
        walked, xin = relative_to(model, xin, reference, weights)
        start = weighted_start(weights)
    exp = explain(
        walked,
        xin,
        target=start,
        label=label,
        rules=rules,
        filters=[s.filter for s in lrp_settings],
        filter_at="all",
        memory_budget=memory_budget,
    )
    if exp.empty_target and log is not None:
        tqdm.write(
            f"{meta['network']} case {cid}: the {target} start is empty, every map is zero",
            file=sys.stderr,
        )
    pred = (exp.output.argmax(dim=1)[0] == LESION).cpu().numpy()
    maps = [(exp.relevance, list(lrp_settings), rules)]
    del exp
    for spec, setting in baselines.items():
        own = effective_reference(spec, reference)
        one = attribute(model, x[None].to(dev), spec, target=target, label=label, reference=own)
        maps.append((one[None], [setting], ""))
    ablation = modality_ablation(model, x, label)
    meta = meta | {"case_dice": math.nan if label is None else dice_score(pred, label)}
    rows: list[Row] = []
    for relevance, chosen, named in maps:
        rows += case_rows(
            relevance,
            x.numpy(),
            label,
            chosen,
            meta | {"rules": named},
            informative,
            ablation.drop,
            channels=channels,
        )
    return rows


def sweep_run(
    run_dir: str | Path,
    data_root: str | Path,
    settings: Sequence[Setting],
    *,
    cases: Sequence[str] | None = None,
    rules: str = DEFAULT_PRESET,
    target: str = "prediction",
    device: str = "auto",
    restart: bool = False,
    progress: bool = True,
    ranks: DistContext | None = None,
    log: Callable[[str], None] | None = None,
    memory_budget: str | int | float | None = None,
    methods: Sequence[str] = (),
    reference: str | None = None,
) -> Path:
    """Sweep every network of one run over the cases of ``data_root``; returns the table path.

    ``settings``: the LRP filter settings (preset ``rules``); ``methods``: other attribution
    methods (``gradient_x_input``, ``integrated_gradients(steps=16)``; not LRP), each one map
    per case (:func:`strokelrp.attribution.attribute`, the same ``target``), its rows of kind
    ``baseline`` with the method's name as setting (the filters apply to LRP only). Rows
    already complete in ``RUN/sweep/sweep.csv`` are kept and their cases skipped
    (``restart=True`` starts a fresh table). ``memory_budget``: bytes each case's relevance
    walk may use (None = the engine's default; see :mod:`strokelrp.lrp.budget`). ``ranks``:
    the process group from :func:`strokelrp.device.init_distributed` (its device is used);
    None: this process alone on ``device``. ``reference``: every map that takes one explains
    relative to it (:mod:`strokelrp.reference`: ``healthy``, ``mirror``, ``mean``, ``zero`` or a
    .npy / NIfTI file on the model's grid; None or ``zero``: the plain maps); the table's record
    names it, and resuming a table made with another reference is refused.
    """
    import torch
    from tqdm import tqdm

    from strokelrp.data.dataset import CaseDataset
    from strokelrp.provenance import read_sidecar
    from strokelrp.train.checkpoint import load_trained

    run = RunDir(run_dir)
    run_dir = run.path
    baselines = baseline_settings(methods)
    lrp_settings, settings = list(settings), [*settings, *baselines.values()]
    ranks = ranks or DistContext(0, 1, 0, resolve_device(device))
    dev = ranks.device
    table = run.sweep_table
    rows: list[Row] = []
    problem = None
    previous: dict[str, Any] | None = None
    if ranks.rank == 0 and table.is_file() and not restart:
        rows = run.read_sweep()
        previous = read_sidecar(table)
        try:
            _check_compatible(table, rows, target, rules)
            _check_reference(table, rows, previous, reference)
        except StrokeLRPError as err:
            problem = str(err)
    # only rank 0 reads the table (no shared file system needed); everyone plans from it
    channels = run.read_config().input_channels
    problem, done, previous = ranks.share((problem, done_pairs(rows, settings, channels), previous))
    if problem:
        raise StrokeLRPError(problem)
    labels = {s.label for s in settings}
    informative = read_informative(data_root)
    record = _SweepRecord(run_dir, data_root, rules, target, settings, previous, reference)
    for net_dir in run.networks():
        model, ckpt = load_trained(net_dir.path, device=dev)
        config = ckpt.config
        network = run.label(net_dir)
        dataset = CaseDataset(
            data_root,
            config.series,
            cache_dir=config.cache_dir,
            normalization=config.normalization,  # type: ignore[arg-type]
            cases=cases,
            require_labels=False,
            layout=config.layout,
            channels=config.channels,
            lesion=config.lesion,
        )
        record.add(network, ckpt, dataset, done)  # raises on mixed provenance
        todo = [i for i, cid in enumerate(dataset.case_ids) if (network, cid) not in done]
        if log is not None and ranks.rank == 0:
            skipped = len(dataset) - len(todo)
            log(f"{network}: {len(todo)} case(s) to explain, {skipped} already in {table}")
        bar = tqdm(
            total=len(todo),
            desc=f"sweep {network}",
            unit="case",
            disable=not progress or ranks.rank != 0,
        )
        rounds = math.ceil(len(todo) / ranks.world_size)
        for r in range(rounds):
            i = r * ranks.world_size + ranks.rank
            mine: list[Row] = []
            if i < len(todo):
                x, y, cid = dataset[todo[i]]
                meta = {
                    "run": run_dir.name,
                    "series": _series_label(config.series),
                    "network": network,
                    "case": cid,
                    "target": target,
                }
                inf = informative.get(cid) if informative is not None else None
                mine = sweep_case(
                    model,
                    x,
                    y,
                    meta,
                    lrp_settings,
                    baselines,
                    rules=rules,
                    informative=inf,
                    memory_budget=memory_budget,
                    log=log,
                    channels=dataset.channels,
                    reference=reference,
                )
            new = ranks.gather(mine)
            bar.update(min(ranks.world_size, len(todo) - r * ranks.world_size))
            if ranks.rank == 0 and new:
                rows = merge_rows(rows, new, labels, channels)
                run.write_sweep(rows, record.record())
        bar.close()
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    if ranks.rank == 0 and not table.is_file():
        run.write_sweep(rows, record.record())  # an empty sweep leaves a header-only table
    return table


def unique_runs(
    runs: Sequence[str | Path], log: Callable[[str], None] | None = None
) -> list[str | Path]:
    """``runs`` without repeats of one folder (same resolved path), first mention kept."""
    seen: dict[Path, str | Path] = {}
    for run in runs:
        key = Path(run).expanduser().resolve()
        if key in seen:
            if log is not None:
                log(f"{run}: the same run as {seen[key]}; used once")
            continue
        seen[key] = run
    return list(seen.values())


def run_sweep(
    runs: Sequence[str | Path],
    data_root: str | Path,
    *,
    grid: str | Path | None = "paper",
    cases: Sequence[str] | None = None,
    rules: str = DEFAULT_PRESET,
    target: str = "prediction",
    device: str = "auto",
    restart: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    memory_budget: str | int | float | None = None,
    methods: Sequence[str] = (),
    reference: str | None = None,
) -> list[Path]:
    """Sweep several runs (see :func:`sweep_run`; ``methods``: the non-LRP methods to add;
    ``reference``: the reference input of every map that takes one); joins ``torchrun``'s
    group when there is one.

    A run named twice (the same folder after resolving links and ``..``) is swept once: its
    table would otherwise be counted twice by the summary.
    """
    if not runs:
        raise StrokeLRPError("sweep needs at least one run directory")
    runs = unique_runs(runs, log)
    missing = [f"{r}: run directory not found" for r in runs if not Path(r).is_dir()]
    if not Path(data_root).is_dir():
        missing.append(f"{data_root}: data folder not found")
    if missing:
        raise StrokeLRPError("\n".join(missing))
    settings = read_grid(grid)
    baseline_settings(methods)  # refused before any process group is joined
    from strokelrp.reference import check_reference_name

    check_reference_name(reference)
    ranks = init_distributed(device)
    try:
        return [
            sweep_run(
                run,
                data_root,
                settings,
                cases=cases,
                rules=rules,
                target=target,
                restart=restart,
                progress=progress,
                ranks=ranks,
                log=log,
                memory_budget=memory_budget,
                methods=methods,
                reference=reference,
            )
            for run in runs
        ]
    finally:
        shutdown(ranks)
