"""Shared fixtures: tiny images made on the fly and random-weight networks (no downloads)."""

from __future__ import annotations

import contextlib
import os
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Never touch the user's torch hub cache or presets; never reach the network."""
    home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg"))
    torch.hub.set_dir(str(home / "hub"))
    # One thread: tiny tensors gain nothing from more, and OpenMP's spinning threads slow
    # tests many-fold when the machine is busy. Subprocesses (CLI tests) inherit the env.
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def make_image(path: Path, size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    """A smooth colourful test picture (gradients plus a disc), saved at `path` (w, h)."""
    w, h = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    cx, cy = rng.uniform(0.3, 0.7, 2)
    disc = ((x - cx) ** 2 + (y - cy) ** 2 < 0.05).astype(float)
    rgb = np.stack([x, y, 0.5 * (1 - x) + 0.5 * disc], -1)
    rgb = (rgb + 0.05 * rng.standard_normal(rgb.shape)).clip(0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rgb * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def image_file(tmp_path) -> Path:
    return make_image(tmp_path / "content.png")


@pytest.fixture
def style_file(tmp_path) -> Path:
    return make_image(tmp_path / "style.png", (40, 40), seed=1)


@pytest.fixture(scope="session")
def random_vgg():
    """A random-weight VGG19 extractor (max pooling), built once per test session."""
    from artconv.nets.extractor import FeatureExtractor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FeatureExtractor.vgg("vgg19", "random")


BACKBONE_SOURCE = '''
from collections import OrderedDict

import torch
from torch import nn

def build():
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict([
        ("c1", nn.Conv2d(3, 8, 3, padding=1)), ("r1", nn.ReLU()),
        ("p1", nn.MaxPool2d(2)),
        ("c2", nn.Conv2d(8, 16, 3, padding=1)), ("r2", nn.ReLU()),
        ("p2", nn.MaxPool2d(2)),
        ("c3", nn.Conv2d(16, 16, 3, padding=1)), ("r3", nn.ReLU()),
    ])).eval()
'''


def tiny_sequential() -> nn.Sequential:
    """A small VGG-like own backbone (layers c1,r1,p1,c2,r2,p2,c3,r3; RGB [0,1] input): the
    same network `backbone_file`'s `build()` returns."""
    namespace: dict = {}
    exec(BACKBONE_SOURCE, namespace)
    return namespace["build"]()


def style_grid(tmp_path: Path, backbone_file: Path, contents: int = 3, styles: int = 2):
    """Content and style images plus fast StyleOptions on the tiny backbone, for batches."""
    from artconv.style import StyleOptions

    content_paths = [make_image(tmp_path / "in" / f"photo{i}.png", (40, 32), seed=i)
                     for i in range(contents)]
    style_paths = [make_image(tmp_path / "styles" / f"paint{i}.png", (32, 32), seed=10 + i)
                   for i in range(styles)]
    opts = StyleOptions(backbone=f"{backbone_file}:build", size=32, iterations=(3,),
                        content_layers=("r2",), style_layers=("r1", "r2"), precision="fp32")
    return content_paths, style_paths, opts


@pytest.fixture
def backbone_file(tmp_path) -> Path:
    """A FILE.py whose `build()` returns `tiny_sequential()` (for --backbone FILE.py:build)."""
    path = tmp_path / "mynet.py"
    path.write_text(BACKBONE_SOURCE)
    return path


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """`artconv ARGS` in this process: (exit code, stdout, stderr)."""
    from artconv.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@contextlib.contextmanager
def local_ray(tmp_path_factory, num_cpus: int = 2) -> Iterator[str]:
    """A local Ray instance (for a module's fixture); yields its GCS address (HOST:PORT).
    Workers get an empty TORCH_HOME: no user cache, no downloads."""
    import ray

    home = str(tmp_path_factory.mktemp("ray_torch_home"))
    saved = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = home  # workers inherit it
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING")
    finally:
        if saved is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = saved
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


class LiveTensors(TorchDispatchMode):
    """Peak bytes of live tensors of at least `min_bytes` made by torch ops (the image-sized
    buffers of an engine run, counted exactly, whatever the allocator keeps)."""

    def __init__(self, min_bytes: int) -> None:
        super().__init__()
        self.min_bytes, self.live, self.now, self.peak = min_bytes, {}, 0, 0

    def _free(self, ptr: int) -> None:
        self.now -= self.live.pop(ptr, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes() >= self.min_bytes:
                ptr = t.untyped_storage().data_ptr()
                if ptr not in self.live:
                    self.live[ptr] = t.untyped_storage().nbytes()
                    self.now += self.live[ptr]
                    weakref.finalize(t, self._free, ptr)
        self.peak = max(self.peak, self.now)
        return out
