"""The run folder's file names: one module, distinct names, network folders found by the glob."""

from __future__ import annotations

from pathlib import Path

from strokelrp import run_files


def test_names_are_distinct_and_network_folders_match_the_glob(tmp_path: Path) -> None:
    names = [
        run_files.CONFIG, run_files.SPLIT, run_files.TRAIN_LOG, run_files.CHECKPOINTS,
        run_files.METRICS, run_files.TABLE1, str(run_files.SWEEP_TABLE), run_files.EXPLANATIONS,
        run_files.REPORT, run_files.FIGURES,
    ]  # fmt: skip
    assert len(set(names)) == len(names)
    for k in (1, 2, 10):
        run_files.network_dir(tmp_path, k).mkdir()
    found = sorted(p.name for p in tmp_path.glob(run_files.NETWORK_GLOB))
    assert found == ["net-1", "net-10", "net-2"]
    assert run_files.network_dir(tmp_path, 3) == tmp_path / "net-3"
