"""The ``strokelrp`` command line: thin wrappers that parse options and call the Python API.

Heavy modules (torch, nibabel, matplotlib) are imported inside the commands, so ``--help``
is instant. Exit codes: 0 success, 1 bad input (one line per problem), 2 usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from strokelrp import DEFAULT_PRESET, TARGETS, StrokeLRPError, __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="strokelrp")
def cli() -> None:
    """Explain 3-D stroke-lesion segmentation networks with filtered LRP (ISLES 2017, ISLES
    2022, ISLES 2024, nnU-Net raw and Decathlon data)."""


# ---------------------------------------------------------------- data commands (synth, inspect)


_MODALITY_CHOICES = ("ADC", "MTT", "rCBF", "rCBV", "Tmax", "TTP")  # ISLES 2017's channels
_SYNTH_LAYOUTS = ("isles2017", "isles2022", "isles2024", "nnunet", "msd")
_LAYOUT_NAMES = ("isles2017", "isles2022", "isles2024", "nnunet", "msd")  # == layouts.LAYOUTS


def _data_options(f: Any) -> Any:
    """``--layout``, ``--channels`` and ``--lesion``: how a data tree is read."""
    f = click.option(
        "--lesion",
        default=None,
        metavar="CLASS",
        help="nnU-Net raw / Decathlon: the label class read as lesion (name or value; "
        "default: the only foreground class, or the one named like a lesion).",
    )(f)
    f = click.option(
        "--channels",
        default=None,
        metavar="A,B,...",
        help="The channels to use, by the data set's names, in order (default: the layout's; "
        "ISLES 2024: CBF,CBV,MTT,Tmax).",
    )(f)
    return click.option(
        "--layout",
        type=click.Choice(_LAYOUT_NAMES),
        default=None,
        help="Force the data layout (default: detected).",
    )(f)


def _channel_list(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(c.strip() for c in value.split(",") if c.strip())
    if not names:
        raise click.BadParameter("--channels: give at least one channel name")
    return names


@cli.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--layout",
    type=click.Choice(_SYNTH_LAYOUTS),
    default="isles2017",
    show_default=True,
    help="The layout to write (docs/data.md shows each).",
)
@click.option(
    "--cases",
    "n_cases",
    type=click.IntRange(min=1),
    required=True,
    help="Number of cases (numbered as the real set: 1, 2, 4, 5, ...).",
)
@click.option(
    "--shape",
    type=(click.IntRange(min=2),) * 3,
    default=(192, 192, 19),
    show_default=True,
    metavar="H W D",
    help="Grid per case (rows, columns, slices).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--varied-grids",
    is_flag=True,
    help="Vary the grid between cases like the real set (e.g. 256x256x24, 128x128x25).",
)
@click.option(
    "--uninformative",
    "uninformative",
    multiple=True,
    metavar="MOD",
    type=click.Choice(_MODALITY_CHOICES, case_sensitive=False),
    help="A modality that gets no lesion signature but keeps its anatomy (repeat for several).",
)
@click.option(
    "--control",
    "control",
    multiple=True,
    metavar="MOD",
    type=click.Choice(_MODALITY_CHOICES, case_sensitive=False),
    help="A modality replaced by zero-mean noise inside the brain: nothing a model can use "
    "(repeat for several).",
)
def synth(
    out: str,
    layout: str,
    n_cases: int,
    shape: tuple[int, int, int],
    seed: int,
    varied_grids: bool,
    uninformative: tuple[str, ...],
    control: tuple[str, ...],
) -> None:
    """Write N synthetic cases in a data layout to OUT (plus synth_manifest.json)."""
    h, w, d = shape
    grids = "varied grids" if varied_grids else f"grid {w}x{h}x{d} (x y z)"
    if layout != "isles2017":
        from strokelrp import synthesize_layout

        if uninformative or control:
            raise click.UsageError("--uninformative and --control apply to --layout isles2017")
        path = synthesize_layout(
            out, n_cases, layout, shape=shape, seed=seed, varied_grids=varied_grids
        )
        click.echo(f"wrote {n_cases} synthetic {layout} cases ({grids}, seed {seed}) to {path}")
        return
    from strokelrp import synthesize_isles2017

    path = synthesize_isles2017(
        out,
        n_cases,
        shape=shape,
        seed=seed,
        varied_grids=varied_grids,
        uninformative=uninformative,
        control=control,
        progress=True,
    )
    note = f", uninformative: {', '.join(uninformative)}" if uninformative else ""
    note += f", control (noise): {', '.join(control)}" if control else ""
    click.echo(f"wrote {n_cases} synthetic cases ({grids}, seed {seed}{note}) to {path}")


@cli.command()
@click.argument("data", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")
@click.option(
    "--headers-only",
    is_flag=True,
    help="Check files, headers, grids and the memory budget without reading any voxel "
    "(fast; values and lesion volumes are not checked).",
)
@_data_options
def inspect(
    data: str,
    as_json: bool,
    headers_only: bool,
    layout: str | None,
    channels: str | None,
    lesion: str | None,
) -> None:
    """Check a data folder (layout detected or --layout): one row per case, printed as each
    case is checked; exit 1 if any case is invalid."""
    import json

    from strokelrp import discover_cases, format_grid, format_spacing, inspect_data

    chosen = _channel_list(channels)
    folders = discover_cases(data, layout, chosen, lesion)
    found = folders[0].layout
    names = folders[0].spec.channels if folders[0].spec else ()
    reports = []
    widths = (16, 14, 20, 10)
    if not as_json:
        click.echo(f"layout: {found} ({len(folders)} cases; channels {', '.join(names)})")
        head = ("case", "grid (x y z)", "spacing", "lesion mL", "status")
        click.echo("  ".join(c.ljust(w) for c, w in zip(head, (*widths, 0), strict=True)).rstrip())
    rows = inspect_data(data, layout=found, channels=chosen, lesion=lesion, voxels=not headers_only)
    for r in rows:
        reports.append(r)
        if as_json:
            continue
        lesion_cell = (
            f"no {r.label_key}"
            if r.grid and not r.has_label
            else ("-" if r.lesion_ml is None else f"{r.lesion_ml:.2f}")
        )
        row = (r.case_id, format_grid(r.grid), format_spacing(r.spacing), lesion_cell, r.status)
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, (*widths, 0), strict=True)).rstrip())
        for line in r.notes:
            click.echo(f"note: {line}")
    invalid = [r for r in reports if r.problems]
    if as_json:
        doc = {
            "data": data,
            "layout": found,
            "channels": list(names),
            "n_cases": len(reports),
            "n_invalid": len(invalid),
            "cases": [r.as_dict() for r in reports],
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(
            f"{len(reports)} cases, {len(reports) - len(invalid)} valid, {len(invalid)} invalid"
        )
        for r in invalid:
            for line in r.problems:
                click.echo(f"error: {line}", err=True)
    if invalid:
        sys.exit(1)


def _echo_json(doc: Any) -> None:
    """Print ``doc`` as one JSON document (NaN and infinities as null: strict JSON)."""
    import json
    import math

    def plain(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        if hasattr(value, "item") and callable(value.item):  # numpy scalars
            return plain(value.item())
        return value

    click.echo(json.dumps(plain(doc), indent=2, allow_nan=False))


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document instead of text lines."
)


# ------------------------------------------------------------ model commands (train, evaluate)


def _parse_series(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """``A``/``B``/``C``/``X`` or a custom ``DxHxW`` (e.g. ``8x16x16``); None when not given."""
    from strokelrp import SERIES

    if value is None:
        return None
    if value.upper() in SERIES:
        return value.upper()
    parts = value.lower().split("x")
    if len(parts) == 3 and all(p.isdigit() and int(p) >= 1 for p in parts):
        return tuple(int(p) for p in parts)
    raise click.BadParameter(f"{value!r}: choose A, B, C, X or give D x H x W like 8x16x16")


def _interrupted(words: list[str]) -> None:
    """Ctrl-C: say how to continue (``strokelrp WORDS``) and exit 130, as shells do for SIGINT."""
    import shlex

    from strokelrp import is_main_process

    if is_main_process():
        click.echo(f"\ninterrupted; resume with: strokelrp {shlex.join(words)}", err=True)
    sys.exit(130)


def _given(ctx: click.Context, name: str) -> bool:
    """Whether option ``name`` was set on the command line (or its environment variable)."""
    from click.core import ParameterSource

    return ctx.get_parameter_source(name) in (
        ParameterSource.COMMANDLINE,
        ParameterSource.ENVIRONMENT,
    )


_TRAIN_OPTIONS: dict[str, str] = {
    "series": "series",
    "width": "width",
    "arch": "arch",
    "epochs": "epochs",
    "seed": "seed",
    "repeats": "repeats",
    "device": "device",
    "precision": "precision",
    "val_fraction": "val_fraction",
    "loss": "loss",
    "lr": "lr",
    "case_ids": "cases",
    "cache_dir": "cache_dir",
    "checkpoint_every": "checkpoint_every",
    "keep_checkpoints": "keep_checkpoints",
    "assess_every": "assess_every",
    "assess_method": "assess_method",
    "assess_cases": "assess_cases",
    "layout": "layout",
    "channels": "channels",
    "lesion": "lesion",
}
"""``train`` option (parameter name) -> TrainConfig field."""


@cli.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option(
    "--series",
    default=None,
    callback=_parse_series,
    metavar="A|B|C|X",
    help="Scale the cases are resized to: A 19x48x48, B 19x96x96, C 19x144x144, X 19x192x192 "
    "(D x H x W), or a custom DxHxW. Required, except with --resume.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Run folder (config.toml, checkpoints/, train_log.csv).",
)
@click.option(
    "--width",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Channels of the first block (the paper: 32, 19.08 M parameters).",
)
@click.option(
    "--arch",
    type=click.Choice(["unet3d", "monai-basicunet", "monai-unet", "monai-dynunet"]),
    default="unet3d",
    show_default=True,
    help="Network: the paper's U-Net, or MONAI's BasicUNet, residual UNet or DynUNet "
    "(in-plane downsampling; --width channels at the first level). Recorded in config.toml, "
    "so evaluate, explain and sweep rebuild it.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=80, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Train this many networks, seeds SEED..SEED+N-1, into OUT/net-1..N.",
)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16"]),
    default="fp32",
    show_default=True,
    help="bf16: autocast (for GPUs).",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(min=0, max=1, max_open=True),
    default=0.0,
    show_default=True,
    help="Fraction of cases held out for validation (per seed).",
)
@click.option(
    "--loss",
    type=click.Choice(["ce", "dice_ce"]),
    default="ce",
    show_default=True,
    help="ce: the paper's cross-entropy; dice_ce: cross-entropy + soft Dice.",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=2e-4,
    show_default=True,
    help="Adam learning rate (the paper: 2e-4, betas (0.5, 0.9)).",
)
@click.option(
    "--cases",
    "case_ids",
    multiple=True,
    metavar="ID",
    help="Train on these case ids only (repeat the option).",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Cache of preprocessed cases (default: $STROKELRP_CACHE_DIR or ~/.cache).",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Save a checkpoint every N epochs (and after the last).",
)
@click.option(
    "--keep-checkpoints",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Keep only the newest N epoch checkpoints (0: keep all; last is always kept).",
)
@click.option(
    "--assess-every",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Record the trust measures on held-out cases every N epochs in OUT/assess_log.csv "
    "(0: never).",
)
@click.option(
    "--assess-method",
    default="lrp:epsilon",
    show_default=True,
    help="The attribution method assessed during training (a strokelrp assess method name).",
)
@click.option(
    "--assess-cases",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="How many held-out cases (training cases when none is held out) to assess.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue OUT from its newest complete checkpoint (exactly, on CPU). Options not "
    "given take the run's own values (OUT/config.toml); --epochs N extends the run to N.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_data_options
@click.pass_context
def train(
    ctx: click.Context,
    data: str,
    series: str | tuple | None,
    out: str,
    width: int,
    arch: str,
    epochs: int,
    seed: int,
    repeats: int,
    device: str,
    precision: str,
    val_fraction: float,
    loss: str,
    lr: float,
    case_ids: tuple[str, ...],
    cache_dir: str | None,
    checkpoint_every: int,
    keep_checkpoints: int,
    assess_every: int,
    assess_method: str,
    assess_cases: int,
    resume: bool,
    no_progress: bool,
    layout: str | None,
    channels: str | None,
    lesion: str | None,
) -> None:
    """Train the paper's 3-D U-Net (or --arch) on a data folder of any layout (CE, Adam,
    batch 1); the layout and channels found are recorded in OUT/config.toml.

    The data are read and checked before OUT is created. Ctrl-C stops after the last saved
    checkpoint and prints the --resume command. Runs unchanged under torchrun
    (DistributedDataParallel): torchrun --nproc_per_node=N -m strokelrp train DATA ...
    """
    from pathlib import Path

    from strokelrp import RunDir, TrainConfig
    from strokelrp.pipeline import train_run

    given = {name: ctx.params[name] for name in _TRAIN_OPTIONS}
    given["case_ids"] = case_ids or None
    given["channels"] = _channel_list(channels)
    values = {field: given[name] for name, field in _TRAIN_OPTIONS.items()}
    run = RunDir(out)
    if resume and run.is_run():  # the run's own settings are the defaults
        values = run.read_config().to_dict()
        values.update(
            {field: given[name] for name, field in _TRAIN_OPTIONS.items() if _given(ctx, name)}
        )
    if values.get("series") is None:
        raise click.UsageError("--series is required (except with --resume of an existing run)")
    values["data"] = str(Path(data).resolve())
    config = TrainConfig(**values)
    try:
        dirs = train_run(config, out, resume=resume, progress=not no_progress)
    except KeyboardInterrupt:
        _interrupted(["train", data, "--out", out, "--resume"])
    from strokelrp import is_main_process

    if is_main_process() and dirs:  # under torchrun, rank 0 alone reports
        click.echo(f"trained {len(dirs)} network(s) in {out}")


@cli.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option(
    "--checkpoint",
    default="last",
    show_default=True,
    help="last, an epoch number (3 or epoch-003), or a .safetensors path of RUN (another "
    "run's checkpoint is refused: its split differs).",
)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Cache of preprocessed cases (default: the run's, else ~/.cache).",
)
@json_option
def evaluate(
    run: str, data: str, checkpoint: str, device: str, cache_dir: str | None, as_json: bool
) -> None:
    """Score RUN's network(s) on DATA in each case's native grid.

    Writes RUN/metrics.csv (Dice, HD95 and ASSD in mm, precision, recall, volumes in mL, one
    row per case) and RUN/table1.csv (the paper's table 1), and prints mean and SD (--json:
    the table-1 row, the summary per split and the per-case rows of each network).
    """
    from strokelrp import RunDir
    from strokelrp.pipeline import evaluate_run

    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    results = evaluate_run(run, data, checkpoint, device=device, echo=echo, cache_dir=cache_dir)
    folder = RunDir(run)
    if as_json:
        networks = [
            {
                "name": r.name,
                "checkpoint": r.checkpoint,
                "table1": r.table1,
                "summary": r.summary,
                "cases": r.rows,
                "skipped": r.skipped,
            }
            for r in results
        ]
        _echo_json({"run": run, "data": data, "metrics": folder.metrics,
                    "table1": folder.table1, "networks": networks})  # fmt: skip
        return
    click.echo(f"wrote {folder.metrics} and {folder.table1}")


# ------------------------------------------------------------------------ explain command


def _parse_budget(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """--memory-budget: bytes (None = the engine's default); usage error when unreadable."""
    if value is None:
        return None
    from strokelrp import parse_bytes

    try:
        return parse_bytes(value)
    except StrokeLRPError as err:
        raise click.BadParameter(str(err), ctx=ctx, param=param) from err


memory_budget_option = click.option(
    "--memory-budget",
    default=None,
    callback=_parse_budget,
    metavar="SIZE",
    help="Memory the relevance walk may use, e.g. 4GB, 512MiB, bytes, or 'unlimited'; "
    "the filter settings are walked in chunks that fit (same maps). "
    "[default: min(8 GB, half the available memory; free memory on a GPU)]",
)
"""The ``--memory-budget`` option, for every command that runs the relevance engine."""


def _check_filter_spec(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    """Check each --filter spec (e.g. pass:0,0.4) with the engine's parser; usage error if bad."""
    if not value:
        return value
    from strokelrp import parse_filter

    for spec in value:
        try:
            parse_filter(spec)
        except (ValueError, StrokeLRPError) as err:
            raise click.BadParameter(f"{spec!r}: {err}", ctx=ctx, param=param) from err
    return value


def _check_method_spec(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> str | None:
    """An attribution method name that :func:`strokelrp.attribution.parse_method` reads."""
    if value is None:
        return None
    from strokelrp import parse_method

    try:
        parse_method(value)
    except StrokeLRPError as err:
        raise click.BadParameter(str(err)) from err
    return value


def _preset_names() -> list[str]:
    """Names of ``strokelrp.lrp.presets.PRESETS`` (a data-only module: no torch, fast)."""
    from strokelrp import PRESETS

    return list(PRESETS)


REFERENCE_HELP = (
    "Explain relative to a reference input: healthy (each channel's mean over healthy brain), "
    "mirror (the contralateral hemisphere), mean, zero, or a .npy / NIfTI file on the model's "
    "grid (C, D, H, W). Maps then read as evidence for the lesion relative to it "
    "(docs/assess.md, 'References')."
)
EXPLAIN_REFERENCE = "healthy"  # = strokelrp.reference.DEFAULT_REFERENCE (tested): no torch here


FOLD_VALUE = r"^(all|[0-9]+(,[0-9]+)*,?)$"
"""What ``--folds`` takes: ``all``, a fold number or a comma-separated list of them."""


class FoldsCommand(click.Command):
    """A command whose ``--folds`` takes nnU-Net's space-separated form (``--folds 0 1 2 3
    4``) besides ``--folds 0,1`` and ``--folds all``: the fold values that follow ``--folds``
    are joined with commas before click parses the arguments (click options take a fixed
    number of values)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, join_option_values(args, "--folds", FOLD_VALUE))


def join_option_values(args: list[str], option: str, pattern: str) -> list[str]:
    """``[..., option, "0", "1", "2", ...]`` -> ``[..., option, "0,1,2", ...]``: the
    arguments after ``option`` that match ``pattern`` become its one value (up to ``--``)."""
    import re

    value = re.compile(pattern)
    out: list[str] = []
    i = 0
    while i < len(args):
        out.append(args[i])
        if args[i] == "--":
            return out + args[i + 1 :]
        if args[i] == option:
            taken = []
            while i + 1 < len(args) and value.match(args[i + 1]):
                taken.append(args[i + 1].rstrip(","))
                i += 1
            if taken:
                out.append(",".join(taken))
        i += 1
    return out


def _check_folds(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from strokelrp.pipeline import parse_folds

    try:
        parse_folds(value)
    except StrokeLRPError as err:
        raise click.BadParameter(str(err).removeprefix("--folds: ")) from err
    return value


@cli.command("explain", cls=FoldsCommand)
@click.argument("run", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.argument("data", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option(
    "--case",
    "case_id",
    default=None,
    help="Case id: 4 or its folder name training_4. With --model: the case's name in the "
    "outputs [default: the first --image's file name].",
)
@click.option(
    "--model",
    "model_spec",
    default=None,
    metavar="PKG.MODULE:FACTORY",
    help="Explain your own network instead of a run: the factory (function or class) that "
    "builds it, e.g. monai.networks.nets:BasicUNet; needs --weights, --image and --out.",
)
@click.option(
    "--model-args", default=None, metavar="JSON", help="Keyword arguments of the factory."
)
@click.option(
    "--nnunet",
    "nnunet_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Explain an nnU-Net v2 results folder (<Trainer>__<Plans>__<configuration>) on whole "
    "volumes through its sliding window: --image files (one per channel, dataset.json's order) "
    "with --out, or DATA --case ID, or DATA --out DIR for every case (--part i/N). DATA is a "
    "data set in any layout strokelrp reads (nnU-Net raw, BIDS/ISLES 2022 and 2024, ISLES 2017, "
    "Decathlon); its channels are matched to dataset.json's channel_names by name, and its "
    "label, where it has one, is the ground truth.",
)
@click.option(
    "--folds",
    default="all",
    show_default=True,
    callback=_check_folds,
    metavar="0 1 ...|0,1,...|all",
    help="With --nnunet: the folds to ensemble (space- or comma-separated, as nnUNetv2_predict "
    "-f), or all found.",
)
@click.option(
    "--part",
    default="0/1",
    show_default=True,
    metavar="i/N",
    help="With --nnunet DATA and no --case: explain the cases i, i+N, ... (like "
    "nnUNetv2_predict -part_id/-num_parts); finished cases are skipped.",
)
@click.option(
    "--no-mirroring",
    is_flag=True,
    help="With --nnunet: no test-time mirroring (nnUNetv2_predict --disable_tta).",
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --model: a .safetensors file or a state dict read by "
    "torch.load(weights_only=True) (never executed).",
)
@click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --model: one NIfTI per input channel, in the network's channel order, one grid; "
    "values passed as stored (no normalisation), voxels in RAS order (outputs are written back "
    "in the images' own order and affine). Repeatable.",
)
@click.option(
    "--label",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --model or --nnunet --image: a lesion mask NIfTI (voxels > 0) on the images' "
    "grid; needed by --target ground_truth, drawn in the figure and scored (Dice) otherwise.",
)
@click.option(
    "--class-index",
    type=int,
    default=1,
    show_default=True,
    help="With --model: the class whose logit is explained by the prediction, ground_truth and "
    "contrastive targets (a one-channel output: its logit).",
)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    callback=_check_filter_spec,
    metavar="KIND:A1,A2[:channel]",
    help="Filter setting, repeatable: pass:0,0.4 | clamp:0,0.2 | pass:0.4 (= 0,0.4), with "
    "0 <= A1 < A2 <= 1. N = max|R| is taken over the whole sample (the authors' choice); a "
    "trailing :channel (pass:0,0.4:channel) takes N per modality channel instead. Raw is "
    "always added. Default: the paper's figure 1 (pass:0,0.4 and clamp:0,0.2).",
)
@click.option(
    "--rules",
    type=click.Choice(_preset_names()),
    default=DEFAULT_PRESET,
    show_default=True,
    help="LRP rule preset (strokelrp.lrp.presets.PRESETS; see docs/method.md).",
)
@click.option(
    "--method",
    default=None,
    callback=_check_method_spec,
    metavar="NAME",
    help="Attribution method (instead of --rules): lrp:<preset>[+<filter>], gradient, "
    "gradient_x_input, integrated_gradients, occlusion, gradcam or locality_prior, options in "
    "brackets ('integrated_gradients(steps=16)'). Every method writes the same NIfTI (+ JSON "
    "sidecar), figure 1 and explanation.json; --filter applies to LRP only. "
    "[default: lrp:<--rules>]",
)
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default="prediction",
    show_default=True,
    help="Start from the lesion logit on the predicted lesion voxels, on the OT voxels "
    "(with --model: the --label voxels; with --nnunet: the data's label or --label), "
    "(authors) from the whole output, both classes, as the authors' code does, or "
    "(contrastive) from the log-odds, lesion minus background logit, on the predicted voxels.",
)
@click.option(
    "--checkpoint",
    default="last",
    show_default=True,
    help="Checkpoint of RUN; with --nnunet: final or best (last means final).",
)
@click.option(
    "--slice",
    "slice_index",
    type=int,
    default=None,
    help="Axial slice z of the figure (the case in RAS order, inferior to superior; default: "
    "largest lesion area).",
)
@click.option(
    "--modality",
    default=None,
    metavar="CHANNEL",
    help="Channel shown in the figure, by the data set's name (default: rCBF for ISLES 2017, "
    "else the first channel).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder [default: RUN/explanations/CASE].",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where to run the network and the relevance walk (auto: CUDA when available).",
)
@click.option(
    "--per-modality",
    is_flag=True,
    help="Also write one 3-D relevance file per channel (relevance_<setting>_<CHANNEL>.nii.gz; "
    "with --model named channel0 ... unless the input is the six ISLES 2017 modalities).",
)
@click.option(
    "--normalised",
    is_flag=True,
    help="Also write a copy with each volume divided by its max |R| (relevance_<setting>_norm).",
)
@memory_budget_option
@click.pass_context
@click.option(
    "--reference",
    default=EXPLAIN_REFERENCE,
    show_default=True,
    metavar="REF",
    help=REFERENCE_HELP + " Methods without a reference (gradient, gradcam, locality_prior) "
    "ignore it; zero gives the plain maps. With --model the default is zero (the healthy and "
    "mirror rules find the brain as ISLES perfusion maps show it) and a NIfTI file is 4-D "
    "(x, y, z, channel) on the images' grid.",
)
def explain_command(
    ctx: click.Context,
    run: Path | None,
    data: Path | None,
    case_id: str | None,
    model_spec: str | None,
    model_args: str | None,
    nnunet_dir: Path | None,
    folds: str,
    part: str,
    no_mirroring: bool,
    weights: Path | None,
    images: tuple[Path, ...],
    label: Path | None,
    class_index: int,
    filters: tuple[str, ...],
    rules: str,
    method: str | None,
    target: str,
    checkpoint: str,
    slice_index: int | None,
    modality: str,
    out: Path | None,
    device: str,
    per_modality: bool,
    normalised: bool,
    memory_budget: float | None,
    reference: str | None,
) -> None:
    """Relevance maps of one case (4-D NIfTI per filter setting, native grid) and figure 1.

    --method explains with any attribution method instead of LRP (the same files).

    RUN DATA --case ID explains a case with a trained run; --model PKG.MODULE:FACTORY
    --weights FILE --image A.nii.gz --image ... --out DIR explains your own network on your
    own images. All settings are computed in one batched relevance pass. Writes
    relevance_*.nii.gz (each with a .json sidecar naming its volumes, for a trained run),
    prediction.nii.gz, figure1.png and explanation.json, and prints their paths (progress goes
    to stderr).
    """
    log = lambda line: click.echo(f"explain: {line}", err=True)  # noqa: E731
    if nnunet_dir is not None:
        if model_spec is not None:
            raise click.UsageError("give --nnunet or --model, not both")
        if _given(ctx, "reference"):
            raise click.UsageError(
                "--reference: not available with --nnunet yet (the maps are relative to zero "
                "in nnU-Net's normalised input: for z-scored channels, the channel's mean)"
            )
        from strokelrp.pipeline.explain_nnunet import explain_nnunet

        for path in explain_nnunet(
            nnunet_dir,
            data=run,
            case_id=case_id,
            images=list(images),
            label=label,
            out=out,
            folds=folds,
            checkpoint="final" if checkpoint == "last" else checkpoint,
            part=part,
            method=method,
            rules=rules,
            filters=list(filters) or None,
            target=target,
            class_index=class_index,
            mirror=not no_mirroring,
            slice_index=slice_index,
            modality=modality,
            per_modality=per_modality,
            normalised=normalised,
            log=log,
        ):
            click.echo(str(path))
        return
    if model_spec is not None:
        if run is not None or data is not None:
            raise click.UsageError("--model explains your images: give no RUN or DATA")
        if method is not None and _given(ctx, "rules"):
            raise click.UsageError("give --rules or --method, not both")
        missing = [
            name
            for name, value in (("--weights", weights), ("--image", images), ("--out", out))
            if not value
        ]
        if missing:
            raise click.UsageError(f"--model needs {', '.join(missing)}")
        from strokelrp.pipeline.explain_images import explain_images

        assert weights is not None and out is not None
        result = explain_images(
            model_spec,
            weights,
            list(images),
            out,
            label=label,
            model_args=model_args,
            filters=list(filters) or None,
            rules=rules,
            method=method,
            target=target,
            class_index=class_index,
            case_id=case_id,
            slice_index=slice_index,
            modality=modality,
            device=device,
            per_modality=per_modality,
            normalised=normalised,
            memory_budget=memory_budget,
            reference=reference if _given(ctx, "reference") else None,
            log=log,
        )
    else:
        if run is None or data is None or case_id is None:
            raise click.UsageError("give RUN DATA --case ID, or --model with --weights/--image")
        model_only = [
            name
            for name, given in (
                ("--image", bool(images)),
                ("--label", label is not None),
                ("--weights", weights is not None),
                ("--model-args", model_args is not None),
                ("--class-index", _given(ctx, "class_index")),
            )
            if given
        ]
        if model_only:
            raise click.UsageError(
                f"{', '.join(model_only)} go(es) with --model (a run's case has its own images "
                "and OT mask)"
            )
        if method is not None and _given(ctx, "rules"):
            raise click.UsageError("give --rules or --method, not both")
        from strokelrp.pipeline.explain import explain_case

        result = explain_case(
            run,
            data,
            case_id,
            filters=list(filters) or None,
            rules=rules,
            method=method,
            target=target,
            checkpoint=checkpoint,
            slice_index=slice_index,
            modality=modality,
            out=out,
            device=device,
            log=log,
            memory_budget=memory_budget,
            per_modality=per_modality,
            normalised=normalised,
            reference=reference,
        )
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    for path in result.paths():
        click.echo(str(path))


# ---------------------------------------------------------------- sweep and report commands


def _split_cases(values: tuple[str, ...]) -> list[str] | None:
    """``--cases 1,4 --cases 27`` -> ["1", "4", "27"]; None when not given."""
    out = [c for v in values for c in v.replace(",", " ").split()]
    return out or None


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="RUN [RUN ...] DATA")
@click.option(
    "--cases",
    multiple=True,
    metavar="IDS",
    help="Only these case ids (comma-separated, or repeat the option). Default: all.",
)
@click.option(
    "--grid",
    default="paper",
    show_default=True,
    metavar="paper|FILE",
    help="Filter settings: the paper's 16, or a file listing settings such as pass:0,0.4 "
    '(one per line, or TOML settings = ["raw", ...]); a trailing :channel '
    "(clamp:0,0.2:channel) normalises per modality channel instead of per sample. The "
    "filters apply to the LRP maps (--rules) only, not to --methods.",
)
@click.option(
    "--rules",
    default=DEFAULT_PRESET,
    show_default=True,
    help="LRP rule preset (strokelrp.lrp.presets.PRESETS).",
)
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default="prediction",
    show_default=True,
    help="Start relevance from the predicted lesion, the ground truth, or the whole output.",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
)
@click.option(
    "--methods",
    multiple=True,
    callback=lambda ctx, param, values: tuple(_check_method_spec(ctx, param, v) for v in values),
    metavar="NAME",
    help="Also sweep these non-LRP methods (repeat the option): gradient, gradient_x_input, "
    "integrated_gradients, occlusion, gradcam, locality_prior, options in brackets "
    "('integrated_gradients(steps=16)'). Each gives one map per case, rows of kind baseline "
    "with the method as setting; the --grid filters apply to the LRP maps only.",
)
@click.option("--restart", is_flag=True, help="Discard RUN/sweep/sweep.csv instead of resuming.")
@click.option(
    "--reference",
    default=None,
    metavar="REF",
    help=REFERENCE_HELP + " For the LRP maps and the --methods that take one; a table keeps "
    "one reference (resuming with another is refused). [default: none, the plain maps]",
)
@click.option(
    "--nnunet",
    "nnunet_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Sweep an nnU-Net v2 results folder on whole volumes through its sliding window: "
    "sweep --nnunet MODEL_DIR DATA (an nnU-Net raw folder); writes OUT/sweep.csv.",
)
@click.option(
    "--folds",
    default="all",
    show_default=True,
    metavar="0,1,...|all",
    help="With --nnunet: the folds to ensemble (comma-separated), or all found.",
)
@click.option(
    "--checkpoint",
    default="final",
    show_default=True,
    help="With --nnunet: final or best.",
)
@click.option(
    "--part",
    default="0/1",
    show_default=True,
    metavar="i/N",
    help="With --nnunet: sweep the cases i, i+N, ...; finished cases are skipped, the table "
    "gathers every finished case.",
)
@click.option(
    "--no-mirroring",
    is_flag=True,
    help="With --nnunet: no test-time mirroring (nnUNetv2_predict --disable_tta).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="With --nnunet: the folder of sweep.csv [default: MODEL_DIR/sweep].",
)
@memory_budget_option
@json_option
def sweep(
    paths: tuple[str, ...],
    cases: tuple[str, ...],
    grid: str,
    rules: str,
    target: str,
    device: str,
    methods: tuple[str, ...],
    restart: bool,
    reference: str | None,
    nnunet_dir: Path | None,
    folds: str,
    checkpoint: str,
    part: str,
    no_mirroring: bool,
    out: Path | None,
    memory_budget: float | None,
    as_json: bool,
) -> None:
    """Explain every case under every filter setting; write RUN/sweep/sweep.csv.

    One batched relevance pass per case computes all settings (filters at every layer, as the
    paper); --methods adds other attribution methods, one unfiltered map each. Cases already
    complete in the table are skipped, so an interrupted sweep resumes when the same command
    is run again (Ctrl-C prints it). A RUN named twice is swept once. Under torchrun the cases
    are shared out over the ranks. Prints the mean inclusivities of raw, pass(0,0.2),
    clamp(0,0.2) and each method at the end.
    """
    from strokelrp import PRESETS
    from strokelrp.pipeline import read_sweep_tables, sweep_summary_lines, sweep_summary_records

    if rules not in PRESETS:
        raise click.BadParameter(
            f"{rules!r} is not one of {', '.join(sorted(PRESETS))}", param_hint="--rules"
        )
    if nnunet_dir is not None:
        if len(paths) != 1:
            raise click.UsageError("with --nnunet give DATA (an nnU-Net raw folder) and no RUN")
        if reference is not None:
            raise click.UsageError("--reference sweeps a run's cases (not yet with --nnunet)")
        from strokelrp.pipeline.sweep_nnunet import sweep_nnunet

        tables = [
            sweep_nnunet(
                nnunet_dir,
                paths[0],
                out,
                grid=grid,
                cases=_split_cases(cases),
                rules=rules,
                target=target,
                methods=methods,
                folds=folds,
                checkpoint=checkpoint,
                mirror=not no_mirroring,
                part=part,
                memory_budget=memory_budget,
                log=lambda line: click.echo(line, err=True),
            )
        ]
    elif len(paths) < 2:
        raise click.UsageError("give at least one RUN and the DATA folder")
    else:
        tables = _sweep_runs(
            paths, cases, grid, rules, target, device, methods, restart, memory_budget, reference
        )
    from strokelrp import is_main_process

    if not is_main_process():
        return
    rows = read_sweep_tables(tables)
    if as_json:
        _echo_json({"tables": tables, "summary": sweep_summary_records(rows) if rows else []})
        return
    for line in sweep_summary_lines(rows):
        click.echo(line)
    for table in tables:
        click.echo(f"wrote {table}")


def _sweep_runs(
    paths: tuple[str, ...],
    cases: tuple[str, ...],
    grid: str,
    rules: str,
    target: str,
    device: str,
    methods: tuple[str, ...],
    restart: bool,
    memory_budget: float | None,
    reference: str | None = None,
) -> list[Path]:
    """``sweep RUN [RUN ...] DATA``: the runs' tables (Ctrl-C prints the resuming command)."""
    from strokelrp.pipeline.sweep import run_sweep

    *runs, data = paths
    try:
        return run_sweep(
            runs,
            data,
            grid=grid,
            cases=_split_cases(cases),
            rules=rules,
            target=target,
            device=device,
            restart=restart,
            log=lambda line: click.echo(line, err=True),
            memory_budget=memory_budget,
            methods=methods,
            reference=reference,
        )
    except KeyboardInterrupt:  # finished cases are in the tables: the same command resumes
        words = ["sweep", *paths, "--grid", grid, "--rules", rules, "--target", target]
        words += [w for c in cases for w in ("--cases", c)] + ["--device", device]
        words += [w for m in methods for w in ("--methods", m)]
        words += ["--reference", reference] if reference is not None else []
        if memory_budget is not None:
            budget = "unlimited" if memory_budget == float("inf") else str(int(memory_budget))
            words += ["--memory-budget", budget]
        _interrupted(words)
        raise


@cli.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN [RUN ...]")
@click.option(
    "--out",
    type=click.Path(dir_okay=True, writable=True),
    default=None,
    help="A file name ending in .html (its folder must exist) or an existing folder (gets "
    "report.html). Default: the first RUN's report.html. No folder is created but figures/ "
    "beside the report.",
)
def report(runs: tuple[str, ...], out: str | None) -> None:
    """Write a self-contained HTML report (figures embedded) and print its path.

    Each RUN is a run folder written by `strokelrp train` (it holds config.toml), or a folder
    of results without training (an nnU-Net model folder, the --out of explain, assess or
    sweep with --nnunet): its report has the sections it has data for. A data folder is
    refused.
    """
    from strokelrp.pipeline.report import build_report

    click.echo(str(build_report(list(runs), out)))


@cli.command()
@click.argument("path", metavar="RUN|DIR", type=click.Path(exists=True, file_okay=False))
@click.option("--case", "case", default=None, help="Show this case only (id or folder name).")
def view(path: str, case: str | None) -> None:
    """Open the interactive 3-D viewer of explanations on a local web server.

    RUN|DIR is a run folder (its explanations/), a folder of explanation folders, or one
    folder written by `strokelrp explain` (with or without --model). The server listens on
    127.0.0.1 only, on a free port; open the printed URL; Ctrl-C stops it.
    """
    import time

    from strokelrp.pipeline.view import explanation_folders, serve, url

    folders = explanation_folders(path, case)
    server = serve(folders)
    click.echo(url(server, folders))
    click.echo("serving on 127.0.0.1 only; Ctrl-C stops", err=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------- assess command

ASSESS_IG_STEPS = 16  # = strokelrp.trust.assess.ASSESS_OPTIONS (tested): no torch import here
ASSESS_PATCH = (4, 16, 16)


def _parse_patch(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int, int]:
    """--occlusion-patch D,H,W (or one size for all three): usage error when unreadable."""
    try:
        sizes = tuple(int(v) for v in value.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) == 1:
        sizes = sizes * 3
    if len(sizes) != 3 or min(sizes) < 1:
        raise click.BadParameter(
            f"use D,H,W (positive voxels), got {value!r}", ctx=ctx, param=param
        )
    return sizes  # type: ignore[return-value]


NNUNET_HELP = (
    "an nnU-Net v2 results folder (<Trainer>__<Plans>__<configuration>), run on whole volumes "
    "through its sliding window; DATA is then an nnU-Net raw folder and RUN is left out"
)


@cli.command("assess")
@click.argument("run", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.argument("data", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option(
    "--nnunet",
    "nnunet_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help=f"Assess {NNUNET_HELP}: assess --nnunet MODEL_DIR DATA --out OUT.",
)
@click.option(
    "--folds",
    default="all",
    show_default=True,
    metavar="0,1,...|all",
    help="With --nnunet: the folds to ensemble (comma-separated), or all found.",
)
@click.option(
    "--part",
    default="0/1",
    show_default=True,
    metavar="i/N",
    help="With --nnunet: assess the cases i, i+N, ... (like nnUNetv2_predict "
    "-part_id/-num_parts); finished cases are skipped, the tables gather every finished case.",
)
@click.option(
    "--no-mirroring",
    is_flag=True,
    help="With --nnunet: no test-time mirroring (nnUNetv2_predict --disable_tta).",
)
@click.option(
    "--cases",
    multiple=True,
    metavar="IDS",
    help="Case ids (comma-separated or repeated). Default: the run's held-out cases, else all.",
)
@click.option(
    "--methods",
    multiple=True,
    metavar="NAMES",
    help="Methods (space/comma-free specs, repeat the option): lrp:<preset>[+<filter>], "
    "gradient, gradient_x_input, integrated_gradients, occlusion, gradcam, locality_prior; "
    "options in brackets, e.g. 'lrp:paper(target=contrastive)'. Default: one map per method "
    f"family: lrp:{DEFAULT_PRESET} (the default preset), gradient, gradient_x_input, "
    "integrated_gradients, occlusion, gradcam, locality_prior.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder for assess.csv, assess_curves.csv (and cascade.csv).",
)
@click.option(
    "--checkpoint",
    default="last",
    show_default=True,
    help="Checkpoint of RUN; with --nnunet: final or best (last means final).",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Independent re-initialisations for randomisation_rho.",
)
@click.option(
    "--random-orders",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Random orderings for random_aopc.",
)
@click.option("--cascade", is_flag=True, help="Also write the cascading randomisation curves.")
@click.option(
    "--extras/--no-extras",
    default=True,
    show_default=True,
    help="The voxel-level and mean-baseline AOPC columns. --no-extras leaves them empty and "
    "scores half as many perturbed inputs per method (a third of the random ones); the ten "
    "measures are unchanged.",
)
@click.option(
    "--ig-steps",
    type=click.IntRange(min=1),
    default=ASSESS_IG_STEPS,
    show_default=True,
    help="integrated_gradients path steps in the assessment (unless the method gives steps=).",
)
@click.option(
    "--occlusion-patch",
    default=",".join(str(p) for p in ASSESS_PATCH),
    show_default=True,
    metavar="D,H,W",
    callback=_parse_patch,
    help="occlusion patch (voxels) in the assessment (unless the method gives patch=).",
)
@click.option(
    "--reference",
    default=None,
    metavar="REF",
    help="Give every method that takes a reference (LRP, gradient_x_input, "
    "integrated_gradients, occlusion) this one, unless its spec names its own: "
    + REFERENCE_HELP
    + " [default: none, each method as specified]",
)
@click.option(
    "--removal",
    type=click.Choice(["impute", "healthy", "mean", "zero"]),
    default="impute",
    show_default=True,
    help="What a removed element becomes in the main AOPC columns (the others are extras): "
    "ROAD-style linear imputation, the healthy-tissue mean, the channel mean or zero.",
)
@click.option(
    "--profile",
    type=click.Choice(["full", "quick"]),
    default="full",
    show_default=True,
    help="quick: one re-initialisation, 3 random orders, 4 fractions, no extras, no sMPRT, the "
    "top-down cascade only, integrated gradients with 8 steps and occlusion patches of "
    "8,24,24 (they replace the options given; cost and verdicts against full: docs/assess.md, "
    "'Profiles'); full: the options as given.",
)
@memory_budget_option
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where to run the network (auto: CUDA when available).",
)
@json_option
def assess_command(
    run: Path | None,
    data: Path | None,
    nnunet_dir: Path | None,
    folds: str,
    part: str,
    no_mirroring: bool,
    cases: tuple[str, ...],
    methods: tuple[str, ...],
    out: Path,
    checkpoint: str,
    seeds: int,
    random_orders: int,
    cascade: bool,
    extras: bool,
    ig_steps: int,
    occlusion_patch: tuple[int, int, int],
    reference: str | None,
    removal: str,
    profile: str,
    memory_budget: float | None,
    device: str,
    as_json: bool,
) -> None:
    """Trust measures of each method's maps (sanity, faithfulness, localisation, modality
    truth): OUT/assess.csv, one row per case x method, and OUT/assess_curves.csv, the
    perturbation curves behind its AOPCs; definitions in docs/assess.md.

    RUN DATA assesses a trained run; --nnunet MODEL_DIR DATA an nnU-Net model on whole
    volumes through its sliding window (resumable, --part i/N)."""
    from strokelrp import read_csv
    from strokelrp.pipeline import assess_method_summaries, assess_summary_lines
    from strokelrp.pipeline.assess import assess_run

    common: dict[str, Any] = dict(
        cases=_split_cases(cases),
        methods=[m for m in methods] or None,
        seeds=tuple(range(1, seeds + 1)),
        random_seeds=random_orders,
        extras=extras,
        removal=removal,
        profile=profile,
        memory_budget=memory_budget,
        options={
            "integrated_gradients": {"steps": ig_steps},
            "occlusion": {"patch": occlusion_patch},
        },
        log=lambda line: click.echo(line, err=True),
    )
    if nnunet_dir is not None:
        if run is None or data is not None:
            raise click.UsageError("with --nnunet give DATA (an nnU-Net raw folder) and no RUN")
        refused = [
            name
            for name, given in (("--cascade", cascade), ("--reference", reference is not None))
            if given
        ]
        if refused:
            raise click.UsageError(f"{', '.join(refused)}: not available with --nnunet yet")
        from strokelrp.pipeline.assess_nnunet import assess_nnunet

        path = assess_nnunet(
            nnunet_dir,
            run,
            out,
            folds=folds,
            checkpoint="final" if checkpoint == "last" else checkpoint,
            mirror=not no_mirroring,
            part=part,
            **common,
        )
    else:
        if run is None or data is None:
            raise click.UsageError("give RUN DATA, or --nnunet MODEL_DIR DATA")
        path = assess_run(
            run,
            data,
            out,
            checkpoint=checkpoint,
            device=device,
            cascade=cascade,
            reference=reference,
            **common,
        )
    rows = read_csv(path)
    if as_json:
        _echo_json({"table": path, "methods": assess_method_summaries(rows), "rows": rows})
        return
    for line in assess_summary_lines(rows):
        click.echo(line)
    click.echo(f"wrote {path}")


# ------------------------------------------------------------------------------ demo command


@cli.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("strokelrp-demo"),
    show_default=True,
    help="Output folder (new, empty, or an earlier demo, which is replaced).",
)
@click.option("--quick", is_flag=True, help="Tiny sizes: every stage in about 1 minute.")
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda", "auto"]),
    default="cpu",
    show_default=True,
    help="Where to train and explain.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="CPU threads for torch (0: torch's default, one per core). The demo's networks are "
    "narrow: one thread is about as fast, and several threads slow down up to 5x when other "
    "processes share the cores.",
)
def demo_command(out: Path, quick: bool, device: str, threads: int) -> None:
    """Synthesise data, train, evaluate, explain, sweep the filters, write the HTML report.

    Needs no data and no network. The full demo takes about 3 minutes on a 2-core CPU,
    --quick about 1 minute.
    """
    import torch

    from strokelrp.pipeline.demo import run_demo

    if threads:
        torch.set_num_threads(threads)  # this command's own process only; the API never does
    run_demo(out, quick=quick, device=device, echo=click.echo)


# ------------------------------------------------------------------------------------ entry


def _error_exit(err: Exception) -> None:
    """Print ``err`` as ``error: ...`` lines on stderr and exit 1."""
    for line in str(err).splitlines() or [type(err).__name__]:
        click.echo(f"error: {line}", err=True)
    sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; bad input becomes ``error: ...`` lines on stderr and exit code 1.

    A :class:`StrokeLRPError` is the library's own report of bad input. A ``ValueError`` that
    escapes a library function (numpy, nibabel, torch rejecting a value the user supplied) is
    also shown as one ``error:`` line, with its type so that a bug stays recognisable; set
    ``STROKELRP_DEBUG=1`` to get its traceback instead. Other exceptions (programming errors)
    keep their traceback.
    """
    import os

    from strokelrp.pipeline import set_command_line

    set_command_line(["strokelrp", *(sys.argv[1:] if argv is None else argv)])
    try:
        cli.main(args=argv, prog_name="strokelrp")
    except StrokeLRPError as err:
        _error_exit(err)
    except ValueError as err:
        if os.environ.get("STROKELRP_DEBUG"):
            raise
        lines = str(err).splitlines() or [""]
        lines[0] = f"{lines[0]} ({type(err).__name__}; STROKELRP_DEBUG=1 shows the traceback)"
        _error_exit(ValueError("\n".join(lines)))
