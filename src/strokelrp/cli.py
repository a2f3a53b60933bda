"""The ``strokelrp`` command line: thin wrappers that parse options and call the Python API.

Heavy modules (torch, nibabel, matplotlib) are imported inside the commands, so ``--help``
is instant. Exit codes: 0 success, 1 bad input (one line per problem), 2 usage error.
"""

from __future__ import annotations

import sys

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
