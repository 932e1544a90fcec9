"""The measured choice of the statistics' precision: the decision logic with a stubbed
measurement (never by timing), and bf16 statistics keeping the loss within 1 % of fp32."""

from __future__ import annotations

import pytest
import torch

from artconv.losses import functional as lf
from artconv.nets import precision
from artconv.nets.extractor import FeatureExtractor
from tests.conftest import tiny_sequential

CPU = torch.device("cpu")


class Stub:
    """A measurement returning given seconds per kind, counting its calls."""

    def __init__(self, **seconds: float) -> None:
        self.seconds, self.calls = seconds, []

    def __call__(self, kind, device, dtype, channels, positions) -> float:
        self.calls.append((kind, channels, positions))
        return self.seconds[kind]


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.delenv(precision.ENV, raising=False)
    precision.forget()
    yield
    precision.forget()


def test_the_faster_kind_is_chosen():
    assert precision.choose(CPU, torch.bfloat16, 64, 4096, measure=Stub(fp32=2.0, bf16=0.5)) \
        == "bf16"
    assert precision.choose(CPU, torch.bfloat16, 128, 4096, measure=Stub(fp32=0.5, bf16=2.0)) \
        == "fp32"


def test_bf16_must_win_by_the_margin():
    """fp32 is exact: a bf16 that is only about as fast is not worth its rounding."""
    near = Stub(fp32=1.0, bf16=0.95)
    assert precision.choose(CPU, torch.bfloat16, 64, 4096, measure=near) == "fp32"


def test_measured_once_per_device_dtype_and_bucket():
    stub = Stub(fp32=2.0, bf16=1.0)
    for positions in (3000, 4096, 2500):  # one bucket: 4096
        assert precision.choose(CPU, torch.bfloat16, 64, positions, measure=stub) == "bf16"
    assert len(stub.calls) == 2 * precision.ROUNDS
    assert {c[2] for c in stub.calls} == {4096}
    precision.choose(CPU, torch.bfloat16, 64, 5000, measure=stub)  # the next bucket
    precision.choose(CPU, torch.bfloat16, 128, 4096, measure=stub)  # other channels
    assert len(stub.calls) == 6 * precision.ROUNDS
    assert set(precision.chosen().values()) == {"bf16"}


def test_measurements_are_interleaved_and_the_best_kept():
    """Load from other processes must hit both kinds alike: ABAB, the minimum of each."""
    times = iter([5.0, 1.0, 0.6, 1.0, 5.0, 1.0])  # fp32, bf16, fp32, bf16, ...

    def noisy(kind, *args):
        return next(times)

    assert precision.choose(CPU, torch.bfloat16, 64, 4096, measure=noisy) == "fp32"


def test_fp32_maps_are_never_measured():
    stub = Stub(fp32=1.0, bf16=0.1)
    assert precision.choose(CPU, torch.float32, 64, 4096, measure=stub) == "fp32"
    assert stub.calls == []


def test_the_environment_overrides_the_measurement(monkeypatch):
    stub = Stub(fp32=1.0, bf16=0.1)
    monkeypatch.setenv(precision.ENV, "fp32")
    assert precision.choose(CPU, torch.bfloat16, 64, 4096, measure=stub) == "fp32"
    assert stub.calls == []


def test_buckets_are_powers_of_two_capped():
    assert [precision.bucket(p) for p in (1, 2, 3, 4096, 4097)] == [1, 2, 4, 4096, 8192]
    assert precision.bucket(10**7) == precision.MAX_POSITIONS


@pytest.mark.parametrize("rows", [False, True])
def test_both_kinds_compute_the_same_product_and_gradient(rows):
    f = torch.rand(2, 8, 300, dtype=torch.float64)
    d = torch.rand(2, 8, 8, dtype=torch.float64)
    fb = f.to(torch.bfloat16)
    ref = torch.bmm(f, f.mT)
    ref_grad = torch.bmm(d + d.mT, f)
    for kind in ("fp32", "bf16"):
        prod = precision.product(fb, fb, kind)
        assert prod.dtype == torch.float32
        torch.testing.assert_close(prod.double(), ref, rtol=2e-2, atol=1e-2)
        src = fb.mT.contiguous() if rows else fb
        grad = precision.product_grad(src, d.float(), kind, rows=rows)
        grad = grad.mT if rows else grad
        assert grad.dtype == (torch.bfloat16 if kind == "bf16" else torch.float32)
        torch.testing.assert_close(grad.double(), ref_grad, rtol=2e-2, atol=5e-2)


def _near(f: torch.Tensor, closeness: float) -> torch.Tensor:
    """A target within `closeness` of the exact product of maps f (a converged loss's)."""
    exact = torch.bmm(f.double(), f.double().mT)
    gen = torch.Generator().manual_seed(5)
    return exact * (1 + closeness * torch.randn(exact.shape, generator=gen, dtype=exact.dtype))


@pytest.mark.parametrize("channels, positions", [(8, 300), (64, 4096), (128, 1000)])
def test_the_bf16_difference_is_exact_to_its_own_size_where_the_product_is_not(
        channels, positions):
    """Rounding the product to bf16 and then subtracting a target within 1e-3 loses the
    difference (off by about its own size); the fused difference keeps it to < 1 %."""
    gen = torch.Generator().manual_seed(4)
    f = torch.rand(2, positions, channels, generator=gen).to(torch.bfloat16).mT
    target = _near(f, 1e-3)
    want = torch.bmm(f.double(), f.double().mT) - target
    fused = precision.product(f, f, "bf16", minus=target.float()).double()
    assert fused.dtype == torch.float64
    err = (fused - want).abs().max() / want.abs().max()
    rounded = torch.bmm(f, f.mT).double() - target  # what a bf16 product alone would give
    assert err < 0.01, err
    assert (rounded - want).abs().max() / want.abs().max() > 0.1
    assert precision.fused_error(f[:1]) < precision.INEXACT


def test_a_backend_that_does_not_fuse_is_not_chosen(monkeypatch):
    """If this machine's bf16 difference comes out inexact (rounded before the target is
    taken off), the measurement rules "bf16" out, however fast it is."""
    real = precision.product

    def rounds_first(fm, f, kind, minus=None):
        if kind == "bf16" and minus is not None:
            return torch.bmm(fm, f.mT).float() - minus
        return real(fm, f, kind, minus)

    monkeypatch.setattr(precision, "product", rounds_first)
    assert precision.measure_product("bf16", CPU, torch.bfloat16, 64, 4096) == float("inf")
    assert precision.choose(CPU, torch.bfloat16, 64, 4096) == "fp32"


def _losses(stats: str, monkeypatch, steps: int = 20) -> tuple[float, float]:
    """A small style objective on bf16 features (autocast, as the engines run), through the
    real Gram loss with its statistics in `stats`: Adam steps on the relative Gram loss
    (--loss-scale auto) from a dark start; (first, final) loss scored in fp32 statistics.
    Far from convergence on purpose: at a relative loss of 1e-4 a 1e-3 change of the
    start moves this toy's final loss by 3 %, so no precision could be judged there."""
    torch.manual_seed(0)
    fx = FeatureExtractor(tiny_sequential())
    style = torch.rand(1, 3, 48, 48)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        feats = fx(style, ["r1", "r2", "r3"])
    targets = {n: lf.gram(f.float()) for n, f in feats.items()}
    x = (0.3 * torch.rand(1, 3, 48, 48)).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.01)

    def loss_at(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            feats = fx(x, list(targets))
        return sum(lf.gram_loss(f, targets[n]) / lf.gram_scale(targets[n])
                   for n, f in feats.items())

    def scored(x):
        monkeypatch.setenv(precision.ENV, "fp32")
        with torch.no_grad():
            return float(loss_at(x).sum())

    first = scored(x)
    monkeypatch.setenv(precision.ENV, stats)
    for _ in range(steps):
        opt.zero_grad()
        loss_at(x).sum().backward()
        opt.step()
    return first, scored(x)


def test_bf16_statistics_keep_the_loss_within_one_percent_of_fp32(monkeypatch):
    (first, fp32), (_, bf16) = _losses("fp32", monkeypatch), _losses("bf16", monkeypatch)
    assert fp32 < first / 5  # it optimised
    assert abs(bf16 - fp32) <= 0.01 * fp32, (bf16, fp32)


def test_the_gram_loss_takes_the_fused_difference_where_bf16_is_chosen(monkeypatch):
    """Near convergence (target within 1e-3 of the Gram), bf16 statistics give the loss
    and its gradient within 1 % of fp32 statistics, on the same bf16 maps."""
    gen = torch.Generator().manual_seed(6)
    maps = torch.rand(1, 32, 24, 24, generator=gen).to(torch.bfloat16)
    maps = maps.contiguous(memory_format=torch.channels_last)
    target = (_near(maps.flatten(2), 1e-3) / (32 * 24 * 24)).float()
    found = {}
    for stats in ("fp32", "bf16"):
        monkeypatch.setenv(precision.ENV, stats)
        assert precision.fuses(CPU, torch.bfloat16, 32, 576) == (stats == "bf16")
        leaf = maps.clone().requires_grad_(True)
        loss = lf.gram_loss(leaf, target)
        (grad,) = torch.autograd.grad(loss.sum(), leaf)
        found[stats] = (float(loss.detach()), grad.float())
    (l32, g32), (l16, g16) = found["fp32"], found["bf16"]
    assert abs(l16 - l32) <= 0.01 * l32, (l16, l32)
    assert float((g16 - g32).norm() / g32.norm()) < 0.02


def test_gathered_gram_sums_are_a_fused_difference_where_bf16_is_chosen(monkeypatch):
    """A tiled run's Gram sums over bf16 tiles near convergence: the fused difference from
    each tile's share of the target gives the loss within 1 % of fp32 sums."""
    from artconv import losses

    gen = torch.Generator().manual_seed(7)
    maps = torch.rand(1, 32, 24, 24, generator=gen).to(torch.bfloat16)
    maps = maps.contiguous(memory_format=torch.channels_last)
    target = (_near(maps.flatten(2), 1e-3) / (32 * 24 * 24)).float()
    style = losses.Style({"a": target}, [("a", 1.0)])
    fused = []
    real = precision.product
    monkeypatch.setattr(precision, "product", lambda fm, f, kind, minus=None: (
        fused.append(minus is not None and kind == "bf16") or real(fm, f, kind, minus)))
    found = {}
    for stats in ("fp32", "bf16"):
        monkeypatch.setenv(precision.ENV, stats)
        sums: losses.Sums = {}
        for rows in (slice(0, 10), slice(10, 24)):
            for cols in (slice(0, 7), slice(7, 24)):
                owned = maps[..., rows, cols].permute(0, 2, 3, 1).reshape(1, -1, 32).mT
                style.sums({"a": losses.Part((rows, cols), (24, 24), owned)}, into=sums)
        found[stats] = float(style.from_sums(sums, {"a": (24, 24)}))
        assert fused == [stats == "bf16"] * 4
        fused.clear()
    assert abs(found["bf16"] - found["fp32"]) <= 0.01 * found["fp32"], found
