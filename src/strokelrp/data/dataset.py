"""A torch ``Dataset`` over an ISLES 2017 tree, with an on-disk cache of preprocessed arrays.

A cache entry is ``<cache_dir>/<key>.x.npy`` (x, (6, D, H, W) float32, in RAS voxel order:
see :mod:`strokelrp.core.orientation`), ``<key>.y.npy`` (y, (D, H, W) uint8, when the case has
OT) and ``<key>.json`` (RAS grid, spacing and affine, the files' axis codes),
each written atomically, the JSON last; ``.npy`` reads several times faster than ``.npz``.
The key is a SHA-256 of the cache format version, the series shape, the normalisation, and
the SHA-256 of every source file's content. Content hashes are remembered in
``<cache_dir>/file_hashes.json`` against (path, size, mtime), so a warm start only stats the
files; a changed file (new size or mtime) is hashed again, and changed content gives a new key.
An entry exists only for a case that passed validation, so a warm start skips reading NIfTI.

Cases without OT: with ``require_labels=True`` (default) they are a problem (raised or
skipped per ``on_error``); with ``require_labels=False`` they are kept and their ``y`` is
filled with :data:`NO_LABEL` (-100, PyTorch's default ``ignore_index`` of cross-entropy).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from strokelrp.atomic import write_bytes, write_text
from strokelrp.config import MODALITIES
from strokelrp.data.isles2017 import (
    LABEL_TOKEN,
    Case,
    CaseFolder,
    OnError,
    check_on_error,
    raise_or_warn,
    read_case,
    relative_name,
    select_cases,
)
from strokelrp.data.preprocess import NORMALIZATIONS, preprocess_case, series_shape
from strokelrp.errors import DataError, StrokeLRPError

CACHE_VERSION = 3
"""3: arrays in RAS voxel order; 2: spacing and affine in mm from the checked affine."""
NO_LABEL = -100
"""Fill value of ``y`` for a case without OT (cross-entropy's default ``ignore_index``)."""
_HASH_INDEX = "file_hashes.json"


def default_cache_dir() -> Path:
    """``$STROKELRP_CACHE_DIR``, else ``$XDG_CACHE_HOME/strokelrp``, else ``~/.cache/strokelrp``."""
    env = os.environ.get("STROKELRP_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "strokelrp"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def case_fingerprint(files: Mapping[str, Path], digest: Callable[[Path], str] = file_sha256) -> str:
    """SHA-256 over the content of a case's source files (``"ADC"`` ... ``"OT"`` -> path).

    Names and folders do not count: two copies of a case anywhere on disk share it, a changed
    voxel or header changes it. Runs record it per training case (``split.json``) so that
    results can tell those cases from other data with the same ids.
    """
    parts = [[key, digest(Path(files[key]))] for key in (*MODALITIES, LABEL_TOKEN) if key in files]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


class _HashIndex:
    """Content hashes of source files, remembered against (path, size, mtime_ns)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, list] = {}
        self.dirty = False
        if path is not None and path.exists():
            try:
                loaded = json.loads(path.read_text())
                if isinstance(loaded, dict):
                    self.entries = loaded
            except (OSError, ValueError):
                self.entries = {}

    def digest(self, file: Path) -> str:
        resolved = str(file.resolve())
        st = file.stat()
        known = self.entries.get(resolved)
        if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
            return str(known[2])
        digest = file_sha256(file)
        self.entries[resolved] = [st.st_size, st.st_mtime_ns, digest]
        self.dirty = True
        return digest

    def save(self) -> None:
        if self.path is not None and self.dirty:
            write_text(self.path, json.dumps(self.entries))
            self.dirty = False


@dataclass(frozen=True)
class CaseGeometry:
    """Geometry of a case at its own resolution, known without reading its images."""

    case_id: str
    grid: tuple[int, int, int]
    """RAS voxel grid (x, y, z) = (W, H, D) (as ``Case.grid``)."""
    spacing: tuple[float, float, float]
    affine: np.ndarray
    """Affine of the RAS voxel grid (as ``Case.affine``)."""
    has_label: bool
    orientation: str = "RAS"
    """The files' axis codes (as ``Case.orientation``)."""


class LazyCases(Sequence[Case]):
    """The dataset's cases in their native grids, read from disk on access (a few kept)."""

    def __init__(self, folders: list[CaseFolder], root: Path, keep: int = 2) -> None:
        self._folders, self._root, self._keep = folders, root, keep
        self._memo: OrderedDict[int, Case] = OrderedDict()

    def __len__(self) -> int:
        return len(self._folders)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = range(len(self))[index]
        if i in self._memo:
            self._memo.move_to_end(i)
            return self._memo[i]
        case, problems = read_case(self._folders[i], self._root)
        if case is None:
            raise DataError(problems)
        self._memo[i] = case
        while len(self._memo) > self._keep:
            self._memo.popitem(last=False)
        return case

    def __iter__(self) -> Iterator[Case]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        ids = ", ".join(f.case_id for f in self._folders)
        return f"LazyCases([{ids}])"


def _entry_file(stem: Path, part: str) -> Path:
    """``<key>.x.npy``, ``<key>.y.npy`` (arrays) and ``<key>.json`` (geometry, written last)."""
    return stem.with_name(f"{stem.name}.{part}.npy" if part in ("x", "y") else f"{stem.name}.json")


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _npy_complete(path: Path) -> bool:
    """True if ``path`` is a .npy file whose size matches its header (not cut short)."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                return False
            offset = fh.tell()
        return path.stat().st_size == offset + int(np.prod(shape)) * dtype.itemsize
    except (OSError, ValueError):
        return False


def _write_entry(stem: Path, x: np.ndarray, y: np.ndarray | None, geom: CaseGeometry) -> None:
    """Write the arrays, then the geometry JSON that marks the entry complete (all atomic)."""
    write_bytes(_entry_file(stem, "x"), _npy_bytes(x.astype(np.float32, copy=False)))
    if y is not None:
        write_bytes(_entry_file(stem, "y"), _npy_bytes(y.astype(np.uint8, copy=False)))
    meta = {
        "grid": list(geom.grid),
        "spacing": list(geom.spacing),
        "affine": np.asarray(geom.affine, dtype=np.float64).tolist(),
        "has_label": geom.has_label,
        "orientation": geom.orientation,
        "x_shape": list(x.shape),
    }
    write_text(_entry_file(stem, "meta"), json.dumps(meta))


def _read_entry_meta(stem: Path, case_id: str) -> CaseGeometry | None:
    """Geometry of a complete, intact cache entry, or ``None`` (missing or damaged: rebuild)."""
    try:
        meta = json.loads(_entry_file(stem, "meta").read_text())
        geom = CaseGeometry(
            case_id,
            tuple(int(g) for g in meta["grid"]),  # type: ignore[arg-type]
            tuple(float(v) for v in meta["spacing"]),  # type: ignore[arg-type]
            np.asarray(meta["affine"], dtype=np.float64),
            bool(meta["has_label"]),
            str(meta["orientation"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    parts = ("x", "y") if geom.has_label else ("x",)
    if not all(_npy_complete(_entry_file(stem, part)) for part in parts):
        return None
    return geom


class CaseDataset(Dataset):
    """Preprocessed cases of an ISLES 2017 tree -> ``(x, y, case_id)``.

    ``x`` float32 tensor (6, D, H, W) at the series scale (``"A"``... ``"X"`` or a (D, H, W)
    tuple), ``y`` int64 tensor (D, H, W) with 0/1 (or :data:`NO_LABEL` for a case without OT
    when ``require_labels=False``). ``cases`` restricts to these case ids. ``on_error``:
    ``"raise"`` a :class:`DataError` with every problem, or ``"skip"`` (warn) invalid cases.
    ``cache_dir=None`` uses :func:`default_cache_dir`; ``use_cache=False`` keeps the arrays in
    memory only. ``.cases`` gives the native :class:`Case` objects (read lazily),
    ``.case_ids`` the ids, ``.geometry(i)`` the grid, spacing and affine (RAS order) and the
    files' orientation, ``.case_files(i)`` the source files and ``.fingerprint(i)`` a hash of
    their content.
    """

    def __init__(
        self,
        root: str | Path,
        series: str | tuple[int, int, int],
        cache_dir: str | Path | None = None,
        normalization: Literal["minmax", "zscore"] = "minmax",
        cases: Iterable[str] | None = None,
        *,
        on_error: OnError = "raise",
        require_labels: bool = True,
        use_cache: bool = True,
        progress: bool = False,
    ) -> None:
        check_on_error(on_error)
        if normalization not in NORMALIZATIONS:
            choices = ", ".join(NORMALIZATIONS)
            raise StrokeLRPError(
                f"unknown normalization {normalization!r}; choose one of {choices}"
            )
        self.root = Path(root)
        self.shape = series_shape(series)
        self.series = series
        self.normalization = normalization
        self.require_labels = require_labels
        self.cache_dir = (
            (Path(cache_dir) if cache_dir is not None else default_cache_dir())
            if use_cache
            else None
        )
        if self.cache_dir is not None:
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StrokeLRPError(
                    f"{self.cache_dir}: cannot create the cache folder ({err})"
                ) from err
        self._hashes = _HashIndex(self.cache_dir / _HASH_INDEX if self.cache_dir else None)

        folders = select_cases(self.root, cases)
        kept: list[CaseFolder] = []
        self._entries: list[Path | dict[str, np.ndarray]] = []
        self._geometry: list[CaseGeometry] = []
        self.cache_hits = 0
        problems: list[str] = []
        iterator: Iterable = folders
        if progress:
            from tqdm import tqdm

            iterator = tqdm(
                iterator, total=len(folders), desc="load", unit="case", leave=False, disable=None
            )
        for folder, duplicate in iterator:
            if duplicate:
                problems += duplicate
                continue
            entry, geom, found = self._prepare(folder)
            if found:
                problems += found
                continue
            assert entry is not None and geom is not None
            kept.append(folder)
            self._entries.append(entry)
            self._geometry.append(geom)
        self._hashes.save()
        raise_or_warn(problems, on_error)
        self._folders = kept
        self.cases: LazyCases = LazyCases(kept, self.root)

    # ------------------------------------------------------------------ building entries

    def _key(self, folder: CaseFolder) -> str | None:
        """Cache key of a case, or ``None`` when its files are not one per modality."""
        parts = []
        for key in (*MODALITIES, LABEL_TOKEN):
            found = folder.files.get(key, [])
            if len(found) > 1 or folder.empty_folders.get(key):
                return None
            if not found:
                if key == LABEL_TOKEN:
                    continue
                return None
            try:
                parts.append([key, self._hashes.digest(found[0])])
            except OSError:
                return None
        blob = json.dumps(
            {
                "version": CACHE_VERSION,
                "shape": list(self.shape),
                "normalization": self.normalization,
                "files": parts,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def _prepare(self, folder: CaseFolder):
        """-> (cache path or in-memory arrays, geometry, problems) for one case folder."""
        label_missing = [
            f"case {folder.case_id}: {relative_name(folder.path, self.root)}: no OT (ground "
            "truth) image; pass require_labels=False to use cases without labels"
        ]
        if (
            self.require_labels
            and not folder.files.get(LABEL_TOKEN)
            and not folder.empty_folders.get(LABEL_TOKEN)
        ):
            # still validate, so that all problems of the case are reported together
            _case, problems = read_case(folder, self.root)
            return None, None, label_missing + problems
        key = self._key(folder) if self.cache_dir is not None else None
        stem = self.cache_dir / key if key and self.cache_dir else None
        if stem is not None:
            geom = _read_entry_meta(stem, folder.case_id)
            if geom is not None:
                self.cache_hits += 1
                return stem, geom, []
        case, problems = read_case(folder, self.root)
        if case is None:
            return None, None, problems
        x, y = preprocess_case(case, self.shape, self.normalization)
        geom = CaseGeometry(
            case.case_id, case.grid, case.spacing, case.affine, y is not None, case.orientation
        )
        if stem is not None:
            try:
                _write_entry(stem, x, y, geom)
                return stem, geom, []
            except OSError as err:
                warnings.warn(
                    f"cannot write the cache entry {stem} ({err}); kept in memory", stacklevel=3
                )
        return {"x": x, "y": y}, geom, []

    # ------------------------------------------------------------------------ access

    @property
    def case_ids(self) -> list[str]:
        return [f.case_id for f in self._folders]

    def case_files(self, index: int) -> dict[str, Path]:
        """The source files of case ``index``: ``"ADC"`` ... ``"TTP"`` and ``"OT"`` -> path."""
        return {key: found[0] for key, found in self._folders[index].files.items() if found}

    def fingerprint(self, index: int) -> str:
        """:func:`case_fingerprint` of case ``index`` (file hashes remembered in the cache)."""
        return case_fingerprint(self.case_files(index), self._hashes.digest)

    def fingerprints(self) -> dict[str, str]:
        """Case id -> :meth:`fingerprint`, for every case."""
        found = {cid: self.fingerprint(i) for i, cid in enumerate(self.case_ids)}
        self._hashes.save()
        return found

    def geometry(self, index: int) -> CaseGeometry:
        """RAS grid, spacing, affine and the files' orientation of case ``index`` (no read)."""
        return self._geometry[index]

    def __len__(self) -> int:
        return len(self._entries)

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """-> (x float32 (6, D, H, W), y uint8 (D, H, W) or ``None``) as numpy."""
        entry = self._entries[index]
        if isinstance(entry, dict):
            return entry["x"], entry["y"]
        x = np.load(_entry_file(entry, "x"), allow_pickle=False)
        y_path = _entry_file(entry, "y")
        y = np.load(y_path, allow_pickle=False) if self._geometry[index].has_label else None
        return x, y

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        x, y = self.arrays(index)
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if y is None:
            yt = torch.full(xt.shape[1:], NO_LABEL, dtype=torch.int64)
        else:
            yt = torch.from_numpy(y.astype(np.int64))
        return xt, yt, self._folders[index].case_id

    def __repr__(self) -> str:
        return (
            f"CaseDataset({str(self.root)!r}, series {self.shape}, {self.normalization}, "
            f"{len(self)} cases, cache {self.cache_dir})"
        )
