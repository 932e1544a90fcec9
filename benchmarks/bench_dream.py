"""Deep Dream speed and memory: seconds per step, achieved GFLOP/s against the machine's
matmul peak of the same precision, and peak memory with and without tiling.

    python benchmarks/bench_dream.py                          # 512 and 1024 px, fp32 + bf16
    python benchmarks/bench_dream.py --sizes 64 --memory-sizes 64,128 --tile 32 --json

Every configuration runs in its own subprocess: CPU peak RSS only ever grows, so peaks
measured in one process would hide each other. Weights default to `random` (speed and
memory do not depend on them, and nothing is downloaded).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    conv_gflop,
    interleaved,
    machine,
    matmul_peak_gflops,
    peak_memory_mb,
    report,
    reset_peak,
    time_it,
)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def child(config: dict[str, Any]) -> dict[str, Any]:
    """One configuration, measured in this (fresh) process."""
    from artconv.deepdream.engine import Dreamer, DreamOptions
    from artconv.nets.extractor import FeatureExtractor

    options = DreamOptions(arch=config["arch"], weights=config["weights"],
                           layers=tuple(config["layers"]), device=config["device"],
                           precision=config["precision"], tile=config["tile"], octaves=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights warn
        fx = FeatureExtractor.from_options(options)
    dreamer = Dreamer(options, extractor=fx)
    size = config["size"]
    image = torch.rand(1, 3, size, size, device=dreamer.device)
    objective = dreamer.prepare(image)
    base_mb = peak_memory_mb(dreamer.device)
    reset_peak(dreamer.device)
    seconds = time_it(lambda: dreamer.step(image, objective, shift=(0, 0)), dreamer.device,
                      repeats=config["repeats"])
    tiles, _ = dreamer._tiles((size, size))
    deepest = dreamer.layers[-1]
    gflop = sum(conv_gflop(fx, (t.ext[1] - t.ext[0], t.ext[3] - t.ext[2]), deepest)
                for t in tiles)
    return {"size": size, "precision": dreamer.precision, "tile": config["tile"],
            "tiles": len(tiles), "s/step": seconds, "GFLOP/step": gflop,
            "GFLOP/s": gflop / seconds, "base MB": base_mb,
            "peak MB": peak_memory_mb(dreamer.device)}


def bare_fn(dreamer: Any, image: torch.Tensor) -> Any:
    """The dream's bare network pass: the same network, precision and memory format, forward
    to the deepest dream layer and the input-gradient backward, nothing else."""
    from artconv.device import autocast

    deepest = dreamer.layers[-1]
    x = image.clone().requires_grad_(True)

    def bare() -> None:
        x.grad = None
        with autocast(dreamer.device, dreamer.precision):
            maps = dreamer.fx(x.contiguous(memory_format=dreamer.memory_format), [deepest])
        maps[deepest].float().sum().backward()

    return bare


def ratios(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per size and precision: one dream step (jitter roll, objective, gradient transforms,
    the update; the objective not read, as in the loop between displays) against the bare
    pass, timed interleaved in this process (ratio of the minima)."""
    from artconv.deepdream.engine import Dreamer, DreamOptions

    rows = []
    for size in [int(s) for s in args.ratio_sizes.split(",") if s]:
        fns: dict[str, Any] = {}
        for precision in args.precisions.split(","):
            options = DreamOptions(arch=args.arch, weights=args.weights,
                                   layers=tuple(args.layers.split(",")), device=args.device,
                                   precision=precision, tile=0, octaves=1,
                                   compile=args.compile)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # random weights warn
                dreamer = Dreamer(options)
            image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
            image = image.to(dreamer.device)
            objective = dreamer.prepare(image)
            rng = torch.Generator().manual_seed(0)
            fns[f"bare_{precision}"] = bare_fn(dreamer, image)
            fns[f"step_{precision}"] = (lambda d=dreamer, x=image, o=objective, r=rng:
                                        d.step(x, o, rng=r, read=False))
            device = dreamer.device
        times = interleaved(fns, device, args.repeats, args.clock)
        for precision in args.precisions.split(","):
            bare, step = min(times[f"bare_{precision}"]), min(times[f"step_{precision}"])
            rows.append({"size": size, "precision": precision, "bare_s": bare,
                         "step_s": step, "step/bare": step / bare})
    return rows


def run_child(config: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return {**{k: config[k] for k in ("size", "precision", "tile")},
                "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="512,1024", help="Sizes (px) for the speed rows.")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--memory-sizes", default="512,1024,2048",
                   help="Sizes for the memory rows (tiled and untiled); empty to skip.")
    p.add_argument("--tile", type=int, default=512, help="Tile size for the tiled rows.")
    p.add_argument("--layers", default="relu4_2,relu5_1")
    p.add_argument("--arch", default="vgg19")
    p.add_argument("--weights", default="random")
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=3, help="Timed steps (median) per row.")
    p.add_argument("--json", action="store_true", help="Print the rows as JSON.")
    p.add_argument("--ratio-sizes", default="256,512",
                   help="Sizes for the step / bare pass rows (one process); empty to skip.")
    p.add_argument("--ratio-only", action="store_true", help="Only the step / bare rows.")
    p.add_argument("--compile", action="store_true", help="compile=True (ratio rows)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="ratio rows: cpu = process CPU time (with --threads 1 when busy)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.ratio_sizes:
        if not args.json:
            print(machine(), "| load", " ".join(f"{v:.2f}" for v in os.getloadavg()))
            print(f"\ndream step / bare pass (forward + input gradient to {args.layers}), "
                  "interleaved, minima")
        ratio_rows = ratios(args)
        if args.json:
            print(json.dumps({"ratios": ratio_rows}, indent=1))
        else:
            report(ratio_rows)
            print("\n".join(f"{r['size']} px {r['precision']}: dream step / bare pass = "
                            f"{r['step/bare']:.3f} (target <= 1.1)" for r in ratio_rows))
    if args.ratio_only:
        return

    from artconv.device import resolve_device

    device = resolve_device(args.device)
    common = {"arch": args.arch, "weights": args.weights, "layers": args.layers.split(","),
              "device": args.device, "repeats": args.repeats}
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows = []
    for precision in args.precisions.split(","):
        peak = matmul_peak_gflops(device, DTYPES[precision])
        for size in sizes:
            row = run_child({**common, "size": size, "precision": precision, "tile": 0})
            if "GFLOP/s" in row:
                row["matmul peak"] = peak
                row["% peak"] = 100 * row["GFLOP/s"] / peak
            rows.append(row)
    memory = []
    for size in [int(s) for s in args.memory_sizes.split(",") if s]:
        for tile in (0, args.tile):
            memory.append(run_child({**common, "size": size, "precision": "fp32",
                                     "tile": tile, "repeats": 1}))
    if args.json:
        print(json.dumps({"machine": machine(), "speed": rows, "memory": memory}, indent=1))
        return
    print(machine())
    print(f"\nspeed: one step (forward + input gradient) to {args.layers}, untiled")
    report(rows)
    print("GFLOP: nominal direct-convolution counts; Winograd kernels (oneDNN, cuDNN) do "
          "fewer multiplies, so % peak can pass 100")
    if memory:
        print(f"\npeak memory of one step, fp32, untiled (tile 0) vs tiled ({args.tile} px "
              "cores + receptive-field margins)")
        report(memory)


if __name__ == "__main__":
    main()
