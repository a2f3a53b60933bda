"""The ``strokelrp`` command line: thin wrappers that parse options and call the Python API.

Heavy modules (torch, nibabel, matplotlib) are imported inside the commands, so ``--help``
is instant. Exit codes: 0 success, 1 bad input (one line per problem), 2 usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from strokelrp import __version__
from strokelrp.errors import StrokeLRPError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="strokelrp")
def cli() -> None:
    """Explain 3-D stroke-lesion segmentation networks with filtered LRP (ISLES 2017)."""


# ---------------------------------------------------------------- data commands (synth, inspect)


# ------------------------------------------------------------ model commands (train, evaluate)


# ------------------------------------------------------------------------ explain command


def _check_filter_spec(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    """Check each --filter spec (e.g. pass:0,0.4) with the engine's parser; usage error if bad."""
    if not value:
        return value
    from strokelrp.lrp.filters import parse_filter

    for spec in value:
        try:
            parse_filter(spec)
        except (ValueError, StrokeLRPError) as err:
            raise click.BadParameter(f"{spec!r}: {err}", ctx=ctx, param=param) from err
    return value


def _check_rules(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """--rules must name a preset of ``strokelrp.lrp.presets.PRESETS`` (looked up lazily)."""
    from strokelrp.lrp.presets import PRESETS

    if value not in PRESETS:
        names = ", ".join(sorted(PRESETS))
        raise click.BadParameter(f"{value!r} is not a preset; choose from {names}", ctx, param)
    return value


@cli.command("explain")
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.argument("data", type=click.Path(file_okay=False, path_type=Path))
@click.option("--case", "case_id", required=True, help="Case id, e.g. training_4.")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    callback=_check_filter_spec,
    metavar="KIND:A1,A2",
    help="Filter setting, repeatable: pass:0,0.4 | clamp:0,0.2 | pass:0.4 (= 0,0.4). "
    "Raw is always added. Default: the paper's figure 1 (pass:0,0.4 and clamp:0,0.2).",
)
@click.option(
    "--rules",
    default="paper",
    show_default=True,
    callback=_check_rules,
    help="LRP rule preset (strokelrp.lrp.presets.PRESETS: paper, epsilon, wplus, zplus, "
    "recommended, ...).",
)
@click.option(
    "--target",
    type=click.Choice(["prediction", "ground_truth"]),
    default="prediction",
    show_default=True,
    help="Start relevance from the lesion logit on the predicted or on the OT lesion voxels.",
)
@click.option("--checkpoint", default="last", show_default=True, help="Checkpoint of RUN.")
@click.option(
    "--slice",
    "slice_index",
    type=int,
    default=None,
    help="Axial slice z of the figure (native grid; default: largest lesion area).",
)
@click.option(
    "--modality",
    type=click.Choice(["ADC", "MTT", "rCBF", "rCBV", "Tmax", "TTP"]),
    default="rCBF",
    show_default=True,
    help="Modality channel shown in the figure.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder [default: RUN/explanations/CASE].",
)
def explain_command(
    run: Path,
    data: Path,
    case_id: str,
    filters: tuple[str, ...],
    rules: str,
    target: str,
    checkpoint: str,
    slice_index: int | None,
    modality: str,
    out: Path | None,
) -> None:
    """Relevance maps of one case (4-D NIfTI per filter setting, native grid) and figure 1.

    All settings are computed in one batched relevance pass. Writes relevance_*.nii.gz,
    prediction.nii.gz, figure1.png and explanation.json, and prints their paths.
    """
    from strokelrp.report.explain_case import explain_case

    result = explain_case(
        run,
        data,
        case_id,
        filters=list(filters) or None,
        rules=rules,
        target=target,
        checkpoint=checkpoint,
        slice_index=slice_index,
        modality=modality,
        out=out,
    )
    for path in result.paths():
        click.echo(str(path))


# ---------------------------------------------------------------- sweep and report commands


# ------------------------------------------------------------------------------ demo command


# ------------------------------------------------------------------------------------ entry


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a :class:`StrokeLRPError` becomes ``error: ...`` lines on stderr, exit 1."""
    try:
        cli.main(args=argv, prog_name="strokelrp")
    except StrokeLRPError as err:
        for line in str(err).splitlines() or [type(err).__name__]:
            click.echo(f"error: {line}", err=True)
        sys.exit(1)
