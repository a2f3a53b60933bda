"""Amplitude filters against a slow element-by-element reference of REFERENCE section 4."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from strokelrp.errors import StrokeLRPError
from strokelrp.lrp.filters import (
    PAPER_GRID,
    ClampFilter,
    FilterBank,
    PassFilter,
    apply_filters,
    filter_label,
    parse_filter,
)


def slow(f: np.ndarray, kind: str, low: float, high: float) -> np.ndarray:
    """N * F[f / N] elementwise, N = max |f| (f already the block a norm is taken over)."""
    n = max(abs(float(v)) for v in f.ravel())
    out = np.zeros_like(f)
    if n == 0:
        return out
    for idx in np.ndindex(*f.shape):
        f1 = float(f[idx]) / n
        if kind == "pass":
            g = f1 if low <= abs(f1) <= high else 0.0
        elif f1 == 0:
            g = 0.0
        else:
            g = math.copysign(min(max(abs(f1), low), high), f1)
        out[idx] = n * g
    return out


def slow_filter(r: np.ndarray, f) -> np.ndarray:
    if f is None:
        return r.copy()
    out = np.empty_like(r)
    for k in range(r.shape[0]):
        if f.scope == "sample":
            out[k] = slow(r[k], f.kind, f.low, f.high)
        else:
            for c in range(r.shape[1]):
                out[k, c] = slow(r[k, c], f.kind, f.low, f.high)
    return out


SETTINGS = [
    *PAPER_GRID,
    PassFilter((0.2, 0.7)),
    ClampFilter((0.1, 0.5)),
    ClampFilter((0.3, 1.0)),
    PassFilter(0.3, scope="channel"),
    ClampFilter((0.05, 0.4), scope="channel"),
]


def test_each_setting_matches_the_slow_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(len(SETTINGS), 3, 2, 3, 4, generator=gen, dtype=torch.float64) ** 3
    r[0, 1] = 0.0  # a zero channel inside a sample
    got = apply_filters(r, SETTINGS)
    want = np.stack([slow_filter(r[k : k + 1].numpy(), f)[0] for k, f in enumerate(SETTINGS)])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-15)
    assert not torch.equal(got, r)  # filters changed something


def test_non_contiguous_groups_and_the_single_filter_call() -> None:
    settings_ = [PassFilter(0.4), None, ClampFilter(0.2), PassFilter((0.1, 1.0)), None]
    gen = torch.Generator().manual_seed(1)
    r = torch.randn(5, 2, 3, 3, 3, generator=gen, dtype=torch.float64)
    got = apply_filters(r, settings_)
    for k, f in enumerate(settings_):
        want = slow_filter(r[k : k + 1].numpy(), f)
        np.testing.assert_allclose(got[k : k + 1].numpy(), want, rtol=1e-12, atol=1e-15)
        if f is not None:
            torch.testing.assert_close(f(r[k : k + 1]), got[k : k + 1])
    torch.testing.assert_close(got[1], r[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_band_edges_are_exact(dtype: torch.dtype, channels_last: bool) -> None:
    """N = 1 and bands on binary fractions (0.25, 0.5): a value on a bound is inside the
    band, the next representable value beyond it is outside, for every kind of band."""
    up = torch.nextafter(torch.tensor(0.5, dtype=dtype), torch.tensor(1.0, dtype=dtype))
    down = torch.nextafter(torch.tensor(0.25, dtype=dtype), torch.tensor(0.0, dtype=dtype))
    u, d = float(up), float(down)
    values = torch.tensor([1.0, -0.5, 0.5, u, -u, 0.25, -0.25, d], dtype=dtype)
    f = values.view(1, 2, 2, 2, 1).expand(5, 2, 2, 2, 1).clone()  # (5, C=2, ...)
    if channels_last:
        f = f.contiguous(memory_format=torch.channels_last_3d)
    bank = [PassFilter(0.5), PassFilter((0.25, 1.0)), PassFilter((0.25, 0.5)),
            ClampFilter(0.5), ClampFilter((0.25, 1.0))]  # fmt: skip
    got = FilterBank(bank).apply_(f).flatten(1)
    want = torch.tensor(
        [
            [0.0, -0.5, 0.5, 0.0, 0.0, 0.25, -0.25, d],  # |f| <= 0.5
            [1.0, -0.5, 0.5, u, -u, 0.25, -0.25, 0.0],  # |f| >= 0.25
            [0.0, -0.5, 0.5, 0.0, 0.0, 0.25, -0.25, 0.0],  # both
            [0.5, -0.5, 0.5, 0.5, -0.5, 0.25, -0.25, d],  # clamped to 0.5
            [1.0, -0.5, 0.5, u, -u, 0.25, -0.25, 0.25],  # raised to 0.25
        ],
        dtype=dtype,
    )
    assert torch.equal(got, want), (got, want)


@pytest.mark.parametrize("layout", ["channels_last", "permuted", "strided"])
def test_every_memory_layout_matches_the_slow_reference(layout: str) -> None:
    """The walk hands the filters channels-last batches (flattened in memory order) and may
    hand them other views (filtered as they are): same values as the reference for each."""
    gen = torch.Generator().manual_seed(2)
    r = torch.randn(len(SETTINGS), 3, 2, 3, 4, generator=gen, dtype=torch.float64) ** 3
    if layout == "channels_last":
        given = r.contiguous(memory_format=torch.channels_last_3d)
    elif layout == "permuted":  # dense in memory, in no standard order
        given = r.permute(0, 3, 1, 4, 2).contiguous().permute(0, 2, 4, 1, 3)
    else:  # every other element of a larger tensor: not dense
        big = torch.zeros(len(SETTINGS), 3, 2, 3, 8, dtype=torch.float64)
        big[..., ::2] = r
        given = big[..., ::2]
    assert torch.equal(given, r) and given.stride() != r.stride()
    got = FilterBank(SETTINGS).apply_(given)
    assert got.data_ptr() == given.data_ptr()  # in place
    want = np.stack([slow_filter(r[k : k + 1].numpy(), f)[0] for k, f in enumerate(SETTINGS)])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("f", [PassFilter(0.4), ClampFilter((0.2, 0.6)), PassFilter((0.1, 1))])
def test_all_zero_stays_zero_without_nan(f) -> None:
    r = torch.zeros(2, 3, 2, 2, 2)
    out = f(r)
    assert torch.equal(out, r)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    alpha=st.floats(0.01, 1.0),
    scope=st.sampled_from(["sample", "channel"]),
)
def test_filter_invariants(seed: int, alpha: float, scope: str) -> None:
    gen = torch.Generator().manual_seed(seed)
    r = torch.randn(2, 3, 3, 3, 3, generator=gen, dtype=torch.float64)
    dims = (1, 2, 3, 4) if scope == "sample" else (2, 3, 4)
    norm = r.abs().amax(dims, keepdim=True)
    p = PassFilter(alpha, scope=scope)(r)
    assert torch.all((p == 0) | (p == r))  # pass keeps or zeroes, never changes a value
    assert torch.all(p.abs() <= alpha * norm * (1 + 1e-12))
    c = ClampFilter(alpha, scope=scope)(r)
    assert torch.all(c.abs() <= alpha * norm * (1 + 1e-12))
    assert torch.all(torch.sign(c) == torch.sign(r))
    small = r.abs() <= alpha * norm * (1 - 1e-12)
    torch.testing.assert_close(c[small], r[small])  # clamp leaves the band alone
    # positive scaling and sign flips commute with both filters (N is taken from the input)
    torch.testing.assert_close(PassFilter(alpha, scope=scope)(3.0 * r), 3.0 * p)
    torch.testing.assert_close(ClampFilter(alpha, scope=scope)(-0.5 * r), -0.5 * c)


def test_paper_grid_has_the_16_settings_in_order() -> None:
    labels = [filter_label(f) for f in PAPER_GRID]
    assert len(labels) == 16
    assert labels[:3] == ["raw", "pass(0,0.05)", "pass(0,0.1)"]
    assert labels[6] == "pass(0.05,1)" and labels[11] == "clamp(0,0.05)"
    assert labels[-1] == "clamp(0,0.6)"
    assert len(set(labels)) == 16


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("raw", None),
        ("pass:0.4", PassFilter(0.4)),
        ("pass:0,0.4", PassFilter((0, 0.4))),
        ("clamp:0.2", ClampFilter(0.2)),
        ("clamp:0.1,0.5:channel", ClampFilter((0.1, 0.5), scope="channel")),
        ("pass(0.05,1)", PassFilter((0.05, 1.0))),
        ("clamp(0,0.2)/channel", ClampFilter(0.2, scope="channel")),
    ],
)
def test_parse_filter(text: str, want) -> None:
    assert parse_filter(text) == want


def test_labels_parse_back() -> None:
    for f in [*PAPER_GRID, PassFilter((0.2, 0.7), scope="channel")]:
        assert parse_filter(filter_label(f)) == f
    assert PassFilter(0.4) == PassFilter((0.0, 0.4))
    assert PassFilter(0.4) != ClampFilter(0.4)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PassFilter(0.0), r"\(0, 1\]"),
        (lambda: PassFilter(1.5), r"\(0, 1\]"),
        (lambda: ClampFilter((0.5, 0.2)), r"\(0.5, 0.2\) are swapped.* clamp:0.2,0.5"),
        (lambda: parse_filter("pass:1,0"), r"\(1, 0\) are swapped.* pass:0,1"),
        (lambda: PassFilter((0.3, 0.3)), "a1 < a2"),
        (lambda: ClampFilter((-0.1, 0.2)), "a1 < a2"),
        (lambda: PassFilter((0.1, 0.2, 0.3)), "two values"),
        (lambda: PassFilter(float("nan")), "finite"),
        (lambda: PassFilter(0.4, scope="voxel"), "scope"),
        (lambda: parse_filter("band:0.4"), "cannot read filter 'band:0.4'"),
        (lambda: parse_filter("pass:x"), "not numbers"),
        (lambda: parse_filter("pass:0,0.2,0.4"), "one value or two"),
        (lambda: FilterBank([0.4]), "not a filter"),
        (lambda: apply_filters(torch.zeros(2, 1, 1), [None]), "1 filter settings"),
    ],
)
def test_bad_filters_raise_clear_errors(make, message: str) -> None:
    with pytest.raises(StrokeLRPError, match=message):
        make()
