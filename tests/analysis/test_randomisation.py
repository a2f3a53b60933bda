"""The randomisation read-outs against loop references and hand-computed cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from strokelrp.analysis.randomisation import (
    discrete_entropy,
    emprt,
    logit_change,
    normalise_p99,
    shell_spearman,
    shells,
    ssim,
)


def loop_ssim(a: np.ndarray, b: np.ndarray, w: int, data_range: float, mask=None) -> float:
    """SSIM written out: every window position that fits, explicit sums over its voxels."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for xc, yc in zip(a, b, strict=True):
        d, h, wd = xc.shape
        for i, j, k in itertools.product(range(d - w + 1), range(h - w + 1), range(wd - w + 1)):
            if mask is not None and not mask[i + w // 2, j + w // 2, k + w // 2]:
                continue
            xs = [
                float(xc[i + p, j + q, k + r]) for p in range(w) for q in range(w) for r in range(w)
            ]
            ys = [
                float(yc[i + p, j + q, k + r]) for p in range(w) for q in range(w) for r in range(w)
            ]
            n = len(xs)
            mx, my = sum(xs) / n, sum(ys) / n
            vx = sum((v - mx) ** 2 for v in xs) / n
            vy = sum((v - my) ** 2 for v in ys) / n
            cxy = sum((u - mx) * (v - my) for u, v in zip(xs, ys, strict=True)) / n
            values.append(
                ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
            )
    return sum(values) / len(values)


def test_ssim_matches_a_loop_and_is_one_on_itself() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 5, 6, 7))
    b = 0.6 * a + rng.normal(size=a.shape)
    for w in (3, 5):
        got = ssim(a, b, window=w, data_range=2.0)
        assert got == pytest.approx(loop_ssim(a, b, w, 2.0), rel=1e-9, abs=1e-12)
    mask = rng.random(a.shape[1:]) > 0.4
    got = ssim(a, b, window=3, data_range=2.0, mask=mask)
    assert got == pytest.approx(loop_ssim(a, b, 3, 2.0, mask), rel=1e-9, abs=1e-12)
    assert ssim(a, a, window=3) == pytest.approx(1.0, abs=1e-12)
    assert abs(ssim(a, rng.normal(size=a.shape), window=3)) < 0.1  # independent maps
    # a sign flip of zero-mean windows: luminance and structure terms both near -1, product
    # near +1 (why SSIM is read beside the signed correlation, docs/assess.md)
    assert ssim(a, -a, window=3) > 0.5


def test_normalise_p99_by_hand() -> None:
    r = np.arange(101, dtype=float).reshape(1, 101)  # |r| 0..100: the 99th percentile is 99
    got = normalise_p99(r)
    assert got[0, 99] == pytest.approx(1.0)
    assert got[0, 100] == 1.0  # clipped
    assert got[0, 33] == pytest.approx(33 / 99)
    assert not normalise_p99(np.zeros((1, 4))).any()


def test_shells_against_a_loop() -> None:
    target = np.zeros((4, 9, 10), bool)
    target[1, 2, 3] = target[2, 6, 7] = True
    got = shells(target, (0.0, 2.0, 4.0))
    points = np.argwhere(target)
    for idx in itertools.product(*(range(n) for n in target.shape)):
        d = min(math.dist(idx, p) for p in points)
        want = 0 if d == 0 else 1 if d <= 2 else 2 if d <= 4 else 3
        assert got[idx] == want, idx


def test_shell_spearman_is_the_size_weighted_mean_of_per_shell_spearman() -> None:
    rng = np.random.default_rng(1)
    target = np.zeros((5, 8, 8), bool)
    target[2, 3:5, 3:5] = True
    shell = shells(target, (0.0, 1.5, 3.0))
    mask = rng.random(target.shape) > 0.2
    a = rng.normal(size=(2, 5, 8, 8))
    b = a + rng.normal(size=a.shape)
    total = weight = 0.0
    for k in range(4):
        sel = mask & (shell == k)
        n = 2 * int(sel.sum())
        if n < 3:
            continue
        rho = spearmanr(a[:, sel].ravel(), b[:, sel].ravel())[0]
        total += rho * n
        weight += n
    assert shell_spearman(a, b, shell, mask) == pytest.approx(total / weight, rel=1e-10)
    # a map that is a function of the distance alone has nothing left inside a shell
    d = shell.astype(float)[None].repeat(2, 0)
    assert math.isnan(shell_spearman(d, d + 1.0, shell, mask))


def test_discrete_entropy_and_emprt_by_hand() -> None:
    two = np.array([0.0, 0.0, 1.0, 1.0])  # 4 bins over [0, 1]: counts 2, 0, 0, 2
    four = np.array([0.0, 1.0, 2.0, 3.0])  # one value per bin
    assert discrete_entropy(two, bins=4) == pytest.approx(math.log(2))
    assert discrete_entropy(four, bins=4) == pytest.approx(math.log(4))
    assert discrete_entropy(np.ones(5)) == 0.0
    assert emprt(two, four, bins=4) == pytest.approx(1.0)  # (2 ln 2 - ln 2) / ln 2
    assert emprt(four, four, bins=4) == 0.0
    assert math.isnan(emprt(np.ones(3), four, bins=4))


def test_logit_change_by_hand() -> None:
    assert logit_change(np.array([3.0, 4.0]), np.array([3.0, 4.5])) == pytest.approx(0.1)
    assert logit_change(np.zeros(2), np.zeros(2)) == 0.0
    assert logit_change(np.zeros(2), np.ones(2)) == math.inf
