"""The studio against hostile requests, as a web page on another port or a script would send
them: uploads that are bombs or no pictures, paths that are no files, writes from other
origins, wrong tokens, bodies too large or of the wrong kind, options that are the server's.
Every refusal is one clear status and message, and nothing is written."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from tests.conftest import make_image
from tests.web.test_api import events, inputs, upload

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'artconv[web]'")


def png_declaring(width: int, height: int, payload: int = 48_000) -> bytes:
    """A small PNG whose header declares `width` x `height` (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * payload * 20, 9)[:payload]
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
            + chunk(b"IEND", b""))


def studio_files(client) -> list[str]:
    folder = Path(client.app.state.studio.folder)
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_decompression_bomb_upload_is_a_400_naming_the_limit(make_client):
    client = make_client()
    before = studio_files(client)
    bomb = png_declaring(20000, 20000)
    assert len(bomb) < 64_000
    response = client.post("/api/uploads", content=bomb)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith("upload: 20000x20000") and "100.0 MP limit" in error, error
    assert str(client.app.state.studio.folder) not in error  # no server paths
    assert studio_files(client) == before


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"", 400, "not an image"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", 400, "not an image"),
    (b"GIF89a" + b"\0" * 20, 400, ""),  # a header and nothing more
    ("truncated", 400, "truncated or corrupt"),
    ("ico", 400, "ICO images are not taken"),
])
def test_uploads_that_are_not_pictures_are_refused(make_client, tmp_path, body, status,
                                                   message):
    client = make_client()
    if body == "truncated":
        body = make_image(tmp_path / "a.png", (64, 64)).read_bytes()[:-200]
    elif body == "ico":
        from PIL import Image

        Image.new("RGB", (16, 16)).save(tmp_path / "a.ico")
        body = (tmp_path / "a.ico").read_bytes()
    before = studio_files(client)
    response = client.post("/api/uploads", content=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert "Traceback" not in response.text
    assert studio_files(client) == before


def test_a_streamed_upload_over_the_limit_is_cut_off(make_client):
    client = make_client(max_upload=50_000)
    before = studio_files(client)

    def body():  # chunked: no Content-Length to refuse it by
        for _ in range(100):
            yield b"\0" * 10_000

    response = client.post("/api/uploads", content=body())
    assert response.status_code == 413
    assert studio_files(client) == before


@pytest.mark.parametrize("path", [
    "/files/uploads/x%00.png", "/files/results/%00", "/files/" + "a" * 5000 + ".png",
    "/files/" + "a/" * 3000 + "b.png", "/files/uploads%5c..%5c..%5cetc%5cpasswd",
    "/files/uploads/%2e%2e/%2e%2e/etc/passwd",
])
def test_paths_that_name_no_studio_file_are_404(make_client, path):
    response = make_client().get(path)
    assert response.status_code == 404, (path, response.text)


@pytest.mark.parametrize(("origin", "status"), [
    ("http://127.0.0.1:8080", 403),  # another port of this machine: another site's page
    ("http://127.0.0.1:80", 200),  # the studio's own origin, port written out
    ("https://127.0.0.1", 403),
    ("null", 403),  # a sandboxed frame or a file:// page
    ("http://localhost", 403),  # another name: another origin
    ("http://127.0.0.1.evil.example", 403),
])
def test_only_the_studio_origin_may_write(make_client, tmp_path, origin, status):
    client = make_client()
    png = make_image(tmp_path / "a.png").read_bytes()
    before = studio_files(client)
    response = client.post("/api/uploads", content=png, headers={"Origin": origin})
    assert response.status_code == status, (origin, response.text)
    if status != 200:
        assert studio_files(client) == before
    content = upload(client, tmp_path / "a.png")
    job = client.post("/api/jobs", headers={"Origin": origin},
                      json={"engine": "features", "content": content})
    assert job.status_code == status
    assert len(client.get("/api/jobs").json()) == (status == 200)


def test_a_browser_marking_a_write_cross_site_is_refused(make_client, tmp_path):
    client = make_client()
    png = make_image(tmp_path / "a.png").read_bytes()
    for site in ("cross-site", "same-site"):
        response = client.post("/api/uploads", content=png, headers={"Sec-Fetch-Site": site})
        assert response.status_code == 403, site
    for site in ("same-origin", "none"):
        response = client.post("/api/uploads", content=png, headers={"Sec-Fetch-Site": site})
        assert response.status_code == 200, site


@pytest.mark.parametrize("headers", [
    {"X-Artconv-Token": ""}, {"X-Artconv-Token": "s3cret-token-but-longer"},
    {"X-Artconv-Token": "s3cret-tokeN"}, {"Authorization": "Bearer"},
    {"Authorization": "Basic s3cret-token"}, {"Cookie": "artconv_token=wrong-token"},
    {"X-Artconv-Token": "s3cret-t\u00f6ken".encode("latin-1")},
])
def test_wrong_tokens_are_401(make_client, tmp_path, headers):
    client = make_client(token="s3cret-token")
    png = make_image(tmp_path / "a.png").read_bytes()
    assert client.get("/api/info", headers=headers).status_code == 401
    before = studio_files(client)
    assert client.post("/api/uploads", content=png, headers=headers).status_code == 401
    assert studio_files(client) == before


def test_bodies_of_the_wrong_kind_or_size_are_refused(make_client, tmp_path):
    client = make_client()
    for body in (b"not json", b"[1, 2]", b"\xff\xfe", b'"text"'):
        response = client.post("/api/jobs", content=body,
                               headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and "expected a JSON object" in response.text

    def huge():  # chunked: the 1 MB cap must hold without a Content-Length
        yield b'{"engine": "style", "options": {"seed": "'
        for _ in range(300):
            yield b"1" * 10_000
        yield b'"}}'

    response = client.post("/api/jobs", content=huge(),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert client.get("/api/jobs").json() == []


@pytest.mark.parametrize("option", [{"weights": "imagenet"}, {"weights": "caffe"},
                                    {"arch": "vgg16"}])
def test_the_page_cannot_change_the_servers_network(make_client, tmp_path, option):
    client = make_client(weights="random")
    fields = {f["name"] for f in client.get("/api/info").json()["engines"]["style"]["fields"]}
    assert not fields & {"weights", "arch"}
    content, style = inputs(client, tmp_path)
    response = client.post("/api/jobs", json={"engine": "style", "content": content,
                                              "styles": [style], "options": option})
    assert response.status_code == 400 and "only the server chooses" in response.json()["error"]
    assert client.get("/api/jobs").json() == []


def test_a_preset_cannot_change_the_servers_network(make_client, tmp_path, monkeypatch):
    styles = tmp_path / "my-styles"
    make_image(styles / "swirl.png", (40, 40), seed=9)
    (styles / "swirl.toml").write_text('engine = "style"\nimages = ["swirl.png"]\n'
                                       '[options]\narch = "vgg16"\n')
    (styles / "heavy.toml").write_text('engine = "style"\n[options]\nweights = "caffe"\n')
    (styles / "light.toml").write_text('engine = "style"\n[options]\nweights = "random"\n')
    monkeypatch.setenv("ARTCONV_STYLES", str(styles))
    client = make_client(weights="random")
    info = client.get("/api/info").json()
    assert info["network"]["style"] == {"arch": "vgg19", "weights": "random",
                                        "backbone": "mynet.py"}
    content, style = inputs(client, tmp_path)
    for form, message in [({"styles": ["swirl"]}, "preset 'swirl': sets arch 'vgg16'"),
                          ({"styles": [style], "preset": "heavy"},
                           "preset 'heavy': sets weights 'caffe'")]:
        response = client.post("/api/jobs", json={"engine": "style", "content": content,
                                                  **form})
        assert response.status_code == 400 and message in response.json()["error"]
        assert "artconv serve --" in response.json()["error"]
    assert client.get("/api/jobs").json() == []
    # A preset that agrees with the server runs.
    jid = client.post("/api/jobs", json={"engine": "style", "content": content,
                                         "styles": [style], "preset": "light"}).json()["id"]
    assert events(client, jid)[-1]["status"] == "done"
    assert client.get(f"/api/results/{jid}/recipe").json()["options"]["weights"] == "random"
