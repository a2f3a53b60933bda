"""The one device / process-group layer: device choice, a group of one, the main process."""

from __future__ import annotations

import pytest
import torch

from strokelrp.device import DistContext, init_distributed, is_main_process, resolve_device
from strokelrp.errors import StrokeLRPError


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(StrokeLRPError, match="auto, cpu, cuda or cuda:N, got 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        for choice in ("cuda", "cuda:1"):
            with pytest.raises(StrokeLRPError, match="no CUDA GPU"):
                resolve_device(choice)


def test_a_group_of_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = init_distributed("cpu")
    assert ctx == DistContext(0, 1, 0, torch.device("cpu"))
    assert ctx.is_main and not ctx.distributed
    rows = [{"a": 1}]
    assert ctx.gather(rows) == rows and ctx.gather(rows) is not rows
    assert ctx.share(("x", 2)) == ("x", 2)
    assert ctx.sum(torch.ones(2)).tolist() == [1.0, 1.0]
    ctx.barrier()  # a no-op alone


def test_is_main_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    assert is_main_process()
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()


def test_batched_layout_keeps_the_values_and_the_function() -> None:
    """A 5-D CPU batch comes back channels-last with equal values; the model computes the same
    logits on it (float64: rounding only) without its weights being touched."""
    from strokelrp.device import batched_layout
    from strokelrp.model import UNet3D

    torch.manual_seed(0)
    model = UNet3D(width=2).double().eval()
    x = torch.rand(3, 6, 4, 8, 8, dtype=torch.float64)
    fast = batched_layout(x)
    assert fast.is_contiguous(memory_format=torch.channels_last_3d)
    assert not x.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(fast, x)
    with torch.no_grad():
        a, b = model(x), model(fast)
    assert float((a - b).norm() / a.norm()) < 1e-12
    assert all(p.is_contiguous() for p in model.parameters())
    flat = torch.rand(3, 6, 8, 8)
    assert batched_layout(flat) is flat  # other ranks as they are
