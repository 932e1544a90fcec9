"""Training from the studio page in Chromium (issue 23): pick a style and the operator's
photo folder, start `train`, watch the loss curve and preview sheet appear, Stop (the
checkpoint is kept), Resume (the run continues from it). Screenshots go to
$ARTCONV_TEST_ARTIFACTS (or the test's tmp_path)."""

from __future__ import annotations

import pytest

from artconv.fast.checkpoint import work_folder
from tests.conftest import make_image
from tests.web.conftest import live_server
from tests.web.test_browser import artifacts, browser  # noqa: F401 - the fixtures
from tests.web.test_training import train_defaults

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'artconv[web]'")

pytestmark = pytest.mark.browser

DONE = "Number(document.querySelector('#status').dataset.done)"


def test_train_from_the_page_watch_stop_and_resume(browser, tmp_path, backbone_file,  # noqa: F811
                                                   artifacts):  # noqa: F811
    from artconv.web.app import create_app
    from artconv.web.studio import Studio

    folder = tmp_path / "studio"
    for i in range(8):
        make_image(folder / "photos" / "set" / f"p{i}.png", (48, 40), seed=i)
    style = make_image(tmp_path / "style.png", (48, 48), seed=7)
    defaults = train_defaults(backbone_file)
    defaults["train"].update(preview_every=3)
    with live_server(create_app(Studio(folder, defaults=defaults))) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        page.click("#engines [data-engine=train]")
        assert page.locator("#train-setup").is_visible()
        assert not page.locator("#content-drop").is_visible()  # photos, not one content
        assert page.locator("#main-fields [name=steps]").count() == 1
        assert page.locator("#main-fields [name=device]").count() == 0  # server-only
        page.select_option("#train-folder", "set")
        page.fill("#train-name", "brushy")
        page.fill("#main-fields [name=steps]", "100000")  # runs until Stop
        page.set_input_files("#style-input", str(style))
        page.wait_for_selector("#style-picked .thumb")
        page.screenshot(path=artifacts / "train-1-form.png", full_page=True)

        page.click("#start")
        page.wait_for_function(f"{DONE} >= 7", timeout=60_000)
        page.wait_for_function("document.querySelector('#train-sheet').naturalWidth > 0 && "
                               "document.querySelector('#train-curve').naturalWidth > 0",
                               timeout=30_000)
        page.screenshot(path=artifacts / "train-2-running.png", full_page=True)

        page.click("#stop")
        page.wait_for_selector("#status[data-status=stopped]", timeout=30_000)
        reached = page.evaluate(DONE)
        work = work_folder(folder / "models" / "brushy.safetensors")
        assert (work / "checkpoint.pt").is_file()
        assert (folder / "models" / "brushy.safetensors").is_file()
        assert page.locator("#resume").is_visible()
        page.screenshot(path=artifacts / "train-3-stopped.png", full_page=True)

        page.click("#resume")
        page.wait_for_selector("#status[data-status=running]", timeout=30_000)
        page.wait_for_function(f"{DONE} > {reached + 2}", timeout=60_000)
        page.screenshot(path=artifacts / "train-4-resumed.png", full_page=True)
        page.click("#stop")
        page.wait_for_selector("#status[data-status=stopped]", timeout=30_000)
        log = (work / "train.log").read_text()
        assert f"resuming brushy.safetensors at step {reached} of 100000" in log
        assert not errors, errors
        page.reload()  # the model is among live mode's choices
        page.wait_for_function("[...document.querySelectorAll('#live-model option')]"
                               ".some((o) => o.value === 'brushy.safetensors')",
                               timeout=10_000)
