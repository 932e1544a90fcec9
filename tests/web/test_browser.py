"""The studio in a real browser: Debian's chromium, headless, driven by Playwright, on the
real server (uvicorn on a free 127.0.0.1 port) with the tiny backbone.

Screenshots of each stage go to $ARTCONV_TEST_ARTIFACTS (or the test's tmp_path)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from artconv.io.images import read_recipe
from tests.conftest import make_image
from tests.web.conftest import live_server, tiny_defaults

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'artconv[web]'")

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("ARTCONV_CHROMIUM") or shutil.which("chromium") or \
    shutil.which("chromium-browser")


def chromium(*args: str) -> Iterator[Any]:
    """Debian's chromium, headless, with extra command-line `args`; skips the test where
    playwright or chromium is missing or chromium cannot start."""
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright (python package) is not installed")
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        try:
            launched = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox", "--disable-gpu", *args])
        except Exception as exc:  # noqa: BLE001 - a chromium that cannot start: skip
            pytest.skip(f"chromium at {CHROMIUM} does not start: {exc}")
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def browser():
    yield from chromium()


@pytest.fixture
def artifacts(tmp_path) -> Path:
    folder = Path(os.environ.get("ARTCONV_TEST_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def studio_app(folder: Path, backbone: Path, token: str | None = None):
    from artconv.web.app import create_app
    from artconv.web.studio import Studio

    # Adam with many steps: the image keeps changing until Stop is pressed.
    defaults = tiny_defaults(backbone, size=48, optimizer="adam", iterations=[100_000])
    return create_app(Studio(folder, defaults=defaults), token=token)


def test_upload_start_watch_stop_gallery_download(browser, tmp_path, backbone_file,
                                                   artifacts):
    content = make_image(tmp_path / "inputs" / "content.png", (64, 48))
    style = make_image(tmp_path / "inputs" / "style.png", (48, 48), seed=7)
    with live_server(studio_app(tmp_path / "studio", backbone_file)) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 800},
                                accept_downloads=True)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator("#main-fields [name=style_weight]").count() == 1
        # The offline presets are shown, marked unavailable, not failing the page.
        assert page.locator("#style-presets .thumb.unavailable").count() >= 1
        page.screenshot(path=artifacts / "1-page.png", full_page=True)

        page.set_input_files("#content-input", str(content))
        page.wait_for_selector("#content-thumb:not([hidden])")
        page.set_input_files("#style-input", str(style))
        page.wait_for_selector("#style-picked .thumb")
        page.fill("#main-fields [name=seed]", "5")
        page.screenshot(path=artifacts / "2-inputs.png", full_page=True)

        page.click("#start")
        # The preview is replaced as the image optimises: three different pictures.
        page.wait_for_function(f"{LOADS} >= 3", timeout=20_000)
        seen = {page.evaluate(SNAPSHOT)}
        for _ in range(20):
            page.wait_for_function(f"{LOADS} > {page.evaluate(LOADS)}", timeout=10_000)
            seen.add(page.evaluate(SNAPSHOT))
            if len(seen) >= 3:
                break
        assert len(seen) >= 3, "the preview did not change twice"
        assert int(page.locator("#curve").get_attribute("data-points")) >= 2
        assert "ETA" in page.inner_text("#status")
        page.screenshot(path=artifacts / "3-running.png", full_page=True)

        page.click("#stop")
        page.wait_for_selector("#status[data-status='stopped']", timeout=20_000)
        card = page.wait_for_selector("#gallery .card", timeout=10_000)
        assert "stopped" in card.inner_text()
        page.screenshot(path=artifacts / "4-gallery.png", full_page=True)

        page.click("#gallery .card .recipe")
        page.wait_for_selector("#recipe-dialog[open]")
        assert '"engine": "style"' in page.inner_text("#recipe")
        page.screenshot(path=artifacts / "5-recipe.png", full_page=True)
        page.click("#recipe-dialog button")

        with page.expect_download() as download:
            page.click("#gallery .card a.download")
        saved = tmp_path / "downloaded.png"
        download.value.save_as(saved)
        assert read_recipe(saved)["options"]["seed"] == 5

        page.click("#gallery .card .again")
        assert page.input_value("#main-fields [name=seed]") == "5"
        assert not errors, errors


LOADS = "Number(document.querySelector('#preview').dataset.loads || 0)"
# The preview as the browser shows it, drawn to a canvas: compares pixels, not addresses.
SNAPSHOT = """() => {
  const img = document.querySelector('#preview');
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  c.getContext('2d').drawImage(img, 0, 0);
  return c.toDataURL();
}"""


# How many shades the sheet's last cell (the last value's result) holds, drawn to a canvas:
# the empty cell of a result not made yet is one flat grey with an anti-aliased cross.
LAST_CELL_SHADES = """() => {
  const img = document.querySelector('#sheet');
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(img.naturalWidth - 150, 40, 120, 60).data;
  const shades = new Set();
  for (let i = 0; i < d.length; i += 4) shades.add(d[i + 2]);
  return shades.size;
}"""


def test_token_protected_server_refuses_requests_without_it(browser, tmp_path,
                                                            backbone_file, artifacts):
    token = "browser-test-token"
    with live_server(studio_app(tmp_path / "studio", backbone_file, token)) as url:
        page = browser.new_page()
        refused = page.goto(url)
        assert refused.status == 401
        assert page.goto(f"{url}/api/info").status == 401
        page.screenshot(path=artifacts / "token-refused.png", full_page=True)
        allowed = page.goto(f"{url}/?token={token}")
        assert allowed.status == 200
        page.wait_for_selector("body[data-ready='1']")  # its API calls carry the cookie
        assert page.goto(f"{url}/api/info").status == 200
        other = browser.new_page()  # another browser context: no cookie, no studio
        assert other.goto(url).status == 401


def test_sweep_view_fills_a_contact_sheet(browser, tmp_path, backbone_file, artifacts):
    content = make_image(tmp_path / "inputs" / "content.png", (64, 48))
    style = make_image(tmp_path / "inputs" / "style.png", (48, 48), seed=7)
    with live_server(studio_app(tmp_path / "studio", backbone_file)) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        page.set_input_files("#content-input", str(content))
        page.wait_for_selector("#content-thumb:not([hidden])")
        page.set_input_files("#style-input", str(style))
        page.wait_for_selector("#style-picked .thumb")
        page.click(".tab[data-mode=sweep]")
        page.fill("#main-fields [name=iterations]", "3")
        page.select_option("#sweep-option", "pooling")
        page.fill("#sweep-values", "max\navg\nstrided")
        page.click("#start")
        page.wait_for_function("document.querySelector('#sweep-status').textContent"
                               ".includes('3 of 3 done')", timeout=20_000)
        # The finished sheet: the content and three results in one row under their values,
        # drawn once more after the last job ended.
        page.wait_for_selector("#sweep-view[data-finished='1']", timeout=20_000)
        page.wait_for_function("(s => s.complete && s.src.endsWith('?v=3') && "
                               "s.naturalWidth > 500 && s.naturalHeight < 320)"
                               "(document.querySelector('#sheet'))")
        page.wait_for_function("document.querySelectorAll('#gallery .card').length === 3")
        page.wait_for_function("[...document.querySelectorAll('#gallery img')]"
                               ".every((i) => i.complete && i.naturalWidth > 0)")
        # The last column holds a picture, not the empty cell of a result not made yet.
        assert page.evaluate(LAST_CELL_SHADES) > 30
        labels = page.locator("#gallery .card p").all_inner_texts()
        assert sorted(t.split(" · ")[0] for t in labels) == [
            "pooling = avg", "pooling = max", "pooling = strided"]
        page.screenshot(path=artifacts / "6-sweep.png", full_page=True)
