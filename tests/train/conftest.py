"""Fixtures of the training tests: one thread, a private cache, tiny synthetic data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from strokelrp.data.synth import synthesize_isles2017


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks run faster on one thread, and the CPU is shared: restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the preprocessed-case cache out of ~/.cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("STROKELRP_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="session")
def synth4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 synthetic cases of 16x16x8 (H W D) in the ISLES 2017 layout."""
    return synthesize_isles2017(tmp_path_factory.mktemp("synth4") / "data", 4, shape=(16, 16, 8))
