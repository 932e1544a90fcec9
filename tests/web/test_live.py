"""The studio's live mode (artconv/web/live.py) through its HTTP API: a photo and camera
frames styled by a tiny model the test makes, the caps, model uploads, dropped frames and
the studio's guard on these routes."""

from __future__ import annotations

import io
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artconv.fast.engine import FastStyle
from artconv.fast.model import save_model
from artconv.fast.net import TransformerNet
from artconv.fast.options import FastOptions
from artconv.io.images import load_image
from artconv.web.studio import jpeg
from tests.conftest import make_image

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'artconv[web]'")

LIVE = {"fast": {"precision": "fp32"}}


def tiny_model(path: Path, seed: int = 0) -> Path:
    """A TransformerNet(width=4, blocks=1) with random weights, saved as artconv saves."""
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_model(path, TransformerNet(width=4, blocks=1), {"test": True})


def direct(model: Path, image: torch.Tensor, size: int) -> np.ndarray:
    """The model run directly (the fast engine, fp32) as 0-255 floats (H, W, 3)."""
    out = FastStyle(FastOptions(model=str(model), size=size, precision="fp32")).run(image)[0]
    return out.permute(1, 2, 0).numpy() * 255


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float64)


def as_jpeg(rgb: np.ndarray) -> np.ndarray:
    """What a 0-255 (H, W, 3) picture looks like after the studio's JPEG encoding (a
    random network's output is all fine detail: JPEG changes it by ~20 levels)."""
    return pixels(jpeg(torch.from_numpy(rgb / 255).permute(2, 0, 1)))


def jpeg_bytes(path: Path) -> bytes:
    buffer = io.BytesIO()
    with Image.open(path) as img:
        img.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture
def client(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from artconv.web.app import create_app
    from artconv.web.studio import Studio

    def make(token: str | None = None) -> TestClient:
        studio = Studio(tmp_path / "studio", defaults=LIVE)
        return TestClient(create_app(studio, token=token), base_url="http://127.0.0.1")

    return make


def test_live_photo_is_the_model_run_directly(client, tmp_path):
    model = tiny_model(tmp_path / "studio" / "models" / "tiny.safetensors")
    photo = make_image(tmp_path / "photo.png", (96, 64))
    with client() as c:
        (listed,) = c.get("/api/live/models").json()
        assert (listed["id"], listed["label"]) == ("tiny.safetensors",
                                                   "tiny (width 4, 1 block)")
        uid = c.post("/api/uploads", content=photo.read_bytes()).json()["id"]
        r = c.post("/api/live/stylize", json={"model": "tiny.safetensors", "upload": uid,
                                              "size": 512})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
    got = pixels(r.content)
    assert got.shape == (64, 96, 3)  # never enlarged past the photo
    expected = direct(model, load_image(photo), 96)
    assert np.abs(got - expected).max() <= 1.0
    assert np.abs(got - np.asarray(Image.open(photo).convert("RGB"))).mean() > 10


def test_camera_frame_is_styled_and_bad_frames_are_one_line(client, tmp_path):
    model = tiny_model(tmp_path / "studio" / "models" / "tiny.safetensors")
    frame = jpeg_bytes(make_image(tmp_path / "frame.png", (320, 240), seed=3))
    url = "/api/live/frame?model=tiny.safetensors&size=256&client=cam1"
    with client() as c:
        r = c.post(url, content=frame)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/jpeg"
        assert float(r.headers["x-live-ms"]) > 0
        got = pixels(r.content)
        assert got.shape == (192, 256, 3)
        expected = direct(model, load_image(Image.open(io.BytesIO(frame)), 256), 256)
        assert np.abs(got - as_jpeg(expected)).mean() < 0.5
        assert np.abs(got - pixels(frame)[:192, :256]).mean() > 10  # not the frame itself

        r = c.post(url, content=b"not a picture at all")
        assert r.status_code == 400
        assert r.json()["error"] == "frame: not an image (JPEG, PNG or WebP expected)"
        r = c.post(url, content=b"\xff" * (600 * 1024))
        assert r.status_code == 413
        assert r.json()["error"] == "frame: more than the 524288 bytes allowed"
        big = io.BytesIO()  # few bytes, many pixels
        Image.new("RGB", (2000, 1200)).save(big, format="PNG")
        r = c.post(url, content=big.getvalue())
        assert r.status_code == 400
        assert r.json()["error"].startswith("frame: 2000x1200 pixels, more than the")
        r = c.post(url.replace("size=256", "size=4096"), content=frame)
        assert r.status_code == 400 and "size 4096: between 16 and 1024" in r.json()["error"]
        r = c.post(url.replace("tiny.safetensors", "..%2Fqueue.json"), content=frame)
        assert r.status_code == 400
        assert r.json()["error"].startswith("model '../queue.json': not one of this studio")


def test_model_upload_is_checked_then_listed(client, tmp_path):
    model = tiny_model(tmp_path / "mine.safetensors", seed=4)
    folder = tmp_path / "studio" / "models"
    with client() as c:
        r = c.post("/api/live/models?name=notes.safetensors", content=b"just some text")
        assert r.status_code == 400
        assert r.json()["error"].startswith("model upload notes.safetensors: not an artconv "
                                            "style model")
        r = c.post("/api/live/models?name=photo.png", content=b"x")
        assert r.status_code == 400 and "a .safetensors file" in r.json()["error"]
        assert c.get("/api/live/models").json() == []
        assert list(folder.iterdir()) == []  # nothing left behind by a refusal

        r = c.post("/api/live/models?name=..%2Fmy%20style.safetensors",
                   content=model.read_bytes())
        assert r.status_code == 200, r.text
        assert r.json()["id"] == "my_style.safetensors"
        assert [p.name for p in folder.iterdir()] == ["my_style.safetensors"]
        frame = jpeg_bytes(make_image(tmp_path / "frame.png", (64, 48)))
        r = c.post("/api/live/frame?model=my_style.safetensors&size=64", content=frame)
        assert r.status_code == 200


def test_a_waiting_frame_is_dropped_when_a_newer_one_comes(tmp_path):
    from artconv.web.live import Live
    from artconv.web.studio import Studio

    tiny_model(tmp_path / "studio" / "models" / "tiny.safetensors")
    live = Live(Studio(tmp_path / "studio", defaults=LIVE))
    frame = jpeg_bytes(make_image(tmp_path / "frame.png", (64, 48)))
    results: dict[int, object] = {}

    def send(k: int) -> None:
        results[k] = live.frame("tiny.safetensors", frame, 64, "cam")

    with live._device("someone-else", live._ticket("someone-else")):  # the device is busy
        threads = []
        for k in range(3):
            before = live._tickets
            threads.append(threading.Thread(target=send, args=(k,)))
            threads[-1].start()
            deadline = time.monotonic() + 10
            while live._tickets == before and time.monotonic() < deadline:
                time.sleep(0.01)  # until this frame has arrived
        threads[0].join(10)
        threads[1].join(10)
        # the older two left without waiting for the device; the newest waits for it
        assert results == {0: None, 1: None}
        assert threads[2].is_alive()
    threads[2].join(10)
    assert results[2] is not None and results[2][0][:2] == b"\xff\xd8"  # a JPEG


def test_the_studio_guard_covers_the_live_routes(client, tmp_path):
    tiny_model(tmp_path / "studio" / "models" / "tiny.safetensors")
    frame = jpeg_bytes(make_image(tmp_path / "frame.png", (64, 48)))
    url = "/api/live/frame?model=tiny.safetensors&size=64"
    with client(token="sesame") as c:
        assert c.post(url, content=frame).status_code == 401
        assert c.get("/api/live/models").status_code == 401
        headers = {"x-artconv-token": "sesame"}
        assert c.post(url, content=frame, headers=headers).status_code == 200
        evil = {**headers, "origin": "http://evil.example", "sec-fetch-site": "cross-site"}
        assert c.post(url, content=frame, headers=evil).status_code == 403
        assert c.post("/api/live/models?name=m.safetensors", content=b"x",
                      headers=evil).status_code == 403
        other_host = {**headers, "host": "attacker.example"}
        assert c.get("/api/live/models", headers=other_host).status_code == 400


def test_a_model_is_loaded_once_per_content_and_again_when_it_changes(tmp_path, monkeypatch):
    import artconv.fast.pretrained as pretrained
    from artconv.web.live import Live
    from artconv.web.studio import Studio

    path = tiny_model(tmp_path / "studio" / "models" / "tiny.safetensors")
    live = Live(Studio(tmp_path / "studio", defaults=LIVE))
    opened: list[Path] = []
    original = pretrained.open_model

    def counting(spec, device="cpu"):
        opened.append(Path(spec))
        return original(spec, device)

    monkeypatch.setattr(pretrained, "open_model", counting)
    frame = jpeg_bytes(make_image(tmp_path / "frame.png", (64, 48)))
    first = live.frame("tiny.safetensors", frame, 64, "a")[0]
    live.frame("tiny.safetensors", frame, 64, "b")
    assert opened == [path]  # the second frame used the loaded network
    tiny_model(path, seed=9)  # the file now holds another network
    changed = live.frame("tiny.safetensors", frame, 64, "a")[0]
    assert opened == [path, path]
    assert changed != first
