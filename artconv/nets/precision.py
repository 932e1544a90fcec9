"""The precision of the feature statistics (the products ``F diag(m) F^T`` behind the Gram
matrix and the W2 moments, and their backward ``(dG + dG^T) F``), chosen by measurement.

Whether a bf16 matmul beats widening the maps to fp32 depends on the machine, not on its
name: on a CPU with AMX (or a GPU's tensor cores) bf16 is several times faster, on one with
only AVX512-BF16 it may be slower than fp32 (measured 59 against 281 GFLOP/s on one Xeon).
So, as cuDNN's benchmark mode does, each candidate is timed once per (device, dtype, shape
bucket) on random maps of that shape, and the faster is kept for the process. Both keep the
sums in fp32: "fp32" widens the maps first; "bf16" multiplies the bf16 maps with fp32
accumulation, on CUDA into an fp32 product (`out_dtype`), and computes the backward in bf16
(no fp32 map and no fp32 gradient map: half the memory traffic).

torch's CPU matmul has no fp32 result for bf16 inputs: it rounds the product to bf16, 2^-9 of
each element, and a converged style loss compares two nearly equal Gram matrices, so that
rounding would move it by several percent. But the loss only needs the *difference* from its
target, and a fused ``baddbmm(-target, F, F^T)`` adds the target to the fp32 accumulator before
the one rounding: the difference then carries 2^-9 of itself, not of the product (`product`'s
`minus`). The target is split into a bf16 head (added in the fused product) and an fp32 tail
(subtracted after), so the target itself is not rounded either. Whether this backend does
fuse is measured too (`measure_product` refuses a "bf16" that comes out inexact).

Set ARTCONV_STATS_PRECISION=fp32 or bf16 to skip the measurement (reproducible runs).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable

import torch

from artconv.device import synchronize

FP32, BF16 = "fp32", "bf16"
MAX_POSITIONS = 1 << 16  # a measurement's maps are at most this many positions long
ROUNDS = 3  # timings of each candidate, interleaved
MARGIN = 0.9  # bf16 must take at most this share of fp32's time to be chosen (fp32 is exact)
ENV = "ARTCONV_STATS_PRECISION"

Key = tuple[str, int, torch.dtype, int, int]
# (kind, device, dtype, channels, positions) -> seconds of one forward + backward product
Measure = Callable[[str, torch.device, torch.dtype, int, int], float]
_chosen: dict[Key, str] = {}


def bucket(positions: int) -> int:
    """Positions rounded up to a power of two, capped: the time of these products grows
    linearly with the positions, so a longer map keeps the ratio of a capped one."""
    return min(1 << max(0, positions - 1).bit_length(), MAX_POSITIONS)


def candidates(dtype: torch.dtype) -> tuple[str, ...]:
    """What a product of maps in `dtype` may run as (fp32 maps have nothing to gain)."""
    return (FP32, BF16) if dtype == torch.bfloat16 else (FP32,)


def choose(device: torch.device, dtype: torch.dtype, channels: int, positions: int, *,
           measure: Measure | None = None) -> str:
    """"fp32" or "bf16" for the statistics of maps (N, `channels`, `positions`) in `dtype`
    on `device`: measured on the first call for the shape's bucket, then remembered."""
    kinds = candidates(dtype)
    if len(kinds) == 1:
        return kinds[0]
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in kinds:
        return forced
    key = (device.type, device.index or 0, dtype, channels, bucket(positions))
    if key not in _chosen:
        timer = measure or measure_product
        times = dict.fromkeys(kinds, float("inf"))
        for _ in range(ROUNDS):  # interleaved, the best of each: load hits both alike
            for kind in kinds:
                times[kind] = min(times[kind], timer(kind, device, dtype, channels, key[-1]))
        _chosen[key] = BF16 if times[BF16] <= MARGIN * times[FP32] else FP32
    return _chosen[key]


def fuses(device: torch.device, dtype: torch.dtype, channels: int, positions: int) -> bool:
    """Whether maps of this shape get their statistics as a fused difference from the
    target (`product`'s `minus`): bf16 maps, "bf16" chosen, on a CPU. Elsewhere the product
    is exact in fp32 by itself, and the loss keeps its plain ``G - target`` arithmetic."""
    return (dtype == torch.bfloat16 and device.type == "cpu"
            and choose(device, dtype, channels, positions) == BF16)


def chosen() -> dict[Key, str]:
    """The decisions taken so far (for benchmarks and bug reports)."""
    return dict(_chosen)


def forget() -> None:
    """Drop the decisions (tests; a process that moved to other hardware)."""
    _chosen.clear()
    _fuses_exactly.cache_clear()


# -- the two implementations ------------------------------------------------------------------
def product(fm: torch.Tensor, f: torch.Tensor, kind: str,
            minus: torch.Tensor | None = None) -> torch.Tensor:
    """``fm @ f^T - minus`` of flattened maps (N,C,P) and an fp32 (N|1,C,C) `minus` (or
    none) as an fp32 (N,C,C): "fp32" widens the maps first, "bf16" multiplies them as they
    are (bf16) into an fp32 product where torch can (CUDA), and on the CPU only with a
    `minus`, fused (see the module's note); without one it widens, as "fp32"."""
    if kind == BF16 and fm.dtype == torch.bfloat16:
        if fm.is_cuda:
            prod = torch.bmm(fm, f.mT, out_dtype=torch.float32)
            return prod if minus is None else prod - minus
        if minus is not None:
            head = minus.to(torch.bfloat16)
            tail = minus - head.float()
            if fm.shape[0] == 1:  # one image: baddbmm would copy a flattened channels_last
                # map (its batch stride is not the one it expects); addmm takes it as it is
                return torch.addmm(-head[0], fm[0], f[0].mT)[None].float().sub_(tail)
            return torch.baddbmm(-head, fm, f.mT).float().sub_(tail)
    wide = _wide(f)  # once: `fm` is `f` itself unless a mask weighs it
    prod = torch.bmm(wide if fm is f else _wide(fm), wide.mT)
    return prod if minus is None else prod - minus


def product_grad(f: torch.Tensor, d_prod: torch.Tensor, kind: str, *, rows: bool = False,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """The gradient ``(dG + dG^T) F`` of `product` w.r.t. the maps F, given F (N,C,P), or
    with `rows` its rows (N,P,C) (a channels_last map's layout; the result is then in rows
    too). "bf16" computes it in bf16, the maps' dtype, with no fp32 map; else in fp32."""
    sym = d_prod + d_prod.mT
    if kind == BF16 and f.dtype == torch.bfloat16:
        sym = sym.to(torch.bfloat16)
    else:
        f = _wide(f)
    a, b = (f, sym) if rows else (sym, f)  # sym is symmetric: rows @ sym = (sym @ F)^T
    return torch.bmm(a, b) if out is None else torch.bmm(a, b, out=out)


def _wide(t: torch.Tensor) -> torch.Tensor:
    """At least fp32 (float64 maps, as tests use, stay float64)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


INEXACT = 2.0 ** -6  # a fused difference off by more than this share of itself is not used


def fused_error(f: torch.Tensor) -> float:
    """The relative error of the "bf16" difference ``f f^T - minus`` of maps (1,C,P) against
    fp32, for a `minus` within 1e-3 of the product (a converged loss's closeness), where
    rounding the product instead of the difference would be off by the difference itself."""
    exact = product(f, f, FP32).double()
    gen = torch.Generator().manual_seed(1)
    near = exact * (1 + 1e-3 * torch.randn(exact.shape, generator=gen, dtype=exact.dtype
                                           ).to(exact.device))
    diff = product(f, f, BF16, minus=near.float()).double()
    want = exact - near
    return float((diff - want).abs().max() / want.abs().max().clamp_min(1e-30))


@functools.cache
def _fuses_exactly(device: torch.device, dtype: torch.dtype, channels: int, positions: int
                   ) -> bool:
    """`fused_error` within `INEXACT` for random maps of this shape (checked once, not in
    every timed round); False where this torch cannot run "bf16" at all (`bmm`'s
    `out_dtype`, which CUDA uses, is newer than the oldest torch artconv supports)."""
    gen = torch.Generator().manual_seed(0)
    f = torch.rand((1, positions, channels), generator=gen).to(device, dtype).mT
    try:
        return fused_error(f) <= INEXACT
    except (RuntimeError, TypeError):
        return False


def measure_product(kind: str, device: torch.device, dtype: torch.dtype, channels: int,
                    positions: int) -> float:
    """Seconds of one forward (a difference from a target, as the Gram loss asks) and one
    backward product on random maps of that shape, as the engines run them (NHWC rows),
    after a warm-up call; infinite for a "bf16" whose difference comes out inexact here."""
    gen = torch.Generator().manual_seed(0)
    rows = torch.rand((1, positions, channels), generator=gen).to(device, dtype)
    f = rows.mT  # (1,C,P), a view as a channels_last map's
    d_prod = torch.rand((1, channels, channels), generator=gen).to(device)
    if kind == BF16 and not _fuses_exactly(device, dtype, channels, positions):
        return float("inf")

    def once() -> None:
        product(f, f, kind, minus=d_prod)
        product_grad(rows, d_prod, kind, rows=True)

    once()
    synchronize(device)
    start = time.perf_counter()
    once()
    synchronize(device)
    return time.perf_counter() - start
