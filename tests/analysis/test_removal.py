"""The removal fills against independent references: a dense solve written with loops."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from strokelrp.analysis.removal import healthy_mean, linear_imputation, removal_fill
from strokelrp.errors import StrokeLRPError


def dense_imputation(v: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Each removed element = the mean of its face neighbours on the grid, all at once: an
    explicit dense matrix over the removed elements, filled with loops, solved by numpy."""
    cells = [tuple(i) for i in np.argwhere(removed)]
    index = {c: k for k, c in enumerate(cells)}
    a = np.zeros((len(cells), len(cells)))
    rhs = np.zeros(len(cells))
    for k, c in enumerate(cells):
        for axis, step in itertools.product(range(v.ndim), (-1, 1)):
            n = list(c)
            n[axis] += step
            if not 0 <= n[axis] < v.shape[axis]:
                continue
            a[k, k] += 1
            if tuple(n) in index:
                a[k, index[tuple(n)]] -= 1
            else:
                rhs[k] += v[tuple(n)]
    out = v.astype(float).copy()
    for c, value in zip(cells, np.linalg.solve(a, rhs), strict=True):
        out[c] = value
    return out


def test_imputation_solves_the_neighbour_equations_jointly() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 5))
    removed = rng.random((2, 3, 4, 5)) < 0.4
    removed[:, 0, 0, 0] = False  # every component keeps a kept neighbour here (checked below)
    got = linear_imputation(x, removed, noise=0.0)
    for c in range(2):
        np.testing.assert_allclose(got[c], dense_imputation(x[c], removed[c]), atol=1e-10)
    np.testing.assert_array_equal(got[~removed], x[~removed])  # kept elements untouched


def test_imputation_recovers_a_linear_field_and_adds_seeded_noise() -> None:
    i, j, k = np.meshgrid(range(5), range(6), range(7), indexing="ij")
    x = (2.0 * i - 3.0 * j + 0.5 * k)[None]  # harmonic: its neighbour means are exact
    removed = np.zeros_like(x, bool)
    removed[0, 1:4, 2:5, 1:6] = True
    np.testing.assert_allclose(linear_imputation(x, removed, noise=0.0), x, atol=1e-10)
    noisy = linear_imputation(x, removed, noise=0.01, seed=3)
    assert np.array_equal(noisy, linear_imputation(x, removed, noise=0.01, seed=3))
    scale = (noisy - x)[removed].std() / x.std()
    assert 0.005 < scale < 0.02  # noise of 1 % of the channel's standard deviation
    # one kept element: the Laplace solution is constant, its value
    whole = np.ones_like(x, bool)
    whole[0, 0, 0, 0] = False
    np.testing.assert_allclose(linear_imputation(x, whole, noise=0.0), x[0, 0, 0, 0])
    # nothing kept in a channel: no boundary value, the channel becomes 0
    assert not linear_imputation(x, np.ones_like(x, bool), noise=0.0).any()


def test_healthy_mean_and_fills_by_hand() -> None:
    x = np.zeros((1, 1, 1, 8))
    x[0, 0, 0] = [0, 10, 1, 2, 3, 4, 5, 0]
    brain = np.zeros((1, 1, 8), bool)
    brain[..., 1:7] = True
    target = np.zeros((1, 1, 8), bool)
    target[..., 1] = True  # grown by 2: columns 0..3; healthy: 4, 5, 6
    assert healthy_mean(x, brain, target)[0] == pytest.approx(4.0)
    removed = np.zeros_like(x, bool)
    removed[..., 1] = True
    assert removal_fill("healthy", x, removed, brain, target)[0, 0, 0, 1] == pytest.approx(4.0)
    assert removal_fill("zero", x, removed)[0, 0, 0, 1] == 0.0
    assert removal_fill("mean", x, removed)[0, 0, 0, 1] == pytest.approx(x.mean())
    with pytest.raises(StrokeLRPError, match="removal must be one of"):
        removal_fill("blur", x, removed)
