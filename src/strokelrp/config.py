"""Names and presets shared by every stage: class indices, series scales, the training config."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from strokelrp.atomic import write_text
from strokelrp.errors import StrokeLRPError

BACKGROUND: int = 0
"""Index of the background class in the labels and in the network's logits (B, 2, D, H, W)."""

LESION: int = 1
"""Index of the lesion class in the labels and in the network's logits (B, 2, D, H, W)."""

SERIES: dict[str, tuple[int, int, int]] = {
    "A": (19, 48, 48),
    "B": (19, 96, 96),
    "C": (19, 144, 144),
    "X": (19, 192, 192),
}
"""The paper's series scales as (D, H, W) = (slices, rows, columns)."""


# ------------------------------------------------------------------------ training configuration

LOSSES: tuple[str, ...] = ("ce", "dice_ce")
"""Training losses: the paper's cross-entropy, or cross-entropy + soft Dice of the lesion class."""

NORMALIZATIONS: tuple[str, ...] = ("minmax", "zscore")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
ARCHS: tuple[str, ...] = ("unet3d", "monai-basicunet", "monai-unet", "monai-dynunet")
"""Trainable architectures (``strokelrp.model.architectures``; kept equal there by a test)."""

RESUMABLE_FIELDS: frozenset[str] = frozenset(
    {
        "epochs",
        "device",
        "precision",
        "checkpoint_every",
        "keep_checkpoints",
        "cache_dir",
        "assess_every",
        "assess_method",
        "assess_cases",
    }
)
"""Fields that may differ when a run is resumed; every other field must match the run's."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the paper's recipe by default).

    ``data`` is the data tree, read in ``layout`` (``None``: detected) with ``channels`` (the
    data set's names, in network order; ``None``: the layout's default) and ``lesion`` (the
    label class read as lesion, nnU-Net raw and Decathlon); ``train`` records the layout and
    channels it found, so every later stage reads the same inputs. ``series`` one of
    :data:`SERIES` or an explicit (D, H, W)
    for quick experiments (use :attr:`shape` for the sizes). ``repeats`` > 1 trains networks
    with seeds ``seed .. seed + repeats - 1`` (the paper's A1..A4); the held-out split
    (``val_fraction``) is drawn from ``split_seed`` (``None``: ``seed``), so all repeats of a
    run share one split. ``assess_every`` N > 0 records the trust measures of
    ``assess_method`` on ``assess_cases`` held-out cases every N epochs
    (:mod:`strokelrp.train.assess_log`).
    """

    data: str
    series: str | tuple[int, int, int]
    width: int = 32
    arch: str = "unet3d"
    epochs: int = 80
    seed: int = 0
    repeats: int = 1
    loss: str = "ce"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.9)
    val_fraction: float = 0.0
    split_seed: int | None = None
    normalization: str = "minmax"
    cases: tuple[str, ...] | None = None
    device: str = "auto"
    precision: str = "fp32"
    checkpoint_every: int = 1
    keep_checkpoints: int = 0
    cache_dir: str | None = None
    assess_every: int = 0
    assess_method: str = "lrp:epsilon"
    assess_cases: int = 2
    layout: str | None = None
    channels: tuple[str, ...] | None = None
    lesion: str | None = None

    def __post_init__(self) -> None:
        # Normalise container types first (TOML gives lists), then validate everything at once.
        object.__setattr__(self, "data", str(self.data))
        if isinstance(self.series, (list, tuple)):
            object.__setattr__(self, "series", tuple(self.series))
        if isinstance(self.betas, list):
            object.__setattr__(self, "betas", tuple(self.betas))
        if self.cases is not None and not isinstance(self.cases, str):
            object.__setattr__(self, "cases", tuple(str(c) for c in self.cases))
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", str(self.cache_dir))
        if isinstance(self.channels, (list, tuple)):
            object.__setattr__(self, "channels", tuple(str(c) for c in self.channels))
        problems = self._problems()
        if problems:
            raise StrokeLRPError("\n".join(f"invalid training config: {p}" for p in problems))

    def _problems(self) -> list[str]:
        p: list[str] = []

        def integer(name: str, minimum: int) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                p.append(f"{name} must be an integer >= {minimum}, got {value!r}")

        def choice(name: str, options: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in options:
                p.append(f"{name} must be one of {', '.join(options)}, got {value!r}")

        if not self.data:
            p.append("data must name the data folder, got an empty string")
        if self.layout is not None:
            from strokelrp.data.layouts import LAYOUTS

            choice("layout", tuple(LAYOUTS))
        if self.channels is not None and (isinstance(self.channels, str) or not self.channels):
            p.append(f"channels must be a non-empty list of channel names, got {self.channels!r}")
        if self.lesion is not None and not isinstance(self.lesion, str):
            p.append(f"lesion must be a label class name or value, got {self.lesion!r}")
        if isinstance(self.series, tuple):
            if len(self.series) != 3 or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in self.series
            ):
                p.append(f"series must be A, B, C, X or (D, H, W) sizes >= 1, got {self.series!r}")
            elif math.prod(math.ceil(n / 8) for n in self.series) < 2:
                # UNet3D pools three times by 2 (ceil mode); BatchNorm in training needs more
                # than one value per channel at the bottleneck (batch size 1).
                p.append(
                    f"series {'x'.join(map(str, self.series))} is too small for the U-Net's "
                    "three 2x poolings: D x H x W / 8^3 must keep at least 2 voxels (e.g. 8x16x16)"
                )
        else:
            choice("series", tuple(SERIES))
        integer("width", 1)
        choice("arch", ARCHS)
        grid = self.series if isinstance(self.series, tuple) else SERIES.get(self.series)
        if grid is not None and len(grid) == 3:
            text = "x".join(map(str, grid))
            if self.arch in ("monai-unet", "monai-dynunet") and any(n % 8 for n in grid[1:]):
                p.append(
                    f"arch {self.arch} halves H and W three times: they must be divisible "
                    f"by 8, got series {text}"
                )
            if self.arch == "monai-basicunet" and (
                min(grid) < 16 or math.prod(n // 16 for n in grid) < 2
            ):
                p.append(
                    f"arch monai-basicunet halves every axis four times: D, H and W must be "
                    f">= 16 and keep 2 voxels at 1/16 (BatchNorm), got series {text}"
                )
        integer("epochs", 0)
        integer("seed", 0)
        integer("repeats", 1)
        integer("checkpoint_every", 1)
        integer("keep_checkpoints", 0)
        integer("assess_every", 0)
        integer("assess_cases", 1)
        if not isinstance(self.assess_method, str) or not self.assess_method:
            p.append(f"assess_method must be a method name, got {self.assess_method!r}")
        if self.split_seed is not None:
            integer("split_seed", 0)
        choice("loss", LOSSES)
        choice("device", DEVICES)
        choice("precision", PRECISIONS)
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or not self.lr > 0:
            p.append(f"lr must be a number > 0, got {self.lr!r}")
        if (
            not isinstance(self.betas, tuple)
            or len(self.betas) != 2
            or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas)
        ):
            p.append(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        v = self.val_fraction
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < 1:
            p.append(f"val_fraction must be a number in [0, 1), got {v!r}")
        choice("normalization", NORMALIZATIONS)
        if self.cases is not None and (isinstance(self.cases, str) or len(self.cases) == 0):
            p.append(f"cases must be a non-empty list of case ids, got {self.cases!r}")
        return p

    # ------------------------------------------------------------------ derived values
    @property
    def shape(self) -> tuple[int, int, int]:
        """The series' (D, H, W)."""
        return self.series if isinstance(self.series, tuple) else SERIES[self.series]

    @property
    def input_channels(self) -> tuple[str, ...]:
        """The network's input channels: the recorded ones, else ISLES 2017's six (runs
        trained before layouts were recorded read ISLES 2017)."""
        if self.channels is not None:
            return tuple(self.channels)
        from strokelrp.data.layouts.isles2017 import CHANNELS

        return CHANNELS

    @property
    def data_options(self) -> dict[str, Any]:
        """How the run reads data: ``layout``, ``channels``, ``lesion`` (keyword arguments of
        :func:`strokelrp.data.layouts.load_case` and ``CaseDataset``)."""
        return {"layout": self.layout, "channels": self.channels, "lesion": self.lesion}

    @property
    def series_name(self) -> str:
        """``"A"`` ... ``"X"``, or ``"DxHxW"`` for a custom shape."""
        return self.series if isinstance(self.series, str) else "x".join(map(str, self.series))

    @property
    def effective_split_seed(self) -> int:
        """The seed that draws the held-out split."""
        return self.seed if self.split_seed is None else self.split_seed

    def for_network(self, index: int) -> TrainConfig:
        """The config of network ``index`` (1-based) of a ``repeats`` run: its own seed."""
        if not 1 <= index <= self.repeats:
            raise ValueError(f"network index must be in 1..{self.repeats}, got {index}")
        return replace(
            self, seed=self.seed + index - 1, repeats=1, split_seed=self.effective_split_seed
        )

    def contradictions(self, other: TrainConfig) -> list[str]:
        """Fields (outside :data:`RESUMABLE_FIELDS`) where ``other`` differs, one line each."""
        lines = []
        for f in fields(self):
            if f.name in RESUMABLE_FIELDS:
                continue
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name in ("layout", "channels", "lesion") and (mine is None or theirs is None):
                continue  # not recorded (older run) or not asked: the data decide
            if f.name == "data":
                mine, theirs = _resolved(mine), _resolved(theirs)
            if mine != theirs:
                lines.append(f"{f.name}: the run has {mine!r}, the command asks for {theirs!r}")
        return lines

    # ------------------------------------------------------------------ dict / TOML
    def to_dict(self) -> dict[str, Any]:
        """Plain TOML-friendly values (tuples as lists, ``None`` left out)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build and validate; unknown or missing keys are reported with their ``source``."""
        known = {f.name for f in fields(cls)}
        problems = []
        for key in values:
            if key not in known:
                hint = difflib.get_close_matches(key, sorted(known), n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                problems.append(f"unknown key {key!r} in {source}{extra}")
        for key in ("data", "series"):
            if key not in values:
                problems.append(f"missing key {key!r} in {source}")
        if problems:
            raise StrokeLRPError("\n".join(problems))
        return cls(**values)

    def to_toml(self, path: str | Path) -> Path:
        """Write the config as TOML, atomically (temporary file, then rename)."""
        import tomli_w

        text = "# strokelrp training configuration (resolved)\n" + tomli_w.dumps(self.to_dict())
        return write_text(path, text)

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        """Read and validate a TOML config written by :meth:`to_toml` (or by hand)."""
        path = Path(path)
        try:
            values = toml_loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise StrokeLRPError(f"{path}: no such config file") from err
        except ValueError as err:  # tomllib.TOMLDecodeError is a ValueError
            raise StrokeLRPError(f"{path}: not valid TOML ({err})") from err
        return cls.from_dict(values, source=str(path))


def _resolved(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def toml_loads(text: str) -> dict[str, Any]:
    """Parse TOML text (``tomllib``; ``tomli`` on Python 3.10); raises ``ValueError`` if bad."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads(text)
