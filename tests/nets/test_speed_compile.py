"""The opt-in `compile` option (issue 16): off by default; on, the extractor's forward goes
through torch.compile (stubbed here: a real compile takes minutes on a small CPU) with the
same maps as the eager loop; a compiler that fails is one clear error, never a traceback."""

from __future__ import annotations

import pytest
import torch

from artconv.deepdream.options import DreamOptions
from artconv.errors import ArtconvError
from artconv.nets.extractor import FeatureExtractor
from artconv.style import StyleOptions
from tests.conftest import tiny_sequential


@pytest.fixture
def compiled(monkeypatch):
    """torch.compile replaced by a recorder that returns the function itself."""
    calls = []

    def fake_compile(fn, **kwargs):
        calls.append(kwargs)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    return calls


def backbone_options(backbone_file, cls=StyleOptions, **changes):
    return cls(backbone=f"{backbone_file}:build", device="cpu", precision="fp32", **changes)


def test_compile_is_off_by_default(backbone_file, compiled):
    assert StyleOptions().compile is False and DreamOptions().compile is False
    fx = FeatureExtractor.from_options(backbone_options(backbone_file))
    fx(torch.rand(1, 3, 32, 32), ["r1", "r3"])
    assert fx.use_compile is False and compiled == []


@pytest.mark.parametrize("cls", [StyleOptions, DreamOptions])
def test_compiled_forward_gives_the_eager_maps_and_gradient(backbone_file, compiled, cls):
    fx = FeatureExtractor.from_options(backbone_options(backbone_file, cls, compile=True))
    eager = FeatureExtractor(tiny_sequential())
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    got = fx(x, ["r3", "r1"])
    want = eager(x, ["r1", "r3"])
    assert list(got) == ["r1", "r3"] and len(compiled) == 1
    for name in want:
        torch.testing.assert_close(got[name], want[name])
    (g_got,) = torch.autograd.grad(sum(m.square().mean() for m in got.values()), x)
    (g_want,) = torch.autograd.grad(sum(m.square().mean() for m in want.values()), x)
    torch.testing.assert_close(g_got, g_want)
    fx(x, ["r1", "r3"])
    assert len(compiled) == 1  # one compiled function per request, kept


def test_user_hooks_run_eagerly(backbone_file, compiled):
    fx = FeatureExtractor.from_options(backbone_options(backbone_file, compile=True))
    seen = []
    handle = fx.add_hook("r1", lambda module, inputs, output: seen.append(output.shape))
    fx(torch.rand(1, 3, 32, 32), ["r3"])
    assert seen and compiled == []
    handle.remove()
    fx(torch.rand(1, 3, 32, 32), ["r3"])
    assert len(compiled) == 1


def test_a_failing_compiler_is_one_clear_error(backbone_file, monkeypatch):
    def broken(fn, **kwargs):
        def run(*args):
            raise RuntimeError("InductorError: no working C++ compiler\nlong traceback")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    fx = FeatureExtractor.from_options(backbone_options(backbone_file, compile=True))
    with pytest.raises(ArtconvError) as caught:
        fx(torch.rand(1, 3, 32, 32), ["r3"])
    message = str(caught.value)
    assert message.startswith("--compile: torch.compile failed here") and "\n" not in message
    assert "without --compile" in message
