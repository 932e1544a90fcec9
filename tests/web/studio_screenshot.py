"""Makes docs/studio.png: the studio in chromium with a few results and a job running, from
generated pictures only (no photo, no painting) on random VGG weights (no download).

    python tests/web/studio_screenshot.py [docs/studio.png]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.web.conftest import live_server  # noqa: E402


def landscape(path: Path, w: int = 160, h: int = 120) -> Path:
    """Sky, sun and rolling hills."""
    y, x = np.mgrid[0:h, 0:w] / h
    sky = np.stack([0.35 + 0.4 * y, 0.55 + 0.3 * y, 0.95 - 0.2 * y], -1)
    sun = ((x - 1.0) ** 2 + (y - 0.3) ** 2 < 0.02)[..., None]
    hills = (y > 0.62 + 0.08 * np.sin(6 * x) + 0.04 * np.sin(17 * x + 1))[..., None]
    field = np.stack([0.2 + 0.3 * y, 0.45 + 0.2 * np.sin(9 * x), 0.15 + 0 * x], -1)
    rgb = np.where(hills, field, np.where(sun, [1.0, 0.85, 0.3], sky))
    Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8)).save(path)
    return path


def swirls(path: Path, n: int = 128) -> Path:
    """Bold coloured swirls, a stand-in for a painting."""
    y, x = np.mgrid[0:n, 0:n] / n - 0.5
    r, a = np.hypot(x, y), np.arctan2(y, x)
    t = np.sin(14 * r + 3 * a)
    rgb = np.stack([0.5 + 0.5 * t, 0.3 + 0.3 * np.cos(9 * r - 2 * a), 0.6 - 0.4 * t], -1)
    Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8)).save(path)
    return path


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    from artconv.web.app import create_app
    from artconv.web.studio import Studio

    work = Path(tempfile.mkdtemp(prefix="artconv-shot-"))
    try:
        content, style = landscape(work / "hills.png"), swirls(work / "swirls.png")
        common = {"weights": "random", "arch": "vgg16", "precision": "fp32"}
        studio = Studio(work / "studio", defaults={
            "style": {**common, "size": 128, "iterations": [25], "pooling": "avg",
                      "content_layers": ["relu3_2"],
                      "style_layers": ["relu1_1", "relu2_1", "relu3_1"]},
            "dream": {**common, "size": 128, "octaves": 2, "steps": 8,
                      "layers": ["relu3_3"]},
            "features": {**common, "size": 128, "layers": ["relu2_2", "relu3_3"]}})
        with live_server(create_app(studio)) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                        args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 860})
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']")
            page.set_input_files("#content-input", str(content))
            page.wait_for_selector("#content-thumb:not([hidden])")
            page.set_input_files("#style-input", str(style))
            page.wait_for_selector("#style-picked .thumb")
            for engine in ("features", "dream", "style"):
                page.click(f"#engines [data-engine={engine}]")
                if engine == "style":
                    page.fill("#main-fields [name=seed]", "1")
                page.click("#start")
                page.wait_for_selector("#status[data-status=done]", timeout=120_000)
            page.fill("#main-fields [name=iterations]", "400")
            page.fill("#main-fields [name=style_weight]", "1e4")
            page.click("#start")
            page.wait_for_function("(s => s.status === 'running' && s.done / s.total > 0.3)"
                                   "(document.querySelector('#status').dataset)",
                                   timeout=120_000)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=work / "shot.png")
            page.click("#stop")
            browser.close()
        shot = Image.open(work / "shot.png").convert("RGB")
        shot.quantize(256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
        print(f"{out}: {out.stat().st_size // 1024} KB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "studio.png"))
