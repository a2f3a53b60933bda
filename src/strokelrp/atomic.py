"""Atomic file writes: readers see the old file or the whole new one, never half of it.

Everything strokelrp writes (NIfTI, checkpoints, CSV tables, figures, HTML) goes through a
temporary file in the target's folder, is flushed to disk, and is renamed over the target.
The file gets the usual permissions (0666 less the umask; ``mkstemp`` alone would give 0600).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    For writers that want a file name (``nibabel.save``, ``savefig``): give the ``suffix``
    they use to pick the format (``.nii.gz``, ``.png``). On an exception the temporary file is
    removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[IO[Any]], None], mode: str = "w") -> Path:
    """Write ``path`` through ``write(fh)`` on a temporary file opened with ``mode``."""
    kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        write(fh)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    return atomic_write(path, lambda fh: fh.write(data), mode="wb")


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    return atomic_write(path, lambda fh: fh.write(text))


def write_json(path: str | Path, payload: Any, indent: int = 2) -> Path:
    """``payload`` as indented JSON text (one trailing newline), written atomically."""
    import json

    return write_text(path, json.dumps(payload, indent=indent) + "\n")


@contextmanager
def published_folder(
    target: str | Path, stale: Iterable[Path] = (), last: str | None = None
) -> Iterator[Path]:
    """Write a set of files as one: yield a new hidden folder inside ``target`` to write them
    into; when the block ends without error, every file at the folder's top level is moved
    into ``target`` by rename (``last``, e.g. the summary naming the others, moved last) and
    then the ``stale`` files (an earlier run's outputs) that were not replaced are removed.
    The folder goes in any case; on an error ``target`` keeps what it held."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".strokelrp-", dir=target))
    try:
        yield work
        new = sorted((p for p in work.iterdir() if p.is_file()), key=lambda p: p.name == last)
        for path in new:
            os.replace(path, target / path.name)
        names = {p.name for p in new}
        for path in stale:
            if Path(path).parent == target and Path(path).name not in names:
                Path(path).unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
