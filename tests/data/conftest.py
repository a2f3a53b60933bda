"""Fixtures for the data tests: a tiny synthetic ISLES 2017 tree and helpers to break it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from strokelrp.data.synth import synthesize_isles2017

TINY_SHAPE = (32, 32, 8)  # H, W, D


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic cases (1, 2, 4, 5; case 5 uses the SMIR prefix), never modified."""
    out = tmp_path_factory.mktemp("tiny") / "isles"
    return synthesize_isles2017(out, 4, shape=TINY_SHAPE, seed=7)


@pytest.fixture
def tiny(tiny_source: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny tree that a test may break."""
    dst = tmp_path / "data"
    shutil.copytree(tiny_source, dst)
    return dst
