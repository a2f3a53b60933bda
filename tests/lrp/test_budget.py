"""Memory budgets: parsing, chunk plans, and maps that do not depend on the chunking."""

from __future__ import annotations

import math

import pytest
import torch

from strokelrp.errors import StrokeLRPError
from strokelrp.lrp import budget as bud
from strokelrp.lrp import engine
from strokelrp.lrp.engine import explain
from strokelrp.lrp.filters import PAPER_GRID, ClampFilter, PassFilter
from strokelrp.model import UNet3D

F64 = torch.float64


def trained_looking(width: int, seed: int, dtype: torch.dtype = F64) -> UNet3D:
    """A U-Net with random weights, biases and BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = UNet3D(width=width)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.to(dtype).eval()


def lesion_target(model: UNet3D, x: torch.Tensor) -> torch.Tensor:
    """Starting relevance: the lesion logit on a random 30 % of the voxels."""
    with torch.no_grad():
        out = model(x)
    mask = torch.rand(out.shape[2:], generator=torch.Generator().manual_seed(5)) < 0.3
    start = torch.zeros_like(out)
    start[:, 1] = out[:, 1] * mask
    return start


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GB", 4e9),
        ("4 gb", 4e9),
        ("512MiB", 512 * 2**20),
        ("1.5GiB", 1.5 * 2**30),
        ("2000000", 2e6),
        ("3e9", 3e9),
        ("100k", 1e5),
        (123456, 123456.0),
        ("unlimited", math.inf),
        ("Unlimited", math.inf),
    ],
)
def test_parse_bytes(text: str | int, expected: float) -> None:
    assert bud.parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "4XB", "GB", "-1GB", "0", "four", True, "1..2GB"])
def test_parse_bytes_refuses_what_is_not_a_size(text: object) -> None:
    with pytest.raises(StrokeLRPError, match="memory budget"):
        bud.parse_bytes(text)  # type: ignore[arg-type]


def test_default_budget_is_half_the_available_memory_at_most_8gb() -> None:
    with open("/proc/meminfo") as f:
        avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))
    got = bud.default_budget("cpu")
    assert 0 < got <= 8 * 10**9
    # memory moves between the two reads: compare with a tolerance of 5 % of the available
    assert abs(got - min(8 * 10**9, avail // 2)) <= 0.05 * avail


@pytest.mark.parametrize(
    ("k", "per", "shared", "budget", "sizes"),
    [
        (16, 10, 0, math.inf, [16]),
        (16, 10, 0, 160, [16]),
        (16, 10, 0, 159, [8, 8]),  # room for 15: two walks, as even as possible
        (16, 10, 50, 160, [8, 8]),  # room for (160 - 50) / 10 = 11: two walks of 8
        (16, 10, 0, 5, [1] * 16),  # not even one fits: one at a time
        (3, 10, 0, 25, [2, 1]),
        (1, 10, 0, 1, [1]),
    ],
)
def test_plan_chunks(k: int, per: int, shared: int, budget: float, sizes: list[int]) -> None:
    chunks = bud.plan_chunks(k, [(shared, per)], budget)
    assert [len(c) for c in chunks] == sizes
    assert [i for c in chunks for i in c] == list(range(k))  # consecutive, each once


def test_plan_caches_denominators_when_it_costs_at_most_one_more_walk() -> None:
    one = bud.plan(16, [(0, 10)], 1000, math.inf)
    assert one.sizes == [16] and not one.cache  # one walk: nothing to cache
    roomy = bud.plan(16, [(0, 10)], 20, 100)  # 10 per walk -> 2 walks; with the cache 8 -> 2
    assert roomy.sizes == [8, 8] and roomy.cache and roomy.fits
    one_more = bud.plan(16, [(0, 10)], 30, 100)  # with the cache 7 per walk -> 3 walks
    assert one_more.sizes == [6, 5, 5] and one_more.cache and one_more.fits
    tight = bud.plan(16, [(0, 10)], 50, 100)  # with the cache 5 per walk -> 4 walks: no cache
    assert tight.sizes == [8, 8] and not tight.cache
    assert "2 walks of 8" in tight.describe()


# ----------------------------------------------------------- the engine under a budget


def _force(monkeypatch: pytest.MonkeyPatch, size: int, cache: bool) -> None:
    """Make the engine walk ``size`` settings at a time, caching the denominators or not,
    whatever the budget (the planner is tested on its own above)."""

    def forced(k: int, needs: list[bud.Need], cached: int, budget: float) -> bud.MemoryPlan:
        chunks = tuple(range(i, min(i + size, k)) for i in range(0, k, size))
        return bud.MemoryPlan(budget, tuple(needs), cached, chunks, cache and len(chunks) > 1)

    monkeypatch.setattr(engine, "plan", forced)


ALL_CHUNKINGS = ((1, False), (2, True), (3, False), (3, True), (7, False))


@pytest.mark.parametrize(
    ("rules", "chunkings"), [("paper", ALL_CHUNKINGS), ("recommended", ((2, True), (3, False)))]
)
def test_maps_do_not_depend_on_the_chunking(
    rules: str, chunkings: tuple[tuple[int, bool], ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 1, 2, 3 and all K = 7 settings, with and without cached denominators, give the
    same maps, kept layers and conservation sums (float64: identical up to 1e-12)."""
    model = trained_looking(2, 11)
    x = torch.rand(1, 6, 4, 6, 6, dtype=F64)
    start = lesion_target(model, x)
    settings = [*PAPER_GRID[:5], ClampFilter((0.05, 0.3), scope="channel"), PassFilter(0.3)]
    kw = {"target": start, "rules": rules, "filters": settings, "keep_layers": True}
    whole = explain(model, x, memory_budget="unlimited", **kw)
    assert whole.memory is not None and whole.memory.sizes == [len(settings)]
    scale = float(whole.relevance.abs().max())
    for size, cache in chunkings:
        _force(monkeypatch, size, cache)
        got = explain(model, x, **kw)
        assert got.memory is not None and max(got.memory.sizes) == size
        assert got.memory.cache == (cache and size < len(settings))
        assert float((got.relevance - whole.relevance).abs().max()) <= 1e-12 * scale
        assert got.relevance.is_contiguous()
        assert list(got.layers) == list(whole.layers)
        for name, layer in whole.layers.items():
            err = float((got.layers[name] - layer).abs().max())
            assert err <= 1e-12 * float(layer.abs().max()), name
        torch.testing.assert_close(
            got.conservation.sums, whole.conservation.sums, rtol=1e-12, atol=0
        )
        torch.testing.assert_close(
            got.conservation.totals, whole.conservation.totals, rtol=1e-12, atol=1e-300
        )
        assert got.conservation.points == whole.conservation.points


def test_float32_chunks_match_one_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """float32 on the CPU (oneDNN, channels-last batches, cached denominators laid out for
    them): chunked maps equal one walk up to rounding (relative L2 error)."""
    model = trained_looking(3, 12, dtype=torch.float32)
    x = torch.rand(1, 6, 7, 12, 12)
    start = lesion_target(model, x)
    settings = [None, ClampFilter(0.2), ClampFilter((0.05, 0.5), scope="channel"), None]
    whole = explain(model, x, target=start, filters=settings, memory_budget="unlimited")
    for size in (1, 2):
        _force(monkeypatch, size, True)
        got = explain(model, x, target=start, filters=settings)
        rel = float((got.relevance - whole.relevance).norm() / whole.relevance.norm())
        assert rel <= 1e-5


def test_a_budget_below_one_setting_walks_one_at_a_time_and_says_so() -> None:
    model = trained_looking(2, 13)
    x = torch.rand(1, 6, 5, 8, 8, dtype=F64)
    start = lesion_target(model, x)
    with pytest.warns(RuntimeWarning, match="below the estimated need"):
        exp = explain(model, x, target=start, filters=PAPER_GRID[:3], memory_budget=1000)
    assert exp.memory is not None and exp.memory.sizes == [1, 1, 1]
    assert any("below the estimated need" in n for n in exp.notes)
    ref = explain(model, x, target=start, filters=PAPER_GRID[:3], memory_budget="unlimited")
    assert float((exp.relevance - ref.relevance).abs().max()) <= 1e-12 * float(
        ref.relevance.abs().max()
    )


def test_estimate_covers_the_largest_relevance_tensors() -> None:
    """Independent floor for the per-setting estimate: the walk holds at least the relevance
    at the widest convolution input (dec1.conv1: cat of 2w + 4w channels at full size) and the
    relevance waiting on the first skip connection (enc1.act2: 2w channels) together."""
    w, shape = 2, (5, 8, 8)
    model = trained_looking(w, 14)
    x = torch.rand(1, 6, *shape, dtype=F64)
    exp = explain(model, x, target=lesion_target(model, x), filters=PAPER_GRID[:2])
    assert exp.memory is not None
    voxels = math.prod(shape)
    floor = (6 * w + 2 * w) * voxels * 8  # float64
    assert exp.memory.per_setting >= floor
    assert exp.memory.per_setting <= 10 * floor  # and not absurdly pessimistic


def test_chunks_fit_every_moment_of_the_walk() -> None:
    """Each need is a moment: shared + k * per_setting must fit at all of them at once."""
    needs = [(60, 5), (0, 20), (90, 1)]  # k <= 8, k <= 5, k <= 10 under 100 bytes
    assert bud.chunk_size(16, needs, 100) == 5
    chunks = bud.plan_chunks(16, needs, 100)
    assert [len(c) for c in chunks] == [4, 4, 4, 4]
    p = bud.plan(16, needs, 0, 100)
    assert p.estimate == max(60 + 4 * 5, 4 * 20, 90 + 4) and p.fits
    assert p.per_setting == 20 and p.peak(16) == 320


def test_plan_memory_is_the_plan_explain_follows() -> None:
    """plan_memory (what the benchmark prints) gives the chunks and needs explain then walks,
    for a budget that forces several chunks."""
    model = trained_looking(2, 15)
    x = torch.rand(1, 6, 5, 8, 8, dtype=F64)
    one = engine.plan_memory(model, x, 16, "paper", memory_budget="unlimited")
    budget = one.peak(3) + 1  # room for three settings without the cache
    planned = engine.plan_memory(model, x, 16, "paper", memory_budget=budget)
    exp = explain(
        model, x, target="authors", rules="paper", filters=PAPER_GRID, memory_budget=budget
    )
    assert exp.memory == planned
    assert len(planned.chunks) > 1 and max(planned.sizes) <= 3
