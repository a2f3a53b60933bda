"""Headless Chromium for the viewer's browser tests: Debian's ``chromium`` (installed by
``make test``) driven by Playwright, no browser download. ``chromium_browser`` skips the test
with the reason when either is missing."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-sandbox"]
"""Software WebGL (SwiftShader): the tests need no GPU; root needs --no-sandbox."""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def chromium_browser() -> Iterator[Any]:
    """Headless Chromium (one per test module: it takes seconds to start)."""
    exe = chromium()
    if exe is None:
        pytest.skip("no chromium on PATH (make test installs Debian's chromium as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def browser_page(browser: Any, width: int = 1000, height: int = 900) -> Iterator[tuple[Any, list]]:
    """A fresh page and the list its console errors and page errors are appended to."""
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield page, errors
    finally:
        page.close()


def wait_ready(frame: Any, timeout_ms: int = 60_000) -> None:
    """Wait until the viewer in ``frame`` (a page or an iframe) has drawn its volumes."""
    frame.wait_for_selector("body[data-ready='1']", timeout=timeout_ms)
    frame.wait_for_timeout(300)  # one more animation frame for the canvas


def canvas_pixels(frame: Any) -> np.ndarray:
    """The viewer's WebGL canvas in ``frame`` (a page or an iframe) as an (H, W, 3) uint8 array:
    the scene redrawn and read back in the same task (no screenshot)."""
    from io import BytesIO

    from PIL import Image

    url = frame.evaluate(
        "() => { const nv = window.strokelrpViewer.nv; nv.drawScene();"
        " return nv.canvas.toDataURL('image/png'); }"
    )
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(BytesIO(png)).convert("RGB"))


def coloured(pixels: np.ndarray, sign: int) -> np.ndarray:
    """Where the overlay's red (sign 1) or blue (sign -1) shows: (H, W) bool."""
    r, g, b = (pixels[..., k].astype(int) for k in range(3))
    if sign > 0:
        return (r - np.maximum(g, b) > 40) & (r > 60)
    return (b - r > 60) & (b - g > 20)


def overlay(pixels: np.ndarray) -> np.ndarray:
    """Where either sign of the relevance overlay shows: (H, W) bool."""
    return coloured(pixels, 1) | coloured(pixels, -1)


def crosshair_centre(pixels: np.ndarray) -> tuple[int, int]:
    """(row, column) where the magenta crosshair's lines cross (one 2-D view on the canvas)."""
    r, g, b = (pixels[..., k].astype(int) for k in range(3))
    magenta = (r > 200) & (b > 200) & (g < 80)
    return int(magenta.sum(1).argmax()), int(magenta.sum(0).argmax())


def around(pixels: np.ndarray, row: int, col: int, step: int = 6) -> np.ndarray:
    """The four pixels diagonally ``step`` away from (row, col), off the crosshair's lines."""
    return np.array([pixels[row + dr, col + dc] for dr in (-step, step) for dc in (-step, step)])


def readout(frame: Any) -> tuple[tuple[int, int, int], float, float]:
    """The crosshair read-out: (the files' voxel, relevance, intensity)."""
    out = frame.locator("#readout")
    voxel = tuple(int(v) for v in out.get_attribute("data-voxel").split(","))
    return (
        voxel,
        float(out.get_attribute("data-relevance")),
        float(out.get_attribute("data-intensity")),
    )


def select(frame: Any, **changes: Any) -> None:
    """Change the viewer's state (channel, setting, threshold, radiological, layout, outlines)
    as its controls do, and wait for the redraw."""
    frame.evaluate("(c) => window.strokelrpViewer.select(c)", changes)
    frame.wait_for_timeout(200)
