"""Where one evaluation's time goes: torch.profiler over one L-BFGS evaluation / Adam step of
the style engine (fp32 and bf16) and one dream step, each op's self time put in a bucket:

* network: convolutions, ReLU, pooling and their backward (what the bare pass does too);
* gram/w2: the statistics' matmuls (`bmm`, `_Moments`, W2's Newton-Schulz);
* grad sum: full-size gradient additions where a captured map feeds both the next layer and
  a loss (autograd sums the two; the bare pass has none);
* conversions: dtype and memory-format copies;
* optimiser: everything under `Optimizer.step`;
* host sync: `.item()`, `.tolist()`, `.cpu()` (`_local_scalar_dense`, device copies);
* other: the remaining small loss terms (content, TV, reductions, fills).

    python benchmarks/profile_style.py --size 256 [--rows 15] [--style-loss w2]

Random VGG19 weights (speed does not depend on them). Profiles run one configuration after
the other; with other processes on the machine, compare the buckets' shares, not seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_style  # noqa: E402
from common import machine  # noqa: E402

NETWORK = {"aten::mkldnn_convolution", "aten::convolution_backward", "aten::threshold_backward",
           "aten::clamp_min", "aten::relu", "aten::relu_", "aten::max_pool2d_with_indices",
           "aten::max_pool2d_with_indices_backward", "aten::avg_pool2d",
           "aten::avg_pool2d_backward", "aten::_convolution", "aten::convolution",
           "aten::conv2d", "aten::threshold"}
GRAM = {"aten::bmm", "aten::mm", "aten::matmul", "aten::baddbmm", "_Moments",
        "_MomentsBackward", "aten::linalg_matrix_norm"}
CONVERSIONS = {"aten::copy_", "aten::_to_copy", "aten::to", "aten::contiguous",
               "aten::clone"}
SYNC = {"aten::_local_scalar_dense", "aten::item", "aten::_to_cpu"}
BUCKETS = ("network", "gram/w2", "grad sum", "conversions", "optimiser", "host sync", "other")


def bucket(event: Any) -> str:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("Optimizer.step"):
            return "optimiser"
        parent = parent.cpu_parent
    name = event.name
    if name in SYNC:
        return "host sync"
    if name in NETWORK:
        return "network"
    if name in GRAM:
        return "gram/w2"
    parent_name = event.cpu_parent.name if event.cpu_parent is not None else ""
    if name in ("aten::add", "aten::add_") and parent_name.startswith(
            "autograd::engine::evaluate_function"):
        return "grad sum"
    if name in CONVERSIONS:
        return "conversions"
    return "other"


def breakdown(fn: Callable[[], Any], rows: int = 0) -> dict[str, float]:
    """Milliseconds of self CPU time per bucket in one call of `fn` (after two warm-ups)."""
    fn()
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    totals: dict[str, float] = defaultdict(float)
    for event in prof.events():
        totals[bucket(event)] += event.self_cpu_time_total / 1e3
    if rows:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
    out = {b: totals.get(b, 0.0) for b in BUCKETS}
    out["total"] = sum(out.values())
    return out


def dream_step(size: int, precision: str) -> Callable[[], Any]:
    from artconv.deepdream.engine import Dreamer, DreamOptions

    options = DreamOptions(weights="random", layers=("relu4_2", "relu5_1"), device="cpu",
                           precision=precision, tile=0, octaves=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dreamer = Dreamer(options)
    image = torch.rand(1, 3, size, size)
    objective = dreamer.prepare(image)
    rng = torch.Generator().manual_seed(0)
    return lambda: dreamer.step(image, objective, rng=rng, read=False)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--style-loss", default="gram", choices=["gram", "w2"])
    p.add_argument("--rows", type=int, default=0, help="also print the top ops table")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_args = argparse.Namespace(arch="vgg19", weights="random", pooling="max",
                                    backbone=None, style_loss=args.style_loss, device="cpu",
                                    content_layers=None, style_layers=None)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(machine().replace(" 1 threads", " 1 thread"), "| load", load)
    print(f"ms of self CPU time (share) in one evaluation, {args.size} px, VGG19 to relu5_1")
    header = ["what", *BUCKETS, "total"]
    print(" | ".join(header))
    for precision in args.precisions.split(","):
        st = bench_style.engine(bench_args, precision)
        configs = {f"style {args.style_loss} L-BFGS {precision}":
                   bench_style.step_fn(st, args.size, "lbfgs"),
                   f"style {args.style_loss} Adam {precision}":
                   bench_style.step_fn(st, args.size, "adam"),
                   f"bare pass {precision}": bench_style.floor_fn(st, args.size),
                   f"dream step {precision}": dream_step(args.size, precision)}
        for what, fn in configs.items():
            ms = breakdown(fn, args.rows)
            print(" | ".join([what, *(f"{ms[b]:.1f} ({100 * ms[b] / ms['total']:.1f} %)"
                                      for b in BUCKETS), f"{ms['total']:.1f}"]))


if __name__ == "__main__":
    main()
