"""The compact L-BFGS takes the iterates of torch.optim.LBFGS as the style engine drives it
(max_iter=1, no line search, the gradient already in .grad)."""

from __future__ import annotations

import pytest
import torch

from artconv.nets.extractor import FeatureExtractor
from artconv.style import StyleOptions, StyleTransfer
from artconv.style.lbfgs import CompactLBFGS
from artconv.style.optimise import ScaleRun
from tests.conftest import tiny_sequential


def _iterates(make, value_and_grad, x0: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """Drive an optimiser as ScaleRun does: evaluate, put the gradient in .grad, step."""
    x = x0.clone().requires_grad_(True)
    opt = make([x])
    out = []
    for _ in range(steps):
        loss, grad = value_and_grad(x.detach())
        x.grad = grad
        opt.step(lambda loss=loss: float(loss))
        out.append(x.detach().clone())
    return out


def _torch(history: int, lr: float = 1.0):
    return lambda p: torch.optim.LBFGS(p, lr=lr, max_iter=1, history_size=history,
                                       tolerance_grad=-1, tolerance_change=-1)


def _compact(history: int, lr: float = 1.0):
    return lambda p: CompactLBFGS(p, lr=lr, history_size=history, tolerance_change=-1)


@pytest.mark.parametrize("history", [5, 100])  # 5: the ring wraps within the 20 steps
def test_same_iterates_as_torch_on_a_quadratic(history):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(64, 64, generator=gen, dtype=torch.float64)
    hess = (a @ a.T / 64 + 0.1 * torch.eye(64, dtype=torch.float64)).float()
    b = torch.randn(64, generator=gen)

    def value_and_grad(x):
        v = x.reshape(-1)
        g = hess @ v - b
        return 0.5 * v @ hess @ v - b @ v, g.reshape(x.shape)

    x0 = torch.randn(1, 4, 4, 4, generator=gen)
    ref = _iterates(_torch(history, 0.5), value_and_grad, x0, 20)
    got = _iterates(_compact(history, 0.5), value_and_grad, x0, 20)
    for k, (r, g) in enumerate(zip(ref, got, strict=True)):
        assert torch.allclose(g, r, rtol=1e-4, atol=1e-5), f"step {k + 1}"
    assert not torch.allclose(ref[-1], x0)  # it moved


def test_same_iterates_as_torch_on_a_style_objective(tmp_path):
    torch.manual_seed(0)
    st = StyleTransfer(StyleOptions(content_layers=("r3",), style_layers=("r1", "r2", "r3"),
                                    size=32, precision="fp32", device="cpu"),
                       extractor=FeatureExtractor(tiny_sequential()))
    content = torch.rand(1, 3, 32, 32)
    style = torch.rand(3, 32, 32)
    objective = st.objective(content, st.style_targets([style], 32))

    def value_and_grad(x):
        parts, grad = objective.value_and_grad(x)
        return parts.sum(), grad

    ref = _iterates(_torch(100), value_and_grad, content, 20)
    got = _iterates(_compact(100), value_and_grad, content, 20)
    first = value_and_grad(content)[0]
    assert value_and_grad(ref[-1])[0] < 0.5 * first  # the problem is being solved
    for k, (r, g) in enumerate(zip(ref, got, strict=True)):
        assert torch.allclose(g, r, rtol=1e-3, atol=1e-4), f"step {k + 1}"


def test_a_rejected_pair_is_skipped_as_torch_does():
    """A gradient that does not change (y.s = 0) adds no pair and keeps the scaling."""
    def value_and_grad(x):  # linear: constant gradient, every curvature pair rejected
        return x.sum(), torch.ones_like(x)

    x0 = torch.zeros(1, 3, 2, 2)
    ref = _iterates(_torch(3), value_and_grad, x0, 6)
    got = _iterates(_compact(3), value_and_grad, x0, 6)
    for r, g in zip(ref, got, strict=True):
        torch.testing.assert_close(g, r)


def test_no_host_sync_in_a_step(monkeypatch):
    """Nothing is read back from the device in a step (a CUDA step would otherwise wait)."""
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    opt = CompactLBFGS([x], history_size=4, tolerance_change=-1)

    def forbidden(*args, **kwargs):
        raise AssertionError("host read in the optimiser step")

    for _ in range(6):
        x.grad = 2 * x.detach() + 0.1
        with monkeypatch.context() as m:
            m.setattr(torch.Tensor, "item", forbidden)
            m.setattr(torch.Tensor, "__bool__", forbidden)
            m.setattr(torch.Tensor, "__float__", forbidden)
            opt.step()


def test_scale_run_uses_the_compact_optimiser():
    opts = StyleOptions(precision="fp32", device="cpu")
    run = ScaleRun.start(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), opts, False, None)
    assert all(isinstance(o, CompactLBFGS) for o in run.optimizers)
    assert len(run.optimizers) == 2
