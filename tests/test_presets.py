"""Presets: listing, lookup order, malformed files (file, key and line named), images by
URL (cached once per URL, size checked, clear offline)."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from artconv.errors import ArtconvError
from artconv.presets import download_image, find_preset, list_presets, options_for, read_preset
from artconv.style import StyleOptions
from tests.conftest import make_image


def test_bundled_presets_are_listed_and_valid():
    names = {p.name: p for p in list_presets()}
    assert {"gatys", "hq", "fast-preview", "dream-soft", "dream-deep"} <= set(names)
    assert all(p.description for p in names.values())
    assert names["hq"].engine == "style" and names["dream-deep"].engine == "dream"


def test_user_presets_come_first_and_explicit_options_win(tmp_path, monkeypatch):
    (tmp_path / "hq.toml").write_text('description = "mine"\nengine = "style"\n'
                                      '[options]\niterations = [7]\npooling = "avg"\n')
    monkeypatch.setenv("ARTCONV_STYLES", str(tmp_path))
    assert find_preset("hq").description == "mine"
    opts = options_for(StyleOptions, "hq", {"pooling": "max", "seed": None})
    assert opts.iterations == (7,) and opts.pooling == "max"


def test_malformed_preset_names_file_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTCONV_STYLES", str(tmp_path))
    (tmp_path / "bad.toml").write_text('engine = "style"\n[options]\niteratons = 5\n')
    with pytest.raises(ArtconvError, match=r"bad.toml: unknown option 'iteratons'"):
        find_preset("bad")
    (tmp_path / "worse.toml").write_text('engine = "style"\ncolour = 1\n')
    with pytest.raises(ArtconvError, match=r"worse.toml: unknown key 'colour'"):
        find_preset("worse")
    with pytest.raises(ArtconvError, match=r"unknown preset 'nope'"):
        find_preset("nope")


# -- one merge: defaults < presets named as inputs < --preset < flags ---------------------------
def _preset(folder: Path, name: str, engine: str, options: str, images: str = "") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f'engine = "{engine}"\n{images}[options]\n{options}\n')
    return path


def test_options_for_merges_in_one_order(tmp_path, monkeypatch):
    from artconv.deepdream import DreamOptions
    from artconv.presets import resolve_sources

    monkeypatch.setenv("ARTCONV_STYLES", str(tmp_path))
    make_image(tmp_path / "wave.png")
    _preset(tmp_path, "waves", "style", 'pooling = "avg"\nseed = 3\niterations = [9]',
            'images = ["wave.png"]\n')
    _preset(tmp_path, "fine", "style", "seed = 4\niterations = [7]")
    sources = resolve_sources(["waves", str(tmp_path / "wave.png")], "style")
    assert sources.images == [tmp_path / "wave.png", str(tmp_path / "wave.png")]
    assert sources.names == ["waves", "wave"]
    assert sources.preset_options == {"pooling": "avg", "seed": 3, "iterations": [9]}
    opts = options_for("style", "fine", {"iterations": "5", "seed": None},
                       named=sources.presets)
    assert (opts.pooling, opts.seed, opts.iterations) == ("avg", 4, (5,))
    assert options_for(StyleOptions, None, {}) == StyleOptions()  # a class works too
    base = DreamOptions(steps=3, octaves=2)
    assert options_for("dream", None, {"steps": 5}, base=base) == base.replace(steps=5)


def test_a_preset_of_another_engine_is_refused_by_every_caller(tmp_path, monkeypatch):
    from artconv.presets import resolve_sources

    monkeypatch.setenv("ARTCONV_STYLES", str(tmp_path))
    _preset(tmp_path, "deep", "dream", "steps = 3")
    for call in (lambda: options_for("style", "deep", {}),
                 lambda: options_for(StyleOptions, "deep", {}),
                 lambda: resolve_sources(["deep"], "style")):
        with pytest.raises(ArtconvError, match=r"deep.toml: preset 'deep' is for dream, "
                                               r"not style"):
            call()
    _preset(tmp_path, "bare", "style", "seed = 1")
    with pytest.raises(ArtconvError, match=r"preset 'bare' has no style images; use it as "
                                           r"--preset bare"):
        resolve_sources(["bare"], "style")


def test_presets_load_without_torch():
    import subprocess
    import sys

    code = ("import sys; from artconv.presets import list_presets, options_for; "
            "[options_for(p.engine, p) for p in list_presets()]; "
            "sys.exit(3 if 'torch' in sys.modules else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr or "presets imported torch"


# -- 12. images by URL: cached per URL, size checked --------------------------------------------
PRESET = """description = "x"
engine = "style"

[options]
pooling = "avg"
{line}
"""


@pytest.mark.parametrize("line, fragments", [
    ('iterations = "many"', ["[options] iterations (line 6): --iterations 'many'",
                             "whole number"]),
    ("style_weight = -1", ["[options] style_weight (line 6): --style-weight -1",
                           "at least"]),
    ('optimizer = "sgd"', ["[options] optimizer (line 6): --optimizer 'sgd'"]),
    ("stlye_weight = 1", ["unknown option 'stlye_weight' (line 6) for StyleOptions"]),
])
def test_a_bad_preset_value_names_the_file_the_key_and_the_line(tmp_path, line, fragments):
    path = tmp_path / "mine.toml"
    path.write_text(PRESET.format(line=line))
    with pytest.raises(ArtconvError) as err:
        read_preset(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_top_level_preset_errors_give_the_line(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('description = "x"\n\nengine = "paint"\n')
    with pytest.raises(ArtconvError, match=r"mine.toml: 'engine' \(line 3\) must be one of"):
        read_preset(path)


def test_a_key_spelt_where_no_line_is_known_is_still_named(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('engine = "style"\noptions = { pooling = "avg", iterations = "x" }\n')
    with pytest.raises(ArtconvError, match=r"mine.toml: \[options\] iterations: --iterations"):
        read_preset(path)


@pytest.fixture
def server(monkeypatch) -> Iterator[tuple[str, dict[str, tuple[bytes, int | None]]]]:
    """A local HTTP server: routes maps a path to (body, declared Content-Length)."""
    routes: dict[str, tuple[bytes, int | None]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path not in routes:
                self.send_error(404)
                return
            body, length = routes[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    no_proxy(monkeypatch)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    finally:
        httpd.shutdown()
        httpd.server_close()


def no_proxy(monkeypatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")


def png_bytes(tmp_path: Path, seed: int) -> bytes:
    return make_image(tmp_path / f"src{seed}.png", seed=seed).read_bytes()


def test_two_urls_ending_in_one_name_get_two_cache_files(tmp_path, monkeypatch, server):
    base, routes = server
    routes["/a/starry.png"] = (png_bytes(tmp_path, 1), None)
    routes["/b/starry.png"] = (png_bytes(tmp_path, 2), None)
    monkeypatch.setenv("ARTCONV_STYLES", str(tmp_path))
    (tmp_path / "two.toml").write_text(
        f'engine = "style"\ndescription = "x"\n'
        f'images = ["{base}/a/starry.png", "{base}/b/starry.png"]\n')
    first, second = find_preset("two").image_paths()
    assert first != second and first.name.endswith("starry.png")
    assert first.read_bytes() == routes["/a/starry.png"][0]
    assert second.read_bytes() == routes["/b/starry.png"][0]
    key = hashlib.sha256(f"{base}/a/starry.png".encode()).hexdigest()[:16]
    assert first.name == f"{key}-starry.png"
    routes.clear()  # cached: the server is not asked again
    assert find_preset("two").image_paths() == [first, second]


def test_a_download_shorter_than_its_content_length_is_refused(tmp_path, server):
    base, routes = server
    routes["/cut/wave.png"] = (b"only ten b", 1000)
    with pytest.raises(ArtconvError, match=r"wave.png: download incomplete \(10 of 1000"):
        download_image(f"{base}/cut/wave.png")
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "artconv" / "images"
    assert list(cache.iterdir()) == []  # nothing half-downloaded enters the cache


def test_a_missing_url_is_one_clear_line(tmp_path, server):
    base, _ = server
    with pytest.raises(ArtconvError) as err:
        download_image(f"{base}/nope/x.png")
    message = str(err.value)
    assert message.startswith(f"{base}/nope/x.png: could not download (HTTP 404 Not Found)")
    assert "x.png" in message.split("save it as")[1] and "\n" not in message


def test_a_port_nobody_listens_on_is_one_clear_line(monkeypatch):
    no_proxy(monkeypatch)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/art/wave.jpg"
    with pytest.raises(ArtconvError) as err:
        download_image(url)
    assert str(err.value).startswith(f"{url}: could not download (")
    assert "\n" not in str(err.value)


def test_licence_and_source_are_strings_shown_with_the_preset(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('engine = "style"\nlicence = "CC0"\nsource = "https://example.org/p"\n')
    preset = read_preset(path)
    assert (preset.licence, preset.source) == ("CC0", "https://example.org/p")
    path.write_text('engine = "style"\nlicence = 1\n')
    with pytest.raises(ArtconvError, match=r"p.toml: 'licence' \(line 2\) must be a string"):
        read_preset(path)
