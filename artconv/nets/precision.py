"""The precision of the feature statistics (the products ``F diag(m) F^T`` behind the Gram
matrix and the W2 moments, and their backward ``(dG + dG^T) F``), chosen by measurement.

Whether a bf16 matmul beats widening the maps to fp32 depends on the machine, not on its
name: on a CPU with AMX (or a GPU's tensor cores) bf16 is several times faster, on one with
only AVX512-BF16 it may be slower than fp32 (measured 59 against 281 GFLOP/s on one Xeon).
So, as cuDNN's benchmark mode does, each candidate is timed once per (device, dtype, shape
bucket) on random maps of that shape, and the faster is kept for the process. Both keep the
sums in fp32: "fp32" widens the maps first; "bf16" multiplies the bf16 maps with fp32
accumulation, on CUDA into an fp32 product (`out_dtype`), and computes the backward in bf16
(no fp32 map and no fp32 gradient map: half the memory traffic). torch's CPU matmul has no
fp32 result for bf16 inputs, and a product rounded to bf16 moves a converged loss by a few
percent, so on the CPU "bf16" keeps the forward product in fp32 and gains in the backward.

Set ARTCONV_STATS_PRECISION=fp32 or bf16 to skip the measurement (reproducible runs).
"""

from __future__ import annotations

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


def chosen() -> dict[Key, str]:
    """The decisions taken so far (for benchmarks and bug reports)."""
    return dict(_chosen)


def forget() -> None:
    """Drop the decisions (tests; a process that moved to other hardware)."""
    _chosen.clear()


# -- the two implementations ------------------------------------------------------------------
def product(fm: torch.Tensor, f: torch.Tensor, kind: str) -> torch.Tensor:
    """``fm @ f^T`` of flattened maps (N,C,P) as an fp32 (N,C,C): "fp32" widens both first,
    "bf16" multiplies them as they are (bf16) into an fp32 product where torch can (CUDA)."""
    if kind == FP32 or fm.dtype != torch.bfloat16:
        return torch.bmm(_wide(fm), _wide(f).mT)
    if fm.is_cuda:
        return torch.bmm(fm, f.mT, out_dtype=torch.float32)
    # The CPU has no bf16 x bf16 -> fp32 matmul in torch: oneDNN rounds the product to
    # bf16, 2^-9 of each element, which moves a converged relative loss by a few percent.
    # The loss needs the exact product, so only the backward runs in bf16 here.
    return torch.bmm(fm.float(), f.float().mT)


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


def measure_product(kind: str, device: torch.device, dtype: torch.dtype, channels: int,
                    positions: int) -> float:
    """Seconds of one forward and one backward product on random maps of that shape, as the
    engines run them (NHWC rows), after a warm-up call."""
    gen = torch.Generator().manual_seed(0)
    rows = torch.rand((1, positions, channels), generator=gen).to(device, dtype)
    f = rows.mT  # (1,C,P), a view as a channels_last map's
    d_prod = torch.rand((1, channels, channels), generator=gen).to(device)

    def once() -> None:
        product(f, f, kind)
        product_grad(rows, d_prod, kind, rows=True)

    once()
    synchronize(device)
    start = time.perf_counter()
    once()
    synchronize(device)
    return time.perf_counter() - start
