"""The viewer in a real browser (headless Debian Chromium through Playwright): the page loads
without console errors, draws the relevance at the lesion, switches settings, reads the NIfTI's
values at the crosshair and shows the patient's right where its letters say, for files stored
LAS and RAS; the report's frame and `strokelrp view`'s page work the same way."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from browser import (
    around,
    browser_page,
    canvas_pixels,
    chromium_browser,
    coloured,
    crosshair_centre,
    overlay,
    readout,
    select,
    wait_ready,
)
from viewer_cases import model_explanation, oriented_case

from strokelrp.pipeline.report import build_report
from strokelrp.pipeline.view import serve, url
from strokelrp.report.viewer import viewer_page


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as launched:
        yield launched


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_explanation(tmp_path_factory.mktemp("viewer_browser"))[0]


def _centroid_column(mask: np.ndarray) -> float:
    return float(np.argwhere(mask)[:, 1].mean())


@pytest.mark.parametrize("codes", ["LAS", "RAS"])
def test_viewer_page_in_chromium(codes: str, browser, tmp_path: Path) -> None:
    case = oriented_case(codes)
    relevance, mr = case.relevance["for"]["ADC"], case.mr["ADC"]
    page_file = tmp_path / "viewer.html"
    page_file.write_text(viewer_page(case), encoding="utf-8")
    with browser_page(browser) as (page, errors):
        page.goto(page_file.as_uri() + "#layout=axial&threshold=0&truth=0&prediction=0")
        wait_ready(page)
        # the crosshair starts in the lesion; the read-out is the volumes' value there
        voxel, value, intensity = readout(page)
        assert case.truth[voxel]
        assert value == float(relevance[voxel]) and intensity == float(mr[voxel])

        pixels = canvas_pixels(page)
        row, col = crosshair_centre(pixels)
        assert coloured(around(pixels, row, col), 1).all()  # red at the lesion: R > 0 there
        red = coloured(pixels, 1)
        # radiological: the patient's right (the lesion's side) on the screen's left
        assert page.locator("#orientation").get_attribute("data-screen-left") == "R"
        assert _centroid_column(red) < pixels.shape[1] / 2
        select(page, radiological=False)
        assert page.locator("#orientation").get_attribute("data-screen-left") == "L"
        assert _centroid_column(coloured(canvas_pixels(page), 1)) > pixels.shape[1] / 2

        # another setting changes the overlay: the same voxels, now negative (blue)
        select(page, setting="against")
        switched = canvas_pixels(page)
        assert not coloured(switched, 1).any() and coloured(switched, -1).sum() > red.sum() // 2
        assert readout(page)[1] == -value
        # the threshold hides the smaller |R|
        select(page, setting="for", threshold=0.9)
        assert 0 < coloured(canvas_pixels(page), 1).sum() < red.sum()

        # a click moves the crosshair; the read-out follows the clicked voxel
        box = page.locator("#strokelrp-gl").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.6)
        page.wait_for_timeout(300)
        clicked, value, intensity = readout(page)
        assert clicked != voxel
        assert value == float(relevance[clicked]) and intensity == float(mr[clicked])
        assert not errors, errors


def test_report_frame_and_view_server_in_chromium(
    browser, model_folder: Path, tmp_path: Path
) -> None:
    # a run folder holding the --model explanation as its explained case 1
    run = tmp_path / "run"
    (run / "explanations").mkdir(parents=True)
    (run / "config.toml").write_text('series = "A"\n')
    (run / "explanations" / "1").symlink_to(model_folder, target_is_directory=True)
    report = build_report([run])
    raw = nib.load(model_folder / "relevance_raw.nii.gz").get_fdata(dtype=np.float32)
    server = serve([model_folder])
    try:
        with browser_page(browser) as (page, errors):
            # the report's frame opens in 3 planes + 3-D; the served page starts axial
            for where in (report.as_uri(), url(server, [model_folder]) + "#layout=axial"):
                page.goto(where)
                frame = page.frames[1] if where.startswith("file:") else page
                wait_ready(frame)
                voxel, value, _ = readout(frame)
                assert value == float(raw[(*voxel, 0)])  # channel 0 (adc) shown first
                select(frame, layout="axial", threshold=0)
                pixels = canvas_pixels(frame)
                assert overlay(pixels).sum() > 100  # drawn, not blank
                row, col = crosshair_centre(pixels)
                assert overlay(around(pixels, row, col)).any()  # relevance at the lesion
                select(frame, channel="tmax")
                assert readout(frame)[1] == float(raw[(*voxel, 1)])
            assert not errors, errors
    finally:
        server.shutdown()
        server.server_close()
