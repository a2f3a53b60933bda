"""Named rule choices ("presets"): plain data that tell the engine which rule goes where.

A preset names one rule for the first convolution (the one reading the network input), one
for the body (every other ``Conv3d`` / ``ConvTranspose3d``), optionally one for the upper
layers (the decoder: module paths matching ``upper_paths``; default: the
body's rule) and one for the head (the last node, producing the logits), the BatchNorm
handling (``pass``: relevance passes unchanged; ``fold``: BatchNorm is folded into the
preceding convolution) and the rules' parameters.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from strokelrp.errors import StrokeLRPError

if TYPE_CHECKING:  # torch is imported only when a rule is built, so the CLI's --help stays fast
    from strokelrp.lrp.rules import Rule

Bound = float | Sequence[float]
RULE_NAMES: tuple[str, ...] = ("epsilon", "w+", "z+", "zB", "gamma", "flat", "w2")
"""Names of the rules in :data:`strokelrp.lrp.rules.RULES`."""

TARGETS: tuple[str, ...] = ("prediction", "ground_truth", "authors", "contrastive")
"""Named starts of a relevance walk (see :func:`strokelrp.lrp.engine.target_weights`)."""

BatchNormMode = Literal["pass", "fold"]
SumMode = Literal["epsilon", "exact"]
SUM_MODES: tuple[str, ...] = ("epsilon", "exact")
"""How additions of network values (residual sums) split relevance: ``epsilon`` in proportion
to the summands with the preset's stabiliser (a sum near 0 absorbs relevance, as the
epsilon rule's layers do), ``exact`` in proportion with a negligible stabiliser (1e-9:
conserving)."""
EXACT_SUM_EPSILON = 1e-9
"""The stabiliser of additions under ``sums="exact"``."""
Position = Literal["first", "body", "upper", "head"]


@dataclass(frozen=True)
class Preset:
    """Which rule goes where. Rule names: ``epsilon``, ``w+``, ``z+``, ``zB``, ``gamma``,
    ``flat``, ``w2``.

    ``upper``: the rule of the decoder's convolutions, the layers whose module path matches
    one of ``upper_paths`` (glob patterns; UNet3D ``up*``/``dec*``, MONAI BasicUNet
    ``upcat_*``); None: the body's rule. ``epsilon`` is every
    rule's stabiliser; ``low`` / ``high`` are the z^B bounds (scalars or one value per input
    channel); ``gamma`` the LRP-gamma factor.
    """

    name: str
    first: str
    body: str
    head: str
    batchnorm: BatchNormMode = "pass"
    instancenorm: BatchNormMode = "pass"
    epsilon: float = 1e-9
    low: Bound = 0.0
    high: Bound = 1.0
    description: str = ""
    upper: str | None = None
    gamma: float = 0.25
    upper_paths: tuple[str, ...] = ("up*", "dec*", "upcat_*", "decoder*")
    sums: SumMode = "epsilon"

    def __post_init__(self) -> None:
        for where in ("first", "body", "upper", "head"):
            rule = getattr(self, where)
            if rule is None and where == "upper":
                continue
            if rule not in RULE_NAMES:
                raise _unknown(f"{where} rule in preset {self.name!r}:", rule, RULE_NAMES)
        if self.instancenorm not in ("pass", "fold"):
            raise StrokeLRPError(
                f"preset {self.name!r}: instancenorm must be 'pass' or 'fold', "
                f"got {self.instancenorm!r}"
            )
        if self.sums not in SUM_MODES:
            raise StrokeLRPError(
                f"preset {self.name!r}: sums must be 'epsilon' or 'exact', got {self.sums!r}"
            )
        if self.batchnorm not in ("pass", "fold"):
            raise StrokeLRPError(
                f"preset {self.name!r}: batchnorm must be 'pass' or 'fold', got {self.batchnorm!r}"
            )
        if not (isinstance(self.epsilon, int | float) and self.epsilon > 0):
            raise StrokeLRPError(f"preset {self.name!r}: epsilon must be > 0, got {self.epsilon!r}")
        if not (isinstance(self.gamma, int | float) and self.gamma >= 0):
            raise StrokeLRPError(f"preset {self.name!r}: gamma must be >= 0, got {self.gamma!r}")

    def rule(self, position: Position) -> Rule:
        """The rule object for a convolution at ``position``."""
        from strokelrp.lrp.rules import make_rule

        upper = self.upper or self.body
        name = {"first": self.first, "body": self.body, "upper": upper, "head": self.head}[position]
        return make_rule(name, self.epsilon, self.low, self.high, self.gamma)

    def summary(self) -> str:
        """One line: ``paper: first=zB body=w+ head=w+ bn=pass eps=1e-09``."""
        upper = f" upper={self.upper}" if self.upper else ""
        inorm = " in=fold" if self.instancenorm == "fold" else ""
        inorm += " sums=exact" if self.sums == "exact" else ""
        uses_gamma = "gamma" in (self.first, self.body, self.upper, self.head)
        gamma = f" gamma={self.gamma:g}" if uses_gamma else ""
        return (
            f"{self.name}: first={self.first} body={self.body}{upper} head={self.head} "
            f"bn={self.batchnorm}{inorm} eps={self.epsilon:g}{gamma}"
        )


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "paper",
            first="zB",
            body="w+",
            head="w+",
            batchnorm="pass",
            description="the paper's configuration, for reproduction (Tjoa et al. 2020): "
            "z^B (0, 1) first, w+ (eq. 1) on every other convolution, BatchNorm and "
            "activations pass relevance through, eps 1e-9; measured weaknesses in "
            "docs/method.md section 6",
        ),
        Preset(
            "epsilon",
            first="epsilon",
            body="epsilon",
            head="epsilon",
            batchnorm="fold",
            instancenorm="fold",
            epsilon=0.25,
            description="the default: LRP-epsilon everywhere, eps 0.25, BatchNorm folded, "
            "InstanceNorm folded with the instance's statistics; the configuration that passed "
            "the trust checks (docs/method.md section 6; the InstanceNorm fold measured on "
            "nnU-Nets, section 3b)",
        ),
        Preset("wplus", "w+", "w+", "w+", description="w+ (eq. 1) everywhere; for checks"),
        Preset("zplus", "z+", "z+", "z+", description="z+ for signed inputs everywhere"),
        Preset(
            "recommended",
            first="zB",
            body="z+",
            head="epsilon",
            batchnorm="fold",
            description="BatchNorm folded into the convolutions, z^B first, z+ (signed "
            "inputs) in the body, epsilon at the head: see docs/method.md",
        ),
        Preset(
            "gamma",
            first="zB",
            body="gamma",
            head="epsilon",
            batchnorm="fold",
            epsilon=0.25,
            description="z^B first, LRP-gamma (0.25) in the body, epsilon (0.25) at the head, "
            "BatchNorm folded",
        ),
        Preset(
            "composite",
            first="zB",
            body="gamma",
            upper="epsilon",
            head="epsilon",
            batchnorm="fold",
            epsilon=0.25,
            description="the epsilon-gamma-zB composite (Montavon et al. 2019): z^B first, "
            "gamma (0.25) in the encoder, epsilon (0.25) in the decoder and head, BatchNorm "
            "folded",
        ),
    )
}
"""The registry: the CLI offers exactly these names."""

DEFAULT_PRESET = "epsilon"
"""The preset ``explain``, the ``explain`` and ``sweep`` commands and the demo use by default:
chosen by measurement (docs/method.md, "which rules, measured")."""

_FIELDS = tuple(f.name for f in dataclasses.fields(Preset) if f.name != "name")


def _unknown(kind: str, value: str, known: list[str] | tuple[str, ...]) -> StrokeLRPError:
    hint = difflib.get_close_matches(value, known, n=1)
    extra = f" (did you mean {hint[0]!r}?)" if hint else ""
    return StrokeLRPError(f"unknown {kind} {value!r}{extra}; known: {', '.join(known)}")


def preset(name: str, **overrides: object) -> Preset:
    """The registered preset ``name`` with field overrides.

    Example: ``preset("epsilon", epsilon=0.01)``; ``preset("paper", batchnorm="fold")``.
    """
    if name not in PRESETS:
        raise _unknown("preset", name, list(PRESETS))
    for key in overrides:
        if key not in _FIELDS:
            raise _unknown("preset field", key, _FIELDS)
    return dataclasses.replace(PRESETS[name], **overrides) if overrides else PRESETS[name]


def resolve(rules: str | Preset) -> Preset:
    """A preset from a name or a :class:`Preset`."""
    if isinstance(rules, Preset):
        return rules
    if isinstance(rules, str):
        return preset(rules)
    raise StrokeLRPError(
        f"rules must be a preset name, a Preset or a Composite, got {type(rules).__name__}"
    )
