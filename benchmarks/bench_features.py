"""Per-pixel features: time, peak memory and throughput per megapixel for the pooling modes.

    python benchmarks/bench_features.py                       # 256 and 512 px, VGG19
    python benchmarks/bench_features.py --sizes 32 --layers relu1_2,relu2_1   # smoke run

Configurations: `none` (a-trous, natively full resolution), `strided` (+ bilinear) and
`max` (+ bilinear). Each (configuration, size) runs in its own subprocess, so the CPU peak
RSS of one is not hidden by an earlier, bigger one (RSS peaks never go down). Weights are
random by default: the timings do not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import conv_gflop, machine, peak_memory_mb, report, reset_peak, time_it  # noqa: E402

CONFIGS = {"none": ("none", "bilinear"), "strided": ("strided", "bilinear"),
           "max": ("max", "bilinear")}


def run_one(config: str, size: int, args: argparse.Namespace) -> dict:
    from artconv.device import resolve_device, resolve_precision
    from artconv.features import FeatureOptions, allocate, extract_into, plan_features
    from artconv.nets.extractor import FeatureExtractor
    from artconv.nets.pooling import pink_noise

    pooling, upsample = CONFIGS[config]
    opts = FeatureOptions(arch=args.arch, weights=args.weights, pooling=pooling,
                          upsample=upsample, layers=tuple(args.layers.split(",")),
                          device=args.device, precision=args.precision, dtype=args.dtype,
                          max_memory=args.max_memory).validated()
    device = resolve_device(opts.device)
    precision = resolve_precision(opts.precision, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights
        fx = FeatureExtractor.from_options(opts).to(device)
    image = pink_noise(size)
    plan = plan_features(fx, (size, size), opts)
    deepest = fx.check_layers(opts.layers)[-1]
    base = peak_memory_mb(device)
    reset_peak(device)

    def once() -> None:
        extract_into(fx, image, plan, allocate(plan), device=device, precision=precision)

    seconds = time_it(once, device, repeats=args.repeats)
    peak = peak_memory_mb(device)
    mp = size * size / 1e6
    gflop = conv_gflop(fx, (size, size), deepest, backward=False)
    work = peak - (base if device.type == "cpu" else 0.0)
    return {"pooling": config, "size": size, "device": f"{device.type}/{precision}",
            "tiles": len(plan.tiles), "s": seconds, "s/MP": seconds / mp,
            "out MB/MP": plan.nbytes / 2**20 / mp, "peak MB": peak, "work MB/MP": work / mp,
            "GFLOP/MP": gflop / mp, "GFLOP/s": gflop / seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--layers", default="relu1_2,relu2_1,relu3_1,relu4_1")
    ap.add_argument("--arch", default="vgg19")
    ap.add_argument("--weights", default="random")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-memory", type=float, default=8.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--one", nargs=2, metavar=("CONFIG", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args)))
        return
    passthrough = [a for a in sys.argv[1:] if a != "--json"]
    rows = []
    for size in map(int, args.sizes.split(",")):
        for config in args.configs.split(","):
            done = subprocess.run([sys.executable, __file__, *passthrough, "--one", config,
                                   str(size)], capture_output=True, text=True)
            if done.returncode:
                rows.append({"pooling": config, "size": size,
                             "error": done.stderr.strip().splitlines()[-1]})
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    if not args.json:
        print(f"# {machine()}; layers {args.layers}; {args.arch} {args.weights} weights; "
              f"median of {args.repeats}")
        print("# work MB/MP: peak minus the memory held before the first pass (CPU: RSS), per "
              "megapixel; out MB/MP: the result array alone")
    report(rows, args.json)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
