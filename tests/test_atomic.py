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


def test_published_folder_moves_all_or_nothing(tmp_path) -> None:
    """Files written in the folder appear in the target together, an earlier run's files not
    rewritten go, other files stay; on an error the target is unchanged and nothing is left."""
    from strokelrp.atomic import published_folder

    target = tmp_path / "out"
    target.mkdir()
    for name, text in (("old_a.txt", "a"), ("keep.txt", "k"), ("mine.txt", "old")):
        (target / name).write_text(text)
    stale = [target / "old_a.txt", target / "mine.txt"]
    with pytest.raises(RuntimeError), published_folder(target, stale) as work:
        (work / "mine.txt").write_text("new")
        raise RuntimeError("half-way")
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt", "mine.txt", "old_a.txt"]
    assert (target / "mine.txt").read_text() == "old"
    with published_folder(target, stale, last="summary.json") as work:
        (work / "mine.txt").write_text("new")
        (work / "summary.json").write_text("{}")
        (work / "inputs").mkdir()  # a folder inside is not published
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt", "mine.txt", "summary.json"]
    assert (target / "mine.txt").read_text() == "new"
