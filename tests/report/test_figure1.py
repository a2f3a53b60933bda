"""Figure 1: slice choice, per-channel normalisation, and a PNG written from tiny arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from strokelrp.data.layouts.isles2017 import CHANNELS as MODALITIES
from strokelrp.report.figure1 import (
    default_slice,
    largest_area_slice,
    normalise_per_channel,
    plot_figure1,
)


def test_largest_area_slice() -> None:
    mask = np.zeros((5, 4, 4), dtype=np.uint8)
    mask[1, :2, :2] = 1  # area 4
    mask[3, :3, :3] = 1  # area 9
    assert largest_area_slice(mask) == 3
    assert largest_area_slice(np.zeros((5, 4, 4))) is None


def test_default_slice_prefers_truth_then_prediction_then_middle() -> None:
    truth = np.zeros((5, 4, 4), bool)
    truth[1, 0, 0] = True
    pred = np.zeros((5, 4, 4), bool)
    pred[4] = True
    assert default_slice(truth, pred, 5) == 1
    assert default_slice(np.zeros_like(truth), pred, 5) == 4
    assert default_slice(None, np.zeros_like(pred), 5) == 2


def test_normalise_per_channel() -> None:
    r = np.zeros((3, 1, 2, 2), dtype=np.float32)
    r[0, 0, 0, 0], r[0, 0, 1, 1] = 4.0, -2.0
    r[1, 0, 0, 1] = -8.0
    normed, peaks = normalise_per_channel(r)
    np.testing.assert_allclose(peaks, [4.0, 8.0, 0.0])
    assert normed[0, 0, 0, 0] == 1.0 and normed[0, 0, 1, 1] == -0.5
    assert normed[1, 0, 0, 1] == -1.0
    assert not np.any(np.isnan(normed)) and not normed[2].any()


def _inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = rng.random((6, 5, 8, 10)).astype(np.float32)
    truth = np.zeros((5, 8, 10), np.uint8)
    truth[2, 2:6, 3:7] = 1
    pred = np.zeros_like(truth)
    pred[2, 3:6, 3:8] = 1
    return image, truth, pred


def test_figure_is_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image, truth, pred = _inputs(rng)
    maps = [(name, rng.normal(size=image.shape)) for name in ("raw", "pass (0, 0.4)", "clamp")]
    out = plot_figure1(
        tmp_path / "figs" / "figure1.png",
        maps,
        image,
        pred,
        label=truth,
        spacing=(0.9, 0.9, 6.5),
        case_id="training_4",
        dice=0.5,
    )
    assert out.exists()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < out.stat().st_size < 2_000_000
    assert [p.name for p in out.parent.iterdir()] == ["figure1.png"]  # no temporary files


def test_figure_panels_show_the_given_data(tmp_path: Path, monkeypatch) -> None:
    """The drawn panels against the inputs: each relevance panel is the shown channel's slice
    divided by its max |R_c| (computed here independently), N in its title is that maximum,
    the truth / prediction panels are the masks' slice, the Dice is in the title. Values are
    compared sorted, so the comparison holds whatever the display orientation."""
    import strokelrp.report.figure1 as figure1_module

    captured = []
    save = figure1_module._save_png_atomic

    def keep(fig, path, dpi):
        captured.append(fig)
        return save(fig, path, dpi)

    monkeypatch.setattr(figure1_module, "_save_png_atomic", keep)
    rng = np.random.default_rng(3)
    image, truth, pred = _inputs(rng)
    maps = [(name, rng.normal(size=image.shape)) for name in ("raw", "clamp(0,0.2)")]
    plot_figure1(
        tmp_path / "f.png",
        maps,
        image,
        pred,
        label=truth,
        dice=0.25,
        modality="ADC",
        channels=MODALITIES,
    )
    (fig,) = captured
    axes = {ax.get_title().split("\n")[0]: ax for ax in fig.axes if ax.get_title()}
    z = 2  # the truth's largest slice
    channel = MODALITIES.index("ADC")

    def shown(title_start: str) -> np.ndarray:
        (ax,) = [a for t, a in axes.items() if t.startswith(title_start)]
        return np.sort(np.asarray(ax.get_images()[0].get_array(), dtype=float).ravel())

    for letter, (name, rel) in zip("AB", maps, strict=True):
        peak = np.abs(rel[channel]).max()
        np.testing.assert_allclose(
            shown(f"({letter}) {name}"), np.sort((rel[channel, z] / peak).ravel()), rtol=1e-5
        )
        (title,) = [ax.get_title() for ax in fig.axes if ax.get_title().startswith(f"({letter})")]
        assert f"N = max|R_c| = {peak:.4g}" in title
    assert np.array_equal(shown("(C) ground truth"), np.sort(truth[z].ravel()))
    assert np.array_equal(shown("(D) prediction, Dice 0.250"), np.sort(pred[z].ravel()))
    np.testing.assert_allclose(shown("(E) ADC"), np.sort(image[channel, z].ravel()), rtol=1e-6)


def test_figure_without_truth_and_with_one_setting(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    image, _, pred = _inputs(rng)
    out = plot_figure1(tmp_path / "f.png", [("raw", np.zeros(image.shape))], image, pred)
    assert out.exists() and out.stat().st_size > 5_000


def test_figure_rejects_bad_input(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    image, _, pred = _inputs(rng)
    maps = [("raw", rng.normal(size=image.shape))]
    with pytest.raises(ValueError, match="channel 'T1' is not one of the data's channels"):
        plot_figure1(tmp_path / "f.png", maps, image, pred, modality="T1", channels=MODALITIES)
    with pytest.raises(ValueError, match="slice"):
        plot_figure1(tmp_path / "f.png", maps, image, pred, slice_index=9)
    with pytest.raises(ValueError, match="relevance 'raw'"):
        plot_figure1(tmp_path / "f.png", [("raw", np.zeros((6, 5, 8, 9)))], image, pred)
    assert not (tmp_path / "f.png").exists()


def test_ground_truth_panel_is_titled_by_what_it_is(tmp_path: Path, monkeypatch) -> None:
    """The ground-truth panel names the ground truth given, and no layout's name when none is."""
    import strokelrp.report.figure1 as figure1_module

    titles: list[list[str]] = []
    save = figure1_module._save_png_atomic

    def keep(fig, path, dpi):
        titles.append([ax.get_title() for ax in fig.axes])
        return save(fig, path, dpi)

    monkeypatch.setattr(figure1_module, "_save_png_atomic", keep)
    image, truth, pred = _inputs(np.random.default_rng(2))
    maps = [("raw", np.ones(image.shape))]
    for name in (None, "labelsTr, class lesion"):
        plot_figure1(tmp_path / "f.png", maps, image, pred, label=truth, truth_name=name)
    assert "(B) ground truth" in titles[0]  # the panel's whole title
    assert "(B) ground truth (labelsTr, class lesion)" in titles[1]
