"""Old flat module paths (`artconv.core`, ...) still import for one release, as the very
module at the new path, and warn; packages offer their public names lazily, one way."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import artconv
from artconv._moved import MOVED


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_an_old_path_warns_and_gives_the_same_module(old, new, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)  # a first import in this process
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated.*import {new}") as seen:
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert seen[0].filename == __file__  # the warning names the importing line


def test_from_import_of_an_old_path_warns_at_the_importer():
    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            "from artconv import imageio\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0
    assert 'File "<string>", line 2' in done.stderr
    assert "artconv.imageio is deprecated" in done.stderr


def test_the_real_paths_do_not_warn():
    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            "import artconv, artconv.nets.extractor, artconv.io.images\n"
            "from artconv.deepdream import Dreamer, write_gif\n"
            "from artconv.style import StyleTransfer\n"
            "artconv.stylize, artconv.dream_frames, artconv.FeatureExtractor\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("package, modules", [
    ("artconv.style", ["artconv.style.engine"]),
    ("artconv.deepdream", ["artconv.deepdream.engine", "artconv.deepdream.zoom"]),
    ("artconv.features", ["artconv.features.engine"]),
    ("artconv.batch", []),  # its modules keep no __all__: the package lists its own
])
def test_a_package_offers_every_public_name_of_its_modules(package, modules):
    pkg = importlib.import_module(package)
    for public in pkg.__all__:
        getattr(pkg, public)
    for name in modules:
        module = importlib.import_module(name)
        for public in module.__all__:
            assert getattr(pkg, public) is getattr(module, public), f"{package}.{public}"
    with pytest.raises(AttributeError):
        pkg.no_such_name  # noqa: B018


def test_the_top_level_api():
    for name in artconv.__all__:
        assert getattr(artconv, name) is not None
    assert artconv.dream_frames is importlib.import_module("artconv.deepdream.zoom").dream_frames
