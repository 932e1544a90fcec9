"""Images by http(s) URL: content and style arguments, `artconv presets --fetch`, and the
limits a download meets (size cap, timeout, pixel limit, one-line errors). Everything is
served from a local HTTP server on 127.0.0.1: no test needs the internet."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from artconv.errors import ArtconvError
from artconv.io.files import url_cache_path, url_of, url_stem
from artconv.io.images import image_hw, load_image, read_recipe
from artconv.presets import download_image, list_presets
from artconv.video.io import is_video_input
from tests.conftest import make_image, run_cli

STYLES = Path(__file__).resolve().parents[2] / "styles"
FAMOUS = ["starry", "wave", "scream", "kiss", "water-lilies", "composition-vii", "udnie",
          "shipwreck", "grande-jatte"]


@dataclass
class Route:
    body: bytes
    length: int | None = -1  # -1: the true length; None: no Content-Length header
    stall: float = 0.0  # seconds to wait after the headers, before the body
    kind: str = "image/png"
    drip: float = 0.0  # seconds between two bytes of the body (a server that trickles)
    location: str = ""  # answer 302 with this Location instead


@dataclass
class Server:
    base: str
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def server(monkeypatch) -> Iterator[Server]:
    """A local HTTP/1.0 server (a body without Content-Length ends when the connection
    closes); `routes` maps a path to what it answers, unknown paths get 404."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    state = Server("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            state.hits.append(self.path)
            route = state.routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            if route.location:
                self.send_response(302)
                self.send_header("Location", route.location)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", route.kind)
            if route.length is not None:
                length = len(route.body) if route.length == -1 else route.length
                self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.flush()
            if route.stall:
                state.release.wait(route.stall)
            with contextlib.suppress(OSError):  # the client gave up (timeout, size cap)
                if not route.drip:
                    self.wfile.write(route.body)
                for i in range(len(route.body) if route.drip else 0):
                    if state.release.wait(route.drip):
                        break
                    self.wfile.write(route.body[i:i + 1])
                    self.wfile.flush()

        def log_message(self, *_args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()


def png(tmp_path: Path, name: str, size: tuple[int, int] = (32, 32), seed: int = 0) -> bytes:
    return make_image(tmp_path / "src" / name, size, seed=seed).read_bytes()


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# -- what counts as a URL ---------------------------------------------------------------------
def test_urls_are_recognised_also_after_pathlib_ate_a_slash(tmp_path):
    assert url_of("https://upload.wikimedia.org/a/b.jpg") == "https://upload.wikimedia.org/a/b.jpg"
    assert url_of(Path("http://127.0.0.1:8000/c.png")) == "http://127.0.0.1:8000/c.png"
    assert url_of("photo.jpg") is None and url_of(Path("photos/a.png")) is None
    assert url_of("ftp://host/a.png") is None and url_of(3) is None
    assert url_stem("https://x.org/thumb/a/ab/E.jpg/1280px-E.jpg?x=1") == "1280px-E"
    assert url_cache_path("http://a/x.png") != url_cache_path("http://b/x.png")
    # A URL's '?' and '[' are its query, not a glob of frames; its stem is one plain name.
    assert not is_video_input("http://h/q.png?size=[2].png")
    assert url_stem("http://h/a/..%2F..%2Fx y.png?q=/../../z") == "x_y"
    assert url_stem("http://h/..?q=/../../z") == "image"


# -- content and style by URL, through the CLI ------------------------------------------------
def test_style_with_url_content_and_style(tmp_path, server, backbone_file, capsys, monkeypatch):
    server.routes["/c.png"] = Route(png(tmp_path, "c.png", seed=1))
    server.routes["/art/s.png"] = Route(png(tmp_path, "s.png", seed=2))
    monkeypatch.chdir(tmp_path)
    args = ["style", f"{server.base}/c.png", f"{server.base}/art/s.png", "--backbone",
            f"{backbone_file}:build", "--content-layers", "r2", "--style-layers", "r1,r2",
            "--size", "32", "--iterations", "1", "--device", "cpu", "--precision", "fp32"]
    code, out, err = run_cli([*args, "-o", "out.png"], capsys)
    assert code == 0, err
    assert load_image(tmp_path / "out.png").shape == (3, 32, 32)
    assert sorted(server.hits) == ["/art/s.png", "/c.png"]
    # The default output name is made of the URLs' file stems, in the current folder;
    # the images come from the cache now, the server is not asked again.
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert (tmp_path / "c_s.png").is_file() and len(server.hits) == 2
    assert url_cache_path(f"{server.base}/c.png").read_bytes() == server.routes["/c.png"].body


def test_style_with_a_url_that_is_not_there_is_one_line(tmp_path, server, capsys):
    style = make_image(tmp_path / "s.png")
    code, out, err = run_cli(["style", f"{server.base}/gone/c.png", str(style), "--weights",
                              "random", "-o", str(tmp_path / "o.png")], capsys)
    line = one_line(err)
    assert code != 0 and f"{server.base}/gone/c.png: could not download (HTTP 404" in line
    assert str(url_cache_path(f"{server.base}/gone/c.png")) in line  # where to put it by hand
    assert not (tmp_path / "o.png").exists()


# -- the limits -------------------------------------------------------------------------------
def test_a_download_over_the_size_cap_is_refused_with_or_without_content_length(
        tmp_path, server, monkeypatch):
    monkeypatch.setenv("ARTCONV_MAX_DOWNLOAD", "1000")
    server.routes["/big.png"] = Route(b"x" * 5000)
    server.routes["/sneaky.png"] = Route(b"x" * 5000, length=None)
    with pytest.raises(ArtconvError) as err:
        load_image(f"{server.base}/big.png")
    assert str(err.value).startswith(f"{server.base}/big.png: 5000 bytes, over the 1000 bytes "
                                     "download limit (set ARTCONV_MAX_DOWNLOAD higher")
    with pytest.raises(ArtconvError) as err:
        load_image(f"{server.base}/sneaky.png")
    assert str(err.value).startswith(f"{server.base}/sneaky.png: more than 1000 bytes, over")
    assert "\n" not in str(err.value)
    cache = url_cache_path(f"{server.base}/big.png").parent
    assert not cache.exists() or list(cache.iterdir()) == []  # nothing partial is kept
    server.routes["/small.png"] = Route(png(tmp_path, "small.png", (8, 8)))
    assert load_image(f"{server.base}/small.png").shape == (3, 8, 8)  # under the cap: fine


def test_a_silent_server_times_out_quickly_with_one_line(server, monkeypatch):
    monkeypatch.setenv("ARTCONV_DOWNLOAD_TIMEOUT", "0.3")
    server.routes["/slow.png"] = Route(b"x" * 100, stall=20)
    start = time.monotonic()
    with pytest.raises(ArtconvError) as err:
        load_image(f"{server.base}/slow.png")
    assert time.monotonic() - start < 5
    assert str(err.value).startswith(f"{server.base}/slow.png: no answer within 0.3 s (set "
                                     "ARTCONV_DOWNLOAD_TIMEOUT higher")
    assert "\n" not in str(err.value)


def test_a_trickling_download_meets_its_deadline_and_leaves_nothing(tmp_path, server,
                                                                    monkeypatch):
    """A server sending a byte every 50 ms is never silent for the 0.2 s timeout; the whole
    download (10 x the timeout) is still given up, and no temporary stays in the cache."""
    monkeypatch.setenv("ARTCONV_DOWNLOAD_TIMEOUT", "0.2")
    server.routes["/drip.png"] = Route(b"x" * 2000, drip=0.05)  # 100 s in all
    start = time.monotonic()
    with pytest.raises(ArtconvError) as err:
        load_image(f"{server.base}/drip.png")
    assert time.monotonic() - start < 6
    assert one_line(str(err.value)).startswith(f"{server.base}/drip.png: not downloaded "
                                               "within 2 s (10 x ARTCONV_DOWNLOAD_TIMEOUT")
    cache = url_cache_path(f"{server.base}/drip.png").parent
    assert not cache.exists() or list(cache.iterdir()) == []


def test_what_a_killed_download_left_in_the_cache_is_removed(tmp_path, server, monkeypatch):
    server.routes["/k.png"] = Route(png(tmp_path, "k.png", (8, 8)))
    dst = url_cache_path(f"{server.base}/k.png")
    dst.parent.mkdir(parents=True)
    stale, live = dst.parent / f".{dst.name}.abc.tmp", dst.parent / f".{dst.name}.def.tmp"
    stale.write_bytes(b"")
    live.write_bytes(b"")
    os.utime(stale, (time.time() - 3600,) * 2)
    assert load_image(f"{server.base}/k.png").shape == (3, 8, 8)
    assert sorted(dst.parent.iterdir()) == sorted([dst, live])  # a live one may still write


def test_a_redirect_to_anything_but_http_is_refused(tmp_path, server):
    server.routes["/moved.png"] = Route(b"", location="ftp://127.0.0.1:1/x.png")
    server.routes["/file.png"] = Route(b"", location="file:///etc/passwd")
    server.routes["/ok.png"] = Route(b"", location="/real.png")
    server.routes["/real.png"] = Route(png(tmp_path, "real.png", (8, 8)))
    for name in ("moved", "file"):
        with pytest.raises(ArtconvError) as err:
            load_image(f"{server.base}/{name}.png")
        line = one_line(str(err.value))
        assert line.startswith(f"{server.base}/{name}.png: ") and "not an http(s) URL" in line
        assert not url_cache_path(f"{server.base}/{name}.png").exists()
    assert load_image(f"{server.base}/ok.png").shape == (3, 8, 8)  # http redirects still work


def test_bad_limits_in_the_environment_are_named(server, monkeypatch):
    monkeypatch.setenv("ARTCONV_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(ArtconvError, match="ARTCONV_DOWNLOAD_TIMEOUT='soon': expected"):
        load_image(f"{server.base}/any.png")


def test_a_url_image_over_the_pixel_limit_is_refused_naming_the_url(tmp_path, server,
                                                                    monkeypatch):
    server.routes["/wide.png"] = Route(png(tmp_path, "wide.png", (64, 48)))
    monkeypatch.setenv("ARTCONV_MAX_PIXELS", "1000")
    with pytest.raises(ArtconvError) as err:
        load_image(f"{server.base}/wide.png")
    assert str(err.value).startswith(f"{server.base}/wide.png: 64x48 is 3072 pixels, over "
                                     "the 1000 pixels limit")
    assert image_hw(f"{server.base}/wide.png") == (48, 64)  # the header only: no limit


def test_a_web_page_or_a_broken_file_is_named_and_not_kept(tmp_path, server):
    server.routes["/page.png"] = Route(b"<html>hello</html>", kind="text/html")
    with pytest.raises(ArtconvError, match=r"/page.png: the server sent a web page"):
        load_image(f"{server.base}/page.png")
    server.routes["/junk.png"] = Route(b"not a picture at all")
    with pytest.raises(ArtconvError) as err:
        load_image(f"{server.base}/junk.png")
    assert str(err.value).startswith(f"{server.base}/junk.png: not an image file")
    assert not url_cache_path(f"{server.base}/junk.png").exists()  # the next try fetches


# -- presets: the famous paintings, and --fetch -----------------------------------------------
@pytest.mark.parametrize("name", FAMOUS)
def test_every_famous_style_preset_names_an_https_image_and_its_licence(name):
    data = tomllib.loads((STYLES / f"{name}.toml").read_text(encoding="utf-8"))
    preset = {p.name: p for p in list_presets()}[name]
    assert preset.engine == "style" and data["engine"] == "style"
    assert len(preset.images) == 1
    assert preset.images[0].startswith("https://upload.wikimedia.org/wikipedia/commons/")
    assert preset.licence == "public domain"
    assert preset.source.startswith("https://commons.wikimedia.org/wiki/File:")
    assert any(year in preset.description for year in ("18", "19"))  # it names the year


def _fetch_presets(tmp_path: Path, server: Server, monkeypatch) -> Path:
    folder = tmp_path / "styles"
    folder.mkdir()
    for name in ("one", "two"):
        server.routes[f"/{name}.png"] = Route(png(tmp_path, f"{name}.png"))
        (folder / f"{name}.toml").write_text(
            f'description = "{name}"\nengine = "style"\nimages = ["{server.base}/{name}.png"]\n'
            'licence = "public domain"\nsource = "somewhere"\n', encoding="utf-8")
    monkeypatch.setenv("ARTCONV_STYLES", str(folder))
    # only this folder: the bundled presets' images are on Wikimedia, out of a test's reach
    monkeypatch.setattr("artconv.presets.preset_dirs", lambda: [folder])
    return folder


def test_presets_fetch_downloads_every_preset_image(tmp_path, server, monkeypatch, capsys):
    _fetch_presets(tmp_path, server, monkeypatch)
    code, out, err = run_cli(["presets", "--fetch"], capsys)
    assert code == 0, err
    assert "fetched one:" in out and "fetched two:" in out and "2 of 2" in out
    assert url_cache_path(f"{server.base}/one.png").is_file()
    code, out, err = run_cli(["presets", "--fetch", "--json"], capsys)
    rows = json.loads(out)
    assert code == 0 and {r["status"] for r in rows} == {"cached"} and len(server.hits) == 2


def test_presets_fetch_names_a_failing_url_and_exits_1(tmp_path, server, monkeypatch, capsys):
    folder = _fetch_presets(tmp_path, server, monkeypatch)
    (folder / "gone.toml").write_text(
        f'description = "x"\nengine = "style"\nimages = ["{server.base}/gone.png"]\n')
    code, out, err = run_cli(["presets", "--fetch"], capsys)
    assert code == 1
    failed = [line for line in out.splitlines() if line.startswith("failed")]
    assert len(failed) == 1 and f"{server.base}/gone.png: could not download" in failed[0]
    assert f"save it as {url_cache_path(f'{server.base}/gone.png')}" in failed[0]
    assert "2 of 3 preset images in the cache; 1 failed" in out
    assert url_cache_path(f"{server.base}/one.png").is_file()  # the others still came
    code, out, err = run_cli(["presets", "--fetch", "--json"], capsys)
    rows = {r["preset"]: r for r in json.loads(out)}
    assert code == 1 and rows["gone"]["status"] == "failed" and rows["one"]["status"] == "cached"


def test_presets_lists_licence_and_source(tmp_path, server, monkeypatch, capsys):
    _fetch_presets(tmp_path, server, monkeypatch)
    code, out, err = run_cli(["presets", "--json"], capsys)
    one = next(p for p in json.loads(out) if p["name"] == "one")
    assert (one["licence"], one["source"]) == ("public domain", "somewhere")
    assert server.hits == []  # listing downloads nothing


def test_a_preset_url_downloads_once(tmp_path, server):
    server.routes["/p.png"] = Route(png(tmp_path, "p.png"))
    first = download_image(f"{server.base}/p.png", quiet=True)
    assert download_image(f"{server.base}/p.png") == first and server.hits == ["/p.png"]



# -- URL inputs of a batch --------------------------------------------------------------------
def test_a_batch_takes_url_inputs_into_its_out_dir(tmp_path, server, backbone_file, capsys):
    server.routes["/photos/c.png"] = Route(png(tmp_path, "c.png", seed=1))
    url = f"{server.base}/photos/c.png"
    args = ["batch", "dream", url, "--backbone", f"{backbone_file}:build", "--layers", "r3",
            "--octaves", "1", "--steps", "1", "--device", "cpu", "--precision", "fp32",
            "--quiet"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "a URL input needs --out-dir" in one_line(err)
    code, _, err = run_cli([*args, "--out-dir", str(tmp_path / "out")], capsys)
    assert code == 0, err
    out = tmp_path / "out" / "c_dream.png"
    assert load_image(out).shape == (3, 32, 32)
    assert read_recipe(out)["inputs"] == [url]
    code, _, err = run_cli([*args, "--out-dir", str(tmp_path / "out")], capsys)
    assert code == 0 and server.hits == ["/photos/c.png"]  # skipped: done, not fetched again


# -- default outputs of a URL input: one safe name in the current folder ----------------------
def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def test_a_urls_default_output_is_a_plain_name_in_the_current_folder(tmp_path, server,
                                                                     backbone_file, capsys,
                                                                     monkeypatch):
    """The URL's text (its query may hold '/../') never becomes a path: dream, style and a
    batch template all name the output from the URL path's last segment, sanitised."""
    body = png(tmp_path, "q.png", seed=1)
    hostile = "/q.png?y=/../../../../escaped"
    server.routes[hostile] = Route(body)
    server.routes["/a/b%20c%3B.png?x=/../up"] = Route(body)
    work = tmp_path / "w1" / "w2" / "w3" / "w4" / "here"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    before = _files(tmp_path)
    net = ["--backbone", f"{backbone_file}:build", "--device", "cpu", "--precision", "fp32",
           "--quiet"]
    dream = ["--layers", "r3", "--octaves", "1", "--steps", "1", "--size", "32"]
    code, _, err = run_cli(["dream", server.base + hostile, *net, *dream], capsys)
    assert code == 0, err
    style = f"{server.base}/a/b%20c%3B.png?x=/../up"
    code, _, err = run_cli(["style", server.base + hostile, style, *net,
                            "--content-layers", "r2", "--style-layers", "r1,r2",
                            "--size", "32", "--iterations", "1"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["batch", "dream", server.base + hostile, "--out-dir", "out",
                            "--template", "{content}-{engine}.png", *net, *dream], capsys)
    assert code == 0, err
    assert _files(tmp_path) - before == {Path("w1/w2/w3/w4/here") / p for p in
                                         ("q_dream.png", "q_b_c.png", "out", "out/q-dream.png")}
