"""Batch throughput: images per minute for `--batch-size` K (K contents of the same size
optimised in one tensor against one style), through the batch renderer itself.

    python benchmarks/bench_batch.py --sizes 256 --ks 1,2,4 [--jobs 4] [--iterations 20]

The network load and the style targets are excluded (they are done once per batch whatever
K is): the clock runs from the first job to the last. Weights are random by default.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, report  # noqa: E402

from artconv import batch  # noqa: E402
from artconv.io.images import save_image  # noqa: E402
from artconv.nets.pooling import pink_noise  # noqa: E402
from artconv.style import StyleOptions  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="256")
    p.add_argument("--ks", default="1,2,4")
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--optimizer", default="lbfgs", choices=["lbfgs", "adam"])
    p.add_argument("--weights", default="random")
    p.add_argument("--precision", default="auto")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = Path(tmp)
        for size in map(int, args.sizes.split(",")):
            contents = [save_image(pink_noise(size, seed=i)[0], folder / f"c{size}_{i}.png")
                        for i in range(args.jobs)]
            style = save_image(pink_noise(size, seed=99)[0], folder / f"s{size}.png")
            opts = StyleOptions(weights=args.weights, size=size, precision=args.precision,
                                iterations=(args.iterations,), optimizer=args.optimizer)
            runner = batch.LocalRunner()
            # warm-up: loads the network and computes the style targets once
            warm = batch.plan("style", contents[:1], styles=[style], out_dir=folder / "warm")
            batch.render(warm, {"style": opts}, runner=runner, overwrite=True)
            for k in map(int, args.ks.split(",")):
                jobs = batch.plan("style", contents, styles=[style], out_dir=folder / f"k{k}")
                start = time.perf_counter()
                result = batch.render(jobs, {"style": opts}, runner=runner, batch_size=k,
                                      overwrite=True)
                seconds = time.perf_counter() - start
                assert result.ok, result.to_dict()
                rows.append({"size": size, "K": k, "jobs": args.jobs,
                             "iterations": args.iterations, "seconds": seconds,
                             "images_per_min": 60 * args.jobs / seconds})
    if not args.json:
        print(f"# {machine()}; {args.optimizer}, precision {args.precision}")
    report(rows, args.json)


if __name__ == "__main__":
    main()
