"""Headless Chromium for the viewer's browser tests: Debian's ``chromium`` (installed by
``make test``) driven by Playwright, no browser download. ``browser_page`` skips the test with
the reason when either is missing."""

from __future__ import annotations

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
def browser_page(width: int = 1000, height: int = 900) -> Iterator[tuple[Any, list[str]]]:
    """A fresh page and the list its console errors and page errors are appended to."""
    exe = chromium()
    if exe is None:
        pytest.skip("no chromium on PATH (make test installs Debian's chromium as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, errors
        finally:
            browser.close()


def wait_ready(frame: Any, timeout_ms: int = 60_000) -> None:
    """Wait until the viewer in ``frame`` (a page or an iframe) has drawn its volumes."""
    frame.wait_for_selector("body[data-ready='1']", timeout=timeout_ms)
    frame.wait_for_timeout(300)  # one more animation frame for the canvas


def canvas_pixels(frame: Any) -> np.ndarray:
    """The viewer canvas as an (H, W, 3) uint8 array, from a screenshot."""
    from io import BytesIO

    from PIL import Image

    png = frame.locator("#strokelrp-gl").screenshot()
    return np.asarray(Image.open(BytesIO(png)).convert("RGB"))


def coloured(pixels: np.ndarray, sign: int) -> np.ndarray:
    """Where the overlay's red (sign 1) or blue (sign -1) shows: (H, W) bool."""
    r, g, b = (pixels[..., k].astype(int) for k in range(3))
    if sign > 0:
        return (r > 120) & (r - b > 60) & (r - g > 90)
    return (b > 90) & (b - r > 60)
