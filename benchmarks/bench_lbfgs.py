"""The L-BFGS optimiser step alone (no network): torch.optim.LBFGS as the style engine used
it against `artconv.style.lbfgs.CompactLBFGS`, ms per step once the history is full.

    python benchmarks/bench_lbfgs.py --size 256 [--history 100] [--device cpu]

Both optimisers are driven as `ScaleRun` drives them (gradient in .grad, one step per
evaluation) on the same smooth synthetic gradient; steps are timed interleaved (ABAB...) so
that load from other processes hits both alike, and the medians and minima are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

from artconv.device import resolve_device, synchronize  # noqa: E402
from artconv.style.lbfgs import CompactLBFGS  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--history", type=int, default=100)
    p.add_argument("--steps", type=int, default=20, help="timed steps of each")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, args.size, args.size, generator=gen).to(device)
    # an ill-conditioned diagonal Hessian: far from converged after the steps, so every
    # curvature pair is accepted and torch's history is full, as in a style run
    weight = (10 ** (-4 * torch.rand(target.shape, generator=gen))).to(device)
    runs = {}
    for name, make in (("torch", lambda ps: torch.optim.LBFGS(
            ps, lr=1, max_iter=1, history_size=args.history, tolerance_grad=-1,
            tolerance_change=-1)),
            ("compact", lambda ps: CompactLBFGS(ps, lr=1, history_size=args.history,
                                                tolerance_change=-1))):
        x = torch.zeros_like(target).requires_grad_(True)
        runs[name] = (x, make([x]))

    def step(name: str) -> None:
        x, opt = runs[name]
        x.grad = weight * (x.detach() - target)
        opt.step(lambda: 0.0)

    for _ in range(args.history + 2):  # fill the history
        for name in runs:
            step(name)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.steps):
        for name in runs:
            synchronize(device)
            t = time.perf_counter()
            step(name)
            synchronize(device)
            times[name].append(time.perf_counter() - t)
    kept = len(runs["torch"][1].state[runs["torch"][0]]["old_dirs"])
    print(f"# {machine()}; {args.size} px, history {args.history} (torch keeps {kept})")
    for name, ts in times.items():
        print(f"{name:8s} median {1e3 * statistics.median(ts):7.2f} ms/step   "
              f"min {1e3 * min(ts):7.2f} ms/step")
    ratio = statistics.median(times["torch"]) / statistics.median(times["compact"])
    print(f"torch / compact (median): {ratio:.2f}x")


if __name__ == "__main__":
    main()
