"""The studio's live mode in Chromium (Playwright) on the real server: the camera through
Chromium's fake device (`pytest -m browser -k camera`), and a photo with a model picked,
uploaded and blended. The models are tiny random networks the tests make.

Screenshots go to $ARTCONV_TEST_ARTIFACTS (or the test's tmp_path)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artconv.io.images import load_image
from tests.conftest import make_image
from tests.web.conftest import live_server
from tests.web.test_browser import artifacts, chromium  # noqa: F401 - the fixture
from tests.web.test_live import LIVE, as_jpeg, direct, pixels, tiny_model

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'artconv[web]'")

pytestmark = pytest.mark.browser

FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@pytest.fixture
def live_browser():
    """test_browser's Chromium, with the fake camera (a moving test pattern) allowed."""
    yield from chromium(*FAKE_CAMERA)


def live_app(folder: Path):
    from artconv.web.app import create_app
    from artconv.web.studio import Studio

    return create_app(Studio(folder, defaults=LIVE))


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("#live-panel[data-ready='1']")
    return page, errors


def canvas(page, selector: str) -> np.ndarray:
    """The canvas's pixels as the page shows them (H, W, 3), 0-255."""
    url = page.evaluate(f"document.querySelector('{selector}').toDataURL('image/png')")
    return pixels(base64.b64decode(url.split(",", 1)[1]))


# The newest frame's round trip and what the page drew of it, read in one go (the page
# replaces `last` and redraws together, so they belong to the same frame).
LAST_FRAME = """async () => {
  const shown = document.querySelector('#live-frame').toDataURL('image/png');
  const last = window.artconvLive.last;
  const b64 = async (blob) => {
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let s = '';
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s);
  };
  return [shown.split(',')[1], await b64(last.sent), await b64(last.got)];
}"""
FRAMES = "Number(document.querySelector('#live-frame').dataset.frames || 0)"


def test_camera_frames_arrive_styled_with_the_rate_and_stop_works(live_browser, tmp_path,
                                                                  artifacts):  # noqa: F811
    model = tiny_model(tmp_path / "studio" / "models" / "tiny.safetensors")
    with live_server(live_app(tmp_path / "studio")) as url:
        page, errors = open_page(live_browser, url)
        assert page.input_value("#live-model") == "tiny.safetensors"
        page.click("#live-camera-start")
        page.wait_for_function(f"{FRAMES} >= 8", timeout=30_000)
        shown, sent, got = (base64.b64decode(b) for b in page.evaluate(LAST_FRAME))
        page.screenshot(path=artifacts / "live-camera.png", full_page=True)

        frame = Image.open(io.BytesIO(sent))
        assert frame.format == "JPEG" and max(frame.size) == 256
        # The server's answer is the model run directly on the frame the page sent ...
        expected = as_jpeg(direct(model, load_image(frame, 256), 256))
        assert np.abs(pixels(got) - expected).mean() < 0.5
        assert np.abs(pixels(got) - pixels(sent)).mean() > 10  # styled, not echoed
        # ... and the page shows it (Chromium's JPEG decoder, blend 1).
        assert np.abs(pixels(shown) - pixels(got)).mean() < 2

        rate = page.locator("#live-fps")
        assert float(rate.get_attribute("data-fps")) > 0
        assert " fps · server " in rate.inner_text()

        page.click("#live-camera-stop")
        page.wait_for_selector("#live-fps[data-status='stopped']")
        stopped_at = page.evaluate(FRAMES)
        page.wait_for_timeout(800)
        assert page.evaluate(FRAMES) <= stopped_at + 1  # one in flight may still land
        assert page.evaluate("document.querySelector('#live-video').srcObject === null")
        assert page.is_enabled("#live-camera-start")
        page.screenshot(path=artifacts / "live-camera-stopped.png", full_page=True)
        assert not errors, errors


def test_live_photo_model_pick_upload_and_blend(live_browser, tmp_path,
                                                artifacts):  # noqa: F811
    tiny_model(tmp_path / "studio" / "models" / "a-first.safetensors", seed=1)
    mine = tiny_model(tmp_path / "mine.safetensors", seed=2)
    bad = tmp_path / "notes.safetensors"
    bad.write_text("not a model")
    photo = make_image(tmp_path / "photo.png", (96, 64))
    with live_server(live_app(tmp_path / "studio")) as url:
        page, errors = open_page(live_browser, url)
        page.set_input_files("#live-model-input", str(bad))
        page.wait_for_function("document.querySelector('#live-message').textContent"
                               ".includes('not an artconv style model')")
        assert page.inner_text("#live-message").startswith(
            "model upload notes.safetensors: not an artconv style model")
        page.screenshot(path=artifacts / "live-bad-model.png", full_page=True)

        page.set_input_files("#live-model-input", str(mine))
        page.wait_for_function("document.querySelector('#live-model').value === "
                               "'mine.safetensors'")
        assert page.inner_text("#live-message") == ""
        page.set_input_files("#live-photo-input", str(photo))
        page.wait_for_selector("#live-result[data-drawn]")
        styled = canvas(page, "#live-result")
        expected = direct(mine, load_image(photo), 96)
        assert styled.shape == (64, 96, 3)
        assert np.abs(styled - expected).max() <= 2
        page.screenshot(path=artifacts / "live-photo.png", full_page=True)

        # Another model picked: the picture changes to that model's.
        drawn = page.get_attribute("#live-result", "data-drawn")
        page.select_option("#live-model", "a-first.safetensors")
        page.wait_for_function("document.querySelector('#live-result').dataset.drawn !== "
                               f"'{drawn}'")
        other = canvas(page, "#live-result")
        first = direct(tmp_path / "studio" / "models" / "a-first.safetensors",
                       load_image(photo), 96)
        assert np.abs(other - first).max() <= 2

        original = np.asarray(Image.open(photo).convert("RGB"), dtype=np.float64)
        for value in ("0", "0.5"):
            page.locator("#live-blend").fill(value)
            mixed = canvas(page, "#live-result")
            want = original + float(value) * (first - original)
            assert np.abs(mixed - want).max() <= 2, value
        page.screenshot(path=artifacts / "live-blend.png", full_page=True)
        assert not errors, errors
