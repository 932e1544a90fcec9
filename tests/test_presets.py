"""Presets: listing, lookup order, malformed files, images by URL (cached once, clear offline)."""

from __future__ import annotations

import shutil
import urllib.error

import pytest
import torch

from artconv.errors import ArtconvError
from artconv.presets import find_preset, list_presets, options_for
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


def test_preset_image_url_downloads_once_then_uses_the_cache(tmp_path, monkeypatch):
    source = make_image(tmp_path / "src.jpg")
    calls = []

    def fake_download(url, dst, progress=True):
        calls.append(url)
        shutil.copy(source, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    monkeypatch.setenv("ARTCONV_STYLES", str(tmp_path))
    (tmp_path / "web.toml").write_text('engine = "style"\ndescription = "x"\n'
                                       'images = ["https://example.org/art/starry.jpg"]\n')
    first = find_preset("web").image_paths()
    second = find_preset("web").image_paths()
    assert first == second and first[0].name == "starry.jpg" and first[0].is_file()
    assert calls == ["https://example.org/art/starry.jpg"]


def test_preset_image_url_offline_is_one_clear_line(tmp_path, monkeypatch):
    def offline(url, dst, progress=True):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setenv("ARTCONV_STYLES", str(tmp_path))
    (tmp_path / "web.toml").write_text('engine = "style"\ndescription = "x"\n'
                                       'images = ["https://example.org/art/wave.jpg"]\n')
    with pytest.raises(ArtconvError) as err:
        find_preset("web").image_paths()
    message = str(err.value)
    assert "https://example.org/art/wave.jpg: could not download" in message
    assert "wave.jpg" in message.split("copy it to")[1] and "\n" not in message
