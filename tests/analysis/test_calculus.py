"""Filter calculus: area, mean, P(A <= A_I), spread, sweet spot, and the paper's examples."""

from __future__ import annotations

import numpy as np
import pytest

from strokelrp.analysis.calculus import (
    area,
    first_alpha_at_fraction,
    integrate,
    mean_over_region,
    mu_matrix,
    probability_at_most,
    recovery_errors,
    spread,
    sweet_spot,
)
from strokelrp.errors import StrokeLRPError

# ------------------------------------------------------------------ measures on a 2x2x2 map


def two_channel_map() -> np.ndarray:
    r = np.zeros((2, 2, 2, 2))
    r[0].flat[:4] = [1, -2, 2, 1]  # N_abs: .5 -1 1 .5 (sum 1)
    r[1].flat[7] = -3.0  # N_abs: -1 at the last voxel
    return r


def test_area_whole_volume_and_region_with_voxel_volume() -> None:
    r = two_channel_map()
    # dw = 2 * 2 * 0.5 = 2 mm³
    np.testing.assert_allclose(area(r, spacing=(2, 2, 0.5)), [1 * 2, -1 * 2])
    region = np.zeros((2, 2, 2), dtype=bool)
    region.flat[:2] = True  # first two voxels: ch0 .5 - 1 = -.5; ch1 0
    np.testing.assert_allclose(area(r, region, spacing=(2, 2, 0.5)), [-1.0, 0.0])
    np.testing.assert_allclose(mean_over_region(r, region), [-0.25, 0.0])  # A / (2 voxels)


def test_mean_over_whole_volume_is_the_mean_normalised_signal() -> None:
    np.testing.assert_allclose(mean_over_region(two_channel_map()), [1 / 8, -1 / 8])


def test_mean_over_empty_region_is_nan() -> None:
    assert np.isnan(mean_over_region(two_channel_map(), np.zeros((2, 2, 2)))).all()


def test_region_shape_is_checked() -> None:
    with pytest.raises(StrokeLRPError, match="region"):
        area(two_channel_map(), np.ones((2, 2)))


def test_probability_at_most_ignores_undefined_values() -> None:
    assert probability_at_most([0.1, 0.5, np.nan, 0.3], 0.3) == pytest.approx(2 / 3)
    table = np.array([[0.1, 0.9], [0.4, 0.2], [np.nan, np.nan]])
    # column 0: 0.1 <= 0.2 yes, 0.4 no -> 1/2; column 1 with bound 1: both -> 1
    np.testing.assert_allclose(probability_at_most(table, [0.2, 1.0]), [0.5, 1.0])
    assert np.isnan(probability_at_most(np.array([[np.nan]]), 0.0)).all()


def test_spread_sd_and_iqr_hand_computed() -> None:
    v = np.array([[0.0, 5.0], [1.0, np.nan], [2.0, np.nan], [3.0, np.nan]])
    # column 0: population SD of 0..3 = sqrt(1.25); IQR with linear percentiles 2.25 - 0.75
    # column 1: a single valid value, nothing varies -> 0
    np.testing.assert_allclose(spread(v, "sd"), [np.sqrt(1.25), 0.0])
    np.testing.assert_allclose(spread(v, "iqr"), [1.5, 0.0])


def test_sweet_spot_reads_the_spread_curve() -> None:
    alphas = [0.4, 0.05, 0.2, 0.1]  # any order
    mu = np.array(
        [  # columns follow `alphas`
            [0.1, 0.0, 0.1, 0.0],
            [0.1, 0.1, 0.2, 0.3],
            [0.1, 0.2, 0.3, 0.6],
        ]
    )
    # SD per alpha: 0.05 -> 0.0816, 0.1 -> 0.2449, 0.2 -> 0.0816, 0.4 -> 0
    spot = sweet_spot(mu, alphas, fraction=0.5)  # threshold 0.1225: only 0.1
    assert spot.alphas == (0.05, 0.1, 0.2, 0.4)
    np.testing.assert_allclose(spot.spread, [0.08165, 0.24495, 0.08165, 0.0], atol=1e-5)
    assert spot.alpha0 == 0.1 and spot.peak_alpha == 0.1 and spot.n_points == 3
    assert sweet_spot(mu, alphas, fraction=0.3).alpha0 == 0.05  # threshold 0.0735


def test_sweet_spot_of_constant_data_is_undefined() -> None:
    spot = sweet_spot(np.ones((4, 2)), [0.1, 0.2])
    assert np.isnan(spot.alpha0) and np.isnan(spot.peak_alpha)
    with pytest.raises(StrokeLRPError, match="fraction"):
        first_alpha_at_fraction([0.1], [1.0], 0.0)


def test_mu_matrix_from_tidy_rows() -> None:
    rows = [
        {
            "run": "r",
            "case": "c1",
            "modality": "ADC",
            "kind": "raw",
            "a1": "",
            "a2": "",
            "mean_signal": "0.5",
        },
        {
            "run": "r",
            "case": "c1",
            "modality": "ADC",
            "kind": "pass",
            "a1": "0",
            "a2": "0.2",
            "mean_signal": "0.1",
        },
        {
            "run": "r",
            "case": "c1",
            "modality": "ADC",
            "kind": "pass",
            "a1": "0.2",
            "a2": "1",
            "mean_signal": "9",
        },  # a (a, 1) band: not on the (0, alpha) curve
        {
            "run": "r",
            "case": "c2",
            "modality": "ADC",
            "kind": "clamp",
            "a1": "0",
            "a2": "0.2",
            "mean_signal": "9",
        },
        {
            "run": "r",
            "case": "c2",
            "modality": "ADC",
            "kind": "raw",
            "a1": "",
            "a2": "",
            "mean_signal": "0.25",
        },
    ]
    mu, alphas, points = mu_matrix(rows, kind="pass")
    assert alphas == [0.2, 1.0]
    assert points == [("r", "c1", "ADC"), ("r", "c2", "ADC")]
    np.testing.assert_allclose(mu, [[0.1, 0.5], [np.nan, 0.25]])


# ------------------------------------------------------------ the paper's worked examples

N_CELLS = 20_000
H = 1.0 / N_CELLS
X = (np.arange(N_CELLS) + 0.5) * H  # identity on [0, 1] sampled at cell centres


def fixed_pass(f: np.ndarray, a1: float, a2: float) -> np.ndarray:
    """The paper's P_[a1, a2] with the fixed normaliser 1_W = 1: keep a1 <= |f| <= a2."""
    return np.where((np.abs(f) >= a1) & (np.abs(f) <= a2), f, 0.0)


@pytest.mark.parametrize("alpha", [0.05, 0.2, 0.4, 0.6, 1.0])
def test_worked_example_two_passes_on_identity_give_alpha_squared_over_two(alpha: float) -> None:
    # g_alpha = P_alpha g2 P_alpha g1 (x), g1 = g2 = identity. The midpoint rule misses at most
    # one cell at the jump x = alpha, so the error is below alpha * h + h² < h.
    g_alpha = fixed_pass(fixed_pass(X, 0, alpha), 0, alpha)
    a_alpha = integrate(g_alpha, H)
    assert a_alpha == pytest.approx(alpha**2 / 2, abs=H)
    # with A_I = alpha², P(A_alpha <= A_I) = 1 over any set of data points (here: 3 copies)
    assert probability_at_most(np.full(3, a_alpha), alpha**2) == 1.0


def test_worked_example_region_restricts_the_integral() -> None:
    g_alpha = fixed_pass(X, 0, 0.5)
    assert integrate(g_alpha, H, region=X <= 0.25) == pytest.approx(0.25**2 / 2, abs=H)


@pytest.mark.parametrize("alpha", [0.02, 0.05, 0.08, 0.1, 0.2, 0.3])
def test_second_example_band_pass_recovered_from_alpha0_up(alpha: float) -> None:
    # True explanation g = P_[0.1, 0.5](x). The filter family P_[alpha, 0.5]: for alpha >=
    # alpha_0 = 0.1 nothing spurious is kept (what is kept is correct); below it the band lets
    # through low-amplitude signal the true explanation does not have: ∫_alpha^0.1 x dx.
    truth = fixed_pass(X, 0.1, 0.5)
    spurious, missed = recovery_errors(fixed_pass(X, alpha, 0.5), truth, H)
    expected_spurious = max(0.0, (0.1**2 - alpha**2) / 2)
    expected_missed = max(0.0, (alpha**2 - 0.1**2) / 2)  # what a band above alpha_0 loses
    assert spurious == pytest.approx(expected_spurious, abs=H)
    assert missed == pytest.approx(expected_missed, abs=H)
    if alpha == 0.1:
        assert spurious == missed == 0.0  # exact recovery at the sweet spot


def test_second_example_sweet_spot_from_the_area_curve() -> None:
    # (0, alpha)-pass on the true explanation: A(alpha) = (min(alpha, .5)² - .01) / 2 from
    # alpha = 0.1 on, 0 below: information exists only from alpha_0 = 0.1 up.
    truth = fixed_pass(X, 0.1, 0.5)
    alphas = np.array([0.05, 0.08, 0.12, 0.2, 0.4, 0.6])
    curve = np.array([integrate(fixed_pass(truth, 0, a), H) for a in alphas])
    expected = [max(0.0, (min(a, 0.5) ** 2 - 0.01) / 2) for a in alphas]
    np.testing.assert_allclose(curve, expected, atol=H)
    assert first_alpha_at_fraction(alphas, curve, fraction=1e-3) == 0.12  # first grid alpha >= .1


@pytest.mark.parametrize("alpha", [0.2, 0.4, 0.6])
def test_engine_pass_filter_on_identity_once_and_twice(alpha: float) -> None:
    # strokelrp's PassFilter renormalises by the current max |f|: once on the identity it is
    # the paper's P_alpha (A = alpha² / 2); a second pass sees max alpha and keeps |x| <= alpha²,
    # so two renormalising passes give alpha⁴ / 2 (filters at every layer compound).
    import torch

    from strokelrp.lrp.filters import PassFilter

    identity = torch.from_numpy(X).reshape(1, 1, N_CELLS)  # (K, C, ...) = (1, 1, n)
    once = PassFilter(alpha)(identity)
    twice = PassFilter(alpha)(once)
    assert integrate(once.numpy(), H) == pytest.approx(alpha**2 / 2, abs=H)
    assert integrate(twice.numpy(), H) == pytest.approx(alpha**4 / 2, abs=H)


def test_per_channel_settings_keep_their_own_curve() -> None:
    """clamp:0,0.2 and clamp:0,0.2:channel in one grid: the sample-scope curve (and its sweet
    spot) is read from the sample-scope rows only, whichever comes last in the table."""
    from strokelrp.analysis.calculus import sweet_spots

    def row(case: str, kind: str, a2: str, setting: str, mu: float) -> dict[str, str]:
        a1 = "" if kind == "raw" else "0"
        return {"run": "r", "case": case, "modality": "ADC", "kind": kind, "a1": a1,
                "a2": a2 if kind != "raw" else "", "setting": setting,
                "mean_signal": str(mu)}  # fmt: skip

    rows = []
    for case, raw, sample, channel in (("c1", 0.1, 0.3, 0.9), ("c2", 0.2, 0.31, 0.05)):
        rows += [
            row(case, "raw", "", "raw", raw),
            row(case, "clamp", "0.2", "clamp(0,0.2)", sample),
            row(case, "clamp", "0.2", "clamp(0,0.2)/channel", channel),
        ]
    mu, alphas, _ = mu_matrix(rows, kind="clamp")
    assert alphas == [0.2, 1.0]
    np.testing.assert_allclose(mu, [[0.3, 0.1], [0.31, 0.2]])
    mu, alphas, _ = mu_matrix(rows, kind="clamp", scope="channel")
    np.testing.assert_allclose(mu, [[0.9, 0.1], [0.05, 0.2]])
    # sample scope: spread 0.005 at 0.2, 0.05 at 1 -> alpha_0 = 1 (by hand); the per-channel
    # values (spread 0.425 at 0.2) would give 0.2
    assert sweet_spots(rows) == {"clamp": 1.0}
    assert sweet_spots(list(reversed(rows))) == {"clamp": 1.0}
