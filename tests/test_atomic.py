"""Atomic writes: all or nothing, usual permissions, no temporary files left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from strokelrp.atomic import atomic_path, atomic_write, write_bytes, write_json, write_text


def test_write_text_replaces_and_gives_usual_permissions(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "table.csv"
    write_text(target, "a\n")
    write_text(target, "b\n")
    assert target.read_text() == "b\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]


def test_a_failing_writer_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    write_bytes(target, b"old")

    def half_then_fail(fh) -> None:  # type: ignore[no-untyped-def]
        fh.write(b"ne")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(target, half_then_fail, mode="wb")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_atomic_path_keeps_the_suffix_writers_need(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "map.nii.gz", ".nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "map.nii.gz").read_bytes() == b"x"


def test_write_json_round_trips_with_one_trailing_newline(tmp_path: Path) -> None:
    import json

    payload = {"dice": 1.0, "notes": ["a"], "nested": {"n": None}}
    path = write_json(tmp_path / "x.json", payload)
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == payload and text.endswith("}\n") and not text.endswith("\n\n")
    assert text.startswith('{\n  "dice"')  # indented by 2
