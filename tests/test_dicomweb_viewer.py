"""The minimal viewer in headless Chromium: series list, rendered frames, scrolling; with a screenshot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.async_api import async_playwright

from dicomweb.multipart import new_boundary
from tests.conftest import make_settings
from tests.dicomweb_samples import ServerThread, sample, variant

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STUDY = "2.25.880011"


@pytest.fixture(scope="module")
def server(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    data_dir = tmp_path_factory.mktemp("viewer")
    with ServerThread(lambda base: make_settings(ferretdb_uri, data_dir, base_url=base)) as running:
        yield running


async def store_study(server: ServerThread) -> None:
    """Two series: a 30-frame ultrasound (JPEG) and a 2-frame RGB (RLE)."""
    us = variant(
        "examples_ybr_color.dcm", StudyInstanceUID=STUDY, SeriesInstanceUID=STUDY + ".1", SeriesNumber=1,
        SOPInstanceUID=STUDY + ".1.1", PatientName="Viewer^Test", PatientID="VIEW-1",
    )  # fmt: skip
    rgb = variant(
        "SC_rgb_rle_2frame.dcm", StudyInstanceUID=STUDY, SeriesInstanceUID=STUDY + ".2", SeriesNumber=2,
        SOPInstanceUID=STUDY + ".2.1", PatientName="Viewer^Test", PatientID="VIEW-1",
    )  # fmt: skip
    boundary = new_boundary()
    body = (
        b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + d + b"\r\n" for d in (us, rgb))
        + f"--{boundary}--\r\n".encode()
    )
    async with httpx.AsyncClient(base_url=server.origin, timeout=60) as http:
        r = await http.post(
            "/dicomweb/studies",
            content=body,
            headers={
                "Authorization": f"Bearer {server.token()}",
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            },
        )
        assert r.status_code == 200, r.text
        # The page and its script are static: they need no token, and forbid foreign scripts.
        page = await http.get("/viewer")
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]


async def test_viewer_scrolls_frames(server: ServerThread, tmp_path: Path) -> None:
    await store_study(server)
    token = server.token("user/ImagingStudy.rs")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{server.origin}/viewer?study={STUDY}#token={token}")
            buttons = page.locator("#series-list button")
            await buttons.first.wait_for(timeout=60_000)
            assert await buttons.count() == 2
            assert (await buttons.nth(0).inner_text()).startswith("US n°1")
            assert (await buttons.nth(1).inner_text()).startswith("OT n°2")
            assert "Viewer^Test" in (await page.locator("#study-info").inner_text())
            # The first frame of the first series is shown...
            await page.wait_for_function(
                "() => { const i = document.getElementById('frame');"
                " return i.naturalWidth > 0 && i.dataset.frame === '1'; }",
                timeout=60_000,
            )
            assert await page.locator("#position").inner_text() == "1 / 30"
            # ...and the wheel, the keyboard and the slider scroll through the 30 frames.
            await page.locator("#frame").hover()
            await page.mouse.wheel(0, 120)
            await page.wait_for_function("() => document.getElementById('frame').dataset.frame === '2'", timeout=30_000)
            await page.keyboard.press("ArrowDown")
            await page.wait_for_function("() => document.getElementById('frame').dataset.frame === '3'", timeout=30_000)
            await page.locator("#slider").fill("30")
            await page.wait_for_function(
                "() => document.getElementById('frame').dataset.frame === '30'", timeout=30_000
            )
            width = await page.evaluate("document.getElementById('frame').naturalWidth")
            assert width == 320
            shot = tmp_path / "viewer-us-frame30.png"
            await page.screenshot(path=str(shot))
            # The second series (RGB, 2 frames).
            await buttons.nth(1).click()
            await page.wait_for_function(
                "() => document.getElementById('position').textContent === '1 / 2' && "
                "document.getElementById('frame').dataset.frame === '1'",
                timeout=30_000,
            )
            await page.wait_for_function("() => document.getElementById('frame').naturalWidth === 100", timeout=30_000)
            await page.screenshot(path=str(tmp_path / "viewer-rgb.png"))
            assert errors == []
        finally:
            await browser.close()
    image = Image.open(shot)
    assert image.size == (1100, 800)
    assert np.asarray(image.convert("L")).std() > 5  # not a blank page
    assert (tmp_path / "viewer-rgb.png").stat().st_size > 0


async def test_viewer_without_token_shows_the_error(server: ServerThread, tmp_path: Path) -> None:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{server.origin}/viewer?study={STUDY}")
            await page.wait_for_function(
                "() => document.getElementById('status').textContent.startsWith('Erreur')", timeout=60_000
            )
            assert "token" in (await page.locator("#status").inner_text()).lower()
            await page.screenshot(path=str(tmp_path / "viewer-refused.png"))
        finally:
            await browser.close()


def test_rendered_frames_differ() -> None:
    # The frames the viewer scrolls through are distinct images (a guard for the scroll assertions).
    from pydicom import dcmread

    ds = dcmread(sample("examples_ybr_color.dcm"))
    assert not np.array_equal(ds.pixel_array[0], ds.pixel_array[29])
